"""What newer ComfyUI hosts and other models changed under the pack (issue 12, items 1–9), each in the real host.

Items 2 and 5 (every sampler, CFG++) are in test_all_samplers.py; item 8 (segment seeds) in test_engine.py.
"""

from __future__ import annotations

import json

import comfy_host
import pytest

pytestmark = pytest.mark.host

SIZE = 4
STEPS = 6


def run_node(fk, model, vae, *, particles=4, chunk=0, latent=None, positive=None, negative=None, cfg=1.0, seed=2,
             reward=None, sampler="euler_ancestral", denoise=1.0, size=SIZE, potential=None):
    import torch

    with torch.inference_mode():
        out = fk.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=positive or comfy_host.tiny_conditioning(),
            negative=negative or comfy_host.tiny_conditioning(seed=1),
            latent_image=latent or comfy_host.empty_latent(1, size), vae=vae,
            reward=reward or comfy_host.ModeReward(vae, size), seed=seed, steps=STEPS, cfg=cfg,
            sampler_name=sampler, scheduler="normal", denoise=denoise, particles=particles, particle_chunk=chunk,
            potential=potential or fk.fk_core.FKConfig(lambda_mode="fixed", lmbda=10.0, every=2,  # schedule's checks
                                                       copy_variety=(1.0, 0.0)))
    best_latent, _image, _sheet, all_images, trace = out.result
    return best_latent, all_images, json.loads(trace)


# ------------------------------------------------------------------------- 1: PREPARE_SAMPLING wrapper arguments


def test_memory_estimate_wrapper_passes_newer_host_arguments_on(fk_pack):
    """Since ComfyUI 0.14 PREPARE_SAMPLING wrappers get force_full_load= and force_offload= (a TypeError before)."""
    seen = []

    def executor(model, noise_shape, conds, model_options=None, force_full_load=False, force_offload=False):
        seen.append((tuple(noise_shape), model_options, force_full_load, force_offload))
        return "prepared"

    wrapper = fk_pack.nodes.memory.chunked_memory_estimate(4)
    result = wrapper(executor, "model", (12, 4, 8, 8), {}, model_options={"a": 1}, force_full_load=True,
                     force_offload=True)
    assert result == "prepared"
    assert seen == [((4, 4, 8, 8), {"a": 1}, True, True)]  # sized for one chunk, the rest passed on unchanged


# ------------------------------------------------------------------------- 3: latent downscale ratios


def test_empty_latent_is_sized_and_cleaned_like_ksampler(comfy_nodes, fk_pack, oracle_model, tiny_vae):
    """EmptyLatentImage (0.11+) puts its downscale ratio in the LATENT; KSampler resizes an empty latent for a
    model with another ratio and drops the key. Here the latent claims 4x against the tiny model's 8x."""
    import torch

    model, _ = oracle_model("eps")
    latent = {"samples": torch.zeros(1, 4, 2 * SIZE, 2 * SIZE), "downscale_ratio_spacial": 4}
    with torch.inference_mode():
        plain = comfy_nodes.KSampler().sample(model, 1, 2, 1.0, "euler_ancestral", "normal",
                                              comfy_host.tiny_conditioning(), comfy_host.tiny_conditioning(seed=1),
                                              dict(latent))[0]
    size = plain["samples"].shape[-1]  # 2·SIZE on hosts before 0.11 (no resizing), SIZE after
    best_latent, _, _ = run_node(fk_pack, model, tiny_vae, latent=dict(latent),
                                 reward=comfy_host.ModeReward(tiny_vae, size))
    assert best_latent["samples"].shape == plain["samples"].shape
    assert "downscale_ratio_spacial" not in best_latent


# ------------------------------------------------------------------------- 4: dynamic VRAM


def test_automatic_chunk_asks_the_model_patcher_for_free_memory(fk_pack, monkeypatch):
    """With dynamic VRAM only ModelPatcher.get_free_memory(device) knows what is free."""
    import comfy.model_management
    import torch

    class Patcher:
        load_device = torch.device("cpu")

        class model:  # noqa: N801 (stands in for the patcher's BaseModel)
            @staticmethod
            def memory_required(shape):
                return 1000 * shape[0]

        @staticmethod
        def get_free_memory(device):
            return 8000

    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *a, **k: 10**12)
    # 8000 bytes free, 80% usable, 1000 bytes per row for cond and uncond each: 3 particles per chunk
    assert fk_pack.nodes.memory.automatic_chunk(Patcher(), torch.zeros(64, 4, 8, 8)) == 3


def test_reward_runs_before_the_unet_is_reloaded(fk_pack, oracle_model, tiny_vae, monkeypatch):
    """Order at a potential step: decode, score (a learned reward loads its model), then reload the sampling
    models; reloading first let the reward's model evict the UNet right before the next segment. After the
    final scoring nothing is reloaded: sampling is over."""
    import comfy.model_management

    events = []
    real_load = comfy.model_management.load_models_gpu
    monkeypatch.setattr(comfy.model_management, "load_models_gpu",
                        lambda *a, **k: (events.append("load"), real_load(*a, **k))[1])

    class RecordingVae:
        def decode(self, latents):
            images = tiny_vae.decode(latents)  # the VAE loads itself inside
            events.append("decoded")
            return images

    base = comfy_host.ModeReward(tiny_vae, SIZE)

    def reward(images):
        events.append("reward")
        return base(images)

    model, _ = oracle_model("eps")
    _, _, trace = run_node(fk_pack, model, RecordingVae(), reward=reward)
    scoring = [i for i, e in enumerate(events) if e == "reward"]
    assert len(scoring) == len(trace["steps"]) + 1
    for i in scoring[:-1]:  # every potential step: decoded -> reward -> load, nothing loaded in between
        assert events[i - 1] == "decoded" and events[i + 1] == "load", events
    assert events[scoring[-1] - 1] == "decoded" and "load" not in events[scoring[-1]:], events


