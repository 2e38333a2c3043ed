"""FK steering inside the real ComfyUI host (in-process): oracle steering, model-call counting, determinism,
chunking, cancel, refused inputs, img2img / inpainting, the live-UI hook.

The oracle denoiser is an analytic two-mode posterior mean (modes at latent mean +1 / -1): plain sampling puts
about half the particles in each mode; a reward favouring the +1 mode must move (almost) all of them there.
Latents are 4x4 (32 px) to keep the real TAESD decode cheap on CPU.
"""

from __future__ import annotations

import json
import types

import comfy_host
import pytest

pytestmark = pytest.mark.host

N = 16
STEPS = 8
SIZE = 4


@pytest.fixture(scope="module")
def fk(fk_pack):
    """The pack's modules as ComfyUI loaded them."""
    return fk_pack


@pytest.fixture(scope="module")
def vae(tiny_vae):
    return tiny_vae


def run_node(fk, model, vae, reward, *, seed=1, steps=STEPS, cfg=1.0, sampler="euler_ancestral", particles=N,
             potential=None, latent=None, denoise=1.0, chunk=0, positive=None, negative=None):
    import torch

    # checks where the schedule says: the copy-variety stop (fk_core.window) would read the random-weight model's
    # x0 scale, which says nothing about a real model
    config = potential if potential is not None else fk.fk_core.FKConfig(lmbda=20.0, lambda_mode="fixed", every=2,
                                                                         copy_variety=(1.0, 0.0))
    with torch.inference_mode():
        out = fk.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=positive or comfy_host.tiny_conditioning(),
            negative=negative or comfy_host.tiny_conditioning(seed=1),
            latent_image=latent or comfy_host.empty_latent(1, SIZE), vae=vae, reward=reward, seed=seed,
            steps=steps, cfg=cfg, sampler_name=sampler, scheduler="normal", denoise=denoise,
            particles=particles, particle_chunk=chunk, potential=config)
    best_latent, best_image, sheet, all_images, trace = out.result
    return {"latent": best_latent, "image": best_image, "sheet": sheet, "all": all_images,
            "trace": json.loads(trace), "ui": out.ui}


def run_sampler_path(fk, model, vae, reward, *, seed=1, steps=STEPS, cfg=1.0, sampler="euler_ancestral",
                     particles=N, returns="all particles (sorted by reward)", latent=None):
    """FK Sampler plugged into ComfyUI's own SamplerCustom node."""
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    with torch.inference_mode():
        fk_sampler = fk.nodes.sampler.FKSampler.execute(
            vae=vae, reward=reward, particles=particles, sampler_name=sampler, particle_chunk=0,
            potential=fk.fk_core.FKConfig(lmbda=20.0, lambda_mode="fixed", every=2), **{"return": returns}).result[0]
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", steps)
        out, _denoised = SamplerCustom().sample(model, True, seed, cfg, comfy_host.tiny_conditioning(),
                                                comfy_host.tiny_conditioning(seed=1), fk_sampler, sigmas,
                                                latent or comfy_host.empty_latent(1, SIZE))
    return out["samples"], fk_sampler


def plain_share(comfy_nodes, model, sampler, seed=1, n=N):
    import torch

    with torch.inference_mode():
        out = comfy_nodes.KSampler().sample(model, seed, STEPS, 1.0, sampler, "normal",
                                            comfy_host.tiny_conditioning(), comfy_host.tiny_conditioning(seed=1),
                                            comfy_host.empty_latent(n, SIZE))[0]
    return comfy_host.positive_mode_share(out["samples"])


