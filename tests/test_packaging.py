"""Packaging: registry metadata, requirements in step with pyproject, and a pack import that does no work."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_pyproject_dependencies_match_requirements_and_use_no_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements()
    for requirement in _requirements():
        assert "==" not in requirement, requirement
        assert not re.match(r"^(torch|torchvision|torchaudio)\b", requirement), "ComfyUI owns torch"


def test_registry_metadata():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, comfy = data["project"], data["tool"]["comfy"]
    assert "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"] and project["description"] and project["urls"]["Repository"]
    assert set(comfy) >= {"PublisherId", "DisplayName", "Icon"}


def test_importing_the_pack_is_light_and_offline():
    """ComfyUI imports the pack's root __init__.py; that alone must not import torch or touch the network."""
    code = (
        "import importlib.util, sys, socket\n"
        "def refuse(*a, **k): raise AssertionError('network access at import')\n"
        "socket.socket.connect = refuse\n"
        f"spec = importlib.util.spec_from_file_location('fk_pack', r'{ROOT / '__init__.py'}',"
        f" submodule_search_locations=[r'{ROOT}'])\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['fk_pack'] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert callable(module.comfy_entrypoint) and module.WEB_DIRECTORY == './web'\n"
        "assert 'torch' not in sys.modules, 'torch imported at pack import'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
