"""ImageReward v1.0 as an FK reward: loads the published ``ImageReward.pt`` + ``med_config.json`` directly."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .base import Reward
from .blip_imagereward import (
    PROMPT_TOKENS,
    UNUSED_CHECKPOINT_KEYS,
    ImageRewardNet,
    TextConfig,
    vision_config_from_state_dict,
)
from .preprocess import clip_preprocess
from .weights import BadWeightsError, load_state_dict_file

log = logging.getLogger(__name__)

# bert-base-uncased has 30522 tokens. A tokenizer with fewer silently maps words to [UNK]
# (transformers 5 returns a 5-token tokenizer offline instead of raising), so we refuse it.
BERT_VOCAB_SIZE = 30522


def load_bert_tokenizer(vocab_file: str | Path):
    """The uncased BERT WordPiece tokenizer ImageReward was trained with, from a local vocab.txt."""
    from transformers import BertTokenizer

    vocab_file = Path(vocab_file)
    if not vocab_file.is_file():
        raise BadWeightsError(f"tokenizer vocabulary {vocab_file} does not exist")
    # Positional on purpose: the keyword is `vocab_file` in transformers 4 and `vocab` in 5, and a wrong
    # keyword is silently ignored in 5 (giving a 5-token tokenizer).
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True)
    if len(tokenizer) < BERT_VOCAB_SIZE:
        raise BadWeightsError(
            f"{vocab_file} has only {len(tokenizer)} tokens; ImageReward needs the full bert-base-uncased "
            f"vocab.txt ({BERT_VOCAB_SIZE} lines), otherwise every word becomes [UNK]"
        )
    return tokenizer


class ImageRewardScore(Reward):
    """Human-preference score from ImageReward v1.0 (roughly standard normal over generated images;
    higher = better prompt match and quality)."""

    name = "ImageReward"
    needs_prompt = True
    differentiable = True

    def __init__(self, net: ImageRewardNet, tokenizer):
        super().__init__()
        self.net = net
        self.tokenizer = tokenizer
        self.image_size = net.blip.visual_encoder.config.image_size
        self.input_size = self.image_size  # clip_preprocess resizes the shorter side to it first
        self._token_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.freeze()

    def tokenize(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask (1, 35) exactly as ImageReward builds them (pad to 35, truncate)."""
        if prompt not in self._token_cache:
            encoded = self.tokenizer(prompt, padding="max_length", truncation=True, max_length=PROMPT_TOKENS,
                                     return_tensors="pt")
            self._token_cache[prompt] = (encoded["input_ids"], encoded["attention_mask"])
        return self._token_cache[prompt]

    def _score(self, images, prompt):
        ids, mask = self.tokenize(prompt)
        batch = images.shape[0]
        ids = ids.to(images.device).expand(batch, -1)
        mask = mask.to(images.device).expand(batch, -1)
        return self.net(clip_preprocess(images, self.image_size), ids, mask)


def _read_med_config(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise BadWeightsError(f"med_config.json not found at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadWeightsError(f"{path} is not a valid med_config.json: {error}") from None
    if not isinstance(config, dict) or "hidden_size" not in config:
        raise BadWeightsError(f"{path} does not look like ImageReward's med_config.json (no hidden_size)")
    return config


def load_imagereward(checkpoint: str | Path, med_config: str | Path, vocab_file: str | Path, *,
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ImageRewardScore:
    """Build ImageReward from the published files: ``ImageReward.pt``, ``med_config.json`` and BERT's vocab.txt."""
    config = _read_med_config(med_config)
    state = load_state_dict_file(checkpoint)
    vision = vision_config_from_state_dict(state)
    text = TextConfig.from_med_config(config, encoder_width=vision.width)
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        net = ImageRewardNet(vision, text)
    expected = set(net.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise BadWeightsError(
            f"{checkpoint} is not an ImageReward checkpoint matching {med_config}: {len(missing)} weights missing "
            f"(e.g. {missing[:3]})"
        )
    unexpected = sorted(set(state) - expected - set(UNUSED_CHECKPOINT_KEYS))
    if unexpected:
        # The original loader ignores extra keys (strict=False); do the same, but say so.
        log.warning("%s: ignoring %d weights the ImageReward scorer does not use (e.g. %s)", checkpoint,
                    len(unexpected), unexpected[:3])
    try:
        net.load_state_dict({k: state[k] for k in expected}, strict=True, assign=True)
    except RuntimeError as error:  # shape mismatch between med_config and checkpoint
        raise BadWeightsError(f"{checkpoint} does not match {med_config}: {error}") from None
    net = net.to(device=device, dtype=dtype)
    tokenizer = load_bert_tokenizer(vocab_file)
    if len(tokenizer) > text.vocab_size + 2:  # +2: ImageReward adds [DEC] and [ENC]
        raise BadWeightsError(f"{vocab_file} has {len(tokenizer)} tokens but the model only {text.vocab_size}")
    return ImageRewardScore(net, tokenizer)
