"""PickScore v1 (Kirstain et al. 2023): a transformers CLIP-H/14 fine-tuned on Pick-a-Pic preferences."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Reward
from .preprocess import clip_preprocess
from .weights import BadWeightsError


def _embedding(output) -> torch.Tensor:
    # transformers 4 returns the projected tensor; 5 returns a BaseModelOutputWithPooling holding it.
    return output if torch.is_tensor(output) else output.pooler_output


def _size_field(value, *keys) -> int | None:
    """Read an int from an image-processor size entry: an int, a dict (transformers 4) or a SizeDict (5)."""
    if value is None or isinstance(value, int):
        return value
    for key in keys:
        found = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        if found:
            return int(found)
    return None


def _image_settings(image_processor) -> tuple[int, int, tuple, tuple]:
    """(resize shorter side to, centre-crop size, mean, std) as CLIPImageProcessor applies them."""
    crop = _size_field(getattr(image_processor, "crop_size", None), "height", "shortest_edge") or 224
    resize = _size_field(getattr(image_processor, "size", None), "shortest_edge", "height") or crop
    return resize, crop, tuple(image_processor.image_mean), tuple(image_processor.image_std)


class PickScore(Reward):
    """``logit_scale * cosine(image, prompt)``, the number PickScore's reference code reports (~18-23)."""

    name = "PickScore"
    needs_prompt = True
    differentiable = True

    def __init__(self, model, processor):
        super().__init__()
        self.model = model
        self.tokenizer = processor.tokenizer
        self.resize_to, self.crop_size, self.mean, self.std = _image_settings(processor.image_processor)
        self.input_size = self.resize_to  # clip_preprocess resizes the shorter side to it first
        self._text_cache: dict[str, torch.Tensor] = {}
        self.freeze()

    def text_embedding(self, prompt: str) -> torch.Tensor:
        cached = self._text_cache.get(prompt)
        if cached is None or cached.device != self.device:
            tokens = self.tokenizer([prompt], padding=True, truncation=True, max_length=77, return_tensors="pt")
            with torch.no_grad():
                text = _embedding(self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()}))
            cached = F.normalize(text.float(), dim=-1)
            self._text_cache[prompt] = cached
        return cached

    def _score(self, images, prompt):
        pixels = clip_preprocess(images, self.resize_to, self.mean, self.std, crop_size=self.crop_size)
        image = F.normalize(_embedding(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)
        return self.model.logit_scale.exp().float() * (image @ self.text_embedding(prompt).T)[:, 0]


def load_pickscore(model_dir: str | Path, processor_dir: str | Path | None = None, *,
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> PickScore:
    """``model_dir``: a saved CLIPModel (config.json + weights, e.g. yuvalkirstain/PickScore_v1);
    ``processor_dir``: its CLIPProcessor files (laion/CLIP-ViT-H-14-laion2B-s32B-b79K), default model_dir."""
    from transformers import AutoProcessor, CLIPModel

    model_dir = Path(model_dir)
    processor_dir = Path(processor_dir) if processor_dir is not None else model_dir
    if not (model_dir / "config.json").is_file():
        raise BadWeightsError(f"{model_dir} is not a saved transformers model (no config.json)")
    try:
        model = CLIPModel.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise BadWeightsError(f"{model_dir} does not hold a CLIP model PickScore can use: "
                              f"{str(error).splitlines()[0]}") from None
    try:
        processor = AutoProcessor.from_pretrained(str(processor_dir), local_files_only=True)
    except (OSError, ValueError) as error:
        raise BadWeightsError(f"{processor_dir} has no usable CLIP processor/tokenizer files: "
                              f"{str(error).splitlines()[0]}") from None
    if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
        raise BadWeightsError(f"{processor_dir} holds a {type(processor).__name__}, not a CLIP processor")
    if len(processor.tokenizer) < model.config.text_config.vocab_size - 1:
        raise BadWeightsError(f"tokenizer in {processor_dir} has {len(processor.tokenizer)} tokens but the model "
                              f"expects {model.config.text_config.vocab_size}")
    return PickScore(model.to(device=device, dtype=dtype).eval(), processor)
