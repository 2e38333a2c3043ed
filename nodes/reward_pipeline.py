"""The reward of a particle batch inside sampling: x0 -> images on the device -> FK_REWARD, one check at a time.

Checks decode with the preview decoder (TAESD or the full VAE, see preview_decoder.py) and score the images where
they were decoded (see check_cost.py); once the host marks the run as finishing (:attr:`RewardPipeline.final`),
the final particles are decoded with the full VAE, scored, and kept full size for the node's outputs.

Memory order: decode, then score (a learned reward loads its model here), then reload what sampling had loaded,
just before the next model call needs it (:class:`ReloadBeforeCall`; never after the final scoring). Reloading the
UNet before scoring would let the reward's model evict it again right before the next segment (newer ComfyUI
with dynamic VRAM frees memory for a non-dynamic model such as a reward by unloading dynamic ones).
"""

from __future__ import annotations

from typing import Optional

import comfy.model_management
import torch

from ..fk_core import FKError
from .check_cost import CostMeter, decode_and_score, reward_input_size
from .preview_decoder import FullVAEDecoder
from .sampler_checks import check_scores, check_x0, is_out_of_memory, reward_name, score_tensor
from .validation import message


class RewardPipeline:
    """x0 (the model's internal latent space) -> preview or full-VAE images in sub-batches -> FK_REWARD."""

    def __init__(self, vae, reward, base_model, sampling_models: list, decode_batch: int, preview=None,
                 meter: Optional[CostMeter] = None, node: str = "FK Particle Sampler"):
        self.node = node  # named in messages about the reward
        self.vae = vae  # comfy.sd.VAE (anything with .decode(latent) -> images)
        self.reward = reward  # FK_REWARD: images [B,H,W,C] in [0,1] -> [B]
        self.name = reward_name(reward)  # in messages and in the trace notes (the engine reads it)
        self.base_model = base_model
        self.sampling_models = sampling_models  # what ComfyUI loaded for sampling (UNet, ControlNets …)
        self.decode_batch = max(1, decode_batch)
        self.full = FullVAEDecoder(vae, base_model)
        self.preview = preview if preview is not None else self.full  # decoder of the intermediate checks
        self.meter = meter if meter is not None else CostMeter(None, self.preview.label)
        self.input_size = reward_input_size(reward)
        self.final = False  # set by the host once the last segment has run: the next call scores the final x0
        self.last_images: Optional[torch.Tensor] = None
        self.last_cost: Optional[dict] = None
        self.models_may_have_moved = False  # set by scoring; cleared when the sampling models are put back

    def reload_sampling_models(self) -> None:
        """Decoding and scoring may have moved the UNet (or a ControlNet) off the device to make room: put back
        everything the sampler had loaded (ComfyUI makes this a no-op when nothing moved)."""
        if self.models_may_have_moved and self.sampling_models:
            comfy.model_management.load_models_gpu(self.sampling_models)
        self.models_may_have_moved = False

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        bad_x0 = check_x0(self.node, x0)  # a model that diverged is told before the reward is blamed
        with torch.no_grad():
            self.last_images = None  # release the previous step's images before decoding the next ones
            decoder = self.full if self.final else self.preview
            scores, images, cost = decode_and_score(decoder, x0, self._score, self.decode_batch, self.input_size,
                                                    self.meter, keep_full=self.final)
            if self.final:  # the node's IMAGE outputs live where ComfyUI keeps images (normally the CPU)
                images = images.to(comfy.model_management.intermediate_device())
                self.meter.final = cost
            else:
                self.meter.checks.append(cost)
            self.last_images = images
            self.last_cost = cost
        self.models_may_have_moved = True
        return check_scores(self.node, scores, self.name, bad_x0)

    def _score(self, images: torch.Tensor) -> torch.Tensor:
        """One reward call on one sub-batch; whatever goes wrong there is named as the reward's problem."""
        try:
            values = self.reward(images)
        except comfy.model_management.InterruptProcessingException:
            raise
        except Exception as error:  # noqa: BLE001 - a failing reward is named as the reward's problem
            if isinstance(error, FKError) or is_out_of_memory(error):
                raise
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise FKError(message(self.node, "reward", f"{self.name} failed while scoring the "
                                  f"previews ({first or 'no message'})",
                                  "check the reward node and its weights, or pick another reward")) from None
        return score_tensor(self.node, values, self.name, images.shape[0])


class ReloadBeforeCall:
    """The k-diffusion model, putting the sampling models back (after a scoring) right before its next call."""

    def __init__(self, model, pipeline: RewardPipeline):
        self.model = model
        self.pipeline = pipeline

    def __getattr__(self, name):  # samplers inspect the model (inner_model, model_sampling …): the real one answers
        return getattr(self.__dict__["model"], name)

    def __call__(self, *args, **kwargs):
        self.pipeline.reload_sampling_models()
        return self.model(*args, **kwargs)
