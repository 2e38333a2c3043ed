"""The particle loop: model-call accounting, determinism, traces, bad input."""

import json
import warnings

import pytest
import torch

from fk_core import FKConfig, FKError, ReuseFirstCall, run_segments, steer
from fk_core.steppers import euler_ancestral
from testbeds.toy import karras_sigmas, two_modes

GM = two_modes(2)
SIGMAS = karras_sigmas(10)
A = torch.tensor([1.0, 0.0], dtype=torch.float64)


def noise(n=6, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def counting(fn):
    calls = []

    def wrapped(x, sigma):
        calls.append(x.shape[0])
        return fn(x, sigma)

    return wrapped, calls


@pytest.mark.parametrize("every,window", [(1, (0.0, 1.0)), (3, (0.2, 0.8)), (1, (0.5, 0.5))])
def test_exactly_one_denoiser_call_per_step(every, window):
    den, calls = counting(GM.denoise)
    res = steer(den, SIGMAS, noise(), lambda x: x @ A, FKConfig(every=every, window=window))
    assert len(calls) == len(SIGMAS) - 1 == res.model_evaluations
    assert all(c == 6 for c in calls)


def test_without_potential_steps_the_loop_is_plain_sampling_bit_for_bit():
    plain = euler_ancestral(1.0, torch.Generator().manual_seed(5))(
        lambda x, s: GM.denoise(x, s[0]), noise(3) * SIGMAS[0], SIGMAS)
    res = steer(GM.denoise, SIGMAS, noise(3), lambda x: x @ A, FKConfig(window=(1.0, 1.0)),
                generator=torch.Generator().manual_seed(5))
    assert res.trace.steps == [] and torch.equal(res.samples, plain)


def test_potential_step_reuses_its_x0_for_the_next_step():
    """With one particle resampling is the identity; λ·r changes nothing, so FK equals plain sampling except
    for the resampling uniforms drawn from the shared generator. Check the x0 passed on is bit-identical by
    recording every x0 the step rule receives and every x0 the reward sees."""
    seen_by_reward, seen_by_step = [], []

    def den(x, sigma):
        out = GM.denoise(x, sigma)
        seen_by_step.append(out.clone())
        return out

    res = steer(den, SIGMAS, noise(4), lambda x: (seen_by_reward.append(x.clone()), x @ A)[1],
                FKConfig(lambda_mode="fixed", lmbda=0.0, every=3, window=(0.0, 1.0)))
    # potential steps 1, 4, 7: the reward saw exactly the x0 the model produced at those steps (one call each)
    assert len(seen_by_step) == 10 and len(seen_by_reward) == 3 + 1
    for k, x0 in zip([1, 4, 7], seen_by_reward):
        assert torch.equal(x0, seen_by_step[k])
    assert res.model_evaluations == 10


def test_same_seed_same_result_and_different_seed_differs():
    def run(seed):
        return steer(GM.denoise, SIGMAS, noise(), lambda x: x @ A, FKConfig(lambda_mode="fixed", lmbda=3.0),
                     generator=torch.Generator().manual_seed(seed))

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.log_weights, b.log_weights)
    assert a.trace.to_dict() == b.trace.to_dict()
    assert not torch.equal(a.samples, c.samples)


def test_trace_records_every_potential_step_and_a_consistent_lineage():
    res = steer(GM.denoise, SIGMAS, noise(), lambda x: x @ A,
                FKConfig(lambda_mode="fixed", lmbda=3.0, every=2, window=(0.0, 1.0)))
    tr = res.trace
    assert [s.step for s in tr.steps] == [1, 3, 5, 7]  # never the last step (9): it adds no noise
    for s in tr.steps:
        assert s.rewards.shape == (6,) and s.ancestors.shape == (6,)
        assert s.log_weights.exp().sum().item() == pytest.approx(1.0)
        assert 1.0 <= s.ess <= 6.0 and s.resampled
        assert not any(torch.is_tensor(v) and v.ndim > 1 for v in vars(s).values())  # no image batches kept
    paths = tr.lineage()
    assert [p[0] for p in paths] == tr.origin.tolist()
    assert [p[-1] for p in paths] == list(range(6))
    for path in paths:  # each hop follows the recorded ancestors
        for j, s in enumerate(tr.steps):
            assert int(s.ancestors[path[j + 1]]) == path[j]
    d = json.loads(json.dumps(tr.to_dict()))
    assert d["num_particles"] == 6 and len(d["steps"]) == 4 and d["config"]["every"] == 2


