"""Benchmark the rewards: load time, scoring time at batch 4 and batch 1 (512x512 inputs), peak memory.

Real architectures with random weights (no downloads), saved in the published file format and loaded
through the same loaders users hit. Each reward runs in its own subprocess so peak memory is per reward.
Timing is reported, never asserted.

    python bench/bench_rewards.py                 # CPU: skips the ViT-H models (HPSv2.1, PickScore)
    python bench/bench_rewards.py --with-vith      # include them (~1B params each)
    python bench/bench_rewards.py --with-vlm       # include the Qwen-VL judges (3.8 B and 8 B params)
    python bench/bench_rewards.py --device cuda --dtype fp16   # the Qwen judges then run in bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PIXEL_REWARDS = ["sharpness", "saturation", "colorfulness", "brightness", "contrast", "target color",
                 "JPEG compressibility"]
LEARNED = ["ImageReward", "CLIP ViT-L-14", "LAION aesthetic", "HPSv2.1", "PickScore", "object counts",
           "VLM judge 3B", "HPSv3"]
VIT_H = {"HPSv2.1", "PickScore"}
VLM = {"VLM judge 3B", "HPSv3"}
# Qwen2.5-VL-3B-Instruct's and Qwen2-VL-7B-Instruct's published architectures (config.json of each hub repo).
QWEN25_VL_3B = dict(
    text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
              num_key_value_heads=2, tie_word_embeddings=True),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31]))
QWEN2_VL_7B = dict(
    text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
              num_key_value_heads=4, tie_word_embeddings=False),
    vision=dict(depth=32, embed_dim=1280, hidden_size=3584, mlp_ratio=4, num_heads=16, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2))
PROMPT = "a watercolour painting of a lighthouse at dawn"
OBJECTS = "1 lighthouse, 2 boat"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build(name: str, folder: Path, device: str, dtype):
    """Create random weights of the real architecture, save them like the published files, load them back.
    Returns (reward, seconds spent in the user-facing loader)."""
    from fk_core.rewards import catalog

    if name in PIXEL_REWARDS:
        start = time.perf_counter()
        return catalog.build_reward(name, []), time.perf_counter() - start
    if name == "ImageReward":
        return _build_imagereward(folder, device, dtype)
    if name in ("CLIP ViT-L-14", "LAION aesthetic", "HPSv2.1"):
        return _build_open_clip(name, folder, device, dtype)
    if name == "PickScore":
        return _build_pickscore(folder, device, dtype)
    if name == "object counts":
        return _build_detector(folder, device, dtype)
    if name in VLM:
        return _build_qwen(name, folder, device=device, dtype=dtype)
    raise ValueError(name)


def _build_imagereward(folder: Path, device: str, dtype):
    import torch
    from rewards_helpers import MED_CONFIG, real_bert_vocab, write_json, write_synthetic_bert_vocab

    from fk_core.rewards.blip_imagereward import ImageRewardNet, TextConfig, VisionConfig

    net = ImageRewardNet(VisionConfig(), TextConfig.from_med_config(MED_CONFIG, 1024))
    torch.save(net.state_dict(), folder / "ImageReward.pt")
    del net
    write_json(folder / "med_config.json", MED_CONFIG)
    vocab = real_bert_vocab() or write_synthetic_bert_vocab(folder / "vocab.txt")
    start = time.perf_counter()
    from fk_core.rewards import load_imagereward

    reward = load_imagereward(folder / "ImageReward.pt", folder / "med_config.json", vocab, device=device,
                              dtype=dtype)
    return reward, time.perf_counter() - start


def _build_open_clip(name: str, folder: Path, device: str, dtype):
    """CLIP score, LAION aesthetic (ViT-L-14) and HPSv2.1 (ViT-H-14): open_clip towers saved as published."""
    import open_clip
    import torch

    arch = "ViT-H-14" if name == "HPSv2.1" else "ViT-L-14"
    model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=name == "LAION aesthetic")
    weights = folder / f"{arch}.pt"
    state = model.state_dict()
    torch.save({"state_dict": state} if name == "HPSv2.1" else state, weights)
    del model, state
    start = time.perf_counter()
    if name == "HPSv2.1":
        from fk_core.rewards import load_hpsv2

        reward = load_hpsv2(weights, device=device, dtype=dtype)
    elif name == "LAION aesthetic":
        from fk_core.rewards import load_laion_aesthetic
        from fk_core.rewards.clip_rewards import AestheticMLP

        torch.save(AestheticMLP(768).state_dict(), folder / "head.pth")
        start = time.perf_counter()
        reward = load_laion_aesthetic(folder / "head.pth", weights, device=device, dtype=dtype, arch=arch)
    else:
        from fk_core.rewards import load_clip_score

        reward = load_clip_score(arch, weights, device=device, dtype=dtype)
    return reward, time.perf_counter() - start


def _build_pickscore(folder: Path, device: str, dtype):
    from test_rewards_learned import _write_clip_tokenizer_files
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    config = CLIPConfig(
        text_config={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                     "num_attention_heads": 16, "vocab_size": 49408},
        vision_config={"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                       "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
        projection_dim=1024)
    CLIPModel(config).save_pretrained(folder / "model")
    vocab, merges = _write_clip_tokenizer_files(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=CLIPTokenizer(str(vocab), str(merges))
                  ).save_pretrained(folder / "processor")
    from fk_core.rewards import load_pickscore

    start = time.perf_counter()
    reward = load_pickscore(folder / "model", folder / "processor", device=device, dtype=dtype)
    return reward, time.perf_counter() - start


def _build_detector(folder: Path, device: str, dtype):
    from test_rewards_learned import _write_clip_tokenizer_files
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor

    # google/owlv2-base-patch16-ensemble: CLIP B/16 towers (the config defaults) at 960 x 960.
    config = Owlv2Config(vision_config={"image_size": 960, "patch_size": 16})
    Owlv2ForObjectDetection(config).save_pretrained(folder)
    vocab, merges = _write_clip_tokenizer_files(folder)
    CLIPTokenizer(str(vocab), str(merges), pad_token="!").save_pretrained(folder)
    Owlv2ImageProcessor().save_pretrained(folder)
    from fk_core.rewards import load_object_detector

    start = time.perf_counter()
    return load_object_detector(folder, device=device, dtype=dtype), time.perf_counter() - start


def _build_qwen(name: str, folder: Path, device: str, dtype):
    """A real-size Qwen-VL with random weights and the tests' small tokenizer (the vocabulary is the tokenizer's,
    so the embedding tables are smaller than the published ones; everything else is the real architecture)."""
    import torch
    import transformers
    from rewards_helpers import tiny_qwen_config, tiny_qwen_tokenizer, write_qwen_processor_files

    dtype = torch.bfloat16 if dtype == torch.float16 else dtype  # Qwen language models overflow in fp16
    arch = QWEN25_VL_3B if name == "VLM judge 3B" else QWEN2_VL_7B
    model_type = "qwen2_5_vl" if name == "VLM judge 3B" else "qwen2_vl"
    extra = ("<|Reward|>",) if name == "HPSv3" else ()
    tokenizer = tiny_qwen_tokenizer(extra)
    config = tiny_qwen_config(model_type, tokenizer)
    text_config = getattr(config, "text_config", config)
    for key, value in arch["text"].items():
        setattr(text_config, key, value)
    half = arch["text"]["hidden_size"] // arch["text"]["num_attention_heads"] // 2
    section = [half // 4, 3 * half // 8, 3 * half // 8]  # [16, 24, 24] for both published models
    text_config.rope_scaling = {"type": "mrope", "mrope_section": section}
    text_config.rope_parameters = {"rope_type": "default", "mrope_section": section, "rope_theta": 1e6}
    for key, value in arch["vision"].items():
        setattr(config.vision_config, key, value)
    cls = transformers.Qwen2_5_VLForConditionalGeneration if name == "VLM judge 3B" else \
        transformers.Qwen2VLForConditionalGeneration
    with torch.device(device):
        model = cls(config).to(dtype)
    if name == "VLM judge 3B":
        model.save_pretrained(folder)
        write_qwen_processor_files(folder, tokenizer, max_pixels=512 * 28 * 28)
        del model
        from fk_core.rewards import load_vqa_judge

        start = time.perf_counter()
        return load_vqa_judge(folder, device=device, dtype=dtype), time.perf_counter() - start
    from safetensors.torch import save_file

    from fk_core.rewards.hpsv3 import RankHead

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.update({f"rm_head.{k}": v for k, v in RankHead(arch["text"]["hidden_size"]).layers.state_dict().items()})
    save_file(state, str(folder / "HPSv3.safetensors"))
    base = folder / "Qwen2-VL-7B-Instruct"
    write_qwen_processor_files(base, tiny_qwen_tokenizer())
    config.save_pretrained(str(base))
    del model, state
    from fk_core.rewards import load_hpsv3

    start = time.perf_counter()
    return load_hpsv3(folder / "HPSv3.safetensors", base, device=device, dtype=dtype), time.perf_counter() - start


def _time_scoring(reward, images, repeats: int) -> float:
    import torch

    prompt = (OBJECTS if "object counts" in reward.name else PROMPT) if reward.needs_prompt else None
    with torch.no_grad():
        reward.score(images, prompt)  # warm-up: text embedding cache, kernels
        if images.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            reward.score(images, prompt)
        if images.is_cuda:
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def run_one(name: str, device: str, dtype_name: str, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    with tempfile.TemporaryDirectory() as tmp:
        reward, load_s = _build(name, Path(tmp), device=device, dtype=dtype)
        images = torch.rand(4, 512, 512, 3, device=device)
        if name in PIXEL_REWARDS:  # milliseconds each: average more runs so scheduler noise does not dominate
            repeats = max(repeats, 20)
        batch4 = _time_scoring(reward, images, repeats)
        batch1 = _time_scoring(reward, images[:1].contiguous(), repeats)
    peak = (torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else _peak_rss_mib()
    return {"reward": name, "load_s": load_s, "batch4_s": batch4, "batch1_s": batch1, "ratio": batch4 / batch1,
            "peak_mib": peak, "params_m": sum(p.numel() for p in reward.parameters()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--with-vith", action="store_true", help="include the ~1B-parameter ViT-H rewards")
    parser.add_argument("--with-vlm", action="store_true", help="include the Qwen-VL judges (3.8 B and 8 B)")
    parser.add_argument("--only", nargs="*", help="run just these rewards")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.device, args.dtype, args.repeats)), flush=True)
        return
    names = args.only or PIXEL_REWARDS + LEARNED
    skipped = [] if (args.with_vith or args.only or args.device.startswith("cuda")) else sorted(VIT_H & set(names))
    skipped += [] if (args.with_vlm or args.only) else sorted(VLM & set(names))
    names = [n for n in names if n not in skipped]
    print(f"device={args.device} dtype={args.dtype} torch threads={os.cpu_count()} inputs 512x512\n")
    print(f"| {'reward':22} | params M | load s | batch-4 s | batch-1 s | b4/b1 | peak MiB |")
    print(f"|{'-' * 24}|---------:|-------:|----------:|----------:|------:|---------:|")
    for name in names:
        run = subprocess.run([sys.executable, __file__, "--one", name, "--device", args.device, "--dtype",
                              args.dtype, "--repeats", str(args.repeats)], check=False, capture_output=True,
                             text=True)
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
        if run.returncode != 0 or not lines:
            print(f"| {name:22} | failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else '?'}")
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        print(f"| {name:22} | {r['params_m']:8.1f} | {r['load_s']:6.2f} | {r['batch4_s']:9.3f} | "
              f"{r['batch1_s']:9.3f} | {r['ratio']:5.2f} | {r['peak_mib']:8.0f} |", flush=True)
    if skipped:
        print(f"\nskipped (ViT-H ~1B params on CPU: --with-vith; Qwen-VL judges 3.8-8B params: --with-vlm): "
              f"{', '.join(skipped)}")
    print("\npeak MiB = process peak RSS on CPU (includes building and saving the random checkpoint), "
          "torch.cuda.max_memory_allocated on GPU")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
