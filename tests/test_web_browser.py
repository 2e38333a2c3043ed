"""The live view in a real browser: headless Chromium + Playwright against a real ComfyUI server on 127.0.0.1
with this pack and a thin SD1.5 checkpoint. The example workflow is loaded in the UI and queued from the UI.

Screenshots go to test-artifacts/ (gitignored). Skips only when Chromium/Playwright or the ComfyUI host is
missing (one reason each).
"""

from __future__ import annotations

import json

import pytest
import torch
import web_browser as wb
from fk_trace_fixtures import load_pack_file

from fk_core.charts import lineage_paths, reward_history
from fk_core.schedule import potential_steps

pytestmark = [pytest.mark.host, pytest.mark.browser]

WORKFLOW = wb.PACK_DIR / "workflows" / "fk_live_view.json"
STEPS, EVERY = 8, 2
EXPECTED_POTENTIAL_STEPS = len(potential_steps(STEPS, EVERY, 0.0, 1.0))


@pytest.fixture
def page(browser, comfy_server):
    browser.errors.clear()
    page = browser.open_comfy(comfy_server)
    yield page
    page.close()


def js_fmt(v) -> str:
    """Python twin of fmt() in web/fk_live.js."""
    if v is None or v != v or v in (float("inf"), float("-inf")):
        return "—"
    if v != 0 and (abs(v) < 0.01 or abs(v) >= 1000):
        mantissa, exponent = f"{v:.2e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    return f"{v:.3f}"


def load_example(page, server, *, steps=STEPS, particles=8, seed=7, lmbda=1000.0) -> str:
    """Load workflows/fk_live_view.json as a user would, shrink it for the CPU test; the FK node's id."""
    page.evaluate("(wf) => window.app.loadGraphData(wf)", json.loads(WORKFLOW.read_text()))
    return page.evaluate(
        """([ckpt, steps, particles, seed, lmbda, every]) => {
            const g = window.app.graph;
            const set = (node, name, value) => {
                const w = node.widgets.find((x) => x.name === name);
                if (!w) throw new Error(`${node.type} has no widget ${name}`);
                w.value = value;
            };
            const one = (type) => g.findNodesByType(type)[0];
            set(one("CheckpointLoaderSimple"), "ckpt_name", ckpt);
            const latent = one("EmptyLatentImage");
            set(latent, "width", 64);
            set(latent, "height", 64);
            const pot = one("FKPotentialSelector");
            set(pot, "lambda", lmbda);  // strong: the tiny model's small reward gaps still resample
            set(pot, "every_n_steps", every);
            const fk = one("FKParticleSampler");
            set(fk, "steps", steps);
            set(fk, "particles", particles);
            set(fk, "seed", seed);
            return String(fk.id);
        }""", [server.ckpt_name, steps, particles, seed, lmbda, EVERY])


def add_second_sampler(page, first_id: str, particles: int) -> str:
    """A second FK Particle Sampler fed by the same nodes (two FK nodes in one graph), own preview."""
    return page.evaluate(
        """([firstId, particles]) => {
            const g = window.app.graph;
            const a = g.getNodeById(Number(firstId));
            const b = window.LiteGraph.createNode("FKParticleSampler");
            g.add(b);
            b.pos = [a.pos[0] + a.size[0] + 500, a.pos[1]];
            a.inputs.forEach((input, i) => {
                if (input.link == null) return;
                const id = input.link;
                const link = g.getLink ? g.getLink(id) : (g.links.get ? g.links.get(id) : g.links[id]);
                g.getNodeById(link.origin_id).connect(link.origin_slot, b, i);
            });
            for (const w of a.widgets) {
                const twin = b.widgets.find((x) => x.name === w.name);
                if (twin && w.options?.serialize !== false) twin.value = w.value;
            }
            b.widgets.find((x) => x.name === "particles").value = particles;
            const preview = window.LiteGraph.createNode("PreviewImage");
            g.add(preview);
            preview.pos = [b.pos[0] + b.size[0] + 40, b.pos[1]];
            b.connect(1, preview, 0);
            return String(b.id);
        }""", [first_id, particles])


