"""Log-space weight arithmetic shared by the resamplers and the particle filter.

Weights live as unnormalised log-weights ``logw`` (a 1-D tensor, one entry per particle). ``-inf`` marks a
particle that can never be chosen again (its reward was NaN, say). Nothing here exponentiates an
unnormalised weight, so λ·r can be as large as float64 allows without overflow or clamping.
"""

from __future__ import annotations

import torch


def log_normalise(logw: torch.Tensor) -> torch.Tensor:
    """Return log W with sum(W) = 1. Raises if every particle has weight zero."""
    total = torch.logsumexp(logw, dim=0)
    if not torch.isfinite(total):
        raise ValueError("every particle has zero weight (all log-weights are -inf or NaN)")
    return logw - total


def ess(logw: torch.Tensor) -> float:
    """Effective sample size 1 / sum(W²), computed from log-weights: exp(-logsumexp(2 log W))."""
    return float(torch.exp(-torch.logsumexp(2.0 * log_normalise(logw), dim=0)))


def log_mean_exp(logw: torch.Tensor) -> float:
    """log((1/N) sum exp(logw)): one factor of the SMC estimate of the normalising constant."""
    return float(torch.logsumexp(logw, dim=0) - torch.log(torch.tensor(float(logw.numel()), dtype=logw.dtype)))
