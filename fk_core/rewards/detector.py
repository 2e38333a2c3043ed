"""Prompt adherence by zero-shot detection, GenEval-style: OWLv2 (Minderer et al. 2023, through transformers)
looks for the objects the user lists with counts (``2 dog, 1 red ball``) and the reward is the fraction of
listed objects found exactly that many times, plus a small confidence term that lets FK rank particles before
any count is right.

Counting follows GenEval's recipe on OWLv2's outputs: every image patch predicts one box; a box belongs to
the listed object with the highest score for it, counts if that score passes the threshold, and overlapping
boxes of one object (IoU > 0.5) are merged (non-maximum suppression).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Reward, RewardInputError
from .preprocess import CLIP_MEAN, CLIP_STD, normalize
from .weights import BadWeightsError

log = logging.getLogger(__name__)

NUMBER_WORDS = {word: i for i, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())} | {"a": 1, "an": 1}
CONFIDENCE_WEIGHT = 0.1  # the confidence term's share: below one object's credit, so counts always come first
NMS_IOU = 0.5
QUERY = "a photo of a {}"  # OWL's standard text-query template


@dataclass(frozen=True)
class WantedObject:
    count: int
    name: str

    def __str__(self) -> str:
        return f"{self.count} x '{self.name}'"


def parse_objects(text: str) -> list[WantedObject]:
    """``"2 dog, 1 red ball; a cat"`` -> [2 dog, 1 red ball, 1 cat]. Counts are digits or number words
    (zero..twelve, a/an); an entry without a count means 1; separators are commas, semicolons or new lines."""
    if not isinstance(text, str) or not text.strip():
        raise RewardInputError("the detector needs the objects to look for, e.g. '2 dog, 1 red ball'")
    wanted = []
    for entry in (part.strip() for part in re.split(r"[,;\n]+", text)):
        if not entry:
            continue
        match = re.fullmatch(r"(\d+|[A-Za-z]+)\s+(.+)", entry)
        if match and (match.group(1).isdigit() or match.group(1).lower() in NUMBER_WORDS):
            count_text, name = match.groups()
            count = int(count_text) if count_text.isdigit() else NUMBER_WORDS[count_text.lower()]
        else:
            count, name = 1, entry
        name = name.strip()
        if not re.search(r"[A-Za-z]", name):
            raise RewardInputError(f"cannot read the object entry {entry!r}: write a count and a name, "
                                   "e.g. '2 dog'")
        if count > 50:
            raise RewardInputError(f"object entry {entry!r} asks for {count}; at most 50 of one object")
        wanted.append(WantedObject(count, name))
    if not wanted:
        raise RewardInputError("the detector needs the objects to look for, e.g. '2 dog, 1 red ball'")
    names = [w.name.lower() for w in wanted]
    if len(set(names)) != len(names):
        raise RewardInputError(f"an object is listed twice in {text!r}; give each object once with its count")
    return wanted


def describe(wanted: list[WantedObject]) -> str:
    return ", ".join(str(w) for w in wanted)


def box_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (cx, cy, w, h) boxes [K, 4]."""
    corners = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], dim=1)
    top_left = torch.maximum(corners[:, None, :2], corners[None, :, :2])
    bottom_right = torch.minimum(corners[:, None, 2:], corners[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area = boxes[:, 2] * boxes[:, 3]
    return inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-12)


def nms_count(boxes: torch.Tensor, scores: torch.Tensor, iou: float = NMS_IOU) -> int:
    """How many boxes survive greedy non-maximum suppression."""
    order = torch.argsort(scores, descending=True)
    overlaps = box_iou(boxes[order])
    kept = []
    for i in range(len(order)):
        if all(overlaps[i, j] <= iou for j in kept):
            kept.append(i)
    return len(kept)


class ObjectCountReward(Reward):
    """Fraction of listed objects found with the right count (0 ... 1) + 0.1 x mean detection confidence.

    The "prompt" this reward binds is the object list (``2 dog, 1 red ball``); :attr:`last_counts` holds the
    counts found in the last scored batch (one dict per image), for logs and tests.
    """

    name = "object counts (OWLv2)"
    needs_prompt = True
    differentiable = False  # counts are discrete

    def __init__(self, model, tokenizer, image_size: int, mean=CLIP_MEAN, std=CLIP_STD, threshold: float = 0.3):
        super().__init__()
        if not 0.0 < float(threshold) < 1.0:
            raise RewardInputError(f"detection threshold must be between 0 and 1, got {threshold}")
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.threshold = float(threshold)
        self.last_counts: list[dict[str, int]] = []
        self._query_cache: dict[str, tuple[list[WantedObject], dict]] = {}
        self.freeze()

    def queries(self, objects: str) -> tuple[list[WantedObject], dict]:
        if objects not in self._query_cache:
            wanted = parse_objects(objects)
            tokens = self.tokenizer([QUERY.format(w.name) for w in wanted], padding="max_length", max_length=16,
                                    truncation=True, return_tensors="pt")
            log.info("FK detector reward: looking for %s (score threshold %.2f)", describe(wanted), self.threshold)
            self._query_cache[objects] = (wanted, dict(tokens))
        return self._query_cache[objects]

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """OWLv2's input: pad to a square (bottom/right, grey 0.5 as the original), Gaussian anti-aliasing when
        shrinking, bilinear resize to the model's size, CLIP normalisation."""
        images = images.float()
        height, width = images.shape[-2:]
        side = max(height, width)
        if (height, width) != (side, side):
            images = F.pad(images, (0, side - width, 0, side - height), value=0.5)
        if side != self.image_size:
            sigma = max((side / self.image_size - 1) / 2, 0.0)
            if sigma > 0:
                images = _gaussian_blur(images, sigma)
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=False)
        return normalize(images, self.mean, self.std)

    def _score(self, images, prompt):
        wanted, tokens = self.queries(prompt)
        batch, queries = images.shape[0], len(wanted)
        device = images.device
        text = {k: v.to(device).repeat(batch, 1) for k, v in tokens.items()}  # OWL wants [B * Q, L]
        out = self.model(pixel_values=self.pixels(images).to(self.dtype), **text)
        scores = torch.sigmoid(out.logits.float())  # [B, patches, Q]
        best, label = scores.max(dim=-1)
        rewards, self.last_counts = [], []
        for b in range(batch):
            counts, credit, confidence = {}, 0.0, 0.0
            for q, item in enumerate(wanted):
                keep = (label[b] == q) & (best[b] > self.threshold)
                found = nms_count(out.pred_boxes[b][keep].float(), best[b][keep]) if keep.any() else 0
                counts[item.name] = found
                credit += float(found == item.count)
                top = float(scores[b, :, q].max())
                confidence += top if item.count > 0 else 1.0 - top
            self.last_counts.append(counts)
            rewards.append((credit + CONFIDENCE_WEIGHT * confidence) / queries)
        return torch.tensor(rewards, dtype=torch.float32, device=device)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(int(torch.ceil(torch.tensor(3 * sigma))), 1)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def load_object_detector(model_dir: str | Path, *, device: str | torch.device = "cpu",
                         dtype: torch.dtype = torch.float32, threshold: float = 0.3) -> ObjectCountReward:
    """An OWLv2 folder as published (e.g. google/owlv2-base-patch16-ensemble: config.json, model.safetensors,
    preprocessor_config.json, tokenizer files)."""
    from transformers import AutoTokenizer, Owlv2ForObjectDetection

    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        processor = json.loads((model_dir / "preprocessor_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise BadWeightsError(f"{error.filename} is missing: the detector needs OWLv2's config.json and "
                              "preprocessor_config.json") from None
    except json.JSONDecodeError as error:
        raise BadWeightsError(f"a json file in {model_dir} is not valid: {error}") from None
    if config.get("model_type") != "owlv2":
        raise BadWeightsError(f"{model_dir} holds a {config.get('model_type')!r} model, not OWLv2")
    try:
        model = Owlv2ForObjectDetection.from_pretrained(str(model_dir), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise BadWeightsError(f"{model_dir} does not hold a loadable OWLv2 model and tokenizer: "
                              f"{str(error).splitlines()[0]}") from None
    # The vision tower's position embeddings fix the input size; the preprocessor file normally agrees.
    image_size = model.config.vision_config.image_size
    size = processor.get("size", {})
    if (size.get("height") if isinstance(size, dict) else size) not in (None, image_size):
        log.warning("%s: preprocessor size %s differs from the model's input size %d; using %d", model_dir, size,
                    image_size, image_size)
    return ObjectCountReward(model.to(device=device, dtype=dtype).eval(), tokenizer, image_size,
                             processor.get("image_mean", CLIP_MEAN), processor.get("image_std", CLIP_STD), threshold)
