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
    backward = [c["backward_s"] for c in checks if "backward_s" in c]
    guided = {"backward_s": sum(backward), "backward_per_check_s": sum(backward) / len(backward)} if backward else {}
    return {
        "preview_decoder": label or "none",
        "checks": len(checks),
        "model_s": sum(c["model_s"] for c in checks) + final.get("model_s", 0.0),
        "decode_s": decode,
        "reward_s": reward,
        "per_check_s": (decode + reward) / len(checks) if checks else 0.0,
        "final_decode_s": final.get("decode_s", 0.0),
        "final_reward_s": final.get("reward_s", 0.0),
        **guided,  # guided runs (fk_core.guidance): the extra backward pass through decoder and reward
    }


def cost_summary(cost: dict) -> str:
    """One line for a host's text output, e.g. ``cost: model 12.1 s; 15 checks, TAESD (taesd_decoder.pth)
    previews: decode 0.42 s + reward 0.05 s = 0.031 s per check; final full-VAE decode 0.20 s``."""
    guided = (f"; guidance: backward pass {cost['backward_per_check_s']:.3g} s more per check"
              if "backward_per_check_s" in cost else "")
    return (f"cost: model {cost['model_s']:.3g} s; {cost['checks']} checks, {cost['preview_decoder']} previews: "
            f"decode {cost['decode_s']:.3g} s + reward {cost['reward_s']:.3g} s = {cost['per_check_s']:.3g} s "
            f"per check{guided}; final full-VAE decode {cost['final_decode_s']:.3g} s")


@dataclass
class Scored:
    """A scorer's answer: rewards [N], the images scored (None when it scored x0 itself) and their cost."""

    rewards: torch.Tensor
    images: Optional[torch.Tensor] = None
    cost: dict = field(default_factory=dict)  # decode_s / reward_s, when the scorer measured them
    parts: list = field(default_factory=list)  # a combined reward's (name, weight, values [N]) per term
    gradient: Optional[torch.Tensor] = None  # guided checks: ∂r/∂x0 per particle, x0's shape (fk_core.guidance)


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

    def check(self, x0: torch.Tensor, step: int) -> Scored:
        return scored_with_parts(self.reward, x0)

    def final(self, x: torch.Tensor) -> Scored:
        return scored_with_parts(self.final_reward or self.reward, x)

    def check_with_gradient(self, x0: torch.Tensor, step: int) -> Scored:
        """The check's rewards and their gradient w.r.t. x0 (guided proposals; the backward pass timed)."""
        from .guidance import reward_gradient
        from .score_sheet import PartsRecorder

        recorder = PartsRecorder(self.reward)
        values, gradient, backward_s = reward_gradient(recorder, x0, self.name, holders=[self.reward])
        return Scored(values, parts=recorder.take(), gradient=gradient, cost={"backward_s": backward_s})


def scored_with_parts(reward: Callable, images: torch.Tensor) -> Scored:
    """``reward(images)`` as a :class:`Scored`, with a combined reward's terms in ``parts``."""
    from .score_sheet import PartsRecorder  # score_sheet builds on this module

    recorder = PartsRecorder(reward)
    return Scored(recorder(images), parts=recorder.take())


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
                     before_batch: Optional[Callable[[], None]] = None,
                     pick: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                     gradient_of: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                     holders: tuple = ()) -> Scored:
    """Decode ``x0`` in sub-batches of ``batch`` and score each sub-batch with one reward call (after shrinking
    it on its device to ``input_size``, the side the reward looks at: see :func:`fit_to_reward`).

    ``reward(images)`` must return a float [b] CPU tensor (the host's conversion, which names the reward in its
    messages). Returns the scores [N], the images (full size with ``keep_full``, else the ones the reward saw)
    and the decode and reward seconds. ``before_batch`` runs before each sub-batch (a host's cancel check);
    ``pick`` chooses what the reward sees of the decoded images before they are shrunk (a video's scored frames).

    ``gradient_of`` (guided checks): the reward as a differentiable function of the images (``reward`` then only
    checks its values); the answer then carries ∂r/∂x0 and the backward seconds (fk_core.guidance), and the
    weights and caches of ``holders`` (decoder, reward) are made usable by autograd first."""
    if gradient_of is not None:
        return _decode_and_score_with_gradient(decode, x0, reward, gradient_of, batch, input_size, clock,
                                               before_batch, pick, holders)
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
        seen = fit_to_reward(pick(images) if pick is not None else images, input_size)
        scores[start:start + images.shape[0]] = reward(seen)
        t2 = clock.now()
        decode_s, reward_s = decode_s + t1 - t0, reward_s + t2 - t1
        keep = images if keep_full else seen
        if kept is None:  # filled sub-batch by sub-batch: only one N-image batch is alive at a time
            kept = torch.empty((n,) + tuple(keep.shape[1:]), dtype=torch.float32, device=keep.device)
        kept[start:start + keep.shape[0]] = keep
        del images, seen, keep
    return Scored(scores, kept, {"decode_s": decode_s, "reward_s": reward_s})


def _decode_and_score_with_gradient(decode, x0, reward, gradient_of, batch, input_size, clock, before_batch, pick,
                                    holders) -> Scored:
    """decode_and_score with the backward pass: the forward is the check's own, only the backward is extra."""
    from .guidance import reward_gradient

    n, batch = x0.shape[0], max(1, int(batch))
    scores = torch.empty(n, dtype=torch.float32)
    gradient = torch.empty_like(x0)
    kept: Optional[torch.Tensor] = None
    times = {"decode_s": 0.0, "reward_s": 0.0, "backward_s": 0.0}

    for start in range(0, n, batch):
        if before_batch is not None:
            before_batch()
        seen_images: list = []

        def forward(latents: torch.Tensor, seen_images=seen_images) -> torch.Tensor:
            t0 = clock.now()
            images = decode(latents)
            t1 = clock.now()
            seen = fit_to_reward(pick(images) if pick is not None else images, input_size)
            values = gradient_of(seen)
            times["decode_s"] += t1 - t0
            times["reward_s"] += clock.now() - t1
            seen_images.append(seen.detach())
            return values

        values, grad, backward_s = reward_gradient(forward, x0[start:start + batch], "the reward", holders, clock)
        times["backward_s"] += backward_s
        count = values.shape[0]
        scores[start:start + count] = reward(values)  # the host's checks of the values (shape, type)
        gradient[start:start + count] = grad.to(gradient.dtype)
        seen = seen_images[0]
        if kept is None:
            kept = torch.empty((n,) + tuple(seen.shape[1:]), dtype=torch.float32, device=seen.device)
        kept[start:start + count] = seen
    return Scored(scores, kept, times, gradient=gradient)
