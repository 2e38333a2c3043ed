"""Read ComfyUI UI-format workflows (what the front end saves) and turn them into API-format prompts.

The UI format stores widget values as a positional list (``widgets_values``); their names come from the
node's definition in ``/object_info``: widget inputs in ``input_order`` (required, then optional), one value
each, plus one extra value after every input with ``control_after_generate`` (the "fixed/randomize" widget
the front end adds after a seed). Inputs with ``forceInput`` and socket types (MODEL, LATENT, ...) have no
widget. A linked input (socket or widget turned into a socket) takes its value from the link instead.
"""

from __future__ import annotations

import json
from pathlib import Path

WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "workflows"

# Nodes that exist only in the front end: never sent to the server, not in /object_info.
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
MODEL_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")


def load_workflow(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def workflow_paths() -> list[Path]:
    return sorted(WORKFLOWS_DIR.glob("*.json"))


def input_specs(node_info: dict) -> dict:
    return {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}


def input_type(spec) -> str:
    """The type name of an /object_info input spec (a list of options is a COMBO)."""
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def combo_options(spec) -> list:
    if isinstance(spec[0], list):
        return spec[0]
    return spec[1].get("options", []) if len(spec) > 1 else []


def widget_layout(node_info: dict) -> list[tuple[str, bool]]:
    """[(input name, has a control_after_generate value after it)] in the order of ``widgets_values``."""
    specs = input_specs(node_info)
    order = node_info.get("input_order") or {
        category: list(node_info["input"].get(category, {})) for category in ("required", "optional")}
    layout = []
    for category in ("required", "optional"):
        for name in order.get(category, []):
            spec = specs[name]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if input_type(spec) in WIDGET_TYPES and not options.get("forceInput"):
                layout.append((name, bool(options.get("control_after_generate"))))
    return layout


def expected_widget_count(node_info: dict) -> int:
    return sum(2 if control else 1 for _, control in widget_layout(node_info))


def widget_values(node: dict, node_info: dict) -> dict:
    """Widget values of a UI node by input name (the control_after_generate entries dropped)."""
    layout = widget_layout(node_info)
    values = list(node.get("widgets_values") or [])
    expected = expected_widget_count(node_info)
    if len(values) != expected:
        raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values, "
                         f"its definition has {expected} ({[name for name, _ in layout]})")
    named, position = {}, 0
    for name, control in layout:
        named[name] = values[position]
        position += 2 if control else 1
    return named


def values_by_layout(node: dict, names: list[str]) -> dict:
    """Widget values of a node saved in a known layout (names in widgets_values order, the seed's
    ``control_after_generate`` included, as in web/fk_widget_layouts.json), control values dropped."""
    values = list(node.get("widgets_values") or [])
    if len(values) != len(names):
        raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values, layout has {len(names)}")
    return {name: value for name, value in zip(names, values) if name != "control_after_generate"}


def to_api(workflow: dict, object_info: dict, saved_layouts: dict | None = None) -> dict:
    """API-format prompt ({id: {"class_type", "inputs"}}) for every server-side node of a UI workflow.

    ``saved_layouts``: {node id: widget names} for nodes saved in an older layout than the server's (what an old
    release's front end would have sent: values by those names, newer inputs absent)."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node_id, node in nodes.items():
        if node["type"] in FRONTEND_ONLY:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node_id} ({node['type']}) is muted or bypassed: not supported here")
        if node["type"] not in object_info:
            raise KeyError(f"node {node_id}: type {node['type']!r} is not registered on the server")
        layout = (saved_layouts or {}).get(str(node_id))
        inputs = values_by_layout(node, layout) if layout else widget_values(node, object_info[node["type"]])
        for slot in node.get("inputs", []):
            if slot.get("link") is None:
                continue
            _, source, source_slot, *_ = links[slot["link"]]
            if nodes[source]["type"] in FRONTEND_ONLY:
                raise ValueError(f"node {node_id}.{slot['name']} is fed by a front-end-only node "
                                 f"({nodes[source]['type']}); use a server node (PrimitiveStringMultiline)")
            inputs[slot["name"]] = [str(source), source_slot]
        prompt[str(node_id)] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def is_model_file(value) -> bool:
    return isinstance(value, str) and value.lower().endswith(MODEL_FILE_SUFFIXES)
