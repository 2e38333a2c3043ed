"""Guided proposals (fk_core.guidance) inside the real ComfyUI host, through FK Particle Sampler run as ComfyUI runs
nodes (under torch.inference_mode): a differentiable reward through the real (random-weight) TAESD decoder steers
with its gradient on eps and flow models, the trace records γ and the backward seconds; a non-differentiable
reward and a sampler without a known transition density are refused by name before any model work; the Potential
Selector's new optional input is absent-safe."""

from __future__ import annotations

import comfy_host
import pytest
from test_comfy_sampling import SIZE, N, run_node
from test_preview_decoder import taesd_decoder_state_dict, vae_approx  # noqa: F401 (a fixture)

pytestmark = pytest.mark.host


def guided(fk, guidance=1.0):
    return fk.fk_core.FKConfig(lmbda=20.0, lambda_mode="fixed", every=2, copy_variety=(1.0, 0.0),
                               guidance=guidance)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_guided_run_steers_and_records_gamma_and_backward_time(fk_pack, oracle_model, tiny_vae, kind):
    model, counter = oracle_model(kind)
    reward = comfy_host.ModeReward(tiny_vae, SIZE)
    reward.differentiable = True  # MSE to reference images: torch all the way
    out = run_node(fk_pack, model, tiny_vae, reward, potential=guided(fk_pack))
    trace = out["trace"]
    records = [step["guidance"] for step in trace["steps"]]
    assert records and all(r is not None for r in records)
    for step, record in zip(trace["steps"], records):
        assert record["gamma"] == pytest.approx(step["lmbda"])  # guidance 1: γ = λ_t (= 20 here)
        assert record["backward_s"] >= 0 and 0 < record["shift"] <= 1.0 + 1e-6
    assert trace["cost"]["backward_s"] >= 0 and "backward_per_check_s" in trace["cost"]
    assert fk_pack.fk_core.cost_summary(trace["cost"]).count("guidance: backward pass") == 1
    assert any(note.startswith("guidance 1: euler_ancestral steps run by fk_core") for note in trace["notes"])
    share = sum(r > 0 for r in trace["final_rewards"]) / N
    assert share >= 0.95, trace["final_rewards"]
    assert counter.rows == N * 8  # no extra model evaluation: the gradient goes through decoder and reward only


def test_guided_run_with_a_pack_reward(fk_pack, oracle_model, tiny_vae):
    """FK Reward Loader's saturation (a BoundReward through the node's own wrapper) gives its gradient too."""
    reward = fk_pack.nodes.rewards.FKRewardLoader.execute(reward="saturation").result[0]
    assert reward.differentiable
    model, _ = oracle_model("eps")
    out = run_node(fk_pack, model, tiny_vae, reward, particles=4, potential=guided(fk_pack, 2.0))
    assert all(step["guidance"]["gamma"] == pytest.approx(40.0) for step in out["trace"]["steps"])


def test_non_differentiable_reward_is_refused_by_name(fk_pack, oracle_model, tiny_vae):
    reward = fk_pack.nodes.rewards.FKRewardLoader.execute(reward="JPEG compressibility").result[0]
    model, counter = oracle_model("eps")
    with pytest.raises(fk_pack.fk_core.FKError, match=r"FK Particle Sampler: guidance.*not .*differentiable"
                                                      r".*set guidance to 0"):
        run_node(fk_pack, model, tiny_vae, reward, potential=guided(fk_pack))
    assert counter.rows == 0


def test_sampler_without_known_density_is_refused_by_name(fk_pack, oracle_model, tiny_vae):
    model, counter = oracle_model("eps")
    reward = comfy_host.ModeReward(tiny_vae, SIZE)
    with pytest.raises(fk_pack.fk_core.FKError, match=r"guidance.*'dpmpp_2m_sde'.*pick euler_ancestral"):
        run_node(fk_pack, model, tiny_vae, reward, sampler="dpmpp_2m_sde", potential=guided(fk_pack))
    assert counter.rows == 0


def test_potential_selector_guidance_input_is_optional(fk_pack):
    selector = fk_pack.nodes.potential.FKPotentialSelector
    common = dict(potential="max", every_n_steps=1, window_start=0.2, window_end=0.8, ess_threshold=0.0,
                  resampling="systematic", output="best reward", **{"lambda": 10.0})
    assert selector.execute(**common).result[0].guidance == 0.0  # an older prompt: plain FK
    assert selector.execute(**common, guidance=1.5).result[0].guidance == 1.5
    assert "guidance" in str(selector.validate_inputs(**common, guidance=-1.0))


def test_guided_checks_through_the_taesd_preview_decoder(fk_pack, oracle_model, tiny_vae, vae_approx):  # noqa: F811
    """The cheap preview decoder (a TAESD file in vae_approx, as ComfyUI's live previews load it) carries the
    gradient too: the particles' shifts are not zero."""
    import json

    import safetensors.torch
    import torch

    safetensors.torch.save_file(taesd_decoder_state_dict(constant=False),
                                str(vae_approx / "taesd_decoder.safetensors"))
    reward = fk_pack.nodes.rewards.FKRewardLoader.execute(reward="brightness", target=0.9).result[0]
    model, _ = oracle_model("eps")
    with torch.inference_mode():
        out = fk_pack.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=comfy_host.tiny_conditioning(), negative=comfy_host.tiny_conditioning(seed=1),
            latent_image=comfy_host.empty_latent(1, SIZE), vae=tiny_vae, reward=reward, seed=3, steps=6, cfg=1.0,
            sampler_name="euler_ancestral", scheduler="normal", denoise=1.0, particles=4, particle_chunk=0,
            potential=guided(fk_pack), preview_decoder="TAESD")
    trace = json.loads(out.result[4])
    assert "TAESD (taesd_decoder.safetensors)" in trace["cost"]["preview_decoder"]
    assert all(step["guidance"]["shift"] > 0 for step in trace["steps"])
