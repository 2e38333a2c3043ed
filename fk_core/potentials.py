"""Potentials: how a reward r_t observed at an intermediate step becomes a log-weight increment.

FK steering tilts the diffusion p(x_{0:T}) by potentials G_t, each a function of the particle's path so far,
and ends with a final potential chosen so that the weighted population targets

    p(x_0) · exp(λ · r(x_0))

whatever the intermediate potentials were. That final log-potential is λ·r(x_0) minus the sum of the
log-potentials already applied along the particle's lineage (they are bookkept per particle and carried
through resampling). The intermediate choice decides *how* the particles get there:

* ``diff``      log G_t = λ (r_t − r_{t−1})   (r before the first potential step is 0). The product
                telescopes to exp(λ r_t): after resampling, the population targets the tilted marginal
                p_t(x_t)·exp(λ r_t). The principled choice; the final correction is λ(r(x0) − r_last).
* ``immediate`` log G_t = λ r_t. The product is exp(λ Σ_s r_s): later steps are tilted by every reward seen
                so far — greedier than diff as the number of potential steps grows.
* ``max``       log G_t = λ max_{s≤t} r_s. Rewards a lineage for the best x0-prediction it ever had; greedy.
* ``sum``       log G_t = λ Σ_{s≤t} r_s. Cumulative rewards, the greediest of the four.

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


def log_potential(kind: str, lmbda: float, rewards: torch.Tensor,
                  state: LineageState) -> tuple[torch.Tensor, LineageState]:
    """The log-potential for ``rewards`` (finite, float64) and the updated lineage state."""
    running_max = torch.maximum(state.running_max, rewards)
    running_sum = state.running_sum + rewards
    if kind == "diff":
        log_g = lmbda * (rewards - state.previous)
    elif kind == "immediate":
        log_g = lmbda * rewards
    elif kind == "max":
        log_g = lmbda * running_max
    elif kind == "sum":
        log_g = lmbda * running_sum
    else:
        raise ValueError(f"unknown potential {kind!r}; choose one of {POTENTIALS}")
    return log_g, LineageState(rewards, running_max, running_sum, state.applied + log_g)


def final_log_weight(lmbda: float, rewards: torch.Tensor, state: LineageState) -> torch.Tensor:
    """Log of the final potential: λ·r(x0) minus everything already applied along the lineage."""
    return lmbda * rewards - state.applied
