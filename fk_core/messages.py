"""The one message style for problems a user must fix, and the checks of single values every host needs.

Every user-facing problem reads ``"<where>: <input> <what is wrong>; <what to do>"`` (a host names its node or
tool as ``where``), so a user knows where, which input and what to change. NaN and infinities are named, bounds
are spelled as typed, and a file name that could leave a model folder is refused before any path is built.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from typing import Any

# Longest option list spelled out in a message; longer ones (sampler names, file lists) are summarised.
MAX_LISTED_OPTIONS = 12


def message(node: str, input_name: str, problem: str, advice: str) -> str:
    """The one message style: ``"<node>: <input> <what is wrong>; <what to do>"``."""
    return f"{node}: {input_name} {problem}; {advice}"


def shown(value: Any) -> str:
    """A value as a user typed it (NaN and infinities spelled plainly, long strings cut)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:g}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def options_text(options: Iterable[str]) -> str:
    options = list(options)
    if len(options) <= MAX_LISTED_OPTIONS:
        return ", ".join(repr(o) for o in options)
    return ", ".join(repr(o) for o in options[:MAX_LISTED_OPTIONS]) + f" … ({len(options)} in all)"


# --------------------------------------------------------------------------------------------- single values


def number_problem(node: str, name: str, value: Any, low: float | None = None, high: float | None = None,
                   whole: bool = False) -> str | None:
    """Message when ``value`` is not a finite number within [low, high] (None = no bound), else None."""
    kind = "a whole number" if whole else "a number"
    bounds = bounds_text(low, high)
    wanted = f"{kind} ({bounds})" if bounds else kind
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return message(node, name, f"must be {kind}, got {shown(value)}", f"type {wanted}")
    if isinstance(value, float) and math.isnan(value):
        return message(node, name, "is NaN (not a number)", f"type {wanted}")
    if isinstance(value, float) and math.isinf(value):
        return message(node, name, f"is {shown(value)} (infinite)", f"type {wanted}")
    if whole and isinstance(value, float) and not value.is_integer():  # an int is whole: float(2**64-1) is not
        return message(node, name, f"must be a whole number, got {shown(value)}", f"type {wanted}")
    if low is not None and value < low:
        return message(node, name, f"is {shown(value)}, below its minimum {_n(low)}",
                       f"set it to at least {_n(low)}" + (f" (at most {_n(high)})" if high is not None else ""))
    if high is not None and value > high:
        return message(node, name, f"is {shown(value)}, above its maximum {_n(high)}",
                       f"set it to at most {_n(high)}" + (f" (at least {_n(low)})" if low is not None else ""))
    return None


def bounds_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_n(low)} … {_n(high)}"
    if low is not None:
        return f"at least {_n(low)}"
    if high is not None:
        return f"at most {_n(high)}"
    return ""


def _n(bound: float) -> str:
    """A bound as typed: whole numbers in full (a seed's maximum is 18446744073709551615, not 1.8e+19)."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def choice_problem(node: str, name: str, value: Any, options: Iterable[str]) -> str | None:
    """Message when ``value`` is not one of ``options``, else None."""
    options = list(options)
    if value in options:
        return None
    return message(node, name, f"has an unknown value {shown(value)}", f"choose one of {options_text(options)}")


# --------------------------------------------------------------------------------------------- file names

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


def file_name_problem(node: str, name: str, value: str, what: str = "a file name from the list") -> str | None:
    """Message when ``value`` could leave the model folders (absolute path, drive, '..', NUL), else None.

    Checked before any path is built or opened: a name is only ever joined onto a model folder.
    """
    if not isinstance(value, str):
        return message(node, name, f"must be text, got {shown(value)}", f"pick {what}")
    parts = re.split(r"[\\/]+", value)
    if "\x00" in value or os.path.isabs(value) or value.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", value):
        return message(node, name, f"{shown(value)} is a path outside the model folders",
                       f"pick {what} (a name inside the model folder, not an absolute path)")
    if ".." in parts:
        return message(node, name, f"{shown(value)} leaves the model folder ('..')",
                       f"pick {what} (a name inside the model folder)")
    return None


def is_tag(value: str) -> bool:
    """A plain published-weights tag such as 'openai' or 'laion2b_s32b_b82k' (no folder, no extension path)."""
    return bool(_TAG.match(value or ""))


def finite(t) -> bool:
    """No NaN/inf in tensor ``t`` (integer tensors always pass)."""
    return bool(t.isfinite().all()) if t.is_floating_point() or t.is_complex() else True
