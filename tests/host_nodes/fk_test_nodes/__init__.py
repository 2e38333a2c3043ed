"""Test-only ComfyUI node pack: an FK_REWARD source that needs no model weights.

Loaded by the test server next to the real pack (tests/comfy_host.ComfyServer(extra_packs=...)) so HTTP
graphs can run FK nodes without the rewards pack. Not shipped to users.
"""

from comfy_api.latest import ComfyExtension, io

FKReward = io.Custom("FK_REWARD")


class BrightnessReward:
    """Mean brightness of each image, in [0, 1]."""

    name = "test_brightness"

    def __call__(self, images):
        return images.float().mean(dim=tuple(range(1, images.ndim)))


class FKTestBrightnessReward(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestBrightnessReward", display_name="FK Test Brightness Reward",
                         category="testing/fk", inputs=[], outputs=[FKReward.Output(display_name="reward")])

    @classmethod
    def execute(cls):
        return io.NodeOutput(BrightnessReward())


class _Extension(ComfyExtension):
    async def get_node_list(self):
        return [FKTestBrightnessReward]


async def comfy_entrypoint():
    return _Extension()
