"""A run's trace in plain words: how strongly it steered, how many particles each check kept, and a warning
when an early check threw most of them away.

Early x0-predictions are blurry, so a reward there is close to noise (``testbeds.digits`` measures it: the
reward at the first checks correlates weakly with the final one). A check in that part of the run that keeps
only one or two particles bets the whole run on chance. Works on ``Trace.to_dict()`` output, so the nodes,
the contact sheet and saved trace files all use the same words.
"""

from __future__ import annotations

import statistics
from typing import Any, Optional

EARLY = 0.5  # checks in the first half of the run count as early: previews there carry little signal
FEW = 2  # keeping this many particles or fewer at an early check is a collapse (one, with fewer than 8 particles)


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def collapse_notes(trace: dict[str, Any]) -> list[str]:
    """One plain note if an early check kept only one or two particles (runs of 4 or more particles)."""
    n, num_steps = trace["num_particles"], max(1, trace["num_steps"])
    if n < 4:
        return []
    few = FEW if n >= 8 else 1  # 2 of 4 is what strength 0.5 keeps by design, not a collapse
    early = [s for s in trace["steps"]
             if s["resampled"] and s["step"] <= EARLY * num_steps and s.get("survivors", n) <= few]
    if not early:
        return []
    first = early[0]
    more = f" (and {len(early) - 1} more early checks)" if len(early) > 1 else ""
    config = trace.get("config", {})
    advice = []
    if config.get("lambda_mode", "fixed") == "fixed":
        advice.append("set lambda mode to 'auto' (strength 0.5) or lower lambda")
    else:
        advice.append("lower the strength")
    advice.append("start the window later")
    return [f"early collapse: the check at step {first['step']} of {num_steps} kept only {first['survivors']} of "
            f"{n} particles (ESS {first['ess']:.2g}){more}, in the first half of the run where previews carry "
            f"little signal, so the choice there was mostly chance; {', or '.join(advice)}"]


def summary_lines(trace: dict[str, Any]) -> list[str]:
    """A few lines for people: λ used, ESS and survivors at the checks, lineages, then the trace's notes."""
    n = trace["num_particles"]
    steps = trace["steps"]
    config = trace.get("config", {})
    mode = config.get("lambda_mode", "fixed")
    final = _fmt(trace.get("final_lmbda"))
    lines = []
    if not steps:
        lines.append(f"no checks inside the window; final weighting at λ {final}")
    else:
        lambdas = [s.get("lmbda") for s in steps]
        if mode == "fixed":
            lines.append(f"λ {_fmt(lambdas[0])} at each of {len(steps)} checks; final λ {final}")
        else:
            lines.append(f"λ rose from {_fmt(lambdas[0])} to {_fmt(lambdas[-1])} over {len(steps)} checks "
                         f"({mode}, strength {config.get('strength')}); final λ {final}")
        lowest = min(steps, key=lambda s: s["ess"])
        lines.append(f"ESS at the first check {steps[0]['ess']:.2g} of {n}; lowest {lowest['ess']:.2g} "
                     f"(step {lowest['step']})")
        resampled = [s for s in steps if s["resampled"]]
        if resampled:
            fewest = min(resampled, key=lambda s: s.get("survivors", n))
            median = statistics.median(s.get("survivors", n) for s in resampled)
            lines.append(f"particles kept per resampling: first {resampled[0].get('survivors', n)} of {n}, median "
                         f"{median:g}, fewest {fewest.get('survivors', n)} (step {fewest['step']})")
        else:
            lines.append("no check resampled (the weights stayed even enough)")
    if trace.get("origin") is not None:
        lines.append(f"{len(set(trace['origin']))} of {n} initial noises have descendants at the end")
    lines += [str(note) for note in trace.get("notes", [])]
    return lines
