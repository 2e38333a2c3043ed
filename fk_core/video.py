"""Video clips for image rewards: which frames a reward scores, how the per-frame scores combine, and one
temporal reward without weights. Plain torch (no host import).

Decoded clips are ``[B, T, H, W, C]`` in [0, 1] (ComfyUI's video VAEs return that layout). An image reward never
sees a clip: :class:`FrameReward` picks K frames spread over the clip (first and last included), scores the
B·K frames in ONE call of the image reward, and combines each clip's K scores (``mean``, or ``min`` when every
frame must be good). Scoring the clip as one wide strip ``[B, H, T·W, C]`` instead would let a reward that
resizes to 224 px see T squeezed frames at once (tests/test_video.py shows the two disagree).

``smoothness`` adds :func:`frame_consistency` (minus the mean absolute change between consecutive scored
frames, in [−1, 0]) times that weight, so a reward can prefer clips without flicker.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .messages import message

DEFAULT_FRAMES = 4
COMBINES = ("mean", "min")
DEFAULT_COMBINE = "mean"


def is_video(images: torch.Tensor) -> bool:
    return images.ndim == 5


def frame_indices(frames: int, k: int) -> list[int]:
    """``k`` frame indices spread evenly over ``frames`` (first and last included); all frames when k ≥ frames."""
    if k >= frames:
        return list(range(frames))
    if k == 1:
        return [frames // 2]
    return sorted({round(i * (frames - 1) / (k - 1)) for i in range(k)})


def pick_frames(clips: torch.Tensor, k: int) -> torch.Tensor:
    """[B, T, H, W, C] → [B, k', H, W, C], the frames :func:`frame_indices` chooses (images pass unchanged)."""
    if not is_video(clips):
        return clips
    return clips[:, frame_indices(clips.shape[1], k)]


def flat_frames(clips: torch.Tensor) -> torch.Tensor:
    """[B, T, H, W, C] → [B·T, H, W, C], clip after clip (ComfyUI's IMAGE batch of frames)."""
    return clips.reshape(-1, *clips.shape[2:]) if is_video(clips) else clips


def strip(clips: torch.Tensor, k: int = DEFAULT_FRAMES) -> torch.Tensor:
    """k frames of each clip side by side, [B, H, k·W, C]: one picture per particle for a contact sheet."""
    if not is_video(clips):
        return clips
    few = pick_frames(clips, k)
    b, t, h, w, c = few.shape
    return few.permute(0, 2, 1, 3, 4).reshape(b, h, t * w, c)


def middle_frame(clips: torch.Tensor) -> torch.Tensor:
    """[B, T, H, W, C] → [B, H, W, C], each clip's middle frame (a live thumbnail)."""
    return clips[:, clips.shape[1] // 2] if is_video(clips) else clips


def frame_consistency(clips: torch.Tensor) -> torch.Tensor:
    """Minus the mean absolute change between consecutive frames, [B] in [−1, 0] (0: a still clip). No weights."""
    if not is_video(clips) or clips.shape[1] < 2:
        return torch.zeros(clips.shape[0], device=clips.device)
    change = (clips[:, 1:].float() - clips[:, :-1].float()).abs()
    return -change.mean(dim=tuple(range(1, change.ndim)))


class FrameReward:
    """A video reward made from an image reward: K frames per clip, scored in one batched call, combined.

    Images [B, H, W, C] go to the image reward unchanged (the same reward works for image models).
    ``input_size`` is the image reward's: hosts shrink each frame to it before scoring."""

    def __init__(self, reward: Callable, frames: int = DEFAULT_FRAMES, combine: str = DEFAULT_COMBINE,
                 smoothness: float = 0.0):
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        self.reward = reward
        self.frames = max(1, int(frames))
        self.combine = combine
        self.smoothness = float(smoothness)
        self.input_size = getattr(reward, "input_size", None)
        self.differentiable = bool(getattr(reward, "differentiable", False))  # frames picked, then combined
        self.notes = list(getattr(reward, "notes", None) or [])
        inner = getattr(reward, "name", None) or type(reward).__name__
        extra = f" + {self.smoothness:g}·frame consistency" if self.smoothness else ""
        self.name = f"{inner} ({combine} of {self.frames} frames{extra})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not is_video(images):
            return torch.as_tensor(self.reward(images)).float().reshape(-1)
        clips = pick_frames(images, self.frames)
        b, k = clips.shape[:2]
        scores = torch.as_tensor(self.reward(flat_frames(clips))).float().reshape(-1)
        if scores.numel() != b * k:
            raise ValueError(f"the image reward returned {scores.numel()} scores for {b * k} frames")
        per_clip = scores.reshape(b, k)
        combined = per_clip.mean(dim=1) if self.combine == "mean" else per_clip.min(dim=1).values
        if self.smoothness:
            combined = combined + self.smoothness * frame_consistency(clips).float().cpu().to(combined.device)
        return combined

    def frames_scored(self, frames: int) -> list[int]:
        return frame_indices(frames, self.frames)

    def record(self, latent_frames: int, frames_scored: Optional[list[int]]) -> dict:
        """What a run's trace says of it: latent frames, this reward's frame settings, the frames scored."""
        return {"latent_frames": int(latent_frames), "reward": self.name, "frames": self.frames,
                "combine": self.combine, "smoothness": self.smoothness, "frames_scored": frames_scored}


def as_frame_reward(reward: Any) -> FrameReward:
    """The reward a video run scores with: a :class:`FrameReward` as given, else one with the defaults."""
    return reward if isinstance(reward, FrameReward) else FrameReward(reward)


def video_reward_problem(node: str, reward: Any, video: bool, label: str = "reward") -> Optional[str]:
    """A reward setting that cannot score this kind of latent, as a message; None when it can."""
    if not video and isinstance(reward, FrameReward) and reward.smoothness:
        return message(node, label, f"{reward.name} scores frame consistency, but the latent is an image (no "
                       "frames)", "set smoothness to 0 in FK Video Reward, or use a video model and latent")
    return None
