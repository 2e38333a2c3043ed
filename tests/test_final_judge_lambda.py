"""Auto λ with a final judge on another scale than the steering reward.

The judge's tilt exp(λ_final·r_judge) is a new target: its λ is chosen from the judge's own rewards and scale,
searched from 0, not floored at the steering reward's λ (which means nothing on the judge's scale). Before
this, a steering reward 100× smaller than the judge (so a λ 100× larger) left one particle with all the final
weight in every run.
"""

import math

import pytest
import torch

from fk_core import FKConfig, ParticleFilter, steer, tempering
from fk_core.log_weights import ess, log_normalise
from testbeds.toy import karras_sigmas, two_modes

N = 16
STRENGTH = 0.5
TARGET = 1.0 - STRENGTH
SCALE = 100.0  # the judge's rewards are this many times the steering reward's
GM = two_modes(2)
SIGMAS = karras_sigmas(20)


def direction(x):
    return x[:, 0] + 0.3 * x[:, 1]


def steering(x):
    return direction(x) / SCALE


def run(seed: int, judge, potential: str = "max"):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(N, 2, generator=g, dtype=torch.float64)
    config = FKConfig(potential=potential, lambda_mode="auto", strength=STRENGTH)
    return steer(GM.denoise, SIGMAS, noise, steering, config, generator=g, final_reward=judge)


@pytest.mark.parametrize("potential", ["max", "diff"])
def test_final_judge_lambda_does_not_depend_on_the_judge_scale(potential):
    """The same judge in other units (×100) gets λ/100 and the very same final weights; the steering λ
    (about 100× the judge's) is no floor for it."""
    for seed in range(10):
        big = run(seed, direction, potential)
        small = run(seed, steering, potential)  # the judge on the steering reward's own scale
        # equal up to float rounding (the two searches see λ·r rounded differently), not just the same magnitude
        assert big.trace.final_lmbda * SCALE == pytest.approx(small.trace.final_lmbda, rel=1e-6)
        torch.testing.assert_close(big.log_weights, small.log_weights, rtol=1e-6, atol=1e-6)
        assert big.trace.final_lmbda < big.trace.steps[-1].lmbda  # below the steering λ: it went down


@pytest.mark.parametrize("potential", ["max", "diff"])
def test_final_judge_weights_meet_the_strength_target_where_any_lambda_can(potential):
    """Final ESS/N ≥ 1 − strength whenever some λ in [0, ceiling] reaches it; else the best ESS any λ gives.

    The final log-weights are carried − applied + λ·r_judge (normalised), so ``log_weights − λ·r_judge`` is
    what λ acts on; every λ's ESS follows from it, checked on a fine grid independent of the search."""
    met = 0
    for seed in range(20):
        result = run(seed, direction, potential)
        r, lam = result.rewards, result.trace.final_lmbda
        base = result.log_weights - lam * r
        ceiling = tempering.AUTO_TILT / float(r.std())
        grid = torch.linspace(0.0, ceiling, 4001, dtype=torch.float64)
        log_w = torch.log_softmax(base[None] + grid[:, None] * r[None], dim=1)
        possible = torch.exp(-torch.logsumexp(2 * log_w, dim=1)) / N  # ESS/N at every grid λ
        achieved = float(ess(result.log_weights)) / N
        assert 0.0 <= lam <= ceiling * (1 + 1e-12)
        if bool((possible >= TARGET).any()):
            assert achieved >= TARGET - 1e-9
            largest = float(grid[possible >= TARGET].max())
            assert lam >= largest - ceiling / 4000  # the largest λ meeting it (to the grid's resolution)
            met += 1
        else:
            assert achieved >= float(possible.max()) - 1e-6
    assert met >= 10  # the claim is not vacuous on this bed


def test_final_judge_weights_cancel_the_steering_potentials_exactly():
    """Never resampling, ``diff`` potential: the final weights are exp(λ_final·r_judge) exactly, and λ_final is
    the judge's own ESS-target λ — the steering λ (rewards 100× smaller) plays no part."""
    r1 = torch.tensor([0.1, 0.4, -0.3, 0.9, 0.0, 0.2], dtype=torch.float64)
    r2 = torch.tensor([0.5, -0.2, 0.8, 0.1, 0.3, -0.6], dtype=torch.float64)
    judge = torch.tensor([1.0, 0.2, -0.4, 0.6, 0.9, 0.0], dtype=torch.float64) * SCALE
    pf = ParticleFilter(6, "diff", 1.0, ess_threshold=1e-12, lambda_mode="auto", strength=0.3)
    pf.observe(3, 1.0, r1 / SCALE)
    steering_lambda = pf.observe(6, 0.5, r2 / SCALE).lmbda
    final = pf.finish(judge, new_reward=True)
    lam = pf.final_lmbda
    zero = torch.zeros(6, dtype=torch.float64)
    ceiling = tempering.AUTO_TILT / float(judge.std())
    assert lam == pytest.approx(tempering.raise_lambda(zero, judge, zero, 0.0, ceiling, 0.7), rel=1e-9)
    assert lam < steering_lambda / 10
    torch.testing.assert_close(final.log_weights, log_normalise(lam * judge), rtol=1e-10, atol=1e-12)
    assert float(ess(final.log_weights)) / 6 == pytest.approx(0.7, abs=1e-6)


def test_new_target_lambda_finds_a_feasible_lambda_above_an_infeasible_zero():
    """offset = what another reward applied: λ = 0 leaves those weights uneven, λ ≈ 1 undoes them."""
    r = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64)
    offset = 5.0 * r
    zero = torch.zeros(8, dtype=torch.float64)
    assert float(ess(-offset)) / 8 < 0.5
    lam = tempering.new_target_lambda(zero, r, offset, math.inf, 0.5)
    assert lam > 5.0 and float(ess(lam * r - offset)) / 8 == pytest.approx(0.5, abs=1e-9)
    assert tempering.new_target_lambda(zero, r, offset, 2.0, 0.5) == pytest.approx(2.0)  # infeasible: best ESS
