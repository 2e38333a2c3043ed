"""The conditioning check: FK particles share ONE prompt, since resampling moves particles between batch rows.

ComfyUI tiles a conditioning batch by batch index, so with a batch of prompts a resampled particle would be
denoised with another particle's prompt from then on. Not every batched conditioning is a prompt batch, though:
noise-shaped conditioning (inpainting models' ``c_concat``: mask and masked image, sized to the latent batch
by the model itself) belongs to each particle's row and is fine.
"""

from __future__ import annotations

from typing import Optional

import comfy.conds
import torch

from ..fk_core import FKError


def _prompt_batch(value) -> Optional[int]:
    """Batch size of a prompt-type conditioning value (cross-attention, pooled output …); None for values that
    are shaped like the noise (one row per particle by construction) or carry no tensor."""
    if isinstance(value, comfy.conds.CONDNoiseShape):
        return None
    tensor = getattr(value, "cond", value)
    if torch.is_tensor(tensor) and tensor.ndim >= 2:
        return int(tensor.shape[0])
    return None


def _refuse(node: str, label: str, what: str, size: int) -> None:
    raise FKError(f"{node}: {label} conditioning has a batch of {size} prompts ({what}); FK particles share one "
                  "prompt (resampling moves particles between batch rows). Encode one prompt (batch size 1).")


def check_conditioning_batch(guider, node: str = "FK steering") -> None:
    """The check on the conditioning as the guider processed it (every guider, every conditioning key)."""
    conds = getattr(guider, "conds", None) or {}
    for name, entries in conds.items():
        for entry in entries or []:
            for key, value in (entry.get("model_conds") or {}).items():
                size = _prompt_batch(value)
                if size is not None and size > 1:
                    _refuse(node, name, f"'{key}'", size)


def check_raw_conditioning(conditioning, label: str, node: str = "FK steering") -> None:
    """The same check on a CONDITIONING input as nodes receive it, ``[[tensor, {…}], …]``, before sampling."""
    for item in conditioning or []:
        if not isinstance(item, (list, tuple)) or not item:
            continue
        size = _prompt_batch(item[0])
        if size is not None and size > 1:
            _refuse(node, label, "cross-attention", size)
        extras = item[1] if len(item) > 1 and isinstance(item[1], dict) else {}
        size = _prompt_batch(extras.get("pooled_output"))
        if size is not None and size > 1:
            _refuse(node, label, "pooled output", size)
