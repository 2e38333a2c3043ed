"""The list of rewards a user can pick, where their weights live, and one function that builds any of them.

Folder layout under a reward root (ComfyUI: ``models/fk_rewards``)::

    ImageReward/ImageReward.pt, ImageReward/med_config.json, ImageReward/bert-base-uncased/vocab.txt
    PickScore_v1/{config.json, model.safetensors}, PickScore_v1/processor/{tokenizer + preprocessor files}
    HPSv2/HPS_v2.1_compressed.pt
    aesthetic/sac+logos+ava1-l14-linearMSE.pth
    open_clip/  (open_clip's download cache for CLIP score and the aesthetic predictor's CLIP)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import classic
from .base import Reward
from .weights import MissingWeightsError, WeightFile, find_local, offline, resolve


@dataclass(frozen=True)
class RewardSpec:
    name: str
    summary: str
    needs_prompt: bool
    learned: bool
    subfolder: str = ""
    files: tuple[WeightFile, ...] = field(default_factory=tuple)
    licence: str = ""


IMAGEREWARD_FILES = (
    WeightFile("ImageReward.pt", hf_repo="THUDM/ImageReward"),
    WeightFile("med_config.json", hf_repo="THUDM/ImageReward"),
    WeightFile("bert-base-uncased/vocab.txt", hf_repo="google-bert/bert-base-uncased", hf_filename="vocab.txt"),
)
HPS_FILES = (WeightFile("HPS_v2.1_compressed.pt", hf_repo="xswu/HPSv2"),)
AESTHETIC_FILES = (WeightFile(
    "sac+logos+ava1-l14-linearMSE.pth",
    url="https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth",
),)
PICKSCORE_MODEL_REPO = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

SPECS: dict[str, RewardSpec] = {spec.name: spec for spec in (
    RewardSpec("ImageReward", "human preference for text-to-image (prompt match + quality), ~N(0,1)", True, True,
               "ImageReward", IMAGEREWARD_FILES, "Apache-2.0"),
    RewardSpec("PickScore", "human preference from Pick-a-Pic, ~18-23", True, True, "PickScore_v1", (), "MIT"),
    RewardSpec("HPSv2.1", "human preference score v2.1, ~0.2-0.35", True, True, "HPSv2", HPS_FILES, "Apache-2.0"),
    RewardSpec("LAION aesthetic", "LAION aesthetic predictor v2, 1-10 rating, no prompt", False, True, "aesthetic",
               AESTHETIC_FILES, "Apache-2.0 (head); CLIP ViT-L/14 weights: MIT"),
    RewardSpec("CLIP score", "100 x cosine(image, prompt) with any open_clip model", True, True, "open_clip", (),
               "depends on the CLIP weights chosen"),
    RewardSpec("sharpness", "crisp edges and fine detail (std of the Laplacian)", False, False),
    RewardSpec("saturation", "mean HSV saturation, 0-1", False, False),
    RewardSpec("colorfulness", "Hasler-Suesstrunk colourfulness, 0-~0.6", False, False),
    RewardSpec("brightness", "closeness of mean brightness to a target (0 best)", False, False),
    RewardSpec("contrast", "closeness of RMS contrast to a target (0 best)", False, False),
    RewardSpec("target color", "closeness of every pixel to one colour (0 best)", False, False),
    RewardSpec("JPEG compressibility", "minus JPEG bits per pixel: simpler images (not differentiable)", False,
               False),
)}


def reward_names() -> list[str]:
    return list(SPECS)


def spec(name: str) -> RewardSpec:
    if name not in SPECS:
        raise ValueError(f"unknown reward {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


def _folders(roots: Sequence[Path | str], subfolder: str) -> list[Path]:
    dirs = [Path(r) / subfolder for r in roots] if subfolder else []
    return dirs + [Path(r) for r in roots]


def clean_partial_download(folder: Path | None) -> None:
    """Remove what an unfinished download leaves in ``folder``: the hub's ``.cache/huggingface`` (locks,
    ``.incomplete`` files, metadata), hub-cache ``.lock``/``.incomplete`` files (open_clip's cache) and this
    pack's own ``.part`` files. Finished weight files are never touched."""
    if folder is None or not Path(folder).is_dir():
        return
    folder = Path(folder)
    hub_cache = folder / ".cache" / "huggingface"
    if hub_cache.is_dir():
        shutil.rmtree(hub_cache)
        if not any((folder / ".cache").iterdir()):
            (folder / ".cache").rmdir()
    for pattern in ("**/*.lock", "**/*.incomplete", "**/*.part"):
        for leftover in folder.glob(pattern):
            if leftover.is_file():
                leftover.unlink()


def _resolve_all(files, roots, subfolder, allow_download, extra_dirs=()) -> list[Path]:
    """Resolve every file; if several are missing, one error lists them all (one trip to the browser)."""
    search = [Path(d) for d in extra_dirs] + _folders(roots, subfolder)
    download_dir = Path(roots[0]) / subfolder if roots else None
    paths, problems = [], []
    for weight in files:
        if find_local(weight.filename, search) is None:
            clean_partial_download(download_dir)  # a download will start: from scratch, not from a killed run
        try:
            paths.append(resolve(weight, search, download_dir, allow_download))
        except MissingWeightsError as error:
            clean_partial_download(download_dir)
            problems.append(str(error))
        except BaseException:  # interrupted (Ctrl-C, ComfyUI's cancel): leave nothing half-written behind
            clean_partial_download(download_dir)
            raise
    if problems:
        raise MissingWeightsError("\n".join(problems))
    return paths


def resolve_pickscore_dirs(roots: Sequence[Path | str], allow_download: bool = True,
                           model_dir: Path | None = None) -> tuple[Path, Path]:
    """Local PickScore model + processor folders, downloading the two hub snapshots when missing."""
    model_dir = model_dir or next((d for d in _folders(roots, "PickScore_v1")
                                   if (d / "config.json").is_file() and d.name == "PickScore_v1"), None)
    target = Path(roots[0]) / "PickScore_v1" if roots else None
    if model_dir is None:
        model_dir = _snapshot(PICKSCORE_MODEL_REPO, target, ["config.json"], allow_download, weights=True)
    processor_dir = model_dir / "processor"
    if not (processor_dir / "preprocessor_config.json").is_file():
        if (model_dir / "preprocessor_config.json").is_file() and (model_dir / "tokenizer_config.json").is_file():
            processor_dir = model_dir
        else:
            processor_dir = _snapshot(PICKSCORE_PROCESSOR_REPO, processor_dir, ["preprocessor_config.json"],
                                      allow_download, weights=False)
    return model_dir, processor_dir


def _snapshot(repo: str, target: Path | None, must_have: list[str], allow_download: bool, weights: bool) -> Path:
    what = "config.json and model.safetensors" if weights else "tokenizer and preprocessor json/txt files"
    instruction = (f"Download the files of https://huggingface.co/{repo} ({what}) "
                   f"into {target or 'models/fk_rewards/PickScore_v1'}")
    if target is None or not allow_download or offline():
        why = "no reward folder" if target is None else "downloads are off" if not allow_download else "offline"
        raise MissingWeightsError(f"PickScore files not found ({why}). {instruction}.")
    try:
        from huggingface_hub import HfApi, snapshot_download

        print(f"[FK rewards] downloading {repo} -> {target}", flush=True)
        if weights:
            names = HfApi().list_repo_files(repo)
            chosen = "model.safetensors" if "model.safetensors" in names else "pytorch_model.bin"
            patterns = ["config.json", chosen]
        else:
            patterns = ["*.json", "*.txt"]
        clean_partial_download(target)
        snapshot_download(repo, local_dir=str(target), allow_patterns=patterns)
    except BaseException as error:  # noqa: BLE001 - every failure ends in the same instruction
        clean_partial_download(target)
        if not isinstance(error, Exception):  # interrupted: cleaned up, let the interruption through
            raise
        raise MissingWeightsError(
            f"PickScore download failed ({type(error).__name__}: {error}). {instruction}."
        ) from None
    missing = [name for name in must_have if not (target / name).is_file()]
    if missing:
        raise MissingWeightsError(f"download of {repo} did not produce {missing}. {instruction}.")
    return target


def build_reward(name: str, roots: Sequence[Path | str], device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, weights_file: str | Path | None = None,
                 allow_download: bool = True, clip_architecture: str = "ViT-L-14",
                 clip_pretrained: str = "openai", target: float | None = None,
                 color: str = "#ff8800") -> Reward:
    """Build any catalogued reward. ``roots`` are the reward model folders (searched in order; the first one
    receives downloads). ``weights_file`` overrides the default main file (its folder is searched first for
    companion files such as med_config.json)."""
    spec(name)
    if name == "sharpness":
        return classic.Sharpness()
    if name == "saturation":
        return classic.Saturation()
    if name == "colorfulness":
        return classic.Colorfulness()
    if name == "brightness":
        return classic.BrightnessTarget(0.5 if target is None else target)
    if name == "contrast":
        return classic.ContrastTarget(0.25 if target is None else target)
    if name == "target color":
        return classic.TargetColor(color)
    if name == "JPEG compressibility":
        return classic.JpegCompressibility()

    chosen = Path(weights_file) if weights_file else None
    if chosen is not None and not chosen.exists():
        raise MissingWeightsError(f"weights file {chosen} does not exist")
    extra = [chosen.parent] if chosen is not None else []
    if name == "ImageReward":
        from .imagereward import load_imagereward

        checkpoint_file, med_file, vocab_file = IMAGEREWARD_FILES
        # A vocab.txt sitting right next to the checkpoint is accepted as well as bert-base-uncased/vocab.txt.
        flat_vocab = find_local("vocab.txt", extra + _folders(roots, "ImageReward"))
        needed = ([] if chosen else [checkpoint_file]) + [med_file] + ([] if flat_vocab else [vocab_file])
        found = dict(zip([w.filename for w in needed],
                         _resolve_all(needed, roots, "ImageReward", allow_download, extra), strict=True))
        return load_imagereward(chosen or found[checkpoint_file.filename], found[med_file.filename],
                                flat_vocab or found[vocab_file.filename], device=device, dtype=dtype)
    if name == "HPSv2.1":
        from .clip_rewards import load_hpsv2

        checkpoint = chosen or _resolve_all(HPS_FILES, roots, "HPSv2", allow_download)[0]
        return load_hpsv2(checkpoint, device=device, dtype=dtype)
    if name == "LAION aesthetic":
        from .clip_rewards import load_laion_aesthetic

        head = chosen or _resolve_all(AESTHETIC_FILES, roots, "aesthetic", allow_download)[0]
        with _cleaned_on_failure(_cache_dir(roots)):
            return load_laion_aesthetic(head, clip_pretrained, device=device, dtype=dtype,
                                        cache_dir=_cache_dir(roots), arch=clip_architecture)
    if name == "CLIP score":
        from .clip_rewards import load_clip_score

        # OpenAI weights loaded from a file need a "-quickgelu" architecture name (a tag would imply it).
        with _cleaned_on_failure(_cache_dir(roots)):
            return load_clip_score(clip_architecture, chosen or clip_pretrained, device=device, dtype=dtype,
                                   cache_dir=_cache_dir(roots))
    if name == "PickScore":
        from .pickscore import load_pickscore

        model_dir = None
        if chosen is not None:
            model_dir = chosen if chosen.is_dir() else chosen.parent
        model_dir, processor_dir = resolve_pickscore_dirs(roots, allow_download, model_dir)
        return load_pickscore(model_dir, processor_dir, device=device, dtype=dtype)
    raise AssertionError(f"catalogued reward {name!r} has no builder")  # pragma: no cover


@contextmanager
def _cleaned_on_failure(folder: Path | None):
    """open_clip downloads into its hub cache under ``folder``: a failed or interrupted fetch leaves nothing."""
    try:
        yield
    except BaseException:
        clean_partial_download(folder)
        raise


def _cache_dir(roots: Sequence[Path | str]) -> Path | None:
    return Path(roots[0]) / "open_clip" if roots else None
