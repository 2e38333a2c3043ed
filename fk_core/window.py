"""Where steering stops: once a copy made by resampling could no longer become a different picture.

Resampling copies good particles; the copies then diverge only through the noise the sampler still adds. Early
in a run that noise is larger than the data itself and copies end up as different as independent samples; late,
the picture is fixed and a copy ends as a near-duplicate of its sibling — the "four near-copies on the contact
sheet" of a steered run. How far two copies made at a check still drift apart depends on how much noise is left
*relative to the data's own scale*, not on which fraction of the steps has passed (a flow model with a shifted
schedule keeps most of its noise well past the middle of the run; an eps model has lost it long before).

The rule. Model the data, at the particles' own scale s, as Gaussian: for x = x0 + ρ·ε the part of x0 still
undecided has variance ρ²·s²/(ρ² + s²) per element, so two copies made now finish at an expected distance

    copy_variety(ρ, s) = ρ / √(ρ² + s²)

of that between two independent samples. ``FKConfig.copy_variety`` = (begin, stop) = (1.0, 0.9): steering stops
at the first check where copy_variety falls below 0.9 — the bar the project holds its defaults to (final
particles at least 90% as varied as independent samples): later copies could only be near-duplicates.

A begin bound below 1 (checks begin only once copy_variety < begin, e.g. 0.99 = ρ ≤ 7·s) is there but off by
default. On the flow beds of testbeds.family it helped (their shifted schedules keep previews blur until ~40%
of the steps), but on the demo's 768-element pictures it started after the sunset-or-not choice was made (FK
found a sunset in 2% of runs instead of 60%): coarse structure spread over many elements is decided at noise
far above the per-element scale, which this Gaussian model cannot see. The stop bound has no such problem: by
then the coarse structure is long decided.

Both act only inside the fractional window (``FKConfig.window``), which stays an outer bound.
Nothing here reads a reward, so the rule is free of the reward's units; it only decides which steps are checks
(a stopping time), and the final weighting still removes every potential applied, so the weighted output keeps
its target (tests/test_exact_target.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

# The data scale is read over the elements of x0, which takes image-like data: many elements on one scale (a
# latent has thousands; testbeds.digits has 64). A vector of a few unrelated coordinates has no such scale (the
# 2-D rare-attribute bed: its RMS mixes the offset between the coordinates with the modes' spread), so there
# the fractional window alone decides.
MIN_ELEMENTS = 64
NoiseRatio = Callable[[float], float]  # the host's σ → noise-to-signal ratio ρ of x (identity for x0 + σ·ε)


def data_scale(x0: torch.Tensor) -> float:
    """RMS deviation of the x0-predictions [N, ...] from their mean over every particle and element."""
    x0 = x0.detach().double()
    return float((x0 - x0.mean()).pow(2).mean().sqrt())


def copy_variety(noise_ratio: float, scale: float) -> float:
    """Expected final distance of two copies made at noise-to-signal ratio ρ, as a share of two independent
    samples' distance, for data of scale s (Gaussian model): ρ / √(ρ² + s²)."""
    if math.isinf(noise_ratio) or scale == 0.0:
        return 1.0
    return noise_ratio / math.sqrt(noise_ratio**2 + scale**2)


@dataclass
class WindowStop:
    """Why steering stopped before the window's end (``Trace.window_stop``)."""

    step: int  # the first step that would have been a check and was not
    sigma: float
    noise_ratio: float
    data_scale: float
    copy_variety: float
    min_copy_variety: float

    def to_dict(self) -> dict:
        return asdict(self)

    def note(self, num_steps: int) -> str:
        return (f"steering stopped at step {self.step} of {num_steps} (sigma {self.sigma:.3g}): copies made from "
                f"there on would end only {self.copy_variety:.0%} as different as independent samples (noise "
                f"{self.noise_ratio:.3g} against the particles' data scale {self.data_scale:.3g}; the bar is "
                f"{self.min_copy_variety:.0%}), so later checks could only make near-copies; the final weighting "
                "still scores the finished particles")


def start_note(first: int, skipped: int, num_steps: int) -> str:
    return (f"steering began at step {first} of {num_steps}: the {skipped} earlier step(s) of the window still had "
            "so much noise against the particles' data scale that their previews were blur (copies made there "
            "would end over 99% as different as independent samples)")


def late_start_note(stop: "WindowStop", num_steps: int) -> str:
    """Already below the bar at the window's first check: a window_start set late on purpose, or x0-predictions
    that are no data yet (a model with random weights predicts noise as large as the input). Either way the rule
    cannot tell where copies stop diverging, so the run keeps the window it was given."""
    return (f"the copy-variety stop is off for this run: at the window's first check (step {stop.step} of "
            f"{num_steps}) copies would already end only {stop.copy_variety:.0%} as different as independent "
            f"samples (noise {stop.noise_ratio:.3g}, data scale {stop.data_scale:.3g}), so the window alone decides")


def classify(sigma: float, x0: torch.Tensor, bounds: tuple[float, float],
             noise_ratio: Optional[NoiseRatio] = None) -> tuple[str, Optional[WindowStop]]:
    """("early", None), ("check", None) or ("stop", WindowStop) for a potential step at ``sigma`` whose
    x0-predictions are ``x0``; ``bounds`` = (begin below, stop below) in copy variety, e.g. (0.99, 0.9)."""
    begin, end = bounds
    if (begin >= 1.0 and end <= 0.0) or x0[0].numel() < MIN_ELEMENTS:
        return "check", None
    ratio = float(sigma) if noise_ratio is None else float(noise_ratio(float(sigma)))
    scale = data_scale(x0)
    share = copy_variety(ratio, scale)
    if share < end:
        return "stop", WindowStop(step=-1, sigma=float(sigma), noise_ratio=ratio, data_scale=scale,
                                  copy_variety=share, min_copy_variety=float(end))
    if share > begin:
        return "early", None
    return "check", None


class CopyWindow:
    """The rule applied along one run: ``phase`` says "early", "check" or "stop" for each potential step, and
    writes the trace's ``window_stop`` and its notes."""

    def __init__(self, bounds: tuple[float, float], noise_ratio: Optional[NoiseRatio], num_steps: int,
                 first_step: Optional[int]):
        self.bounds, self.noise_ratio, self.num_steps, self.first_step = bounds, noise_ratio, num_steps, first_step
        self.early = 0  # window steps skipped because their previews were still blur

    def phase(self, step: int, sigma, x0: torch.Tensor, trace) -> str:
        phase, stop = classify(float(sigma), x0, self.bounds, self.noise_ratio)
        if stop is not None:
            stop.step = step
        if phase == "stop" and step == self.first_step:  # see late_start_note
            trace.notes.append(late_start_note(stop, self.num_steps))
            self.bounds, phase = (1.0, 0.0), "check"
        if phase == "early":
            self.early += 1
        elif phase == "stop":
            trace.window_stop = stop.to_dict()
            trace.notes.append(stop.note(self.num_steps))
        elif self.early and not trace.steps:
            trace.notes.append(start_note(step, self.early, self.num_steps))
            self.early = 0
        return phase
