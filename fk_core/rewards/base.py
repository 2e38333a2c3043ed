"""The one reward interface every FK reward implements.

A reward takes a batch of images laid out the way ComfyUI stores them (B, H, W, C float in [0, 1]) and an
optional prompt, and returns one float32 score per image (higher is better). Subclasses implement
``_score`` on a (B, 3, H, W) tensor already moved to the reward's device and dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class RewardInputError(ValueError):
    """Images or prompt given to a reward are not usable (wrong shape, type, missing prompt)."""


def images_to_bchw(images: torch.Tensor) -> torch.Tensor:
    """Validate a ComfyUI-style IMAGE batch (B, H, W, C) and return it as (B, 3, H, W).

    Grey images (C=1) are repeated to RGB and an alpha channel (C=4) is dropped, because every reward here
    was trained on RGB. Values are not clamped: an x0-prediction can overshoot [0, 1] and clamping would
    kill the gradient there.
    """
    if not isinstance(images, torch.Tensor):
        raise RewardInputError(f"reward expects a torch.Tensor of images, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise RewardInputError(
            f"reward expects images shaped (batch, height, width, channels), got shape {tuple(images.shape)}"
        )
    channels = images.shape[-1]
    if channels not in (1, 3, 4):
        raise RewardInputError(
            f"reward expects 1, 3 or 4 colour channels in the last dimension, got {channels} "
            f"(shape {tuple(images.shape)}); pass decoded images, not latents"
        )
    if images.shape[0] == 0:
        raise RewardInputError("reward got an empty batch of images")
    if not images.is_floating_point():
        raise RewardInputError(f"reward expects float images in [0, 1], got dtype {images.dtype}")
    bchw = images.permute(0, 3, 1, 2)
    if channels == 1:
        bchw = bchw.expand(-1, 3, -1, -1)
    elif channels == 4:
        bchw = bchw[:, :3]
    return bchw


class Reward(nn.Module):
    """Base class. Subclasses set the class attributes and implement ``_score``.

    It is an ``nn.Module`` so that learned rewards can be moved between devices and wrapped by a host's
    memory manager; non-learned rewards simply have no parameters.
    """

    name: str = "reward"
    needs_prompt: bool = False
    # True only where the score is a torch function of the pixels all the way (no PIL round trip, no argmax, no
    # counts): what guided proposals (fk_core.guidance) need. tests/test_reward_gradients.py checks every reward
    # that says True against finite differences.
    differentiable: bool = False
    # Shorter image side the reward resizes to (preprocess.resize_shorter_side) before it looks at an image;
    # None = it uses every pixel. A host may shrink images to this size first: the score stays the same.
    input_size: int | None = None

    def _score(self, images: torch.Tensor, prompt: str | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- device handling -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device | None:
        """Device of the reward's weights; None for rewards without weights (they run where the images are)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return None

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype images are cast to before scoring (float32 for rewards without weights)."""
        for tensor in self.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def freeze(self) -> Reward:
        """Inference mode for good: eval() turns dropout off (determinism), no weight ever needs a grad."""
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Reward:
        # Rewards are never trained here; staying in eval keeps scores deterministic even if a host
        # calls .train() on every module it manages.
        return super().train(False)

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, images: torch.Tensor, prompt: str | None = None) -> torch.Tensor:
        """Score a batch: (B, H, W, C) float in [0, 1] -> (B,) float32 on the images' device."""
        if self.needs_prompt and (prompt is None or not isinstance(prompt, str)):
            raise RewardInputError(f"the {self.name} reward compares images with a text prompt; give it one")
        bchw = images_to_bchw(images)
        out_device = images.device
        bchw = bchw.to(device=self.device or out_device, dtype=self.dtype)
        scores = self._score(bchw, prompt)
        if scores.shape != (bchw.shape[0],):
            raise RuntimeError(f"{self.name}: _score returned shape {tuple(scores.shape)}, expected ({bchw.shape[0]},)")
        return scores.to(device=out_device, dtype=torch.float32)

    def forward(self, images: torch.Tensor, prompt: str | None = None) -> torch.Tensor:
        return self.score(images, prompt)

    def bind(self, prompt: str | None = None) -> BoundReward:
        """Fix the prompt: the result is a plain callable images -> (B,) that the sampler can use."""
        if self.needs_prompt and (prompt is None or not str(prompt).strip()):
            raise RewardInputError(
                f"the {self.name} reward needs a prompt: connect the positive prompt text to its prompt input"
            )
        return BoundReward(self, prompt if self.needs_prompt else None)


class BoundReward:
    """A reward with its prompt fixed: ``bound(images) -> (B,)``. This is what the FK_REWARD type carries."""

    def __init__(self, reward: Reward | Callable[[torch.Tensor], torch.Tensor], prompt: str | None = None,
                 name: str | None = None):
        self.reward = reward
        self.prompt = prompt
        self.name = name or getattr(reward, "name", "reward")
        self.differentiable = bool(getattr(reward, "differentiable", False))
        self.input_size = getattr(reward, "input_size", None)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if isinstance(self.reward, Reward):
            return self.reward.score(images, self.prompt)
        return self.reward(images)

    def __repr__(self) -> str:
        prompt = "" if self.prompt is None else f", prompt={self.prompt!r}"
        return f"BoundReward({self.name}{prompt})"