# --------------------------------------------------------------------------------------------------- steering


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_particle_sampler_moves_particles_to_rewarded_mode(comfy_nodes, fk, oracle_model, vae, kind, sampler):
    model, _ = oracle_model(kind)
    reward = comfy_host.ModeReward(vae, SIZE)
    # Without steering both modes are populated (Binomial(16, ~1/2): P(share > 0.85) < 0.5%).
    assert plain_share(comfy_nodes, model, sampler) <= 0.85
    out = run_node(fk, model, vae, reward, sampler=sampler)
    rewards = out["trace"]["final_rewards"]
    share = sum(r > 0 for r in rewards) / len(rewards)
    assert share >= 0.95, rewards
    assert comfy_host.positive_mode_share(out["latent"]["samples"]) == 1.0
    assert out["trace"]["sampler"]["used"] == sampler and out["trace"]["sampler"]["note"] is None


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_sampler_path_moves_particles_to_rewarded_mode(fk, oracle_model, vae, kind, sampler):
    model, _ = oracle_model(kind)
    samples, _ = run_sampler_path(fk, model, vae, comfy_host.ModeReward(vae, SIZE), sampler=sampler)
    assert samples.shape[0] == N  # "all particles" returns every particle, best first
    assert comfy_host.positive_mode_share(samples) >= 0.95


def test_sampler_path_best_particle_is_one_latent(fk, oracle_model, vae):
    model, counter = oracle_model("eps")
    samples, _ = run_sampler_path(fk, model, vae, comfy_host.ModeReward(vae, SIZE), returns="best particle")
    assert samples.shape == (1, 4, SIZE, SIZE)
    assert comfy_host.positive_mode_share(samples) == 1.0
    assert counter.rows == STEPS * N


def test_v_prediction_runs_and_steers(fk, oracle_model, vae):
    model, _ = oracle_model("v")
    out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE))
    assert comfy_host.positive_mode_share(out["latent"]["samples"]) == 1.0


# --------------------------------------------------------------------------------------------------- cost


@pytest.mark.parametrize("sampler,cfg", [("euler_ancestral", 1.0), ("dpmpp_2m_sde", 3.0), ("dpmpp_sde", 3.0)])
def test_no_extra_model_evaluations(comfy_nodes, fk, tiny_models, vae, sampler, cfg):
    """FK(N) evaluates the model exactly as often as plain sampling of the same N-batch (CFG included)."""
    import torch

    n = 6
    plain_model, plain = comfy_host.counting_model(tiny_models("eps"))
    with torch.inference_mode():
        comfy_nodes.KSampler().sample(plain_model, 1, STEPS, cfg, sampler, "normal",
                                      comfy_host.tiny_conditioning(), comfy_host.tiny_conditioning(seed=1),
                                      comfy_host.empty_latent(n, SIZE))
    fk_model, steered = comfy_host.counting_model(tiny_models("eps"))
    out = run_node(fk, fk_model, vae, comfy_host.ModeReward(vae, SIZE), sampler=sampler, cfg=cfg, particles=n)
    assert len(out["trace"]["steps"]) >= 3  # potential steps really happened
    assert steered.rows == plain.rows
    assert steered.calls == plain.calls


def test_chunking_splits_batch_without_extra_evaluations(fk, oracle_model, vae, monkeypatch):
    import comfy.sampler_helpers

    estimated = []
    real_estimate = comfy.sampler_helpers.estimate_memory

    def spy(model, noise_shape, conds):
        estimated.append(tuple(noise_shape))
        return real_estimate(model, noise_shape, conds)

    monkeypatch.setattr(comfy.sampler_helpers, "estimate_memory", spy)
    model, counter = oracle_model("eps")
    n, chunk = 12, 4
    out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE), particles=n, chunk=chunk)
    assert counter.rows == STEPS * n
    assert max(counter.batch_sizes) <= chunk
    assert estimated and estimated[0][0] == chunk  # ComfyUI reserves memory for one chunk, not all N
    assert out["trace"]["particle_chunk"] == chunk
    assert out["all"].shape[0] == n


# --------------------------------------------------------------------------------------------------- behaviour


def test_same_seed_same_images_other_seed_differs(fk, oracle_model, vae):
    import torch

    model, _ = oracle_model("eps")
    reward = comfy_host.ModeReward(vae, SIZE)
    a = run_node(fk, model, vae, reward, seed=5, particles=6, steps=6)
    b = run_node(fk, model, vae, reward, seed=5, particles=6, steps=6)
    c = run_node(fk, model, vae, reward, seed=6, particles=6, steps=6)
    assert torch.equal(a["all"], b["all"]) and torch.equal(a["latent"]["samples"], b["latent"]["samples"])
    assert a["trace"]["final_rewards"] == b["trace"]["final_rewards"]
    assert not torch.equal(a["all"], c["all"])


