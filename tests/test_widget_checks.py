"""fk_core/widget_checks.py without a host: widget values re-checked against a schema's limits and options, then
the node's own rules (every node's schema in ComfyUI: test_bad_inputs.py, test_validation_messages.py)."""

from __future__ import annotations

from fk_core import widget_problem, widgets_problem

SPECS = {"steps": ("INT", {"min": 1, "max": 100}), "cfg": ("FLOAT", {"min": 0.0, "max": 30.0}),
         "mode": ("COMBO", {"options": ["a", "b"]}), "old": (["x", "y"], {}), "text": ("STRING", {}),
         "image": ("IMAGE", {})}


def test_each_kind_is_checked_as_the_host_would_plus_nan():
    assert widget_problem("N", "steps", 5, *SPECS["steps"]) is None
    assert widget_problem("N", "steps", 2.5, *SPECS["steps"]).startswith("N: steps ")
    assert "N: steps " in widget_problem("N", "steps", 0, *SPECS["steps"])
    assert widget_problem("N", "cfg", float("nan"), *SPECS["cfg"]).startswith("N: cfg ")
    assert widget_problem("N", "mode", "c", *SPECS["mode"]).startswith("N: mode ")
    assert widget_problem("N", "old", "z", *SPECS["old"]).startswith("N: old ")  # a V1-style list of choices
    assert widget_problem("N", "text", 3, *SPECS["text"]) == "N: text must be text, got 3; type text"
    assert widget_problem("N", "image", object(), *SPECS["image"]) is None  # not a widget: nothing to check


def test_first_problem_in_order_then_the_nodes_rules():
    assert widgets_problem("N", {"steps": 0, "cfg": -1.0}, SPECS).startswith("N: steps ")
    # undeclared inputs and None (a linked input) are skipped
    assert widgets_problem("N", {"unknown": float("nan"), "steps": None}, SPECS) is None
    calls = []

    def rule(node, values):
        calls.append(dict(values))
        return f"{node}: cfg above steps" if values["cfg"] > values["steps"] else None

    assert widgets_problem("N", {"steps": 5, "cfg": 7.0}, SPECS, rule) == "N: cfg above steps"
    assert widgets_problem("N", {"steps": 0, "cfg": 7.0}, SPECS, rule).startswith("N: steps ")
    assert len(calls) == 1  # rules run only once every value passed
