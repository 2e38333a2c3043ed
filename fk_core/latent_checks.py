"""The latent a host hands FK, checked before any model work: one usable latent of the model's kind.

* a LATENT input (``{"samples": tensor, "noise_mask": …}``): a tensor, one latent, finite, the model's channels
  and dimensions (image [B, C, H, W] or video [B, C, T, H, W]), a mask that fits (:func:`check_latent`);
* the noised latent a sampler function receives (the SAMPLER path): not nested, not packed, finite
  (:func:`check_noised_latent`).

Models are read duck-typed, as ComfyUI's are shaped: ``latent_format.latent_channels`` and
``latent_format.latent_dimensions`` (2 image, 3 video). Messages in fk_core.messages' style, naming the node.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import FKError
from .messages import finite, message
from .run_checks import check_noise_mask, check_one_latent

SAMPLER_INPUT = "latent_image (the sampler's input)"


def check_latent(node: str, latent_image: Any, model=None) -> torch.Tensor:
    """The latent's samples tensor, refused with a message when it is not a usable one-latent batch.
    ``model``: what holds the base model as ``.model`` (ComfyUI's ModelPatcher), or None."""
    if isinstance(latent_image, dict):
        check_not_nested(node, latent_image.get("samples"))
    if not isinstance(latent_image, dict) or not torch.is_tensor(latent_image.get("samples")):
        raise FKError(message(node, "latent_image", "is not a LATENT (no 'samples' tensor)",
                              "connect Empty Latent Image or VAE Encode"))
    samples = latent_image["samples"]
    check_one_latent(node, samples)
    check_latent_dimensions(node, samples, getattr(model, "model", None))
    channels = _model_channels(model)
    if channels is not None and samples.shape[1] != channels and not bool((samples == 0).all()):
        raise FKError(message(node, "latent_image", f"has {samples.shape[1]} channels but the model expects "
                              f"{channels}", "use the VAE and the empty-latent node that match this model"))
    mask = latent_image.get("noise_mask")
    if mask is not None and torch.is_tensor(mask):
        check_noise_mask(node, mask, samples)
    return samples


def check_not_nested(node: str, samples: Any, label: str = "latent_image") -> None:
    """ComfyUI 0.33+ packs several latents into one (comfy.nested_tensor.NestedTensor, e.g. LTX-2's video +
    audio); FK's particles are rows of one tensor (indexed, resampled, chunked): refused by name."""
    if torch.is_tensor(samples) or not getattr(samples, "is_nested", False):
        return
    shapes = ", ".join(str(list(t.shape)) for t in getattr(samples, "tensors", []))
    raise FKError(message(node, label, f"is a nested latent (several latents packed together: {shapes}), which FK "
                          "particles do not support yet", "sample it with KSampler / SamplerCustom, or give FK a "
                          "single video or image latent"))


def _is_packed_nested(x: torch.Tensor, base_model) -> bool:
    """ComfyUI 0.33+ samples a nested latent as one flat pack [B, 1, L] (comfy.utils.pack_latents); an image or
    video model's own latents are never that shape."""
    dims = getattr(getattr(base_model, "latent_format", None), "latent_dimensions", None)
    return isinstance(dims, int) and dims >= 2 and x.ndim == 3 and x.shape[1] == 1


def check_latent_dimensions(node: str, samples: torch.Tensor, base_model, label: str = "latent_image") -> None:
    """An image latent is [B, C, H, W], a video latent [B, C, T, H, W]: the model's latent format says which it
    takes (``latent_dimensions`` 2 or 3). The wrong kind would end deep in the model (conv2d on 5-D input)."""
    dims = getattr(getattr(base_model, "latent_format", None), "latent_dimensions", None)
    if not isinstance(dims, int) or dims not in (2, 3) or samples.ndim - 2 == dims:
        return
    shape = list(samples.shape)
    if dims == 2:
        what = "is a video latent" if samples.ndim == 5 else "has shape"
        raise FKError(message(node, label, f"{what} {shape} but the model is an image model (it takes [batch, "
                              "channels, height, width])", "use Empty Latent Image (or VAE Encode of an image) with "
                              "this model, or load a video model (Wan, HunyuanVideo, LTXV) for a video latent"))
    raise FKError(message(node, label, f"has shape {shape}, but the model is a video model (it takes [batch, "
                          "channels, frames, height, width])", "use the model's empty video latent node (e.g. "
                          "EmptyHunyuanLatentVideo, EmptyLTXVLatentVideo) or its image-to-video node"))


def _model_channels(model) -> int | None:
    try:
        return int(model.model.latent_format.latent_channels)
    except (AttributeError, TypeError, ValueError):
        return None


def check_noised_latent(node: str, x: torch.Tensor, base_model=None) -> None:
    """The batch a sampler function receives (SAMPLER path): one latent tensor of the model's kind, finite."""
    check_not_nested(node, x, SAMPLER_INPUT)
    if _is_packed_nested(x, base_model):
        raise FKError(message(node, SAMPLER_INPUT, f"is several latents packed into one "
                              f"{list(x.shape)} (how ComfyUI hands samplers a nested latent, e.g. LTX-2's video + "
                              "audio), which FK particles do not support yet", "sample it with KSampler / "
                              "SamplerCustom's own samplers, or give FK a single video or image latent"))
    check_latent_dimensions(node, x, base_model, SAMPLER_INPUT)
    if not finite(x):
        raise FKError(message(node, "latent_image", "(the sampler's input) contains NaN/inf values",
                              "check the latent and the noise node feeding SamplerCustom; the reward is not the "
                              "cause"))
