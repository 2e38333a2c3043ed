"""Finding reward weight files: local folders first, then the official download location.

Host-agnostic: the ComfyUI adapter passes its registered model folders in ``search_dirs``.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


class MissingWeightsError(FileNotFoundError):
    """A weights file is not on disk and could not be downloaded. The message says what to put where."""


class BadWeightsError(ValueError):
    """A weights file exists but is not the expected model (wrong file, truncated download...)."""


@dataclass(frozen=True)
class WeightFile:
    """One file a reward needs: where it is published and what the user should call it locally."""

    filename: str                  # name on disk, relative to the reward's folder
    hf_repo: str | None = None     # Hugging Face repo id (official location), if published there
    hf_filename: str | None = None  # path inside that repo (defaults to filename)
    url: str | None = None         # direct URL when not on the hub (e.g. GitHub release/raw)

    @property
    def source(self) -> str:
        if self.hf_repo:
            return f"https://huggingface.co/{self.hf_repo}/resolve/main/{self.hf_filename or self.filename}"
        return self.url or "(no public source)"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def find_local(filename: str, search_dirs: Iterable[Path | str]) -> Path | None:
    for folder in search_dirs:
        candidate = Path(folder) / filename
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def resolve(weight: WeightFile, search_dirs: Sequence[Path | str], download_dir: Path | str | None,
            allow_download: bool = True) -> Path:
    """Return a local path for ``weight``: found in ``search_dirs``, or downloaded into ``download_dir``.

    Raises MissingWeightsError naming the exact file, folder and source when neither works.
    """
    found = find_local(weight.filename, search_dirs)
    if found is not None:
        return found
    target_dir = Path(download_dir) if download_dir is not None else (Path(search_dirs[0]) if search_dirs else None)
    reason = None
    if target_dir is None:
        reason = "no folder to download into"
    elif not allow_download:
        reason = "downloads are turned off"
    elif offline():
        reason = "offline mode (HF_HUB_OFFLINE=1)"
    else:
        try:
            return _download(weight, target_dir)
        except Exception as error:  # noqa: BLE001 - network, auth, disk: all end in the same instruction to the user
            reason = f"download failed: {type(error).__name__}: {error}"
    where = target_dir if target_dir is not None else "your reward model folder"
    raise MissingWeightsError(
        f"Reward weights '{weight.filename}' not found. Put the file at {Path(where) / weight.filename} "
        f"(download it from {weight.source}). Reason it was not fetched automatically: {reason}. "
        f"Folders searched: {', '.join(str(d) for d in search_dirs) or '(none)'}."
    )


def _download(weight: WeightFile, target_dir: Path) -> Path:
    target = target_dir / weight.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"[FK rewards] downloading {weight.source} -> {target}", flush=True)
    if weight.hf_repo:
        from huggingface_hub import hf_hub_download  # shows a tqdm progress bar in the console

        path = Path(hf_hub_download(repo_id=weight.hf_repo, filename=weight.hf_filename or weight.filename,
                                    local_dir=str(target.parent)))
        if path.resolve() != target.resolve():
            shutil.move(str(path), str(target))
        return target
    if not weight.url:
        raise RuntimeError("no download location known")
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(weight.url, timeout=60) as response, open(partial, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, last_report = 0, -1
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            percent = int(100 * done / total) if total else -1
            if percent // 10 != last_report // 10:
                print(f"[FK rewards] {weight.filename}: {done >> 20} MiB" + (f" ({percent}%)" if total else ""),
                      flush=True)
                last_report = percent
    partial.replace(target)
    return target


def load_state_dict_file(path: str | Path) -> dict:
    """Load a torch checkpoint safely (tensors only) and unwrap a {'state_dict': ...} container."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # noqa: BLE001 - any parse failure means "wrong file" to the user
            raise BadWeightsError(f"{path} is not a readable safetensors file: {error}") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle errors, truncated zip, wrong format
        raise BadWeightsError(f"{path} is not a readable PyTorch checkpoint: {type(error).__name__}: {error}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadWeightsError(f"{path} does not contain a state dict of tensors")
    return state