def show_all(page, scale: float, offset: tuple[float, float]) -> None:
    page.evaluate("""([s, o]) => { const ds = window.app.canvas.ds; ds.scale = s; ds.offset[0] = o[0];
                      ds.offset[1] = o[1]; window.app.canvas.setDirty(true, true); }""",
                  [scale, list(offset)])
    page.wait_for_timeout(400)


def queue(page) -> None:
    page.evaluate("() => window.app.queuePrompt(0, 1)")


def click_final_particle(page, node_id: str, particle: int) -> None:
    """A real mouse click on the lineage picture, on the row of final particle ``particle``."""
    x, y = page.evaluate(
        """([id, i]) => {
            const view = window.app.graph.getNodeById(Number(id)).fkLiveView;
            const rect = view.lineage.getBoundingClientRect();
            const dot = view.dots.find((d) => d.i === i);
            const sx = rect.width / view.lineage.clientWidth, sy = rect.height / view.lineage.clientHeight;
            return [rect.left + dot.x * sx - 2, rect.top + dot.y * sy];
        }""", [node_id, particle])
    page.mouse.click(x, y)
    page.wait_for_timeout(300)


def test_live_view_end_to_end(browser, page, comfy_server):
    """Two FK nodes run from the UI: each view gets its own N thumbnails, a chart point per potential step,
    the resampling events, and after the run a lineage view that answers a click."""
    first = load_example(page, comfy_server, particles=8)
    second = add_second_sampler(page, first, particles=4)
    show_all(page, 0.6, (-400, 20))
    wb.screenshot(page, "browser-00-loaded.png")
    idle = wb.view_state(page, first)
    assert idle["state"] == "idle" and idle["tiles"] == 0 and not idle["lineageVisible"]

    queue(page)
    running = wb.wait_for_state(page, first, ("running", "done"), timeout=300)
    wb.screenshot(page, "browser-01-running.png")
    assert running["tiles"] == 8
    a = wb.wait_for_state(page, first, ("done",), timeout=300)
    b = wb.wait_for_state(page, second, ("done",), timeout=300)
    page.wait_for_timeout(500)
    wb.screenshot(page, "browser-02-done.png")

    # gallery: one thumbnail per particle, each node its own N
    assert (a["tiles"], a["tilesWithImage"]) == (8, 8)
    assert (b["tiles"], b["tilesWithImage"]) == (4, 4)
    for view in (a, b):
        # chart: a point per potential step plus the final rewards; ESS at each potential step
        assert view["steps"] == EXPECTED_POTENTIAL_STEPS
        assert view["chartPoints"] == EXPECTED_POTENTIAL_STEPS + 1
        assert view["essPoints"] == EXPECTED_POTENTIAL_STEPS
        # ess_threshold 0 = resample at every potential step: every one is marked and listed
        assert view["resampleMarks"] == EXPECTED_POTENTIAL_STEPS
        assert view["events"] == EXPECTED_POTENTIAL_STEPS
        assert view["lineageVisible"] and view["selected"] != ""
    assert all(line.startswith("step ") for line in a["eventLines"])
    assert any("dropped none" not in line for line in a["eventLines"]), a["eventLines"]

    # lineage: clicking another final particle selects it and shows its reward history
    best = int(a["selected"])  # the best particle is selected after the run
    target = (best + 3) % 8
    show_all(page, 1.0, (-700, -300))
    click_final_particle(page, first, target)
    after = wb.view_state(page, first)
    assert after["selected"] == str(target)
    assert after["detail"].startswith(f"#{target} (from initial #")
    assert after["detail"].count("→") == EXPECTED_POTENTIAL_STEPS  # one reward per potential step + final
    # the browser's lineage walk and reward history agree with fk_core.charts on the same trace
    trace = page.evaluate("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.trace", first)
    origin = lineage_paths(trace)[target][0]
    history = " → ".join(js_fmt(v) for v in reward_history(trace, target))
    assert after["detail"] == f"#{target} (from initial #{origin}" + (", best" if target == best else "") + \
        f") rewards: {history}"
    wb.screenshot(page.locator(".fk-live").first, "browser-03-node-after-click.png")
    wb.screenshot(page, "browser-03-after-click.png")

    # the server side charts (FKTraceCharts) were produced from the same run's trace
    history = comfy_server.get_json("/history")
    charts_node = page.evaluate("() => String(window.app.graph.findNodesByType('FKTraceCharts')[0].id)")
    outputs = [h["outputs"].get(charts_node) for h in history.values() if charts_node in h.get("outputs", {})]
    assert outputs and len(outputs[-1]["images"]) == 2
    for name, image in zip(("reward-chart", "lineage"), outputs[-1]["images"]):
        png = comfy_server.view_image(image)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        (wb.ARTIFACTS / f"server-{name}.png").write_bytes(png)
    assert browser.our_errors() == []


