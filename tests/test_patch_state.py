"""fk_core/patch_state.py without a host: which model patches keep state between calls, and how that state is
reordered with the particles at resampling (ComfyUI's real patches: test_comfy_model_patches.py)."""

from __future__ import annotations

import functools

import torch

from fk_core import ParticleStateKeeper, stateful_patches
from fk_core.patch_state import assigned_closure_variables, keeps_state, patch_functions


def _counter():
    calls = 0

    def hook(args):
        nonlocal calls
        calls += 1
        return args

    return hook


def _reader(scale):
    def hook(args):
        return args * scale  # reads its closure, never assigns it: no state

    return hook


class _Momentum:
    def __init__(self):
        self.running = None

    def __call__(self, args):
        return args


def test_assigned_closure_variables_are_state_read_ones_are_settings():
    assert assigned_closure_variables(_counter()) == {"calls"}
    assert assigned_closure_variables(_reader(2.0)) == set()
    assert keeps_state(_counter(), guidance_hook=False)
    assert keeps_state(functools.partial(_counter()), guidance_hook=False)  # seen through a partial
    assert not keeps_state(_reader(2.0), guidance_hook=True)
    assert not keeps_state(len, guidance_hook=True)  # a builtin keeps nothing
    # an object: its attributes cannot be told from settings; a guidance hook counts as stateful, a patch not
    assert keeps_state(_Momentum(), guidance_hook=True) and not keeps_state(_Momentum(), guidance_hook=False)


def test_patches_are_found_in_guidance_keys_and_transformer_groups():
    counter, reader = _counter(), _reader(1.0)
    options = {"sampler_cfg_function": counter, "sampler_post_cfg_function": [reader],
               "transformer_options": {"patches": {"attn1_patch": [counter]}, "patches_replace": {}}}
    labels = [(label.split()[0], hook) for label, _fn, hook in patch_functions(options)]
    assert labels == [("sampler_cfg_function", True), ("sampler_post_cfg_function", True),
                      ("transformer_options", False)]
    assert len(stateful_patches(options)) == 2  # the counter, as a guidance hook and as a transformer patch
    assert stateful_patches({}) == [] and stateful_patches(None) == []


def test_keeper_reorders_per_particle_rows_and_names_what_it_cannot_reorder():
    momentum = _Momentum()
    momentum.running = torch.arange(4.0)[:, None]
    momentum.scale = 2.0  # a setting: neither reordered nor reported
    momentum.history = [1, 2]  # not a tensor: reported as not reorderable
    keeper = ParticleStateKeeper({"sampler_pre_cfg_function": [momentum]}, num_particles=4)
    keeper.resampled(torch.tensor([2, 2, 0, 3]))
    assert momentum.running[:, 0].tolist() == [2.0, 2.0, 0.0, 3.0] and momentum.scale == 2.0
    notes = keeper.notes()
    assert len(notes) == 2 and "(running)" in notes[0] and "(history)" in notes[1] and "could not" in notes[1]


def test_keeper_leaves_other_shapes_alone_and_listens_as_an_observer():
    momentum = _Momentum()
    momentum.running = torch.arange(3.0)  # 3 rows, but the run has 4 particles: not per-particle state
    keeper = ParticleStateKeeper({"sampler_cfg_function": momentum}, num_particles=4)

    class Event:
        resampled, ancestors = True, torch.tensor([1, 1, 1, 1])

    keeper.on_potential_step(Event(), None)
    assert momentum.running.tolist() == [0.0, 1.0, 2.0] and keeper.notes() == []

    class Result:
        class trace:  # noqa: N801 (stands in for the result's Trace)
            notes = ["earlier"]

    keeper.on_finish(Result())
    assert Result.trace.notes == ["earlier"]
