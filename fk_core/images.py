"""Image batches between a sampler and its viewers: shrunk for a reward, shrunk for a thumbnail, packed in a sprite.

Plain torch + PIL. Images follow the IMAGE layout of ComfyUI and of fk_core's rewards: float [N, H, W, C] in [0, 1].
"""

from __future__ import annotations

import base64
import io
import math
from typing import Optional

import torch
import torch.nn.functional as F
from PIL import Image

from .rewards.preprocess import resize_shorter_side


def fit_to_reward(images: torch.Tensor, input_size: Optional[int]) -> torch.Tensor:
    """[B, H, W, C] images shrunk on their device so the shorter side is ``input_size``, with the very resize the
    learned rewards apply first (so their score does not change); unchanged when already that small. Clips
    [B, T, H, W, C] are shrunk frame by frame."""
    if images.ndim == 5:
        frames = fit_to_reward(images.reshape(-1, *images.shape[2:]), input_size)
        return frames.reshape(*images.shape[:2], *frames.shape[1:])
    if input_size is None or min(images.shape[1], images.shape[2]) <= input_size:
        return images
    bchw = images.movedim(-1, 1).float()
    return resize_shorter_side(bchw, input_size).movedim(1, -1)


def reward_input_size(reward) -> Optional[int]:
    """The shorter image side ``reward`` resizes to before it looks (its ``input_size``; None: every pixel)."""
    size = getattr(reward, "input_size", None)
    if size is None:
        return None
    size = int(size)
    return size if size > 0 else None


def downscale(images: torch.Tensor, edge: int) -> torch.Tensor:
    """[N,H,W,C] float in [0,1] → [N,h,w,3] uint8 on the CPU with max(h, w) ≤ edge (aspect kept)."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N,H,W,C], got shape {tuple(images.shape)}")
    x = images.detach()[..., :3].float()
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    h, w = x.shape[1:3]
    scale = min(1.0, edge / max(h, w))
    x = x.movedim(-1, 1)
    if scale < 1.0:  # downscale on the images' device first: only small tensors cross to the CPU
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = torch.nan_to_num(x, nan=0.0).clamp(0, 1)
    return (x.movedim(1, -1) * 255).round().to(torch.uint8).cpu()


def encode_sprite(images: torch.Tensor, edge: int, max_bytes: int, quality: int = 75) -> dict:
    """All thumbnails in ONE JPEG grid (one header instead of N):
    ``{"sprite": data URL, "cols", "rows", "w", "h"}``, thumbnail i at column i % cols, row i // cols.
    If the data URL would exceed ``max_bytes``, lower the quality, then the size, until it fits."""
    n = images.shape[0]
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    while True:
        small = downscale(images, edge)
        h, w = small.shape[1:3]
        sheet = torch.zeros(rows * h, cols * w, 3, dtype=torch.uint8)
        for i in range(n):
            r, c = divmod(i, cols)
            sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = small[i]
        buf = io.BytesIO()
        Image.fromarray(sheet.numpy()).save(buf, format="JPEG", quality=quality)
        url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        if len(url) <= max_bytes or edge <= 8:
            return {"sprite": url, "cols": cols, "rows": rows, "w": int(w), "h": int(h)}
        if quality > 40:
            quality -= 15
        else:
            edge = max(8, edge * 3 // 4)
