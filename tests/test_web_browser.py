"""The live view in a real browser: headless Chromium + Playwright against a real ComfyUI server on 127.0.0.1
with this pack and a thin SD1.5 checkpoint. The example workflow is loaded in the UI and queued from the UI.

Every test runs against the host's own front end and each extra front end (``FK_FRONTEND_ROOTS``, default
~/.cache/fk-steering/frontends/*/comfyui_frontend_package/static: one server each, started with
``--front-end-root``), in both render modes: the classic canvas and "Nodes 2.0" (Vue nodes, setting
Comfy.VueNodes.Enabled). One page per front end and mode is shared by the tests. Screenshots go to
test-artifacts/ (gitignored), named by front end and mode. Skips name their reason: Chromium/Playwright or the
ComfyUI host missing, no extra front end found, or a front end without Vue nodes.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import web_browser as wb
from comfy_host import ComfyServer

from fk_core import encode_sprite
from fk_core.charts import lineage_paths, reward_history
from fk_core.schedule import potential_steps
from fk_core.trace import lineage_paths as trace_lineage

pytestmark = [pytest.mark.host, pytest.mark.browser]

WORKFLOW = wb.PACK_DIR / "workflows" / "fk_live_view.json"
STEPS, EVERY = 8, 2
EXPECTED_POTENTIAL_STEPS = len(potential_steps(STEPS, EVERY, 0.0, 1.0))
LAST_POTENTIAL_STEP = int(potential_steps(STEPS, EVERY, 0.0, 1.0)[-1])
CLASSIC, VUE = "classic", "vue"
# the chart and the lineage get ~194 px each in the classic canvas (view 540 px high); the same in Vue nodes
MIN_PANEL_HEIGHT = 160

EXTRA_FRONT_ENDS, LOOKED_IN = wb.extra_front_ends()
FRONT_ENDS = ["host", *EXTRA_FRONT_ENDS] if EXTRA_FRONT_ENDS else ["host", None]


def front_end_id(fe) -> str:
    if fe == "host":
        return "host-fe"
    return f"fe-{wb.front_end_label(fe)}" if fe is not None else "no-extra-fe"


@pytest.fixture(scope="module", params=FRONT_ENDS, ids=front_end_id)
def fe_server(request, comfy_server, tmp_path_factory):
    """A ComfyUI server serving one front end: the host's own (the shared session server), or an extra one."""
    fe = request.param
    if fe == "host":
        yield comfy_server
        return
    if fe is None:
        pytest.skip(f"no extra front end found in {LOOKED_IN} (the setup script downloads 1.58.1 there; "
                    f"or set {wb.FRONTEND_ROOTS_ENV}): only the host's own front end is tested")
    assert (fe / "index.html").is_file(), f"{fe} (from {LOOKED_IN}) is not a front end's static folder"
    server = ComfyServer(comfy_server.comfy_dir, tmp_path_factory.mktemp("comfy-fe"),
                         extra_args=["--front-end-root", str(fe)])
    server.prepare()
    (server.checkpoints_dir / comfy_server.ckpt_name).symlink_to(comfy_server.checkpoints_dir /
                                                                 comfy_server.ckpt_name)
    server.ckpt_name = comfy_server.ckpt_name
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=[CLASSIC, VUE])
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def ui(browser, fe_server, mode):
    """One page per front end and render mode, shared by the tests: (page, server, mode, version)."""
    # the panel's open state is a stored setting: every page starts with it closed
    page = browser.open_comfy(fe_server, {"Comfy.VueNodes.Enabled": mode == VUE, "Comfy.RightSidePanel.IsOpen": False})
    version = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || ''")
    if mode == VUE and wb.version_tuple(version) < wb.VUE_NODES_SINCE:
        page.close()
        pytest.skip(f"not applicable: front end {version} has no Vue nodes ('Nodes 2.0') mode")
    yield page, fe_server, mode, version
    page.close()


@pytest.fixture
def page(browser, ui):
    browser.errors.clear()
    page, _, mode, version = ui
    page.fk_tag = f"{version}-{mode}"  # screenshot names
    return page


@pytest.fixture
def server(ui):
    return ui[1]


def shot(page, name: str):
    return wb.screenshot(page, f"browser-{page.fk_tag}-{name}.png")


def assert_vue_mode_matches(page, mode: str) -> None:
    """The page renders the mode asked for (Vue nodes are DOM elements with a data-node-id)."""
    vue_nodes = page.evaluate("() => document.querySelectorAll('[data-node-id]').length")
    assert (vue_nodes > 0) == (mode == VUE), f"{mode} mode asked for, {vue_nodes} Vue node elements found"


def js_fmt(v) -> str:
    """Python twin of fmt() in web/fk_live.js."""
    if v is None or v != v or v in (float("inf"), float("-inf")):
        return "—"
    if v != 0 and (abs(v) < 0.01 or abs(v) >= 1000):
        mantissa, exponent = f"{v:.2e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    return f"{v:.3f}"


