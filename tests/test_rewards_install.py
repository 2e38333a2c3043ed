"""Install hygiene: installing requirements.txt into an environment that already has the modern stack
(torch, torchvision, transformers 5.x, timm >= 1.0, open_clip) must not change any installed version."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"
GUARDED = ("torch", "torchvision", "transformers", "timm", "open_clip_torch", "numpy", "huggingface_hub", "kornia")


def test_requirements_use_ranges_and_skip_imagereward():
    lines = [ln.split("#")[0].strip() for ln in REQUIREMENTS.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert not [ln for ln in lines if "==" in ln], "requirements.txt must use ranges, never =="
    names = {ln.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for ln in lines}
    assert not names & {"torch", "torchvision", "torchaudio"}, "ComfyUI owns torch; never list it"
    assert "image-reward" not in names and "hpsv2" not in names, "their pins break ComfyUI installs"


@pytest.mark.slow
def test_installing_requirements_changes_nothing(tmp_path):
    installed = {}
    for name in GUARDED:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here, so this env is not the reference stack")
    if not installed["transformers"].startswith("5."):
        pytest.skip(f"needs transformers 5.x in the test env, found {installed['transformers']}")
    report_file = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
         "--report", str(report_file), "-r", str(REQUIREMENTS)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, f"pip could not resolve requirements.txt:\n{run.stderr[-2000:]}"
    report = json.loads(report_file.read_text())
    planned = {item["metadata"]["name"]: item["metadata"]["version"] for item in report.get("install", [])}
    assert planned == {}, f"installing requirements.txt would install/upgrade/downgrade: {planned}"