def test_cancel_keeps_what_was_shown(browser, page, comfy_server):
    """Cancel mid-run: the view says so and keeps the steps it had; the server still answers."""
    node = load_example(page, comfy_server, steps=60, particles=4, seed=11)
    show_all(page, 0.6, (-400, 20))
    queue(page)
    wb.wait_for_state(page, node, ("running",), timeout=300)
    page.evaluate("() => window.comfyAPI.api.api.interrupt()")
    state = wb.wait_for_state(page, node, ("cancelled",), timeout=120)
    wb.screenshot(page, "browser-04-cancelled.png")
    assert state["steps"] >= 1 and state["tiles"] == 4
    assert "cancelled" in state["status"] and not state["lineageVisible"]
    assert comfy_server.get_json("/system_stats")["system"]
    assert browser.our_errors() == []


def test_bad_or_foreign_events_are_ignored_quietly(browser, page, comfy_server):
    """No run yet: a one-line hint only. Events for unknown nodes are ignored; a malformed one is logged
    (console warning), never breaks the page, and a later good event still renders."""
    node = load_example(page, comfy_server)
    state = wb.view_state(page, node)
    assert state["state"] == "idle" and "queue the prompt" in state["status"]
    page.evaluate("""(id) => {
        const api = window.comfyAPI.api.api;
        api.dispatchCustomEvent("fk_steering.step", {node: "99999", run: "x", particles: 2, steps: []});
        const bad = {node: id, run: "r1", particles: 2, steps: [{bad: true}]};
        api.dispatchCustomEvent("fk_steering.step", bad);
    }""", node)
    page.wait_for_timeout(300)
    assert any("live view" in e for e in browser.our_errors())
    good = {"node": node, "run": "r2", "particles": 2, "num_steps": 4, "steps": [
        {"step": 2, "sigma": 1.0, "rewards": [0.1, None], "log_weights": [0.0, None], "ess": 1.0,
         "resampled": True, "ancestors": [0, 0], "copies": [2, 0], "dropped": [1], "invalid": [1]}]}
    page.evaluate("(d) => window.comfyAPI.api.api.dispatchCustomEvent('fk_steering.step', d)", good)
    state = wb.wait_for_state(page, node, ("running",), timeout=10)
    page.wait_for_timeout(200)
    state = wb.view_state(page, node)
    assert (state["tiles"], state["dropped"], state["copied"], state["chartPoints"]) == (2, 1, 1, 1)

    # a new run on the same node starts from scratch; its thumbnails come from the sprite
    sprite = load_pack_file("nodes/live.py").encode_sprite(torch.rand(3, 16, 16, 3), 16, 64_000)
    step = {**good["steps"][0], "rewards": [0.1, 0.2, 0.3], "log_weights": [-1.1, -1.1, -1.1],
            "ancestors": [0, 1, 2], "copies": [1, 1, 1], "dropped": [], "resampled": False, "invalid": []}
    new_run = {"node": node, "run": "r3", "particles": 3, "num_steps": 4, "steps": [step], "thumbs": sprite,
               "thumbs_step": 2}
    page.evaluate("(d) => window.comfyAPI.api.api.dispatchCustomEvent('fk_steering.step', d)", new_run)
    page.wait_for_timeout(300)
    state = wb.view_state(page, node)
    assert (state["tiles"], state["tilesWithImage"], state["steps"], state["events"]) == (3, 3, 1, 0)
    assert (state["dropped"], state["copied"]) == (0, 0)
