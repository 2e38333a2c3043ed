"""What the Qwen2-VL family judges (HPSv3, the VQA judge) share: loading a Qwen2-VL / Qwen2.5-VL / Qwen3-VL model
from a saved folder, its chat prompt, and its image input computed in torch (differentiable, batched, no PIL).

The image path reproduces ``Qwen2VLImageProcessor``: resize to a multiple of patch x merge within a pixel budget
(``smart_resize``), rescale to [0, 1], normalise, and cut into the flat patch layout the vision tower reads
(tokens in merge-window order, each patch as channel x temporal x patch x patch; a still image is repeated over
the temporal patch). Every image of a batch gets the same size, so every prompt has the same length: no padding,
and a score does not depend on the other images in the batch.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .preprocess import CLIP_MEAN, CLIP_STD, normalize
from .weights import BadWeightsError

log = logging.getLogger(__name__)

# transformers class per config.model_type; a missing one means the installed transformers is too old for it.
MODEL_CLASSES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
}
IMAGE_TOKEN = "<|image_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
# The Qwen-VL instruct chat format, used only when a folder ships no chat template of its own.
FALLBACK_CHAT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                 f"{VISION_START}{IMAGE_TOKEN}{VISION_END}{{text}}<|im_end|>\n<|im_start|>assistant\n")


@dataclass(frozen=True)
class QwenImageSettings:
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_folder(cls, folder: Path, **overrides) -> QwenImageSettings:
        """Read preprocessor_config.json (transformers 4 writes min/max_pixels, 5 a size dict)."""
        path = Path(folder) / "preprocessor_config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadWeightsError(f"{path} is missing: the judge needs the model's preprocessor_config.json") from None
        except json.JSONDecodeError as error:
            raise BadWeightsError(f"{path} is not valid JSON: {error}") from None
        size = config.get("size") or {}
        values = dict(
            patch_size=config.get("patch_size", cls.patch_size), merge_size=config.get("merge_size", cls.merge_size),
            temporal_patch_size=config.get("temporal_patch_size", cls.temporal_patch_size),
            mean=tuple(config.get("image_mean", CLIP_MEAN)), std=tuple(config.get("image_std", CLIP_STD)),
            min_pixels=config.get("min_pixels") or size.get("shortest_edge") or cls.min_pixels,
            max_pixels=config.get("max_pixels") or size.get("longest_edge") or cls.max_pixels,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's target size: both sides multiples of ``factor``, area within [min_pixels, max_pixels], aspect
    ratio kept as well as the rounding allows."""
    if max(height, width) / min(height, width) > 200:
        raise BadWeightsError(f"image aspect ratio {height}x{width} is beyond what Qwen-VL accepts (200:1)")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return max(h_bar, factor), max(w_bar, factor)


def patchify(images: torch.Tensor, settings: QwenImageSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) normalised, H and W multiples of patch x merge -> (pixel_values [B*h*w, 3*T*p*p], grid_thw)."""
    batch, channels, height, width = images.shape
    p, m, t = settings.patch_size, settings.merge_size, settings.temporal_patch_size
    grid_h, grid_w = height // p, width // p
    patches = images.reshape(batch, channels, grid_h // m, m, p, grid_w // m, m, p)
    patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7)  # batch, h/m, w/m, m, m, channel, p, p
    patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1)
    flat = patches.reshape(batch * grid_h * grid_w, channels * t * p * p)
    grid = torch.tensor([[1, grid_h, grid_w]] * batch, dtype=torch.long, device=images.device)
    return flat, grid


def image_inputs(images: torch.Tensor, settings: QwenImageSettings) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(B, 3, H, W) in [0, 1] -> (pixel_values, image_grid_thw, image tokens per image).

    Resizing runs in float32 (bicubic in half precision loses visible precision) and is skipped when the size
    is already right, which keeps exact pixels for the comparison with transformers' own processor.
    """
    dtype = images.dtype
    height, width = images.shape[-2:]
    new_h, new_w = smart_resize(height, width, settings.factor, settings.min_pixels, settings.max_pixels)
    pixels = images.float()
    if (new_h, new_w) != (height, width):
        shrinking = new_h < height or new_w < width
        pixels = F.interpolate(pixels, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=shrinking)
    flat, grid = patchify(normalize(pixels, settings.mean, settings.std), settings)
    tokens = (new_h // settings.patch_size) * (new_w // settings.patch_size) // settings.merge_size ** 2
    return flat.to(dtype), grid, tokens


# ---------------------------------------------------------------------------------------------------
# Loading
def model_class(model_type: str, folder: Path):
    import transformers

    name = MODEL_CLASSES.get(model_type)
    if name is None:
        raise BadWeightsError(f"{folder} holds a {model_type!r} model; this judge needs a Qwen2-VL, Qwen2.5-VL or "
                              f"Qwen3-VL model ({', '.join(MODEL_CLASSES)})")
    cls = getattr(transformers, name, None)
    if cls is None:
        raise BadWeightsError(f"{folder} holds a {model_type} model, which the installed transformers "
                              f"{transformers.__version__} does not know; update transformers or pick a "
                              "Qwen2.5-VL model")
    return cls


def read_model_type(folder: Path) -> str:
    path = Path(folder) / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("model_type", ""))
    except FileNotFoundError:
        raise BadWeightsError(f"{path} is missing: the folder is not a saved transformers model") from None
    except json.JSONDecodeError as error:
        raise BadWeightsError(f"{path} is not valid JSON: {error}") from None


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise BadWeightsError(f"{folder} has no usable tokenizer files (tokenizer.json, tokenizer_config.json): "
                              f"{str(error).splitlines()[0]}") from None
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        raise BadWeightsError(f"the tokenizer in {folder} has no {IMAGE_TOKEN} token: not a Qwen-VL tokenizer")
    return tokenizer


def chat_template(folder: Path, tokenizer) -> str | None:
    """The model's own chat template: chat_template.jinja / chat_template.json (processor), else the tokenizer's."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        try:
            return json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
        except (json.JSONDecodeError, KeyError) as error:
            raise BadWeightsError(f"{folder / 'chat_template.json'} is not a chat template file: {error}") from None
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, str) else None


def user_turn(tokenizer, template: str | None, text: str) -> str:
    """The chat text for one user turn holding one image then ``text``, ending where the assistant answers."""
    if template is None:
        log.info("no chat template found; using the standard Qwen-VL chat format")
        return FALLBACK_CHAT.format(text=text)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    rendered = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
    if rendered.count(IMAGE_TOKEN) != 1:
        raise BadWeightsError(f"the chat template does not place exactly one {IMAGE_TOKEN} for an image")
    return rendered


def token_ids(tokenizer, text: str, image_tokens: int) -> torch.Tensor:
    """Token ids (1, L) of ``text`` with its image placeholder expanded to one token per merged patch."""
    expanded = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * image_tokens)
    ids = tokenizer(expanded, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return ids


def forward_kwargs(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def model_inputs(model, ids: torch.Tensor, pixels: torch.Tensor, grid: torch.Tensor, accepted: set[str]) -> dict:
    """Keyword arguments for one forward pass; newer transformers also want the token types (image = 1) to place
    the multimodal rotary positions, older ones find the image tokens themselves."""
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, image_grid_thw=grid,
                  use_cache=False)
    if "mm_token_type_ids" in accepted:
        inputs["mm_token_type_ids"] = (ids == model.config.image_token_id).to(torch.int32)
    return inputs
