"""Run-time checks a host makes around the particle loop, in plain torch: which party a bad number belongs to
(NaN/inf x0 is the model's problem, NaN/inf or wrongly shaped scores the reward's), sigmas no sampler can run,
and out-of-memory errors told apart from other failures. Messages in fk_core.messages' style, naming the node."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .engine import FKConfig
from .errors import FKError
from .messages import finite, message


def gib(n: float) -> str:
    """A byte count as GiB (from 256 MiB on) or MiB, for memory messages."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def is_out_of_memory(error: BaseException) -> bool:
    """torch's out-of-memory errors (GPU or CPU allocator). Not comfy's OOM_EXCEPTION: on a torch without
    CUDA support that is plain ``Exception``, which would call every error an out-of-memory."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if isinstance(t, type))
    if (oom_types and isinstance(error, oom_types)) or isinstance(error, MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)


def check_sigmas(node: str, sigmas: torch.Tensor) -> None:
    """The SAMPLER path gets its sigmas from another node: refuse what no sampler can run."""
    if not torch.is_tensor(sigmas) or sigmas.ndim != 1 or sigmas.numel() < 2:
        size = sigmas.numel() if torch.is_tensor(sigmas) else 0
        raise FKError(message(node, "sigmas", f"has {size} value(s): no step to take",
                              "connect a scheduler (e.g. BasicScheduler) with at least 1 step"))
    if not finite(sigmas):
        raise FKError(message(node, "sigmas", "contain NaN/inf values", "connect a scheduler node's SIGMAS"))
    if bool((sigmas[1:] > sigmas[:-1]).any()):
        raise FKError(message(node, "sigmas", "increase somewhere (a sampler goes from noise down to 0)",
                              "connect the scheduler's sigmas unchanged, or flip them back into decreasing order"))


def check_x0(node: str, x0: torch.Tensor) -> torch.Tensor:
    """Before decoding: the particles whose x0-prediction is NaN/inf ([N] bool). All of them is the model's
    problem (told before the reward could be blamed for scoring NaN images)."""
    n = x0.shape[0]
    bad = ~torch.isfinite(x0.reshape(n, -1)).all(dim=1)
    if bool(bad.all()):
        raise FKError(message(node, "model", "predicted NaN/inf images for every particle (not a reward problem)",
                              "lower cfg, try --force-fp32 or --fp32-vae, or check the model and its LoRAs"))
    return bad.cpu()


def score_tensor(node: str, scores: Any, name: str, n: int) -> torch.Tensor:
    """A reward's answer for ``n`` images as a float [n] CPU tensor; anything else is the reward's problem."""
    try:
        scores = torch.as_tensor(scores).detach().float().reshape(-1).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise FKError(message(node, "reward", f"{name} returned {type(scores).__name__}, not numbers",
                              "check the reward node (FK Reward Loader)")) from None
    if scores.numel() != n:
        raise FKError(message(node, "reward", f"{name} returned {scores.numel()} scores for {n} images",
                              "the reward must give one number per image; check the reward node"))
    return scores


def check_scores(node: str, scores: Any, name: str, bad_x0: torch.Tensor) -> torch.Tensor:
    """Scores as a float [N] tensor; a wrong shape or an all-NaN result from fine images is the reward's problem."""
    scores = score_tensor(node, scores, name, bad_x0.shape[0])
    if not bool(torch.isfinite(scores[~bad_x0]).any()):
        raise FKError(message(node, "reward", f"{name} returned NaN/inf for every particle although the "
                              "images were fine", "check the reward model and its weights, or pick another reward"))
    return scores


def check_one_latent(node: str, samples: torch.Tensor) -> None:
    """The one latent [1, C, (T,) H, W] the particles grow from: its shape, batch 1 and finite values."""
    if samples.ndim < 4:
        raise FKError(message(node, "latent_image", f"has shape {tuple(samples.shape)}, not [batch, channels, "
                              "height, width]", "connect Empty Latent Image or VAE Encode"))
    if samples.shape[0] != 1:
        raise FKError(message(node, "latent_image", f"has batch {samples.shape[0]}, but FK takes ONE latent "
                              "(batch size 1) and makes the particles itself",
                              "set the latent's batch size to 1 and raise particles instead"))
    if not finite(samples):
        bad = int((~torch.isfinite(samples)).sum())
        raise FKError(message(node, "latent_image", f"contains NaN/inf values ({bad} of {samples.numel()})",
                              "re-encode the image or use a fresh Empty Latent Image; the reward is not the cause"))


def check_noise_mask(node: str, mask: torch.Tensor, samples: torch.Tensor) -> None:
    """An inpainting mask for the latent ``samples``: finite, batch 1, its size the latent's, the image's (8x)
    or at least of the same aspect ratio."""
    if not finite(mask):
        raise FKError(message(node, "latent_image", "has a noise mask with NaN/inf values",
                              "rebuild the mask (Set Latent Noise Mask)"))
    if mask.ndim >= 3 and mask.shape[0] not in (1,):
        raise FKError(message(node, "latent_image", f"has a noise mask of batch {mask.shape[0]}; FK takes one "
                              "latent with one mask", "use a single mask (batch 1)"))
    h, w = samples.shape[-2:]
    mh, mw = mask.shape[-2:]
    if (mh, mw) not in ((h, w), (h * 8, w * 8)) and (mh * w != mw * h):
        raise FKError(message(node, "latent_image", f"has a {mh}x{mw} noise mask that does not fit the "
                              f"{h}x{w} latent (not even in aspect ratio)",
                              "make the mask from an image of the same size as the latent's image"))


def check_reward_link(reward: Any, node: str, name: str = "reward") -> None:
    """A linked reward input holds something that scores images (an FK_REWARD)."""
    if reward is None or not callable(reward):
        raise FKError(message(node, name, f"is {type(reward).__name__}, not an FK_REWARD",
                              "connect FK Reward Loader or FK Reward Combine"))


def check_links(node: str, potential: Any, reward: Any, final_reward: Any,
                default_potential: Callable[[], FKConfig]) -> FKConfig:
    """The linked inputs a widget check does not see: the potential (its FKConfig; ``default_potential()`` when
    unconnected) and the rewards."""
    if potential is None:
        potential = default_potential()
    elif not isinstance(potential, FKConfig):
        raise FKError(message(node, "potential", f"is {type(potential).__name__}, not an FK_POTENTIAL",
                              "connect FK Potential Selector, or leave it unconnected for the defaults"))
    check_reward_link(reward, node)
    if final_reward is not None:
        check_reward_link(final_reward, node, "final_reward")
    return potential
