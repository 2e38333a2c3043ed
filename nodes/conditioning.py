"""Conditioning checks: FK particles share ONE prompt, since resampling moves particles between batch rows."""

from __future__ import annotations

import torch

from ..fk_core import FKError


def _tensor_batches(obj):
    """Leading sizes of every conditioning tensor (cross-attention, pooled output …) in a processed cond."""
    cond = getattr(obj, "cond", None)
    if torch.is_tensor(cond) and cond.ndim >= 2:
        yield cond.shape[0]


def check_conditioning_batch(guider) -> None:
    """Refuse conditioning with batch > 1: ComfyUI tiles it by batch index, so after resampling a particle would
    be denoised with another particle's prompt."""
    conds = getattr(guider, "conds", None) or {}
    for name, entries in conds.items():
        for entry in entries or []:
            for key, value in (entry.get("model_conds") or {}).items():
                for size in _tensor_batches(value):
                    if size > 1:
                        raise FKError(
                            f"FK steering needs conditioning with batch size 1, but the {name} conditioning "
                            f"'{key}' has batch {size}. Encode one prompt (not a batch of prompts); the "
                            f"particles all share it.")


def check_raw_conditioning(conditioning, label: str) -> None:
    """Same check on a CONDITIONING input as nodes receive it: [[tensor, {…}], …]."""
    for item in conditioning or []:
        tensor = item[0] if isinstance(item, (list, tuple)) and item else None
        if torch.is_tensor(tensor) and tensor.ndim >= 2 and tensor.shape[0] > 1:
            raise FKError(f"FK steering needs {label} conditioning with batch size 1, got batch {tensor.shape[0]}. "
                          f"Encode one prompt (not a batch of prompts); the particles all share it.")
        pooled = item[1].get("pooled_output") if isinstance(item, (list, tuple)) and len(item) > 1 else None
        if torch.is_tensor(pooled) and pooled.shape[0] > 1:
            raise FKError(f"FK steering needs {label} conditioning with batch size 1 (pooled output has batch "
                          f"{pooled.shape[0]}).")

