"""The live view and chart node inside a real ComfyUI host (in-process): the sampler adapter's hook feeds the
LiveReporter, and FKTraceCharts draws the sampler's own trace_json output. Numbers come from one trace."""

from __future__ import annotations

import contextlib
import json

import comfy_host
import pytest

pytestmark = pytest.mark.host

N, STEPS, SIZE = 6, 8, 4


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event, data):
        json.dumps(data, allow_nan=False)
        self.events.append((event, data))


@contextlib.contextmanager
def recording_live_view(fk, node_id: str):
    """Give the samplers a live view that sends to a Recorder (no throttling) for the duration of the block."""
    rec = Recorder()
    sampler = fk.nodes.sampler
    saved = sampler.live_callbacks
    sampler.live_callbacks = lambda _node: fk.nodes.live.live_callbacks(node_id, send=rec, max_events_per_second=0)
    try:
        yield rec
    finally:
        sampler.live_callbacks = saved


@pytest.fixture(scope="module")
def run(fk_pack, tiny_models, tiny_vae):
    """One FK Particle Sampler run (oracle denoiser) with the live hook recording what it would send."""
    import torch

    fk = fk_pack
    with recording_live_view(fk, "42") as rec:
        model, _ = comfy_host.install_oracle(tiny_models("eps"))
        reward = comfy_host.ModeReward(tiny_vae, SIZE)
        with torch.inference_mode():
            out = fk.nodes.sampler.FKParticleSampler.execute(
                model=model, positive=comfy_host.tiny_conditioning(),
                negative=comfy_host.tiny_conditioning(seed=1), latent_image=comfy_host.empty_latent(1, SIZE),
                vae=tiny_vae, reward=reward, seed=3, steps=STEPS, cfg=1.0, sampler_name="euler_ancestral",
                scheduler="normal", denoise=1.0,
                particles=N, particle_chunk=0, potential=fk.fk_core.FKConfig(lmbda=20.0, lambda_mode="fixed", every=2))
    return fk, rec, out


def test_sampler_hook_sends_steps_thumbnails_and_done(run):
    fk, rec, out = run
    trace = json.loads(out.result[4])
    # on_start: the run opens at once, and every event carries the step count ("step k of N" in the view)
    first_event, first_data = rec.events[0]
    assert first_event == "fk_steering.step" and first_data["steps"] == [] and first_data["particles"] == N
    assert {d["num_steps"] for _, d in rec.events} == {STEPS}
    assert len({d["run"] for _, d in rec.events}) == 1
    steps = [s for e, d in rec.events if e == "fk_steering.step" for s in d["steps"]]
    assert [s["step"] for s in steps] == [s["step"] for s in trace["steps"]]
    thumbs = [d["thumbs"] for e, d in rec.events if e == "fk_steering.step" and "thumbs" in d]
    assert thumbs and all(t["cols"] * t["rows"] >= N for t in thumbs)
    (done,) = [d for e, d in rec.events if e == "fk_steering.done"]
    assert done["node"] == "42" and done["particles"] == N
    assert done["trace"]["origin"] == trace["origin"]
    assert done["best_index"] == trace["best_index"]
    assert done["trace"]["final_rewards"] == pytest.approx(trace["final_rewards"], rel=1e-3)


def test_trace_charts_node_draws_the_sampler_trace(run):
    fk, _, out = run
    charts = fk.nodes.charts.FKTraceCharts.execute(trace=out.result[4], width=320, height=200, highlight=-1)
    chart, lineage = charts.result
    assert chart.shape == (1, 200, 320, 3) and lineage.shape == (1, 200, 320, 3)
    assert len(charts.ui.as_dict()["images"]) == 2  # both shown on the node


def test_trace_charts_node_bad_input_message(run):
    fk, _, _ = run
    with pytest.raises(ValueError, match="FK Trace Charts: trace is not an FK steering trace"):
        fk.nodes.charts.FKTraceCharts.execute(trace='{"a": 1}', width=320, height=200, highlight=-1)


def test_fk_sampler_reports_every_run_of_its_cached_sampler(fk_pack, tiny_models, tiny_vae):
    """FK Sampler (a SAMPLER for SamplerCustom) is made once and may serve several prompts: every run shows
    up in the live view as its own run, each ending with the whole trace."""
    import comfy.samplers
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    fk = fk_pack
    with recording_live_view(fk, "17") as rec:
        model, _ = comfy_host.install_oracle(tiny_models("eps"))
        with torch.inference_mode():
            fk_sampler = fk.nodes.sampler.FKSampler.execute(
                vae=tiny_vae, reward=comfy_host.ModeReward(tiny_vae, SIZE), particles=4,
                sampler_name="euler_ancestral", particle_chunk=0,
                potential=fk.fk_core.FKConfig(lmbda=20.0, lambda_mode="fixed", every=2),
                **{"return": "best particle"}).result[0]
            sampling = model.get_model_object("model_sampling")
            sigmas = comfy.samplers.calculate_sigmas(sampling, "normal", STEPS)
            for seed in (1, 2):  # the same SAMPLER object, two prompts
                SamplerCustom().sample(model, True, seed, 1.0, comfy_host.tiny_conditioning(),
                                       comfy_host.tiny_conditioning(seed=1), fk_sampler, sigmas,
                                       comfy_host.empty_latent(1, SIZE))
    runs = list(dict.fromkeys(d["run"] for _, d in rec.events))
    assert len(runs) == 2
    for run in runs:
        kinds = [e for e, d in rec.events if d["run"] == run]
        assert kinds[-1] == "fk_steering.done" and kinds.count("fk_steering.step") >= 1
        done = [d for e, d in rec.events if d["run"] == run and e == "fk_steering.done"][0]
        assert done["node"] == "17" and done["trace"]["num_particles"] == 4
