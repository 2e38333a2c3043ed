"""Rare attribute: FK with 8 particles finds a property 0.3% of samples have far more often than best-of-8.

Settings: 2-D two-mode mixture, attribute a·x > c held by 0.3% of p0, reward sigmoid((a·x − c)/0.5), 50
Euler-ancestral steps, λ = 30, potential `max` at every step. bench/bench_engine.py measured (200 runs):
best-of-8 0.5%, FK-8 99.5% (diff 87%, sum 100%, immediate 100%). The FK paper's anchor is 3.7% → 69.7%.
Bounds: FK ≥ 85% is over 5 binomial standard errors below the measured rate even at p = 0.9 (σ = 2.4% for
150 runs); best-of-8 ≤ 6% is 5σ above its expected 2.4% for the exact model (σ = 1.3%).
"""

import pytest
import torch

from fk_core import FKConfig, steer
from testbeds.rare import rare_attribute
from testbeds.toy import karras_sigmas

STEPS, RUNS, N = 50, 150, 8
SIGMAS = karras_sigmas(STEPS, sigma_min=0.02, sigma_max=20.0)


def hit_rate(config: FKConfig) -> float:
    task = rare_attribute(2)
    task.width = 0.5
    hits = 0
    for r in range(RUNS):
        g = torch.Generator().manual_seed(r)
        noise = torch.randn(N, 2, generator=g, dtype=torch.float64)
        res = steer(task.model.denoise, SIGMAS, noise, task.reward, config, generator=g)
        hits += bool(task.has_attribute(res.samples[res.best_index]))
    return hits / RUNS


def test_the_attribute_is_rare():
    task = rare_attribute(2)
    assert task.model.projection_tail(task.direction, task.threshold) == pytest.approx(0.003, rel=1e-6)


@pytest.mark.slow
def test_fk_beats_best_of_n_by_a_wide_margin():
    best_of_8 = hit_rate(FKConfig(lmbda=0.0, lambda_mode="fixed"))
    fk = hit_rate(FKConfig(potential="max", lmbda=30.0, lambda_mode="fixed", window=(0.2, 1.0)))
    assert best_of_8 <= 0.06, f"best-of-8 hit rate {best_of_8:.1%}"  # ≈2.4% expected from p0's 0.3%
    assert fk >= 0.85, f"FK max hit rate {fk:.1%}"
    assert fk >= best_of_8 + 0.75, f"FK {fk:.1%} vs best-of-8 {best_of_8:.1%}"


@pytest.mark.slow
def test_the_defaults_find_the_rare_attribute():
    """The shipped defaults (auto λ, no λ to tune): bench/bench_defaults.py measured 100% at N = 8 over 100 seeds;
    the issue's bar is 90%, over 4 binomial standard errors (σ ≤ 2.4% for 150 runs) below anything ≥ 0.98."""
    assert hit_rate(FKConfig()) >= 0.9
