"""fk_core/live_view.py and nodes/live.py: the live view's payloads — shape, throttling, bounded sizes — and their
way over ComfyUI's websocket, a quiet no-op without a server."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from fk_trace_fixtures import load_pack_file, toy_run
from PIL import Image

import fk_core.live_view as view
from fk_core import encode_sprite

# nodes/ holds ComfyUI adapters imported relative to the pack; live.py needs no ComfyUI: load it by path.
live = load_pack_file("nodes/live.py")
comfy_sender = live.comfy_sender
EVENT_DONE, EVENT_STEP = view.EVENT_DONE, view.EVENT_STEP
LiveReporter, step_record, thumb_size_for = view.LiveReporter, view.step_record, view.thumb_size_for


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    """Stands in for PromptServer.send_sync; checks every payload is JSON (what the websocket sends)."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def __call__(self, event: str, data: dict) -> None:
        json.dumps(data, allow_nan=False)  # NaN is not JSON: the browser would choke on it
        self.events.append((event, data))

    def of(self, kind: str) -> list[dict]:
        return [d for e, d in self.events if e == kind]


def sprite_image(thumbs: dict) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(thumbs["sprite"].split(",", 1)[1])))
    assert img.format == "JPEG"
    assert img.size == (thumbs["cols"] * thumbs["w"], thumbs["rows"] * thumbs["h"])
    return img


def noisy_images(n: int, size: int = 256, seed: int = 0) -> torch.Tensor:
    """Uniform noise: the worst case for JPEG size."""
    return torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(seed))


def run_with_reporter(particles=8, steps=12, every=2, gap_s=1.0, image_size=96, **reporter_kw):
    """A real engine run with the reporter fed at each potential step; the clock advances gap_s per step."""
    rec, clock = Recorder(), FakeClock()
    rep = LiveReporter("7", particles, steps, send=rec, clock=clock, **reporter_kw)

    def on_step(event):
        clock.t += gap_s
        rep.potential_step(event, noisy_images(particles, image_size, seed=event.step))

    result = toy_run(particles=particles, steps=steps, every=every, lmbda=2.0, on_potential_step=on_step)
    rep.finished(result)
    return rec, rep, result


def test_step_payload_shape_and_resampling_spelled_out():
    rec, rep, result = run_with_reporter(particles=8)
    steps = [s for d in rec.of(EVENT_STEP) for s in d["steps"]]
    assert [s["step"] for s in steps] == [e.step for e in result.trace.steps]
    for s, e in zip(steps, result.trace.steps):
        assert s["ancestors"] == [int(a) for a in e.ancestors]
        assert sum(s["copies"]) == 8
        assert all(s["copies"][a] >= 1 for a in s["ancestors"])
        assert s["dropped"] == ([j for j in range(8) if j not in s["ancestors"]] if e.resampled else [])
        assert len(s["rewards"]) == 8 and s["ess"] == pytest.approx(e.ess, rel=1e-3)
    assert any(s["dropped"] for s in steps), "the toy run should drop someone at some resampling"
    first = rec.of(EVENT_STEP)[0]
    assert first["node"] == "7" and first["particles"] == 8 and first["num_steps"] == 12 and first["v"] == 1
    thumbs = first["thumbs"]
    assert thumbs["cols"] * thumbs["rows"] >= 8 and (thumbs["cols"] - 1) * thumbs["rows"] < 8
    assert (thumbs["w"], thumbs["h"]) == (64, 64) and first["thumbs_step"] == steps[0]["step"]
    sprite_image(thumbs)
    assert len({d["run"] for _, d in rec.events}) == 1
    assert [d["seq"] for _, d in rec.events] == list(range(len(rec.events)))


