"""Video latents [B, C, T, H, W] through both FK samplers in the real ComfyUI host: tiny Wan 2.1, HunyuanVideo and
LTXV models built from ComfyUI's own classes (random weights; all flow / CONST, the only kind these families
have), decoded by a Wan 2.1 VAE (real architecture, random weights; it also decodes the 16-channel Hunyuan
latents here) or a one-block LTXV VAE, chunked and unchunked, with the same model calls as KSampler on a plain
batch; the user's report of a video latent sent into an image model; per-frame reward settings, bad video
inputs and the host's video TAE.
"""

from __future__ import annotations

import json

import comfy_host
import pytest

pytestmark = pytest.mark.host

N = 4
STEPS = 4
# features only ComfyUI 0.33+ has: on older hosts these tests do not apply (strict CI accepts only this reason)
NO_NESTED = "not applicable: this host has no nested latents (ComfyUI < 0.33)"
NO_VIDEO_TAE = "not applicable: this host has no video TAE (ComfyUI < 0.33)"


@pytest.fixture(scope="module")
def wan(comfy_nodes):
    return comfy_host.build_tiny_wan()


@pytest.fixture(scope="module")
def hunyuan(comfy_nodes):
    return comfy_host.build_tiny_hunyuan_video()


@pytest.fixture(scope="module")
def ltxv(comfy_nodes):
    return comfy_host.build_tiny_ltxv()


@pytest.fixture(scope="module")
def ltxv_vae(comfy_nodes):
    return comfy_host.build_ltxv_vae()


# family: (model fixture, VAE fixture, latent channels, decoded frames and side of the 2-frame 2x2 latent)
FAMILIES = {"wan": ("wan", "wan_vae", 16, 5, 16), "hunyuan": ("hunyuan", "wan_vae", 16, 5, 16),
            "ltxv": ("ltxv", "ltxv_vae", 128, 2, 8)}


def family_setup(request, family: str):
    model_name, vae_name, channels, frames, side = FAMILIES[family]
    latent = comfy_host.empty_video_latent(channels=channels)
    return request.getfixturevalue(model_name), request.getfixturevalue(vae_name), latent, frames, side


@pytest.fixture(scope="module")
def wan_vae(comfy_nodes):
    return comfy_host.build_wan_vae()


class Brightness:
    """An image reward: mean brightness of each image [B, H, W, C] -> [B]; records the shapes it saw."""

    name = "brightness"

    def __init__(self):
        self.shapes = []

    def __call__(self, images):
        self.shapes.append(tuple(images.shape))
        assert images.ndim == 4, images.shape
        return images.float().mean(dim=(1, 2, 3))


def run_particle_sampler(fk, model, vae, reward, latent, *, chunk=0, particles=N, preview="auto", seed=1,
                         family="wan"):
    import torch

    with torch.inference_mode():
        out = fk.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=comfy_host.video_conditioning(family),
            negative=comfy_host.video_conditioning(family, 1),
            latent_image=latent, vae=vae, reward=reward, seed=seed, steps=STEPS, cfg=1.0,
            sampler_name="euler_ancestral", scheduler="normal", denoise=1.0, particles=particles,
            particle_chunk=chunk, potential=fk.fk_core.FKConfig(lmbda=10.0, lambda_mode="fixed", every=2),
            preview_decoder=preview)
    best_latent, best_image, sheet, all_images, trace = out.result
    return {"latent": best_latent, "image": best_image, "sheet": sheet, "all": all_images,
            "trace": json.loads(trace)}


def plain_batch_rows(comfy_nodes, patcher, family: str, latent: dict) -> int:
    """Rows the model evaluates when ComfyUI's own KSampler samples a plain batch of N such clips (cfg 1)."""
    import torch

    model, counter = comfy_host.counting_model(patcher)
    batch = {"samples": latent["samples"].expand(N, -1, -1, -1, -1).clone()}
    with torch.inference_mode():
        comfy_nodes.KSampler().sample(model, 1, STEPS, 1.0, "euler_ancestral", "normal",
                                comfy_host.video_conditioning(family), comfy_host.video_conditioning(family, 1),
                                batch)
    return counter.rows


def test_video_latent_into_image_model_is_refused_by_name(fk_pack, tiny_models, tiny_vae):
    """The user's report: EmptyHunyuanLatentVideo into FK Particle Sampler with an image model ended in
    'RuntimeError: Expected 3D (unbatched) or 4D (batched) input to conv2d'."""
    latent = comfy_host.empty_video_latent(frames=5, size=32)
    with pytest.raises(fk_pack.fk_core.FKError) as err:
        run_particle_sampler(fk_pack, tiny_models("eps"), tiny_vae, Brightness(), latent, particles=3)
    text = str(err.value)
    assert text.startswith("FK Particle Sampler: latent_image ") and "video" in text and "image model" in text


