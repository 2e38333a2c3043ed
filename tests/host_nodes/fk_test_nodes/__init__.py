"""Test-only ComfyUI node pack: an FK_REWARD source that needs no model weights.

Loaded by the test server next to the real pack (tests/comfy_host.ComfyServer(extra_packs=...)) so HTTP
graphs can run FK nodes without the rewards pack. Not shipped to users.
"""

from comfy_api.latest import ComfyExtension, io

FKReward = io.Custom("FK_REWARD")
BUSY_MARKER = "fk_test_busy"  # written into ComfyUI's temp folder when a slow test node starts working


def mark_busy(where: str) -> None:
    """Tell a waiting test that the slow part is running now (so its cancel lands mid-work)."""
    import os

    import folder_paths

    path = os.path.join(folder_paths.get_temp_directory(), BUSY_MARKER)
    with open(path + ".tmp", "w") as marker:
        marker.write(where)
    os.replace(path + ".tmp", path)  # atomic: a watcher never reads a half-written marker


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

            mark_busy("reward")
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
    """Copies a CONDITIONING and puts one NaN into its cross-attention tensor, or makes it a batch of 2."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestNaNConditioning", display_name="FK Test NaN Conditioning",
                         category="testing/fk", inputs=[io.Conditioning.Input("conditioning"),
                                                        io.Combo.Input("mode", options=["nan", "batch 2"],
                                                                       optional=True)],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, conditioning, mode="nan"):
        import torch

        out = []
        for tensor, extra in conditioning:
            if mode == "batch 2":
                tensor = torch.cat([tensor, tensor.flip(1)])
            else:
                tensor = tensor.clone()
                tensor.view(-1)[0] = float("nan")
            out.append([tensor, dict(extra)])
        return io.NodeOutput(out)


class _SlowVAE:
    """A VAE whose decode takes a while (and says so): to cancel while FK decodes previews."""

    def __init__(self, vae):
        self.inner = vae

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def decode(self, latents, *args, **kwargs):
        import time

        mark_busy("decode")
        time.sleep(0.3)
        return self.inner.decode(latents, *args, **kwargs)


class FKTestSlowVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestSlowVAE", display_name="FK Test Slow VAE", category="testing/fk",
                         inputs=[io.Vae.Input("vae")], outputs=[io.Vae.Output()])

    @classmethod
    def execute(cls, vae):
        return io.NodeOutput(_SlowVAE(vae))


class FKTestSlowModel(io.ComfyNode):
    """Clones a MODEL so every UNet call takes a while (and says so): to cancel mid-sampling."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestSlowModel", display_name="FK Test Slow Model", category="testing/fk",
                         inputs=[io.Model.Input("model")], outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model):
        import time

        clone = model.clone()

        def wrapper(apply_model, args):
            mark_busy("model")
            time.sleep(0.3)
            return apply_model(args["input"], args["timestep"], **args["c"])

        clone.set_model_unet_function_wrapper(wrapper)
        return io.NodeOutput(clone)


class FKTestWanTextConditioning(io.ComfyNode):
    """Random text tokens shaped like Wan 2.1's umt5-xxl output ([1, tokens, 4096]): the example video workflow's
    text encoder stands in for CLIPLoader + CLIPTextEncode (umt5-xxl has a fixed ~5.7 B-parameter config)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FKTestWanTextConditioning", display_name="FK Test Wan Text Conditioning",
                         category="testing/fk", inputs=[io.Int.Input("seed", default=0, min=0, max=2**31),
                                                        io.Int.Input("tokens", default=8, min=1, max=512)],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, seed, tokens):
        import torch

        gen = torch.Generator().manual_seed(seed)
        return io.NodeOutput([[torch.randn(1, tokens, 4096, generator=gen), {}]])


class _Extension(ComfyExtension):
    async def get_node_list(self):
        return [FKTestBrightnessReward, FKTestBrokenReward, FKTestOutOfMemoryModel, FKTestBadLatent,
                FKTestNaNConditioning, FKTestSlowVAE, FKTestSlowModel, FKTestWanTextConditioning]


async def comfy_entrypoint():
    return _Extension()
