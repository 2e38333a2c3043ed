"""Every sampler name of the host through FK Particle Sampler, with and without chunking.

Each name in ``comfy.samplers.SAMPLER_NAMES`` (whatever the host version, plus names other packs add) either
runs — as itself when it is stochastic, as a stochastic sibling when it is deterministic — or is refused with
an FKError that says why and what to pick. CFG > 1 with the real tiny UNet, so CFG++ samplers' post-CFG hooks
see different conditional and unconditional predictions.
"""

from __future__ import annotations

import json

import comfy_host
import pytest

pytestmark = pytest.mark.host

N = 4
STEPS = 4
SIZE = 4
CHUNK = 3  # not a divisor of N: the last chunk is smaller


def _host_sampler_names():
    path, _reason = comfy_host.locate_comfyui()
    if path is None:
        return ["euler_ancestral"]  # the fixtures skip with the reason
    return comfy_host.host_sampler_names(path)


def run(fk, model, vae, sampler, chunk, cfg=3.0, seed=3):
    import torch

    with torch.inference_mode():
        out = fk.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=comfy_host.tiny_conditioning(), negative=comfy_host.tiny_conditioning(seed=1),
            latent_image=comfy_host.empty_latent(1, SIZE), vae=vae, reward=comfy_host.ModeReward(vae, SIZE),
            seed=seed, steps=STEPS, cfg=cfg, sampler_name=sampler, scheduler="normal", denoise=1.0,
            particles=N, particle_chunk=chunk, potential=fk.fk_core.FKConfig(lambda_mode="fixed", lmbda=5.0, every=1,
                                                                          window=(0.0, 1.0), copy_variety=(1.0, 0.0)))
    best_latent, _image, _sheet, _all, trace = out.result
    trace = json.loads(trace)
    lines, notes = out.ui["text"][0].split("\n"), trace["notes"]  # chosen particle, cost, summary, then notes
    assert lines[1].startswith("cost: ")
    assert not notes or lines[-len(notes):] == notes  # every note of the run is shown on the node, last
    return best_latent["samples"], trace


@pytest.mark.parametrize("chunk", [0, CHUNK], ids=["whole-batch", "chunked"])
@pytest.mark.parametrize("sampler", _host_sampler_names())
def test_every_host_sampler_runs_or_is_refused_with_advice(fk_pack, tiny_models, tiny_vae, sampler, chunk):
    import torch

    fk = fk_pack
    model, counter = comfy_host.counting_model(tiny_models("eps"))
    try:
        samples, trace = run(fk, model, tiny_vae, sampler, chunk)
    except fk.fk_core.FKError as err:
        message = str(err)
        assert sampler in message and ("pick" in message.lower() or "choose" in message.lower()), message
        return
    assert samples.shape == (1, 4, SIZE, SIZE) and torch.isfinite(samples).all()
    used = trace["sampler"]["used"]
    assert fk.nodes.sampler_choice.probe_sampler(used)[0], f"{sampler} ran as {used}, which is not stochastic"
    assert (used == sampler) == (trace["sampler"]["note"] is None)
    assert len(trace["steps"]) == STEPS - 2  # potential steps 1 .. STEPS-2 (never the first or last)
    if chunk:
        assert max(counter.batch_sizes) <= 2 * CHUNK  # cond + uncond of one chunk at most


def test_a_sampler_another_pack_adds_is_judged_by_what_it_does(fk_pack, tiny_models, tiny_vae, monkeypatch):
    """Packs add names to KSAMPLER_NAMES/SAMPLER_NAMES at import: a noisy one runs, a deterministic one without a
    stochastic sibling is refused with advice."""
    import comfy.k_diffusion.sampling as kds
    import comfy.samplers

    fk = fk_pack

    def sample_pack_noisy(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        return kds.sample_euler_ancestral(model, x, sigmas, extra_args=extra_args, callback=callback,
                                          disable=disable, noise_sampler=noise_sampler)

    def sample_pack_plain(model, x, sigmas, extra_args=None, callback=None, disable=None):
        return kds.sample_euler(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable)

    for name, fn in (("pack_noisy", sample_pack_noisy), ("pack_plain", sample_pack_plain)):
        monkeypatch.setattr(kds, f"sample_{name}", fn, raising=False)
    monkeypatch.setattr(comfy.samplers, "KSAMPLER_NAMES", comfy.samplers.KSAMPLER_NAMES + ["pack_noisy", "pack_plain"])
    monkeypatch.setattr(comfy.samplers, "SAMPLER_NAMES", comfy.samplers.SAMPLER_NAMES + ["pack_noisy", "pack_plain"])
    fk.nodes.sampler_choice.probe_sampler.cache_clear()
    try:
        model, _ = comfy_host.counting_model(tiny_models("eps"))
        _samples, trace = run(fk, model, tiny_vae, "pack_noisy", 0)
        assert trace["sampler"] == {"requested": "pack_noisy", "used": "pack_noisy", "note": None}
        with pytest.raises(fk.fk_core.FKError, match="pack_plain.*deterministic.*Pick a stochastic sampler"):
            run(fk, model, tiny_vae, "pack_plain", 0)
    finally:
        fk.nodes.sampler_choice.probe_sampler.cache_clear()


CFG_PP = ["euler_ancestral_cfg_pp", "dpmpp_2s_ancestral_cfg_pp", "res_multistep_ancestral_cfg_pp"]


@pytest.mark.parametrize("sampler", CFG_PP)
def test_cfg_pp_samples_with_the_x0_reuse_equal_those_without(fk_pack, tiny_models, tiny_vae, sampler,
                                                               monkeypatch):
    """CFG++ samplers record the unconditional prediction in a post-CFG hook at each model call: the reuse of a
    potential step's x0 must not skip that call (it made samples differ by up to 0.53)."""
    import functools

    import torch

    fk = fk_pack
    model, counter = comfy_host.counting_model(tiny_models("eps"))
    with_reuse, trace = run(fk, model, tiny_vae, sampler, 0)
    calls_with_reuse = counter.calls
    counter.reset()
    real_run_segments = fk.nodes.fk_run.run_segments
    monkeypatch.setattr(fk.nodes.fk_run, "run_segments", functools.partial(real_run_segments, reuse_x0=False))
    without_reuse, _ = run(fk, model, tiny_vae, sampler, 0)
    assert torch.equal(with_reuse, without_reuse)
    assert calls_with_reuse == counter.calls  # the sampler's hooks forced a real call at every segment start
    assert any("extra model evaluation" in note for note in trace["notes"])


@pytest.mark.parametrize("sampler", CFG_PP)
def test_cfg_pp_chunked_equals_whole_batch(fk_pack, oracle_model, tiny_vae, sampler):
    """Chunking runs the CFG++ hook once on the whole batch (it saw only the last chunk: a shape error). With the
    per-row oracle denoiser chunking changes no number at all."""
    import torch

    fk = fk_pack
    model, _ = oracle_model("eps")
    whole, _ = run(fk, model, tiny_vae, sampler, 0)
    chunked, trace = run(fk, model, tiny_vae, sampler, CHUNK)
    assert trace["particle_chunk"] == CHUNK
    assert torch.equal(whole, chunked)


def test_the_parametrisation_covers_every_host_sampler(fk_pack):
    import comfy.samplers

    assert set(comfy.samplers.SAMPLER_NAMES) <= set(_host_sampler_names())
