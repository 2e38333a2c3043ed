"""The list of rewards a user can pick, where their weights live, and one function that builds any of them.

Folder layout under a reward root (ComfyUI: ``models/fk_rewards``)::

    ImageReward/ImageReward.pt, ImageReward/med_config.json, ImageReward/bert-base-uncased/vocab.txt
    PickScore_v1/{config.json, model.safetensors}, PickScore_v1/processor/{tokenizer + preprocessor files}
    HPSv2/HPS_v2.1_compressed.pt
    aesthetic/sac+logos+ava1-l14-linearMSE.pth
    open_clip/  (open_clip's download cache for CLIP score and the aesthetic predictor's CLIP)
    HPSv3/HPSv3.safetensors, HPSv3/Qwen2-VL-7B-Instruct/{config, tokenizer, preprocessor, chat template files}
    vlm/<model>/  (a Qwen2-VL / Qwen2.5-VL / Qwen3-VL instruct snapshot, default Qwen2.5-VL-3B-Instruct)
    owlv2/<model>/  (an OWLv2 snapshot, default owlv2-base-patch16-ensemble)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from . import classic
from .base import Reward
from .weights import MissingWeightsError, WeightFile, find_local, offline, resolve


@dataclass(frozen=True)
class RewardSpec:
    name: str
    learned: bool  # has weights: loaded once, handed to the host's memory manager
    bf16: bool = False  # half precision must be bfloat16 (Qwen language models overflow in float16)
    # The settings this reward reads besides reward/weights/prompt/device/precision: hosts show only these
    # (ComfyUI's FK Reward Loader lists them under the chosen reward). The one place this is written down.
    settings: tuple[str, ...] = ()


CLIP_SETTINGS = ("clip_architecture", "clip_pretrained")
# Every setting some reward reads, in the order a host shows them.
SETTING_NAMES = ("clip_architecture", "clip_pretrained", "target", "color", "question", "objects", "judge_model")


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

HPSV3_FILES = (WeightFile("HPSv3.safetensors", hf_repo="MizzenAI/HPSv3"),)
HPSV3_BASE_REPO = "Qwen/Qwen2-VL-7B-Instruct"  # config + tokenizer files only: every weight is in HPSv3.safetensors
VLM_DEFAULT_REPO = "Qwen/Qwen2.5-VL-3B-Instruct"
DETECTOR_DEFAULT_REPO = "google/owlv2-base-patch16-ensemble"
CONFIG_FILES = ["*.json", "*.txt", "*.jinja"]  # a transformers snapshot without its weights
MODEL_FILES = CONFIG_FILES + ["*.safetensors"]

VLM_JUDGE = "VLM judge (Qwen-VL)"
DETECTOR = "object counts (OWLv2)"
SPECS: dict[str, RewardSpec] = {spec.name: spec for spec in (
    RewardSpec("ImageReward", True),
    RewardSpec("PickScore", True),
    RewardSpec("HPSv2.1", True),
    RewardSpec("HPSv3", True, bf16=True),
    RewardSpec(VLM_JUDGE, True, bf16=True, settings=("question", "judge_model")),
    RewardSpec(DETECTOR, True, settings=("objects", "judge_model")),
    RewardSpec("LAION aesthetic", True, settings=CLIP_SETTINGS),
    RewardSpec("CLIP score", True, settings=CLIP_SETTINGS),
    RewardSpec("sharpness", False),
    RewardSpec("saturation", False),
    RewardSpec("colorfulness", False),
    RewardSpec("brightness", False, settings=("target",)),
    RewardSpec("contrast", False, settings=("target",)),
    RewardSpec("target color", False, settings=("color",)),
    RewardSpec("JPEG compressibility", False),
)}


def reward_names() -> list[str]:
    return list(SPECS)


def rewards_reading(setting: str) -> tuple[str, ...]:
    """The rewards that read ``setting`` (e.g. judge_model: the VLM judge and the detector)."""
    return tuple(name for name, entry in SPECS.items() if setting in entry.settings)


def spec(name: str) -> RewardSpec:
    if name not in SPECS:
        raise ValueError(f"unknown reward {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


def _folders(roots: Sequence[Path | str], subfolder: str) -> list[Path]:
    dirs = [Path(r) / subfolder for r in roots] if subfolder else []
    return dirs + [Path(r) for r in roots]


def clean_partial_download(folder: Path | None) -> None:
    """Remove what an unfinished download leaves in ``folder`` or any folder below it: the hub's
    ``.cache/huggingface`` (locks, ``.incomplete`` files, metadata; a file downloaded into a sub-folder such as
    ``ImageReward/bert-base-uncased`` keeps it there), hub-cache ``.lock``/``.incomplete`` files (open_clip's cache),
    this pack's own ``.part`` files, then every folder left empty (``aesthetic/`` made for a download that never
    came), ``folder`` included. Finished weight files are never touched."""
    if folder is None or not Path(folder).is_dir():
        return
    folder = Path(folder)
    for cache in sorted(folder.rglob(".cache"), key=lambda p: -len(p.parts)):
        if (cache / "huggingface").is_dir():
            shutil.rmtree(cache / "huggingface")
    for pattern in ("**/*.lock", "**/*.incomplete", "**/*.part"):
        for leftover in folder.glob(pattern):
            if leftover.is_file():
                leftover.unlink()
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [folder]:
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()


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
        model_dir = download_snapshot(PICKSCORE_MODEL_REPO, target, _pickscore_weights, ["config.json"],
                                      allow_download, "PickScore", "models/fk_rewards/PickScore_v1")
    processor_dir = model_dir / "processor"
    if not (processor_dir / "preprocessor_config.json").is_file():
        if (model_dir / "preprocessor_config.json").is_file() and (model_dir / "tokenizer_config.json").is_file():
            processor_dir = model_dir
        else:
            processor_dir = download_snapshot(PICKSCORE_PROCESSOR_REPO, processor_dir, ["*.json", "*.txt"],
                                              ["preprocessor_config.json"], allow_download, "PickScore")
    return model_dir, processor_dir


def _pickscore_weights() -> list[str]:
    """The PickScore repository's config and ONE weights file (safetensors when it has them)."""
    from huggingface_hub import HfApi

    names = HfApi().list_repo_files(PICKSCORE_MODEL_REPO)
    return ["config.json", "model.safetensors" if "model.safetensors" in names else "pytorch_model.bin"]


