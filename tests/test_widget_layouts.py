"""Saved workflows and API prompts of earlier releases keep their meaning.

* web/fk_widget_layouts.json lists every layout of every FK node's saved widgets_values (oldest first); its last
  layout must be the live schema's, so a widget added, moved or renamed without a table entry (which is what
  web/fk_migrate.js maps by name) fails here.
* Released layouts are prefixes of the live one: new widgets go after the existing ones.
* Inputs added after the first release (0.1.0) are optional, and a prompt without them does what 0.1.0 did.
* The first release's example workflows, sent as 0.1.0's front end would have sent them, run on the host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_workflows import tiny_run
from workflow_api import FRONTEND_ONLY, is_model_file, to_api, widget_layout

PACK_DIR = Path(__file__).resolve().parents[1]
TABLE = {k: v for k, v in json.loads((PACK_DIR / "web" / "fk_widget_layouts.json").read_text()).items()
         if not k.startswith("_")}
SAVED = PACK_DIR / "tests" / "fixtures" / "saved_workflows"
MANIFEST = json.loads((SAVED / "manifest.json").read_text())
FIRST_RELEASE = "0.1.0"


def flat_layout(node_info: dict) -> list[str]:
    names = []
    for name, control in widget_layout(node_info):
        names += [name, "control_after_generate"] if control else [name]
    return names


def flat_live(entry: dict) -> list[str]:
    """The live layout on hosts without DynamicCombo (ComfyUI 0.3.64): the last one not grouped."""
    return next(layout["widgets"] for layout in reversed(entry["layouts"]) if "grouped" not in layout)


def live_layout(entry: dict, node_info: dict) -> list[str]:
    """The layout the host's node definition gives: a grouped one where the grouped input is a DynamicCombo."""
    for layout in reversed(entry["layouts"]):
        group = layout.get("grouped")
        spec = {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}.get(group)
        if group is None or (spec is not None and spec[0] == "COMFY_DYNAMICCOMBO_V3"):
            return layout["widgets"]
    raise AssertionError(f"{node_info['name']}: no layout for this host")


def host_forms(entry: dict) -> list[list[str]]:
    """The newest flat and the newest grouped layout: the current version as one host or another shows it (a save
    of the other host's form loads by name without a notice)."""
    newest = {bool(layout.get("grouped")): layout["widgets"] for layout in entry["layouts"]}
    return list(newest.values())


def released(layout: dict) -> bool:
    return "dev" not in layout["version"]


def first_release_layout(node_type: str) -> list[str]:
    return next(layout["widgets"] for layout in TABLE[node_type]["layouts"] if layout["version"] == FIRST_RELEASE)


def saved_layouts(entry: dict, workflow: dict) -> dict:
    """{node id: widget names} of a saved fixture's FK nodes, from its manifest entry."""
    types = {str(node["id"]): node["type"] for node in workflow["nodes"]}
    return {node_id: TABLE[types[node_id]]["layouts"][index]["widgets"]
            for node_id, index in entry["layouts"].items()}


def first_release_workflows() -> list[dict]:
    """Manifest entries of the example workflows as they were at the 0.1.0 release."""
    return [entry for entry in MANIFEST if FIRST_RELEASE in entry["in_releases"]]


# ------------------------------------------------------------------------------------------------ the table


def test_released_layouts_are_prefixes_of_the_live_one():
    """New widgets go after the existing ones: a released save restored by position keeps every old value.
    (A grouped layout, where each reward's settings follow it, cannot keep positions: fk_migrate.js maps saves
    by name there, tests/test_web_migration.py checks it.)"""
    for node_type, entry in TABLE.items():
        live = flat_live(entry)
        for layout in entry["layouts"]:
            if released(layout) and "grouped" not in layout:
                assert live[:len(layout["widgets"])] == layout["widgets"], (node_type, layout["version"])


def test_absent_means_names_inputs_some_earlier_layout_lacked():
    for node_type, entry in TABLE.items():
        live = entry["layouts"][-1]["widgets"]
        for name in entry["absent_means"]:
            assert name in live, (node_type, name)
            assert any(name not in layout["widgets"] for layout in entry["layouts"]), (node_type, name)


def test_every_saved_fixture_follows_its_manifest_layout():
    assert len(MANIFEST) >= 40  # every version of every example in history (scripts/collect_saved_workflows.py)
    for entry in MANIFEST:
        workflow = json.loads((SAVED / entry["file"]).read_text())
        for node_id, names in saved_layouts(entry, workflow).items():
            node = next(n for n in workflow["nodes"] if str(n["id"]) == node_id)
            assert len(node["widgets_values"]) == len(names), (entry["file"], node_id)


