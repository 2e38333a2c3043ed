"""The rare-attribute test bed (the FK paper's anchor: a property 0.3% of samples have).

Model: :func:`testbeds.toy.two_modes` in ``dim`` dimensions. Attribute: a·x > c with a the first axis and c
set so that exactly ``rarity`` of the model's samples have it. Reward: sigmoid((a·x − c) / width), smooth, so
it scores partial progress; in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .toy import GaussianMixture, two_modes


@dataclass
class RareAttribute:
    model: GaussianMixture
    direction: torch.Tensor
    threshold: float
    width: float = 0.25

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((x @ self.direction - self.threshold) / self.width)

    def has_attribute(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.direction > self.threshold


def rare_attribute(dim: int = 2, rarity: float = 0.003) -> RareAttribute:
    model = two_modes(dim)
    a = torch.zeros(dim, dtype=model.means.dtype)
    a[0] = 1.0
    lo, hi = 0.0, 10.0  # bisection on the mixture's tail probability, which decreases in c
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if model.projection_tail(a, mid) > rarity else (lo, mid)
    threshold = 0.5 * (lo + hi)
    assert math.isclose(model.projection_tail(a, threshold), rarity, rel_tol=1e-6)
    return RareAttribute(model, a, threshold)
