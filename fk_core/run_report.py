"""A finished run told in a few lines of text for the host to show under its node: the chosen particle and its
reward, the cost line, then fk_core.collapse's summary of the trace (λ, ESS, survivors, lineages, notes)."""

from __future__ import annotations

from typing import Any

from .collapse import summary_lines
from .scoring import cost_summary


def run_summary(result: Any, trace: dict) -> str:
    """``result``: the run's FKResult; ``trace``: its ``Trace.to_dict()`` (plus whatever the host added)."""
    r = result.rewards[result.chosen_index]
    # particles are #1..#N by index in every view (live view, contact sheet, charts)
    lines = [f"particle #{result.chosen_index + 1} of {len(result.rewards)} chosen, reward {float(r):.4g}"]
    if result.trace.cost is not None:
        lines.append(cost_summary(result.trace.cost))
    lines += summary_lines(trace)  # λ, ESS, survivors, lineages, then every note (sampler's too)
    return "\n".join(lines)
