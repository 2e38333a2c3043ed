"""fk_core's own step rules, in k-diffusion form (x_σ = x0 + σ·ε, sigmas decreasing to 0).

A *segment sampler* runs the steps ``start .. end-1`` of a schedule: ``segment(model, x, sigmas, start, end)``.
``model(x, sigma_batch)`` returns the x0-prediction. Hosts with their own samplers (ComfyUI) supply their own
segment sampler instead; the particle loop does not care which.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

SegmentSampler = Callable[[Callable, torch.Tensor, int, int], torch.Tensor]


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ_down, σ_up) so that a step to σ_down plus fresh noise of scale σ_up lands at σ_next (k-diffusion)."""
    if eta == 0.0 or sigma_next == 0:
        return sigma_next, torch.zeros_like(sigma_next)
    sigma_up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def euler_ancestral(sigmas: torch.Tensor, eta: float, generator: torch.Generator) -> SegmentSampler:
    """Euler-ancestral over a slice of ``sigmas``; eta=0 is plain (deterministic) Euler."""

    def segment(model: Callable, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        ones = x.new_ones(x.shape[0])
        for i in range(start, end):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            denoised = model(x, sigma * ones)
            sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
            x = x + (x - denoised) / sigma * (sigma_down - sigma)
            if sigma_up > 0:
                x = x + _randn_like(x, generator) * sigma_up
        return x

    return segment


def _randn_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Gaussian noise drawn from ``generator`` on its own device, then moved to x's (same stream anywhere)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
