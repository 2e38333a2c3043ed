"""Notes for inputs that are legal but surprising: the run goes on, and the trace says what happened.

``config_notes`` looks at the settings before the run, ``run_notes`` at the trace after it. Plain words,
one line each, with what to change.
"""

from __future__ import annotations

from .schedule import potential_steps


def config_notes(config, num_steps: int) -> list[str]:
    notes = []
    lmbda = float(config.lmbda)
    if lmbda < 0 and getattr(config, "lambda_mode", "fixed") == "fixed":  # auto ignores lambda; adaptive refuses it
        notes.append(f"lambda is negative ({lmbda:g}): FK steers AWAY from what the reward likes; use a positive "
                     "lambda to favour it")
    start, end = config.window
    steps = potential_steps(num_steps, config.every, start, end) if num_steps >= 1 else []
    if not steps:
        if end - start <= 0:
            why = f"the window {start:g}–{end:g} covers nothing"
        elif num_steps <= 2:
            why = f"a run of {num_steps} step(s) has no step between the first and the last"
        else:
            why = f"no step of the {num_steps} lies inside the window {start:g}–{end:g}"
        notes.append(f"no potential step in this run ({why}): FK only picks the best of the particles at the "
                     "end (best-of-N); widen the window or use more steps to steer")
    return notes


def run_notes(trace) -> list[str]:
    """After the run: a λ so strong that every check kept a single particle."""
    steps = [s for s in trace.steps if s.resampled]
    if trace.num_particles > 1 and steps and all(len(set(int(a) for a in s.ancestors)) == 1 for s in steps):
        return [f"every check kept only one of the {trace.num_particles} particles (lambda "
                f"{trace.config.get('lmbda', '?')} is very strong for this reward's scale): the particles are "
                "copies of one image; lower lambda or set ess_threshold (e.g. 0.5) to keep variety"]
    return []
