"""Particle chunking: the N-particle batch split across several model calls when it does not fit in memory."""

from __future__ import annotations

import logging

import comfy.model_management
import torch

log = logging.getLogger("fk_steering")

POST_CFG_HOOKS = "sampler_post_cfg_function"  # ComfyUI's model_options key for post-CFG functions


class ChunkedModel:
    """Splits the particle batch across several model calls of at most ``chunk`` rows each.

    Sits below KSamplerX0Inpaint (which keeps per-particle inpainting noise/latents at full batch) and above
    the guider, so every guider (CFG, dual CFG …) and every model patch sees ordinary, smaller batches. Each
    particle is still evaluated exactly once per model call of the sampler.

    Post-CFG functions (what CFG++ samplers use to record the unconditional prediction) must see the whole
    batch, once: during the chunk calls a recorder stands in for them and keeps their arguments; after the last
    chunk the real functions run once on the gathered, full-batch arguments.

    Patches that keep state between model calls (APG's momentum, SAG's recorded attention) are never chunked:
    fk_run installs no ChunkedModel when nodes/patch_state.py finds one, and says so in a note.
    """

    def __init__(self, inner, chunk: int):
        self.inner = inner
        self.chunk = chunk

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def __call__(self, x, timestep, *args, model_options=None, **kwargs):
        n = x.shape[0]
        if model_options is not None:
            kwargs["model_options"] = model_options
        if n <= self.chunk:
            return self.inner(x, timestep, *args, **kwargs)
        hooks = list((model_options or {}).get(POST_CFG_HOOKS) or [])
        recorder = _PostCfgRecorder()
        if hooks:
            kwargs["model_options"] = {**model_options, POST_CFG_HOOKS: [recorder]}
        outs = []
        for start in range(0, n, self.chunk):
            stop = min(n, start + self.chunk)
            t = timestep[start:stop] if torch.is_tensor(timestep) and timestep.ndim > 0 else timestep
            outs.append(self.inner(x[start:stop], t, *args, **kwargs))
            comfy.model_management.throw_exception_if_processing_interrupted()
        denoised = torch.cat(outs, dim=0)
        if not hooks or not recorder.calls:  # a guider that never ran the post-CFG chain: nothing to replay
            return denoised
        hook_args = recorder.gathered(model_options)
        for hook in hooks:  # the same chain ComfyUI's cfg_function runs, on the full batch
            hook_args["denoised"] = denoised
            denoised = hook(dict(hook_args))
        return denoised


class _PostCfgRecorder:
    """Stands in for the post-CFG functions during chunk calls: keeps each chunk's arguments, changes nothing."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, args: dict):
        self.calls.append(args)
        return args["denoised"]

    def gathered(self, model_options: dict) -> dict:
        """One argument dict for the whole batch: per-row tensors concatenated, everything else from chunk 0
        (conditioning, scale, model), and the caller's own model_options."""
        first = self.calls[0]
        rows = first["denoised"].shape[0]
        out = {}
        for key, value in first.items():
            if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == rows:
                out[key] = torch.cat([call[key] for call in self.calls], dim=0)
            else:
                out[key] = value
        out["model_options"] = model_options
        return out


def free_memory(model_patcher, device) -> int:
    """Memory available for the batch: the model patcher's own count where it has one (dynamic VRAM in newer
    ComfyUI, which comfy.model_management.get_free_memory does not see), else the host's."""
    own = getattr(model_patcher, "get_free_memory", None)
    if callable(own):
        return own(device)
    return comfy.model_management.get_free_memory(device)


def automatic_chunk(model_patcher, x: torch.Tensor, cfg_batches: int = 2) -> int:
    """Largest chunk whose UNet working memory fits in free memory (at least 1). ``cfg_batches``: cond+uncond."""
    n = x.shape[0]
    try:
        device = model_patcher.load_device
        free = free_memory(model_patcher, device)
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
    chunk of particles), not for all N at once, so large N does not force the model into low-VRAM mode.
    Newer hosts pass more arguments (force_full_load=, force_offload= since ComfyUI 0.14): passed on as given."""

    def wrapper(executor, model, noise_shape, *args, **kwargs):
        shape = (min(chunk, noise_shape[0]),) + tuple(noise_shape[1:])
        return executor(model, shape, *args, **kwargs)

    return wrapper
