"""fk_core's own step rules, in k-diffusion form (x_σ = x0 + σ·ε, sigmas decreasing to 0).

A *segment sampler* has the k-diffusion sampler signature ``sampler(model, x, sigmas, extra_args=None,
callback=None, disable=None)`` and runs every step of the ``sigmas`` it is given (the engine hands it one
segment's slice). ``model(x, sigma_batch, **extra_args)`` returns the x0-prediction; ``callback`` receives
``{"x", "i", "sigma", "sigma_hat", "denoised"}`` after each step. So ComfyUI's sampler functions plug into the
particle loop as they are, and fk_core's own sampler below is one more of them.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

SegmentSampler = Callable[..., torch.Tensor]  # (model, x, sigmas, extra_args=None, callback=None, disable=None)


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ_down, σ_up) so that a step to σ_down plus fresh noise of scale σ_up lands at σ_next (k-diffusion)."""
    if eta == 0.0 or sigma_next == 0:
        return sigma_next, torch.zeros_like(sigma_next)
    sigma_up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def euler_ancestral(eta: float = 1.0, generator: Optional[torch.Generator] = None) -> SegmentSampler:
    """Euler-ancestral with its noise from ``generator`` (one stream across all segments); eta=0 is plain Euler."""

    def sample(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
               callback: Optional[Callable] = None, disable: Optional[bool] = None) -> torch.Tensor:
        extra_args = extra_args or {}
        ones = x.new_ones(x.shape[0])
        for i in range(len(sigmas) - 1):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            denoised = model(x, sigma * ones, **extra_args)
            if callback is not None:
                callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
            sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
            x = x + (x - denoised) / sigma * (sigma_down - sigma)
            if sigma_up > 0:
                x = x + _randn_like(x, generator) * sigma_up
        return x

    return sample


def _randn_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Gaussian noise drawn from ``generator`` on its own device, then moved to x's (same stream anywhere)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
