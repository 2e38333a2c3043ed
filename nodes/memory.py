"""ComfyUI's memory, as FK reads it: what is free, how many particles a model call may take, the up-front
refusal, and the recovery after a real out-of-memory. The estimates and messages are fk_core's
(fk_core/memory_estimate.py, fk_core/chunking.py); this file asks ComfyUI's memory manager."""

from __future__ import annotations

import logging

import comfy.model_management as mm
import torch

from ..fk_core import FKError, address_space_room, chunk_that_fits, memory_problem, out_of_memory_message

log = logging.getLogger("fk_steering")


def free_memory(model_patcher, device) -> int:
    """Memory available for the batch: the model patcher's own count where it has one (dynamic VRAM in newer
    ComfyUI, which comfy.model_management.get_free_memory does not see), else the host's."""
    own = getattr(model_patcher, "get_free_memory", None)
    if callable(own):
        return own(device)
    return mm.get_free_memory(device)


def automatic_chunk(model_patcher, x: torch.Tensor, cfg_batches: int = 2) -> int:
    """Largest chunk whose UNet working memory fits in free memory (at least 1). ``cfg_batches``: cond+uncond."""
    n = x.shape[0]
    try:
        free = free_memory(model_patcher, model_patcher.load_device)
        per_row = model_patcher.model.memory_required([cfg_batches] + list(x.shape[1:])) / cfg_batches
    except (AttributeError, TypeError, RuntimeError) as err:  # unusual model objects: do not chunk
        log.debug("FK: no automatic chunk size (%s); running all %d particles at once", err, n)
        return n
    return chunk_that_fits(n, free, per_row, cfg_batches)


def chunked_memory_estimate(chunk: int):
    """PREPARE_SAMPLING wrapper: ComfyUI sizes its memory reservation for the batch it will really run (one
    chunk of particles), not for all N at once, so large N does not force the model into low-VRAM mode.
    Newer hosts pass more arguments (force_full_load=, force_offload= since ComfyUI 0.14): passed on as given."""

    def wrapper(executor, model, noise_shape, *args, **kwargs):
        shape = (min(chunk, noise_shape[0]),) + tuple(noise_shape[1:])
        return executor(model, shape, *args, **kwargs)

    return wrapper


def free_memory_bytes(device) -> int | None:
    """The host's free memory on ``device``; on the CPU at most what the address-space limit leaves."""
    try:
        free = int(mm.get_free_memory(device))
    except (AttributeError, TypeError, RuntimeError):
        return None
    if getattr(device, "type", str(device)) == "cpu":
        room = address_space_room()
        if room is not None:
            free = min(free, room)
    return free


def check_memory(node: str, samples: torch.Tensor, particles: int, vae=None, device=None,
                 guided: bool = False) -> None:
    """Refuse before allocating when the N-particle latents and images cannot fit."""
    device = device if device is not None else mm.intermediate_device()
    problem = memory_problem(node, samples, particles, free_memory_bytes(device), vae, guided)
    if problem:
        raise FKError(problem)


def out_of_memory_error(node: str, particles: int, chunk: int, error: BaseException) -> FKError:
    """A real out-of-memory during sampling: free the models (as ComfyUI does for an OOM) and say what to do."""
    mm.unload_all_models()
    mm.soft_empty_cache()
    return FKError(out_of_memory_message(node, particles, chunk, error))
