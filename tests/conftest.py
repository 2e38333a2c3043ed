"""Shared pytest fixtures. Host-dependent fixtures skip with one clear reason when ComfyUI is absent.

Importing this file is cheap: ComfyUI and torch are only imported inside fixtures, so tests of the host-free
engine (fk_core) never pay for, or depend on, the host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # so test modules can `import comfy_host`
    sys.path.insert(0, str(TESTS_DIR))

import comfy_host  # noqa: E402

HOST_FIXTURE = "comfy_dir"  # every fixture that needs ComfyUI depends on this one


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a ComfyUI fixture `host` (before `-m` selects), so scripts/test.sh can run exactly
    those against each further host."""
    for item in items:
        if HOST_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.host)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With FK_STRICT_SKIPS=1 (CI), a host or browser test that skips fails instead: the host matrix must really run."""
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("FK_STRICT_SKIPS") == "1"
    if strict and report.skipped and not hasattr(report, "wasxfail") and (
            item.get_closest_marker("host") or item.get_closest_marker("browser")):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"host/browser test skipped while FK_STRICT_SKIPS=1 (CI): {reason}"


@pytest.fixture(scope="session")
def comfy_dir() -> Path:
    path, reason = comfy_host.locate_comfyui()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def comfy_nodes(comfy_dir, tmp_path_factory):
    """ComfyUI imported in-process on CPU (its ``nodes`` module); temp/output/input go to a temp dir."""
    return comfy_host.import_host(comfy_dir, tmp_path_factory.mktemp("comfy-host"))


@pytest.fixture(scope="session")
def fk_pack(comfy_nodes):
    """This pack, loaded through ComfyUI's own custom-node loader (the module object)."""
    return comfy_host.load_pack_in_process()


@pytest.fixture(scope="session")
def tiny_models(comfy_nodes):
    """Factory ``tiny_models(kind)`` -> cached tiny ModelPatcher; kind in ("eps", "v", "flow")."""
    cache = {}

    def make(kind: str = "eps"):
        if kind not in cache:
            cache[kind] = comfy_host.build_tiny_model(kind)
        return cache[kind]

    return make


@pytest.fixture(scope="session")
def tiny_vae(comfy_nodes):
    return comfy_host.build_tiny_vae()


@pytest.fixture
def oracle_model(tiny_models):
    """Factory ``oracle_model(kind, call_model=False)`` -> (patcher clone with oracle denoiser, CallCounter)."""

    def make(kind: str = "eps", call_model: bool = False):
        return comfy_host.install_oracle(tiny_models(kind), call_model=call_model)

    return make


@pytest.fixture
def mode_reward(tiny_vae):
    """FK_REWARD-compatible callable favouring the oracle's +1 mode (scores decoded images)."""
    return comfy_host.ModeReward(tiny_vae)


@pytest.fixture
def tiny_cond():
    """Factory ``tiny_cond(batch=1, seed=0)`` -> CONDITIONING for the tiny models."""
    return comfy_host.tiny_conditioning


THIN_CKPT_NAME = "fk_thin_sd15.safetensors"


@pytest.fixture(scope="session")
def comfy_server(comfy_dir, tmp_path_factory):
    """One real ComfyUI server per session (CPU) with this pack loaded and a thin SD1.5 checkpoint
    (``comfy_server.ckpt_name``) in its models dir. Everything lives in a temp base directory."""
    base = tmp_path_factory.mktemp("comfy-server")
    server = comfy_host.ComfyServer(comfy_dir, base)
    server.prepare()
    # Written in a subprocess-free way but without importing the host here: the writer needs comfy's classes,
    # so import the host in-process first (cheap if another fixture already did).
    comfy_host.import_host(comfy_dir, tmp_path_factory.mktemp("comfy-host-for-ckpt"))
    comfy_host.write_thin_sd15_checkpoint(server.checkpoints_dir / THIN_CKPT_NAME)
    server.ckpt_name = THIN_CKPT_NAME
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium session driven by Playwright; skips with one reason where either is missing."""
    import web_browser

    reason = web_browser.browser_unavailable()
    if reason:
        pytest.skip(reason)
    session = web_browser.BrowserSession()
    yield session
    session.close()
