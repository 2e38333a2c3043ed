"""ComfyUI's own stateful model patches inside FK steering: chunking and resampling must not mix particles' state.

APG (Adaptive Projected Guidance, comfy_extras/nodes_apg.py) keeps a running average of the guidance with one
row per particle across steps; SAG (Self-Attention Guidance, nodes_sag.py) records attention in the UNet call
and reads it in its post-CFG function. Both run here on the tests' tiny real UNet (random weights, so
conditional and unconditional predictions differ per particle) with cfg > 1.
"""

from __future__ import annotations

import json

import comfy_host
import pytest

pytestmark = pytest.mark.host

N = 8
STEPS = 6


class Brightness:
    """Mean of the decoded image: a reward any particle scores differently."""

    name = "brightness"

    def __call__(self, images):
        return images.float().mean(dim=(1, 2, 3))


def apg(model, momentum: float = 0.5):
    from comfy_extras.nodes_apg import APG

    return APG.execute(model, eta=1.0, norm_threshold=5.0, momentum=momentum)[0]


def sag(model):
    from comfy_extras.nodes_sag import SelfAttentionGuidance

    return SelfAttentionGuidance.execute(model, scale=0.5, blur_sigma=2.0)[0]


def run(fk, model, vae, *, chunk, sampler="euler_ancestral", size=4, lmbda=5.0, seed=3):
    import torch

    config = fk.fk_core.FKConfig(lmbda=lmbda, lambda_mode="fixed", every=1, window=(0.0, 1.0),
                                 copy_variety=(1.0, 0.0))  # random weights: keep the schedule's checks
    with torch.inference_mode():
        out = fk.nodes.sampler.FKParticleSampler.execute(
            model=model, positive=comfy_host.tiny_conditioning(), negative=comfy_host.tiny_conditioning(seed=1),
            latent_image=comfy_host.empty_latent(1, size), vae=vae, reward=Brightness(), seed=seed, steps=STEPS,
            cfg=4.0, sampler_name=sampler, scheduler="normal", denoise=1.0, particles=N, particle_chunk=chunk,
            potential=config)
    return out.result[3], json.loads(out.result[4])


@pytest.mark.parametrize("chunk", [4, 3, 0])  # 3: a ragged last chunk (8 = 3 + 3 + 2); 0: automatic
def test_apg_momentum_gives_the_same_particles_chunked_or_not(fk_pack, tiny_models, tiny_vae, monkeypatch, chunk):
    """Before: chunk 4 mixed the running average of one chunk's particles into the next's, chunk 3 raised
    'The size of tensor a (3) must match the size of tensor b (2)'."""
    model = apg(tiny_models("eps"))
    whole, _ = run(fk_pack, model, tiny_vae, chunk=N)
    if chunk == 0:  # automatic chunking that would pick 2 (as on a small GPU)
        monkeypatch.setattr(fk_pack.nodes.fk_run, "automatic_chunk", lambda *args, **kwargs: 2)
        monkeypatch.setattr(fk_pack.nodes.sampler, "automatic_chunk", lambda *args, **kwargs: 2)
    chunked, trace = run(fk_pack, model, tiny_vae, chunk=chunk)
    assert (chunked - whole).abs().max() == 0.0
    assert any("all particles at once" in note and "nodes_apg" in note for note in trace["notes"])


def test_sag_gives_the_same_particles_chunked_or_not(fk_pack, tiny_models, tiny_vae):
    """SAG's post-CFG function reads the attention its UNet patch recorded: with chunks, only the last chunk's."""
    model = sag(tiny_models("eps"))
    whole, _ = run(fk_pack, model, tiny_vae, chunk=N, size=8)
    chunked, trace = run(fk_pack, model, tiny_vae, chunk=4, size=8)
    assert (chunked - whole).abs().max() == 0.0
    assert any("all particles at once" in note and "nodes_sag" in note for note in trace["notes"])


@pytest.mark.parametrize("chunk", [N, 3])
def test_apg_state_follows_the_particles_through_resampling(fk_pack, tiny_models, tiny_vae, chunk):
    """ComfyUI's APG node as it is, watched by two spies around it: the running average each call starts from
    must be the previous call's, reordered by the resampling in between (a copied particle continues with its
    ancestor's momentum, not with whatever particle had its row before)."""
    import math

    model = apg(tiny_models("eps"))
    (apg_function,) = model.model_options["sampler_pre_cfg_function"]
    cell = dict(zip(apg_function.__code__.co_freevars, apg_function.__closure__))["running_avg"]
    before, after = [], []

    def state():
        value = cell.cell_contents
        return value.clone() if hasattr(value, "clone") else None

    def spy_before(args):
        before.append((float(args["sigma"][0]), state()))
        return args["conds_out"]

    def spy_after(args):
        after.append(state())
        return args["conds_out"]

    model.model_options["sampler_pre_cfg_function"] = [spy_before, apg_function, spy_after]
    _, trace = run(fk_pack, model, tiny_vae, chunk=chunk, lmbda=200.0)
    resampled = [(step["sigma"], step["ancestors"]) for step in trace["steps"] if step["resampled"]]
    checked = 0
    for t in range(1, len(before)):
        sigma, start = before[t]
        previous_sigma = before[t - 1][0]
        expected = after[t - 1]
        for at, ancestors in resampled:
            if math.isclose(at, previous_sigma, rel_tol=1e-6) and ancestors != list(range(N)):
                expected = expected[ancestors]
                checked += 1
        assert start is not None and expected is not None
        assert (start - expected).abs().max() == 0.0, f"call {t} (sigma {sigma:.4g}) starts from other rows"
    assert checked >= 1, "the test needs a resampling that moves particles"
    assert any("reordered the per-particle state" in note and "nodes_apg" in note for note in trace["notes"])


def test_which_patches_count_as_stateful_and_what_resampling_can_reorder(fk_pack):
    """Core patches without state keep chunking (TCFG, FreSca); closure state that is a per-particle tensor is
    reordered; state of another kind is named as not reorderable."""
    import torch
    from comfy_extras.nodes_fresca import FreSca
    from comfy_extras.nodes_tcfg import TCFG

    patch_state = fk_pack.fk_core  # fk_core/patch_state.py, through the public face nodes/ uses
    base = comfy_host.build_tiny_model("eps")
    for node, kwargs in ((TCFG, {}), (FreSca, dict(scale_low=1.0, scale_high=1.25, freq_cutoff=20))):
        assert patch_state.stateful_patches(node.execute(base, **kwargs)[0].model_options) == []
    assert len(patch_state.stateful_patches(apg(base).model_options)) == 1

    rows = torch.arange(4.0)[:, None]
    history = None

    def per_row(args):
        nonlocal rows
        rows = rows + 1
        return args["conds_out"]

    def kept_in_a_list(args):
        nonlocal history
        history = [args]
        return args["conds_out"]

    options = {"sampler_pre_cfg_function": [per_row, kept_in_a_list]}
    keeper = patch_state.ParticleStateKeeper(options, 4)
    kept_in_a_list({"conds_out": None})
    keeper.resampled(torch.tensor([3, 3, 0, 1]))
    assert rows[:, 0].tolist() == [3.0, 3.0, 0.0, 1.0]
    notes = " ".join(keeper.notes())
    assert "reordered" in notes and "per_row (rows)" in notes
    assert "could not reorder" in notes and "kept_in_a_list (history)" in notes
