"""The optional final judge on both FK samplers inside the real ComfyUI host: the cheap reward steers, the final
reward alone scores the finished particles, weights them and picks the output (oracle two-mode model)."""

from __future__ import annotations

import json

import comfy_host
import pytest

pytestmark = pytest.mark.host

N, STEPS, SIZE = 8, 6, 4


class Judge:
    """A final judge that likes the mode the steering reward dislikes, and counts its calls."""

    name = "opposite-mode judge"
    notes = ["the judge understood: opposite mode"]  # what a reward that interprets its input says (as the detector)

    def __init__(self, vae):
        self.mode = comfy_host.ModeReward(vae, SIZE)
        self.batches = []

    def __call__(self, images):
        self.batches.append(images.shape[0])
        self.last = -self.mode(images) + 0.01 * images.float().mean(dim=(1, 2, 3))
        return self.last


def test_particle_sampler_final_judge_weights_and_chooses(fk_pack, oracle_model, tiny_vae):
    import torch

    model, _ = oracle_model("eps")
    steer = comfy_host.ModeReward(tiny_vae, SIZE)
    judge = Judge(tiny_vae)
    with torch.inference_mode():
        out = fk_pack.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=comfy_host.tiny_conditioning(), negative=comfy_host.tiny_conditioning(seed=1),
            latent_image=comfy_host.empty_latent(1, SIZE), vae=tiny_vae, reward=steer, seed=3, steps=STEPS,
            cfg=1.0, sampler_name="euler_ancestral", scheduler="normal", denoise=1.0, particles=N,
            particle_chunk=0, potential=fk_pack.fk_core.FKConfig(lambda_mode="fixed", lmbda=20.0, every=2),
            final_reward=judge)
    best_latent, best_image, _sheet, all_images, trace = out.result
    trace = json.loads(trace)
    assert judge.batches == [N], "the judge scores the N finished particles once, nothing else"
    assert steer.calls >= 2, "the cheap reward did the checks"
    final = torch.tensor(trace["final_rewards"])
    torch.testing.assert_close(final[trace["order"]].float(), judge(all_images).float(), atol=1e-5, rtol=0)
    assert trace["chosen_index"] == int(final.argmax()), "the output is the judge's favourite"
    torch.testing.assert_close(best_image[0], all_images[0])
    assert any("opposite-mode judge" in note and "oracle_mode only steered" in note for note in trace["notes"])
    assert Judge.notes[0] in trace["notes"] and Judge.notes[0] in out.ui["text"][0], "shown under the node's preview"


def test_sampler_path_final_judge_chooses_the_returned_latent(fk_pack, oracle_model, tiny_vae):
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    model, _ = oracle_model("eps")
    judge = Judge(tiny_vae)
    with torch.inference_mode():
        fk_sampler = fk_pack.nodes.sampler.FKSampler.execute(
            vae=tiny_vae, reward=comfy_host.ModeReward(tiny_vae, SIZE), particles=N, sampler_name="euler_ancestral",
            particle_chunk=0, potential=fk_pack.fk_core.FKConfig(lambda_mode="fixed", lmbda=20.0, every=2),
            final_reward=judge,
            **{"return": "best particle"}).result[0]
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS)
        out, _ = SamplerCustom().sample(model, True, 3, 1.0, comfy_host.tiny_conditioning(),
                                        comfy_host.tiny_conditioning(seed=1), fk_sampler, sigmas,
                                        comfy_host.empty_latent(1, SIZE))
        assert judge.batches == [N]
        finals = judge.last.clone()
        chosen = judge(tiny_vae.decode(out["samples"]))
    assert out["samples"].shape[0] == 1
    torch.testing.assert_close(chosen[0], finals.max(), atol=1e-4, rtol=0, msg="the judge's favourite comes out")


def test_final_reward_must_be_a_reward(fk_pack, oracle_model, tiny_vae):
    FKError = fk_pack.fk_core.FKError
    with pytest.raises(FKError, match="FK_REWARD"):
        fk_pack.nodes.sampler.FKSampler.execute(vae=tiny_vae, reward=comfy_host.ModeReward(tiny_vae, SIZE),
                                                particles=2, sampler_name="euler_ancestral", final_reward="x")
