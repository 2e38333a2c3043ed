"""Hand-computed potentials and final weights: the final population targets p·exp(λ r) for every potential."""

import math

import pytest
import torch

from fk_core import FKError, ParticleFilter

LAMBDA = 2.0
NEVER = 1e-12  # an ESS threshold no population falls below: adaptive mode that never resamples
R1 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
R2 = torch.tensor([-1.0, 3.0, 0.0], dtype=torch.float64)
RF = torch.tensor([0.25, -0.5, 2.0], dtype=torch.float64)


def log_g_by_hand(kind: str, r_path: list[float]) -> list[float]:
    """Log-potentials along one lineage's rewards r_1..r_t, straight from the definitions."""
    out = []
    for t, r in enumerate(r_path):
        seen = r_path[: t + 1]
        out.append(LAMBDA * {
            "diff": r - (r_path[t - 1] if t else 0.0),
            "immediate": r,
            "max": max(seen),
            "sum": sum(seen),
        }[kind])
    return out


def softmax_list(v):
    m = max(v)
    e = [math.exp(x - m) for x in v]
    return [x / sum(e) for x in e]


@pytest.mark.parametrize("kind", ["diff", "immediate", "max", "sum"])
def test_without_resampling_final_weights_are_exactly_exp_lambda_r(kind):
    """Adaptive mode that never resamples: importance sampling, final W ∝ exp(λ r(x0)) whatever the potential."""
    pf = ParticleFilter(3, kind, LAMBDA, ess_threshold=NEVER)
    e1 = pf.observe(3, 1.0, R1)
    e2 = pf.observe(6, 0.5, R2)
    assert not e1.resampled and not e2.resampled
    # carried weights at step 2 are the sums of both log-potentials per particle (adaptive carry-over)
    expected2 = softmax_list([sum(log_g_by_hand(kind, [float(R1[i]), float(R2[i])])) for i in range(3)])
    assert e2.log_weights.exp().tolist() == pytest.approx(expected2, rel=1e-12)
    final = pf.finish(RF)
    assert final.log_weights.exp().tolist() == pytest.approx(softmax_list((LAMBDA * RF).tolist()), rel=1e-12)
    assert final.best_index == 2


@pytest.mark.parametrize("kind", ["diff", "immediate", "max", "sum"])
def test_resample_then_skip_then_final(kind):
    """Step 1 resamples (ancestors read back), step 2 is skipped by the ESS rule, then the final weighting.

    Final log-weight of particle i = log G_2(i) [carried] + λ r_f(i) − (log G_1 + log G_2 along its lineage).
    """
    pf = ParticleFilter(3, kind, LAMBDA, resampling="multinomial", ess_threshold=0.6)
    e1 = pf.observe(3, 1.0, R1)
    assert e1.resampled  # ESS = 1.65 < 0.6·3
    anc = e1.ancestors.tolist()
    r1_anc = R1[e1.ancestors]
    delta = torch.tensor([0.1, 0.0, -0.1], dtype=torch.float64)
    # step-2 rewards chosen so that log G_2 differs by only λ·δ between particles: ESS stays near 3
    r2 = {"diff": r1_anc + delta, "immediate": delta, "max": 5.0 + delta, "sum": -r1_anc + delta}[kind]
    e2 = pf.observe(6, 0.5, r2)
    assert not e2.resampled
    final = pf.finish(RF)
    logw = []
    for i in range(3):
        g = log_g_by_hand(kind, [float(R1[anc[i]]), float(r2[i])])
        logw.append(g[1] + LAMBDA * float(RF[i]) - (g[0] + g[1]))
    assert final.log_weights.exp().tolist() == pytest.approx(softmax_list(logw), rel=1e-10)


def test_three_steps_all_resampled_by_hand_max_with_negative_rewards():
    pf = ParticleFilter(2, "max", 1.5, resampling="systematic")
    r = [torch.tensor([-3.0, -1.0]).double(), torch.tensor([-4.0, -0.5]).double(), torch.tensor([-2.0, -6.0]).double()]
    paths = [[], []]
    lineage_applied = [0.0, 0.0]
    runmax = [-math.inf, -math.inf]
    for t, rt in enumerate(r):
        ev = pf.observe(t + 1, 1.0, rt)
        # weights before resampling: exp(1.5 * running max) — negative rewards are NOT floored at 0
        new_max = [max(runmax[i], float(rt[i])) for i in range(2)]
        assert ev.log_weights.exp().tolist() == pytest.approx(softmax_list([1.5 * m for m in new_max]), rel=1e-12)
        applied = [lineage_applied[i] + 1.5 * new_max[i] for i in range(2)]
        a = ev.ancestors.tolist()
        runmax = [new_max[j] for j in a]
        lineage_applied = [applied[j] for j in a]
        paths = [paths[j] + [j] for j in a]
    rf = torch.tensor([0.5, -0.5]).double()
    final = pf.finish(rf)
    expected = softmax_list([1.5 * float(rf[i]) - lineage_applied[i] for i in range(2)])
    assert final.log_weights.exp().tolist() == pytest.approx(expected, rel=1e-12)


def test_large_lambda_keeps_rewards_distinct():
    """λ=100 with rewards in [0, 10]: finite log-weights, and rewards 3 and 4 stay different (no 1e10 clamp)."""
    pf = ParticleFilter(4, "immediate", 100.0, ess_threshold=NEVER)
    ev = pf.observe(1, 1.0, torch.tensor([3.0, 4.0, 10.0, 0.0]))
    assert torch.isfinite(ev.log_weights[:3]).all()
    assert ev.log_weights[2] == pytest.approx(0.0, abs=1e-12)
    assert ev.log_weights[1] - ev.log_weights[0] == pytest.approx(100.0)
    final = pf.finish(torch.tensor([3.0, 4.0, 10.0, 0.0]))
    assert torch.isfinite(final.log_weights[:3]).all()
    assert final.log_weights[1] - final.log_weights[0] == pytest.approx(100.0)


def test_nan_reward_gets_zero_weight_and_is_reported():
    pf = ParticleFilter(3, "diff", 1.0)
    ev = pf.observe(2, 1.0, torch.tensor([0.1, float("nan"), 0.2]))
    assert ev.invalid == [1]
    assert ev.log_weights[1] == -torch.inf
    assert 1 not in ev.ancestors.tolist()
    final = pf.finish(torch.tensor([float("nan"), 0.3, 0.2]))
    assert final.log_weights[0] == -torch.inf and final.best_index in (1, 2)


def test_all_nan_rewards_is_a_clear_error():
    pf = ParticleFilter(3, "diff", 1.0)
    with pytest.raises(FKError, match="no particle has a usable reward"):
        pf.observe(2, 1.0, torch.full((3,), float("nan")))
    pf = ParticleFilter(2, "diff", 1.0)
    with pytest.raises(FKError, match="no finished sample"):
        pf.finish(torch.tensor([float("nan"), float("inf")]))


def test_bad_configuration_errors():
    with pytest.raises(FKError, match="at least one particle"):
        ParticleFilter(0, "diff", 1.0)
    with pytest.raises(FKError, match="ESS threshold"):
        ParticleFilter(2, "diff", 1.0, ess_threshold=1.5)
    pf = ParticleFilter(2, "diff", 1.0)
    with pytest.raises(FKError, match="expected one per particle"):
        pf.observe(1, 1.0, torch.zeros(3))
    with pytest.raises(ValueError, match="unknown potential"):
        ParticleFilter(2, "bogus", 1.0).observe(1, 1.0, torch.zeros(2))
