"""A node's widget values re-checked against its schema, in fk_core.messages' style.

``specs`` is ``{input name: (kind, options)}`` as a ComfyUI schema declares inputs: kind ``"FLOAT"``, ``"INT"``,
``"STRING"``, ``"COMBO"`` (options under ``"options"``) or a list of choices; options ``min`` / ``max``. Why a host
re-checks: ComfyUI's V3 ``validate_inputs(cls, **kw)`` switches off the host's own min/max (and on newer hosts
combo) checks for every input it receives, ComfyUI 0.3.64 never checks V3 combo values, and JSON ``NaN`` passes
every min/max comparison; here the limits and options are re-applied and NaN/inf refused, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .messages import choice_problem, message, number_problem, shown

# a node's own rule over all its values, e.g. window_problem: (node, values) -> message or None
Rule = Callable[[str, Mapping[str, Any]], "str | None"]


def widget_problem(node: str, name: str, value: Any, kind: Any, extra: Mapping) -> str | None:
    """Re-apply what ComfyUI would have checked for one widget value, plus NaN/inf, plus combo options."""
    if kind == "FLOAT":
        return number_problem(node, name, value, extra.get("min"), extra.get("max"))
    if kind == "INT":
        return number_problem(node, name, value, extra.get("min"), extra.get("max"), whole=True)
    if kind == "COMBO" or isinstance(kind, (list, tuple)):
        options = extra.get("options") if kind == "COMBO" else kind
        if options is not None:
            return choice_problem(node, name, value, options)
    if kind == "STRING" and value is not None and not isinstance(value, str):
        return message(node, name, f"must be text, got {shown(value)}", "type text")
    return None


def widgets_problem(node: str, values: Mapping[str, Any], specs: Mapping[str, tuple[Any, Mapping]],
                    *rules: Rule) -> str | None:
    """First problem among ``values`` (inputs the schema does not declare, and None values, are skipped), or
    None; then the node's own ``rules`` in order."""
    for name, value in values.items():
        if name not in specs or value is None:
            continue
        kind, extra = specs[name]
        problem = widget_problem(node, name, value, kind, extra)
        if problem:
            return problem
    return next((problem for rule in rules if (problem := rule(node, values))), None)