def test_deterministic_sampler_is_swapped_and_reported(fk, oracle_model, vae):
    model, _ = oracle_model("eps")
    out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE), sampler="euler", particles=4, steps=4)
    assert out["trace"]["sampler"] == {"requested": "euler", "used": "euler_ancestral",
                                       "note": out["trace"]["sampler"]["note"]}
    assert "deterministic" in out["trace"]["sampler"]["note"]
    assert any("euler_ancestral" in note for note in out["trace"]["notes"])
    assert any("deterministic" in text for text in out["ui"]["text"])


def test_outputs_shapes_order_and_preview(fk, oracle_model, vae):
    import torch

    model, _ = oracle_model("eps")
    out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE), particles=5, steps=4)
    rewards = torch.tensor(out["trace"]["final_rewards"])
    assert out["all"].shape == (5, 8 * SIZE, 8 * SIZE, 3)
    assert out["image"].shape == (1, 8 * SIZE, 8 * SIZE, 3)
    # all_particles is sorted by reward; the best image is the first of them (output mode "best")
    assert out["trace"]["order"] == torch.argsort(rewards, descending=True).tolist()
    assert torch.equal(out["image"][0], out["all"][0])
    assert out["trace"]["chosen_index"] == out["trace"]["best_index"] == int(rewards.argmax())
    assert out["sheet"].shape[0] == 1 and out["sheet"].shape[-1] == 3
    assert out["ui"]["images"] and out["ui"]["images"][0]["type"] == "temp"


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_img2img_and_inpainting_keep_unmasked_region(fk, oracle_model, vae, kind):
    import torch

    model, counter = oracle_model(kind)
    source = torch.full((1, 4, SIZE, SIZE), -1.0 / 0.18215)  # an image in the -1 mode (external latent space)
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, :, SIZE // 2:] = 1.0  # repaint the right half only
    latent = {"samples": source, "noise_mask": mask}
    out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE), latent=latent, denoise=0.6, particles=6)
    result = out["latent"]["samples"]
    assert torch.allclose(result[..., : SIZE // 2], source[..., : SIZE // 2], atol=1e-4)
    assert out["trace"]["num_steps"] == STEPS
    assert counter.rows == STEPS * 6
    assert out["latent"]["noise_mask"].shape[0] == 1


def test_live_hook_gets_already_decoded_images(fk, oracle_model, vae, monkeypatch):
    """on_potential_step(event, images) receives the images the reward scored (no second decode)."""
    model, _ = oracle_model("eps")
    reward = comfy_host.ModeReward(vae, SIZE)
    seen, finished = [], []

    def factory(node_id):
        return types.SimpleNamespace(
            on_start=lambda num_steps, particles: None,
            on_potential_step=lambda event, images: seen.append((event.step, images.shape[0], images.ndim == 4)),
            on_finish=lambda result: finished.append(result.best_index))

    monkeypatch.setattr(fk.nodes.sampler, "live_callbacks", factory)
    out = run_node(fk, model, vae, reward, particles=4)
    assert [s[0] for s in seen] == [step["step"] for step in out["trace"]["steps"]]
    assert all(count == 4 and is_image_batch for _, count, is_image_batch in seen)
    assert finished == [out["trace"]["best_index"]]
    assert reward.calls == len(seen) + 1  # one decode+score per potential step, one for the final particles


def test_live_hook_object_hears_the_start_with_step_count(fk, oracle_model, vae, monkeypatch):
    """live_callbacks(node_id) returns an object: on_start(num_steps, particles) lets the view say "step k of N"."""
    model, _ = oracle_model("eps")
    calls = []

    class Hooks:
        def on_start(self, num_steps, particles):
            calls.append(("start", num_steps, particles))

        def on_potential_step(self, event, images):
            calls.append(("step", event.step))

        def on_finish(self, result):
            calls.append(("finish", result.best_index))

    monkeypatch.setattr(fk.nodes.sampler, "live_callbacks", lambda node_id: Hooks())
    out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE), particles=4)
    assert calls[0] == ("start", STEPS, 4)
    assert [c[1] for c in calls if c[0] == "step"] == [step["step"] for step in out["trace"]["steps"]]
    assert calls[-1] == ("finish", out["trace"]["best_index"])