def test_first_release_fixtures_are_the_release_files():
    names = sorted(entry["path"] for entry in first_release_workflows())
    assert names == ["workflows/fk_best_of_n.json", "workflows/fk_flux.json", "workflows/fk_live_view.json",
                     "workflows/fk_sd15.json", "workflows/fk_sdxl.json"]


# ------------------------------------------------------------------------------------------ against the host


@pytest.mark.host
def test_table_ends_with_the_live_schema_of_every_node(fk_pack):
    """Change a node's widgets (add, move, rename) and this fails until the table, i.e. the migration, has it."""
    from importlib import import_module

    nodes = import_module(fk_pack.__name__ + ".nodes").NODES
    live = {cls.GET_NODE_INFO_V1()["name"]: cls.GET_NODE_INFO_V1() for cls in nodes}
    assert set(live) == set(TABLE), "every FK node needs its layouts in web/fk_widget_layouts.json"
    for node_type, info in live.items():
        assert flat_layout(info) == live_layout(TABLE[node_type], info), (
            f"{node_type}: widget order changed; add the new layout to web/fk_widget_layouts.json (new widgets "
            "go after the existing ones, optional) and say in CHANGELOG.md how old saves are mapped")


@pytest.mark.host
def test_inputs_added_after_the_first_release_are_optional(fk_pack):
    from importlib import import_module

    for cls in import_module(fk_pack.__name__ + ".nodes").NODES:
        info = cls.GET_NODE_INFO_V1()
        if not any(layout["version"] == FIRST_RELEASE for layout in TABLE[info["name"]]["layouts"]):
            continue  # a node added after the first release has no saves of that release to keep
        old = set(first_release_layout(info["name"]))
        added = [name for name, _ in widget_layout(info) if name not in old]
        required = set(info["input"].get("required", {}))
        assert not required & set(added), (info["name"], required & set(added))


@pytest.mark.host
def test_a_selector_without_the_new_inputs_means_the_fixed_lambda_of_0_1_0(fk_pack):
    from importlib import import_module

    selector = import_module(fk_pack.__name__ + ".nodes.potential").FKPotentialSelector
    config = selector.execute(potential="max", every_n_steps=2, window_start=0.2, window_end=1.0,
                              ess_threshold=0.0, resampling="systematic", output="best reward",
                              **{"lambda": 10.0}).result[0]
    assert (config.lambda_mode, config.lmbda) == ("fixed", 10.0)


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def first_release_prompt(entry: dict, object_info: dict) -> dict:
    workflow = json.loads((SAVED / entry["file"]).read_text())
    return to_api(workflow, object_info, saved_layouts=saved_layouts(entry, workflow))


@pytest.mark.host
@pytest.mark.parametrize("entry", first_release_workflows(), ids=lambda e: e["path"].split("/")[-1])
def test_first_release_api_prompt_passes_validation(entry, object_info, comfy_server):
    """The 0.1.0 prompt (no lambda_mode, strength, preview_decoder) is accepted: only the model files this test
    server lacks are refused."""
    prompt = first_release_prompt(entry, object_info)
    assert all(node["class_type"] not in FRONTEND_ONLY for node in prompt.values())
    selectors = [n["inputs"] for n in prompt.values() if n["class_type"] == "FKPotentialSelector"]
    assert selectors and all("lambda_mode" not in inputs for inputs in selectors)
    status, body = comfy_server.post_json("/prompt", {"prompt": prompt})
    errors = [(node_id, error) for node_id, entry_ in body.get("node_errors", {}).items()
              for error in entry_["errors"]]
    assert status in (200, 400), body
    for node_id, error in errors:
        value = error["extra_info"].get("received_value")
        assert error["type"] == "value_not_in_list" and is_model_file(value), (node_id, error)


@pytest.mark.host
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fk_sd15.json", "fk_best_of_n.json"])
def test_first_release_api_prompt_runs(name, object_info, comfy_server):
    entry = next(e for e in first_release_workflows() if e["path"].endswith(name))
    prompt = tiny_run(first_release_prompt(entry, object_info), comfy_server.ckpt_name, seed=7)
    for node in prompt.values():
        assert "lambda_mode" not in node["inputs"] and "preview_decoder" not in node["inputs"]
    result = comfy_server.run_prompt(prompt)
    assert result.status == "success", (result.error, comfy_server.log_tail())


