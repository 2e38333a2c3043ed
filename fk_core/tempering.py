"""Adaptive λ: choose the tilt at each check from the particles' own rewards (ESS-targeted tempering).

A fixed λ means different things for different rewards: λ multiplies reward differences, and rewards differ
in scale by orders of magnitude (CLIP score ~ 20, ImageReward ~ 1, pixel rewards ~ 0.01). What does mean
the same for every reward is how uneven the weights get, measured by the effective sample size (ESS). At
each check the log-potential is affine in λ per particle, log G(λ) = λ·slope − offset (see
:func:`fk_core.potentials.potential_terms`), so the filter can ask: how far can λ rise from where it is
before ESS/N of the weights to be resampled falls below a target? Bisection on λ answers it; λ never goes
down. The final weighting removes everything the intermediate potentials applied, so the weighted output
targets p·exp(λ_final·r) whatever λ sequence was used.

Auto mode has no λ to set: λ_t rises as the target allows, up to a ceiling set by the spread of the rewards
seen so far (``AUTO_TILT``), and the final λ is chosen the same way from the final rewards.

``strength`` s ∈ [0, 1] sets the target: ESS/N ≥ 1 − s at every check. s = 0 keeps the weights flat (no
steering); s = 0.5 lets each check use up half the particles' worth of weight — the usual SMC rule; s = 1
lets λ grow until one particle takes all.
"""

from __future__ import annotations

import math

import torch

from .weights import ess

LAMBDA_MODES = ("fixed", "adaptive", "auto")
# Auto mode's ceiling: λ · (largest standard deviation of the rewards seen at a check) ≤ AUTO_TILT. Without it,
# once every particle is good the rewards differ by crumbs and a scale-free λ would blow the crumbs up and keep
# resampling on them, copying particles that can no longer diverge (bench/bench_defaults.py: the final
# particles then kept only 50–70% of the variety of independent samples). 30 means a particle one spread
# better than another can still win outright, so it does not hold back real steering (README, "Recommended
# settings": 10 and 100 did about as well).
AUTO_TILT = 30.0
BISECTION_STEPS = 60  # relative precision 2^-60 of the bracket: more than float64 needs
MAX_DOUBLINGS = 80  # auto mode's search for an upper bracket: λ up to 2^80 times the reward's scale


def ess_target(strength: float) -> float:
    """The ESS/N each check must keep, for a strength in [0, 1]."""
    return 1.0 - float(strength)


def _ess_fraction(logw: torch.Tensor, slope: torch.Tensor, offset: torch.Tensor, lmbda: float) -> float:
    candidate = logw + lmbda * slope - offset
    return ess(candidate) / logw.numel()


def raise_lambda(logw: torch.Tensor, slope: torch.Tensor, offset: torch.Tensor, low: float,
                 high: float, target: float) -> float:
    """The largest λ in [low, high] (``high`` may be inf) keeping ESS/N of logw + λ·slope − offset ≥ target.

    ``logw`` holds the weights carried since the last resampling (-inf: dropped particle). λ never goes below
    ``low``: if even ``low`` misses the target, ``low`` is returned. With ``high`` = inf the bracket is found
    by doubling from the rewards' own scale (1 / spread of the slopes), so the answer does not depend on the
    reward's units.
    """
    alive = torch.isfinite(logw)
    if target >= 1.0:  # flat weights asked for: any rise breaks them (float rounding would let a tiny one by)
        return low
    if _ess_fraction(logw, slope, offset, low) < target:
        return low
    if math.isfinite(high):
        if _ess_fraction(logw, slope, offset, high) >= target:
            return high
    else:
        spread = float(slope[alive].max() - slope[alive].min()) if bool(alive.any()) else 0.0
        if spread == 0.0:
            return low  # λ does not change the weights: no information to set it
        step = 1.0 / spread
        high = low + step
        for _ in range(MAX_DOUBLINGS):
            if _ess_fraction(logw, slope, offset, high) < target:
                break
            step *= 2.0
            high = low + step
        else:
            return high
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if _ess_fraction(logw, slope, offset, mid) >= target:
            low = mid
        else:
            high = mid
    return low  # the feasible end: ESS/N ≥ target holds there
