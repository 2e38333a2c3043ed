"""The example workflows in workflows/: well-formed UI-format graphs that a real ComfyUI with this pack
accepts, and (on a thin SD1.5 checkpoint, 64x64, 3 steps, a cheap reward) that run end to end over HTTP.

File-level checks need no host; the rest use the session server from conftest.comfy_server.
"""

from __future__ import annotations

import copy
import io
import json
import uuid

import pytest
from workflow_api import (
    FRONTEND_ONLY,
    combo_options,
    expected_widget_count,
    input_specs,
    input_type,
    is_model_file,
    load_workflow,
    migrated_values,
    to_api,
    widget_values,
    workflow_paths,
)

PATHS = workflow_paths()
IDS = [path.name for path in PATHS]
REQUIRED_FILES = {"fk_sd15.json", "fk_sdxl.json", "fk_flux.json", "fk_best_of_n.json", "fk_live_view.json",
                  "fk_final_judge.json", "fk_score_images.json", "fk_wan_video.json"}


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def test_every_example_workflow_is_present():
    assert REQUIRED_FILES <= set(IDS)


def test_every_example_has_its_own_workflow_id():
    """The front end keys open tabs, drafts and its URL by the workflow's id: two examples sharing one (the first
    releases shipped 0000…0002 three times) can show one file's graph when the other was opened."""
    ids = {path.name: load_workflow(path)["id"] for path in PATHS}
    for name, workflow_id in ids.items():
        assert uuid.UUID(workflow_id).int >> 64, f"{name}: id {workflow_id} is a placeholder, not a random UUID"
    assert len(set(ids.values())) == len(ids), ids


# ---- file-level structure (no host) ----

@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_ui_format_and_links_are_consistent(path):
    wf = load_workflow(path)
    assert wf["version"] == 0.4
    nodes = {node["id"]: node for node in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]), "duplicate node ids"
    assert wf["last_node_id"] >= max(nodes)
    link_ids = [link[0] for link in wf["links"]]
    assert len(set(link_ids)) == len(link_ids), "duplicate link ids"
    assert wf["last_link_id"] >= max(link_ids)
    for link_id, source, source_slot, target, target_slot, link_type in wf["links"]:
        out = nodes[source]["outputs"][source_slot]
        inp = nodes[target]["inputs"][target_slot]
        assert link_id in (out["links"] or []), f"link {link_id} missing from node {source}'s output list"
        assert inp["link"] == link_id, f"node {target}.{inp['name']} does not point back at link {link_id}"
        assert out["type"] == link_type and inp["type"] in (link_type, "*"), \
            f"link {link_id}: {out['type']} -> {inp['name']}:{inp['type']} (declared {link_type})"
    for node in wf["nodes"]:  # no dangling references the other way round
        for inp in node.get("inputs", []):
            assert inp.get("link") is None or inp["link"] in link_ids
        for out in node.get("outputs", []):
            assert set(out.get("links") or []) <= set(link_ids)


@pytest.mark.parametrize("path", [p for p in PATHS if p.name != "fk_live_view.json"],
                         ids=[i for i in IDS if i != "fk_live_view.json"])
def test_each_example_explains_its_settings_in_a_note(path):
    notes = [node for node in load_workflow(path)["nodes"] if node["type"] in ("Note", "MarkdownNote")]
    assert notes, "no Note node"
    text = " ".join(node["widgets_values"][0] for node in notes)
    for word in ("particles", "lambda", "reward"):
        assert word in text.lower(), f"the note does not explain {word!r}"


FAKE_INFO = {  # the /object_info shape, trimmed to what the converter reads
    "Src": {"input": {"required": {}}, "input_order": {"required": []}, "output": ["MODEL"]},
    "Dst": {"input": {"required": {"model": ["MODEL", {}], "seed": ["INT", {"control_after_generate": True}],
                                   "mode": [["a", "b"], {}], "text": ["STRING", {"forceInput": True}]},
                      "optional": {"scale": ["FLOAT", {}]}},
            "input_order": {"required": ["model", "seed", "mode", "text"], "optional": ["scale"]},
            "output": []},
}


def fake_workflow(widgets) -> dict:
    return {"nodes": [
        {"id": 1, "type": "Src", "inputs": [], "outputs": [{"type": "MODEL", "links": [5]}]},
        {"id": 2, "type": "Dst", "widgets_values": widgets,
         "inputs": [{"name": "model", "type": "MODEL", "link": 5},
                    {"name": "text", "type": "STRING", "link": None}]},
        {"id": 3, "type": "Note", "widgets_values": ["ignored"]},
    ], "links": [[5, 1, 0, 2, 0, "MODEL"]]}


