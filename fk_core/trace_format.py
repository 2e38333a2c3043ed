"""The JSON trace format ``fk-steering-trace/1`` checked field by field, before anything is drawn from it.

A trace reaches FK Trace Charts as text a user can edit, splice or truncate. Every check names the field
(``steps[3].ancestors[1]``) and what is wrong with it, and the sizes a trace claims are bounded before any
work proportional to them starts: a 70-byte trace that claims three million particles is refused at once.
"""

from __future__ import annotations

import math
from typing import Any

TRACE_FORMAT = "fk-steering-trace/1"
MAX_PARTICLES = 4096  # the samplers make at most 256
MAX_POTENTIAL_STEPS = 10000  # the samplers run at most 10000 steps
MAX_DRAWN_POINTS = 2_000_000  # particles x (potential steps + 1): what the lineage picture draws


class TraceFormatError(ValueError):
    """The trace does not follow the format; the message names the field and the problem."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return f"the text {value[:30]!r}"
    if isinstance(value, float):
        return repr(value)
    return type(value).__name__ if not _is_number(value) else str(value)


def _fail(field: str, problem: str):
    raise TraceFormatError(f"field '{field}' {problem}")


def _int_field(value: Any, field: str, low: int, high: int | None = None) -> int:
    if not _is_int(value):
        _fail(field, f"is {_kind(value)}, not a whole number")
    if value < low or (high is not None and value > high):
        _fail(field, f"is {value}, outside {low}..{high if high is not None else '∞'}")
    return value


def _per_particle(values: Any, field: str, n: int) -> None:
    """A list with one entry per particle."""
    if not isinstance(values, list):
        _fail(field, f"is {_kind(values)}, not a list")
    if len(values) != n:
        key = field.rsplit(".", 1)[-1]
        raise TraceFormatError(f"field '{field}': '{key}' has {len(values)} entries for {n} particles")


def _rewards(values: Any, field: str, n: int) -> None:
    """n numbers (null = a failed reward)."""
    _per_particle(values, field, n)
    for i, v in enumerate(values):
        if v is not None and not _is_number(v):
            _fail(f"{field}[{i}]", f"is {_kind(v)}, not a number (or null)")


def _ancestors(values: Any, field: str, n: int) -> None:
    _per_particle(values, field, n)
    for i, a in enumerate(values):
        if not _is_int(a):
            _fail(f"{field}[{i}]", f"is {_kind(a)}, not a whole-number particle index")
        if not 0 <= a < n:
            _fail(f"{field}[{i}]", f"is {a}: an ancestor index is outside 0..{n - 1}")


def validate_trace(trace: Any) -> dict:
    """Return ``trace`` when it follows the format; raise :class:`TraceFormatError` naming the first bad field."""
    if not isinstance(trace, dict):
        raise TraceFormatError(f"is a {type(trace).__name__}: expected an FK trace (JSON object)")
    if trace.get("format") != TRACE_FORMAT:
        raise TraceFormatError(f"is not an FK steering trace (field 'format' is {trace.get('format')!r}, "
                               f"expected {TRACE_FORMAT!r})")
    n = trace.get("num_particles")
    if not _is_int(n) or n < 1:
        _fail("num_particles", f"must be a positive whole number, got {_kind(n)}")
    if n > MAX_PARTICLES:
        _fail("num_particles", f"claims {n} particles, more than any FK run makes (at most {MAX_PARTICLES})")
    num_steps = trace.get("num_steps")
    if num_steps is not None:
        _int_field(num_steps, "num_steps", 1, MAX_POTENTIAL_STEPS)
    steps = trace.get("steps")
    if not isinstance(steps, list):
        _fail("steps", "is missing" if steps is None else f"is {_kind(steps)}, not a list of potential steps")
    if len(steps) > MAX_POTENTIAL_STEPS:
        _fail("steps", f"has {len(steps)} potential steps, more than any run has ({MAX_POTENTIAL_STEPS})")
    if n * (len(steps) + 1) > MAX_DRAWN_POINTS:
        _fail("steps", f"with {n} particles x {len(steps)} steps is too large to draw "
                       f"(at most {MAX_DRAWN_POINTS} particle-steps)")
    previous = -1
    for j, step in enumerate(steps):
        where = f"steps[{j}]"
        if not isinstance(step, dict):
            _fail(where, f"is {_kind(step)}, not an object with step, rewards, ess, resampled and ancestors")
        for key in ("step", "rewards", "ess", "resampled", "ancestors"):
            if key not in step:
                _fail(f"{where}.{key}", "is missing")
        k = _int_field(step["step"], f"{where}.step", 0, (num_steps - 1) if num_steps else None)
        if k <= previous:
            _fail(f"{where}.step", f"is {k}, not after the previous potential step ({previous}): the steps "
                                   "must increase (is this trace spliced from two runs?)")
        previous = k
        _rewards(step["rewards"], f"{where}.rewards", n)
        ess = step["ess"]
        if ess is not None and not _is_number(ess):
            _fail(f"{where}.ess", f"is {_kind(ess)}, not a number")
        if _is_number(ess) and math.isfinite(ess) and not 0 <= ess <= n * (1 + 1e-9):
            _fail(f"{where}.ess", f"is {ess:g}, outside 0..{n} (the effective sample size of {n} particles)")
        if not isinstance(step["resampled"], bool):
            _fail(f"{where}.resampled", f"is {_kind(step['resampled'])}, not true/false")
        _ancestors(step["ancestors"], f"{where}.ancestors", n)
    for key in ("final_rewards", "final_log_weights"):
        if trace.get(key) is not None:
            _rewards(trace[key], key, n)
    origin = trace.get("origin")
    if origin is not None:
        _ancestors(origin, "origin", n)
    notes = trace.get("notes")
    if notes is not None and (not isinstance(notes, list) or not all(isinstance(x, str) for x in notes)):
        _fail("notes", "must be a list of texts")
    return trace