# The front end opens each loaded workflow as a tab keyed by the workflow's id: loading an example whose tab is
# already open can switch to that tab a moment later. Wait until the canvas holds the file's nodes. The pack's
# migration notices (web/fk_migrate.js) are cleared before each load, so they are the ones this load made.
LOAD_WORKFLOW = """async (wf) => {
    const want = wf.nodes.map((n) => `${n.id}:${n.type}`).sort().join(",");
    const shown = () => window.app.graph._nodes.map((n) => `${n.id}:${n.type}`).sort().join(",");
    for (let attempt = 0; attempt < 3; attempt++) {
        window.fkMigrationNotices = [];
        await window.app.loadGraphData(wf);
        for (let i = 0; i < 60 && shown() !== want; i++) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 100));
        if (shown() === want) return true;
    }
    return shown();
}"""


def load_workflow(page, workflow: dict) -> None:
    """Load a workflow as a user would and wait until the canvas shows it."""
    shown = page.evaluate(LOAD_WORKFLOW, workflow)
    assert shown is True, f"the canvas never showed the workflow (it shows {shown})"


def load_example(page, server, *, steps=STEPS, particles=8, seed=7, lmbda=1000.0) -> str:
    """Load workflows/fk_live_view.json as a user would, shrink it for the CPU test; the FK node's id."""
    load_workflow(page, json.loads(WORKFLOW.read_text()))
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
            set(pot, "lambda_mode", "fixed");  // the test's own strength and window, whatever the example says
            set(pot, "lambda", lmbda);  // strong: the tiny model's small reward gaps still resample
            set(pot, "window_start", 0.0);
            set(pot, "window_end", 1.0);
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


def node_boxes(page, ids=None) -> dict:
    """Each node's box in graph units, title bar included: Vue nodes are measured from their DOM element,
    classic ones from litegraph's bounding box. ``ids``: only these nodes."""
    return page.evaluate(
        """(ids) => {
            const c = window.app.canvas;
            const boxes = {};
            for (const node of window.app.graph._nodes) {
                if (ids && !ids.includes(String(node.id))) continue;
                const elem = document.querySelector(`[data-node-id="${node.id}"]`);
                if (elem) {  // Vue nodes: screen px -> graph units
                    const r = elem.getBoundingClientRect();
                    const rect = c.canvas.getBoundingClientRect();
                    const [x, y] = c.ds.convertCanvasToOffset([r.left - rect.left, r.top - rect.top]);
                    boxes[node.id] = {type: node.type, box: [x, y, r.width / c.ds.scale, r.height / c.ds.scale]};
                } else {
                    const b = node.getBounding();
                    boxes[node.id] = {type: node.type, box: [b[0], b[1], b[2], b[3]]};
                }
            }
            return boxes;
        }""", ids)


def overlapping(boxes: dict) -> list[str]:
    """Pairs of nodes whose boxes overlap (touching edges are fine)."""
    found = []
    items = sorted(boxes.items())
    for i, (ida, a) in enumerate(items):
        for idb, b in items[i + 1:]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = a["box"], b["box"]
            if ax < bx + bw - 1 and bx < ax + aw - 1 and ay < by + bh - 1 and by < ay + ah - 1:
                found.append(f"{a['type']} #{ida} {[round(v) for v in a['box']]} overlaps "
                             f"{b['type']} #{idb} {[round(v) for v in b['box']]}")
    return found


def assert_no_overlap(boxes: dict) -> None:
    found = overlapping(boxes)
    assert not found, "\n".join(found) + "\nall nodes: " + "; ".join(
        f"{b['type']} #{i} {[round(v) for v in b['box']]}" for i, b in sorted(boxes.items()))


def fit_view(page) -> None:
    """Zoom the canvas so the whole graph is on screen (for screenshots)."""
    page.evaluate("""() => { const c = window.app.canvas; const nodes = window.app.graph._nodes;
        const xs = nodes.map((n) => n.pos[0]), ys = nodes.map((n) => n.pos[1] - 40);
        const xe = nodes.map((n) => n.pos[0] + n.size[0]), ye = nodes.map((n) => n.pos[1] + n.size[1]);
        const [x0, y0, x1, y1] = [Math.min(...xs), Math.min(...ys), Math.max(...xe), Math.max(...ye)];
        const rect = c.canvas.getBoundingClientRect();
        const s = Math.min((rect.width - 120) / (x1 - x0), (rect.height - 80) / (y1 - y0), 1);
        c.ds.scale = s; c.ds.offset[0] = 60 / s - x0; c.ds.offset[1] = 40 / s - y0; c.setDirty(true, true); }""")
    page.wait_for_timeout(600)


