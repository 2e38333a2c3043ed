"""A run's progress as small JSON events for a live view in a browser: throttled, bounded, rounded.

An engine observer (``fk_core.run_segments(observer=…)``): :class:`LiveCallbacks` hears ``on_start(num_steps,
particles)`` when a run begins, ``on_potential_step(event, images)`` after every potential step (with the x0
images the scorer already decoded) and ``on_finish(result)`` with the ``FKResult``, whose ``chosen_index`` (the
particle the host outputs) the view frames. Each run gets one :class:`LiveReporter`, which hands events to a
host's ``send(event, data)`` (ComfyUI: its websocket, nodes/live.py); the front end is ``web/fk_live.js``. A
cancelled or failed run needs no event of its own: the host tells the browser.

Bounded traffic, whatever N or the GPU speed:
* events only at potential steps (and one when a run starts); at most ``max_events_per_second`` of them:
  steps that arrive faster are queued and go out together in the next event (every point reaches the chart);
* thumbnails at most every ``thumbnail_interval`` seconds (the latest images win), ≤ 64 px and smaller for
  large N, packed in one JPEG sprite, re-encoded smaller if it would exceed ``max_thumbnail_bytes``;
* the final event carries the whole trace with rounded numbers.

Without a sender every method is a quiet no-op.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any, Callable, Optional

import torch

from .images import downscale, encode_sprite
from .ranking import reward_ranks
from .score_sheet import component_notes
from .scoring import COST_KEYS
from .trace import lineage_paths
from .video import middle_frame

EVENT_STEP = "fk_steering.step"
EVENT_DONE = "fk_steering.done"
PAYLOAD_VERSION = 1

MAX_THUMB_PX = 64
MIN_THUMB_PX = 16

log = logging.getLogger(__name__)

Sender = Callable[[str, dict], None]


def thumb_size_for(particles: int) -> int:
    """Thumbnail edge in px: 64 up to 16 particles, then shrinking so N thumbnails cover ~16·64² pixels."""
    if particles <= 16:
        return MAX_THUMB_PX
    return max(MIN_THUMB_PX, int(MAX_THUMB_PX * math.sqrt(16 / particles)))


def _round(v: Any, digits: int = 4) -> Optional[float]:
    """A JSON-safe float with ``digits`` significant digits; NaN/inf (and None) become None."""
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def _round_list(values: Any, digits: int = 4) -> list[Optional[float]]:
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().tolist()
    return [_round(v, digits) for v in values]


# Optional numbers a step may carry (other parts of the engine add them; the view shows what is there):
# "lmbda" the λ used at the check, "survivors" the distinct particles the resampling kept, "cost" seconds spent.


def _optional_fields(source: Any) -> dict:
    """``lmbda``, ``survivors`` and ``cost`` of a step (a PotentialStep or its dict), rounded; absent ones left out."""
    get = source.get if isinstance(source, dict) else (lambda key: getattr(source, key, None))
    out: dict = {}
    lmbda = _round(get("lmbda"))
    if lmbda is not None:
        out["lmbda"] = lmbda
    survivors = get("survivors")
    if isinstance(survivors, (int, float)) and not isinstance(survivors, bool) and survivors >= 1:
        out["survivors"] = int(survivors)  # 0 = not recorded
    cost = get("cost")
    if isinstance(cost, dict):
        rounded = {k: _round(cost[k], 3) for k in COST_KEYS if k in cost}
        if any(v is not None for v in rounded.values()):
            out["cost"] = rounded
    return out


def breakdowns(components: Optional[dict], rewards: list) -> Optional[list[str]]:
    """Per particle, a combined reward's weighted shares as one line (``= 0.9 aes + 0.3 clip - 0.4 sharp``) for
    the view's tiles (fk_core.score_sheet's wording, as on the contact sheet); None for a single reward."""
    notes = component_notes(components, rewards)
    return None if notes is None else [" ".join(pieces) for pieces in notes]


def step_record(event: Any) -> dict:
    """The numbers of one potential step for the front end, with the resampling spelled out:
    ``copies[j]``: how many new particles copy old particle j; ``dropped``: old particles with no copy."""
    ancestors = [int(a) for a in event.ancestors]
    return {
        "step": int(event.step),
        "sigma": _round(event.sigma),
        "rewards": _round_list(event.rewards),
        "log_weights": _round_list(event.log_weights, 3),
        "ess": _round(event.ess),
        "resampled": bool(event.resampled),
        "ancestors": ancestors,
        **resampling_fields(ancestors, bool(event.resampled)),
        "invalid": [int(i) for i in getattr(event, "invalid", [])],
        **_optional_fields(event),
        **_breakdown_field(getattr(event, "components", None), _round_list(event.rewards)),
    }


def _breakdown_field(components: Optional[dict], rewards: list, key: str = "breakdown") -> dict:
    lines = breakdowns(components, rewards)
    return {} if lines is None else {key: lines}


def resampling_fields(ancestors: list[int], resampled: bool) -> dict:
    """One step's resampling spelled out for the view: ``copies[j]``: how many new particles copy old particle j;
    ``dropped``: old particles with no copy (none when the step did not resample)."""
    copies = [0] * len(ancestors)
    for a in ancestors:
        copies[a] += 1
    return {"copies": copies, "dropped": [j for j, c in enumerate(copies) if c == 0] if resampled else []}


def compact_trace(trace: dict) -> dict:
    """``Trace.to_dict()`` with floats rounded (4 significant digits, log-weights 3): a small event. Each step
    also spells out its resampling (as live step records do) and ``lineage`` holds fk_core.trace's lineage paths,
    so the front end draws them without a copy of the rule."""
    out = dict(trace)
    rounded_keys = ("rewards", "log_weights", "ess", "sigma", "lmbda", "survivors", "cost")
    steps = trace.get("steps", [])
    out["steps"] = [
        {**{k: v for k, v in s.items() if k not in rounded_keys},
         "rewards": _round_list(s["rewards"]), "log_weights": _round_list(s["log_weights"], 3),
         "ess": _round(s["ess"]), "sigma": _round(s["sigma"]), "invalid": list(s.get("invalid") or []),
         **resampling_fields([int(a) for a in s["ancestors"]], bool(s.get("resampled"))), **_optional_fields(s),
         **_breakdown_field(s.get("components"), s["rewards"])}
        for s in steps
    ]
    if trace.get("final_rewards") is not None:
        out.update(_breakdown_field(trace.get("final_components"), trace["final_rewards"], "final_breakdown"))
        # one numbering everywhere: particles are #1..#N by index; the rank by final reward is shown beside it
        out["final_ranks"] = reward_ranks([math.nan if r is None else r for r in trace["final_rewards"]])
    n = trace.get("num_particles") or (len(steps[-1]["ancestors"]) if steps else None)
    if n:
        out["lineage"] = lineage_paths([[int(a) for a in s["ancestors"]] for s in steps], int(n))
    for key in ("final_rewards", "final_log_weights"):
        if out.get(key) is not None:
            out[key] = _round_list(out[key])
    return out


def replay_payload(node_id: Any, trace: dict, best_index: int, chosen_index: int, images: torch.Tensor,
                   max_thumbnail_bytes: int = 64_000) -> dict:
    """A finished run's live view in one payload, for the node's UI output: a page that saw no live events of the
    run (the host served the node from its cache, or the page opened later) draws it as done, with thumbnails of
    the final particles ``images`` [N, H, W, C]. Same fields as a step event followed by the done event."""
    n = int(images.shape[0])
    return {"v": PAYLOAD_VERSION, "node": str(node_id) if node_id is not None else None,
            "run": f"replay-{uuid.uuid4().hex[:12]}", "seq": 0, "particles": n, "num_steps": trace.get("num_steps"),
            "steps": [], "thumbs": encode_sprite(images, thumb_size_for(n), max_thumbnail_bytes), "thumbs_step": None,
            "thumbs_final": True,
            "best_index": int(best_index), "chosen_index": int(chosen_index), "trace": compact_trace(trace)}


class LiveReporter:
    """Sends a run's progress to the FK node's live view in the browser.

    ``node_id``: the node's UNIQUE_ID (the front end finds its node by it); ``particles``: N.
    ``send(event, data)`` delivers an event (None: nothing is sent); ``clock`` the time source for throttling.
    """

    def __init__(self, node_id: Any, particles: int, num_steps: Optional[int] = None, *,
                 send: Optional[Sender] = None, clock: Callable[[], float] = time.monotonic,
                 max_events_per_second: float = 8.0, thumbnail_interval: float = 0.5,
                 max_thumbnail_bytes: int = 64_000, max_queued_steps: int = 512):
        if int(particles) < 1:
            raise ValueError(f"particles must be at least 1, got {particles}")
        self.node_id = str(node_id) if node_id is not None else None
        self.particles = int(particles)
        self.num_steps = int(num_steps) if num_steps is not None else None
        self.run_id = uuid.uuid4().hex[:12]
        self._send = send
        self._clock = clock
        self._min_gap = 1.0 / max_events_per_second if max_events_per_second > 0 else 0.0
        self._thumb_gap = thumbnail_interval
        self._max_bytes = max_thumbnail_bytes
        self._max_queued = max_queued_steps
        self._queue: list[dict] = []
        self._pending_images: Optional[torch.Tensor] = None  # small uint8 copy of the latest unsent images
        self._pending_images_step: Optional[int] = None
        self._last_event = -math.inf
        self._last_thumbs = -math.inf
        self._seq = 0
        self.closed = False
        self.events_sent = 0

    @property
    def active(self) -> bool:
        return self._send is not None and self.node_id is not None and not self.closed

    def _emit(self, event: str, payload: dict) -> None:
        data = {"v": PAYLOAD_VERSION, "node": self.node_id, "run": self.run_id, "seq": self._seq,
                "particles": self.particles, "num_steps": self.num_steps, **payload}
        self._seq += 1
        try:
            self._send(event, data)
        except Exception:  # the view is a nicety: a websocket problem must never fail the sampling
            log.warning("FK live view: could not send %s; live updates stop for this run", event,
                        exc_info=True)
            self._send = None
            return
        self.events_sent += 1

    def started(self) -> None:
        """Tell the view a run began (N particles, ``num_steps`` steps) before its first potential step.

        One small event per run; it does not count against the step throttle, so the first check still goes
        out at once."""
        if self.active:
            self._emit(EVENT_STEP, {"steps": []})

    def potential_step(self, event: Any, images: Optional[torch.Tensor] = None) -> None:
        """Record a ``PotentialStep``; ``images`` [N,H,W,C] in [0,1] are its decoded x0-predictions."""
        if not self.active:
            return
        self._queue.append(step_record(event))
        if len(self._queue) > self._max_queued:  # the final trace still has every step
            del self._queue[0]
        if images is not None:
            images = middle_frame(images)  # a video particle shows its middle frame
            if images.shape[0] != self.particles:
                raise ValueError(f"live view: got {images.shape[0]} images for {self.particles} particles")
            self._pending_images = downscale(images, thumb_size_for(self.particles))
            self._pending_images_step = int(event.step)
        now = self._clock()
        if now - self._last_event >= self._min_gap:
            self._flush(now)

    def _flush(self, now: float, final: bool = False) -> None:
        payload: dict = {"steps": self._queue}
        if self._pending_images is not None and (final or now - self._last_thumbs >= self._thumb_gap):
            edge = max(self._pending_images.shape[1:3])
            imgs = self._pending_images.float() / 255
            payload["thumbs"] = encode_sprite(imgs, edge, self._max_bytes)
            payload["thumbs_step"] = self._pending_images_step
            self._pending_images = None
            self._last_thumbs = now
        if not payload["steps"] and "thumbs" not in payload:
            return
        self._queue = []
        self._last_event = now
        self._emit(EVENT_STEP, payload)

    def finished(self, result: Any) -> None:
        """Send what is still queued, then the whole trace (rounded), the best particle and the chosen one (the
        particle the node outputs, which the view frames). ``result``: an ``FKResult``."""
        if not self.active:
            return
        self._flush(self._clock(), final=True)
        trace = result.trace.to_dict() if hasattr(result.trace, "to_dict") else dict(result.trace)
        chosen = getattr(result, "chosen_index", -1)
        payload = {"best_index": int(result.best_index),
                   "chosen_index": int(chosen if chosen >= 0 else result.best_index), "trace": compact_trace(trace)}
        images = getattr(result, "final_images", None)
        if images is not None and middle_frame(images).shape[0] == self.particles:
            # the gallery shows the final population after the run, not the last check's (resampled since)
            payload |= {"thumbs": encode_sprite(middle_frame(images), thumb_size_for(self.particles), self._max_bytes),
                        "thumbs_step": None, "thumbs_final": True}
        self._emit(EVENT_DONE, payload)
        self.closed = True


class LiveCallbacks:
    """The sampler adapter's live-view hook for one node: ``on_start``, ``on_potential_step``, ``on_finish``.

    Every ``on_start`` begins a new run for the front end (a new :class:`LiveReporter` and run id): a host may
    reuse one observer for several runs (ComfyUI caches FK Sampler's SAMPLER). Without
    ``on_start`` a reporter is made at the first potential step (step count unknown, so the view says
    "step k" without "of N"), and again after a finish or when the step index goes back (a run cancelled
    before it finished). All three run on the sampling thread.
    """

    def __init__(self, node_id: Any, **reporter_options):
        self.node_id = node_id
        self._options = reporter_options
        self._reporter: Optional[LiveReporter] = None
        self._last_step: Optional[int] = None

    def _new_reporter(self, particles: int, num_steps: Optional[int] = None) -> LiveReporter:
        self._reporter = LiveReporter(self.node_id, particles, num_steps, **self._options)
        self._last_step = None
        return self._reporter

    def on_start(self, num_steps: int, particles: int) -> None:
        self._new_reporter(int(particles), int(num_steps)).started()

    def on_potential_step(self, event: Any, images: Optional[torch.Tensor] = None) -> None:
        step, particles = int(event.step), len(event.rewards)
        current = self._reporter
        went_back = self._last_step is not None and step <= self._last_step
        if current is None or current.closed or went_back or current.particles != particles:
            current = self._new_reporter(particles)
        self._last_step = step
        current.potential_step(event, images)

    def on_finish(self, result: Any) -> None:
        """``result``: the run's FKResult."""
        current = self._reporter
        if current is None or current.closed:
            current = self._new_reporter(int(result.trace.num_particles))
        current.finished(result)
