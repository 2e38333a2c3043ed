"""LATENT inputs as KSampler treats them, on every host version."""

from __future__ import annotations

import inspect

import comfy.sample
import torch

LATENT_RATIOS = ("downscale_ratio_spacial", "downscale_ratio_temporal")  # ComfyUI's spelling


def fix_empty_latent(model, latent_image: dict) -> torch.Tensor:
    """comfy.sample.fix_empty_latent_channels as KSampler calls it: with the latent's downscale ratios where the
    host takes them (ComfyUI 0.11+: an empty latent is resized for models whose VAE downscales by another factor,
    e.g. 16x for Flux2 or Wan 2.2), without them on older hosts."""
    fix = comfy.sample.fix_empty_latent_channels
    if all(name in inspect.signature(fix).parameters for name in LATENT_RATIOS):
        return fix(model, latent_image["samples"], *(latent_image.get(name) for name in LATENT_RATIOS))
    return fix(model, latent_image["samples"])
