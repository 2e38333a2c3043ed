"""The conditioning checks, one walk per form: NaN/inf anywhere, and ONE prompt, since FK particles share it.

ComfyUI tiles a conditioning batch by batch index, so with a batch of prompts a resampled particle would be
denoised with another particle's prompt from then on (resampling moves particles between batch rows). Not every
batched conditioning is a prompt batch, though: noise-shaped conditioning (inpainting models' ``c_concat``: mask
and masked image, sized to the latent batch by the model itself) belongs to each particle's row and is fine.

Two forms: a CONDITIONING input as a node receives it (FK Particle Sampler, before sampling) and the
conditioning as the guider processed it (FK Sampler inside SamplerCustom, every guider and conditioning key).
"""

from __future__ import annotations

from typing import Any, Optional

import comfy.conds
import torch

from ..fk_core import FKError, finite, message

MAIN = "cross-attention"  # an entry's first tensor
NAN_ADVICE = ("re-encode the prompt; check the text encoder and any conditioning node before it (the reward is not "
              "the cause)")


def _prompt_batch(value) -> Optional[int]:
    """Batch size of a prompt-type conditioning value (cross-attention, pooled output …); None for values that
    are shaped like the noise (one row per particle by construction) or carry no tensor."""
    if isinstance(value, comfy.conds.CONDNoiseShape):
        return None
    tensor = getattr(value, "cond", value)
    if torch.is_tensor(tensor) and tensor.ndim >= 2:
        return int(tensor.shape[0])
    return None


def _check_value(node: str, label: str, what: str, value, prompt: bool = True) -> None:
    """One conditioning value: finite; and, when it is a ``prompt`` value, a batch of one."""
    tensor = getattr(value, "cond", value)
    if torch.is_tensor(tensor) and not finite(tensor):
        where = "" if what == MAIN else f" ({what})"
        raise FKError(message(node, label, f"conditioning{where} contains NaN/inf values", NAN_ADVICE))
    size = _prompt_batch(value) if prompt else None
    if size is not None and size > 1:
        raise FKError(message(node, label, f"conditioning has a batch of {size} prompts ({what}); FK particles "
                              "share one prompt (resampling moves particles between batch rows)",
                              "encode one prompt (batch size 1)"))


def check_conditioning(node: str, conditioning: Any, label: str) -> None:
    """A CONDITIONING input, ``[[tensor, {…}], …]``: a list of entries, finite, one prompt."""
    if not isinstance(conditioning, (list, tuple)):
        raise FKError(message(node, label, f"is not CONDITIONING (got {type(conditioning).__name__})",
                              "connect a CLIP Text Encode output"))
    for item in conditioning:
        if not isinstance(item, (list, tuple)) or not item or not torch.is_tensor(item[0]):
            raise FKError(message(node, label, "is not CONDITIONING (an entry has no tensor)",
                                  "connect a CLIP Text Encode output"))
        _check_value(node, label, MAIN, item[0])
        extras = item[1] if len(item) > 1 and isinstance(item[1], dict) else {}
        for key, value in extras.items():
            if torch.is_tensor(value):
                _check_value(node, label, key, value, prompt=key == "pooled_output")


def check_guider_conditioning(node: str, guider) -> None:
    """The conditioning as the guider holds it ({"positive": [{"model_conds": …}], …}): finite, one prompt."""
    for name, entries in (getattr(guider, "conds", None) or {}).items():
        for entry in entries or []:
            for key, value in (entry.get("model_conds") or {}).items():
                _check_value(node, name, key, value)
