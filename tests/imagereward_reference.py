"""Run the ORIGINAL `image-reward` package (1.5) to produce reference scores for the parity test.

Executed in a subprocess with the side environment's python (see docs/rewards.md, "ImageReward parity
environment"), never imported by the main test process. It:
  1. builds the original `ImageReward` model with random weights (seeded; MLP re-initialised with a
     larger std because the original init makes every score the same constant),
  2. saves its state dict with torch.save -- exactly the published `ImageReward.pt` format,
  3. scores the given images with the original public API (`score(prompt, PIL)`) and with `score_gard`
     on pixel tensors the caller preprocessed, and writes everything to JSON.

Two import side effects of the package are neutralised, without touching any scoring code:
`ImageReward.ReFL` (training code needing accelerate/datasets/diffusers) and `clip` (only used by the
package's CLIPScore/AestheticScore classes, not by ImageReward).
"""

import argparse
import itertools
import json
import os
import sys
import types
from pathlib import Path


def make_offline_bert_cache(hf_home: Path, vocab_file: Path) -> None:
    """A hub-cache layout holding bert-base-uncased's tokenizer files, so the unmodified package's
    `BertTokenizer.from_pretrained('bert-base-uncased')` works offline with the full vocabulary."""
    repo = hf_home / "hub" / "models--bert-base-uncased"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "vocab.txt").write_bytes(vocab_file.read_bytes())
    (snapshot / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))


def import_reference_package() -> None:
    """Import the original package (and everything it needs) with its two side effects neutralised."""
    sys.modules.setdefault("ImageReward.ReFL", types.ModuleType("ImageReward.ReFL"))
    try:
        import clip  # noqa: F401
    except ImportError:
        sys.modules["clip"] = types.ModuleType("clip")
    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from ImageReward.ImageReward import ImageReward  # noqa: F401


def main() -> None:
    if sys.argv[1:] == ["--list-imports"]:  # where every module the reference needs comes from (hermetic test)
        import_reference_package()
        print(json.dumps({name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--med-config", required=True, type=Path)
    parser.add_argument("--vocab", required=True, type=Path)
    parser.add_argument("--images", required=True, type=Path, help=".npy uint8 (B,H,W,3) scored through PIL")
    parser.add_argument("--pixels", required=True, type=Path, help=".npy float32 (B,3,224,224) for score_gard")
    parser.add_argument("--prompts", required=True, type=Path, help="JSON list of prompts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hf_home = args.workdir / "hf_home"
    make_offline_bert_cache(hf_home, args.vocab)
    os.environ["HF_HOME"] = str(hf_home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import_reference_package()

    import time

    import numpy as np
    import torch
    import transformers
    from ImageReward.ImageReward import ImageReward
    from PIL import Image

    stages = {"start": time.perf_counter()}
    torch.manual_seed(args.seed)
    model = ImageReward(med_config=str(args.med_config), device="cpu")
    assert len(model.blip.tokenizer) >= 30522, f"reference tokenizer has only {len(model.blip.tokenizer)} tokens"
    with torch.no_grad():
        for param in model.mlp.layers.parameters():
            param.normal_(0.0, 0.05)
    checkpoint = args.workdir / "ImageReward.pt"
    # What ImageReward.load() reads: a plain state dict of the ImageReward module.
    torch.save(model.state_dict(), checkpoint)
    model.eval()
    stages["build_and_save"] = time.perf_counter()

    images = np.load(args.images)
    pixels = torch.from_numpy(np.load(args.pixels))
    prompts = json.loads(args.prompts.read_text())
    pil_images = [Image.fromarray(array) for array in images]
    results = {"transformers": transformers.__version__, "checkpoint": str(checkpoint), "pil": {},
               "grad": {}, "token_ids": {}}
    # Each ViT-L pass costs 1-8 s on a shared 2-core CPU, so: the full public PIL path for the first
    # prompt, the tensor path (score_gard) for the others, token ids for all.
    with torch.no_grad():
        for index, prompt in enumerate(prompts):
            tokens = model.blip.tokenizer(prompt, padding="max_length", truncation=True, max_length=35,
                                          return_tensors="pt")
            results["token_ids"][prompt] = tokens.input_ids[0].tolist()
            if index == 0:
                results["pil"][prompt] = [float(model.score(prompt, image)) for image in pil_images]
            else:
                gard = model.score_gard(tokens.input_ids.expand(pixels.shape[0], -1),
                                        tokens.attention_mask.expand(pixels.shape[0], -1), pixels)
                results["grad"][prompt] = [float(v) for v in gard.squeeze(-1)]
    stages["score"] = time.perf_counter()
    names = list(stages)
    results["seconds"] = {b: round(stages[b] - stages[a], 2) for a, b in itertools.pairwise(names)}
    (args.workdir / "reference.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
