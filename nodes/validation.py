"""Every FK node's widget values, checked in one place, in fk_core's one message style.

Every user-facing problem reads ``"<Node display name>: <input> <what is wrong>; <what to do>"``
(``fk_core.message``), so a user knows which node, which input and what to change. Two ways out, same text:

* ``validate_inputs`` (checked when the prompt is queued, before anything runs) returns the message string;
  ComfyUI answers HTTP 400 and the front end marks the node;
* at run time (linked inputs such as a latent or a trace) the node raises :class:`FKError` with it
  (:func:`require_widgets` for widget values that arrived through a link).

The checks themselves are fk_core's (fk_core/widget_checks.py: why they are re-applied at all is said there);
this file reads each node's schema as ComfyUI sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..fk_core import FKError, widgets_problem


def widget_specs(node_cls) -> dict[str, tuple[Any, dict]]:
    """{input name: (type, options dict)} for the node's required and optional inputs, as ComfyUI sees them."""
    info = node_cls.INPUT_TYPES()
    specs = {}
    for section in ("required", "optional"):
        for name, spec in (info.get(section) or {}).items():
            kind = spec[0]
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs[name] = (kind, extra)
    return specs


def check_widgets(node_cls, node: str, values: Mapping[str, Any],
                  *more: Callable[[str, Mapping[str, Any]], str | None]) -> str | None:
    """First problem among ``values`` (widget values ComfyUI hands validate_inputs), or None; then the node's
    own rules ``more`` (each ``(node, values) -> message or None``, e.g. fk_core's window_problem).

    Linked inputs never reach validate_inputs (ComfyUI leaves them out), so every value here is a constant
    typed into a widget or sent through the API.
    """
    return widgets_problem(node, values, widget_specs(node_cls), *more)


def require_widgets(node_cls, node: str, values: Mapping[str, Any],
                    *more: Callable[[str, Mapping[str, Any]], str | None]) -> None:
    """:func:`check_widgets` at run time: a widget turned into an input and linked (e.g. from a primitive node)
    is not checked when the prompt is queued, so ``execute`` checks again and raises the same message."""
    require(check_widgets(node_cls, node, values, *more))


def require(problem: str | None) -> None:
    """Run time: a problem found by a node's check function becomes the FKError ComfyUI shows (same text as the
    queue-time refusal)."""
    if problem:
        raise FKError(problem)
