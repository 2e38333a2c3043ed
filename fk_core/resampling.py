"""Resampling schemes: from normalised weights to ancestor indices.

Every scheme has the same signature, ``scheme(W, generator) -> ancestors``: ``W`` is a 1-D float64 tensor of
normalised weights (zeros allowed), ``ancestors`` a long tensor of N indices into the old population.
Each is unbiased: the number of copies of particle i has expectation N·W[i]. They differ in variance:

* multinomial — N independent draws from W. Simplest, noisiest.
* stratified — one uniform in each of the N strata [k/N, (k+1)/N). Lower variance.
* systematic — one uniform shared by all strata. Lowest variance in practice; our default.
* residual — floor(N·W[i]) copies deterministically, the remainder drawn multinomially.

The inverse-CDF schemes share :func:`_inverse_cdf`: a sorted vector of points in [0, 1) is mapped through
the cumulative weights. Zero-weight particles occupy an empty interval and are never chosen.
Resampling runs on the CPU in float64 (N is small); callers move the indices to their device.
"""

from __future__ import annotations

from typing import Callable

import torch

Resampler = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _check(W: torch.Tensor) -> torch.Tensor:
    W = W.detach().to("cpu", torch.float64)
    if W.dim() != 1 or W.numel() == 0:
        raise ValueError(f"weights must be a non-empty 1-D tensor, got shape {tuple(W.shape)}")
    if not torch.isfinite(W).all() or (W < 0).any() or W.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return W


def _inverse_cdf(points: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Index i with cdf[i-1] <= u < cdf[i] for each u in ``points`` (all in [0, 1))."""
    cdf = torch.cumsum(W, dim=0)
    cdf = cdf / cdf[-1]  # exact 1.0 at the end, so no point can fall off it
    return torch.searchsorted(cdf, points, right=True)


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device).cpu()


def multinomial(W: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    W = _check(W)
    points, _ = torch.sort(_uniform(W.numel(), generator))
    return _inverse_cdf(points, W)


def stratified(W: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    W = _check(W)
    n = W.numel()
    points = (torch.arange(n, dtype=torch.float64) + _uniform(n, generator)) / n
    return _inverse_cdf(points, W)


def systematic(W: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    W = _check(W)
    n = W.numel()
    points = (torch.arange(n, dtype=torch.float64) + _uniform(1, generator)) / n
    return _inverse_cdf(points, W)


def residual(W: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    W = _check(W)
    n = W.numel()
    scaled = n * W / W.sum()
    copies = torch.floor(scaled).long()
    deterministic = torch.repeat_interleave(torch.arange(n), copies)
    remaining = n - int(copies.sum())
    if remaining == 0:
        return deterministic
    leftover = scaled - copies
    points, _ = torch.sort(_uniform(remaining, generator))
    return torch.cat([deterministic, _inverse_cdf(points, leftover)])


RESAMPLERS: dict[str, Resampler] = {
    "systematic": systematic,
    "stratified": stratified,
    "multinomial": multinomial,
    "residual": residual,
}


def resample(scheme: str, W: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Ancestor indices drawn from W with the named scheme."""
    try:
        fn = RESAMPLERS[scheme]
    except KeyError:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose one of {sorted(RESAMPLERS)}") from None
    return fn(W, generator)
