"""A finished run as a host reports it: :class:`FKRunOutcome` (what the run produced beyond the samples, and the
trace record the host outputs) and :func:`run_summary`, a few lines of text to show under the node: the chosen
particle and its reward, the cost line, then fk_core.collapse's summary of the trace (λ, ESS, survivors,
lineages, notes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .collapse import summary_lines
from .engine import FKResult
from .ranking import reward_order
from .sampler_choice import SamplerChoice
from .scoring import cost_summary


@dataclass
class FKRunOutcome:
    """What a host's run produced beyond the samples it hands back: read by the node after sampling."""

    result: FKResult  # samples, rewards, weights, best and chosen particle, decoded final images, trace
    sampler: SamplerChoice  # the sampler requested, the one run between potential steps, and why
    chunk: int  # particles per model call
    video: Optional[dict] = None  # video runs: the reward's frame settings and the frames each check scored

    def trace_dict(self) -> dict:
        """The run's trace as the host outputs it (JSON-ready): the engine's trace, the output particles, the
        sampler, the chunk, the model evaluations, the video record and the particles' order by reward."""
        data = self.result.trace.to_dict()
        data["chosen_index"] = self.result.chosen_index
        data["best_index"] = self.result.best_index
        data["sampler"] = {"requested": self.sampler.requested, "used": self.sampler.used,
                           "note": self.sampler.note}
        data["particle_chunk"] = self.chunk
        data["model_evaluations"] = self.result.model_evaluations
        if self.video is not None:
            data["video"] = self.video
        data["order"] = [int(i) for i in reward_order(self.result.rewards)]
        return data


def run_summary(result: Any, trace: dict) -> str:
    """``result``: the run's FKResult; ``trace``: its ``Trace.to_dict()`` (plus whatever the host added)."""
    r = result.rewards[result.chosen_index]
    lines = [f"particle {result.chosen_index} of {len(result.rewards)} chosen, reward {float(r):.4g}"]
    if result.trace.cost is not None:
        lines.append(cost_summary(result.trace.cost))
    lines += summary_lines(trace)  # λ, ESS, survivors, lineages, then every note (sampler's too)
    return "\n".join(lines)
