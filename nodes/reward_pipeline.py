"""The reward of a particle batch inside sampling: x0 -> external latent -> VAE decode in sub-batches -> FK_REWARD."""

from __future__ import annotations

from typing import Optional

import comfy.model_management
import torch


class RewardPipeline:
    """x0 (the model's internal latent space) -> external latent -> VAE decode in sub-batches -> FK_REWARD."""

    def __init__(self, vae, reward, base_model, sampling_models: list, decode_batch: int):
        self.vae = vae  # comfy.sd.VAE (anything with .decode(latent) -> images)
        self.reward = reward  # FK_REWARD: images [B,H,W,C] in [0,1] -> [B]
        self.base_model = base_model
        self.sampling_models = sampling_models  # what ComfyUI loaded for sampling (UNet, ControlNets …)
        self.decode_batch = max(1, decode_batch)
        self.last_images: Optional[torch.Tensor] = None

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        latents = self.base_model.process_latent_out(x0.float())
        n = latents.shape[0]
        out = None  # filled chunk by chunk: no list + cat, so only one N-image batch is alive at a time
        for start in range(0, n, self.decode_batch):
            comfy.model_management.throw_exception_if_processing_interrupted()
            images = self.vae.decode(latents[start:start + self.decode_batch])
            if images.ndim == 5:  # video VAEs return [B, T, H, W, C]: score the frames as one strip per particle
                b, t, h, w, c = images.shape
                images = images.permute(0, 2, 1, 3, 4).reshape(b, h, t * w, c)
            if out is None:
                out = torch.empty((n,) + tuple(images.shape[1:]), dtype=torch.float32,
                                  device=comfy.model_management.intermediate_device())
            out[start:start + images.shape[0]] = images
            del images
        # Decoding may have moved the UNet (or a ControlNet) off the device to make room; sampling continues
        # right after, so put back everything the sampler had loaded (a no-op when nothing moved).
        if self.sampling_models:
            comfy.model_management.load_models_gpu(self.sampling_models)
        return out

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.last_images = None  # release the previous step's images before decoding the next ones
            images = self.decode(x0)
            self.last_images = images
            scores = self.reward(images)
        if not torch.is_tensor(scores):
            scores = torch.as_tensor(scores)
        return scores.detach().float().reshape(-1).cpu()