@pytest.mark.parametrize("chunk", [0, 1])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_video_particles_through_particle_sampler(comfy_nodes, fk_pack, request, family, chunk):
    patcher, vae, latent, frames, side = family_setup(request, family)
    model, counter = comfy_host.counting_model(patcher)
    reward = Brightness()
    out = run_particle_sampler(fk_pack, model, vae, reward, latent, chunk=chunk, family=family)
    assert out["latent"]["samples"].shape == latent["samples"].shape
    assert counter.rows == plain_batch_rows(comfy_nodes, patcher, family, latent) == STEPS * N  # as KSampler
    if chunk:
        assert set(counter.batch_sizes) == {1}
    assert out["image"].shape == (frames, side, side, 3)  # the best particle's frames, an IMAGE batch
    assert len(out["trace"]["final_rewards"]) == N
    # every reward call: 4 frames (or all, when fewer) of each particle in the sub-batch, in one call
    scored = min(4, frames)
    assert reward.shapes and all(shape[0] % scored == 0 and shape[1:] == (side, side, 3) for shape in reward.shapes)
    video = out["trace"]["video"]
    assert video["latent_frames"] == 2 and video["combine"] == "mean"
    assert video["frames_scored"] == ([0, 1, 3, 4] if frames == 5 else list(range(frames)))
    assert out["all"].shape == (N * frames, side, side, 3)
    sheet = out["sheet"]  # one row per particle: the scored frames side by side, N rows
    assert sheet.shape[2] < 2 * scored * side and sheet.shape[1] > N * side


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_video_particles_through_sampler_custom(fk_pack, request, family):
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    patcher, vae, latent, _frames, _side = family_setup(request, family)
    model, counter = comfy_host.counting_model(patcher)
    with torch.inference_mode():
        fk_sampler = fk_pack.nodes.sampler.FKSampler.execute(
            vae=vae, reward=Brightness(), particles=N, sampler_name="euler_ancestral", particle_chunk=2,
            potential=fk_pack.fk_core.FKConfig(lmbda=10.0, lambda_mode="fixed", every=2),
            **{"return": "all particles (sorted by reward)"}).result[0]
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS)
        out, _ = SamplerCustom().sample(model, True, 1, 1.0, comfy_host.video_conditioning(family),
                                        comfy_host.video_conditioning(family, 1), fk_sampler, sigmas, latent)
    assert out["samples"].shape == (N, *latent["samples"].shape[1:])
    assert counter.rows == STEPS * N and set(counter.batch_sizes) == {2}


def test_video_latent_into_image_model_on_sampler_custom_is_refused_by_name(fk_pack, tiny_models, tiny_vae):
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    model = tiny_models("eps")
    with torch.inference_mode():
        fk_sampler = fk_pack.nodes.sampler.FKSampler.execute(
            vae=tiny_vae, reward=Brightness(), particles=2, sampler_name="euler_ancestral").result[0]
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 2)
        with pytest.raises(fk_pack.fk_core.FKError, match=r"^FK Sampler: latent_image \(the sampler's input\) is "
                                                          r"a video latent .*image model"):
            SamplerCustom().sample(model, True, 1, 1.0, comfy_host.tiny_conditioning(),
                                   comfy_host.tiny_conditioning(seed=1), fk_sampler, sigmas,
                                   comfy_host.empty_video_latent(5, 32))


def test_video_reward_node_sets_frames_and_combine(fk_pack, wan, wan_vae):
    node = fk_pack.nodes.video_reward.FKVideoReward
    reward = node.execute(reward=Brightness(), frames=2, combine="min", smoothness=0.5).result[0]
    out = run_particle_sampler(fk_pack, wan, wan_vae, reward, comfy_host.empty_video_latent(), particles=2)
    video = out["trace"]["video"]
    assert video["frames_scored"] == [0, 4] and video["combine"] == "min" and video["smoothness"] == 0.5
    assert node.validate_inputs(frames=0, combine="mean", smoothness=0.0).startswith("FK Video Reward: frames ")
    assert node.validate_inputs(frames=4, combine="max", smoothness=0.0).startswith("FK Video Reward: combine ")


def test_smoothness_on_an_image_latent_is_refused_by_name(fk_pack, tiny_models, tiny_vae):
    reward = fk_pack.nodes.video_reward.FKVideoReward.execute(reward=Brightness(), smoothness=1.0).result[0]
    with pytest.raises(fk_pack.fk_core.FKError, match=r"^FK Particle Sampler: reward .*frame consistency, but the "
                                                      r"latent is an image.*set smoothness to 0"):
        run_particle_sampler(fk_pack, tiny_models("eps"), tiny_vae, reward, comfy_host.empty_latent(1, 4),
                             particles=2)


def test_nested_latent_is_refused_by_name(fk_pack, wan, wan_vae):
    nested_tensor = pytest.importorskip("comfy.nested_tensor", reason=NO_NESTED)
    import torch

    samples = nested_tensor.NestedTensor([torch.zeros(1, 16, 2, 2, 2), torch.zeros(1, 8, 4, 1)])
    with pytest.raises(fk_pack.fk_core.FKError, match=r"^FK Particle Sampler: latent_image is a nested latent "
                                                      r"\(several latents packed together: \[1, 16, 2, 2, 2\], "
                                                      r"\[1, 8, 4, 1\]\).*; sample it with KSampler"):
        run_particle_sampler(fk_pack, wan, wan_vae, Brightness(), {"samples": samples})


