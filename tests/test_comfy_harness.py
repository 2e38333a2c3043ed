"""The test harness itself works against the real host: tiny models, oracle, checkpoint detection, server."""

from __future__ import annotations

import math

import comfy_host
import pytest

pytestmark = pytest.mark.host


def test_locate_prefers_comfyui_path(monkeypatch, tmp_path):
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    path, reason = comfy_host.locate_comfyui()
    assert path is None and "COMFYUI_PATH" in reason


@pytest.mark.parametrize("kind", comfy_host.MODEL_TYPES)
def test_oracle_plain_sampling_splits_modes(comfy_nodes, oracle_model, tiny_cond, kind):
    """Without steering both oracle modes are populated; one model call per step (cfg 1 skips uncond)."""
    import torch

    model, counter = oracle_model(kind)
    n, steps = 32, 8
    with torch.inference_mode():
        out = comfy_nodes.KSampler().sample(model, 3, steps, 1.0, "euler_ancestral", "normal",
                                            tiny_cond(), tiny_cond(seed=1), comfy_host.empty_latent(n))[0]
    share = comfy_host.positive_mode_share(out["samples"])
    # Binomial(32, 1/2): P(share outside [0.2, 0.8]) < 1e-3.
    assert 0.2 <= share <= 0.8
    assert counter.calls == steps and counter.rows == steps * n
    # Each final latent sits near one mode: |per-image mean| ~ 1/scale_factor after process_latent_out.
    means = out["samples"].mean(dim=(1, 2, 3)).abs()
    assert torch.allclose(means, torch.full_like(means, 1 / 0.18215), rtol=0.25)


def test_oracle_posterior_mean_limits():
    """At sigma -> 0 the oracle returns its input; at huge sigma the mixture mean (0)."""
    import torch

    x = torch.randn(2, 4, 8, 8)
    small = comfy_host.oracle_denoise(x, torch.full((2,), 1e-4), flow=False)
    assert torch.allclose(small, x, atol=1e-3)
    big = comfy_host.oracle_denoise(torch.zeros(2, 4, 8, 8), torch.full((2,), 1e4), flow=False)
    assert big.abs().max() < 1e-3


def test_mode_reward_ranks_modes(comfy_nodes, tiny_vae):
    import comfy.latent_formats
    import torch

    fmt = comfy.latent_formats.SD15()
    reward = comfy_host.ModeReward(tiny_vae)
    gen = torch.Generator().manual_seed(0)
    internal = torch.cat([torch.ones(3, 4, 8, 8), -torch.ones(3, 4, 8, 8)]) + 0.3 * torch.randn(6, 4, 8, 8,
                                                                                              generator=gen)
    with torch.inference_mode():
        scores = reward(tiny_vae.decode(fmt.process_out(internal)))
    assert scores.shape == (6,)
    assert (scores[:3] > 0).all() and (scores[3:] < 0).all()


def test_thin_checkpoint_is_detected_as_sd15(comfy_nodes, tmp_path):
    import comfy.sd
    import comfy.supported_models
    import torch

    path = comfy_host.write_thin_sd15_checkpoint(tmp_path / "thin.safetensors", with_clip=False)
    model, _clip, vae, *_ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=False)
    assert isinstance(model.model.model_config, comfy.supported_models.SD15)
    with torch.inference_mode():
        img = vae.decode(torch.zeros(1, 4, 8, 8))
    assert img.shape == (1, 64, 64, 3)
    assert math.isfinite(float(img.sum()))


def plain_graph(ckpt_name: str, seed: int = 0) -> dict:
    """API-format graph: checkpoint -> two prompts -> KSampler -> VAEDecode -> PreviewImage (64x64 px)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red apple"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": 2, "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def test_server_runs_plain_graph(comfy_server):
    """The server fixture serves a tiny checkpoint that ComfyUI's own loader and text encoder accept."""
    info = comfy_server.object_info("CheckpointLoaderSimple")
    ckpts = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    assert comfy_server.ckpt_name in str(ckpts)
    result = comfy_server.run_prompt(plain_graph(comfy_server.ckpt_name))
    assert result.status == "success", (result.error, comfy_server.log_tail())
    images = result.outputs("7")["images"]
    assert len(images) == 1
    png = comfy_server.view_image(images[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
