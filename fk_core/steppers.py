"""fk_core's own step rules, in k-diffusion form (x_σ = x0 + σ·ε, sigmas decreasing to 0).

A *segment sampler* has the k-diffusion sampler signature ``sampler(model, x, sigmas, extra_args=None,
callback=None, disable=None)`` and runs every step of the ``sigmas`` it is given (the engine hands it one
segment's slice). ``model(x, sigma_batch, **extra_args)`` returns the x0-prediction; ``callback`` receives
``{"x", "i", "sigma", "sigma_hat", "denoised"}`` after each step. So ComfyUI's sampler functions plug into the
particle loop as they are, and fk_core's own sampler below is one more of them.
"""

from __future__ import annotations

import math
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


class GaussianSteps:
    """A segment sampler whose every step is Gaussian with a known mean and scale: x' = μ(x, x̂0) + s·z.

    ``transition(x, denoised, sigma, sigma_next)`` gives (μ, s), with s None for a step that draws no noise. The
    noise comes from ``generator`` (one stream across all segments). Knowing μ and s is what lets fk_core
    shift a step's proposal and weight the particle by the density ratio exactly (fk_core.guidance): a call
    with ``guide`` lets it shift the mean of the first noisy step; without one the steps are the plain rule's,
    draw for draw.
    """

    def __init__(self, name: str, transition: Callable, generator: Optional[torch.Generator]):
        self.name = name
        self.transition = transition
        self.generator = generator

    def __call__(self, model: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                 callback: Optional[Callable] = None, disable: Optional[bool] = None, guide=None) -> torch.Tensor:
        extra_args = extra_args or {}
        ones = x.new_ones(x.shape[0])
        for i in range(len(sigmas) - 1):
            denoised = _denoise(model, x, sigmas[i], ones, extra_args, callback, i)
            mean, scale = self.transition(x, denoised, sigmas[i], sigmas[i + 1])
            if scale is None:
                x = mean
                continue
            shift = guide.shift(scale) if guide is not None else None
            if shift is not None:
                mean = mean + shift
            noise = _randn_like(x, self.generator)
            x = mean + noise * scale
            if shift is not None:
                guide.record(shift, noise, scale)
                guide = None  # one guided step per segment: the one that starts at the check
        return x


def euler_ancestral(eta: float = 1.0, generator: Optional[torch.Generator] = None) -> GaussianSteps:
    """Euler-ancestral with its noise from ``generator`` (one stream across all segments); eta=0 is plain Euler."""

    def transition(x, denoised, sigma, sigma_next):
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        mean = x + (x - denoised) / sigma * (sigma_down - sigma)
        return (mean, sigma_up) if sigma_up > 0 else (mean, None)

    return GaussianSteps("euler_ancestral", transition, generator)


def _denoise(model: Callable, x: torch.Tensor, sigma: torch.Tensor, ones: torch.Tensor, extra_args: dict,
             callback: Optional[Callable], i: int) -> torch.Tensor:
    """One model call at the start of step i, reported to ``callback`` as k-diffusion samplers do (the engine
    reads its potential step's x0 from there)."""
    denoised = model(x, sigma * ones, **extra_args)
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
    return denoised


def _randn_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Gaussian noise drawn from ``generator`` on its own device, then moved to x's (same stream anywhere)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def flow_noise_ratio(t: float) -> float:
    """Noise-to-signal ratio of a rectified-flow point x_t = (1 − t)·x0 + t·ε: t / (1 − t) (inf at t = 1).

    A k-diffusion (VE) point x0 + σ·ε has ratio σ; this maps a flow's t onto that same scale."""
    t = float(t)
    return math.inf if t >= 1.0 else t / (1.0 - t)


def euler_ancestral_rf(eta: float = 1.0, generator: Optional[torch.Generator] = None) -> GaussianSteps:
    """ComfyUI's flow ancestral step (k_diffusion ``sample_euler_ancestral_RF``) for x_t = (1 − t)·x0 + t·ε:
    an Euler step down to t_down, then rescale and fresh noise so the point lands at t_next."""

    def transition(x, denoised, sigma, sigma_next):
        if sigma_next == 0:
            return denoised, None
        sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
        alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
        renoise = (sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2).clamp(min=0) ** 0.5
        ratio = sigma_down / sigma
        x = ratio * x + (1 - ratio) * denoised
        if eta > 0:
            return (alpha_next / alpha_down) * x, renoise
        return x, None

    return GaussianSteps("euler_ancestral_rf", transition, generator)


def dpmpp_2m_sde(eta: float = 1.0, generator: Optional[torch.Generator] = None, flow: bool = False) -> SegmentSampler:
    """DPM-Solver++(2M) SDE (midpoint), as ComfyUI's ``sample_dpmpp_2m_sde``, in half-log-SNR λ = log(α/σ):
    −log σ for x0 + σ·ε, log((1 − t)/t) for a flow (``flow=True``, where α = 1 − t). Gaussian noise from
    ``generator`` instead of a Brownian tree. Its history restarts with every segment (first order after a check)."""

    def half_log_snr(s: torch.Tensor) -> torch.Tensor:
        return s.logit().neg() if flow else s.log().neg()

    def sample(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
               callback: Optional[Callable] = None, disable: Optional[bool] = None) -> torch.Tensor:
        extra_args = extra_args or {}
        ones = x.new_ones(x.shape[0])
        if flow and len(sigmas) > 1 and sigmas[0] >= 1:  # log-SNR is -inf at t = 1 (ComfyUI offsets it too)
            sigmas = sigmas.clone()
            sigmas[0] = 1.0 - 1e-4
        old_denoised, h_last = None, None
        for i in range(len(sigmas) - 1):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            denoised = _denoise(model, x, sigma, ones, extra_args, callback, i)
            if sigma_next == 0:
                x = denoised
                old_denoised = None
                continue
            lam, lam_next = half_log_snr(sigma), half_log_snr(sigma_next)
            h = lam_next - lam
            h_eta = h * (eta + 1)
            alpha_next = sigma_next * lam_next.exp()
            x = sigma_next / sigma * (-h * eta).exp() * x + alpha_next * (-h_eta).expm1().neg() * denoised
            if old_denoised is not None:
                x = x + 0.5 * alpha_next * (-h_eta).expm1().neg() * (h / h_last) * (denoised - old_denoised)
            if eta > 0:
                x = x + _randn_like(x, generator) * sigma_next * (-2 * h * eta).expm1().neg().sqrt()
            old_denoised, h_last = denoised, h
        return x

    sample.__name__ = "dpmpp_2m_sde"  # named in messages (e.g. guidance refusing a multistep SDE rule)
    return sample