def test_adaptive_mode_resamples_exactly_when_ess_falls_below_the_threshold():
    """A fixed λ with an ESS threshold: weights are carried while ESS/N stays at or above 0.5 (ancestors the
    identity), and the population is resampled at the first check where it falls below."""
    config = FKConfig(lmbda=2.0, lambda_mode="fixed", ess_threshold=0.5, window=(0.0, 1.0))
    res = steer(GM.denoise, SIGMAS, noise(), lambda x: x @ A, config)
    steps = res.trace.steps
    assert any(s.resampled for s in steps) and any(not s.resampled for s in steps), "both branches exercised"
    for s in steps:
        assert s.resampled == (s.ess < 0.5 * 6), f"step {s.step}: ESS {s.ess:.3f}, resampled {s.resampled}"
        if not s.resampled:
            assert s.ancestors.tolist() == list(range(6))


def test_nan_rewards_are_dropped_and_reported():
    def reward(x):
        r = x @ A
        r[0] = float("nan")
        return r

    res = steer(GM.denoise, SIGMAS, noise(), reward, FKConfig(lambda_mode="fixed", lmbda=1.0))
    assert all(0 in s.invalid for s in res.trace.steps)
    assert all(s.log_weights[0] == -torch.inf for s in res.trace.steps)
    assert res.trace.final_invalid == [0] and res.log_weights[0] == -torch.inf
    assert res.best_index != 0


def test_all_nan_rewards_raise_a_clear_error():
    with pytest.raises(FKError, match="no particle has a usable reward"):
        steer(GM.denoise, SIGMAS, noise(), lambda x: torch.full((x.shape[0],), float("nan")), FKConfig())


def test_large_lambda_gives_finite_weights():
    res = steer(GM.denoise, SIGMAS, noise(), lambda x: 5.0 + 5.0 * torch.tanh(x @ A),
                FKConfig(lambda_mode="fixed", lmbda=100.0))
    assert torch.isfinite(res.log_weights).any() and not torch.isnan(res.log_weights).any()
    assert all(torch.isfinite(s.log_weights).any() for s in res.trace.steps)


