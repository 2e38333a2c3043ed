"""One FK check, decoded and scored on the device, and what it costs.

A check decodes the particles' x0-predictions in sub-batches, shrinks each sub-batch on the device to the size the
reward looks at (when the reward declares one: ``input_size``), and scores it with one batched reward call; only
the scores (N numbers) go to the CPU.

Cost: wall time of the model (the sampling since the previous check, including putting the sampling models back
on the device after a check moved them), of the decode and of the reward, per check and in total. On a GPU the
clock synchronises the device at each boundary so every part's kernels are counted in that part (a few syncs per
check, microseconds each).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import comfy.model_management
import torch

from ..fk_core import FKError
from ..fk_core.rewards.preprocess import resize_shorter_side

COST_KEYS = ("model_s", "decode_s", "reward_s")


def synchronize(device: Optional[torch.device]) -> None:
    if device is None:
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class CostMeter:
    """Wall clock of an FK run split into model / decode / reward time, per check and for the final scoring."""

    def __init__(self, device: Optional[torch.device] = None, decoder_label: str = "full VAE"):
        self.device = device
        self.decoder_label = decoder_label
        self.checks: list[dict] = []
        self.final: Optional[dict] = None
        self._mark = self.now()

    def now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def lap(self) -> float:
        """Seconds since the last mark; starts a new one."""
        now = self.now()
        elapsed, self._mark = now - self._mark, now
        return elapsed

    def restart(self) -> None:
        """Start the model clock afresh (after a check's bookkeeping and live-view hook, which are neither)."""
        self._mark = self.now()

    def totals(self) -> dict:
        checks = self.checks
        final = self.final or dict.fromkeys(COST_KEYS, 0.0)
        decode = sum(c["decode_s"] for c in checks)
        reward = sum(c["reward_s"] for c in checks)
        return {
            "preview_decoder": self.decoder_label,
            "checks": len(checks),
            "model_s": sum(c["model_s"] for c in checks) + final["model_s"],
            "decode_s": decode,
            "reward_s": reward,
            "per_check_s": (decode + reward) / len(checks) if checks else 0.0,
            "final_decode_s": final["decode_s"],
            "final_reward_s": final["reward_s"],
        }


def reward_input_size(reward) -> Optional[int]:
    """The shorter image side the reward resizes to before it looks (None: it uses every pixel)."""
    size = getattr(reward, "input_size", None)
    if size is None:
        return None
    size = int(size)
    return size if size > 0 else None


def fit_to_reward(images: torch.Tensor, input_size: Optional[int]) -> torch.Tensor:
    """[B, H, W, C] images shrunk on their device so the shorter side is ``input_size``, with the very resize the
    learned rewards apply first (so their score does not change); unchanged when already that small."""
    if input_size is None or min(images.shape[1], images.shape[2]) <= input_size:
        return images
    bchw = images.movedim(-1, 1).float()
    return resize_shorter_side(bchw, input_size).movedim(1, -1)


def decode_and_score(decoder, x0: torch.Tensor, reward: Callable, batch: int, input_size: Optional[int],
                     meter: CostMeter, keep_full: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Decode ``x0`` in sub-batches of ``batch``, score each with one reward call.

    Returns (scores [N] float32 on the CPU, images [N, ...] on the decoding device, cost of this check).
    ``keep_full``: keep the full-size images (the final decode, which becomes the node's output); otherwise the
    images kept are the ones the reward saw (enough for the live view)."""
    model_s = meter.lap()
    n = x0.shape[0]
    batch = max(1, int(batch))
    kept: Optional[torch.Tensor] = None
    scores = torch.empty(n, dtype=torch.float32)
    decode_s = reward_s = 0.0
    for start in range(0, n, batch):
        comfy.model_management.throw_exception_if_processing_interrupted()
        t0 = meter.now()
        images = decoder.decode(x0[start:start + batch])
        t1 = meter.now()
        scored = fit_to_reward(images, input_size)
        values = reward(scored)
        if not torch.is_tensor(values):
            values = torch.as_tensor(values)
        values = values.detach().float().reshape(-1).cpu()
        t2 = meter.now()
        decode_s, reward_s = decode_s + t1 - t0, reward_s + t2 - t1
        if values.numel() != images.shape[0]:
            raise FKError(f"the reward returned {values.numel()} scores for {images.shape[0]} images; a reward must "
                          f"return one score per image")
        scores[start:start + images.shape[0]] = values
        keep = images if keep_full else scored
        if kept is None:  # filled sub-batch by sub-batch: only one N-image batch is alive at a time
            kept = torch.empty((n,) + tuple(keep.shape[1:]), dtype=torch.float32, device=keep.device)
        kept[start:start + keep.shape[0]] = keep
        del images, scored, keep
    return scores, kept, {"model_s": model_s, "decode_s": decode_s, "reward_s": reward_s}


def cost_summary(cost: dict) -> str:
    """One line for the node's text output, e.g. ``cost: model 12.1 s; 15 checks, TAESD (taesd_decoder.pth)
    previews: decode 0.42 s + reward 0.05 s = 0.031 s per check; final full-VAE decode 0.20 s``."""
    return (f"cost: model {cost['model_s']:.3g} s; {cost['checks']} checks, {cost['preview_decoder']} previews: "
            f"decode {cost['decode_s']:.3g} s + reward {cost['reward_s']:.3g} s = {cost['per_check_s']:.3g} s "
            f"per check; final full-VAE decode {cost['final_decode_s']:.3g} s")