def test_done_payload_carries_the_whole_trace():
    rec, rep, result = run_with_reporter(particles=8)
    (done,) = rec.of(EVENT_DONE)
    assert rec.events[-1][0] == EVENT_DONE and rep.closed
    assert done["best_index"] == result.best_index
    trace = done["trace"]
    assert trace["origin"] == [int(o) for o in result.trace.origin]
    assert len(trace["steps"]) == len(result.trace.steps)
    assert trace["final_rewards"] == pytest.approx([float(r) for r in result.trace.final_rewards], rel=1e-3)
    rep.potential_step(result.trace.steps[0])  # after the end: ignored
    assert rec.events[-1][0] == EVENT_DONE


def test_fast_steps_are_coalesced_and_thumbnails_rate_limited():
    """100 steps/s: at most 8 events/s and 2 thumbnail batches/s, yet every step reaches the browser."""
    rec, rep, result = run_with_reporter(particles=8, steps=40, every=1, gap_s=0.01)
    events = rec.of(EVENT_STEP)
    duration = 0.01 * len(result.trace.steps)
    assert len(events) <= duration * 8 + 2
    with_thumbs = [d for d in events if "thumbs" in d]
    assert len(with_thumbs) <= duration * 2 + 2
    assert with_thumbs[-1]["thumbs_step"] == result.trace.steps[-1].step  # latest images at the end
    assert [s["step"] for d in events for s in d["steps"]] == [e.step for e in result.trace.steps]


def test_slow_steps_each_get_an_event():
    rec, _, result = run_with_reporter(particles=4, steps=12, every=2, gap_s=1.0)
    assert len(rec.of(EVENT_STEP)) == len(result.trace.steps)
    assert all((d["thumbs"]["cols"], d["thumbs"]["rows"]) == (2, 2) for d in rec.of(EVENT_STEP))


def test_n64_payloads_are_bounded():
    """N=64 with incompressible 256 px images: thumbnails shrink to 32 px, every event stays small."""
    assert thumb_size_for(64) == 32 and thumb_size_for(4) == 64 and thumb_size_for(10_000) == 16
    rec, _, _ = run_with_reporter(particles=64, steps=20, every=1, gap_s=1.0, image_size=256)
    sizes = [len(json.dumps(d)) for _, d in rec.events]
    step_sizes = [len(json.dumps(d)) for d in rec.of(EVENT_STEP)]
    assert max(step_sizes) <= 64_000 + 8_000  # thumbnail budget + numbers of one step
    assert len(json.dumps(rec.of(EVENT_DONE)[0])) <= 70_000  # 19 potential steps x 64 particles, rounded
    assert max(sizes) <= 72_000
    thumbs = rec.of(EVENT_STEP)[0]["thumbs"]
    assert (thumbs["cols"], thumbs["rows"]) == (8, 8) and thumbs["w"] <= 32
    sprite_image(thumbs)


def test_thumbnail_budget_is_enforced_by_reencoding():
    big = encode_sprite(noisy_images(64, 128), 64, max_bytes=10**7)
    small = encode_sprite(noisy_images(64, 128), 64, max_bytes=15_000)
    assert len(big["sprite"]) > 15_000 >= len(small["sprite"])
    assert small["w"] < 64 and (small["cols"], small["rows"]) == (8, 8)
    sprite_image(small)


def test_thumbnails_keep_aspect_and_accept_grey_and_rgba():
    wide = torch.rand(2, 30, 120, 1)
    rec = Recorder()
    rep = LiveReporter(1, 2, send=rec, clock=FakeClock())
    result = toy_run(particles=2, steps=4, every=2)
    rep.potential_step(result.trace.steps[0], wide)
    thumbs = rec.events[0][1]["thumbs"]
    assert (thumbs["w"], thumbs["h"]) == (64, 16)
    sprite_image(thumbs)
    rep2 = LiveReporter(1, 2, send=Recorder(), clock=FakeClock())
    rep2.potential_step(result.trace.steps[0], torch.rand(2, 8, 8, 4))  # RGBA: alpha ignored


def test_nan_rewards_become_null():
    rec = Recorder()
    rep = LiveReporter("3", 8, send=rec, clock=FakeClock())
    result = toy_run(particles=8, steps=12, every=2, nan_particle_at_step=1)
    rep.potential_step(result.trace.steps[0])
    s = rec.events[0][1]["steps"][0]
    assert s["rewards"][0] is None and s["invalid"] == [0]
    assert "thumbs" not in rec.events[0][1]  # no images given: numbers only