def record_status_lines(page, node_id: str) -> None:
    """Keep every text the view's status line shows (the running ones are gone once the run is done)."""
    page.evaluate("""(id) => {
        const view = window.app.graph.getNodeById(Number(id)).fkLiveView;
        view.seenStatus = [];
        new MutationObserver(() => view.seenStatus.push(view.status.textContent))
            .observe(view.status, {childList: true, characterData: true, subtree: true});
    }""", node_id)


def seen_status_lines(page, node_id: str) -> list[str]:
    return page.evaluate("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.seenStatus", node_id)


def assert_full_size(view: dict, label: str) -> None:
    """The view spans the node and its chart and lineage get their full height, in either render mode."""
    assert view["widgetWidth"] is None, f"{label}: widget.width was set to {view['widgetWidth']}"
    assert view["nodeWidth"] - 40 <= view["viewWidth"] <= view["nodeWidth"], (label, view)
    assert view["chartHeight"] >= MIN_PANEL_HEIGHT, (label, view)
    if view["lineageVisible"]:
        assert view["lineageHeight"] >= MIN_PANEL_HEIGHT, (label, view)


def test_live_view_end_to_end(browser, page, server, mode):
    """Two FK nodes run from the UI: each view gets its own N thumbnails, a status line counting "step k of N",
    a chart point per potential step, the resampling events, and after the run a lineage view that answers a
    click; chart and lineage keep their full height next to the contact-sheet preview in both render modes."""
    # one server serves both modes: a seed of its own per mode, or ComfyUI's cache would skip the second run
    first = load_example(page, server, particles=8, seed={CLASSIC: 7, VUE: 8}[mode])
    second = add_second_sampler(page, first, particles=4)
    assert_vue_mode_matches(page, mode)
    show_all(page, 0.6, (-560, 20))
    shot(page, "00-loaded")
    idle = wb.view_state(page, first)
    assert idle["state"] == "idle" and idle["tiles"] == 0 and not idle["lineageVisible"]
    for node in (first, second):
        record_status_lines(page, node)

    queue(page)
    running = wb.wait_for_state(page, first, ("running", "done"), timeout=300)
    shot(page, "01-running")
    assert running["tiles"] == 8
    a = wb.wait_for_state(page, first, ("done",), timeout=300)
    b = wb.wait_for_state(page, second, ("done",), timeout=300)
    page.wait_for_timeout(1000)  # the contact sheet preview arrives after the live view's last event
    a, b = wb.view_state(page, first), wb.view_state(page, second)
    shot(page, "02-done")

    # status: the step count reaches the view (on_start), then the check numbers
    for node, n in ((first, 8), (second, 4)):
        lines = seen_status_lines(page, node)
        assert any(re.fullmatch(rf"running · {n} particles · step 0 of {STEPS}", t) for t in lines), lines
        assert any(re.match(rf"running · {n} particles · step [1-9]\d* of {STEPS} · ESS \d", t) for t in lines), \
            lines
    assert a["status"].startswith(f"done · 8 particles · {STEPS} steps · best #")
    assert a["stats"].startswith(f"last check (step {LAST_POTENTIAL_STEP}): ESS ")
    # sizes: in the classic canvas and in Vue nodes, with the contact sheet shown under the view
    assert_full_size(a, "first FK node")
    assert_full_size(b, "second FK node (created in the page)")

    # gallery: one thumbnail per particle, each node its own N
    assert (a["tiles"], a["tilesWithImage"]) == (8, 8)
    assert (b["tiles"], b["tilesWithImage"]) == (4, 4)
    for node, view in ((first, a), (second, b)):
        # chart: a point per potential step plus the final rewards; ESS at each potential step
        assert view["steps"] == EXPECTED_POTENTIAL_STEPS
        assert view["chartPoints"] == EXPECTED_POTENTIAL_STEPS + 1
        assert view["essPoints"] == EXPECTED_POTENTIAL_STEPS
        # ess_threshold 0 = resample at every potential step: each one that dropped a particle is marked and
        # listed (one that kept everyone changed nothing: no mark, no "dropped none" line)
        steps = page.evaluate("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.trace.steps", node)
        assert all(s["resampled"] for s in steps)
        changed = sum(1 for s in steps if s["dropped"])
        assert view["resampleMarks"] == view["events"] == changed >= 1, (view, [s["dropped"] for s in steps])
        assert view["lineageVisible"] and view["selected"] != ""
    assert all(line.startswith("step ") for line in a["eventLines"])
    assert not any("dropped none" in line for line in a["eventLines"]), a["eventLines"]

    # lineage: clicking another final particle selects it and shows its reward history
    best = int(a["selected"])  # the best particle is selected after the run
    target = (best + 3) % 8
    show_all(page, 1.0, (-860, -300))
    click_final_particle(page, first, target)
    after = wb.view_state(page, first)
    assert after["selected"] == str(target)
    assert after["detail"].startswith(f"#{target + 1} (from initial #")
    assert after["detail"].count("→") == EXPECTED_POTENTIAL_STEPS  # one reward per potential step + final
    # the browser's lineage walk and reward history agree with fk_core.charts on the same trace
    trace = page.evaluate("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.trace", first)
    origin = lineage_paths(trace)[target][0]
    history = " → ".join(js_fmt(v) for v in reward_history(trace, target))
    ranks = page.evaluate("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.trace.final_ranks", first)
    rank = f" · rank {ranks[target]}" if ranks[target] > 1 else ""
    assert after["detail"] == f"#{target + 1} (from initial #{origin + 1}" + (", best" if target == best else "") + \
        f") rewards: {history}{rank}"
    wb.screenshot(page.locator(".fk-live").first, f"browser-{page.fk_tag}-03-node-after-click.png")
    shot(page, "03-after-click")
    example_ids = [str(n["id"]) for n in json.loads(WORKFLOW.read_text())["nodes"]]
    assert_no_overlap(node_boxes(page, example_ids))  # the view grew the node: still no overlap

    # the server side charts (FKTraceCharts) were produced from the same run's trace
    history = server.get_json("/history")
    charts_node = page.evaluate("() => String(window.app.graph.findNodesByType('FKTraceCharts')[0].id)")
    outputs = [h["outputs"].get(charts_node) for h in history.values() if charts_node in h.get("outputs", {})]
    assert outputs and len(outputs[-1]["images"]) == 2
    for name, image in zip(("reward-chart", "lineage"), outputs[-1]["images"]):
        png = server.view_image(image)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        (wb.ARTIFACTS / f"server-{page.fk_tag}-{name}.png").write_bytes(png)
    assert browser.our_errors() == []


