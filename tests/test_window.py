"""fk_core.window: checks run while a copy made at a check could still end as different as independent samples.

The rule reads only the noise left (ρ) and the particles' own data scale (s), never a reward: copy_variety =
ρ/√(ρ² + s²) is the expected distance of two copies at the end as a share of two independent samples' (Gaussian
data), so it can be checked in closed form on Gaussian data, and the engine must stop where it says, say so in the
trace and the notes, and spend no reward call on skipped steps.
"""

import math

import pytest
import torch

from fk_core import FKConfig, FKError, steer
from fk_core.steppers import euler_ancestral, flow_noise_ratio
from fk_core.window import classify, copy_variety, data_scale
from testbeds.toy import GaussianMixture, karras_sigmas, two_modes


def test_copy_variety_is_the_distance_share_of_copies_on_gaussian_data():
    """Copies made at σ from x = x0 + σ·ε (x0 ~ N(0, s²)) finish √(σ²/(σ²+s²)) as far apart as independent draws."""
    s, sigma, d = 0.7, 0.9, 4000
    gm = GaussianMixture(torch.tensor([1.0], dtype=torch.float64), torch.zeros(1, d, dtype=torch.float64),
                         torch.tensor([s], dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    sig = karras_sigmas(400, sigma_min=0.002, sigma_max=sigma)  # fine steps: the formula, not a sampler's error
    x = gm.sample(1, g) + sigma * torch.randn(1, d, generator=g, dtype=torch.float64)
    copies = euler_ancestral(1.0, g)(lambda x, t: gm.denoise(x, t[0]), x.repeat(2, 1), sig)
    independent = gm.sample(2, g)
    share = float((copies[0] - copies[1]).norm() / (independent[0] - independent[1]).norm())
    assert share == pytest.approx(copy_variety(sigma, s), abs=0.05)  # d = 4000: sampling error about 0.01


def test_phases_follow_the_noise_left_against_the_data_scale():
    x0 = torch.randn(8, 500, generator=torch.Generator().manual_seed(1)) * 0.5
    s = data_scale(x0)
    assert s == pytest.approx(0.5, rel=0.05)
    assert classify(8 * s, x0, (0.99, 0.9))[0] == "early"  # ρ > 7 s: previews are blur
    assert classify(3 * s, x0, (0.99, 0.9))[0] == "check"
    phase, stop = classify(1.5 * s, x0, (0.99, 0.9))
    assert phase == "stop" and stop.copy_variety == pytest.approx(1.5 / math.sqrt(1 + 1.5**2))
    assert classify(1.5 * s, x0, (1.0, 0.0))[0] == "check"  # (1, 0): the rule is off
    # a flow's t is read on the same scale, ρ = t/(1 − t): at ρ = 3 s it is a check; misread as σ = t, a stop
    t = 3 * s / (1 + 3 * s)
    assert classify(t, x0, (0.99, 0.9), flow_noise_ratio)[0] == "check"
    assert classify(t, x0, (0.99, 0.9))[0] == "stop"


def run(config, scale=1.0, n=8, steps=30, dim=64):
    gm = two_modes(dim)  # 64 elements: image-like enough for the data scale (fk_core.window.MIN_ELEMENTS)
    calls = []

    def reward(x):
        calls.append(x.shape[0])
        return scale * x[:, 0]

    g = torch.Generator().manual_seed(3)
    noise = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return steer(gm.denoise, karras_sigmas(steps), noise, reward, config, generator=g), calls


def test_the_engine_stops_records_why_and_spends_no_reward_call_after():
    res, calls = run(FKConfig(window=(0.0, 1.0)))
    stop = res.trace.window_stop
    assert stop is not None and stop["copy_variety"] < 0.9 <= stop["min_copy_variety"]
    assert res.trace.steps and max(s.step for s in res.trace.steps) < stop["step"]
    assert len(calls) == len(res.trace.steps) + 1  # the checks and the final scoring, nothing for skipped steps
    assert any(note.startswith(f"steering stopped at step {stop['step']}") for note in res.trace.notes)
    assert res.trace.to_dict()["window_stop"] == stop
    off, _ = run(FKConfig(window=(0.0, 1.0), copy_variety=(1.0, 0.0)))
    assert off.trace.window_stop is None and len(off.trace.steps) > len(res.trace.steps)


def test_the_window_reads_no_reward_units():
    a, _ = run(FKConfig(window=(0.0, 1.0)))
    b, _ = run(FKConfig(window=(0.0, 1.0)), scale=1000.0)
    assert a.trace.window_stop == b.trace.window_stop
    assert [s.step for s in a.trace.steps] == [s.step for s in b.trace.steps]


def test_bad_bounds_are_refused():
    with pytest.raises(FKError, match="copy_variety"):
        FKConfig(copy_variety=(0.8, 0.9))


def test_a_few_coordinates_have_no_data_scale_so_the_window_alone_decides():
    res, _ = run(FKConfig(window=(0.0, 1.0)), dim=2)
    assert res.trace.window_stop is None and len(res.trace.steps) == 28  # every step but the first and last


def test_a_window_that_starts_past_the_bar_keeps_its_checks_and_says_so():
    """A late window_start (or x0-predictions that are no data yet, as a random-weight model's): the rule cannot
    place the stop, so the window alone decides and a note says why."""
    res, _ = run(FKConfig(window=(0.7, 1.0)))
    assert res.trace.window_stop is None and len(res.trace.steps) == 8  # steps 21..28 of 30
    assert any(note.startswith("the copy-variety stop is off for this run") for note in res.trace.notes)