def test_only_the_events_the_view_listens_to():
    """web/fk_live.js listens for step and done; a cancelled run is told by ComfyUI's own events."""
    assert not hasattr(live, "EVENT_CANCELLED") and not hasattr(LiveReporter, "cancelled")
    js = (Path(__file__).resolve().parents[1] / "web" / "fk_live.js").read_text()
    for event in (EVENT_STEP, EVENT_DONE):
        assert f'"{event}"' in js
    assert "fk_steering.cancelled" not in js


def test_gallery_tiles_are_no_wider_than_the_thumbnails():
    """web/fk_live.js caps a tile at the largest thumbnail sent: wider tiles would blur and take the chart's room."""
    js = (Path(__file__).resolve().parents[1] / "web" / "fk_live.js").read_text()
    assert f"const MAX_TILE_PX = {view.MAX_THUMB_PX};" in js


def test_wrong_image_count_is_a_clear_error():
    rep = LiveReporter("5", 8, send=Recorder(), clock=FakeClock())
    result = toy_run(particles=8, steps=6, every=2)
    with pytest.raises(ValueError, match="got 3 images for 8 particles"):
        rep.potential_step(result.trace.steps[0], torch.rand(3, 8, 8, 3))


def test_no_server_is_a_quiet_no_op(monkeypatch):
    """Outside ComfyUI (no `server` module / no PromptServer.instance) nothing is sent and nothing fails."""
    import sys
    monkeypatch.setitem(sys.modules, "server", None)  # import server -> ImportError
    assert comfy_sender() is None
    rep = LiveReporter("1", 4)
    assert not rep.active
    result = toy_run(particles=4, steps=6, every=2)
    rep.potential_step(result.trace.steps[0], torch.rand(4, 8, 8, 3))
    rep.started()
    rep.finished(result)
    assert rep.events_sent == 0


