"""fk_core.charts: numbers read from the trace (lineage, reward history, quantiles), the pictures."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fk_trace_fixtures import toy_run

from fk_core.charts import (
    TraceError,
    best_final_particle,
    chart_series,
    lineage_chart,
    lineage_paths,
    reward_ess_chart,
    reward_history,
    step_quantiles,
)


@pytest.fixture(scope="module")
def result():
    return toy_run(particles=8, steps=12, every=2, lmbda=2.0, nan_particle_at_step=2)


def test_lineage_paths_match_the_engine_trace(result):
    """Our walk over the JSON equals Trace.lineage() on the live object, and starts at Trace.origin."""
    paths = lineage_paths(result.trace)
    assert paths == result.trace.lineage()
    assert [p[0] for p in paths] == [int(o) for o in result.trace.origin]
    assert [p[-1] for p in paths] == list(range(8))


def test_reward_history_follows_ancestry(result):
    t = result.trace
    for i in range(t.num_particles):
        hist = reward_history(t.to_dict(), i)
        path = t.lineage()[i]
        assert len(hist) == len(t.steps) + 1
        for j, step in enumerate(t.steps):
            expected = float(step.rewards[path[j]])
            assert (hist[j] is None) if math.isnan(expected) else hist[j] == pytest.approx(expected)
        assert hist[-1] == pytest.approx(float(t.final_rewards[i]))


def test_best_final_particle_and_series(result):
    d = result.trace.to_dict()
    assert best_final_particle(d) == int(torch.argmax(result.trace.final_rewards))
    s = chart_series(json.dumps(d))  # the node receives JSON text
    assert s["x"] == [step.step for step in result.trace.steps]
    assert s["ess"] == pytest.approx([step.ess for step in result.trace.steps])
    assert s["resampled"] == [step.resampled and len(set(step.ancestors.tolist())) < 8 for step in result.trace.steps]
    assert any(s["resampled"])
    assert s["final_x"] == result.trace.num_steps


def test_quantiles_skip_failed_rewards():
    assert step_quantiles([None, 1.0, 3.0, None, 2.0]) == (1.0, 1.5, 2.0, 2.5, 3.0)
    assert step_quantiles([None, None]) is None


@pytest.mark.parametrize("draw", [reward_ess_chart, lineage_chart])
def test_pictures_are_comfy_images(result, draw):
    img = draw(result.trace, 400, 200)
    assert img.shape == (1, 200, 400, 3) and img.dtype == torch.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    assert float(img.std()) > 0.05  # something was drawn on the background


def test_lineage_highlight_changes_the_picture(result):
    a = lineage_chart(result.trace, 400, 200, highlight=0)
    b = lineage_chart(result.trace, 400, 200, highlight=7)
    assert not torch.equal(a, b)
    with pytest.raises(TraceError, match="highlight particle 8"):
        lineage_chart(result.trace, 400, 200, highlight=8)


def test_single_particle_and_no_potential_steps():
    """Edge cases still draw: N=1, and a window with no potential step (steps == [])."""
    one = toy_run(particles=1, steps=6, every=2)
    assert reward_ess_chart(one.trace, 200, 120).shape == (1, 120, 200, 3)
    d = one.trace.to_dict()
    d["steps"] = []
    assert lineage_chart(d, 200, 120).shape == (1, 120, 200, 3)
    assert lineage_paths(d) == [[0]]


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "other"}', "not an FK steering trace"),
    ('[1, 2]', "expected an FK trace"),
])
def test_bad_traces_get_clear_messages(bad, message):
    with pytest.raises(TraceError, match=message):
        reward_ess_chart(bad)


def test_inconsistent_trace_is_refused(result):
    d = result.trace.to_dict()
    d["steps"][0]["ancestors"][0] = 99
    with pytest.raises(TraceError, match="ancestor index is outside"):
        lineage_chart(d)
    d = result.trace.to_dict()
    d["steps"][1]["rewards"] = d["steps"][1]["rewards"][:-1]
    with pytest.raises(TraceError, match="'rewards' has 7 entries for 8 particles"):
        lineage_chart(d)


def test_size_limits(result):
    with pytest.raises(TraceError, match="outside"):
        reward_ess_chart(result.trace, 50, 50)


# ---- a combined reward's components (issue 19 item 2)


def _combined_run(seed: int = 0):
    from fk_trace_fixtures import karras_sigmas, two_modes

    from fk_core import FKConfig, WeightedSum, steer

    class Coordinate:
        def __init__(self, k: int, name: str):
            self.k, self.name = k, name

        def __call__(self, x):
            return x[:, self.k].float()

    combined = WeightedSum([(Coordinate(0, "LAION aesthetic"), 1.0), (Coordinate(1, "sharpness"), -0.5)])
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(6, 2, generator=gen)
    config = FKConfig(potential="diff", lmbda=4.0, lambda_mode="fixed", every=2)
    return steer(two_modes(2, dtype=torch.float32).denoise, karras_sigmas(8).float(), noise, combined, config,
                 generator=gen)


@pytest.mark.parametrize("seed", [0, 3])
def test_component_series_follows_the_best_particle_and_sums_to_its_reward(seed):
    from fk_core.charts import component_series

    trace = json.loads(json.dumps(_combined_run(seed).trace.to_dict()))  # as the node receives it
    parts = component_series(trace)
    assert parts["names"] == ["LAION aesthetic", "sharpness"] and parts["weights"] == [1.0, -0.5]
    best = best_final_particle(trace)
    history = reward_history(trace, best)
    assert len(parts["x"]) == len(history) == len(trace["steps"]) + 1
    for j, total in enumerate(history):  # the shares of the best particle's ancestry add up to its reward
        assert sum(series[j] for series in parts["best"]) == pytest.approx(total, abs=1e-5)
    for j, step in enumerate(trace["steps"]):  # the mean line: the particles' mean share
        assert sum(series[j] for series in parts["mean"]) == pytest.approx(
            sum(step["rewards"]) / len(step["rewards"]), abs=1e-5)


def test_single_reward_has_no_component_series(result):
    from fk_core.charts import component_series

    assert component_series(result.trace) is None


def test_reward_chart_draws_the_components_panel():
    """A combined reward's chart gets the components panel (its legend colours are in the picture); the same
    trace without components draws without it."""
    from fk_core.charts import COMPONENT_COLOURS

    trace = _combined_run(0).trace.to_dict()
    plain = {k: v for k, v in trace.items() if k != "final_components"}
    plain["steps"] = [{k: v for k, v in s.items() if k != "components"} for s in trace["steps"]]

    def has_colour(img, colour):
        target = torch.tensor(colour, dtype=torch.float32) / 255
        return bool(((img[0] - target).abs().max(dim=-1).values < 2 / 255).any())

    with_parts, without = reward_ess_chart(trace, 600, 360), reward_ess_chart(plain, 600, 360)
    assert with_parts.shape == without.shape == (1, 360, 600, 3)
    assert all(has_colour(with_parts, c) for c in COMPONENT_COLOURS[:2])
    assert not any(has_colour(without, c) for c in COMPONENT_COLOURS[:2])


def test_best_of_n_marks_no_resampling():
    """Issue 19 item 6: with λ 0 (best-of-N) resampling keeps every particle: the chart marks no resampling."""
    best_of_n = toy_run(particles=8, steps=12, every=2, lmbda=0.0)
    assert any(step.resampled for step in best_of_n.trace.steps)  # the filter did resample ...
    assert not any(chart_series(best_of_n.trace)["resampled"])  # ... but nothing changed: no red mark
