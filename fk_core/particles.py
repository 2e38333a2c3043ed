"""The particle filter's bookkeeping, independent of any sampler.

:class:`ParticleFilter` holds the per-particle log-weights and lineage statistics and turns rewards into
resampling decisions. A host's sampling loop (``fk_core.engine.run_segments``) calls :meth:`observe` at each
potential step and :meth:`finish` once on the finished samples. No sampler maths here, no model calls.

Weights. ``logw`` holds the log-weights accumulated since the last resampling (all zero right after one).
At a potential step the log-potentials are added; without an ESS threshold the population is resampled at
every potential step, with one it is resampled only when ESS/N drops below the threshold and otherwise the
accumulated weights are carried forward. The final log-weight is ``logw + λ·r(x0) − applied`` where
``applied`` is the sum of log-potentials along each lineage (see :mod:`fk_core.potentials`).

Strength. λ_t, the tilt applied at a check, is ``lmbda`` at every check (``lambda_mode`` "fixed"), or rises
from 0 as far as the ESS target of ``strength`` allows: up to ``lmbda``, which is also the final λ
("adaptive"), or up to a ceiling set by the rewards' own spread, with the final λ chosen the same way from
the final rewards ("auto"). See :mod:`fk_core.tempering`. Whatever the sequence, the final weighting makes
the weighted output target p·exp(λ_final·r). (Choosing λ_t from the population itself makes the
normalising-constant estimate consistent rather than unbiased, as in every adaptive SMC sampler; its bias
is O(1/N).)

Normalising constant. The product over resampling epochs of mean(exp(logw)) is the SMC estimate of
E[exp(λ r(x0))] under the sampler; its log is ``log_normalizer``. It lets independent runs be combined
without the O(1/N) bias of self-normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from . import tempering
from .errors import FKError
from .log_weights import ess, log_mean_exp, log_normalise
from .potentials import LineageState, final_log_weight, log_potential, potential_terms
from .resampling import resample
from .tempering import LAMBDA_MODES, ess_target, raise_lambda
from .trace import PotentialStep, Trace


def _valid_rewards(rewards: torch.Tensor, n: int, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards as float64 CPU [n] and the mask of finite ones."""
    if not torch.is_tensor(rewards):
        rewards = torch.as_tensor(rewards)
    rewards = rewards.detach().to("cpu", torch.float64).reshape(-1)
    if rewards.numel() != n:
        raise FKError(f"the reward returned {rewards.numel()} values {where}, expected one per particle ({n})")
    return rewards, torch.isfinite(rewards)


@dataclass
class FinalWeights:
    rewards: torch.Tensor  # [N] float64, NaN kept
    log_weights: torch.Tensor  # [N] normalised
    best_index: int  # highest finite final reward


