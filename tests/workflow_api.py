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


GROUPED_TYPE = "COMFY_DYNAMICCOMBO_V3"  # io.DynamicCombo (ComfyUI 0.33+): a combo whose option brings its own inputs
LAYOUTS_FILE = WORKFLOWS_DIR.parent / "web" / "fk_widget_layouts.json"


def group_options(spec) -> dict[str, dict]:
    """{option: {input name: spec}} of a DynamicCombo input spec."""
    return {option["key"]: {**(option["inputs"].get("required") or {}), **(option["inputs"].get("optional") or {})}
            for option in spec[1].get("options", [])}


def input_specs(node_info: dict) -> dict:
    """Every input's spec by the name the front end gives it (a grouped input's as ``group.input``)."""
    specs = {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}
    for name, spec in list(specs.items()):
        if input_type(spec) == GROUPED_TYPE:
            for inputs in group_options(spec).values():
                specs.update({f"{name}.{nested}": nested_spec for nested, nested_spec in inputs.items()})
    return specs


def input_type(spec) -> str:
    """The type name of an /object_info input spec (a list of options is a COMBO)."""
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def combo_options(spec) -> list:
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == GROUPED_TYPE:
        return list(group_options(spec))
    return spec[1].get("options", []) if len(spec) > 1 else []


def _is_widget(spec) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return input_type(spec) in WIDGET_TYPES | {GROUPED_TYPE} and not options.get("forceInput")


def widget_layout(node_info: dict, values: list | None = None,
                  chosen: dict | None = None) -> list[tuple[str, bool]]:
    """[(input name, has a control_after_generate value after it)] in the order of ``widgets_values``.

    A grouped input (DynamicCombo) is followed by the widgets of its chosen option, named ``group.input``: the
    option is read from ``values`` (saved positionally) or ``chosen`` ({group: option}); with neither the group's
    widgets are one placeholder ``group.*`` (as web/fk_widget_layouts.json writes them)."""
    specs = {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}
    order = node_info.get("input_order") or {
        category: list(node_info["input"].get(category, {})) for category in ("required", "optional")}
    layout, position = [], 0
    for category in ("required", "optional"):
        for name in order.get(category, []):
            spec = specs[name]
            if not _is_widget(spec):
                continue
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            layout.append((name, bool(options.get("control_after_generate"))))
            position += 2 if options.get("control_after_generate") else 1
            if input_type(spec) != GROUPED_TYPE:
                continue
            if values is None and chosen is None:
                layout.append((f"{name}.*", False))
                continue
            saved = values is not None and position <= len(values)
            option = values[position - 1] if saved else (chosen or {}).get(name)
            nested = [key for key, sub in group_options(spec).get(option, {}).items() if _is_widget(sub)]
            layout += [(f"{name}.{key}", False) for key in nested]
            position += len(nested)
    return layout


def expected_widget_count(node_info: dict, values: list | None = None) -> int:
    return sum(2 if control else 1 for _, control in widget_layout(node_info, values))


def layout_table() -> dict:
    return {key: entry for key, entry in json.loads(LAYOUTS_FILE.read_text()).items() if not key.startswith("_")}


def expand_layout(names: list[str], values: list, node_info: dict) -> list[str]:
    """A table layout's names with ``group.*`` replaced by the widgets of the option ``values`` chose."""
    specs = {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}
    expanded = []
    for name in names:
        if not name.endswith(".*"):
            expanded.append(name)
            continue
        group = name[:-2]
        option = values[names.index(group)] if names.index(group) < len(values) else None
        spec = specs.get(group)
        if spec and input_type(spec) == GROUPED_TYPE:
            nested = [key for key, sub in group_options(spec).get(option, {}).items() if _is_widget(sub)]
        else:  # a host without DynamicCombo lists each option's settings in the combo's fk_settings
            nested = (spec[1].get("fk_settings", {}) if spec and len(spec) > 1 else {}).get(option, [])
        expanded += [f"{group}.{key}" for key in nested]
    return expanded


def _fits(spec, value) -> bool:
    if spec is None:
        return True
    kind = input_type(spec)
    if kind in ("COMBO", GROUPED_TYPE):
        return value in combo_options(spec)
    if kind in ("INT", "FLOAT"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "STRING":
        return isinstance(value, str)
    return True


def _base(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def migrated_values(node: dict, node_info: dict) -> dict | None:
    """What web/fk_migrate.js makes of an FK node saved in another layout than the live one: the live widgets'
    values by name (a grouped widget ``reward.color`` takes a flat save's ``color`` and back; a widget the save
    lacks: its absent_means, else its default). None when the save fits no layout of the table."""
    entry = layout_table().get(node["type"])
    saved = list(node.get("widgets_values") or [])
    if entry is None:
        return None
    specs = input_specs(node_info)
    best, best_score = None, -1
    for layout in entry["layouts"]:
        names = expand_layout(layout["widgets"], saved, node_info)
        if len(names) != len(saved):
            continue
        score = sum(_fits(specs.get(name) or specs.get(_base(name)), value) for name, value in zip(names, saved))
        if score >= best_score:
            best, best_score = names, score
    if best is None:
        return None
    named = {_base(name): value for name, value in zip(best, saved) if name != "control_after_generate"}
    groups = {name: named.get(name) for name, spec in specs.items() if input_type(spec) == GROUPED_TYPE}
    values = {}
    for name, _control in widget_layout(node_info, chosen=groups):
        if _base(name) in named:
            values[name] = named[_base(name)]
        elif name in entry["absent_means"]:
            values[name] = entry["absent_means"][name]
        else:
            spec = specs[name]
            values[name] = spec[1].get("default") if len(spec) > 1 else None
    return values


def widget_values(node: dict, node_info: dict) -> dict:
    """Widget values of a UI node by input name (the control_after_generate entries dropped). An FK node saved
    in an earlier layout (web/fk_widget_layouts.json) gets its values by name, as web/fk_migrate.js maps them."""
    values = list(node.get("widgets_values") or [])
    layout = widget_layout(node_info, values)
    expected = expected_widget_count(node_info, values)
    if len(values) != expected:
        migrated = migrated_values(node, node_info)
        if migrated is not None:
            return migrated
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
