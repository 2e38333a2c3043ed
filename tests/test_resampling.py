"""Resampling schemes: unbiased offspring counts, variance ordering, edge cases."""

import math

import pytest
import torch

from fk_core.log_weights import ess, log_normalise
from fk_core.resampling import RESAMPLERS, resample

SCHEMES = sorted(RESAMPLERS)
W = torch.tensor([0.05, 0.30, 0.0, 0.15, 0.40, 0.10], dtype=torch.float64)


def offspring_counts(scheme: str, weights: torch.Tensor, draws: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = weights.numel()
    return torch.stack([torch.bincount(resample(scheme, weights, g), minlength=n) for _ in range(draws)]).double()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_offspring_expectation_is_n_times_weight(scheme):
    draws, n = 2000, W.numel()
    counts = offspring_counts(scheme, W, draws)
    mean = counts.mean(0)
    # Under multinomial the count of particle i has variance N·W(1−W); the other schemes have less.
    # So 5 standard errors of the multinomial bound is a safe, maths-derived tolerance.
    se = torch.sqrt(n * W * (1 - W) / draws)
    assert torch.all((mean - n * W).abs() <= 5 * se + 1e-12), (mean, n * W)
    assert torch.all(counts.sum(1) == n)


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual"])
def test_lower_offspring_variance_than_multinomial(scheme):
    multi = offspring_counts("multinomial", W, 3000).var(0).sum()
    other = offspring_counts(scheme, W, 3000).var(0).sum()
    # multinomial variance is Σ N·W(1−W) = 4.29 here; systematic/stratified/residual are far below it.
    assert other < 0.75 * multi, (float(other), float(multi))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_zero_weight_particles_never_chosen(scheme):
    counts = offspring_counts(scheme, W, 500)
    assert counts[:, 2].sum() == 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_single_survivor_takes_everything(scheme):
    w = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    idx = resample(scheme, w, torch.Generator().manual_seed(3))
    assert idx.tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_single_particle(scheme):
    assert resample(scheme, torch.ones(1, dtype=torch.float64), torch.Generator().manual_seed(0)).tolist() == [0]


def test_minus_inf_log_weights_normalise_to_zero_weight():
    logw = torch.tensor([-torch.inf, 0.0, math.log(3.0)], dtype=torch.float64)
    w = log_normalise(logw).exp()
    assert w.tolist() == pytest.approx([0.0, 0.25, 0.75])
    assert ess(logw) == pytest.approx(1 / (0.25**2 + 0.75**2))


def test_large_log_weights_do_not_overflow():
    logw = torch.tensor([1000.0, 1000.0 + math.log(3.0), -5000.0], dtype=torch.float64)
    assert log_normalise(logw).exp().tolist() == pytest.approx([0.25, 0.75, 0.0])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_deterministic_for_a_seed(scheme):
    a = resample(scheme, W, torch.Generator().manual_seed(11))
    b = resample(scheme, W, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_bad_inputs_have_clear_errors():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="unknown resampling scheme"):
        resample("bogus", W, g)
    with pytest.raises(ValueError, match="not all zero"):
        resample("systematic", torch.zeros(3, dtype=torch.float64), g)
    with pytest.raises(ValueError, match="non-empty"):
        resample("systematic", torch.zeros(0, dtype=torch.float64), g)
    with pytest.raises(ValueError, match="zero weight"):
        log_normalise(torch.full((3,), -torch.inf))
