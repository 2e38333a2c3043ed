"""fk_core.input_notes: legal but surprising settings give a note, ordinary ones none (host-free)."""

from __future__ import annotations

import torch
from fk_trace_fixtures import toy_run

from fk_core import FKConfig
from fk_core.input_notes import config_notes, run_notes


def test_ordinary_settings_give_no_note():
    assert config_notes(FKConfig(), 20) == []
    assert run_notes(toy_run(particles=8, steps=12, every=2, lmbda=1.0).trace) == []


def test_negative_lambda_is_noted():
    (note,) = config_notes(FKConfig(lambda_mode="fixed", lmbda=-5.0), 20)
    assert "steers AWAY" in note and "-5" in note


def test_no_potential_step_is_noted_with_the_reason():
    assert "covers nothing" in config_notes(FKConfig(window=(0.5, 0.5)), 7)[0]
    assert config_notes(FKConfig(window=(0.5, 0.5)), 20) == []  # step 10 of 20 sits exactly at 0.5
    assert "2 step(s)" in config_notes(FKConfig(), 2)[0]
    assert "no step of the 5 lies inside the window 0.9–1" in config_notes(FKConfig(window=(0.9, 1.0)), 5)[0]
    assert all("best-of-N" in n for n in config_notes(FKConfig(window=(0.5, 0.5)), 7))


def test_every_check_keeping_one_particle_is_noted():
    trace = toy_run(particles=8, steps=12, every=2, lmbda=8.0).trace
    for step in trace.steps:  # as a huge lambda would leave it: every resampling copies one particle
        step.resampled = True
        step.ancestors = torch.full((8,), 3)
    (note,) = run_notes(trace)
    assert "only one of the 8 particles" in note and "lower lambda" in note
