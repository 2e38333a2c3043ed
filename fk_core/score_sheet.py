"""Scoring finished images outside a run (FK Score Images): the same preprocessing as inside a run, the images
by score, each combined reward's components and a labelled sheet in the contact sheet's look.

A score here equals the score of the same image in a run: images go through :func:`fk_core.decode_and_score`
(sub-batches, each shrunk with :func:`fk_core.fit_to_reward` to the side the reward looks at, one reward call
each) exactly as a run's final scoring does, with decoding left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .contact_sheet import contact_sheet
from .ranking import reward_order
from .rewards.classic import WeightedSum, weighted_total
from .scoring import CostClock, decode_and_score

# Short names for a breakdown under a tile (``r=0.82 = 0.9 aes + 0.3 clip - 0.4 sharp``).
SHORT_NAMES = {
    "LAION aesthetic": "aes", "CLIP score": "clip", "sharpness": "sharp", "saturation": "sat",
    "colorfulness": "color", "brightness": "bright", "contrast": "contrast", "target color": "hue",
    "JPEG compressibility": "jpeg", "ImageReward": "IR", "PickScore": "pick", "HPSv2.1": "hps2", "HPSv3": "hps3",
}


@dataclass
class ImageScores:
    """Scores of N images (input order), the order by score (best first, NaN last) and, for a combined reward,
    each term's (name, weight, values [N]) before weighting (empty for a single reward)."""

    scores: torch.Tensor
    order: torch.Tensor
    parts: list[tuple[str, float, torch.Tensor]] = field(default_factory=list)


def summed_terms(reward: Any) -> Optional[tuple[WeightedSum, Optional[str]]]:
    """The weighted sum behind a combined reward (bare, or bound to its prompt), else None."""
    if isinstance(reward, WeightedSum):
        return reward, None
    inner = getattr(reward, "reward", None)
    if isinstance(inner, WeightedSum):
        return inner, getattr(reward, "prompt", None)
    return None


class PartsRecorder:
    """A reward that also keeps what a combined reward's terms said: ``recorder(images)`` scores exactly as the
    reward does (for a combined one: the weighted total of its terms, the very sum it returns) and, for a
    combined reward, keeps each term's values; :meth:`take` hands them over for all images scored since."""

    def __init__(self, reward: Callable):
        self.reward = reward
        self.summed = summed_terms(reward)
        self.name = getattr(reward, "name", None)
        self.input_size = getattr(reward, "input_size", None)
        self._batches: list[list[tuple[str, float, torch.Tensor]]] = []

    def __call__(self, images: torch.Tensor):
        if self.summed is None:
            return self.reward(images)
        terms, prompt = self.summed
        parts = terms.parts(images, prompt)
        self._batches.append([(name, weight, value.detach().to("cpu", torch.float32)) for name, weight, value in parts])
        return weighted_total(parts)

    def take(self) -> list[tuple[str, float, torch.Tensor]]:
        """(name, weight, values [N]) per term, over every sub-batch since the last take; [] for a single reward."""
        batches, self._batches = self._batches, []
        if not batches:
            return []
        return [(name, weight, torch.cat([batch[k][2] for batch in batches]))
                for k, (name, weight, _) in enumerate(batches[0])]