def test_cancel_keeps_what_was_shown(browser, page, server):
    """Cancel mid-run: the view says so and keeps the steps it had; the server still answers."""
    node = load_example(page, server, steps=60, particles=4, seed=11)
    show_all(page, 0.6, (-560, 20))
    queue(page)
    page.wait_for_function("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.steps.length >= 1",
                           arg=node, timeout=300_000)
    page.evaluate("() => window.comfyAPI.api.api.interrupt()")
    state = wb.wait_for_state(page, node, ("cancelled",), timeout=120)
    shot(page, "04-cancelled")
    assert state["steps"] >= 1 and state["tiles"] == 4
    assert re.fullmatch(r"cancelled at step \d+ of 60 · showing what was computed", state["status"]), state
    assert not state["lineageVisible"]
    assert server.get_json("/system_stats")["system"]
    assert browser.our_errors() == []


def test_bad_or_foreign_events_are_ignored_quietly(browser, page, server):
    """No run yet: a one-line hint only. Events for unknown nodes are ignored; a malformed one is logged
    (console warning), never breaks the page, and a later good event still renders."""
    node = load_example(page, server)
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
    sprite = encode_sprite(torch.rand(3, 16, 16, 3), 16, 64_000)
    step = {**good["steps"][0], "rewards": [0.1, 0.2, 0.3], "log_weights": [-1.1, -1.1, -1.1],
            "ancestors": [0, 1, 2], "copies": [1, 1, 1], "dropped": [], "resampled": False, "invalid": []}
    new_run = {"node": node, "run": "r3", "particles": 3, "num_steps": 4, "steps": [step], "thumbs": sprite,
               "thumbs_step": 2}
    page.evaluate("(d) => window.comfyAPI.api.api.dispatchCustomEvent('fk_steering.step', d)", new_run)
    page.wait_for_timeout(300)
    state = wb.view_state(page, node)
    assert (state["tiles"], state["tilesWithImage"], state["steps"], state["events"]) == (3, 3, 1, 0)
    assert (state["dropped"], state["copied"]) == (0, 0)


