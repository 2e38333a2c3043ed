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


class BrokenReward:
    """A reward that misbehaves on purpose: NaN, inf, the wrong number of scores, an exception, slowness, or
    "steep" (scores 0, 1, 2 … by batch row: with a large lambda every check keeps one particle)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.name = f"test_broken_{mode}"

    def __call__(self, images):
        import torch

        n = images.shape[0]
        if self.mode == "nan":
            return torch.full((n,), float("nan"))
        if self.mode == "inf":
            return torch.full((n,), float("inf"))
        if self.mode == "wrong shape":
            return torch.zeros(n + 1)
        if self.mode == "steep":
            return torch.arange(n, dtype=torch.float32)
        if self.mode == "slow":
            import time

            time.sleep(0.5)
            return images.float().mean(dim=tuple(range(1, images.ndim)))
        raise RuntimeError("simulated failure inside the reward")


class FKTestBrokenReward(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestBrokenReward", display_name="FK Test Broken Reward", category="testing/fk",
                         inputs=[io.Combo.Input("mode", options=["nan", "inf", "wrong shape", "raise", "slow",
                                                                  "steep"])],
                         outputs=[FKReward.Output(display_name="reward")])

    @classmethod
    def execute(cls, mode):
        return io.NodeOutput(BrokenReward(mode))


class FKTestOutOfMemoryModel(io.ComfyNode):
    """Clones a MODEL so its second UNet call raises an out-of-memory error (a chunk that does not fit)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestOutOfMemoryModel", display_name="FK Test OOM Model", category="testing/fk",
                         inputs=[io.Model.Input("model")], outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model):
        import torch

        clone = model.clone()
        calls = {"n": 0}

        def wrapper(apply_model, args):
            calls["n"] += 1
            if calls["n"] >= 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
            return apply_model(args["input"], args["timestep"], **args["c"])

        clone.set_model_unet_function_wrapper(wrapper)
        return io.NodeOutput(clone)


class FKTestBadLatent(io.ComfyNode):
    """A LATENT that is broken on purpose: NaN or inf values, or 16 channels for a 4-channel model."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestBadLatent", display_name="FK Test Bad Latent", category="testing/fk",
                         inputs=[io.Combo.Input("mode", options=["nan", "inf", "16 channels"])],
                         outputs=[io.Latent.Output()])

    @classmethod
    def execute(cls, mode):
        import torch

        if mode == "16 channels":
            return io.NodeOutput({"samples": torch.randn(1, 16, 8, 8)})
        samples = torch.zeros(1, 4, 8, 8)
        samples[0, 0, 0, 0] = float("nan") if mode == "nan" else float("inf")
        return io.NodeOutput({"samples": samples})


class FKTestNaNConditioning(io.ComfyNode):
    """Copies a CONDITIONING and puts one NaN into its cross-attention tensor."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestNaNConditioning", display_name="FK Test NaN Conditioning",
                         category="testing/fk", inputs=[io.Conditioning.Input("conditioning")],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, conditioning):
        out = []
        for tensor, extra in conditioning:
            tensor = tensor.clone()
            tensor.view(-1)[0] = float("nan")
            out.append([tensor, dict(extra)])
        return io.NodeOutput(out)


class _Extension(ComfyExtension):
    async def get_node_list(self):
        return [FKTestBrightnessReward, FKTestBrokenReward, FKTestOutOfMemoryModel, FKTestBadLatent,
                FKTestNaNConditioning]


async def comfy_entrypoint():
    return _Extension()
