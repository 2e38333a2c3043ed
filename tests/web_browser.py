"""Helpers for the real-browser tests of the live view: headless Debian Chromium driven by Playwright.

No browser download is ever attempted: Playwright is pointed at the system Chromium (``FK_CHROMIUM`` or
``/usr/bin/chromium``). ``browser_unavailable()`` says in one sentence why the tests must skip.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
ARTIFACTS = PACK_DIR / "test-artifacts"

# Extra front ends to test next to the host's own: static folders of unpacked comfyui-frontend-package wheels
# (`pip download --no-deps comfyui-frontend-package==1.58.1`, unzip; scripts/setup-env.sh puts them here).
FRONTEND_ROOTS_ENV = "FK_FRONTEND_ROOTS"
DEFAULT_FRONTEND_GLOB = "~/.cache/fk-steering/frontends/*/comfyui_frontend_package/static"
VUE_NODES_SINCE = (1, 30)  # front ends before this have no "Nodes 2.0" (Comfy.VueNodes.Enabled) mode
HIDE_IN_PANEL_SINCE = (1, 49)  # the properties panel honours a widget's hideInPanel (not 1.45.15; 1.49.6 does)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("FK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def browser_unavailable() -> str | None:
    """None when a browser test can run, else the reason."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python 'playwright' package is not installed (pip install playwright; no browser needed)"
    if chromium_path() is None:
        return "no Chromium found (apt-get install -y chromium, or set FK_CHROMIUM)"
    return None


def extra_front_ends() -> tuple[list[Path], str]:
    """(static folders to test besides the host's own front end, where they were looked for).

    ``FK_FRONTEND_ROOTS`` (os.pathsep-separated) wins over the default folder; a listed folder without an
    index.html is kept, so its test fails with that reason instead of silently testing less."""
    listed = os.environ.get(FRONTEND_ROOTS_ENV)
    if listed:
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()], f"${FRONTEND_ROOTS_ENV}"
    pattern = os.path.expanduser(DEFAULT_FRONTEND_GLOB)
    return [Path(p) for p in sorted(glob.glob(pattern))], DEFAULT_FRONTEND_GLOB


def front_end_label(static: Path) -> str:
    """``1.58.1`` for .../1.58.1/comfyui_frontend_package/static; else the folder's path."""
    parts = Path(static).parts
    if len(parts) >= 3 and parts[-1] == "static" and parts[-2] == "comfyui_frontend_package":
        return parts[-3]
    return str(static)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version or "")[:3])


class BrowserSession:
    """One Chromium with a fresh empty profile; pages open on a ComfyUI server and record page errors."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.profile = tempfile.mkdtemp(prefix="fk-chromium-")
        self.context = self._pw.chromium.launch_persistent_context(
            self.profile, executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True,
            viewport={"width": 1500, "height": 1000})
        self.errors: list[str] = []  # page errors and our extension's console warnings

    def open_comfy(self, server, settings: dict | None = None) -> "object":
        """A page on the server's UI with the graph ready (first-run template dialog turned off).

        ``settings``: more ComfyUI settings stored before the page loads (e.g. ``Comfy.VueNodes.Enabled``)."""
        values = {"Comfy.TutorialCompleted": True, **(settings or {})}
        req = urllib.request.Request(server.url + "/settings", method="POST", data=json.dumps(values).encode())
        urllib.request.urlopen(req, timeout=10).read()
        page = self.context.new_page()
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.errors.append(f"pageerror: {err}"))
        page.goto(server.url, wait_until="domcontentloaded")
        page.wait_for_function("() => window.app && window.app.graph && window.comfyAPI", timeout=90_000)
        page.wait_for_function("() => document.querySelector('.graph-canvas-container') !== null",
                               timeout=30_000)
        return page

    def _on_console(self, msg) -> None:
        if "[fk_steering]" in msg.text:
            self.errors.append(f"console {msg.type}: {msg.text}")

    def our_errors(self) -> list[str]:
        """Errors and warnings that come from this pack (ComfyUI's own front end logs some unrelated ones offline).
        The pack's console.info lines are no errors: e.g. the migration notice a workflow saved in the other
        host's layout of a node gets (the examples are saved for every host; each has its own FK Reward Loader)."""
        return [e for e in self.errors if ("fk_" in e.lower() or "[fk_steering]" in e)
                and not e.startswith(("console info:", "console log:", "console debug:"))]

    def close(self) -> None:
        self.context.close()
        self._pw.stop()
        shutil.rmtree(self.profile, ignore_errors=True)


def screenshot(page_or_locator, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page_or_locator.screenshot(path=str(path))
    return path


def view_state(page, node_id: str) -> dict:
    """What the live view on node ``node_id`` shows, read from its DOM."""
    return page.evaluate(
        """(id) => {
            const node = window.app.graph.getNodeById(Number(id));
            const root = node && node.fkLiveView && node.fkLiveView.root;
            if (!root) return null;
            const chart = root.querySelector('.fk-live-chart');
            const stats = root.querySelector('.fk-live-stats');
            const lineage = root.querySelector('.fk-live-lineage');
            const detail = root.querySelector('.fk-live-detail');
            return {
                state: root.dataset.state,
                steps: Number(root.dataset.steps || 0),
                tiles: root.querySelectorAll('.fk-live-tile').length,
                tilesWithImage: root.querySelectorAll('.fk-live-tile.fk-has-image').length,
                dropped: root.querySelectorAll('.fk-live-tile.fk-dropped').length,
                copied: root.querySelectorAll('.fk-live-tile.fk-copied').length,
                chartPoints: Number(chart.dataset.points || 0),
                essPoints: Number(chart.dataset.essPoints || 0),
                resampleMarks: Number(chart.dataset.resamples || 0),
                events: Number(root.querySelector('.fk-live-events').dataset.count || 0),
                eventLines: [...root.querySelectorAll('.fk-live-event')].map((e) => e.textContent),
                lineageVisible: !lineage.closest('.fk-live-panel').hidden,
                selected: lineage.dataset.selected,
                detail: detail.hidden ? null : detail.textContent,
                status: root.querySelector('.fk-live-status').textContent,
                stats: !stats || stats.hidden ? null : stats.textContent,
                notes: [...root.querySelectorAll('.fk-live-note')].map((e) => e.textContent),
                // layout sizes in CSS px of the node (unscaled by the canvas zoom)
                nodeWidth: node.size[0],
                viewWidth: root.clientWidth,
                viewHeight: root.clientHeight,
                chartHeight: chart.clientHeight,
                lineageHeight: lineage.clientHeight,
                widgetWidth: node.widgets.find((w) => w.name === 'fk_live_view').width ?? null,
            };
        }""", str(node_id))


def wait_for_state(page, node_id: str, states: tuple[str, ...], timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = view_state(page, node_id)
        if last and last["state"] in states:
            return last
        time.sleep(0.2)
    raise TimeoutError(f"node {node_id}: live view never reached {states}; last seen {last}")
