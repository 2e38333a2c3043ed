"""Particles by reward: the one ordering every view uses (descending reward, NaN last, ties by index)."""

from __future__ import annotations

import math

import torch


def reward_order(rewards) -> torch.Tensor:
    """Particle indices by descending reward, non-finite last (stable: equal rewards keep index order)."""
    r = torch.as_tensor(rewards).detach().to("cpu", torch.float64).reshape(-1)
    key = torch.where(torch.isfinite(r), -r, torch.full_like(r, math.inf))
    return torch.sort(key, stable=True).indices


def reward_ranks(rewards) -> list[int]:
    """Each particle's 1-based rank in :func:`reward_order` (rank 1 = highest reward, non-finite last)."""
    order = reward_order(rewards).tolist()
    ranks = [0] * len(order)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks
