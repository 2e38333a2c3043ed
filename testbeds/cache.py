"""Where the learned test beds keep their trained weights, and the one way they write them.

``FK_TESTBED_CACHE`` or ``~/.cache/fk-steering/testbeds``: outside the repository, so a fresh clone (CI) reuses
what an earlier run trained on the same machine, and a missing cache only costs the training once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch


def cache_dir() -> Path:
    return Path(os.environ.get("FK_TESTBED_CACHE", Path.home() / ".cache" / "fk-steering" / "testbeds"))


def cached_state(file_name: str, train: Callable[[], dict], retrain: bool = False) -> tuple[dict, bool]:
    """(state, came from the cache): the cached state, or ``train()``'s (with ``training_seconds``) saved first."""
    path = cache_dir() / file_name
    if path.is_file() and not retrain:
        return torch.load(path, weights_only=True), True
    started = time.perf_counter()
    state = train()
    state["training_seconds"] = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # parallel test workers: write, then rename atomically
    torch.save(state, partial)
    os.replace(partial, path)
    return state, False