def synthetic_run(page, node: str, *, optional: bool) -> None:
    """A run told to the view by hand (no sampling): start, two checks, done. ``optional``: the records carry
    survivors, lmbda and cost and the trace has notes and total cost (as later engine versions send)."""
    n = 8

    def record(step, **extra):
        return {"step": step, "sigma": 1.0, "rewards": [0.1 * i + 0.01 * step for i in range(n)],
                "log_weights": [-2.079] * n, "ess": 4.5, "resampled": True, "ancestors": [0, 0, 1, 2, 3, 3, 5, 7],
                "copies": [2, 1, 1, 2, 0, 1, 0, 1], "dropped": [4, 6], "invalid": [], **extra}

    extra = {"survivors": 6, "lmbda": 12.5, "cost": {"model_s": 0.3, "decode_s": 0.08, "reward_s": 0.04}}
    steps = [record(2), record(4, **(extra if optional else {}))]
    head = {"node": node, "run": f"synthetic-{optional}", "particles": n, "num_steps": STEPS}
    trace = {"num_particles": n, "num_steps": STEPS, "steps": steps, "origin": [0, 0, 1, 2, 3, 3, 5, 7],
             "final_rewards": [0.2 + 0.05 * i for i in range(n)],
             "lineage": trace_lineage([s["ancestors"] for s in steps], n)}  # the engine computes it (compact_trace)
    if optional:
        trace |= {"notes": ["the first check kept only 2 particles: lower lambda"],
                  "cost": {"model_s": 2.0, "decode_s": 1.0, "reward_s": 0.5}}
    send = "([e, d]) => window.comfyAPI.api.api.dispatchCustomEvent(e, d)"
    page.evaluate(send, ["fk_steering.step", {**head, "steps": []}])
    page.wait_for_timeout(200)
    assert wb.view_state(page, node)["status"] == f"running · {n} particles · step 0 of {STEPS}"
    page.evaluate(send, ["fk_steering.step", {**head, "steps": steps}])
    page.wait_for_timeout(200)
    running = wb.view_state(page, node)
    numbers = " · kept 6 of 8 · λ 12.5" if optional else ""
    assert running["status"] == f"running · {n} particles · step 4 of {STEPS} · ESS 4.50{numbers}"
    assert running["stats"] == ("check at step 4: 0.42 s (model 0.30 · decode 0.08 · reward 0.04)" if optional
                                else None)
    page.evaluate(send, ["fk_steering.done", {**head, "best_index": 7, "trace": trace}])
    page.wait_for_timeout(300)


def test_status_line_shows_the_numbers_a_step_carries(browser, page, server):
    """ESS, survivors ("kept k of N"), λ and the cost of a check when the step records have them, the trace's
    notes and total cost after the run; without them the same lines, shorter, and no error."""
    node = load_example(page, server)
    for optional in (False, True):
        synthetic_run(page, node, optional=optional)
        done = wb.view_state(page, node)
        assert done["status"] == f"done · 8 particles · {STEPS} steps · best #8 reward 0.550"  # index 7
        if optional:
            assert done["stats"] == ("last check (step 4): ESS 4.50 · kept 6 of 8 · λ 12.5 · "
                                     "all checks: 3.50 s (model 2.00 · decode 1.00 · reward 0.50)")
            assert done["notes"] == ["the first check kept only 2 particles: lower lambda"]
        else:
            assert done["stats"] == "last check (step 4): ESS 4.50" and done["notes"] == []
    show_all(page, 1.0, (-860, -300))
    shot(page, "05-status-numbers")
    assert browser.our_errors() == []


def panel_toggle(page):
    """New front ends' button for the right-hand properties panel, or a skip where there is none."""
    toggle = page.get_by_role("button", name="Toggle properties panel")
    if toggle.count() == 0:
        pytest.skip(f"not applicable: front end {front_end_version(page)} has no properties panel")
    return toggle


def open_properties_panel(page, node: str):
    """Select the node and open the properties panel: (toggle button, panel)."""
    toggle = panel_toggle(page)
    page.evaluate("(id) => window.app.canvas.selectNode(window.app.graph.getNodeById(Number(id)))", node)
    toggle.click()
    panel = page.get_by_test_id("properties-panel")
    panel.get_by_text("particle_chunk", exact=True).first.wait_for(state="attached", timeout=15_000)
    # scroll to the end of the parameter list, where a row for the view would be
    panel.evaluate("(p) => p.querySelectorAll('*').forEach((e) => { if (e.scrollHeight > e.clientHeight + 1) "
                   "e.scrollTop = e.scrollHeight; })")
    page.wait_for_timeout(700)
    return toggle, panel


def front_end_version(page) -> str:
    return page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || ''")


def test_properties_panel_leaves_the_view_alone(browser, page, server, mode):
    """New front ends' right-hand properties panel, opened with the FK node selected: the view on the node
    keeps its width and height while the panel is open (also after a value is changed in the panel, which
    redraws the node's widgets: the panel's legacy renderer writes widget.width) and after it is closed."""
    node = load_example(page, server)
    synthetic_run(page, node, optional=True)
    show_all(page, 1.0, (-860, -30))
    before = wb.view_state(page, node)
    assert_full_size(before, "before the panel")
    toggle, panel = open_properties_panel(page, node)
    shot(page, "06-panel-open")
    panel.get_by_role("button", name="Increment").first.click()  # a value changed in the panel
    page.evaluate("() => window.app.canvas.setDirty(true, true)")
    page.wait_for_timeout(500)
    during = wb.view_state(page, node)
    toggle.click()
    page.evaluate("() => window.app.canvas.setDirty(true, true)")
    page.wait_for_timeout(500)
    after = wb.view_state(page, node)
    shot(page, "07-panel-closed")
    size = ("nodeWidth", "viewWidth", "viewHeight", "chartHeight", "lineageHeight", "widgetWidth")
    assert [during[k] for k in size] == [before[k] for k in size], (before, during)
    assert [after[k] for k in size] == [before[k] for k in size], (before, after)
    assert browser.our_errors() == []


