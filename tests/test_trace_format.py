"""fk_core.trace_format: a trace is checked field by field; each bad trace names the field (host-free)."""

from __future__ import annotations

import json

import pytest
from fk_trace_fixtures import toy_run

from fk_core.charts import TraceError, lineage_chart, load_trace
from fk_core.trace_format import MAX_PARTICLES, validate_trace


@pytest.fixture(scope="module")
def good() -> dict:
    return toy_run(particles=4, steps=10, every=2).trace.to_dict()


def _edited(trace: dict, edit) -> dict:
    copy = json.loads(json.dumps(trace))
    edit(copy)
    return copy


BAD = [
    ("no steps", lambda t: t.pop("steps"), "field 'steps' is missing"),
    ("steps not a list", lambda t: t.update(steps=3), "field 'steps' is 3, not a list"),
    ("a step is a number", lambda t: t["steps"].__setitem__(0, 7), "field 'steps[0]' is 7, not an object"),
    ("step without rewards", lambda t: t["steps"][1].pop("rewards"), "field 'steps[1].rewards' is missing"),
    ("text reward", lambda t: t["steps"][0]["rewards"].__setitem__(2, "high"),
     "field 'steps[0].rewards[2]' is the text 'high', not a number"),
    ("float ancestor", lambda t: t["steps"][0]["ancestors"].__setitem__(1, 1.0),
     "field 'steps[0].ancestors[1]' is 1.0, not a whole-number particle index"),
    ("ancestor out of range", lambda t: t["steps"][0]["ancestors"].__setitem__(0, 9), "ancestor index is outside"),
    ("text step count", lambda t: t.update(num_steps="ten"), "field 'num_steps' is the text 'ten'"),
    ("text particle count", lambda t: t.update(num_particles="4"), "field 'num_particles' must be a positive"),
    ("huge particle count", lambda t: t.update(num_particles=3_000_000), f"at most {MAX_PARTICLES}"),
    ("spliced: steps go back", lambda t: t["steps"].extend(t["steps"][:1]), "not after the previous potential step"),
    ("spliced: other particle count", lambda t: t.update(final_rewards=[0.0] * 8),
     "'final_rewards' has 8 entries for 4 particles"),
    ("resampled not a bool", lambda t: t["steps"][0].update(resampled="yes"), "not true/false"),
    ("ess not a number", lambda t: t["steps"][0].update(ess="many"), "field 'steps[0].ess' is the text 'many'"),
    ("ess above N", lambda t: t["steps"][0].update(ess=40.0), "outside 0..4"),
    ("step past the run", lambda t: t["steps"][-1].update(step=99), "field 'steps[3].step' is 99, outside"),
    ("origin of a float", lambda t: t.update(origin=[0, 1, 2.5, 3]), "field 'origin[2]' is 2.5"),
]


@pytest.mark.parametrize("edit, expected", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_field_is_named(good, edit, expected):
    bad = _edited(good, edit)
    with pytest.raises(TraceError) as error:
        lineage_chart(json.dumps(bad), 200, 120)
    assert expected in str(error.value)


def test_good_trace_passes_unchanged(good):
    assert validate_trace(good) is good
    assert load_trace(json.dumps(good)) == json.loads(json.dumps(good))


def test_tiny_trace_claiming_millions_is_refused_before_any_work():
    """The issue's 70-byte trace: refused by its claimed size, not after drawing three million dots."""
    tiny = '{"format": "fk-steering-trace/1", "num_particles": 3000000, "steps": []}'
    with pytest.raises(TraceError, match="claims 3000000 particles"):
        lineage_chart(tiny, 200, 120)
    deep = "[" * 100000 + "]" * 100000
    with pytest.raises(TraceError, match="nested too deeply|not valid JSON"):
        load_trace(deep)
