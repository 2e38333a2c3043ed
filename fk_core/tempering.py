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
seen so far (``AUTO_TILT``), and the final λ is chosen the same way from the final rewards. A final judge
(another reward scoring only the finished samples) gets its own λ from its own rewards and spread, searched
from 0 (:func:`new_target_lambda`): the steering λ is on another reward's scale.

``strength`` s ∈ [0, 1] sets the target: ESS/N ≥ 1 − s at every check. s = 0 keeps the weights flat (no
steering); s = 0.5 lets each check use up half the particles' worth of weight — the usual SMC rule; s = 1
lets λ grow until one particle takes all.
"""

from __future__ import annotations

import math

import torch

LAMBDA_MODES = ("fixed", "adaptive", "auto")
# Auto mode's ceiling: λ · (largest standard deviation of the rewards seen at a check) ≤ AUTO_TILT. Without it,
# once every particle is good the rewards differ by crumbs and a scale-free λ would blow the crumbs up and keep
# resampling on them, copying particles that can no longer diverge (bench/bench_defaults.py: the final
# particles then kept only 50–70% of the variety of independent samples). 30 means a particle one spread
# better than another can still win outright, so it does not hold back real steering (README, "Recommended
# settings": 10 and 100 did about as well).
AUTO_TILT = 30.0
GRID = 64  # candidate λ per round, evaluated in one batched operation (cheap next to 60 scalar bisection steps)
ROUNDS = 6  # each round shrinks the bracket 63-fold: 63^-6 ≈ 2e-11 of the first bracket
LADDER = (-20, 80)  # auto mode's upper bracket: low + 2^k / spread for k in this range
EVEN_GRID = 1025  # a final judge's λ: even grid on [0, ceiling] besides the ladder (see new_target_lambda)


def ess_target(strength: float) -> float:
    """The ESS/N each check must keep, for a strength in [0, 1]."""
    return 1.0 - float(strength)


def _ess_fractions(logw: torch.Tensor, slope: torch.Tensor, offset: torch.Tensor,
                   lambdas: torch.Tensor) -> torch.Tensor:
    """ESS/N of logw + λ·slope − offset for every λ in ``lambdas`` [K] at once (log space throughout)."""
    candidate = logw[None] + lambdas[:, None] * slope[None] - offset[None]
    log_w = candidate - torch.logsumexp(candidate, dim=1, keepdim=True)
    return torch.exp(-torch.logsumexp(2.0 * log_w, dim=1)) / logw.numel()


def raise_lambda(logw: torch.Tensor, slope: torch.Tensor, offset: torch.Tensor, low: float,
                 high: float, target: float) -> float:
    """The largest λ in [low, high] (``high`` may be inf) keeping ESS/N of logw + λ·slope − offset ≥ target.

    ``logw`` holds the weights carried since the last resampling (-inf: dropped particle). λ never goes below
    ``low``: if even ``low`` misses the target, ``low`` is returned. With ``high`` = inf the bracket is found
    on a doubling ladder from the rewards' own scale (1 / spread of the slopes), so the answer does not
    depend on the reward's units. Then a bisection by grid: the bracket [feasible, infeasible] shrinks
    ``ROUNDS`` times by a factor GRID − 1; the feasible end is returned.
    """
    if target >= 1.0:  # flat weights asked for: any rise breaks them (float rounding would let a tiny one by)
        return low

    def fractions(values) -> torch.Tensor:
        return _ess_fractions(logw, slope, offset, torch.as_tensor(values, dtype=torch.float64).reshape(-1))

    if float(fractions(low)) < target:
        return low
    if math.isfinite(high):
        if float(fractions(high)) >= target:
            return high
    else:
        alive = torch.isfinite(logw)
        spread = float(slope[alive].max() - slope[alive].min()) if bool(alive.any()) else 0.0
        if spread == 0.0:
            return low  # λ does not change the weights: no information to set it
        ladder = low + 2.0 ** torch.arange(*LADDER, dtype=torch.float64) / spread
        failing = torch.nonzero(fractions(ladder) < target).flatten()
        if failing.numel() == 0:
            return float(ladder[-1])
        first = int(failing[0])
        high = float(ladder[first])
        low = float(ladder[first - 1]) if first > 0 else low
    for _ in range(ROUNDS):
        grid = torch.linspace(low, high, GRID, dtype=torch.float64)
        failing = torch.nonzero(fractions(grid) < target).flatten()
        first = int(failing[0]) if failing.numel() else GRID - 1
        if first == 0:  # rounding disagreed with the check on ``low``: keep what is known to hold
            break
        low, high = float(grid[first - 1]), float(grid[first])
    return low  # the feasible end: ESS/N ≥ target holds there


def new_target_lambda(logw: torch.Tensor, slope: torch.Tensor, offset: torch.Tensor, high: float,
                      target: float) -> float:
    """λ for a reward that takes over at the end (a final judge): the largest λ in [0, ``high``] keeping ESS/N
    of logw + λ·slope − offset ≥ target.

    Unlike :func:`raise_lambda` there is no λ to continue from: the judge's λ·r is a new target, on the judge's
    own scale, and ``offset`` (the potentials another reward applied) is what it has to undo. ESS then need
    not fall as λ rises from 0 — it is best where λ·slope undoes ``offset`` best — so λ = 0 may miss the
    target while a larger λ meets it. The search runs on a ladder 0, 2^k / spread (k in ``LADDER``, the
    judge's own scale) up to ``high``, with an even grid of ``EVEN_GRID`` points on [0, high] (ESS may have
    more than one bump): the largest point meeting the target, refined by bisection towards the next point.
    When no point meets it, the λ with the largest ESS (the least uneven weights to be had): the best point,
    refined by grid between its neighbours.
    """
    if target >= 1.0:  # flat weights asked for (strength 0): no tilt
        return 0.0
    alive = torch.isfinite(logw)
    spread = float(slope[alive].max() - slope[alive].min()) if bool(alive.any()) else 0.0
    if spread == 0.0:
        return 0.0  # λ does not change the weights
    rungs = torch.cat([torch.zeros(1, dtype=torch.float64),
                       2.0 ** torch.arange(*LADDER, dtype=torch.float64) / spread])
    if math.isfinite(high):  # plus an even grid: ESS may have more than one bump between 0 and the ceiling
        rungs = torch.cat([rungs[rungs < high], torch.linspace(0.0, float(high), EVEN_GRID, dtype=torch.float64)])
        rungs = torch.unique(rungs)  # sorted
    fractions = _ess_fractions(logw, slope, offset, rungs)
    feasible = torch.nonzero(fractions >= target).flatten()
    if feasible.numel() == 0:
        best = int(torch.argmax(fractions))
        low, high = float(rungs[max(best - 1, 0)]), float(rungs[min(best + 1, rungs.numel() - 1)])
        for _ in range(ROUNDS):
            grid = torch.linspace(low, high, GRID, dtype=torch.float64)
            best = int(torch.argmax(_ess_fractions(logw, slope, offset, grid)))
            low, high = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, GRID - 1)])
        return float(grid[best])
    last = int(feasible[-1])
    if last == rungs.numel() - 1:
        return float(rungs[last])
    return raise_lambda(logw, slope, offset, float(rungs[last]), float(rungs[last + 1]), target)
