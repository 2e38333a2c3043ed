"""Preview decoder choice (auto / full VAE / TAESD) on both sampler nodes, checks scored on the device at the
reward's input size, and the cost of a check in the trace.

The TAESD file is built from ComfyUI's own ``comfy.taesd.taesd.TAESD`` decoder and saved as
``taesd_decoder.safetensors`` in a temporary ``vae_approx`` folder registered with ComfyUI's folder_paths, so the
pack finds it through the same lookup ComfyUI's live previews use. Its last convolution is set to a constant
colour: images the reward receives at a check are then recognisably TAESD's, and images from the workflow's
(tiny, random) VAE are not.
"""

from __future__ import annotations

import json
import types

import comfy_host
import pytest

pytestmark = pytest.mark.host

N = 4
STEPS = 6
SIZE = 4  # latent side: 32 px images
TAESD_IMAGE_RGB = (0.2, 0.4, 0.6)  # the constant colour of the test TAESD (its decoder network outputs [0, 1])


def taesd_decoder_state_dict(constant: bool = True, seed: int = 3) -> dict:
    import comfy.taesd.taesd
    import torch

    decoder = comfy.taesd.taesd.TAESD().taesd_decoder
    comfy_host.init_weights_(decoder, seed)
    if constant:
        with torch.no_grad():
            decoder[-1].weight.zero_()
            decoder[-1].bias.copy_(torch.tensor(TAESD_IMAGE_RGB))
    return {k: v.detach().clone().contiguous() for k, v in decoder.state_dict().items()}


@pytest.fixture
def vae_approx(comfy_nodes, tmp_path, monkeypatch):
    """An empty vae_approx folder that ComfyUI's folder_paths searches instead of the real one."""
    import folder_paths

    folder = tmp_path / "vae_approx"
    folder.mkdir()
    extensions = folder_paths.folder_names_and_paths["vae_approx"][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "vae_approx", ([str(folder)], extensions))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    return folder


@pytest.fixture
def with_taesd(vae_approx):
    import safetensors.torch

    safetensors.torch.save_file(taesd_decoder_state_dict(), str(vae_approx / "taesd_decoder.safetensors"))
    return vae_approx


class RecordingReward:
    """Brightness, remembering every batch of images it was given (in call order)."""

    name = "recording brightness"

    def __init__(self, input_size=None):
        self.input_size = input_size
        self.calls = []

    def __call__(self, images):
        self.calls.append(images.detach().float().cpu().clone())
        return images.float().mean(dim=(1, 2, 3))


def is_taesd_image(images) -> bool:
    import torch

    return bool(torch.allclose(images, torch.tensor(TAESD_IMAGE_RGB).expand_as(images), atol=1e-5))


def run_node(fk, model, vae, reward, preview_decoder, every=1, final_reward=None):
    import torch

    with torch.inference_mode():
        out = fk.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=comfy_host.tiny_conditioning(), negative=comfy_host.tiny_conditioning(seed=1),
            latent_image=comfy_host.empty_latent(1, SIZE), vae=vae, reward=reward, seed=3, steps=STEPS, cfg=1.0,
            sampler_name="euler_ancestral", scheduler="normal", denoise=1.0, particles=N, particle_chunk=0,
            potential=fk.fk_core.FKConfig(lmbda=5.0, every=every, copy_variety=(1.0, 0.0)),
            preview_decoder=preview_decoder,
            final_reward=final_reward)
    best_latent, best_image, sheet, all_images, trace = out.result
    return {"all": all_images, "trace": json.loads(trace), "text": out.ui["text"][0]}


def run_sampler_path(fk, model, vae, reward, preview_decoder, final_reward=None):
    """FK Sampler inside ComfyUI's SamplerCustom; returns the samples (all particles, best first)."""
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    with torch.inference_mode():
        fk_sampler = fk.nodes.sampler.FKSampler.execute(
            vae=vae, reward=reward, particles=N, sampler_name="euler_ancestral", particle_chunk=0,
            potential=fk.fk_core.FKConfig(lmbda=5.0, every=1, copy_variety=(1.0, 0.0)),
            preview_decoder=preview_decoder,
            final_reward=final_reward, **{"return": "all particles (sorted by reward)"}).result[0]
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS)
        out, _ = SamplerCustom().sample(model, True, 3, 1.0, comfy_host.tiny_conditioning(),
                                        comfy_host.tiny_conditioning(seed=1), fk_sampler, sigmas,
                                        comfy_host.empty_latent(1, SIZE))
    return out["samples"]


def full_vae_images(vae, samples):
    import torch

    with torch.inference_mode():
        return vae.decode(samples).float().cpu()


def check_calls(reward):
    return reward.calls[:-1]  # every call but the last is a check; the last scores the final particles