def test_properties_panel_lists_no_live_view_row(browser, page, server):
    """The panel lists the sampler's parameters but no empty fk_live_view row (hideInPanel, as core DOM
    widgets do). Front ends before 1.49 ignore hideInPanel (1.45.15 checked): there the row stays, empty."""
    node = load_example(page, server)
    panel_toggle(page)
    version = front_end_version(page)
    if wb.version_tuple(version) < wb.HIDE_IN_PANEL_SINCE:
        pytest.skip(f"not applicable: front end {version}'s properties panel ignores hideInPanel: it lists an "
                    "empty fk_live_view row that no widget option can remove without hiding the view on the node")
    toggle, panel = open_properties_panel(page, node)
    rows, live_rows = panel.get_by_text("particles", exact=True).count(), panel.get_by_text("fk_live_view").count()
    toggle.click()  # closed again for the next test on this page
    assert rows >= 1
    assert live_rows == 0, "the panel lists the live view as a parameter"
    assert browser.our_errors() == []


def tiles_state(page, node: str) -> list[dict]:
    """Each gallery tile's label, tooltip, marks and component breakdown."""
    return page.evaluate("""(id) => [...window.app.graph.getNodeById(Number(id)).fkLiveView.gallery.children]
        .map((t) => ({label: t.children[1].textContent, title: t.title, breakdown: t.dataset.breakdown,
                      dropped: t.classList.contains("fk-dropped"), copied: t.classList.contains("fk-copied"),
                      selected: t.classList.contains("fk-selected")}))""", node)


def test_what_an_artist_reads(browser, page, server):
    """Issue 19 items 2 and 6, told to the view by hand (a best-of-N run of a combined reward): with λ 0 the
    resampling keeps everyone, so no "dropped none" line and no red mark; after the run the gallery shows the
    final population (final rewards, nothing greyed or crossed out, the output particle framed); particles are
    #1..#N everywhere; each tile's tooltip has the reward's components, a click on a tile selects that particle
    and the line under the lineage gives its breakdown; a long note wraps instead of ending in "…"."""
    node = load_example(page, server)
    n = 4
    breakdown = ["= 0.9 aes - 0.1 sharp", "= 0.5 aes - 0.2 sharp", "= 0.7 aes - 0.3 sharp", "= 0.2 aes - 0.4 sharp"]
    # λ 0: resampling on uniform weights keeps every particle (fk_core.live_view spells out copies and dropped)
    steps = [{"step": k, "sigma": 1.0, "rewards": [0.1 * i + 0.01 * k for i in range(n)], "log_weights": [-1.386] * n,
              "ess": 4.0, "resampled": True, "ancestors": list(range(n)), "copies": [1] * n, "dropped": [],
              "invalid": [], "breakdown": breakdown} for k in (2, 4, 6)]
    head = {"node": node, "run": "best-of-n", "particles": n, "num_steps": STEPS}
    folder = "/home/artist/ComfyUI/models/fk_rewards/ImageReward-v1.0/a-folder-name-long-enough-to-need-a-wrap"
    trace = {"num_particles": n, "num_steps": STEPS, "steps": steps, "origin": list(range(n)),
             "final_rewards": [0.8, 0.3, 0.4, -0.2], "final_invalid": [], "final_breakdown": breakdown,
             "final_ranks": [1, 3, 2, 4], "lineage": trace_lineage([s["ancestors"] for s in steps], n),
             "notes": [f"ImageReward weights were read from {folder} (the default file)"]}
    sprite = encode_sprite(torch.rand(n, 16, 16, 3), 16, 64_000)
    send = "([e, d]) => window.comfyAPI.api.api.dispatchCustomEvent(e, d)"
    page.evaluate(send, ["fk_steering.step", {**head, "steps": steps, "thumbs": sprite, "thumbs_step": 6}])
    page.wait_for_timeout(300)
    running = wb.view_state(page, node)
    assert (running["events"], running["resampleMarks"], running["dropped"]) == (0, 0, 0), running
    tiles = tiles_state(page, node)
    assert [t["label"] for t in tiles] == ["#1 0.060", "#2 0.160", "#3 0.260", "#4 0.360"]
    assert tiles[0]["breakdown"] == breakdown[0] and breakdown[0] in tiles[0]["title"]

    page.evaluate(send, ["fk_steering.done", {**head, "best_index": 0, "chosen_index": 0, "trace": trace,
                                              "thumbs": sprite, "thumbs_step": None, "thumbs_final": True}])
    page.wait_for_timeout(300)
    done = wb.view_state(page, node)
    shot(page, "what-an-artist-reads")
    assert done["status"] == f"done · {n} particles · {STEPS} steps · best #1 reward 0.800"
    assert (done["events"], done["resampleMarks"], done["dropped"], done["copied"]) == (0, 0, 0, 0), done
    assert not any("dropped none" in line for line in done["eventLines"])
    tiles = tiles_state(page, node)
    assert [t["label"] for t in tiles] == ["#1 0.800", "#2 0.300", "#3 0.400", "#4 -0.200"]  # the final population
    assert [t["selected"] for t in tiles] == [True, False, False, False]  # the output particle, framed
    assert "final particle #3: reward 0.400 = 0.7 aes - 0.3 sharp · rank 2 of 4" in tiles[2]["title"]

    page.evaluate("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.gallery.children[2].click()", node)
    page.wait_for_timeout(200)
    picked = wb.view_state(page, node)
    assert picked["selected"] == "2" and [t["selected"] for t in tiles_state(page, node)] == [False, False, True, False]
    assert picked["detail"].startswith("#3 (from initial #3) rewards: ") and "= 0.7 aes - 0.3 sharp" in \
        picked["detail"] and picked["detail"].endswith("· rank 2"), picked["detail"]

    note = page.evaluate("""(id) => { const e = window.app.graph.getNodeById(Number(id)).fkLiveView.root
        .querySelector('.fk-live-note'); const css = getComputedStyle(e);
        return {overflow: e.scrollWidth > e.clientWidth + 1, ellipsis: css.textOverflow === 'ellipsis' &&
                css.whiteSpace === 'nowrap', height: e.clientHeight, text: e.textContent}; }""", node)
    assert note["text"].endswith("(the default file)") and folder in note["text"]
    assert not note["overflow"] and not note["ellipsis"] and note["height"] > 14, note  # wrapped: 2+ lines
    assert browser.our_errors() == []


