"""fk_core/chunking.py without a host: a chunked model call gives the very rows of one full-batch call, runs the
post-CFG chain once on the whole batch, and the chunk size follows the free memory (in ComfyUI:
test_comfy_sampling.py, test_host_compat.py, test_all_samplers.py)."""

from __future__ import annotations

import torch

from fk_core import ChunkedModel, chunk_that_fits
from fk_core.chunking import MEMORY_SHARE, POST_CFG_FUNCTIONS


class PerRow:
    """A model whose output row depends only on its input row and timestep; records every batch it sees."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, timestep, model_options=None, **kwargs):
        self.batches.append(x.shape[0])
        for function in (model_options or {}).get(POST_CFG_FUNCTIONS, []):
            x = function({"denoised": x * 2 + timestep[:, None], "input": x, "cond_scale": 7.0})
            return x
        return x * 2 + timestep[:, None]


def test_chunks_give_the_rows_of_one_full_call():
    x, t = torch.randn(5, 3), torch.arange(5.0)
    model = PerRow()
    between = []
    chunked = ChunkedModel(model, 2, between_chunks=lambda: between.append(1))
    assert torch.equal(chunked(x, t), x * 2 + t[:, None])
    assert model.batches == [2, 2, 1] and len(between) == 3  # the host's check after every chunk
    model.batches.clear()
    assert torch.equal(ChunkedModel(model, 8)(x, t), x * 2 + t[:, None]) and model.batches == [5]  # fits: one call


def test_post_cfg_chain_runs_once_on_the_gathered_batch():
    seen = []

    def post_cfg(args):
        seen.append({k: (tuple(v.shape) if torch.is_tensor(v) else v) for k, v in args.items() if k != "model_options"})
        assert args["model_options"] is options  # the caller's own options, not the recorder's
        return args["denoised"] + 1

    options = {POST_CFG_FUNCTIONS: [post_cfg]}
    x, t = torch.randn(5, 3), torch.arange(5.0)
    out = ChunkedModel(PerRow(), 2)(x, t, model_options=options)
    assert torch.equal(out, x * 2 + t[:, None] + 1)
    assert seen == [{"denoised": (5, 3), "input": (5, 3), "cond_scale": 7.0}]  # once, full batch, scalars kept


def test_attributes_come_from_the_wrapped_model():
    model = PerRow()
    model.model_sampling = "sampling"
    assert ChunkedModel(model, 2).model_sampling == "sampling"


def test_chunk_that_fits_is_the_largest_within_the_memory_share():
    # 8000 bytes free, 80% usable, 1000 bytes per row for cond and uncond each: 3 particles per chunk
    assert MEMORY_SHARE == 0.8 and chunk_that_fits(64, 8000, 1000) == 3
    assert chunk_that_fits(64, 10, 1000) == 1  # never below one particle
    assert chunk_that_fits(4, 10**12, 1000) == 4  # never above N
    assert chunk_that_fits(6, 10**3, 0) == 6  # no per-row figure: all at once
