"""Particle chunking: the N-particle batch split across several model calls when it does not fit in memory.

Host-agnostic: the model is any callable ``model(x, timestep, *args, model_options=…, **kwargs)`` over a batch
(in ComfyUI, the guider below KSamplerX0Inpaint); post-CFG functions are read from ``model_options`` under
ComfyUI's key. The host says how big a chunk may be (:func:`chunk_that_fits`, from its free-memory count) and
what to do between chunk calls (ComfyUI: honour its Cancel button).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

POST_CFG_FUNCTIONS = "sampler_post_cfg_function"  # ComfyUI's model_options key for post-CFG functions
MEMORY_SHARE = 0.8  # of the free memory a chunk's model working memory may take; the rest is left to the host


class ChunkedModel:
    """Splits the particle batch across several model calls of at most ``chunk`` rows each.

    Sits below KSamplerX0Inpaint (which keeps per-particle inpainting noise/latents at full batch) and above
    the guider, so every guider (CFG, dual CFG …) and every model patch sees ordinary, smaller batches. Each
    particle is still evaluated exactly once per model call of the sampler.

    Post-CFG functions (what CFG++ samplers use to record the unconditional prediction) must see the whole
    batch, once: during the chunk calls a recorder stands in for them and keeps their arguments; after the last
    chunk the real functions run once on the gathered, full-batch arguments.

    Patches that keep state between model calls (APG's momentum, SAG's recorded attention) are never chunked:
    the host installs no ChunkedModel when fk_core.patch_state finds one, and says so in a note.
    """

    def __init__(self, inner, chunk: int, between_chunks: Optional[Callable[[], None]] = None):
        self.inner = inner
        self.chunk = chunk
        self.between_chunks = between_chunks  # called after each chunk call (e.g. the host's cancel check)

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def __call__(self, x, timestep, *args, model_options=None, **kwargs):
        n = x.shape[0]
        if model_options is not None:
            kwargs["model_options"] = model_options
        if n <= self.chunk:
            return self.inner(x, timestep, *args, **kwargs)
        post_cfg = list((model_options or {}).get(POST_CFG_FUNCTIONS) or [])
        recorder = _PostCfgRecorder()
        if post_cfg:
            kwargs["model_options"] = {**model_options, POST_CFG_FUNCTIONS: [recorder]}
        outs = []
        for start in range(0, n, self.chunk):
            stop = min(n, start + self.chunk)
            t = timestep[start:stop] if torch.is_tensor(timestep) and timestep.ndim > 0 else timestep
            outs.append(self.inner(x[start:stop], t, *args, **kwargs))
            if self.between_chunks is not None:
                self.between_chunks()
        denoised = torch.cat(outs, dim=0)
        if not post_cfg or not recorder.calls:  # a guider that never ran the post-CFG chain: nothing to replay
            return denoised
        call_args = recorder.gathered(model_options)
        for function in post_cfg:  # the same chain ComfyUI's cfg_function runs, on the full batch
            call_args["denoised"] = denoised
            denoised = function(dict(call_args))
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


def chunk_that_fits(n: int, free_bytes: float, bytes_per_row: float, cfg_batches: int = 2) -> int:
    """Largest chunk (1 … n) whose model working memory fits in :data:`MEMORY_SHARE` of ``free_bytes``.
    ``bytes_per_row``: the model's working memory per batch row; ``cfg_batches``: rows per particle (cond +
    uncond). Without a usable per-row figure all ``n`` run at once."""
    if bytes_per_row <= 0:
        return n
    fits = int(free_bytes * MEMORY_SHARE // (bytes_per_row * cfg_batches))
    return max(1, min(n, fits))
