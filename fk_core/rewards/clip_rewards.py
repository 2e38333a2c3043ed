"""Rewards built on open_clip models: CLIP score, HPSv2.1 and the LAION aesthetic predictor v2."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Reward
from .blip_imagereward import ScoreHead
from .preprocess import CLIP_MEAN, CLIP_STD, clip_preprocess
from .weights import BadWeightsError, MissingWeightsError, load_state_dict_file

log = logging.getLogger(__name__)


def _preprocess_settings(model) -> tuple[int, tuple, tuple]:
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"non-square CLIP input size {size} is not supported")
        size = size[0]
    if cfg.get("resize_mode", "shortest") != "shortest":
        log.warning("open_clip resize_mode %s approximated by shortest-side resize + centre crop",
                    cfg.get("resize_mode"))
    return int(size), tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))


class _OpenClipImageEncoder(Reward):
    """Shared image path: torch preprocessing with the model's own size/mean/std, then encode_image."""

    differentiable = True  # bicubic resize, crop, normalise and the encoder: torch all the way

    def __init__(self, clip_model):
        super().__init__()
        self.clip = clip_model
        self.image_size, self.mean, self.std = _preprocess_settings(clip_model)
        self.input_size = self.image_size  # clip_preprocess resizes the shorter side to it first

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        pixels = clip_preprocess(images, self.image_size, self.mean, self.std)
        return F.normalize(self.clip.encode_image(pixels), dim=-1)


class OpenClipScore(_OpenClipImageEncoder):
    """``scale * cosine(image, prompt)`` with any open_clip model (scale 100 = the usual CLIP score)."""

    needs_prompt = True

    def __init__(self, clip_model, tokenizer, scale: float = 100.0, name: str = "CLIP score"):
        super().__init__(clip_model)
        self.tokenizer = tokenizer
        self.scale = float(scale)
        self.name = name
        self._text_cache: dict[str, torch.Tensor] = {}
        self.freeze()

    def text_embedding(self, prompt: str) -> torch.Tensor:
        """Normalised text embedding, computed once per prompt (prompts repeat across every FK step)."""
        cached = self._text_cache.get(prompt)
        if cached is None or cached.device != self.device:
            with torch.no_grad():
                tokens = self.tokenizer([prompt]).to(self.device)
                cached = F.normalize(self.clip.encode_text(tokens).float(), dim=-1)
            self._text_cache[prompt] = cached
        return cached

    def _score(self, images, prompt):
        image = self.image_embeddings(images).float()
        return self.scale * (image @ self.text_embedding(prompt).T)[:, 0]


class AestheticMLP(ScoreHead):
    """LAION improved-aesthetic-predictor head (sac+logos+ava1-l14-linearMSE): the same linear stack as
    ImageReward's head, over the L2-normalised CLIP ViT-L/14 image embedding (768-d)."""

    def __init__(self, width: int = 768):
        super().__init__(width)


class LaionAesthetic(_OpenClipImageEncoder):
    """LAION aesthetic predictor v2: predicted 1-10 rating from the normalised CLIP ViT-L/14 image embedding."""

    name = "LAION aesthetic"
    needs_prompt = False

    def __init__(self, clip_model, head: AestheticMLP):
        super().__init__(clip_model)
        self.head = head
        self.freeze()

    def _score(self, images, prompt):
        embedding = self.image_embeddings(images)
        return self.head(embedding.to(self.head.layers[0].weight.dtype)).squeeze(-1)


# ---------------------------------------------------------------------------------------------------
# Loading
def create_open_clip(arch: str, pretrained: str | Path | None, cache_dir: str | Path | None = None,
                     force_quick_gelu: bool = False):
    """An open_clip model from a pretrained tag (downloaded by open_clip into ``cache_dir``) or a local file
    (.pt/.bin/.safetensors, optionally wrapped in {'state_dict': ...} as HPS checkpoints are)."""
    import open_clip

    if arch not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
    local = pretrained is not None and Path(str(pretrained)).is_file()
    if pretrained is not None and not local and (arch, str(pretrained)) not in open_clip.list_pretrained():
        tags = [tag for name, tag in open_clip.list_pretrained() if name == arch]
        raise MissingWeightsError(
            f"{pretrained!r} is neither an existing file nor a known pretrained tag for {arch} (tags: {tags})"
        )
    if not local:
        try:
            return open_clip.create_model(arch, pretrained=pretrained, cache_dir=None if cache_dir is None
                                          else str(cache_dir), force_quick_gelu=force_quick_gelu)
        except (OSError, RuntimeError, ValueError) as error:
            cfg = open_clip.get_pretrained_cfg(arch, str(pretrained))
            source = f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}" if cfg.get("hf_hub") else cfg.get("url")
            raise MissingWeightsError(
                f"open_clip weights {arch}/{pretrained} are not downloaded and fetching them failed "
                f"({type(error).__name__}: {error}). Download the weights file from {source}, put it in "
                f"{cache_dir or 'your reward model folder'} and select it as the weights file."
            ) from None
    # Read the file before building the model: a wrong file then fails fast (ViT-H takes ~10 s to build).
    state = load_state_dict_file(pretrained)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=force_quick_gelu)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        message = str(error).split("\n")[0]
        raise BadWeightsError(f"{pretrained} does not hold {arch} weights: {message}") from None
    return model


def _finish(model, device, dtype):
    return model.to(device=device, dtype=dtype).eval()


def load_clip_score(arch: str = "ViT-L-14", pretrained: str | Path | None = "openai", *,
                    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    cache_dir: str | Path | None = None, force_quick_gelu: bool = False,
                    scale: float = 100.0) -> OpenClipScore:
    import open_clip

    model = create_open_clip(arch, pretrained, cache_dir, force_quick_gelu)
    tokenizer = open_clip.get_tokenizer(arch)
    label = Path(str(pretrained)).stem if pretrained and Path(str(pretrained)).is_file() else pretrained
    return OpenClipScore(_finish(model, device, dtype), tokenizer, scale=scale, name=f"CLIP {arch}/{label}")


def load_hpsv2(checkpoint: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               arch: str = "ViT-H-14") -> OpenClipScore:
    """HPSv2.1 (``HPS_v2.1_compressed.pt``): a fine-tuned open_clip ViT-H-14. Score = cosine(image, prompt),
    the number HPSv2's own ``score()`` reports (about 0.2-0.35)."""
    import open_clip

    model = create_open_clip(arch, checkpoint)
    return OpenClipScore(_finish(model, device, dtype), open_clip.get_tokenizer(arch), scale=1.0, name="HPSv2.1")


def load_laion_aesthetic(head_file: str | Path, clip_pretrained: str | Path | None = "openai", *,
                         device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                         cache_dir: str | Path | None = None, arch: str = "ViT-L-14") -> LaionAesthetic:
    """Aesthetic predictor v2: ``sac+logos+ava1-l14-linearMSE.pth`` on OpenAI CLIP ViT-L/14 (QuickGELU,
    forced here because a local file path, unlike the 'openai' tag, does not say so)."""
    clip_model = create_open_clip(arch, clip_pretrained, cache_dir, force_quick_gelu=True)
    width = clip_model.visual.output_dim
    head = AestheticMLP(width)
    state = load_state_dict_file(head_file)
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise BadWeightsError(f"{head_file} is not a LAION aesthetic-predictor head for a {width}-d CLIP: "
                              f"{str(error).splitlines()[0]}") from None
    return LaionAesthetic(_finish(clip_model, device, dtype), head.to(device=device, dtype=dtype))