EXAMPLES = sorted((wb.PACK_DIR / "workflows").glob("*.json"))
# nodes that show an image preview after a run (their own UI output)
PREVIEW_TYPES = ("PreviewImage", "SaveImage", "SaveAnimatedWEBP", "FKParticleSampler", "FKTraceCharts",
                 "FKScoreImages")
FK_NODE_TYPES = ("FKParticleSampler", "FKSampler")


def upload_preview_image(page) -> dict:
    """A 512x512 picture uploaded to the server's input folder: the image a node's preview shows after a run."""
    return page.evaluate("""async () => {
        const c = document.createElement("canvas"); c.width = 512; c.height = 512;
        const g = c.getContext("2d"); g.fillStyle = "#4a7"; g.fillRect(0, 0, 512, 512);
        const blob = await new Promise((r) => c.toBlob(r, "image/png"));
        const form = new FormData();
        form.append("image", blob, "fk_overlap_preview.png");
        form.append("overwrite", "true");
        const res = await (await fetch("/upload/image", {method: "POST", body: form})).json();
        return {filename: res.name, subfolder: res.subfolder || "", type: res.type || "input"};
    }""")


def run_as_if_finished(page, image: dict) -> None:
    """What a finished run leaves in the graph, without the models: each FK node's view gets a run (its events) and
    each node with a preview gets its image (ComfyUI's 'executed' message)."""
    ids = page.evaluate("(types) => window.app.graph._nodes.filter((n) => types.includes(n.type)).map((n) => "
                        "String(n.id))", list(FK_NODE_TYPES))
    for node in ids:
        synthetic_run(page, node, optional=True)
    page.evaluate("""([types, image]) => {
        const api = window.comfyAPI.api.api;
        for (const n of window.app.graph._nodes.filter((n) => types.includes(n.type))) {
            api.dispatchCustomEvent("executed", {node: String(n.id), display_node: String(n.id),
                                                 output: {images: [image]}, prompt_id: "overlap-check"});
        }
    }""", [list(PREVIEW_TYPES), image])
    page.wait_for_timeout(1500)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_has_no_overlapping_nodes(browser, page, server, mode, example):
    """Issue 19 item 6: each shipped example as a user opens it, in both render modes: no node lies over another
    at load, nor after a run (the live views filled and grown, every preview showing its image)."""
    load_workflow(page, json.loads(example.read_text()))
    page.wait_for_timeout(1000)
    assert_vue_mode_matches(page, mode)
    fit_view(page)
    shot(page, f"example-{example.stem}-loaded")
    loaded = node_boxes(page)
    run_as_if_finished(page, upload_preview_image(page))
    fit_view(page)
    shot(page, f"example-{example.stem}-after-run")
    after = node_boxes(page)
    (wb.ARTIFACTS / f"browser-{page.fk_tag}-example-{example.stem}-boxes.json").write_text(
        json.dumps({"loaded": loaded, "after_run": after}))
    found = [f"at load: {o}" for o in overlapping(loaded)] + [f"after a run: {o}" for o in overlapping(after)]
    assert not found, "\n".join(found)
    # the FK nodes keep the size they were loaded with: a run never grows them over their neighbours
    for i, box in loaded.items():
        if box["type"] in FK_NODE_TYPES:
            assert after[i]["box"][2:] == pytest.approx(box["box"][2:], abs=2), (box, after[i])
    assert browser.our_errors() == []


