"""Deterministic samplers a user would pick for best-of-N (the baseline people actually compare FK with).

Mirrors of ComfyUI's k-diffusion ``sample_euler``, ``sample_dpmpp_2m`` and ``sample_heun`` (no churn), in the
k-diffusion form both parametrisations share: ``model(x, σ)`` returns the x0-prediction and the ODE direction is
(x − x0)/σ (for a flow, σ is t: d/dt of (1 − t)·x0 + t·ε is (x − x0)/t). Like ComfyUI, DPM++ 2M steps in −log σ
for every model. Heun makes two model calls per step (one on the last), so at equal model calls it gets half the
steps.
"""

from __future__ import annotations

from typing import Callable

import torch


def euler(model: Callable, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    ones = x.new_ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def dpmpp_2m(model: Callable, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    ones = x.new_ones(x.shape[0])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        if sigmas[i + 1] == 0:
            x = denoised
            break
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
        h = t_next - t
        if old_denoised is None:
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * denoised
        else:
            r = (t - (-sigmas[i - 1].log())) / h
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * ((1 + 1 / (2 * r)) * denoised
                                                                   - (1 / (2 * r)) * old_denoised)
        old_denoised = denoised
    return x


def heun(model: Callable, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    ones = x.new_ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        d = (x - model(x, sigmas[i] * ones)) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - model(x2, sigmas[i + 1] * ones)) / sigmas[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def deterministic_samplers(kind: str, steps: int, schedule: Callable[[int], torch.Tensor]) -> dict:
    """name → (sampler, sigmas): Euler and DPM++ 2M with ``steps`` steps, Heun with about half (equal model calls:
    2·h − 1 ≤ steps)."""
    del kind  # the same step rules serve both parametrisations (see the module docstring)
    half = (steps + 1) // 2
    return {"euler": (euler, schedule(steps)), "dpmpp_2m": (dpmpp_2m, schedule(steps)),
            f"heun ({half} steps)": (heun, schedule(half))}
