"""Particle chunking: the N-particle batch split across several model calls when it does not fit in memory."""

from __future__ import annotations

import logging

import comfy.model_management
import torch

log = logging.getLogger("fk_steering")


class ChunkedModel:
    """Splits the particle batch across several model calls of at most ``chunk`` rows each.

    Sits below KSamplerX0Inpaint (which keeps per-particle inpainting noise/latents at full batch) and above
    the guider, so every guider (CFG, dual CFG …) and every model patch sees ordinary, smaller batches. Each
    particle is still evaluated exactly once per model call of the sampler.
    """

    def __init__(self, inner, chunk: int):
        self.inner = inner
        self.chunk = chunk

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def __call__(self, x, timestep, *args, **kwargs):
        n = x.shape[0]
        if n <= self.chunk:
            return self.inner(x, timestep, *args, **kwargs)
        outs = []
        for start in range(0, n, self.chunk):
            stop = min(n, start + self.chunk)
            t = timestep[start:stop] if torch.is_tensor(timestep) and timestep.ndim > 0 else timestep
            outs.append(self.inner(x[start:stop], t, *args, **kwargs))
            comfy.model_management.throw_exception_if_processing_interrupted()
        return torch.cat(outs, dim=0)


def automatic_chunk(model_patcher, x: torch.Tensor, cfg_batches: int = 2) -> int:
    """Largest chunk whose UNet working memory fits in free memory (at least 1). ``cfg_batches``: cond+uncond."""
    n = x.shape[0]
    try:
        device = model_patcher.load_device
        free = comfy.model_management.get_free_memory(device)
        per_row = model_patcher.model.memory_required([cfg_batches] + list(x.shape[1:])) / cfg_batches
    except (AttributeError, TypeError, RuntimeError) as err:  # unusual model objects: do not chunk
        log.debug("FK: no automatic chunk size (%s); running all %d particles at once", err, n)
        return n
    if per_row <= 0:
        return n
    fits = int(free * 0.8 // (per_row * cfg_batches))
    return max(1, min(n, fits))



def chunked_memory_estimate(chunk: int):
    """PREPARE_SAMPLING wrapper: ComfyUI sizes its memory reservation for the batch it will really run (one
    chunk of particles), not for all N at once, so large N does not force the model into low-VRAM mode."""

    def wrapper(executor, model, noise_shape, conds, model_options=None):
        shape = (min(chunk, noise_shape[0]),) + tuple(noise_shape[1:])
        return executor(model, shape, conds, model_options=model_options)

    return wrapper

