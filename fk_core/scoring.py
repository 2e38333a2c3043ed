"""What a run scores, and what scoring costs: the two phases of a scorer and the run's one cost clock.

A *scorer* is what :func:`fk_core.run_segments` asks for rewards. It has two phases:

* ``check(x0, step)`` → the rewards of the particles' x0-predictions at a potential step (the step index in
  the whole run), used for steering;
* ``final(x)`` → the rewards of the finished particles, used for the final weights and the output choice.

Either may return a tensor [N] or a :class:`Scored` that also carries the images it looked at (a host decodes
latents once, for the reward, and shows the same images live and as the node's output) and what the scoring
cost. Optional attributes: ``name`` (the steering reward's name), ``final_name`` (a separate final judge's
name, else None), ``notes`` (remarks for the trace) and ``label`` (the decoder of the checks, for the cost
record). A plain reward callable becomes a scorer through :func:`as_scorer`.

Cost: a host that wants the run's wall time split into model / decode / reward hands the engine a
:class:`CostClock`; the engine reads it at each check (model time since the last check) and the scorer reads
it around its decode and reward calls. On a GPU the clock synchronises the device at each reading, so every
part's kernels are counted in that part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .errors import FKError
from .images import fit_to_reward

COST_KEYS = ("model_s", "decode_s", "reward_s")


def synchronize(device: Optional[torch.device]) -> None:
    if device is None:
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class CostClock:
    """Wall clock of a run on ``device`` (synchronised at each reading); :meth:`lap` gives the time since the
    last mark and sets a new one."""

    def __init__(self, device: Optional[torch.device] = None):
        self.device = device
        self._mark = self.now()

    def now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def lap(self) -> float:
        now = self.now()
        elapsed, self._mark = now - self._mark, now
        return elapsed

    def restart(self) -> None:
        self._mark = self.now()


def cost_totals(checks: list[dict], final: Optional[dict], label: Optional[str]) -> dict:
    """The run's cost record from each check's {model_s, decode_s, reward_s} and the final scoring's."""
    final = final or dict.fromkeys(COST_KEYS, 0.0)
    decode = sum(c.get("decode_s", 0.0) for c in checks)
    reward = sum(c.get("reward_s", 0.0) for c in checks)
    return {
        "preview_decoder": label or "none",
        "checks": len(checks),
        "model_s": sum(c["model_s"] for c in checks) + final.get("model_s", 0.0),
        "decode_s": decode,
        "reward_s": reward,
        "per_check_s": (decode + reward) / len(checks) if checks else 0.0,
        "final_decode_s": final.get("decode_s", 0.0),
        "final_reward_s": final.get("reward_s", 0.0),
    }


def cost_summary(cost: dict) -> str:
    """One line for a host's text output, e.g. ``cost: model 12.1 s; 15 checks, TAESD (taesd_decoder.pth)
    previews: decode 0.42 s + reward 0.05 s = 0.031 s per check; final full-VAE decode 0.20 s``."""
    return (f"cost: model {cost['model_s']:.3g} s; {cost['checks']} checks, {cost['preview_decoder']} previews: "
            f"decode {cost['decode_s']:.3g} s + reward {cost['reward_s']:.3g} s = {cost['per_check_s']:.3g} s "
            f"per check; final full-VAE decode {cost['final_decode_s']:.3g} s")


@dataclass
class Scored:
    """A scorer's answer: rewards [N], the images scored (None when it scored x0 itself) and their cost."""

    rewards: torch.Tensor
    images: Optional[torch.Tensor] = None
    cost: dict = field(default_factory=dict)  # decode_s / reward_s, when the scorer measured them


def scored(value: Any) -> Scored:
    return value if isinstance(value, Scored) else Scored(value)


def name_of(reward: Any) -> str:
    """A reward's name for messages and notes: its ``name`` attribute, else its type."""
    name = getattr(reward, "name", None)
    return str(name) if name else type(reward).__name__


def notes_of(*rewards: Any) -> list[str]:
    """What rewards say of themselves (``notes``: what a detector understood, a judge running on the CPU …)."""
    return [note for r in rewards if r is not None for note in getattr(r, "notes", None) or []]


class RewardScorer:
    """The scorer of plain reward callables: ``reward`` scores every check and, without a ``final_reward``
    (e.g. a slow judge), the finished samples too."""

    label = None

    def __init__(self, reward: Callable[[torch.Tensor], Any], final_reward: Optional[Callable] = None):
        self.reward = reward
        self.final_reward = final_reward
        self.name = getattr(reward, "name", "the reward")
        self.final_name = getattr(final_reward, "name", "the final reward") if final_reward is not None else None
        self.notes = notes_of(reward, final_reward)

    def check(self, x0: torch.Tensor, step: int) -> torch.Tensor:
        return self.reward(x0)

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return (self.final_reward or self.reward)(x)


def is_scorer(reward: Any) -> bool:
    return callable(getattr(reward, "check", None)) and callable(getattr(reward, "final", None))


def as_scorer(reward: Any, final_reward: Optional[Callable] = None):
    """``reward`` if it is a scorer already, else :class:`RewardScorer` of it (and of ``final_reward``)."""
    if is_scorer(reward):
        if final_reward is not None:
            raise FKError("pass a final reward to the scorer, not next to it")
        return reward
    return RewardScorer(reward, final_reward)


def decode_and_score(decode: Callable, x0: torch.Tensor, reward: Callable, batch: int, input_size: Optional[int],
                     clock: CostClock, keep_full: bool,
                     before_batch: Optional[Callable[[], None]] = None) -> Scored:
    """Decode ``x0`` in sub-batches of ``batch`` and score each sub-batch with one reward call (after shrinking
    it on its device to ``input_size``, the side the reward looks at: see :func:`fit_to_reward`).

    ``reward(images)`` must return a float [b] CPU tensor (the host's conversion, which names the reward in its
    messages). Returns the scores [N], the images (full size with ``keep_full``, else the ones the reward saw)
    and the decode and reward seconds. ``before_batch`` runs before each sub-batch (a host's cancel check)."""
    n = x0.shape[0]
    batch = max(1, int(batch))
    kept: Optional[torch.Tensor] = None
    scores = torch.empty(n, dtype=torch.float32)
    decode_s = reward_s = 0.0
    for start in range(0, n, batch):
        if before_batch is not None:
            before_batch()
        t0 = clock.now()
        images = decode(x0[start:start + batch])
        t1 = clock.now()
        seen = fit_to_reward(images, input_size)
        scores[start:start + images.shape[0]] = reward(seen)
        t2 = clock.now()
        decode_s, reward_s = decode_s + t1 - t0, reward_s + t2 - t1
        keep = images if keep_full else seen
        if kept is None:  # filled sub-batch by sub-batch: only one N-image batch is alive at a time
            kept = torch.empty((n,) + tuple(keep.shape[1:]), dtype=torch.float32, device=keep.device)
        kept[start:start + keep.shape[0]] = keep
        del images, seen, keep
    return Scored(scores, kept, {"decode_s": decode_s, "reward_s": reward_s})