def download_snapshot(repo: str, target: Path | None, patterns: list[str] | Callable[[], list[str]],
                      must_have: Sequence[str], allow_download: bool, label: str,
                      shown_target: str | None = None) -> Path:
    """The one download routine: the files of hub ``repo`` matching ``patterns`` (a list, or a function that
    lists them once online) into ``target``, from scratch; whatever goes wrong ends in one instruction to the
    user naming the repository, the files and the folder, and leaves no partial download behind."""
    listed = ", ".join(patterns) if isinstance(patterns, list) else "config.json and the model weights"
    instruction = (f"Download {listed} of https://huggingface.co/{repo} into "
                   f"{target or shown_target or 'models/fk_rewards'}")
    if target is None or not allow_download or offline():
        why = "no reward folder" if target is None else "downloads are off" if not allow_download else \
            "offline mode (HF_HUB_OFFLINE=1)"
        raise MissingWeightsError(f"{label} files not found ({why}; needed: {', '.join(must_have)}). "
                                  f"{instruction}.")
    try:
        from huggingface_hub import snapshot_download

        print(f"[FK rewards] downloading {repo} -> {target}", flush=True)
        clean_partial_download(target)  # from scratch, not from a killed run
        snapshot_download(repo, local_dir=str(target), allow_patterns=patterns if isinstance(patterns, list)
                          else patterns())
    except BaseException as error:  # noqa: BLE001 - network, auth, disk: all end in the same instruction to the user
        clean_partial_download(target)
        if not isinstance(error, Exception):  # interrupted: cleaned up, let the interruption through
            raise
        raise MissingWeightsError(f"{label} download failed ({type(error).__name__}: {error}). {instruction}.") \
            from None
    missing = [need for need in must_have if not (Path(target) / need).is_file()]
    if missing:
        raise MissingWeightsError(f"download of {repo} did not produce {missing}. {instruction}.")
    return Path(target)


