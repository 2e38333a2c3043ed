"""Workflows saved by earlier versions of the pack, loaded in a real front end (web/fk_migrate.js).

Fixtures: every version of every example workflow in git history (tests/fixtures/saved_workflows, with the
layout each FK node was saved in) and a hand-made save of every FK node at every earlier layout. In each front
end (the host's own and every extra one, classic canvas and Nodes 2.0) each loads with every FK widget holding
its saved value by name (a widget its version lacked: the value that does what that version did), the front
end's own prompt (graphToPrompt) carries those values, a notice says what was mapped, and the first release's
SD1.5 example, queued as the front end builds it, runs.
"""

from __future__ import annotations

import json
import math

import pytest
from test_web_browser import CLASSIC, fe_server, mode, ui  # noqa: F401  (fixtures: one page per front end/mode)
from test_web_browser import load_workflow as open_in_canvas
from test_widget_layouts import (
    MANIFEST,
    SAVED,
    TABLE,
    first_release_workflows,
    host_forms,
    live_layout,
    saved_layouts,
)
from workflow_api import load_workflow, workflow_paths

pytestmark = [pytest.mark.host, pytest.mark.browser]

# Distinct from every default, valid on every host: a value mapped to the wrong widget shows.
HAND_MADE_VALUES = {
    "FKParticleSampler": {"seed": 123, "control_after_generate": "fixed", "steps": 9, "cfg": 5.5,
                          "sampler_name": "dpmpp_2m_sde", "scheduler": "karras", "denoise": 0.9, "particles": 3,
                          "particle_chunk": 1, "preview_decoder": "TAESD"},
    "FKSampler": {"particles": 5, "sampler_name": "dpmpp_sde", "particle_chunk": 2,
                  "return": "all particles (sorted by reward)", "preview_decoder": "full VAE"},
    "FKPotentialSelector": {"potential": "diff", "lambda": 7.5, "every_n_steps": 3, "window_start": 0.1,
                            "window_end": 0.9, "ess_threshold": 0.4, "resampling": "residual",
                            "output": "draw from final weights", "lambda_mode": "adaptive", "strength": 0.3},
    "FKRewardLoader": {"reward": "colorfulness", "weights": "auto (default file, downloaded if missing)",
                       "device": "cpu", "precision": "fp32", "prompt": "a fox", "clip_architecture": "ViT-L-14",
                       "clip_pretrained": "openai", "target": 0.7, "color": "#00ff00",
                       "question": "Is this {prompt}?", "objects": "1 fox", "judge_model": ""},
    "FKRewardCombine": {"weight_a": 1.5, "weight_b": 0.5, "weight_c": 0.25, "weight_d": 2.0},
    "FKTraceCharts": {"width": 640, "height": 320, "highlight": 2},
}


OBJECT_INFO: dict = {}  # the server's node definitions: which layout is live depends on the host


def live_names(node_type: str) -> list[str]:
    """The live layout on this host (FK Reward Loader: grouped on hosts with DynamicCombo, else flat)."""
    entry = TABLE[node_type]
    return live_layout(entry, OBJECT_INFO[node_type]) if node_type in OBJECT_INFO else entry["layouts"][-1]["widgets"]


def hand_made_saves() -> list[tuple[str, dict, dict]]:
    """(label, workflow, {node id: layout names}): one node per earlier (flat) layout of every FK node."""
    saves = []
    for node_type, entry in TABLE.items():
        for index, layout in enumerate(entry["layouts"]):
            if layout["widgets"] == live_names(node_type) or "grouped" in layout:
                continue
            values = [HAND_MADE_VALUES[node_type][name] for name in layout["widgets"]]
            node = {"id": 1, "type": node_type, "pos": [100, 100], "size": [400, 300], "flags": {}, "order": 0,
                    "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": values}
            workflow = {"last_node_id": 1, "last_link_id": 0, "nodes": [node], "links": [], "groups": [],
                        "config": {}, "extra": {}, "version": 0.4}
            saves.append((f"{node_type}@{layout['version']}#{index}", workflow, {"1": layout["widgets"]}))
    return saves


def expected_by_name(node_type: str, names: list[str], values: list) -> dict:
    entry = TABLE[node_type]
    live = live_names(node_type)
    named = dict(zip(names, values))
    expected = {name: named[name] for name in live if name in named}  # grouped ones: test_web_loader.py
    expected.update({name: value for name, value in entry["absent_means"].items() if name not in named})
    expected.pop("control_after_generate", None)
    return expected


def same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


# Read once test_web_browser.load_workflow has waited for the canvas to show the file (the front end routes tabs
# by workflow id, and the historical files share ids: it can switch to the previously loaded file late). Says
# wrongGraph when the canvas switched while reading.
READ_LOADED = """async (wf) => {
    const want = wf.nodes.map((n) => `${n.id}:${n.type}`).sort().join(",");
    const shown = () => window.app.graph._nodes.map((n) => `${n.id}:${n.type}`).sort().join(",");
    const widgets = {};
    for (const node of window.app.graph._nodes) {
        widgets[String(node.id)] = Object.fromEntries((node.widgets || []).map((w) => [w.name, w.value]));
    }
    const prompt = (await window.app.graphToPrompt()).output;
    if (shown() !== want) return {wrongGraph: shown()};
    return {widgets, prompt, notices: window.fkMigrationNotices};
}"""