# ------------------------------------------------------------- FK Reward Loader: settings grouped per reward

AUTO = "auto (default file, downloaded if missing)"
GROUPED_TYPE = "COMFY_DYNAMICCOMBO_V3"  # ComfyUI 0.33+: inputs that appear per option (io.DynamicCombo)


def reward_settings() -> dict:
    """{reward: the settings it reads}: fk_core's table, the one place this is written."""
    from fk_core.rewards.catalog import SPECS

    return {name: spec.settings for name, spec in SPECS.items()}


@pytest.mark.host
def test_loader_shows_only_the_settings_each_reward_reads(object_info):
    """0.33+: the reward is a DynamicCombo whose options hold exactly the settings fk_core lists for that reward
    (colorfulness: none; VLM judge: question, judge_model). 0.3.64: every setting flat, as in 0.2.0."""
    spec = object_info["FKRewardLoader"]["input"]["required"]["reward"]
    settings = reward_settings()
    if spec[0] != GROUPED_TYPE:
        optional = object_info["FKRewardLoader"]["input"]["optional"]
        assert {name for names in settings.values() for name in names} <= set(optional)
        pytest.skip("not applicable: this host has no DynamicCombo; the loader shows every setting (README)")
    options = {option["key"]: option["inputs"] for option in spec[1]["options"]}
    assert list(options) == list(settings)
    for reward, inputs in options.items():
        shown_ = [*inputs.get("required", {}), *inputs.get("optional", {})]
        assert shown_ == list(settings[reward]), reward
    assert options["colorfulness"] == {"required": {}} or not any(options["colorfulness"].values())
    assert set(options["VLM judge (Qwen-VL)"]["optional"]) == {"question", "judge_model"}
    flat = set(object_info["FKRewardLoader"]["input"].get("optional", {}))
    assert not flat & {"clip_architecture", "target", "color", "question", "objects", "judge_model"}


def scored_target_color(server, loader_inputs: dict, seed: int) -> str:
    """Score one pure green image with a target-color loader given ``loader_inputs``; the score text."""
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0x00FF00}},
        "2": {"class_type": "FKRewardLoader",
              "inputs": {"weights": AUTO, "device": "cpu", "precision": "auto", "prompt": f"run {seed}",
                         **loader_inputs}},
        "3": {"class_type": "FKScoreImages", "inputs": {"images": ["1", 0], "reward": ["2", 0]}},
    }
    result = server.run_prompt(prompt)
    assert result.status == "success", (result.error, server.log_tail())
    return "\n".join(result.outputs("3")["text"])


@pytest.mark.host
@pytest.mark.slow
def test_loader_prompt_with_grouped_or_flat_settings_runs_with_their_values(object_info, comfy_server):
    """The front end of a 0.33+ host sends only the chosen reward's settings, as ``reward.<name>``; an old prompt
    sends them flat. Both run, with the value sent (a green target on a green image scores higher than the
    default orange one), and give the same score."""
    flat = scored_target_color(comfy_server, {"reward": "target color", "color": "#00ff00"}, 1)
    default = scored_target_color(comfy_server, {"reward": "target color"}, 2)
    assert flat != default
    if object_info["FKRewardLoader"]["input"]["required"]["reward"][0] == GROUPED_TYPE:
        grouped = scored_target_color(comfy_server, {"reward": "target color", "reward.color": "#00ff00"}, 3)
        assert grouped == flat
        both = scored_target_color(comfy_server, {"reward": "target color", "reward.color": "#00ff00",
                                                  "color": "#ff0000"}, 4)
        assert both == flat  # the grouped value wins over a stray flat one


@pytest.mark.host
def test_loader_refuses_an_input_it_does_not_have(comfy_server):
    status, body = comfy_server.post_json("/prompt", {"prompt": {
        "2": {"class_type": "FKRewardLoader", "inputs": {"reward": "colorfulness", "weights": AUTO, "device": "cpu",
                                                         "precision": "auto", "questoin": "x"}},
        "3": {"class_type": "FKScoreImages", "inputs": {"images": ["1", 0], "reward": ["2", 0]}},
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}})
    text = json.dumps(body)
    if status == 200:  # 0.3.64 drops inputs a schema does not have before any check: nothing to refuse
        return
    assert "FK Reward Loader: questoin is not an input of this node" in text, body
