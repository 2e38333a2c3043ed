"""Pictures of a run's trace: the reward/ESS chart and the lineage ("river") picture.

Everything here reads the JSON form of a trace (``Trace.to_dict()``, format ``fk-steering-trace/1``), the
same numbers the sampler node outputs as its trace STRING and the live web view receives: one source of
truth. A :class:`~fk_core.trace.Trace` object is accepted too and converted with its ``to_dict``.

Outputs are ComfyUI-style IMAGE tensors ``[1, H, W, 3]`` float in [0, 1], drawn with PIL. No ComfyUI import.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .score_sheet import short_name
from .trace import changed_population
from .trace import lineage_paths as trace_lineage
from .trace_format import TRACE_FORMAT, validate_trace  # noqa: F401 (TRACE_FORMAT: importers read it here)
from .trace_format import TraceFormatError as TraceError  # one error class: charts add no checks of their own

# Colours chosen to read on a dark ComfyUI-like background and on paper.
BACKGROUND = (32, 32, 36)
PANEL = (24, 24, 28)
GRID = (60, 60, 68)
TEXT = (220, 220, 225)
MUTED = (140, 140, 150)
BAND_OUTER = (60, 90, 140)
BAND_INNER = (90, 135, 200)
MEDIAN = (170, 205, 255)
BEST = (255, 190, 60)
ESS = (110, 210, 130)
RESAMPLE = (230, 90, 90)
COMPONENT_COLOURS = ((240, 130, 80), (90, 200, 225), (205, 125, 225), (160, 220, 90))  # FK Reward Combine: ≤ 4
COMPONENTS_SHARE = 0.42  # of the reward chart's height, for the components panel when the trace has one

TraceLike = Union[dict, str, Any]


def load_trace(trace: TraceLike) -> dict:
    """The trace as a validated dict, from a dict, its JSON text, or an object with ``to_dict()``."""
    if isinstance(trace, str):
        try:
            trace = json.loads(trace)
        except json.JSONDecodeError as exc:
            raise TraceError(f"is not valid JSON ({exc.msg} at position {exc.pos})") from None
        except RecursionError:
            raise TraceError("is nested too deeply to be an FK trace") from None
    elif hasattr(trace, "to_dict"):
        trace = trace.to_dict()
    return validate_trace(trace)


def _num(v: Optional[float]) -> float:
    """JSON null (a failed reward or zero weight) as NaN."""
    return float("nan") if v is None else float(v)


def lineage_paths(trace: TraceLike) -> list[list[int]]:
    """For each final particle, its slot at every potential step, then its final slot (fk_core.trace's rule)."""
    t = load_trace(trace)
    return trace_lineage([step["ancestors"] for step in t["steps"]], t["num_particles"])


def reward_history(trace: TraceLike, particle: int) -> list[Optional[float]]:
    """Rewards along final particle ``particle``'s ancestry: one per potential step, then its final reward."""
    t = load_trace(trace)
    if not 0 <= particle < t["num_particles"]:
        raise TraceError(f"particle {particle} does not exist (0..{t['num_particles'] - 1})")
    path = lineage_paths(t)[particle]
    history = [step["rewards"][path[j]] for j, step in enumerate(t["steps"])]
    finals = t.get("final_rewards")
    history.append(finals[particle] if finals else None)
    return history


def best_final_particle(trace: TraceLike) -> Optional[int]:
    """Index of the highest final reward (None when no final reward is finite)."""
    t = load_trace(trace)
    finals = np.array([_num(v) for v in (t.get("final_rewards") or [])], dtype=np.float64)
    if finals.size == 0 or not np.isfinite(finals).any():
        return None
    return int(np.nanargmax(finals))


def step_quantiles(rewards: list[Optional[float]]) -> Optional[tuple[float, float, float, float, float]]:
    """(min, q25, median, q75, max) of the finite rewards, None when none is finite."""
    r = np.array([_num(v) for v in rewards], dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return None
    q = np.quantile(r, [0.0, 0.25, 0.5, 0.75, 1.0])
    return tuple(float(v) for v in q)


def chart_series(trace: TraceLike) -> dict:
    """The numbers the reward/ESS chart shows, as plain lists (also handy for tests and other front ends)."""
    t = load_trace(trace)
    xs, quant, ess, resampled = [], [], [], []
    for step in t["steps"]:
        xs.append(int(step["step"]))
        quant.append(step_quantiles(step["rewards"]))
        ess.append(_num(step["ess"]))
        resampled.append(changed_population(step["ancestors"], step["resampled"]))  # λ 0: nothing marked
    best = best_final_particle(t)
    return {
        "x": xs, "quantiles": quant, "ess": ess, "resampled": resampled,
        "final_x": int(t.get("num_steps") or (xs[-1] + 1 if xs else 1)),
        "final_quantiles": step_quantiles(t.get("final_rewards") or []),
        "best": best,
        "best_history": reward_history(t, best) if best is not None else None,
    }


def component_series(trace: TraceLike) -> Optional[dict]:
    """A combined reward's terms over the run, None for a single reward: ``names``, ``weights``, ``x`` (each
    potential step, then the end), and per term its weighted share (weight x value) along the best final
    particle's ancestry (``best``) and averaged over the particles (``mean``; failed values left out).
    A share is None where the term's value is missing (a failed reward, or a check that kept no components)."""
    t = load_trace(trace)
    final = t.get("final_components")
    records = [step.get("components") for step in t["steps"]] + [final]
    first = next((r for r in records if r), None)
    if first is None:
        return None
    names, weights = list(first["names"]), [float(w) for w in first["weights"]]
    best = best_final_particle(t)
    path = lineage_paths(t)[best] if best is not None else None

    def share(record: Optional[dict], k: int, i: int) -> Optional[float]:
        if not record or record.get("names") != names or record["values"][k][i] is None:
            return None
        return weights[k] * float(record["values"][k][i])

    def mean(record: Optional[dict], k: int) -> Optional[float]:
        values = [share(record, k, i) for i in range(t["num_particles"])] if record else []
        values = [v for v in values if v is not None and math.isfinite(v)]
        return sum(values) / len(values) if values else None

    steps_x = [int(step["step"]) for step in t["steps"]]
    xs = steps_x + [int(t.get("num_steps") or (steps_x[-1] + 1 if steps_x else 1))]
    return {
        "names": names, "weights": weights, "x": xs, "best_particle": best,
        "best": [[share(r, k, path[j]) if path is not None else None for j, r in enumerate(records)]
                 for k in range(len(names))],
        "mean": [[mean(r, k) for r in records] for k in range(len(names))],
    }


# ---------------------------------------------------------------- drawing helpers


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy())[None]


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi - lo < 1e-12:
        pad = max(abs(hi) * 0.05, 0.5)
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _check_size(width: int, height: int) -> None:
    if not (160 <= width <= 4096 and 120 <= height <= 4096):
        raise TraceError(f"chart size {width}x{height} is outside 160x120 .. 4096x4096")


# ---------------------------------------------------------------- reward / ESS chart


def reward_ess_chart(trace: TraceLike, width: int = 768, height: int = 384) -> torch.Tensor:
    """Reward quantile band over the potential steps, the best final particle's reward history, the ESS,
    and the resampling steps marked. A combined reward's trace adds a panel underneath: one line per term, its
    weighted share along the best particle's ancestry (solid) and over all particles (thin), with a legend.
    Returns ``[1, height, width, 3]``."""
    _check_size(width, height)
    t = load_trace(trace)
    s = chart_series(t)
    parts = component_series(t)
    n = t["num_particles"]
    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    fs = max(10, height // 32)
    font, small = _font(fs), _font(max(9, fs - 2))
    left, right, top, bottom = 8 * fs // 2 + 14, 5 * fs // 2 + 14, 2 * fs + 10, 2 * fs + 12
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    if parts is not None:  # the components panel takes the lower part, the step axis stays at the bottom
        split = int(y1 - (y1 - y0) * COMPONENTS_SHARE)
        _draw_components(d, parts, (x0, x1, split + fs + 6, y1), max(s["final_x"], 1), small)
        y1 = split - 4
    d.rectangle([x0, y0, x1, y1], fill=PANEL, outline=GRID)

    values = [v for q in s["quantiles"] if q for v in (q[0], q[4])]
    if s["final_quantiles"]:
        values += [s["final_quantiles"][0], s["final_quantiles"][4]]
    lo, hi = _nice_range(min(values, default=0.0), max(values, default=1.0))
    x_max = max(s["final_x"], 1)

    def px(step: float) -> float:
        return x0 + (x1 - x0) * step / x_max

    def py(r: float) -> float:
        return y1 - (y1 - y0) * (r - lo) / (hi - lo)

    def py_ess(e: float) -> float:
        return y1 - (y1 - y0) * e / n

    for k in range(5):  # horizontal grid with reward labels (left) and ESS labels (right)
        frac = k / 4
        y = y1 - (y1 - y0) * frac
        d.line([x0, y, x1, y], fill=GRID)
        d.text((x0 - 4, y), _fmt(lo + (hi - lo) * frac), fill=TEXT, font=small, anchor="rm")
        d.text((x1 + 4, y), _fmt(n * frac), fill=ESS, font=small, anchor="lm")

    for x, res in zip(s["x"], s["resampled"]):  # resampling steps: red ticks across the panel
        if res:
            d.line([px(x), y0, px(x), y1], fill=(90, 45, 50))
            d.polygon([(px(x) - 4, y0), (px(x) + 4, y0), (px(x), y0 + 7)], fill=RESAMPLE)

    _draw_series(d, s, px, py, py_ess)

    best = "" if s["best"] is None else f" · best #{s['best'] + 1} ancestry"  # #1..#N, as every view numbers them
    title = f"reward (band: min-max, 25-75%, median){best}"
    d.text((x0, 4), title, fill=TEXT, font=font)
    d.text((x1, 4), "ESS", fill=ESS, font=font, anchor="ra")
    d.text(((x0 + x1) / 2, height - 4), f"step (of {s['final_x']}) · red: resampled", fill=MUTED, font=small,
           anchor="md")
    return _to_tensor(img)


def _draw_components(d: ImageDraw.ImageDraw, parts: dict, box: tuple, x_max: int, font) -> None:
    """The components panel in ``box`` (x0, x1, y0, y1): zero line, one line per term (solid: the best
    particle's ancestry, thin: the particle mean), the share range at the left and a legend above."""
    x0, x1, y0, y1 = box
    d.rectangle([x0, y0, x1, y1], fill=PANEL, outline=GRID)
    values = [v for series in parts["best"] + parts["mean"] for v in series if v is not None and math.isfinite(v)]
    lo, hi = _nice_range(min(values + [0.0]), max(values + [0.0]))

    def px(step: float) -> float:
        return x0 + (x1 - x0) * step / x_max

    def py(v: float) -> float:
        return y1 - (y1 - y0) * (v - lo) / (hi - lo)

    d.line([x0, py(0.0), x1, py(0.0)], fill=GRID)
    d.text((x0 - 4, y0), _fmt(hi), fill=TEXT, font=font, anchor="rt")
    d.text((x0 - 4, y1), _fmt(lo), fill=TEXT, font=font, anchor="rb")
    legend_x = x0
    for k, name in enumerate(parts["names"]):
        colour = COMPONENT_COLOURS[k % len(COMPONENT_COLOURS)]
        for series, width in ((parts["mean"][k], 1), (parts["best"][k], 2)):
            pts = [(px(x), py(v)) for x, v in zip(parts["x"], series) if v is not None and math.isfinite(v)]
            if len(pts) >= 2:
                d.line(pts, fill=colour, width=width)
        for x, v in zip(parts["x"], parts["best"][k]):
            if v is not None and math.isfinite(v):
                d.ellipse([px(x) - 2, py(v) - 2, px(x) + 2, py(v) + 2], fill=colour)
        label = f"{parts['weights'][k]:g} x {short_name(name)}"
        d.rectangle([legend_x, y0 - 9, legend_x + 8, y0 - 3], fill=colour)
        d.text((legend_x + 11, y0 - 2), label, fill=TEXT, font=font, anchor="lb")
        legend_x += 11 + int(d.textlength(label, font=font)) + 12
    note = "shares: best's ancestry (thick), mean (thin)"
    if legend_x + d.textlength(note, font=font) < x1:
        d.text((x1, y0 - 2), note, fill=MUTED, font=font, anchor="rb")


def _draw_series(d: ImageDraw.ImageDraw, s: dict, px: Callable, py: Callable, py_ess: Callable) -> None:
    """The reward band and median, the ESS line and the best final particle's reward history."""
    pts = [(x, q) for x, q in zip(s["x"], s["quantiles"]) if q]
    if s["final_quantiles"]:
        pts.append((s["final_x"], s["final_quantiles"]))
    for (lo_i, hi_i, colour) in ((0, 4, BAND_OUTER), (1, 3, BAND_INNER)):
        if len(pts) >= 2:
            poly = [(px(x), py(q[hi_i])) for x, q in pts] + [(px(x), py(q[lo_i])) for x, q in reversed(pts)]
            d.polygon(poly, fill=colour)
    if len(pts) >= 2:
        d.line([(px(x), py(q[2])) for x, q in pts], fill=MEDIAN, width=2)
    for x, q in pts:
        d.ellipse([px(x) - 2, py(q[2]) - 2, px(x) + 2, py(q[2]) + 2], fill=MEDIAN)

    ess_pts = [(px(x), py_ess(e)) for x, e in zip(s["x"], s["ess"]) if math.isfinite(e)]
    if len(ess_pts) >= 2:
        d.line(ess_pts, fill=ESS, width=2)
    for x, y in ess_pts:
        d.rectangle([x - 2, y - 2, x + 2, y + 2], fill=ESS)

    if s["best_history"]:
        xs = s["x"] + [s["final_x"]]
        bpts = [(px(x), py(_num(r))) for x, r in zip(xs, s["best_history"]) if math.isfinite(_num(r))]
        if len(bpts) >= 2:
            d.line(bpts, fill=BEST, width=2)
        for x, y in bpts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], outline=BEST, width=2)