def load_and_read(page, workflow: dict) -> dict:
    """Load ``workflow`` and read its widgets, the front end's prompt and the migration notices of this load."""
    for _attempt in range(3):  # a switch to the previous file mid-read: load this one again
        open_in_canvas(page, workflow)
        got = page.evaluate(READ_LOADED, workflow)
        if "wrongGraph" not in got:
            return got
    raise AssertionError(f"the canvas kept switching away from the workflow (it shows {got['wrongGraph']})")


def our_problems(browser) -> list[str]:
    return [e for e in browser.our_errors() if not e.startswith("console info")]  # the notice is logged too


def check_loaded(label: str, workflow: dict, layouts: dict, page) -> list[str]:
    """Problems (empty when every FK widget holds its value by name, in the widgets and in the prompt)."""
    got = load_and_read(page, workflow)
    problems = []
    types = {str(n["id"]): n for n in workflow["nodes"]}
    migrated = False
    for node_id, names in layouts.items():
        node = types[node_id]
        entry = TABLE[node["type"]]
        live = live_names(node["type"])
        # said when the mapping changed something: a reordered layout, or a widget set to what its version did;
        # not for the current version saved in another host's form (flat on 0.3.64, grouped on 0.33+)
        other_host_form = names in host_forms(entry) and live in host_forms(entry)
        migrated |= not other_host_form and (live[:len(names)] != names
                                             or any(name not in names for name in entry["absent_means"]))
        for name, value in expected_by_name(node["type"], names, node["widgets_values"]).items():
            shown = got["widgets"].get(node_id, {}).get(name)
            if not same(shown, value):
                problems.append(f"{label} node {node_id} {node['type']}.{name}: widget {shown!r}, saved {value!r}")
            sent = got["prompt"].get(node_id, {}).get("inputs", {}).get(name, value)
            if not isinstance(sent, list) and not same(sent, value):  # a linked input is [node, slot]
                problems.append(f"{label} node {node_id} {node['type']}.{name}: prompt {sent!r}, saved {value!r}")
    if migrated and len(got["notices"]) != 1:
        problems.append(f"{label}: {len(got['notices'])} notices for a migrated workflow (want one)")
    if not migrated and got["notices"]:
        problems.append(f"{label}: notice for a workflow of the live layout: {got['notices']}")
    return problems


@pytest.fixture
def page(browser, ui):  # noqa: F811
    browser.errors.clear()
    if not OBJECT_INFO:
        OBJECT_INFO.update(ui[1].object_info())
    return ui[0]


def test_every_saved_example_loads_with_its_values_by_name(browser, page):
    problems = []
    for entry in MANIFEST:
        workflow = json.loads((SAVED / entry["file"]).read_text())
        problems += check_loaded(entry["file"], workflow, saved_layouts(entry, workflow), page)
    assert not problems, "\n".join(problems[:40])
    assert not our_problems(browser), our_problems(browser)


def test_the_shipped_examples_open_without_a_notice(browser, page):
    """The examples are this version's own workflows: opened on either host (flat loader on 0.3.64, grouped on
    0.33+) they load as saved, and the artist is told nothing was updated only when nothing was."""
    for path in workflow_paths():
        got = load_and_read(page, load_workflow(path))
        assert got["notices"] == [], (path.name, got["notices"])


def test_hand_made_save_of_every_earlier_layout_loads_by_name(browser, page):
    problems = []
    for label, workflow, layouts in hand_made_saves():
        problems += check_loaded(label, workflow, layouts, page)
    assert not problems, "\n".join(problems)
    notice = load_and_read(page, hand_made_saves()[0][1])["notices"][0]
    assert "older version" in notice["summary"] and "#1" in notice["detail"], notice
    assert not our_problems(browser), our_problems(browser)


def test_the_first_release_sd15_example_runs_as_the_front_end_sends_it(browser, ui):  # noqa: F811
    page, server, mode_, _ = ui
    if mode_ != CLASSIC:
        pytest.skip("not applicable: one run per front end (the prompt is the same in both modes, checked above)")
    entry = next(e for e in first_release_workflows() if e["path"].endswith("fk_sd15.json"))
    workflow = json.loads((SAVED / entry["file"]).read_text())
    prompt = load_and_read(page, workflow)["prompt"]
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = server.ckpt_name
        elif node["class_type"] == "EmptyLatentImage":
            inputs.update(width=64, height=64)
        elif node["class_type"] == "FKParticleSampler":
            inputs.update(steps=3, particles=3)
        elif node["class_type"] == "FKRewardLoader":
            inputs.update(reward="colorfulness", device="cpu")
    selector = next(n["inputs"] for n in prompt.values() if n["class_type"] == "FKPotentialSelector")
    assert (selector["lambda_mode"], selector["lambda"]) == ("fixed", 10.0)
    result = server.run_prompt(prompt)
    assert result.status == "success", (result.error, server.log_tail())