class ParticleFilter:
    def __init__(self, num_particles: int, potential: str, lmbda: float, *, resampling: str = "systematic",
                 ess_threshold: Optional[float] = None, generator: Optional[torch.Generator] = None,
                 lambda_mode: str = "fixed", strength: float = 0.5):
        if num_particles < 1:
            raise FKError(f"need at least one particle, got {num_particles}")
        if ess_threshold is not None and not 0.0 < ess_threshold <= 1.0:
            raise FKError(f"ESS threshold is a fraction of N in (0, 1], got {ess_threshold}")
        if not torch.isfinite(torch.tensor(float(lmbda))):
            raise FKError(f"λ must be finite, got {lmbda}")
        if lambda_mode not in LAMBDA_MODES:
            raise FKError(f"unknown lambda mode {lambda_mode!r}; choose one of {LAMBDA_MODES}")
        if not 0.0 <= strength <= 1.0:
            raise FKError(f"strength is a fraction in [0, 1], got {strength}")
        if lambda_mode == "adaptive" and lmbda < 0:
            raise FKError(f"an adaptive λ rises from 0 to λ, so λ must be 0 or more; got {lmbda}")
        self.n = num_particles
        self.potential = potential
        self.lmbda = float(lmbda)
        self.lambda_mode = lambda_mode
        self.target = ess_target(strength)
        self.current_lmbda = float(lmbda) if lambda_mode == "fixed" else 0.0  # λ_t never goes down
        self.final_lmbda = float("nan")
        self.reward_spread = 0.0  # auto mode: the largest standard deviation of the rewards seen at a check
        self.resampling = resampling
        self.ess_threshold = ess_threshold
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.logw = torch.zeros(num_particles, dtype=torch.float64)
        self.state = LineageState.initial(num_particles)
        self.origin = torch.arange(num_particles)
        self.log_normalizer = 0.0

    def observe(self, step: int, sigma: float, rewards: torch.Tensor) -> PotentialStep:
        """Apply the potential for ``rewards`` (one per particle) and resample if due.

        Returns the event; its ``ancestors`` say how to reorder the particles (identity if not resampled).
        Particles with a NaN/inf reward get weight zero and are listed in ``event.invalid``.
        """
        rewards, ok = _valid_rewards(rewards, self.n, f"at step {step}")
        alive = ok & torch.isfinite(self.logw)
        if not alive.any():
            raise FKError(f"no particle has a usable reward at step {step} (all NaN/inf or already dropped); "
                          "check the reward model and its inputs")
        safe = torch.where(ok, rewards, torch.zeros_like(rewards))
        if self.lambda_mode != "fixed":
            carried = torch.where(alive, self.logw, torch.full_like(self.logw, -torch.inf))
            slope, offset = potential_terms(self.potential, safe, self.state)
            ceiling = self.lmbda if self.lambda_mode == "adaptive" else self._auto_ceiling(safe[alive])
            self.current_lmbda = raise_lambda(carried, slope, offset, self.current_lmbda, ceiling, self.target)
        log_g, state = log_potential(self.potential, self.current_lmbda, safe, self.state)
        logw = torch.where(alive, self.logw + log_g, torch.full_like(log_g, -torch.inf))
        log_w_normed = log_normalise(logw)
        current_ess = ess(logw)
        due = self.ess_threshold is None or current_ess < self.ess_threshold * self.n
        if due:
            self.log_normalizer += log_mean_exp(logw)
            ancestors = resample(self.resampling, log_w_normed.exp(), self.generator)
            self.logw = torch.zeros(self.n, dtype=torch.float64)
            self.state = state.select(ancestors)
            self.origin = self.origin[ancestors]
            survivors = int(torch.unique(ancestors).numel())
        else:
            ancestors = torch.arange(self.n)
            self.logw = logw
            self.state = state
            survivors = int(torch.isfinite(logw).sum())
        invalid = [int(i) for i in torch.nonzero(~ok).flatten()]
        return PotentialStep(step=step, sigma=float(sigma), rewards=rewards, log_weights=log_w_normed,
                             ess=current_ess, resampled=due, ancestors=ancestors, invalid=invalid,
                             lmbda=self.current_lmbda, survivors=survivors)

    def add_log_weights(self, increments: torch.Tensor) -> None:
        """Add per-particle log-weight increments that are not potentials (a guided proposal's density ratio,
        fk_core.guidance): they enter resampling and the final weights, never the lineage's ``applied``."""
        self.logw = self.logw + increments.detach().to("cpu", torch.float64).reshape(-1)

    def finish(self, rewards: torch.Tensor, new_reward: bool = False) -> FinalWeights:
        """Final weighting on the finished samples: the population then targets p(x0)·exp(λ_final r(x0)).

        λ_final is ``lmbda`` except in "auto" mode (then chosen from these rewards; see ``final_lmbda``).
        ``new_reward``: the final rewards come from another reward than the checks' (a final judge). In auto
        mode its λ is then a new target on its own scale (its own spread, searched from 0), not a rise from
        the steering reward's λ, which means nothing on the judge's scale.
        """
        rewards, ok = _valid_rewards(rewards, self.n, "on the final samples")
        alive = ok & torch.isfinite(self.logw)
        if not alive.any():
            raise FKError("no finished sample has a usable reward (all NaN/inf); check the reward model")
        safe = torch.where(ok, rewards, torch.zeros_like(rewards))
        if self.lambda_mode == "auto" and new_reward:
            carried = torch.where(alive, self.logw, torch.full_like(self.logw, -torch.inf))
            own_spread = float(safe[alive].std()) if int(alive.sum()) > 1 else 0.0
            ceiling = tempering.AUTO_TILT / own_spread if own_spread > 0 else math.inf
            self.final_lmbda = tempering.new_target_lambda(carried, safe, self.state.applied, ceiling, self.target)
        elif self.lambda_mode == "auto":  # the final rewards are the most reliable: one more rise, same target
            carried = torch.where(alive, self.logw, torch.full_like(self.logw, -torch.inf))
            self.final_lmbda = raise_lambda(carried, safe, self.state.applied, self.current_lmbda,
                                            self._auto_ceiling(safe[alive]), self.target)
        else:
            self.final_lmbda = self.lmbda
        logw = torch.where(alive, self.logw + final_log_weight(self.final_lmbda, safe, self.state),
                           torch.full_like(safe, -torch.inf))
        self.log_normalizer += log_mean_exp(logw)
        best = int(torch.argmax(torch.where(alive, rewards, torch.full_like(rewards, -torch.inf))))
        return FinalWeights(rewards=rewards, log_weights=log_normalise(logw), best_index=best)

    def _auto_ceiling(self, rewards: torch.Tensor) -> float:
        """λ·(largest spread of the rewards seen so far) ≤ AUTO_TILT, never below the λ already reached."""
        if rewards.numel() > 1:
            self.reward_spread = max(self.reward_spread, float(rewards.std()))
        if self.reward_spread == 0.0:
            return math.inf
        return max(self.current_lmbda, tempering.AUTO_TILT / self.reward_spread)

    def new_trace(self, num_steps: int, config: dict) -> Trace:
        return Trace(num_particles=self.n, num_steps=num_steps, config=config)