# ---------------------------------------------------------------- lineage picture


def _reward_colour(r: float, lo: float, hi: float) -> tuple[int, int, int]:
    """Blue (low) to yellow (high); grey when the reward failed."""
    if not math.isfinite(r):
        return (110, 110, 110)
    u = 0.5 if hi - lo < 1e-12 else min(max((r - lo) / (hi - lo), 0.0), 1.0)
    return (int(40 + 215 * u), int(70 + 150 * u), int(200 - 160 * u))


def _draw_edges(d: ImageDraw.ImageDraw, steps: list, paths: list[list[int]], cx: Callable, cy: Callable) -> list:
    """Who copied whom between columns, bright where the lineage reaches the end; returns, per column, the slots
    that have a descendant among the final particles."""
    alive = [set() for _ in range(len(steps) + 1)]
    for path in paths:
        for c, slot in enumerate(path):
            alive[c].add(slot)
    for c, step in enumerate(steps):  # edges from column c to c+1
        for i, a in enumerate(step["ancestors"]):
            live = i in alive[c + 1]
            colour = (120, 150, 200) if live else (60, 62, 72)
            d.line([cx(c), cy(a), cx(c + 1), cy(i)], fill=colour, width=2 if live else 1)
    return alive


def lineage_chart(trace: TraceLike, width: int = 768, height: int = 384,
                  highlight: Optional[int] = None) -> torch.Tensor:
    """The particles at each potential step (columns) and who copied whom (lines). Lines of lineages that
    reach the end are bright, extinct ones faint; ``highlight`` (default: the best final particle) is drawn
    in gold. Dots are coloured by reward. Returns ``[1, height, width, 3]``."""
    _check_size(width, height)
    t = load_trace(trace)
    n, steps = t["num_particles"], t["steps"]
    finals = t.get("final_rewards") or [None] * n
    if highlight is None:
        highlight = best_final_particle(t)
    elif not 0 <= highlight < n:
        raise TraceError(f"highlight particle {highlight} does not exist (0..{n - 1})")
    paths = lineage_paths(t)

    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    fs = max(10, height // 32)
    font, small = _font(fs), _font(max(9, fs - 2))
    x0, x1, y0, y1 = 16 + 3 * fs, width - 16 - 3 * fs, 2 * fs + 10, height - 2 * fs - 8
    cols = len(steps) + 1  # one column per potential step, plus the final particles

    def cx(c: int) -> float:
        return x0 if cols == 1 else x0 + (x1 - x0) * c / (cols - 1)

    def cy(i: int) -> float:
        return (y0 + y1) / 2 if n == 1 else y0 + (y1 - y0) * i / (n - 1)

    rewards = [[_num(v) for v in step["rewards"]] for step in steps] + [[_num(v) for v in finals]]
    flat = [v for col in rewards for v in col if math.isfinite(v)]
    lo, hi = (min(flat), max(flat)) if flat else (0.0, 1.0)

    alive = _draw_edges(d, steps, paths, cx, cy)
    if highlight is not None:
        path = paths[highlight]
        d.line([(cx(c), cy(slot)) for c, slot in enumerate(path)], fill=BEST, width=3)

    r = max(1.5, min(5.0, (y1 - y0) / max(n, 1) / 2.6))
    # step labels need about 2.5 characters of room each; with many potential steps label every k-th column
    label_every = max(1, math.ceil(2.5 * fs / max((x1 - x0) / max(cols - 1, 1), 1e-9)))
    for c in range(cols):
        for i in range(n):
            colour = _reward_colour(rewards[c][i], lo, hi)
            if i not in alive[c]:
                colour = tuple(int(v * 0.45 + 20) for v in colour)
            d.ellipse([cx(c) - r, cy(i) - r, cx(c) + r, cy(i) + r], fill=colour)
        if c < len(steps) and c % label_every == 0:
            label = f"{steps[c]['step']}" + ("*" if steps[c]["resampled"] else "")
            d.text((cx(c), y1 + 6), label, fill=RESAMPLE if steps[c]["resampled"] else MUTED, font=small,
                   anchor="ma")
    d.text((cx(cols - 1), y1 + 6), "end", fill=MUTED, font=small, anchor="ma")
    if highlight is not None:
        d.ellipse([cx(cols - 1) - r - 3, cy(highlight) - r - 3, cx(cols - 1) + r + 3, cy(highlight) + r + 3],
                  outline=BEST, width=2)
    survivors = len(set(p[0] for p in paths))
    title = f"lineage: {survivors} of {n} initial particles have descendants"
    if highlight is not None:
        title += f" · gold: #{highlight + 1} from initial #{paths[highlight][0] + 1}"
    d.text((x0, 4), title, fill=TEXT, font=font)
    return _to_tensor(img)
