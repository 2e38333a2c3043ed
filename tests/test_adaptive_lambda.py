"""Adaptive λ (ESS-targeted tempering), survivors per resampling, and the plain-words trace summary."""

import math

import pytest
import torch

from fk_core import FKConfig, FKError, ParticleFilter, steer, tempering
from fk_core.collapse import collapse_notes, summary_lines
from fk_core.log_weights import ess
from fk_core.tempering import raise_lambda
from testbeds.toy import karras_sigmas, two_modes

R1 = torch.tensor([0.1, 0.4, -0.3, 0.9, 0.0, 0.2], dtype=torch.float64)
R2 = torch.tensor([0.5, -0.2, 0.8, 0.1, 0.3, -0.6], dtype=torch.float64)
RF = torch.tensor([1.0, 0.2, -0.4, 0.6, 0.9, 0.0], dtype=torch.float64)
ZERO = torch.zeros(6, dtype=torch.float64)


def test_raise_lambda_lands_on_the_ess_target():
    lam = raise_lambda(ZERO, R1, ZERO, 0.0, math.inf, 0.5)
    assert ess(lam * R1) / 6 == pytest.approx(0.5, abs=1e-9)
    assert ess(lam * R1) / 6 >= 0.5  # the feasible side of the bisection


def test_raise_lambda_is_free_of_the_reward_scale():
    """The point of a strength: the same particles with rewards ×1000 get λ/1000, hence the same weights."""
    lam = raise_lambda(ZERO, R1, ZERO, 0.0, math.inf, 0.5)
    assert raise_lambda(ZERO, 1000 * R1, ZERO, 0.0, math.inf, 0.5) == pytest.approx(lam / 1000, rel=1e-9)


def test_raise_lambda_stops_at_the_ceiling_and_never_goes_down():
    assert raise_lambda(ZERO, R1, ZERO, 0.0, 0.01, 0.5) == 0.01  # the target holds at the ceiling: take it
    high = 50.0  # ESS/N at λ = 50 is far below 0.5: a start there is kept, not lowered
    assert ess(high * R1) / 6 < 0.5
    assert raise_lambda(ZERO, R1, ZERO, high, math.inf, 0.5) == high


def test_raise_lambda_with_equal_rewards_keeps_lambda():
    assert raise_lambda(ZERO, torch.ones(6, dtype=torch.float64), ZERO, 0.3, math.inf, 0.5) == 0.3


@pytest.mark.parametrize("kind", ["diff", "max", "sum", "immediate"])
@pytest.mark.parametrize("mode", ["adaptive", "auto"])
def test_adaptive_lambda_keeps_ess_and_rises(kind, mode):
    pf = ParticleFilter(6, kind, 5.0, resampling="systematic", lambda_mode=mode, strength=0.4)
    previous = 0.0
    rose = 0
    for k, r in ((1, R1), (2, R2), (3, RF)):
        e = pf.observe(k, 1.0 / k, r)
        ceiling = 5.0 if mode == "adaptive" else max(previous, tempering.AUTO_TILT / pf.reward_spread)
        assert e.lmbda >= previous and e.lmbda <= ceiling * (1 + 1e-12)
        at_ceiling = e.lmbda == pytest.approx(ceiling, rel=1e-12)
        if e.lmbda > previous:  # it rose: to the target exactly (the bisection's feasible end), or to the ceiling
            rose += 1
            assert e.ess >= 0.6 * 6 - 1e-9
            assert e.ess == pytest.approx(0.6 * 6, abs=1e-6) or at_ceiling
        else:  # held: only because the previous λ already misses the target (or it is the ceiling)
            assert e.ess < 0.6 * 6 or at_ceiling
        previous = e.lmbda
    assert rose >= 1


@pytest.mark.parametrize("kind", ["diff", "max", "sum", "immediate"])
@pytest.mark.parametrize("mode", ["adaptive", "auto"])
def test_final_weights_are_exp_lambda_final_r_whatever_the_lambda_path(kind, mode):
    """Never resampling (importance sampling): the final W ∝ exp(λ_final r(x0)) exactly."""
    pf = ParticleFilter(6, kind, 3.0, ess_threshold=1e-12, lambda_mode=mode, strength=0.3)
    pf.observe(3, 1.0, R1)
    last = pf.observe(6, 0.5, R2).lmbda
    final = pf.finish(RF)
    lam = pf.final_lmbda
    if mode == "adaptive":
        assert lam == 3.0
    else:  # auto: one more rise on the final rewards, to the target unless the carried weights already miss it
        assert lam >= last > 0
        ceiling = max(last, tempering.AUTO_TILT / pf.reward_spread)
        if lam > last:
            assert ess(final.log_weights) / 6 == pytest.approx(0.7, abs=1e-6) or lam == pytest.approx(ceiling)
        else:  # held: the final weights at the last λ already miss the target
            assert ess(last * RF) / 6 < 0.7
    assert final.log_weights.exp().tolist() == pytest.approx(torch.softmax(lam * RF, 0).tolist(), rel=1e-10)


