"""Particles by reward: the one ordering every view uses (descending reward, NaN last, ties by index)."""

from __future__ import annotations

import math

import torch


def reward_order(rewards) -> torch.Tensor:
    """Particle indices by descending reward, non-finite last (stable: equal rewards keep index order)."""
    r = torch.as_tensor(rewards).detach().to("cpu", torch.float64).reshape(-1)
    key = torch.where(torch.isfinite(r), -r, torch.full_like(r, math.inf))
    return torch.sort(key, stable=True).indices
