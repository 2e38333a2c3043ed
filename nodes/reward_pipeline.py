"""The scorer of one ComfyUI run (fk_core.scoring's two phases): x0 -> images on the device -> FK_REWARD.

``check(x0, step)`` decodes the particles' x0-predictions with the preview decoder (TAESD or the full VAE, see
preview_decoder.py); ``final(x)`` decodes the finished particles with the full VAE, keeps them full size for the
node's outputs and scores them with the final judge when there is one. Decoding and scoring run on the device
in sub-batches (fk_core.decode_and_score); only the N scores go to the CPU.

Memory order: decode, then score (a learned reward loads its model here), then reload what sampling had loaded,
just before the next model call needs it (:class:`ReloadBeforeCall`; never after the final scoring). Reloading the
UNet before scoring would let the reward's model evict it again right before the next segment (newer ComfyUI
with dynamic VRAM frees memory for a non-dynamic model such as a reward by unloading dynamic ones).
"""

from __future__ import annotations

import contextlib
from typing import Optional

import comfy.model_management
import torch

from ..fk_core import (
    CostClock,
    FKError,
    FullVAEDecoder,
    PartsRecorder,
    Scored,
    as_frame_reward,
    check_scores,
    check_x0,
    decode_and_score,
    is_out_of_memory,
    message,
    name_of,
    notes_of,
    pick_frames,
    reward_input_size,
    score_tensor,
    video_reward_problem,
)


class ComfyScorer:
    """Checks: preview decoder + ``reward``; final: full VAE + ``final_reward`` (else ``reward``)."""

    def __init__(self, node: str, vae, reward, final_reward, base_model, sampling_models: list, decode_batch: int,
                 preview=None, clock: Optional[CostClock] = None, video: bool = False):
        self.node = node  # named in messages about the reward
        for label, given in (("reward", reward), ("final_reward", final_reward)):
            problem = video_reward_problem(node, given, video, label)
            if problem:
                raise FKError(problem)
        if video:  # image rewards score K frames of each clip (fk_core.video.FrameReward)
            reward = as_frame_reward(reward)
            final_reward = as_frame_reward(final_reward) if final_reward is not None else None
        self.video = video
        self.frames_scored: Optional[list[int]] = None  # the frames of each clip the checks scored (video)
        self.reward, self.final_reward = reward, final_reward  # FK_REWARD: images [B,H,W,C] in [0,1] -> [B]
        self.name = name_of(reward)  # in messages and in the engine's notes
        self.final_name = name_of(final_reward) if final_reward is not None else None
        self.notes = notes_of(reward, final_reward)
        self.sampling_models = sampling_models  # what ComfyUI loaded for sampling (UNet, ControlNets …)
        self.decode_batch = max(1, decode_batch)
        self.full = FullVAEDecoder(vae, base_model)
        self.preview = preview if preview is not None else self.full  # decoder of the intermediate checks
        self.label = self.preview.label
        self.clock = clock if clock is not None else CostClock()
        self.models_may_have_moved = False  # set by scoring; cleared when the sampling models are put back

    def check(self, x0: torch.Tensor, step: int) -> Scored:
        return self._score(self.reward, self.preview, x0, keep_full=False, pick=self._pick_frames)

    def check_with_gradient(self, x0: torch.Tensor, step: int) -> Scored:
        """A guided check (fk_core.guidance): the same decode and reward, kept differentiable, then ∂r/∂x0."""
        return self._score(self.reward, self.preview, x0, keep_full=False, pick=self._pick_frames, gradient=True)

    def _pick_frames(self, images: torch.Tensor) -> torch.Tensor:
        """The frames of each decoded clip the reward scores (images pass unchanged): only those are shrunk,
        scored and kept for the live view."""
        if images.ndim != 5:
            return images
        self.frames_scored = self.reward.frames_scored(images.shape[1])
        return pick_frames(images, self.reward.frames)

    def final(self, x: torch.Tensor) -> Scored:
        scored = self._score(self.final_reward or self.reward, self.full, x, keep_full=True)
        # the node's IMAGE outputs live where ComfyUI keeps images (normally the CPU)
        scored.images = scored.images.to(comfy.model_management.intermediate_device())
        return scored

    def reload_sampling_models(self) -> None:
        """Decoding and scoring may have moved the UNet (or a ControlNet) off the device to make room: put back
        everything the sampler had loaded (ComfyUI makes this a no-op when nothing moved)."""
        if self.models_may_have_moved and self.sampling_models:
            comfy.model_management.load_models_gpu(self.sampling_models)
        self.models_may_have_moved = False

    def _score(self, reward, decoder, x0: torch.Tensor, keep_full: bool, pick=None, gradient: bool = False) -> Scored:
        bad_x0 = check_x0(self.node, x0)  # a model that diverged is told before the reward is blamed
        name = name_of(reward)
        recorder = PartsRecorder(reward)  # a combined reward's terms, for the trace and the contact sheet
        score = (lambda values: score_tensor(self.node, values, name, values.shape[0])) if gradient else \
            (lambda images: self._call(recorder, name, images))
        guided = {"gradient_of": recorder, "holders": (reward, decoder)} if gradient else {}
        with contextlib.nullcontext() if gradient else torch.no_grad():
            scored = decode_and_score(decoder.decode, x0, score, self.decode_batch, reward_input_size(reward),
                                      self.clock, keep_full, pick=pick, **guided,
                                      before_batch=comfy.model_management.throw_exception_if_processing_interrupted)
        scored.parts = recorder.take()
        self.models_may_have_moved = True
        scored.rewards = check_scores(self.node, scored.rewards, name, bad_x0)
        return scored

    def _call(self, reward, name: str, images: torch.Tensor) -> torch.Tensor:
        return call_reward(self.node, reward, name, images)


def call_reward(node: str, reward, name: str, images: torch.Tensor, what: str = "the previews") -> torch.Tensor:
    """One reward call on one sub-batch, as a float [b] CPU tensor; whatever goes wrong there is named as the
    reward's problem (``what``: what was being scored, for the message)."""
    try:
        values = reward(images)
    except comfy.model_management.InterruptProcessingException:
        raise
    except Exception as error:  # noqa: BLE001 - a failing reward is named as the reward's problem
        if isinstance(error, FKError) or is_out_of_memory(error):
            raise
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise FKError(message(node, "reward", f"{name} failed while scoring {what} ({first or 'no message'})",
                              "check the reward node and its weights, or pick another reward")) from None
    return score_tensor(node, values, name, images.shape[0])


class ReloadBeforeCall:
    """The k-diffusion model, putting the sampling models back (after a scoring) right before its next call."""

    def __init__(self, model, scorer: ComfyScorer):
        self.model = model
        self.scorer = scorer

    def __getattr__(self, name):  # samplers inspect the model (inner_model, model_sampling …): the real one answers
        return getattr(self.__dict__["model"], name)

    def __call__(self, *args, **kwargs):
        self.scorer.reload_sampling_models()
        return self.model(*args, **kwargs)
