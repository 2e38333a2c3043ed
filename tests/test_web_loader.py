"""FK Reward Loader in a real front end: it shows only the settings the chosen reward reads (hosts with
DynamicCombo, ComfyUI 0.33+), keeps the values of a reward's settings when the user switches away and back, and
a workflow saved and loaded again, or saved flat by 0.2.0, keeps every value by name (web/fk_migrate.js).
On a host without DynamicCombo (0.3.64) the loader shows every setting, as 0.2.0 did (README)."""

from __future__ import annotations

import pytest
import web_browser as wb
from test_web_browser import fe_server, mode, ui  # noqa: F401  (fixtures: one page per front end/mode)

pytestmark = [pytest.mark.host, pytest.mark.browser]

VLM = "VLM judge (Qwen-VL)"
OTHER_SETTINGS = {"clip_architecture", "clip_pretrained", "target", "color", "question", "objects", "judge_model"}
AUTO = "auto (default file, downloaded if missing)"
# The front end keeps a DynamicCombo option's values when the user switches away and back since (at the latest)
# 1.58.1; 1.49.6 (ComfyUI 0.33's own) shows the option's defaults again (README, FK Reward Loader).
KEEPS_VALUES_ON_SWITCH = (1, 58)

SWITCH_SAVE_RELOAD = """async ([vlm, question, model]) => {
    const app = window.app;
    await app.loadGraphData({last_node_id: 700, last_link_id: 0, nodes: [], links: [], groups: [], config: {},
                             extra: {}, version: 0.4});
    let node = window.LiteGraph.createNode("FKRewardLoader");
    app.graph.add(node);
    const names = () => node.widgets.map((w) => w.name);
    const widget = (name) => node.widgets.find((w) => w.name === name);
    const set = (name, value) => { const w = widget(name); w.value = value; w.callback?.(value); };
    const grouped = node.constructor.nodeData.input.required.reward[0] === "COMFY_DYNAMICCOMBO_V3";
    set("reward", "colorfulness");
    const colorfulness = names();
    set("reward", vlm);
    const judge = names();
    const q = grouped ? "reward.question" : "question", m = grouped ? "reward.judge_model" : "judge_model";
    set(q, question); set(m, model); set("device", "cpu");
    set("reward", "colorfulness"); set("reward", vlm);
    const switched = {question: widget(q)?.value, model: widget(m)?.value};
    set(q, question); set(m, model);  // front ends that reset a reward's values on a switch: set them again
    const saved = JSON.parse(JSON.stringify(app.graph.serialize()));
    const savedNode = saved.nodes.find((n) => String(n.id) === String(node.id));
    saved.nodes = [savedNode];  // only this node (an earlier workflow's may still be on the page)
    saved.links = [];
    await app.loadGraphData(saved);
    await new Promise((r) => setTimeout(r, 50));
    node = app.graph.getNodeById(node.id);
    const reloaded = Object.fromEntries(node.widgets.map((w) => [w.name, w.value]));
    const prompt = (await app.graphToPrompt()).output[String(node.id)].inputs;
    const height = node.size[1];
    return {grouped, colorfulness, judge, switched, reloaded, prompt, height,
            saved: savedNode.widgets_values};
}"""

LOAD_FLAT = """async (wf) => {
    window.fkMigrationNotices = [];
    await window.app.loadGraphData(wf);
    await new Promise((r) => setTimeout(r, 50));
    const node = window.app.graph._nodes.find((n) => n.type === "FKRewardLoader");
    return {widgets: Object.fromEntries(node.widgets.map((w) => [w.name, w.value])),
            prompt: (await window.app.graphToPrompt()).output[String(node.id)].inputs,
            notices: window.fkMigrationNotices};
}"""


def plain(name: str) -> str:
    return name.split(".")[-1]


def test_loader_shows_only_what_the_reward_reads_and_keeps_values(ui):  # noqa: F811
    page, version = ui[0], ui[3]
    got = page.evaluate(SWITCH_SAVE_RELOAD, [VLM, "Is this {prompt}?", "Qwen/Qwen3-VL-4B-Instruct"])
    if not got["grouped"]:
        assert OTHER_SETTINGS <= set(got["colorfulness"])  # 0.3.64: every setting, as in 0.2.0
    else:
        assert not OTHER_SETTINGS & {plain(n) for n in got["colorfulness"]}, got["colorfulness"]
        assert {"reward.question", "reward.judge_model"} <= set(got["judge"]), got["judge"]
        assert not {"clip_architecture", "target", "color", "objects"} & {plain(n) for n in got["judge"]}
        assert got["judge"].index("reward.question") == 1  # the reward's settings right under it
    if not got["grouped"] or wb.version_tuple(version) >= KEEPS_VALUES_ON_SWITCH:
        assert got["switched"] == {"question": "Is this {prompt}?", "model": "Qwen/Qwen3-VL-4B-Instruct"}
    by_plain = {plain(name): value for name, value in got["reloaded"].items()}
    assert by_plain["question"] == "Is this {prompt}?", got
    assert by_plain["judge_model"] == "Qwen/Qwen3-VL-4B-Instruct", got
    assert by_plain["reward"] == VLM and by_plain["device"] == "cpu"
    key = "reward.question" if got["grouped"] else "question"
    assert got["prompt"][key] == "Is this {prompt}?" and got["prompt"]["device"] == "cpu", got["prompt"]


FLAT_0_2_0 = [VLM, AUTO, "cpu", "fp32", "a fox", "ViT-B-32", "openai", 0.7, "#00ff00", "Is it {prompt}?", "1 fox",
              "Qwen/Qwen3-VL-4B-Instruct"]
GROUPED_0_3 = [VLM, "Is it {prompt}?", "Qwen/Qwen3-VL-4B-Instruct", AUTO, "cpu", "fp32", "a fox"]  # saved on 0.33+


@pytest.mark.parametrize("values", [FLAT_0_2_0, GROUPED_0_3], ids=["flat-0.2.0", "grouped-0.33"])
def test_a_save_of_either_layout_loads_by_name(ui, values):  # noqa: F811
    """A flat save on a grouping host, and a grouped one on a host that shows every setting (0.3.64), load by
    name, without a notice: both are the current version, as one host or the other saves it."""
    page = ui[0]
    node = {"id": 1, "type": "FKRewardLoader", "pos": [100, 100], "size": [400, 300], "flags": {}, "order": 0,
            "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": values}
    workflow = {"last_node_id": 1, "last_link_id": 0, "nodes": [node], "links": [], "groups": [], "config": {},
                "extra": {}, "version": 0.4}
    got = page.evaluate(LOAD_FLAT, workflow)
    by_plain = {plain(name): value for name, value in got["widgets"].items()}
    expected = {"reward": VLM, "weights": AUTO, "device": "cpu", "precision": "fp32", "prompt": "a fox",
                "question": "Is it {prompt}?", "judge_model": "Qwen/Qwen3-VL-4B-Instruct"}
    for name, value in expected.items():
        assert by_plain.get(name) == value, (name, got["widgets"])
        sent = {plain(k): v for k, v in got["prompt"].items()}
        assert sent.get(name) == value, (name, got["prompt"])
    assert got["notices"] == [], got["notices"]
