"""What happened during a run, step by step: enough for charts, the lineage view and debugging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch


def _floats(t: torch.Tensor) -> list[Optional[float]]:
    """JSON-safe list: NaN and ±inf become None (JSON has no such numbers)."""
    return [float(v) if torch.isfinite(v) else None for v in t.detach().cpu().double()]


@dataclass
class PotentialStep:
    """One potential step (numbers only; the scored x0 batch goes to the ``on_potential_step`` hook). Tensors are
    on the CPU."""

    step: int  # index into sigmas: the potential acted on the x0-prediction at sigmas[step]
    sigma: float
    rewards: torch.Tensor  # [N], NaN where the reward failed
    log_weights: torch.Tensor  # [N] normalised, before resampling; -inf = weight zero
    ess: float  # effective sample size of those weights
    resampled: bool
    ancestors: torch.Tensor  # [N] long: new particle i is a copy of old particle ancestors[i]
    invalid: list[int] = field(default_factory=list)  # particles whose reward was NaN/inf (weight set to 0)
    lmbda: float = float("nan")  # λ_t: the tilt this step applied (rises step by step in adaptive modes)
    survivors: int = 0  # distinct particles the resampling kept (all usable ones when it did not resample)
    cost: Optional[dict[str, float]] = None  # host-measured seconds: {"model_s", "decode_s", "reward_s"}
    components: Optional[dict[str, Any]] = None  # a combined reward's terms: {"names", "weights", "values"}
    # guided runs: {"gamma", "backward_s", "shift" (mean |Δ|/s), "max_shift", "correction_sd"} (fk_core.guidance)
    guidance: Optional[dict[str, float]] = None

    def to_dict(self) -> dict[str, Any]:
        record = _with_components(self.components, {
            "step": self.step,
            "sigma": self.sigma,
            "rewards": _floats(self.rewards),
            "log_weights": _floats(self.log_weights),
            "ess": self.ess,
            "resampled": self.resampled,
            "ancestors": [int(a) for a in self.ancestors],
            "invalid": list(self.invalid),
            "lmbda": self.lmbda if torch.isfinite(torch.tensor(self.lmbda)) else None,
            "survivors": int(self.survivors),
            "cost": dict(self.cost) if self.cost is not None else None,
        })
        return record if self.guidance is None else {**record, "guidance": dict(self.guidance)}


def _with_components(components: Optional[dict], record: dict) -> dict:
    """A combined reward's components join the record (absent for a single reward: old traces read the same)."""
    return record if components is None else {**record, "components": components}


@dataclass
class Trace:
    """The run's history. ``origin[i]``: the initial particle that final particle i descends from."""

    num_particles: int
    num_steps: int
    config: dict[str, Any]
    steps: list[PotentialStep] = field(default_factory=list)
    origin: Optional[torch.Tensor] = None
    final_rewards: Optional[torch.Tensor] = None
    final_log_weights: Optional[torch.Tensor] = None
    final_invalid: list[int] = field(default_factory=list)
    log_normalizer: float = float("nan")
    final_lmbda: float = float("nan")  # the λ of the final weighting: the output targets p·exp(final_lmbda·r)
    notes: list[str] = field(default_factory=list)  # human-readable remarks (e.g. sampler substitutions)
    cost: Optional[dict[str, Any]] = None  # host-measured totals (model / check decode / check reward seconds …)
    final_components: Optional[dict[str, Any]] = None  # a combined reward's terms for the final particles
    window_stop: Optional[dict[str, Any]] = None  # where and why steering stopped early (fk_core.window), or None

    def lineage(self) -> list[list[int]]:
        """For each final particle, its index at every potential step (oldest first), ending at itself."""
        return lineage_paths([[int(a) for a in event.ancestors] for event in self.steps], self.num_particles)

    def to_dict(self) -> dict[str, Any]:
        record = {
            "format": "fk-steering-trace/1",
            "num_particles": self.num_particles,
            "num_steps": self.num_steps,
            "config": dict(self.config),
            "steps": [s.to_dict() for s in self.steps],
            "origin": [int(o) for o in self.origin] if self.origin is not None else None,
            "final_rewards": _floats(self.final_rewards) if self.final_rewards is not None else None,
            "final_log_weights": _floats(self.final_log_weights) if self.final_log_weights is not None else None,
            "final_invalid": list(self.final_invalid),
            "log_normalizer": self.log_normalizer if torch.isfinite(torch.tensor(self.log_normalizer)) else None,
            "final_lmbda": self.final_lmbda if torch.isfinite(torch.tensor(self.final_lmbda)) else None,
            "notes": list(self.notes),
            "cost": dict(self.cost) if self.cost is not None else None,
            "window_stop": dict(self.window_stop) if self.window_stop is not None else None,
        }
        return record if self.final_components is None else {**record, "final_components": self.final_components}


def changed_population(ancestors: list[int], resampled: bool) -> bool:
    """A resampling that changed the population: some particle got no copy. With λ 0 (best-of-N) the weights are
    uniform and resampling keeps every particle: views mark nothing then."""
    return bool(resampled) and len(set(int(a) for a in ancestors)) < len(ancestors)


def lineage_paths(ancestors: list[list[int]], n: int) -> list[list[int]]:
    """The lineage rule: for each final particle, its slot at every potential step (before resampling), then its
    final slot. Walking back, final particle i came from ``ancestors[-1][i]``, that one from ``ancestors[-2]``
    of it, and so on; ``paths[i][0]`` is the initial particle, ``paths[i][-1] == i``."""
    current = list(range(n))
    columns = [current]
    for step in reversed(ancestors):
        current = [int(step[c]) for c in current]
        columns.append(current)
    columns.reverse()
    return [[col[i] for col in columns] for i in range(n)]
