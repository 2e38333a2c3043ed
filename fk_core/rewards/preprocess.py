"""Image preprocessing for learned rewards, in torch (differentiable, batched, no PIL round trip)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# OpenAI CLIP normalisation, shared by CLIP, HPS, PickScore, the LAION aesthetic predictor and ImageReward.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_shorter_side(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic resize (antialiased when shrinking) so the shorter side equals ``size``, like
    torchvision's ``Resize(size)``; a no-op when it already does (keeps exact pixels for parity tests)."""
    height, width = images.shape[-2:]
    if min(height, width) == size:
        return images
    if height <= width:
        new_h, new_w = size, int(size * width / height)
    else:
        new_h, new_w = int(size * height / width), size
    shrinking = new_h < height or new_w < width
    return F.interpolate(images, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=shrinking)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size`` x ``size`` crop, using torchvision's rounding of the offsets."""
    height, width = images.shape[-2:]
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return images[..., top:top + size, left:left + size]


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def clip_preprocess(images: torch.Tensor, size: int = 224, mean: Sequence[float] = CLIP_MEAN,
                    std: Sequence[float] = CLIP_STD, crop_size: int | None = None) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> shorter side resized to ``size``, centre crop of ``crop_size`` (default
    ``size``), normalised.

    Resizing runs in float32 even for half-precision models: bicubic in fp16 loses visible precision.
    """
    dtype = images.dtype
    out = resize_shorter_side(images.float(), size)
    out = center_crop(out, crop_size or size)
    return normalize(out, mean, std).to(dtype)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma (ITU-R BT.601 weights, as kornia and PIL use)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)