def model_folder(roots: Sequence[Path | str], subfolder: str, repo: str, allow_download: bool,
                 patterns: list[str], must_have: Sequence[str], label: str) -> Path:
    """A transformers snapshot ``<root>/<subfolder>/<repo name>``: found in any root, else downloaded (only the
    files matching ``patterns``) into the first root."""
    name = repo.rstrip("/").split("/")[-1]
    for root in roots:
        candidate = Path(root) / subfolder / name
        if all((candidate / need).is_file() for need in must_have):
            return candidate
    target = Path(roots[0]) / subfolder / name if roots else None
    return download_snapshot(repo, target, patterns, must_have, allow_download, label,
                             f"models/fk_rewards/{subfolder}/{name}")


def _chosen_folder(chosen: Path | None, judge_model: str | None) -> Path | None:
    """A weights file picked in the node (e.g. one safetensors shard) stands for the model folder holding it;
    a ``judge_model`` that is the absolute path of an existing folder is used as it is (otherwise it names a hub
    repository; hosts confine it first, e.g. with :func:`fk_core.messages.model_source_problem`)."""
    if chosen is not None:
        return chosen if chosen.is_dir() else chosen.parent
    if judge_model and Path(judge_model).is_absolute() and Path(judge_model).is_dir():
        return Path(judge_model)  # a relative name is a hub id, never a folder under the working directory
    return None


@dataclass(frozen=True)
class BuildRequest:
    """What :func:`build_reward` was asked for, as every builder of the table sees it."""

    roots: Sequence[Path | str]
    device: str | torch.device
    dtype: torch.dtype
    chosen: Path | None  # a weights file picked in the node (replaces the default main file)
    allow_download: bool
    clip_architecture: str
    clip_pretrained: str
    target: float | None
    color: str
    judge_model: str | None

    @property
    def extra(self) -> list[Path]:
        """The chosen file's folder, searched first for companion files (e.g. med_config.json)."""
        return [self.chosen.parent] if self.chosen is not None else []

    def files(self, files, subfolder: str) -> list[Path]:
        return _resolve_all(files, self.roots, subfolder, self.allow_download, self.extra)


def _imagereward(req: BuildRequest) -> Reward:
    from .imagereward import load_imagereward

    checkpoint_file, med_file, vocab_file = IMAGEREWARD_FILES
    # A vocab.txt sitting right next to the checkpoint is accepted as well as bert-base-uncased/vocab.txt.
    flat_vocab = find_local("vocab.txt", req.extra + _folders(req.roots, "ImageReward"))
    needed = ([] if req.chosen else [checkpoint_file]) + [med_file] + ([] if flat_vocab else [vocab_file])
    found = dict(zip([w.filename for w in needed], req.files(needed, "ImageReward"), strict=True))
    return load_imagereward(req.chosen or found[checkpoint_file.filename], found[med_file.filename],
                            flat_vocab or found[vocab_file.filename], device=req.device, dtype=req.dtype)


def _hpsv2(req: BuildRequest) -> Reward:
    from .clip_rewards import load_hpsv2

    return load_hpsv2(req.chosen or req.files(HPS_FILES, "HPSv2")[0], device=req.device, dtype=req.dtype)


def _aesthetic(req: BuildRequest) -> Reward:
    from .clip_rewards import load_laion_aesthetic

    head = req.chosen or req.files(AESTHETIC_FILES, "aesthetic")[0]
    with _cleaned_on_failure(_cache_dir(req.roots)):
        return load_laion_aesthetic(head, req.clip_pretrained, device=req.device, dtype=req.dtype,
                                    cache_dir=_cache_dir(req.roots), arch=req.clip_architecture)


def _clip_score(req: BuildRequest) -> Reward:
    from .clip_rewards import load_clip_score

    # OpenAI weights loaded from a file need a "-quickgelu" architecture name (a tag would imply it).
    with _cleaned_on_failure(_cache_dir(req.roots)):
        return load_clip_score(req.clip_architecture, req.chosen or req.clip_pretrained, device=req.device,
                               dtype=req.dtype, cache_dir=_cache_dir(req.roots))