# ------------------------------------------------------------------------- 6: FK Sampler particle noise


def test_sampler_path_particles_start_from_different_noise(fk_pack, tiny_models, tiny_vae):
    """Particle 0 keeps ComfyUI's noise; particle 1 used to start from exactly the same noise."""
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    def first_inputs(seed):
        model = tiny_models("eps").clone()
        inputs = []

        def wrapper(apply_model, args):
            inputs.append(args["input"].clone())
            return apply_model(args["input"], args["timestep"], **args["c"])

        model.set_model_unet_function_wrapper(wrapper)
        fk_sampler = fk_pack.nodes.sampler.FKSampler.execute(
            vae=tiny_vae, reward=comfy_host.ModeReward(tiny_vae, SIZE), particles=3, sampler_name="euler_ancestral",
            potential=fk_pack.fk_core.FKConfig(lambda_mode="fixed", lmbda=0.0)).result[0]
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 3)
        with torch.inference_mode():
            SamplerCustom().sample(model, True, seed, 1.0, comfy_host.tiny_conditioning(),
                                   comfy_host.tiny_conditioning(), fk_sampler, sigmas, comfy_host.empty_latent(1, SIZE))
        return inputs[0]

    x = first_inputs(7)
    assert x.shape[0] == 3
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2])
    assert torch.equal(x, first_inputs(7))  # still fixed by the seed


# ------------------------------------------------------------------------- 7: inpainting models


@pytest.fixture(scope="module")
def inpaint_model(comfy_nodes):
    return comfy_host.build_tiny_model("eps", inpaint=True)


@pytest.mark.parametrize("chunk", [0, 2], ids=["whole-batch", "chunked"])
def test_inpainting_model_with_concat_conditioning_is_accepted(fk_pack, tiny_vae, inpaint_model, chunk):
    """SD1.5/SDXL-inpainting style models get c_concat (mask + masked image) sized to the particle batch: that is
    noise-shaped conditioning, not a batch of prompts."""
    import torch

    model = inpaint_model
    source = torch.full((1, 4, SIZE, SIZE), -1.0 / 0.18215)
    mask = torch.zeros(1, SIZE * 8, SIZE * 8)
    mask[:, :, SIZE * 4:] = 1.0  # repaint the right half
    extras = {"concat_latent_image": source, "concat_mask": mask}  # what InpaintModelConditioning adds
    positive = [[comfy_host.tiny_conditioning()[0][0], dict(extras)]]
    negative = [[comfy_host.tiny_conditioning(seed=1)[0][0], dict(extras)]]
    latent = {"samples": source, "noise_mask": mask}
    best_latent, all_images, trace = run_node(fk_pack, model, tiny_vae, latent=latent, positive=positive,
                                              negative=negative, cfg=2.0, particles=3, chunk=chunk)
    assert all_images.shape[0] == 3 and len(trace["steps"]) >= 1
    kept = best_latent["samples"][..., : SIZE // 2]
    assert torch.allclose(kept, source[..., : SIZE // 2], atol=1e-4)  # the unmasked half is the source


def test_prompt_batch_is_still_refused_next_to_noise_shaped_conditioning(fk_pack, tiny_vae, inpaint_model):
    model = inpaint_model
    with pytest.raises(fk_pack.fk_core.FKError, match="batch of 2 prompts"):
        run_node(fk_pack, model, tiny_vae, positive=comfy_host.tiny_conditioning(batch=2))


# ------------------------------------------------------------------------- 9: chunked vs whole batch


def test_chunking_changes_no_number_with_a_per_row_denoiser(fk_pack, oracle_model, tiny_vae):
    """FK's own handling of chunks is exact: with the analytic (per-row) oracle the results are bit-identical."""
    import torch

    model, _ = oracle_model("eps")
    whole = run_node(fk_pack, model, tiny_vae, particles=6, cfg=2.0)
    chunked = run_node(fk_pack, model, tiny_vae, particles=6, cfg=2.0, chunk=4)
    assert torch.equal(whole[0]["samples"], chunked[0]["samples"]) and torch.equal(whole[1], chunked[1])
    assert whole[2]["final_rewards"] == chunked[2]["final_rewards"]


def test_chunking_with_a_real_unet_differs_only_by_rounding(fk_pack, tiny_models, tiny_vae):
    """A real network's kernels round differently for different batch sizes (README: Compatibility), as plain
    KSampler's results do when the batch size changes. 16 particles in chunks of 5 (8x8 latents, dpmpp_2m_sde,
    CFG 3): measured up to 6e-4 in the decoded images on CPU. λ = 0 keeps the particles in place, so the bound
    compares the same particle's image in both runs; a wrong chunk (a particle evaluated with another's input)
    would differ by O(0.1)."""
    import torch

    model, _ = comfy_host.counting_model(tiny_models("eps"))
    config = fk_pack.fk_core.FKConfig(lambda_mode="fixed", lmbda=0.0, every=2)
    runs = [run_node(fk_pack, model, tiny_vae, particles=16, cfg=3.0, chunk=chunk, size=8, potential=config,
                     sampler="dpmpp_2m_sde") for chunk in (0, 5)]
    (_, whole, whole_trace), (_, chunked, chunked_trace) = runs
    assert chunked_trace["particle_chunk"] == 5
    by_particle = [images[torch.argsort(torch.tensor(trace["order"]))]
                   for images, trace in ((whole, whole_trace), (chunked, chunked_trace))]
    delta = (by_particle[0] - by_particle[1]).abs().max().item()
    assert delta <= 5e-3, delta