@pytest.fixture
def video_tae_file(comfy_nodes, tmp_path, monkeypatch):
    """A random-weight TAEHV (comfy.taesd.taehv, 16 latent channels, float32: what comfy.sd.VAE takes for
    lighttaew2_1) saved as models/vae_approx/lighttaew2_1.safetensors in a temporary vae_approx folder."""
    taehv = pytest.importorskip("comfy.taesd.taehv", reason=NO_VIDEO_TAE)
    import folder_paths
    import safetensors.torch

    folder = tmp_path / "vae_approx"
    folder.mkdir()
    extensions = folder_paths.folder_names_and_paths["vae_approx"][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "vae_approx", ([str(folder)], extensions))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    net = taehv.TAEHV(latent_channels=16, latent_format=None)
    comfy_host.init_weights_(net, 3)
    state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    safetensors.torch.save_file(state, str(folder / "lighttaew2_1.safetensors"))
    return folder


def test_auto_preview_uses_the_hosts_video_tae_when_its_file_is_there(fk_pack, wan, wan_vae, video_tae_file):
    reward = Brightness()
    out = run_particle_sampler(fk_pack, wan, wan_vae, reward, comfy_host.empty_video_latent(), particles=2)
    cost = out["trace"]["cost"]
    assert cost["preview_decoder"] == "video TAE (lighttaew2_1.safetensors)"
    assert not any("full VAE" in note for note in out["trace"]["notes"])
    assert out["image"].shape == (5, 16, 16, 3)  # the final images: the full VAE's frames


def test_a_video_tae_file_that_does_not_load_is_named(fk_pack, wan, wan_vae, video_tae_file):
    import safetensors.torch
    import torch

    safetensors.torch.save_file({"not_a_taehv": torch.zeros(2)}, str(video_tae_file / "lighttaew2_1.safetensors"))
    with pytest.raises(fk_pack.fk_core.FKError, match=r"^FK Particle Sampler: preview_decoder could not load .*"
                                                      r"lighttaew2_1\.safetensors as a video TAE \(.*\); replace it "
                                                      r"with the file from github.com/madebyollin/taehv"):
        run_particle_sampler(fk_pack, wan, wan_vae, Brightness(), comfy_host.empty_video_latent(), particles=2)


def test_memory_estimate_counts_the_decoded_frames(fk_pack, wan_vae):
    import torch

    checks = fk_pack.fk_core.memory_estimate
    video, image = torch.zeros(1, 16, 2, 2, 2), torch.zeros(1, 16, 2, 2)
    frames_bytes = 16 * 16 * 3 * 4 * checks.IMAGE_COPIES  # one decoded 16x16 frame, in float32
    grown = checks.particle_memory_bytes(video, 3, wan_vae) - checks.particle_memory_bytes(image, 3, wan_vae)
    latent_growth = 3 * 16 * 2 * 2 * 4 * checks.LATENT_COPIES  # the second latent frame
    assert grown == latent_growth + 3 * (5 - 1) * frames_bytes  # 2 latent frames decode to 4·(2-1)+1 = 5


def test_image_latent_into_video_model_is_refused_by_name(fk_pack, wan, wan_vae):
    import torch

    with pytest.raises(fk_pack.fk_core.FKError, match=r"^FK Particle Sampler: latent_image has shape \[1, 16, 2, 2\], "
                                                      r"but the model is a video model.*EmptyHunyuanLatentVideo"):
        run_particle_sampler(fk_pack, wan, wan_vae, Brightness(), {"samples": torch.zeros(1, 16, 2, 2)})


def test_nested_latent_on_sampler_custom_is_refused_by_name(fk_pack, wan, wan_vae):
    nested_tensor = pytest.importorskip("comfy.nested_tensor", reason=NO_NESTED)
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    samples = nested_tensor.NestedTensor([torch.zeros(1, 16, 2, 2, 2), torch.zeros(1, 16, 1, 2, 2)])
    with torch.inference_mode():
        fk_sampler = fk_pack.nodes.sampler.FKSampler.execute(
            vae=wan_vae, reward=Brightness(), particles=2, sampler_name="euler_ancestral").result[0]
        sigmas = comfy.samplers.calculate_sigmas(wan.get_model_object("model_sampling"), "normal", 2)
        with pytest.raises(fk_pack.fk_core.FKError, match=r"^FK Sampler: latent_image \(the sampler's input\) is "
                                                          r"several latents packed into one \[1, 1, 192\].*nested"
                                                          r".*; sample it with KSampler"):
            SamplerCustom().sample(wan, True, 1, 1.0, comfy_host.video_conditioning(),
                                   comfy_host.video_conditioning(seed=1), fk_sampler, sigmas, {"samples": samples})