def _hpsv3(req: BuildRequest) -> Reward:
    from .hpsv3 import load_hpsv3

    checkpoint = req.chosen or req.files(HPSV3_FILES, "HPSv3")[0]
    base = next((d / "Qwen2-VL-7B-Instruct" for d in [checkpoint.parent] + _folders(req.roots, "HPSv3")
                 if (d / "Qwen2-VL-7B-Instruct" / "config.json").is_file()), None)
    base = base or model_folder(req.roots, "HPSv3", HPSV3_BASE_REPO, req.allow_download, CONFIG_FILES,
                                ["config.json", "preprocessor_config.json"], "HPSv3's Qwen2-VL-7B-Instruct")
    return load_hpsv3(checkpoint, base, device=req.device, dtype=req.dtype)


def _snapshot_folder(req: BuildRequest, subfolder: str, default_repo: str, label: str) -> Path:
    return _chosen_folder(req.chosen, req.judge_model) or model_folder(
        req.roots, subfolder, req.judge_model or default_repo, req.allow_download, MODEL_FILES,
        ["config.json", "preprocessor_config.json"], label)


def _vlm_judge(req: BuildRequest) -> Reward:
    from .vlm_judge import load_vqa_judge

    folder = _snapshot_folder(req, "vlm", VLM_DEFAULT_REPO, "VLM judge")
    return load_vqa_judge(folder, device=req.device, dtype=req.dtype)


def _detector(req: BuildRequest) -> Reward:
    from .detector import load_object_detector

    folder = _snapshot_folder(req, "owlv2", DETECTOR_DEFAULT_REPO, "OWLv2 detector")
    return load_object_detector(folder, device=req.device, dtype=req.dtype)


def _pickscore(req: BuildRequest) -> Reward:
    from .pickscore import load_pickscore

    model_dir = _chosen_folder(req.chosen, None)
    model_dir, processor_dir = resolve_pickscore_dirs(req.roots, req.allow_download, model_dir)
    return load_pickscore(model_dir, processor_dir, device=req.device, dtype=req.dtype)


# name -> builder. Pixel statistics need nothing but their own settings; learned rewards find (or download)
# their files under the reward roots first.
BUILDERS: dict[str, Callable[[BuildRequest], Reward]] = {
    "ImageReward": _imagereward,
    "PickScore": _pickscore,
    "HPSv2.1": _hpsv2,
    "HPSv3": _hpsv3,
    VLM_JUDGE: _vlm_judge,
    DETECTOR: _detector,
    "LAION aesthetic": _aesthetic,
    "CLIP score": _clip_score,
    "sharpness": lambda req: classic.Sharpness(),
    "saturation": lambda req: classic.Saturation(),
    "colorfulness": lambda req: classic.Colorfulness(),
    "brightness": lambda req: classic.BrightnessTarget(0.5 if req.target is None else req.target),
    "contrast": lambda req: classic.ContrastTarget(0.25 if req.target is None else req.target),
    "target color": lambda req: classic.TargetColor(req.color),
    "JPEG compressibility": lambda req: classic.JpegCompressibility(),
}


def build_reward(name: str, roots: Sequence[Path | str], *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, weights_file: str | Path | None = None,
                 allow_download: bool = True, clip_architecture: str = "ViT-L-14",
                 clip_pretrained: str = "openai", target: float | None = None,
                 color: str = "#ff8800", judge_model: str | None = None) -> Reward:
    """Build any catalogued reward. ``roots`` are the reward model folders (searched in order; the first one
    receives downloads). ``weights_file`` overrides the default main file (its folder is searched first for
    companion files such as med_config.json). ``judge_model``: the hub repository (or a local folder) of the VLM
    judge or the detector (default Qwen/Qwen2.5-VL-3B-Instruct, google/owlv2-base-patch16-ensemble)."""
    learned = spec(name).learned
    chosen = Path(weights_file) if weights_file and learned else None
    if chosen is not None and not chosen.exists():
        raise MissingWeightsError(f"weights file {chosen} does not exist")
    return BUILDERS[name](BuildRequest(roots, device, dtype, chosen, allow_download, clip_architecture,
                                       clip_pretrained, target, color, judge_model))


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