HISTORY = "async () => await (await fetch('/history')).json()"


def history_length(page) -> int:
    return len(page.evaluate(HISTORY))


def node_text_of_last_prompt(page, node_id: str, before: int, timeout_ms: int = 60_000) -> str:
    """The node's text output in the prompt that finished after ``before`` prompts (the view hears of the run
    before the prompt's history entry is written: wait for it)."""
    for _ in range(timeout_ms // 250):
        history = list(page.evaluate(HISTORY).values())
        if len(history) > before and node_id in history[-1].get("outputs", {}):
            return history[-1]["outputs"][node_id]["text"][0]
        page.wait_for_timeout(250)
    raise AssertionError(f"no history entry with node {node_id}'s output after {before} prompts")


def test_drawn_output_particle_is_the_one_framed(browser, page, server, mode):
    """Output "draw from final weights": the particle the node outputs (a draw, not the best) is the one the live
    view frames in its lineage and names in its status line once the run is done."""
    for seed in range(40, 46):  # λ = 0: the draw is uniform, so most seeds draw another particle than the best
        node = load_example(page, server, particles=8, seed=seed + {CLASSIC: 0, VUE: 100}[mode], lmbda=0.0)
        page.evaluate("""() => { const pot = window.app.graph.findNodesByType("FKPotentialSelector")[0];
                          pot.widgets.find((w) => w.name === "output").value = "draw from final weights"; }""")
        page.evaluate("(id) => { const v = window.app.graph.getNodeById(Number(id)).fkLiveView; v.fkOld = v.trace; }",
                      node)
        before = history_length(page)
        queue(page)
        page.wait_for_function("""(id) => { const v = window.app.graph.getNodeById(Number(id)).fkLiveView;
                                  return v.state === "done" && v.trace && v.trace !== v.fkOld; }""", arg=node,
                               timeout=300_000)
        view = wb.view_state(page, node)
        # the node text numbers particles #1..#N, as the view does; the view's dataset holds the index
        chosen = int(re.match(r"particle #(\d+) of", node_text_of_last_prompt(page, node, before)).group(1)) - 1
        best = int(page.evaluate("(id) => window.app.graph.getNodeById(Number(id)).fkLiveView.trace.final_rewards"
                                 ".reduce((b, r, i, a) => (r ?? -Infinity) > (a[b] ?? -Infinity) ? i : b, 0)", node))
        if chosen != best:
            break
    else:
        pytest.fail("every seed drew the best particle: the test cannot tell the two apart")
    shot(page, "drawn-output")
    assert view["selected"] == str(chosen), f"the node outputs particle {chosen}, the view frames {view['selected']}"
    assert f"chosen #{chosen + 1}" in view["status"], view["status"]


def test_cached_run_replays_the_live_view(browser, page, server, mode):
    """Issue 19 item 5: the same workflow queued again is served from ComfyUI's cache and sends no live events.
    On hosts that re-send a cached node's UI (0.19+, has_intermediate_output) the view on a freshly loaded graph
    draws the run from the node's UI output (fk_live): done, a thumbnail per final particle, lineage shown. ComfyUI
    0.3.64 sends nothing for the cached sampler: the view stays idle (README: Compatibility)."""
    from comfy_api.latest import io

    seed = {CLASSIC: 31, VUE: 32}[mode]
    node = load_example(page, server, particles=4, seed=seed)
    before = history_length(page)
    queue(page)
    wb.wait_for_state(page, node, ("done",), timeout=300)
    # The live "done" event comes before the node's own "executed" message (its contact sheet is written after the
    # run): reloading the graph in between hands that message, which carries fk_live, to the new view. Wait until
    # the prompt is finished (its history entry exists) and the page has handled its last messages.
    node_text_of_last_prompt(page, node, before)
    page.wait_for_timeout(1000)
    node = load_example(page, server, particles=4, seed=seed)  # the same prompt again, on a fresh, idle view
    assert wb.view_state(page, node)["state"] == "idle"
    queue(page)
    if "has_intermediate_output" in getattr(io.Schema, "__dataclass_fields__", {}):
        view = wb.wait_for_state(page, node, ("done",), timeout=120)
        shot(page, "cached-run-replayed")
        assert (view["tiles"], view["tilesWithImage"]) == (4, 4)
        assert view["steps"] == EXPECTED_POTENTIAL_STEPS and view["lineageVisible"]
        assert view["status"].startswith(f"done · 4 particles · {STEPS} steps · best #")
    else:
        page.wait_for_timeout(5000)
        assert wb.view_state(page, node)["state"] == "idle"
    assert browser.our_errors() == []
