"""Potentials: how a reward r_t observed at an intermediate step becomes a log-weight increment.

FK steering tilts the diffusion p(x_{0:T}) by potentials G_t, each a function of the particle's path so far,
and ends with a final potential chosen so that the weighted population targets

    p(x_0) · exp(λ · r(x_0))

whatever the intermediate potentials were. That final log-potential is λ·r(x_0) minus the sum of the
log-potentials already applied along the particle's lineage (they are bookkept per particle and carried
through resampling). The intermediate choice decides *how* the particles get there:

* ``diff``      log G_t = λ_t r_t − λ_{t−1} r_{t−1}   (nothing before the first potential step). The product
                telescopes to exp(λ_t r_t): after resampling, the population targets the tilted marginal
                p_t(x_t)·exp(λ_t r_t). The principled choice; the final correction is λ r(x0) − λ_last r_last.
* ``immediate`` log G_t = λ r_t. The product is exp(λ Σ_s r_s): later steps are tilted by every reward seen
                so far — greedier than diff as the number of potential steps grows.
* ``max``       log G_t = λ max_{s≤t} r_s. Rewards a lineage for the best x0-prediction it ever had; greedy.
* ``sum``       log G_t = λ Σ_{s≤t} r_s. Cumulative rewards, the greediest of the four.

λ may change from one potential step to the next (λ_t, see :mod:`fk_core.tempering`); with a fixed λ,
λ_t = λ and ``diff`` is λ (r_t − r_{t−1}). Every log-potential is affine in λ_t per particle,
log G_t = λ_t·slope − offset, which is what lets the filter choose λ_t by bisection.

Rewards may be any real number (negative too): nothing is floored or clamped. Constants shared by all
particles at a step cancel when weights are normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

POTENTIALS = ("diff", "max", "sum", "immediate")


@dataclass
class LineageState:
    """Per-particle statistics of the rewards seen along each particle's lineage.

    Every field has one entry per particle and is permuted together with the particles on resampling.
    """

    previous: torch.Tensor  # r at the last potential step (diff)
    running_max: torch.Tensor  # max of r so far (max)
    running_sum: torch.Tensor  # sum of r so far (sum)
    applied: torch.Tensor  # sum of log-potentials applied so far: what the final weighting removes

    @classmethod
    def initial(cls, n: int) -> "LineageState":
        zeros = torch.zeros(n, dtype=torch.float64)
        return cls(zeros.clone(), torch.full((n,), -torch.inf, dtype=torch.float64), zeros.clone(), zeros.clone())

    def select(self, ancestors: torch.Tensor) -> "LineageState":
        return LineageState(*(t[ancestors] for t in (self.previous, self.running_max, self.running_sum, self.applied)))


def potential_terms(kind: str, rewards: torch.Tensor, state: LineageState) -> tuple[torch.Tensor, torch.Tensor]:
    """(slope, offset) per particle with log G_t = λ_t·slope − offset, for ``rewards`` (finite, float64).

    ``diff`` subtracts what its lineage has already been tilted by (λ_{t−1} r_{t−1} = ``applied``, since its
    potentials telescope), so its increments stay right when λ changes between steps.
    """
    zero = torch.zeros_like(rewards)
    if kind == "diff":
        return rewards, state.applied
    if kind == "immediate":
        return rewards, zero
    if kind == "max":
        return torch.maximum(state.running_max, rewards), zero
    if kind == "sum":
        return state.running_sum + rewards, zero
    raise ValueError(f"unknown potential {kind!r}; choose one of {POTENTIALS}")


def log_potential(kind: str, lmbda: float, rewards: torch.Tensor,
                  state: LineageState) -> tuple[torch.Tensor, LineageState]:
    """The log-potential at λ_t = ``lmbda`` for ``rewards`` (finite, float64) and the updated lineage state."""
    slope, offset = potential_terms(kind, rewards, state)
    log_g = lmbda * slope - offset
    running_max = torch.maximum(state.running_max, rewards)
    return log_g, LineageState(rewards, running_max, state.running_sum + rewards, state.applied + log_g)


def final_log_weight(lmbda: float, rewards: torch.Tensor, state: LineageState) -> torch.Tensor:
    """Log of the final potential: λ_final·r(x0) minus everything already applied along the lineage."""
    return lmbda * rewards - state.applied
