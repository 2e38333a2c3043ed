"""Decoders from a model's latent x0-predictions to images [B, H, W, C] (video: clips [B, T, H, W, C]) in [0, 1],
left on the decoding device (no CPU round trip). Each has a ``label`` for the trace and ``decode(x0)``.

The pieces are duck-typed, shaped as ComfyUI's are: a VAE with ``decode(latents)`` (and, optionally,
``device`` / ``output_device``), a base model with ``process_latent_out``, a TAESD module with ``decode``. Which
decoder a host picks, and how it finds and loads the files, is the host's (nodes/preview_decoder.py).
"""

from __future__ import annotations

import contextlib
import os

import torch


@contextlib.contextmanager
def outputs_on_device(vae):
    """Let a VAE's ``decode`` leave its images on the VAE's device instead of copying them to the host's
    ``output_device`` (ComfyUI's intermediate device, normally the CPU). Restored afterwards."""
    if not (hasattr(vae, "output_device") and hasattr(vae, "device")):
        yield
        return
    saved = vae.output_device
    vae.output_device = vae.device
    try:
        yield
    finally:
        vae.output_device = saved


class FullVAEDecoder:
    """x0 (model latent space) -> process_latent_out -> the workflow's VAE -> images on the VAE's device."""

    label = "full VAE"

    def __init__(self, vae, base_model):
        self.vae = vae
        self.base_model = base_model

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        latents = self.base_model.process_latent_out(x0.float())
        with outputs_on_device(self.vae):
            images = self.vae.decode(latents)
        return images.float()  # video VAEs: clips [B, T, H, W, C], scored frame by frame (fk_core.video)


class VideoTAEDecoder:
    """x0 (model latent space, as ComfyUI's video previewer feeds it) -> a TAEHV-family VAE -> clips
    [B, T, H, W, C] on the decoding device."""

    def __init__(self, vae, path: str):
        self.vae = vae
        self.path = path
        self.label = f"video TAE ({os.path.basename(path)})"

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), outputs_on_device(self.vae):
            return self.vae.decode(x0.float()).float()


class TAESDDecoder:
    """x0 (model latent space, what ComfyUI's previewer feeds TAESD too) -> TAESD -> images on ``device``."""

    def __init__(self, module: torch.nn.Module, path: str, device: torch.device):
        self.module = module.to(device)
        self.path = path
        self.device = device
        self.label = f"TAESD ({os.path.basename(path)})"

    def decode(self, x0: torch.Tensor) -> torch.Tensor:  # under the caller's grad mode (guided checks need it)
        images = self.module.decode(x0.to(self.device, torch.float32))  # [-1, 1], [B, 3, H, W]
        return ((images + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)