@pytest.mark.parametrize("mode", ["adaptive", "auto"])
@pytest.mark.parametrize("kind", ["diff", "max"])
def test_the_ess_target_counts_the_carried_weights(mode, kind):
    """With an ESS threshold the weights of unresampled checks are carried: λ_t must keep ESS/N of the carried
    weights times the new potentials at the target, not of the new potentials alone (which would let λ rise
    too far whenever the carried weights are already uneven)."""
    gm = two_modes(2)
    rose = 0
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(16, 2, generator=g, dtype=torch.float64)
        config = FKConfig(potential=kind, lambda_mode=mode, lmbda=50.0, strength=0.5, ess_threshold=0.3,
                          window=(0.0, 1.0))
        trace = steer(gm.denoise, karras_sigmas(20), noise, lambda x: x[:, 0], config, generator=g).trace
        previous = 0.0
        for step in trace.steps:
            if step.lmbda > previous:
                rose += 1
                assert step.ess / 16 >= 0.5 - 1e-9, f"seed {seed}: λ rose to {step.lmbda:.4g}, ESS/N {step.ess / 16}"
            previous = step.lmbda
    assert rose >= 20


def test_strength_zero_means_no_steering():
    pf = ParticleFilter(6, "diff", 10.0, lambda_mode="auto", strength=0.0)
    e = pf.observe(2, 1.0, R1)
    assert e.lmbda == 0.0 and e.ess == pytest.approx(6.0)
    assert pf.finish(RF).log_weights.exp().tolist() == pytest.approx([1 / 6] * 6)


def test_bad_lambda_settings_are_refused_with_a_reason():
    with pytest.raises(FKError, match="lambda mode"):
        FKConfig(lambda_mode="sometimes")
    with pytest.raises(FKError, match="strength"):
        FKConfig(strength=1.5)
    with pytest.raises(FKError, match="0 or more"):
        ParticleFilter(4, "diff", -1.0, lambda_mode="adaptive")


def test_survivors_count_distinct_ancestors():
    pf = ParticleFilter(6, "diff", 1000.0)  # λ huge: one particle takes every weight
    e = pf.observe(2, 1.0, R1)
    assert e.resampled and e.survivors == 1 == len(set(e.ancestors.tolist()))
    pf = ParticleFilter(6, "diff", 1.0, ess_threshold=0.1)  # mild weights, ESS rule: no resampling, all kept
    e = pf.observe(2, 1.0, R1)
    assert not e.resampled and e.survivors == 6
    assert e.to_dict()["survivors"] == 6 and e.to_dict()["lmbda"] == 1.0


def toy_trace(config: FKConfig) -> dict:
    gm = two_modes(2)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(8, 2, generator=g, dtype=torch.float64)
    return steer(gm.denoise, karras_sigmas(20), noise, lambda x: x[:, 0], config, generator=g).trace.to_dict()


def test_an_early_collapse_gets_a_plain_note_and_auto_avoids_it():
    greedy = toy_trace(FKConfig(lmbda=1000.0, lambda_mode="fixed", window=(0.0, 1.0)))
    notes = collapse_notes(greedy)
    assert len(notes) == 1 and "early collapse" in notes[0] and "lambda mode" in notes[0]
    assert notes[0] in greedy["notes"]  # the engine put it in the trace
    gentle = toy_trace(FKConfig(potential="diff", lambda_mode="auto", strength=0.5, window=(0.0, 1.0)))
    assert collapse_notes(gentle) == []
    rose = [s for s, before in zip(gentle["steps"], [{"lmbda": 0.0}] + gentle["steps"]) if s["lmbda"] > before["lmbda"]]
    assert rose and all(s["ess"] >= 4 - 1e-6 for s in rose)  # where λ rose, it stopped at ESS = N/2
    assert min(s["survivors"] for s in gentle["steps"]) >= 3


def test_summary_lines_say_lambda_ess_survivors_and_lineages():
    trace = toy_trace(FKConfig(lambda_mode="auto", strength=0.5))
    lines = summary_lines(trace)
    text = "\n".join(lines)
    assert "λ rose from" in lines[0] and "auto" in lines[0] and f"{trace['final_lmbda']:.3g}" in lines[0]
    assert "ESS at the first check" in text and "particles kept per resampling" in text
    assert f"{len(set(trace['origin']))} of 8 initial noises" in text
    fixed = summary_lines(toy_trace(FKConfig(lmbda=2.0, lambda_mode="fixed")))
    assert fixed[0].startswith("λ 2 at each of")


def test_collapse_threshold_follows_the_number_of_particles():
    """2 of 4 is what strength 0.5 keeps by design; 1 of 4, or 2 of 8, early in the run, is a collapse."""
    def trace(n, survivors, step=5):
        return {"num_particles": n, "num_steps": 30, "config": {"lambda_mode": "auto", "potential": "max"},
                "steps": [{"step": step, "resampled": True, "survivors": survivors, "ess": 1.5}]}

    assert collapse_notes(trace(4, 2)) == []
    assert "kept only 1 of 4" in collapse_notes(trace(4, 1))[0]
    assert "kept only 2 of 8" in collapse_notes(trace(8, 2))[0]
    assert collapse_notes(trace(8, 3)) == [] and collapse_notes(trace(8, 1, step=20)) == []  # late: signal
    assert "lower the strength" in collapse_notes(trace(8, 1))[0]