def number_of_checks(fk) -> int:
    return len(fk.fk_core.schedule.potential_steps(STEPS, 1, 0.2, 1.0))  # every step of the default window


PATHS = ("FK Particle Sampler", "FK Sampler")


@pytest.fixture
def oracle(oracle_model):
    model, _counter = oracle_model("eps")
    return model


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("choice", ["TAESD", "auto"])
def test_taesd_checks_and_full_vae_final(fk_pack, oracle, tiny_vae, with_taesd, path, choice):
    import torch

    reward = RecordingReward()
    if path == "FK Particle Sampler":
        out = run_node(fk_pack, oracle, tiny_vae, reward, choice)
        assert "TAESD (taesd_decoder.safetensors)" in out["trace"]["cost"]["preview_decoder"]
        final = reward.calls[-1]
        order = torch.as_tensor(out["trace"]["order"])
        assert torch.allclose(out["all"], final[order], atol=1e-6)  # the outputs are the final decode
    else:
        run_sampler_path(fk_pack, oracle, tiny_vae, reward, choice)
    checks = check_calls(reward)
    assert len(checks) == number_of_checks(fk_pack)
    assert all(is_taesd_image(images) for images in checks)
    assert not is_taesd_image(reward.calls[-1])


@pytest.mark.parametrize("path", PATHS)
def test_final_decode_is_the_full_vae_of_the_returned_particles(fk_pack, oracle, tiny_vae, with_taesd, path):
    import torch

    reward = RecordingReward()
    if path == "FK Particle Sampler":
        import comfy.sample

        captured = {}
        real = comfy.sample.sample_custom

        def capture(*args, **kwargs):
            captured["samples"] = real(*args, **kwargs)
            return captured["samples"]

        comfy.sample.sample_custom = capture
        try:
            run_node(fk_pack, oracle, tiny_vae, reward, "TAESD")
        finally:
            comfy.sample.sample_custom = real
        samples, final = captured["samples"], reward.calls[-1]
    else:
        samples = run_sampler_path(fk_pack, oracle, tiny_vae, reward, "TAESD")  # sorted by final reward
        final = reward.calls[-1]
        final = final[torch.sort(-final.mean(dim=(1, 2, 3)).double(), stable=True).indices]
    assert torch.allclose(final, full_vae_images(tiny_vae, samples), atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_final_judge_scores_full_vae_images_not_taesd_previews(fk_pack, oracle, tiny_vae, with_taesd, path):
    """The steering reward sees the TAESD previews at the checks; the final judge scores the finished particles
    once, decoded by the full VAE (the images the user gets), never the previews."""
    import comfy.sample
    import torch

    steering, judge = RecordingReward(), RecordingReward()
    judge.name = "recording judge"
    captured = {}
    real = comfy.sample.sample_custom

    def capture(*args, **kwargs):
        captured["samples"] = real(*args, **kwargs)
        return captured["samples"]

    if path == "FK Particle Sampler":
        comfy.sample.sample_custom = capture
        try:
            run_node(fk_pack, oracle, tiny_vae, steering, "TAESD", final_reward=judge)
        finally:
            comfy.sample.sample_custom = real
        samples, final = captured["samples"], judge.calls[-1]
    else:
        samples = run_sampler_path(fk_pack, oracle, tiny_vae, steering, "TAESD", final_reward=judge)
        final = judge.calls[-1]  # the samples come back sorted by the judge's reward
        final = final[torch.sort(-final.mean(dim=(1, 2, 3)).double(), stable=True).indices]
    assert len(judge.calls) == 1
    assert steering.calls and all(is_taesd_image(images) for images in steering.calls)
    assert not is_taesd_image(final)
    assert torch.allclose(final, full_vae_images(tiny_vae, samples), atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_auto_without_taesd_file_uses_full_vae(fk_pack, oracle, tiny_vae, vae_approx, path):
    reward = RecordingReward()
    if path == "FK Particle Sampler":
        out = run_node(fk_pack, oracle, tiny_vae, reward, "auto")
        assert out["trace"]["cost"]["preview_decoder"] == "full VAE"
        assert "taesd_decoder.pth" in out["text"] and str(vae_approx) in out["text"]  # says how to get cheaper
    else:
        run_sampler_path(fk_pack, oracle, tiny_vae, reward, "auto")
    assert len(reward.calls) == number_of_checks(fk_pack) + 1
    assert not any(is_taesd_image(images) for images in reward.calls)


@pytest.mark.parametrize("path", PATHS)
def test_full_vae_choice_ignores_the_taesd_file(fk_pack, oracle, tiny_vae, with_taesd, path):
    reward = RecordingReward()
    if path == "FK Particle Sampler":
        out = run_node(fk_pack, oracle, tiny_vae, reward, "full VAE")
        assert out["trace"]["cost"]["preview_decoder"] == "full VAE"
    else:
        run_sampler_path(fk_pack, oracle, tiny_vae, reward, "full VAE")
    assert not any(is_taesd_image(images) for images in reward.calls)


@pytest.mark.parametrize("path", PATHS)
def test_taesd_without_file_names_file_and_folder(fk_pack, oracle, tiny_vae, vae_approx, path):
    run = run_node if path == "FK Particle Sampler" else run_sampler_path
    with pytest.raises(fk_pack.fk_core.FKError) as err:
        run(fk_pack, oracle, tiny_vae, RecordingReward(), "TAESD")
    message = str(err.value)
    assert message.startswith(f"{path}: preview_decoder TAESD needs taesd_decoder.pth")
    assert str(vae_approx) in message and "full VAE" in message


def test_taesd_file_for_another_model_is_not_used(fk_pack, oracle, tiny_vae, vae_approx):
    """An SDXL decoder (taesdxl_decoder…) is not the SD1.5 one: the same prefix rule as ComfyUI's previews."""
    import safetensors.torch

    safetensors.torch.save_file(taesd_decoder_state_dict(), str(vae_approx / "taesdxl_decoder.safetensors"))
    reward = RecordingReward()
    out = run_node(fk_pack, oracle, tiny_vae, reward, "auto")
    assert out["trace"]["cost"]["preview_decoder"] == "full VAE"


def test_broken_taesd_file_is_a_clear_message(fk_pack, oracle, tiny_vae, vae_approx):
    import safetensors.torch
    import torch

    safetensors.torch.save_file({"1.weight": torch.zeros(3, 3)}, str(vae_approx / "taesd_decoder.safetensors"))
    with pytest.raises(fk_pack.fk_core.FKError, match="could not load .*taesd_decoder.safetensors as a TAESD"):
        run_node(fk_pack, oracle, tiny_vae, RecordingReward(), "TAESD")


def test_taesd_preview_matches_comfyui_live_preview(fk_pack, comfy_nodes, vae_approx, tiny_models, monkeypatch):
    """Our TAESD images are exactly what ComfyUI's own TAESD live preview shows for the same x0 and file."""
    import latent_preview
    import numpy as np
    import safetensors.torch
    import torch
    from comfy.cli_args import LatentPreviewMethod

    safetensors.torch.save_file(taesd_decoder_state_dict(constant=False), str(vae_approx / "taesd_decoder.safetensors"))
    pd = fk_pack.nodes.preview_decoder
    base_model = tiny_models("eps").model
    decoder, note = pd.choose_preview_decoder("TAESD", None, base_model, torch.device("cpu"))
    assert note is None
    monkeypatch.setattr(latent_preview.args, "preview_method", LatentPreviewMethod.TAESD)
    previewer = latent_preview.get_previewer(torch.device("cpu"), base_model.latent_format)
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = decoder.decode(x0)
    theirs = np.asarray(previewer.decode_latent_to_preview(x0))
    assert ours.shape == (2, 64, 64, 3)
    assert np.array_equal((ours[0] * 255).to(torch.uint8).numpy(), theirs)  # same truncation as preview_to_image
    assert not torch.allclose(ours[0], ours[1])  # it depends on the latent


def test_reward_input_size_shrinks_checks_not_outputs(fk_pack, oracle, tiny_vae, with_taesd):
    reward = RecordingReward(input_size=16)
    out = run_node(fk_pack, oracle, tiny_vae, reward, "TAESD")
    assert all(images.shape[1:3] == (16, 16) for images in reward.calls)  # checks and the final scoring
    assert out["all"].shape[1:3] == (32, 32)  # the outputs stay full size


def test_cost_per_check_and_totals_in_trace_and_text(fk_pack, oracle, tiny_vae, with_taesd):
    out = run_node(fk_pack, oracle, tiny_vae, RecordingReward(), "TAESD")
    trace = out["trace"]
    steps = trace["steps"]
    assert steps
    for step in steps:
        assert set(step["cost"]) == {"model_s", "decode_s", "reward_s"}
        assert all(value >= 0.0 for value in step["cost"].values())
    cost = trace["cost"]
    assert cost["checks"] == len(steps)
    assert cost["decode_s"] == pytest.approx(sum(s["cost"]["decode_s"] for s in steps))
    assert cost["reward_s"] == pytest.approx(sum(s["cost"]["reward_s"] for s in steps))
    assert cost["model_s"] >= sum(s["cost"]["model_s"] for s in steps)  # plus the last segment
    assert cost["model_s"] > 0.0 and cost["final_decode_s"] > 0.0
    assert out["text"].splitlines()[1].startswith("cost: model ")
    assert f"{len(steps)} checks, TAESD (taesd_decoder.safetensors) previews: decode " in out["text"]


def test_live_hook_sees_cost_and_check_images(fk_pack, oracle, tiny_vae, with_taesd, monkeypatch):
    seen = []
    hooks = types.SimpleNamespace(on_potential_step=lambda event, images: seen.append((dict(event.cost), images)))
    monkeypatch.setattr(fk_pack.nodes.sampler, "live_callbacks", lambda node_id: hooks)
    run_node(fk_pack, oracle, tiny_vae, RecordingReward(), "TAESD")
    assert len(seen) == number_of_checks(fk_pack)
    assert all(set(cost) == {"model_s", "decode_s", "reward_s"} and is_taesd_image(images) for cost, images in seen)


def test_outputs_on_device_restores_the_vae(fk_pack, tiny_vae):
    import torch

    saved = tiny_vae.output_device
    with fk_pack.fk_core.outputs_on_device(tiny_vae):
        assert tiny_vae.output_device == tiny_vae.device
        images = tiny_vae.decode(torch.zeros(1, 4, SIZE, SIZE))
    assert images.device == torch.device(tiny_vae.device)
    assert tiny_vae.output_device == saved


def test_unknown_choice_is_refused(fk_pack, oracle, tiny_vae):
    with pytest.raises(fk_pack.fk_core.FKError,
                       match="FK Particle Sampler: preview_decoder has an unknown value 'tiny'"):
        run_node(fk_pack, oracle, tiny_vae, RecordingReward(), "tiny")


# --------------------------------------------------------------------------------------------------- agreement


def load_agreement_script():
    """bench/taesd_agreement.py as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "taesd_agreement.py"
    spec = importlib.util.spec_from_file_location("taesd_agreement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agreement_statistics():
    taesd_agreement = load_agreement_script()
    same = taesd_agreement.agreement([1.0, 2.0, 4.0], [0.1, 0.2, 0.4])
    assert same == {"pearson": pytest.approx(1.0), "spearman": pytest.approx(1.0), "same_best": 1.0, "regret": 0.0}
    flipped = taesd_agreement.agreement([1.0, 2.0, 4.0], [4.0, 2.0, 1.0])
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["same_best"] == 0.0
    spread = (sum((v - 7 / 3) ** 2 for v in (1.0, 2.0, 4.0)) / 3) ** 0.5
    assert flipped["regret"] == pytest.approx((4.0 - 1.0) / spread)
    assert taesd_agreement.ranks([3.0, 1.0, 3.0]) == [1.5, 0.0, 1.5]


@pytest.mark.slow
def test_agreement_script_runs_on_a_checkpoint(fk_pack, vae_approx, tmp_path, capsys):
    """bench/taesd_agreement.py end to end on a thin SD1.5 checkpoint, a random TAESD and a pixel reward."""
    import torch

    taesd_agreement = load_agreement_script()
    torch.save(taesd_decoder_state_dict(constant=False), vae_approx / "taesd_decoder.pth")  # as published
    ckpt = comfy_host.write_thin_sd15_checkpoint(tmp_path / "thin.safetensors")
    rows = taesd_agreement.main(["--ckpt", str(ckpt), "--reward", "contrast", "--particles", "3", "--steps", "5",
                                 "--seeds", "0", "--size", "64", "--cfg", "1.0", "--cpu"])
    assert [row["step"] for row in rows] == list(fk_pack.fk_core.schedule.potential_steps(5, 1, 0.2, 1.0))
    assert all(-1.0 <= row["pearson"] <= 1.0 for row in rows if row["pearson"] == row["pearson"])
    out = capsys.readouterr().out
    assert "TAESD (taesd_decoder.pth)" in out and "agreement: mean pearson=" in out


def test_formats_without_an_image_taesd(fk_pack, tiny_vae, with_taesd):
    """SD x4 upscaler latents have no TAESD (ComfyUI names none): auto keeps the full VAE, TAESD says why."""
    import types

    import comfy.latent_formats
    import torch

    pd = fk_pack.nodes.preview_decoder
    base_model = types.SimpleNamespace(latent_format=comfy.latent_formats.SD_X4())
    decoder, note = pd.choose_preview_decoder("auto", tiny_vae, base_model, torch.device("cpu"), "FK Sampler")
    assert decoder.label == "full VAE" and note is None
    with pytest.raises(fk_pack.fk_core.FKError, match=r"^FK Sampler: preview_decoder TAESD has no decoder for this "
                                                      r"model's latent format \(SD_X4\); choose auto or full VAE"):
        pd.choose_preview_decoder("TAESD", tiny_vae, base_model, torch.device("cpu"), "FK Sampler")