def test_converter_names_widgets_skips_seed_control_and_front_end_nodes():
    prompt = to_api(fake_workflow([7, "randomize", "b", 0.5]), FAKE_INFO)
    assert prompt == {"1": {"class_type": "Src", "inputs": {}},
                      "2": {"class_type": "Dst",
                            "inputs": {"seed": 7, "mode": "b", "scale": 0.5, "model": ["1", 0]}}}
    with pytest.raises(ValueError, match="3 widget values, its definition has 4"):
        to_api(fake_workflow([7, "b", 0.5]), FAKE_INFO)  # a missing control_after_generate value


# ---- against a real ComfyUI with this pack loaded ----

@pytest.mark.host
@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_nodes_links_and_widgets_match_object_info(path, object_info):
    wf = load_workflow(path)
    nodes = {node["id"]: node for node in wf["nodes"]}
    server_nodes = [node for node in wf["nodes"] if node["type"] not in FRONTEND_ONLY]
    missing = sorted({node["type"] for node in server_nodes} - set(object_info))
    assert not missing, f"node types not registered on the server: {missing}"
    for link_id, source, source_slot, target, target_slot, _ in wf["links"]:
        source_info, target_info = object_info[nodes[source]["type"]], object_info[nodes[target]["type"]]
        produced = source_info["output"][source_slot]
        produced = "COMBO" if isinstance(produced, list) else produced
        name = nodes[target]["inputs"][target_slot]["name"]
        specs = input_specs(target_info)
        assert name in specs, f"{nodes[target]['type']} has no input {name!r}"
        wanted = input_type(specs[name])
        assert produced == wanted or "*" in (produced, wanted), (
            f"link {link_id}: {nodes[source]['type']} gives {produced}, "
            f"{nodes[target]['type']}.{name} wants {wanted}")
    for node in server_nodes:
        info = object_info[node["type"]]
        saved = node.get("widgets_values") or []
        # an FK node saved flat loads on a host that groups its settings through web/fk_migrate.js, by name
        assert len(saved) == expected_widget_count(info, saved) or migrated_values(node, info), node["type"]
        specs = input_specs(info)
        for name, value in widget_values(node, info).items():
            options = combo_options(specs[name]) if input_type(specs[name]) == "COMBO" else None
            if options is not None and not is_model_file(value):  # model files are the user's own
                assert value in options, f"{node['type']}.{name} = {value!r} is not one of {options}"


@pytest.mark.host
@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_server_validation_only_misses_the_model_files(path, object_info, comfy_server):
    """/prompt validates every input; the examples name model files this test server does not have, and
    nothing else may be wrong. (ComfyUI 0.3.64 checks only list-style V1 combos here, not V3 "COMBO"
    options such as the FK nodes' ones: test_nodes_links_and_widgets_match_object_info covers those.)"""
    status, body = comfy_server.post_json("/prompt", {"prompt": to_api(load_workflow(path), object_info)})
    assert status == 400, body
    assert body["node_errors"], body
    for node_id, entry in body["node_errors"].items():
        for error in entry["errors"]:
            value = error["extra_info"].get("received_value")
            assert error["type"] == "value_not_in_list" and is_model_file(value), (node_id, error)


