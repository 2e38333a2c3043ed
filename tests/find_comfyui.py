"""Locate a ComfyUI host folder; print it (exit 0) or print why not (exit 1).

Order: $COMFYUI_PATH; the pack's grandparent when the pack sits in ComfyUI/custom_nodes/; comfy-cli's default
workspace ~/comfy/ComfyUI. A host is a folder with main.py, nodes.py and the comfy/ package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

PACK = Path(__file__).resolve().parents[1]


def _is_host(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "nodes.py").is_file() and (path / "comfy").is_dir()


def find_comfyui() -> tuple[Optional[Path], str]:
    """(host folder, "") or (None, the reason none was found)."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser()
        return (path, "") if _is_host(path) else (None, f"COMFYUI_PATH={env} is not a ComfyUI folder")
    if PACK.parent.name == "custom_nodes" and _is_host(PACK.parent.parent):
        return PACK.parent.parent, ""
    default = Path.home() / "comfy" / "ComfyUI"
    if _is_host(default):
        return default, ""
    return None, ("no ComfyUI host: set COMFYUI_PATH, put this pack in ComfyUI/custom_nodes/, "
                  f"or install ComfyUI at {default}")


if __name__ == "__main__":
    host, why = find_comfyui()
    print(host if host else why)
    sys.exit(0 if host else 1)