def score_images(images: torch.Tensor, reward: Callable, batch: int, input_size: Optional[int],
                 call: Callable[[Callable, torch.Tensor], torch.Tensor] = lambda score, seen: score(seen),
                 ) -> ImageScores:
    """Score ``images`` [N, H, W, C] in [0, 1] with ``reward`` as a run does. ``call(score, seen)`` makes one
    reward call on one sub-batch and returns a float [b] CPU tensor (the host's conversion and messages)."""
    recorder = PartsRecorder(reward)

    def one_batch(seen: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(call(recorder, seen)).detach().to("cpu", torch.float32).reshape(-1)

    with torch.no_grad():
        scored = decode_and_score(lambda x: x, images, one_batch, batch, input_size, CostClock(), keep_full=False)
    return ImageScores(scored.rewards, reward_order(scored.rewards), recorder.take())


def components_record(parts: list[tuple[str, float, torch.Tensor]]) -> Optional[dict]:
    """A combined reward's terms for a trace: ``{"names", "weights", "values": [[N] per term]}`` (NaN = None);
    None for a single reward."""
    if not parts:
        return None
    return {"names": [name for name, _, _ in parts], "weights": [weight for _, weight, _ in parts],
            "values": [[_finite(float(v)) for v in values] for _, _, values in parts]}


def component_notes(record: Optional[dict], totals) -> Optional[list[list[str]]]:
    """Per particle, the breakdown pieces of a trace's components record (for a contact sheet's tiles)."""
    if not record:
        return None
    notes = []
    for i, total in enumerate(totals):
        parts = [(name, weight, math.nan if values[i] is None else values[i])
                 for name, weight, values in zip(record["names"], record["weights"], record["values"], strict=True)]
        notes.append(breakdown_pieces(math.nan if total is None else float(total), parts, with_total=False))
    return notes


def short_name(name: str) -> str:
    """``aes`` for LAION aesthetic, ``bright`` for brightness(target=0.5) …; else the name's first word."""
    base = (name or "reward").split(":")[0].split("(")[0].strip()
    if name in SHORT_NAMES or base in SHORT_NAMES:
        return SHORT_NAMES.get(name) or SHORT_NAMES[base]
    return (base.split() or ["reward"])[0][:8]


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}g}" if math.isfinite(value) else "nan"


def breakdown_pieces(total: float, parts: list[tuple[str, float, float]], with_total: bool = True) -> list[str]:
    """``["r=0.82 =", "0.9 aes", "+ 0.3 clip", "- 0.4 sharp"]``: the score and each term's weighted share
    (weight x value), in term order (pieces for :func:`fk_core.contact_sheet.wrap_pieces`). Under a tile that
    already says ``r=0.82``: ``with_total=False`` gives ``["= 0.9 aes", "+ 0.3 clip", "- 0.4 sharp"]``."""
    if not parts:
        return []
    pieces = []
    for k, (name, weight, value) in enumerate(parts):
        share = weight * value
        magnitude = _number(abs(share), 2)
        if k == 0:
            pieces.append(f"{'-' if share < 0 else ''}{magnitude} {short_name(name)}")
        else:
            pieces.append(f"{'-' if share < 0 else '+'} {magnitude} {short_name(name)}")
    if with_total:
        return [f"r={_number(total, 3)} ="] + pieces
    return [f"= {pieces[0]}"] + pieces[1:]


def breakdown(result: ImageScores, index: int) -> str:
    """One image's breakdown as one line (``r=0.82 = 0.9 aes + 0.3 clip - 0.4 sharp``); '' for a single reward."""
    return " ".join(breakdown_pieces(float(result.scores[index]), _parts_at(result, index)))


def _parts_at(result: ImageScores, index: int) -> list[tuple[str, float, float]]:
    return [(name, weight, float(values[index])) for name, weight, values in result.parts]


def score_sheet(images: torch.Tensor, result: ImageScores, columns: Optional[int] = None) -> torch.Tensor:
    """The images best first in the contact sheet's look: rank and score under each tile, a combined reward's
    weighted shares below them, the best one framed. Returns [1, H', W', 3]."""
    order = result.order
    notes = [breakdown_pieces(float(result.scores[i]), _parts_at(result, int(i)), with_total=False)
             for i in order.tolist()]
    return contact_sheet(images[order], result.scores[order], 0, columns=columns, notes=notes, ranked=True)


def scores_record(result: ImageScores) -> list[dict]:
    """Best first: rank, the image's position in the input batch, its score (None for NaN) and each component's
    weight, value and weighted share."""
    records = []
    for rank, i in enumerate(result.order.tolist(), start=1):
        score = float(result.scores[i])
        components = [{"reward": name, "weight": weight, "value": _finite(value), "share": _finite(weight * value)}
                      for name, weight, value in _parts_at(result, i)]
        records.append({"rank": rank, "index": i, "score": _finite(score), "components": components})
    return records


def _finite(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None