# --------------------------------------------------------------------------------------------------- cancel


def test_cancel_mid_run_raises_and_host_recovers(comfy_nodes, fk, oracle_model, vae):
    import comfy.model_management as mm

    model, counter = oracle_model("eps")
    base = comfy_host.ModeReward(vae, SIZE)

    class CancelOnSecondScore:
        name = "cancel"

        def __call__(self, images):
            if base.calls == 1:
                mm.interrupt_current_processing(True)  # what the Cancel button does
            return base(images)

    try:
        with pytest.raises(mm.InterruptProcessingException):
            run_node(fk, model, vae, CancelOnSecondScore(), particles=4)
    finally:
        mm.interrupt_current_processing(False)
    assert counter.rows < STEPS * 4  # stopped early
    out = run_node(fk, model, vae, base, particles=4)  # the host still works
    assert out["all"].shape[0] == 4


# --------------------------------------------------------------------------------------------------- refusals


def test_refuses_batched_conditioning(fk, oracle_model, vae):
    model, _ = oracle_model("eps")
    with pytest.raises(fk.fk_core.FKError, match="batch size 1"):
        run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE), positive=comfy_host.tiny_conditioning(batch=2))


def test_sampler_path_refuses_batched_conditioning(fk, oracle_model, vae):
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    model, _ = oracle_model("eps")
    fk_sampler = fk.nodes.sampler.FKSampler.execute(vae=vae, reward=comfy_host.ModeReward(vae, SIZE), particles=4,
                                                    sampler_name="euler_ancestral").result[0]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 4)
    with torch.inference_mode(), pytest.raises(fk.fk_core.FKError, match="batch size 1"):
        SamplerCustom().sample(model, True, 0, 2.0, comfy_host.tiny_conditioning(batch=3),
                               comfy_host.tiny_conditioning(), fk_sampler, sigmas, comfy_host.empty_latent(1, SIZE))


def test_sampler_path_refuses_latent_batch(fk, oracle_model, vae):
    model, _ = oracle_model("eps")
    with pytest.raises(fk.fk_core.FKError, match="latent batch is 2"):
        run_sampler_path(fk, model, vae, comfy_host.ModeReward(vae, SIZE), latent=comfy_host.empty_latent(2, SIZE))


@pytest.mark.parametrize("change,message", [
    ({"particles": 0}, "at least 1"),
    ({"denoise": 0.0}, "denoise"),
    ({"latent": {"samples": None}}, "ONE latent"),
    ({"reward": "not a reward"}, "FK_REWARD"),
    ({"potential": {"lambda": 3}}, "FK Potential Selector"),
])
def test_node_refuses_bad_inputs(fk, oracle_model, vae, change, message):
    import torch

    model, _ = oracle_model("eps")
    kwargs = {"reward": comfy_host.ModeReward(vae, SIZE)}
    kwargs.update(change)
    if "latent" in change:
        kwargs["latent"] = {"samples": torch.zeros(2, 4, SIZE, SIZE)}
    reward = kwargs.pop("reward")
    with pytest.raises(fk.fk_core.FKError, match=message):
        run_node(fk, model, vae, reward, **kwargs)


# --------------------------------------------------------------------------------------------------- selector