def test_server_without_instance_is_a_no_op(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("server")
    fake.PromptServer = type("PromptServer", (), {})
    monkeypatch.setitem(sys.modules, "server", fake)
    assert comfy_sender() is None


def test_comfy_sender_targets_the_prompt_client(monkeypatch):
    import sys
    import types

    sent = []

    class Instance:
        client_id = "abc"

        def send_sync(self, event, data, sid=None):
            sent.append((event, sid))

    fake = types.ModuleType("server")
    fake.PromptServer = type("PromptServer", (), {"instance": Instance()})
    monkeypatch.setitem(sys.modules, "server", fake)
    comfy_sender()("x", {})
    assert sent == [("x", "abc")]


def test_a_failing_websocket_never_fails_the_run(caplog):
    def broken(event, data):
        raise ConnectionResetError("client went away")

    rep = LiveReporter("1", 4, send=broken, clock=FakeClock())
    result = toy_run(particles=4, steps=6, every=2)
    rep.potential_step(result.trace.steps[0])
    assert not rep.active and "could not send" in caplog.text
    rep.finished(result)  # quiet


def test_step_record_counts_copies():
    class E:
        step, sigma, ess, resampled, invalid = 3, 1.5, 2.0, True, []
        rewards = torch.tensor([0.1, float("nan"), 0.3, 0.4])
        log_weights = torch.tensor([-1.0, float("-inf"), -1.0, -2.0])
        ancestors = torch.tensor([0, 0, 2, 0])

    rec = step_record(E)
    assert rec["copies"] == [3, 0, 1, 0] and rec["dropped"] == [1, 3]
    assert rec["rewards"][1] is None and rec["log_weights"][1] is None


def test_live_callbacks_match_the_sampler_hook():
    """The adapter's hook: factory(node_id) -> on_start(num_steps, particles), on_potential_step(event, images),
    on_finish(result). on_start opens the run at once with the step count the status line shows as "of N"."""
    rec = Recorder()
    hook = live.live_callbacks("9", send=rec, clock=FakeClock())
    hook.on_start(8, 4)
    (start,) = rec.events
    assert start == (EVENT_STEP, {**start[1], "steps": [], "num_steps": 8, "particles": 4, "node": "9"})
    result = toy_run(particles=4, steps=8, every=2,
                     on_potential_step=lambda e: hook.on_potential_step(e, torch.rand(4, 16, 16, 3)))
    result.chosen_index = 2  # e.g. drawn from the final weights: the particle the node outputs
    hook.on_finish(result)
    first_step = rec.events[1][1]
    assert first_step["steps"] and "thumbs" in first_step  # the start event did not hold the first check back
    assert {d["run"] for _, d in rec.events} == {start[1]["run"]}
    assert all(d["num_steps"] == 8 for _, d in rec.events)
    (done,) = rec.of(EVENT_DONE)
    assert done["chosen_index"] == 2 and done["best_index"] == result.best_index and done["node"] == "9"


def test_live_callbacks_start_a_new_run_when_reused():
    """FK Sampler's cached SAMPLER reuses the callbacks: each run (finished or not) gets its own run id, with
    or without on_start."""
    rec = Recorder()
    hook = live.live_callbacks("9", send=rec, clock=FakeClock(), max_events_per_second=0)
    first = toy_run(particles=4, steps=8, every=2, on_potential_step=lambda e: hook.on_potential_step(e))
    hook.on_finish(first)  # a plain FKResult
    toy_run(particles=4, steps=8, every=2, on_potential_step=lambda e: hook.on_potential_step(e))  # no finish
    third = toy_run(particles=4, steps=8, every=2, seed=1, on_potential_step=lambda e: hook.on_potential_step(e))
    hook.on_finish(third)
    hook.on_start(8, 4)  # a started run that is cancelled before its first check
    hook.on_start(8, 4)
    fifth = toy_run(particles=4, steps=8, every=2, seed=2, on_potential_step=lambda e: hook.on_potential_step(e))
    hook.on_finish(fifth)
    runs = [d["run"] for _, d in rec.events]
    per_run = {r: [e for e, d in rec.events if d["run"] == r] for r in dict.fromkeys(runs)}
    assert len(per_run) == 5
    n = len(first.trace.steps)
    assert [len(v) for v in per_run.values()] == [n + 1, n, n + 1, 1, 1 + n + 1]
    assert [v[-1] == EVENT_DONE for v in per_run.values()] == [True, False, True, False, True]
    assert [d["num_steps"] for _, d in rec.events if d["run"] == runs[-1]] == [8] * (n + 2)


def test_optional_step_numbers_are_sent_when_present():
    """lmbda (λ at the check), survivors (distinct particles kept) and cost (seconds) reach the view, rounded;
    a step without them (or with the 'not recorded' defaults NaN / 0) sends none of the three keys."""
    class E:
        step, sigma, ess, resampled, invalid = 3, 1.5, 2.0, True, []
        rewards = torch.tensor([0.1, 0.2, 0.3, 0.4])
        log_weights = torch.tensor([-1.0, -1.0, -2.0, -2.0])
        ancestors = torch.tensor([0, 0, 1, 1])
        lmbda, survivors = 12.345678, 2
        cost = {"model_s": 0.123456, "decode_s": 0.0456789, "reward_s": 0.01, "other": 5}

    rec = step_record(E)
    assert rec["lmbda"] == 12.35 and rec["survivors"] == 2
    assert rec["cost"] == {"model_s": 0.123, "decode_s": 0.0457, "reward_s": 0.01}

    class Bare(E):
        lmbda, survivors, cost = float("nan"), 0, None

    assert not {"lmbda", "survivors", "cost"} & set(step_record(Bare))
    result = toy_run(particles=4, steps=6, every=2)
    # the final trace keeps them too (rounded the same way)
    trace = {"steps": [{**result.trace.steps[0].to_dict(), "lmbda": 3.14159, "survivors": 3,
                        "cost": {"model_s": 1.23456}}], "final_rewards": None}
    (step,) = view.compact_trace(trace)["steps"]
    assert (step["lmbda"], step["survivors"], step["cost"]) == (3.142, 3, {"model_s": 1.23})
    assert step["ancestors"] == trace["steps"][0]["ancestors"]


def test_replay_payload_is_a_finished_run_in_one_message():
    """The sampler's UI output (fk_live) for a page that saw no live events: what a step event with thumbnails and
    the done event carry, the final particles as thumbnails, JSON-safe."""
    result = toy_run(particles=4, steps=10, every=2)
    trace = result.trace.to_dict()
    images = torch.rand(4, 40, 40, 3, generator=torch.Generator().manual_seed(0))
    payload = view.replay_payload("7", trace, result.best_index, 2, images)
    json.dumps(payload, allow_nan=False)  # JSON-safe: it travels in the websocket message and /history
    assert payload["node"] == "7" and payload["particles"] == 4 and payload["steps"] == []
    assert payload["best_index"] == result.best_index and payload["chosen_index"] == 2
    assert payload["trace"] == view.compact_trace(trace) and payload["run"].startswith("replay-")
    sprite = payload["thumbs"]
    assert sprite["cols"] * sprite["rows"] >= 4 and sprite["sprite"].startswith("data:image/jpeg;base64,")
    assert view.replay_payload("7", trace, 0, 0, images)["run"] != payload["run"]


def test_done_trace_carries_the_lineage_and_resampling_the_view_draws():
    """The front end draws the lineage and the resampling log without a copy of the rule: the done event's trace
    holds fk_core.trace's lineage paths and each step's copies/dropped, the same as the live step records."""
    rec, _, result = run_with_reporter(particles=6, steps=12, every=2, gap_s=1.0)
    (done,) = rec.of(EVENT_DONE)
    assert done["trace"]["lineage"] == result.trace.lineage()
    live_steps = [s for d in rec.of(EVENT_STEP) for s in d["steps"]]
    assert len(live_steps) == len(done["trace"]["steps"]) > 0
    for live, final in zip(live_steps, done["trace"]["steps"]):
        assert (final["copies"], final["dropped"]) == (live["copies"], live["dropped"])
    assert any(s["resampled"] and s["dropped"] for s in done["trace"]["steps"])


def test_done_event_shows_the_final_population():
    """Issue 19 item 6: after the run the gallery shows the final particles (their thumbnails come with the done
    event), not the last check's, whose particles were resampled since."""
    rec, rep = Recorder(), None
    rep = LiveReporter("7", 4, 10, send=rec, clock=FakeClock())
    result = toy_run(particles=4, steps=10, every=2, on_potential_step=lambda e: rep.potential_step(e))
    result.final_images = noisy_images(4, 48, seed=3)
    rep.finished(result)
    (done,) = rec.of(EVENT_DONE)
    assert done["thumbs_final"] is True and done["thumbs_step"] is None
    assert done["thumbs"]["cols"] * done["thumbs"]["rows"] >= 4
    sprite_image(done["thumbs"])


def test_combined_reward_breakdown_reaches_the_view():
    """Issue 19 item 2: each particle's weighted shares, worded as on the contact sheet, in the live step
    records, the done trace (per check and for the final particles); a single reward adds nothing."""
    from test_charts import _combined_run

    result = _combined_run(0)
    trace = result.trace.to_dict()
    compact = view.compact_trace(trace)
    for step, raw in zip(compact["steps"], result.trace.steps):
        assert step["breakdown"] == step_record(raw)["breakdown"]
        assert len(step["breakdown"]) == 6 and step["breakdown"][0].startswith("= ")
        assert " aes " in step["breakdown"][0] + " " and "sharp" in step["breakdown"][0]
    assert len(compact["final_breakdown"]) == 6
    single = view.compact_trace(toy_run(particles=4, steps=10, every=2).trace.to_dict())
    assert "final_breakdown" not in single and all("breakdown" not in s for s in single["steps"])