def tiny_run(prompt: dict, ckpt_name: str, seed: int) -> dict:
    """The example's graph, made cheap: thin checkpoint, 64x64, 3 steps, a reward with no weights."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = ckpt_name
        elif kind == "EmptyLatentImage":
            inputs.update(width=64, height=64, batch_size=min(inputs["batch_size"], 4))
        elif kind == "KSampler":
            inputs.update(steps=3, seed=seed)
        elif kind == "FKParticleSampler":
            inputs.update(steps=3, seed=seed, particles=min(inputs["particles"], 4))
        elif kind == "FKRewardLoader":
            inputs.update(reward="colorfulness", device="cpu")
        elif kind == "FKPotentialSelector":
            inputs.update(every_n_steps=1)
    return prompt


@pytest.mark.host
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fk_sd15.json", "fk_best_of_n.json", "fk_score_images.json"])
def test_workflow_runs_end_to_end_on_a_thin_checkpoint(name, object_info, comfy_server):
    prompt = tiny_run(to_api(load_workflow(next(p for p in PATHS if p.name == name)), object_info),
                      comfy_server.ckpt_name, seed=len(name))
    result = comfy_server.run_prompt(prompt)
    assert result.status == "success", (result.error, comfy_server.log_tail())
    image_nodes = [nid for nid, node in prompt.items() if node["class_type"] in ("SaveImage", "PreviewImage")]
    assert image_nodes
    for node_id in image_nodes:
        images = result.outputs(node_id).get("images")
        assert images, f"no images from node {node_id} ({prompt[node_id]['class_type']})"
        assert comfy_server.view_image(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    if name == "fk_best_of_n.json":  # the saved pair: best-of-N's best next to FK's best
        save = next(nid for nid, node in prompt.items() if node["class_type"] == "SaveImage")
        assert len(result.outputs(save)["images"]) == 2
    if name == "fk_score_images.json":  # the batch saved best first, the sheet previewed, the scores listed
        save = next(nid for nid, node in prompt.items() if node["class_type"] == "SaveImage")
        assert len(result.outputs(save)["images"]) == 4
        score = next(nid for nid, node in prompt.items() if node["class_type"] == "FKScoreImages")
        text = "\n".join(result.outputs(score).get("text", []))
        assert "#4 (image" in text and " - " in text and " color" in text, text  # components under each image


def tiny_video_run(prompt: dict, models: tuple[str, str], seed: int) -> dict:
    """The Wan example made cheap: a thin Wan 2.1 T2V file (UNETLoader), a random-weight Wan 2.1 VAE (VAELoader),
    random umt5-shaped text tokens in place of CLIPLoader + CLIPTextEncode, 64x64, 5 frames, 3 steps, 2 particles,
    a check every step, a reward with no weights; the trace shown by PreviewAny."""
    prompt = copy.deepcopy(prompt)
    unet_name, vae_name = models
    for node_id, node in list(prompt.items()):
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "UNETLoader":
            inputs.update(unet_name=unet_name, weight_dtype="default")
        elif kind == "VAELoader":
            inputs["vae_name"] = vae_name
        elif kind == "CLIPLoader":
            del prompt[node_id]
        elif kind == "CLIPTextEncode":
            prompt[node_id] = {"class_type": "FKTestWanTextConditioning", "inputs": {"seed": int(node_id), "tokens": 8}}
        elif kind == "EmptyHunyuanLatentVideo":
            inputs.update(width=64, height=64, length=5)
        elif kind == "FKParticleSampler":
            inputs.update(steps=3, seed=seed, particles=2)
            sampler_id = node_id
        elif kind == "FKRewardLoader":
            inputs.update(reward="colorfulness", device="cpu")
        elif kind == "FKPotentialSelector":
            inputs.update(every_n_steps=1)
    prompt["900"] = {"class_type": "PreviewAny", "inputs": {"source": [sampler_id, 4]}}  # trace_json
    return prompt


@pytest.mark.host
@pytest.mark.slow
def test_wan_video_workflow_runs_end_to_end_on_thin_wan_models(object_info, comfy_server):
    import comfy_host
    from PIL import Image

    models = comfy_host.write_thin_wan_files(comfy_server.base / "models")
    prompt = tiny_video_run(to_api(load_workflow(next(p for p in PATHS if p.name == "fk_wan_video.json")),
                                   object_info), models, seed=3)
    result = comfy_server.run_prompt(prompt)
    assert result.status == "success", (result.error, comfy_server.log_tail())
    save = next(nid for nid, node in prompt.items() if node["class_type"] == "SaveAnimatedWEBP")
    images = result.outputs(save)["images"]
    assert len(images) == 1 and result.outputs(save)["animated"] == [True]
    clip = Image.open(io.BytesIO(comfy_server.view_image(images[0])))
    assert (clip.n_frames, clip.size) == (5, (64, 64))  # the best particle's 5 frames, not one image
    sheet = next(nid for nid, node in prompt.items() if node["class_type"] == "PreviewImage")
    assert result.outputs(sheet)["images"]
    trace = json.loads(result.outputs("900")["text"][0])
    assert trace["video"]["latent_frames"] == 2 and trace["video"]["frames_scored"] == [0, 1, 3, 4]
    assert trace["video"]["combine"] == "mean" and len(trace["final_rewards"]) == 2
    assert trace["steps"] and all(len(check["rewards"]) == 2 for check in trace["steps"])  # frames were scored


# ---- in ComfyUI's own front end (headless Chromium; the `browser` fixture is in conftest.py) ----


@pytest.mark.host
@pytest.mark.browser
@pytest.mark.slow
def test_front_end_loads_each_workflow_and_builds_the_same_prompt(browser, comfy_server, object_info):
    """The real front end loads every example without missing nodes, and its own UI->API conversion
    (app.graphToPrompt) gives exactly what tests/workflow_api.to_api gives, so the converter used above is
    checked against the reference implementation."""
    import web_browser

    page = browser.open_comfy(comfy_server)
    try:
        for path in PATHS:
            workflow = load_workflow(path)
            page.evaluate("(wf) => window.app.loadGraphData(wf)", workflow)
            loaded = page.evaluate("() => window.app.graph._nodes.map((n) => [n.id, n.type, "
                                   "!!n.constructor.nodeData || ['Note', 'MarkdownNote'].includes(n.type)])")
            assert len(loaded) == len(workflow["nodes"]), path.name
            assert all(known for _, _, known in loaded), (path.name, loaded)
            web_browser.screenshot(page, f"workflow-{path.stem}.png")
            front_end = page.evaluate("async () => (await window.app.graphToPrompt()).output")
            ours = to_api(workflow, object_info)
            assert {k: v["class_type"] for k, v in front_end.items()} == \
                {k: v["class_type"] for k, v in ours.items()}, path.name
            for node_id, node in ours.items():
                assert front_end[node_id]["inputs"] == node["inputs"], (path.name, node_id,
                                                                        node["class_type"])
    finally:
        page.close()