def test_potential_selector_builds_config(fk):
    out = fk.nodes.potential.FKPotentialSelector.execute(
        potential="max", every_n_steps=3, window_start=0.2, window_end=0.8, ess_threshold=0.5,
        resampling="residual", output="draw from final weights", lambda_mode="adaptive", strength=0.3,
        **{"lambda": 4.0}).result[0]
    assert isinstance(out, fk.fk_core.FKConfig)
    assert (out.potential, out.lmbda, out.every, out.window, out.ess_threshold, out.resampling, out.output) == \
        ("max", 4.0, 3, (0.2, 0.8), 0.5, "residual", "sample")
    assert (out.lambda_mode, out.strength) == ("adaptive", 0.3)
    off = fk.nodes.potential.FKPotentialSelector.execute(
        potential="diff", every_n_steps=1, window_start=0.0, window_end=1.0, ess_threshold=0.0,
        resampling="systematic", output="best reward", **{"lambda": 1.0}).result[0]
    assert off.ess_threshold is None and off.output == "best"
    assert "window_start" in fk.nodes.potential.FKPotentialSelector.validate_inputs(window_start=0.9,
                                                                                    window_end=0.1)


def test_lambda_zero_changes_nothing_but_the_pick(comfy_nodes, fk, oracle_model, vae):
    """With lambda 0 the weights stay uniform: FK is plain sampling of N particles (both modes populated)."""
    model, _ = oracle_model("eps")
    out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE),
                   potential=fk.fk_core.FKConfig(lmbda=0.0, lambda_mode="fixed", every=3))
    share = sum(r > 0 for r in out["trace"]["final_rewards"]) / N
    assert 0.15 <= share <= 0.85  # Binomial(16, 1/2)


def test_sampler_path_without_added_noise_runs_and_diversifies(fk, oracle_model, vae):
    """SamplerCustom with add_noise off: no extra noise is invented; the stochastic sampler diversifies.
    (With lambda > 0 identical copies are legitimate: resampling at the last check before euler_ancestral's
    noise-free final step leaves duplicates.)"""
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    model, counter = oracle_model("eps")
    fk_sampler = fk.nodes.sampler.FKSampler.execute(
        vae=vae, reward=comfy_host.ModeReward(vae, SIZE), particles=4, sampler_name="euler_ancestral",
        potential=fk.fk_core.FKConfig(lmbda=0.0, lambda_mode="fixed"),
        **{"return": "all particles (sorted by reward)"}).result[0]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 4)
    start = {"samples": torch.full((1, 4, SIZE, SIZE), 0.5)}
    with torch.inference_mode():
        out, _ = SamplerCustom().sample(model, False, 0, 1.0, comfy_host.tiny_conditioning(),
                                        comfy_host.tiny_conditioning(), fk_sampler, sigmas, start)
    samples = out["samples"]
    assert samples.shape[0] == 4 and counter.rows == 4 * 4
    # lambda 0 keeps every particle (no copies); they start identical and only the sampler's noise separates them
    assert len({tuple(s.flatten().tolist()) for s in samples}) == 4


def test_sampler_path_is_deterministic(fk, oracle_model, vae):
    import torch

    model, _ = oracle_model("flow")
    reward = comfy_host.ModeReward(vae, SIZE)
    a, _ = run_sampler_path(fk, model, vae, reward, seed=4, particles=4, steps=4, sampler="dpmpp_2m_sde")
    b, _ = run_sampler_path(fk, model, vae, reward, seed=4, particles=4, steps=4, sampler="dpmpp_2m_sde")
    c, _ = run_sampler_path(fk, model, vae, reward, seed=5, particles=4, steps=4, sampler="dpmpp_2m_sde")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_flow_model_is_read_on_the_flow_noise_scale(fk, oracle_model, vae):
    """fk_core.window reads the noise left as t/(1 − t) for a CONST (rectified-flow) model, σ itself otherwise."""
    for kind in ("flow", "eps"):
        model, _ = oracle_model(kind)
        out = run_node(fk, model, vae, comfy_host.ModeReward(vae, SIZE), steps=20,
                       potential=fk.fk_core.FKConfig(window=(0.0, 1.0)))
        stop = out["trace"]["window_stop"]
        assert stop is not None, kind  # the oracle's modes are decided long before the end
        expected = stop["sigma"] / (1 - stop["sigma"]) if kind == "flow" else stop["sigma"]
        assert stop["noise_ratio"] == pytest.approx(expected, rel=1e-6), kind
        assert any(note.startswith("steering stopped at step") for note in out["trace"]["notes"])