def test_deterministic_step_rule_warns_and_notes_it():
    with pytest.warns(UserWarning, match="particles copied by resampling stay identical"):
        res = steer(GM.denoise, SIGMAS, noise(), lambda x: x @ A, FKConfig(step_rule="euler"))
    assert any("deterministic" in n for n in res.trace.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steer(GM.denoise, SIGMAS, noise(), lambda x: x @ A, FKConfig())


def test_bad_inputs():
    with pytest.raises(FKError, match="unknown potential"):
        FKConfig(potential="bogus")
    with pytest.raises(FKError, match="decreasing schedule ending at 0"):
        steer(GM.denoise, torch.tensor([1.0, 2.0, 0.0]), noise(), lambda x: x @ A)
    with pytest.raises(FKError, match="at least one particle"):
        steer(GM.denoise, SIGMAS, noise(0), lambda x: x @ A)
    with pytest.raises(FKError, match="one per particle"):
        steer(GM.denoise, SIGMAS, noise(), lambda x: torch.zeros(2))
    with pytest.raises(ValueError, match="window"):
        FKConfig(window=(0.8, 0.2))


def test_reuse_first_call_forwards_attributes_and_reuses_only_matching_input():
    class Model:
        inner_model = "the real one"

        def __init__(self):
            self.calls = 0

        def __call__(self, x, sigma, **kw):
            self.calls += 1
            return x * 0 + kw.get("shift", 0.0)

    m = Model()
    w = ReuseFirstCall(m)
    assert w.inner_model == "the real one"
    x = torch.ones(3, 2)
    s = torch.full((3,), 0.5)
    w.evaluate(x, s, shift=1.0)
    x2 = w.reorder(x * torch.arange(3.0)[:, None], torch.tensor([2, 2, 0]))
    assert torch.equal(w(x2, s, shift=1.0), torch.ones(3, 2)) and m.calls == 1  # reused, reordered memory
    assert torch.equal(w(x2, s, shift=1.0), torch.ones(3, 2)) and m.calls == 2  # memory used once
    w.evaluate(x, s)
    w(x + 1, s)  # different input: a real call
    assert m.calls == 4 and w.refused == 0


def test_reuse_first_call_makes_a_real_call_when_the_arguments_are_new_objects():
    """A sampler that installs its own hooks (new model options) must see what a real model call gives it."""
    calls = []

    def model(x, sigma, model_options=None):
        calls.append(model_options)
        for hook in (model_options or {}).get("post", []):
            hook(x)
        return x * 0.5

    options = {"post": []}
    w = ReuseFirstCall(model)
    x, s = torch.ones(2, 2), torch.full((2,), 0.5)
    w.evaluate(x, s, model_options=options)
    w(x, s, model_options=options)  # the same object: reused
    assert len(calls) == 1
    seen = []
    w.evaluate(x, s, model_options=options)
    w(x, s, model_options={"post": [seen.append]})  # a sampler's own hooks: a real call, counted
    assert len(calls) == 3 and len(seen) == 1 and w.refused == 1


def test_run_segments_with_a_host_sampler_and_model_kwargs():
    """A host passes its own sampler and extra model arguments (as ComfyUI passes conditioning)."""
    seen = []

    def model(x, sigma, cond=None):
        seen.append(cond)
        return GM.denoise(x, sigma[0])

    def host_sampler(m, x, sigmas, extra_args=None, callback=None, disable=None):
        return euler_ancestral(1.0, torch.Generator().manual_seed(len(sigmas)))(m, x, sigmas, extra_args)

    res = run_segments(noise() * SIGMAS[0], SIGMAS, model, host_sampler, lambda x: x @ A, FKConfig(every=2),
                       extra_args={"cond": "c"})
    assert res.model_evaluations == 10 and seen == ["c"] * 10


def test_schedule_never_uses_the_first_or_last_step():
    from fk_core.schedule import potential_steps

    assert potential_steps(10, 1, 0.0, 1.0) == list(range(1, 9))
    assert potential_steps(10, 3, 0.2, 1.0) == [2, 5, 8]
    assert potential_steps(10, 1, 0.3, 0.3) == [3]  # float rounding of 0.3·10 does not drop the step
    assert potential_steps(2, 1, 0.0, 1.0) == []


def test_schedule_ending_above_zero_scores_the_x0_prediction_there():
    """A split schedule's first pass ends at σ > 0: the final reward must see x0, not the noisy sample."""
    sigmas = SIGMAS[:6]  # stops at sigmas[5] > 0
    seen = []
    den, calls = counting(GM.denoise)
    seg = euler_ancestral(1.0, torch.Generator().manual_seed(0))
    res = run_segments(noise() * sigmas[0], sigmas, lambda x, s: den(x, s[0]), seg,
                       lambda x: (seen.append(x.clone()), x @ A)[1], FKConfig(window=(1.0, 1.0)))
    assert len(calls) == 5 + 1 and res.model_evaluations == 6
    assert torch.allclose(seen[-1], GM.denoise(res.samples, sigmas[5]))
    assert any("ends at sigma" in n for n in res.trace.notes)


def test_segment_seeds_do_not_collide_across_run_seeds():
    """Segment j of a run seeded s used seed s + 1000·j, so runs whose seeds differ by 1000 shared noise."""
    seen = {}

    def recording_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        seen.setdefault(run_seed, []).append(extra_args["seed"])
        return euler_ancestral(1.0, torch.Generator().manual_seed(extra_args["seed"] % 2**63))(model, x, sigmas)

    for run_seed in (0, 1, 1000, 2000):
        run_segments(noise() * SIGMAS[0], SIGMAS, lambda x, s, **kw: GM.denoise(x, s[0]), recording_sampler,
                     lambda x: x @ A, FKConfig(every=1), extra_args={"seed": run_seed})
    for run_seed, seeds in seen.items():
        assert seeds[0] == run_seed  # segment 0 is plain sampling with the run's seed
        assert len(seeds) == len(set(seeds)) >= 5  # one seed per segment, all different
    all_seeds = [s for seeds in seen.values() for s in seeds]
    assert len(all_seeds) == len(set(all_seeds))  # no stream shared between runs or segments


def test_callback_gets_step_indices_of_the_whole_run():
    steps = []
    run_segments(noise() * SIGMAS[0], SIGMAS, lambda x, s, **kw: GM.denoise(x, s[0]),
                 euler_ancestral(1.0, torch.Generator().manual_seed(0)), lambda x: x @ A, FKConfig(every=3),
                 callback=lambda info: steps.append(info["i"]))
    assert steps == list(range(len(SIGMAS) - 1))


class TwoPhaseScorer:
    """A scorer as hosts write one: check(x0, step) scores previews, final(x) the finished particles, each with
    'images' (here: x0 itself) and a measured cost."""

    name, final_name, label, notes = "steer", "judge", "test decoder", ["the scorer's own remark"]

    def __init__(self):
        self.checks, self.finals = [], 0

    def check(self, x0, step):
        from fk_core import Scored

        self.checks.append(step)
        return Scored(x0 @ A, images=x0, cost={"decode_s": 0.5, "reward_s": 0.25})

    def final(self, x):
        from fk_core import Scored

        self.finals += 1
        return Scored(-(x @ A), images=x * 2, cost={"decode_s": 1.0, "reward_s": 2.0})


class Observer:
    def __init__(self):
        self.calls = []

    def on_start(self, num_steps, particles):
        self.calls.append(("start", num_steps, particles))

    def on_potential_step(self, event, images):
        self.calls.append(("step", event.step, images.shape))

    def on_finish(self, result):
        self.calls.append(("finish", result.chosen_index))


def test_two_phase_scorer_observer_and_cost_record():
    """The engine owns the schedule (check steps), the cost record, the notes and the output choice; the
    observer hears the run with the images the scorer looked at."""
    from fk_core import CostClock
    from fk_core.schedule import potential_steps

    scorer, observer = TwoPhaseScorer(), Observer()
    config = FKConfig(every=2, window=(0.0, 1.0), output="sample")
    res = run_segments(noise() * SIGMAS[0], SIGMAS, lambda x, s, **kw: GM.denoise(x, s[0]),
                       euler_ancestral(1.0, torch.Generator().manual_seed(1)), scorer, config,
                       generator=torch.Generator().manual_seed(2), clock=CostClock(), observer=[observer])
    steps = [int(k) for k in potential_steps(len(SIGMAS) - 1, 2, 0.0, 1.0)]
    assert scorer.checks == steps and scorer.finals == 1
    torch.testing.assert_close(res.rewards, -(res.samples @ A))  # the final phase weighted the particles
    torch.testing.assert_close(res.final_images, res.samples * 2)
    assert observer.calls[0] == ("start", len(SIGMAS) - 1, 6) and observer.calls[-1] == ("finish", res.chosen_index)
    assert [c[1] for c in observer.calls[1:-1]] == steps and all(c[2] == (6, 2) for c in observer.calls[1:-1])
    cost = res.trace.cost
    assert (cost["checks"], cost["preview_decoder"]) == (len(steps), "test decoder")
    assert (cost["decode_s"], cost["final_reward_s"]) == (0.5 * len(steps), 2.0)
    assert all(set(s.cost) == {"model_s", "decode_s", "reward_s"} for s in res.trace.steps)
    assert "the scorer's own remark" in res.trace.notes
    assert any("final weights and output choice by judge; steer only steered" in n for n in res.trace.notes)
    assert float(res.log_weights[res.chosen_index].exp()) > 0  # drawn from the final weights


def test_steer_users_get_the_notes_and_the_chosen_particle():
    res = steer(GM.denoise, SIGMAS, noise(), lambda x: x @ A, FKConfig(window=(0.91, 0.95), output="best"))
    assert any("best-of-N" in n for n in res.trace.notes)  # config_notes, made by the engine itself
    assert res.chosen_index == res.best_index and res.trace.cost is None  # no clock: no timings in the trace


def test_public_api_takes_names_where_order_is_not_obvious():
    """FKConfig(10.0) once meant λ = 10; fields were added before lmbda's position since, so positional use
    would silently mean something else (issue 17): every field is keyword-only, and so are the options of the
    public functions."""
    import inspect

    from fk_core import ParticleFilter, ReuseFirstCall, run_segments

    with pytest.raises(TypeError):
        FKConfig(10.0)
    assert FKConfig(lmbda=10.0).lmbda == 10.0
    for fn, first_keyword_only in ((steer, "generator"), (run_segments, "generator"),
                                   (ParticleFilter.__init__, "resampling"), (ReuseFirstCall.__init__, "enabled")):
        parameter = inspect.signature(fn).parameters[first_keyword_only]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, fn
    from fk_core import rewards

    for name in ("build_reward", "load_clip_score", "load_hpsv2", "load_laion_aesthetic", "load_object_detector",
                 "load_hpsv3", "load_imagereward", "load_pickscore", "load_vqa_judge"):  # files first, options named
        parameter = inspect.signature(getattr(rewards, name)).parameters["device"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
