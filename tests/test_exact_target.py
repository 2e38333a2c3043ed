"""Exact target: the weighted FK population targets the λ-tilt of the *same* sampler's output.

Model: a two-mode Gaussian mixture with its exact denoiser (testbeds.toy). Reward r(x) = a·x (linear).
A finite-step Euler-ancestral sampler is itself biased, so the reference is the tilt of that sampler's own
output distribution q: E_tilt[f] = E_q[f e^{λ r}] / E_q[e^{λ r}], estimated by self-normalised importance
sampling over many plain runs of the same step rule. The FK estimate combines R independent runs of N
particles with their normalising-constant estimates Ẑ_r (unbiased for E_q[e^{λ r}] for any N):
Σ_r Ẑ_r Σ_i W_ri f(x_ri) / Σ_r Ẑ_r — consistent in R without the O(1/N) self-normalisation bias.
Both standard errors come from the delta method; we require agreement within 4 combined standard errors.

Adaptive λ (λ_t rising by the ESS target, then the final weighting at λ) must hit the same target: the
intermediate λ_t only change how the particles get there. And the normalising-constant estimate itself is
checked against a plain Monte-Carlo estimate of E_q[e^{λ r}]: the FK estimates above would survive a wrong
Ẑ only by luck, this one would not.
"""

import functools

import pytest
import torch

from fk_core import FKConfig, steer
from fk_core.steppers import euler_ancestral
from testbeds.toy import karras_sigmas, two_modes

STEPS = 12
LAMBDA = 0.5
SIGMAS = karras_sigmas(STEPS, sigma_min=0.05, sigma_max=10.0)


def direction(dim: int) -> torch.Tensor:
    a = torch.zeros(dim, dtype=torch.float64)
    a[0] = 1.0
    if dim > 1:
        a[1] = 0.5  # not axis-aligned: the second coordinate only adds noise to the reward
    return a


def statistics(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """[M, 2]: the reward direction's projection and the indicator of the upper mode."""
    return torch.stack([x @ a, (x[:, 0] > 0).double()], dim=1)


def ratio_estimate(weights: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ w f / Σ w and its delta-method standard error, weights [M], values [M, F]."""
    w = weights / weights.sum()
    est = (w[:, None] * values).sum(0)
    se = torch.sqrt((w[:, None] ** 2 * (values - est) ** 2).sum(0))
    return est, se


@functools.lru_cache(maxsize=None)
def reference(dim: int, m: int = 40000):
    a = direction(dim)
    gm = two_modes(dim)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(m, dim, generator=g, dtype=torch.float64) * SIGMAS[0]
    x = euler_ancestral(1.0, g)(lambda x, s: gm.denoise(x, s[0]), x, SIGMAS[:STEPS + 1])
    logw = LAMBDA * (x @ a)
    return ratio_estimate(torch.exp(logw - logw.max()), statistics(x, a))


@functools.lru_cache(maxsize=None)
def plain_normalizer(dim: int, m: int = 40000) -> tuple[float, float]:
    """E_q[e^{λ r}] over the same plain runs as :func:`reference`, and its standard error."""
    a = direction(dim)
    gm = two_modes(dim)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(m, dim, generator=g, dtype=torch.float64) * SIGMAS[0]
    x = euler_ancestral(1.0, g)(lambda x, s: gm.denoise(x, s[0]), x, SIGMAS[:STEPS + 1])
    w = torch.exp(LAMBDA * (x @ a))
    return float(w.mean()), float(w.std() / m**0.5)


def fk_runs(dim: int, a: torch.Tensor, config: FKConfig, runs: int = 100, n: int = 16):
    """Per run: log Ẑ, Σ_i W_i f(x_i), and the λ_t the run applied at its checks."""
    gm = two_modes(dim)
    log_z, per_run, lambdas = [], [], []
    for r in range(runs):
        g = torch.Generator().manual_seed(10_000 + r)
        noise = torch.randn(n, dim, generator=g, dtype=torch.float64)
        res = steer(gm.denoise, SIGMAS, noise, lambda x: x @ a, config, generator=g)
        log_z.append(res.log_normalizer)
        per_run.append((res.log_weights.exp()[:, None] * statistics(res.samples, a)).sum(0))
        lambdas += [s.lmbda for s in res.trace.steps]
    return torch.tensor(log_z, dtype=torch.float64), torch.stack(per_run), lambdas


def fk_estimate(dim: int, a: torch.Tensor, config: FKConfig, runs: int = 100, n: int = 16):
    log_z, per_run, _ = fk_runs(dim, a, config, runs, n)
    return ratio_estimate(torch.exp(log_z - log_z.max()), per_run)


# Every potential is checked with two potential steps (k = 4, 8 of 12), with and without the ESS rule; `diff`
# also at every step. The greedy potentials (max, sum, immediate) compound the tilt at every potential step:
# with 11 of them the lower mode's share of the intermediate population falls to about e^-20 and dies out,
# so no finite run can show their (still unbiased, but astronomically heavy-tailed) correction. README says so.
# The copy-variety window (fk_core.window) is switched off here, so that these checks happen where the schedule
# says and the potentials are tested; the window itself is tested with the auto mode below.
NO_COPY_WINDOW = dict(copy_variety=(1.0, 0.0))
CONFIGS = {
    "two-steps": dict(every=4, window=(0.3, 0.7), **NO_COPY_WINDOW),
    "two-steps-adaptive": dict(every=4, window=(0.3, 0.7), ess_threshold=0.5, **NO_COPY_WINDOW),
    "every-step": dict(every=1, **NO_COPY_WINDOW),
    "every-step-adaptive": dict(every=1, ess_threshold=0.5, **NO_COPY_WINDOW),
}
CASES = [(p, s) for p in ("diff", "max", "sum", "immediate") for s in ("two-steps", "two-steps-adaptive")]
CASES += [("diff", "every-step"), ("diff", "every-step-adaptive")]
# λ_t chosen by the ESS target (strength 0.2: each check keeps ESS/N ≥ 0.8, so λ_t stays below λ at some
# checks and the final weighting has real work to do — asserted below, so the case cannot pass vacuously)
RISING = dict(lambda_mode="adaptive", strength=0.2)
RISING_CASES = [(p, "two-steps") for p in ("diff", "max", "sum", "immediate")] + [("diff", "every-step")]


@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("potential,schedule", CASES)
def test_fk_matches_tilted_sampler(potential, schedule, dim):
    a = direction(dim)
    ref, ref_se = reference(dim)
    config = FKConfig(potential=potential, lmbda=LAMBDA, lambda_mode="fixed", **CONFIGS[schedule])
    est, se = fk_estimate(dim, a, config)
    tol = 4 * torch.sqrt(se**2 + ref_se**2)
    assert torch.all((est - ref).abs() <= tol), f"FK {est.tolist()} vs reference {ref.tolist()} ± {tol.tolist()}"
    # and the tilt is a real change from the untilted sampler (the test could fail the other way too)
    assert ref[1] > 0.8, "the tilt should move most mass to the upper mode"


@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("potential,schedule", RISING_CASES)
def test_adaptive_lambda_matches_the_same_tilted_sampler(potential, schedule, dim):
    a = direction(dim)
    ref, ref_se = reference(dim)
    config = FKConfig(potential=potential, lmbda=LAMBDA, **CONFIGS[schedule], **RISING)
    log_z, per_run, lambdas = fk_runs(dim, a, config)
    est, se = ratio_estimate(torch.exp(log_z - log_z.max()), per_run)
    assert min(lambdas) < 0.9 * LAMBDA, "the ESS target never held λ_t below λ: the case tests nothing new"
    assert all(0.0 <= v <= LAMBDA for v in lambdas)
    tol = 4 * torch.sqrt(se**2 + ref_se**2)
    assert torch.all((est - ref).abs() <= tol), f"FK {est.tolist()} vs reference {ref.tolist()} ± {tol.tolist()}"


# Ẑ is unbiased for E_q[e^{λ r}] with a fixed λ whatever N, so the mean of Ẑ over R runs must match a plain
# Monte-Carlo estimate (4 combined s.e.). Zeroing log_normalizer gives mean 1 against E ≈ 1.5, more than
# twice the tolerance away; dropping the increments of the intermediate epochs fails too (checked by hand).
@pytest.mark.parametrize("potential,schedule", CASES)
def test_normalising_constant_matches_plain_monte_carlo(potential, schedule):
    a = direction(2)
    exact, exact_se = plain_normalizer(2)
    config = FKConfig(potential=potential, lmbda=LAMBDA, lambda_mode="fixed", **CONFIGS[schedule])
    log_z, _, _ = fk_runs(2, a, config, runs=200, n=8)
    z = log_z.exp()
    mean, se = float(z.mean()), float(z.std() / len(z) ** 0.5)
    tol = 4 * (se**2 + exact_se**2) ** 0.5
    assert abs(mean - exact) <= tol, f"mean Ẑ {mean:.4f} vs Monte-Carlo E[e^(λr)] {exact:.4f} ± {tol:.4f}"
    assert abs(exact - 1.0) > 2 * tol, "E[e^(λr)] must be far from 1 or a zeroed Ẑ would pass"


def test_normalising_constant_with_adaptive_lambda_is_consistent():
    """λ_t chosen from the particles: Ẑ is consistent (bias O(1/N)); with N = 16 it is within 4 s.e."""
    a = direction(2)
    exact, exact_se = plain_normalizer(2)
    config = FKConfig(potential="diff", lmbda=LAMBDA, **CONFIGS["every-step"], **RISING)
    log_z, _, _ = fk_runs(2, a, config, runs=200, n=16)
    z = log_z.exp()
    mean, se = float(z.mean()), float(z.std() / len(z) ** 0.5)
    tol = 4 * (se**2 + exact_se**2) ** 0.5
    assert abs(mean - exact) <= tol, f"mean Ẑ {mean:.4f} vs Monte-Carlo E[e^(λr)] {exact:.4f} ± {tol:.4f}"


def test_reference_is_close_to_the_closed_form_tilt():
    """Sanity of the test bed: the tilted 12-step sampler puts about the exact tilted share in the upper mode.

    (Its mean is biased by the coarse discretisation — that is why the FK tests compare against the tilt of
    the same sampler rather than the closed form.) 0.03 = 10 standard errors of the 40 000-run estimate.
    """
    ref, _ = reference(2)
    exact_upper = float(two_modes(2).tilted(direction(2), LAMBDA).weights[1])
    assert ref[1] == pytest.approx(exact_upper, abs=0.03)


# ---------------------------------------------------------------------------------------------------
# Two rewards, one target: a cheap reward steers, a final judge weights. Whatever the cheap reward, the final
# log-weight λ·r_final(x0) − (potentials applied along the lineage) makes the weighted population target
# q·exp(λ r_final). The cheap reward here is correlated with the final one but tilts a different direction.
CHEAP = torch.tensor([1.0, 0.5], dtype=torch.float64)
FINAL = torch.tensor([0.25, 1.0], dtype=torch.float64)


def two_reward_statistics(x: torch.Tensor) -> torch.Tensor:
    """[M, 3]: the final reward's direction, the second coordinate and the upper-mode indicator."""
    return torch.stack([x @ FINAL, x[:, 1], (x[:, 0] > 0).double()], dim=1)


@functools.lru_cache(maxsize=None)
def plain_runs(m: int = 40000) -> torch.Tensor:
    gm = two_modes(2)
    g = torch.Generator().manual_seed(4321)
    x = torch.randn(m, 2, generator=g, dtype=torch.float64) * SIGMAS[0]
    return euler_ancestral(1.0, g)(lambda x, s: gm.denoise(x, s[0]), x, SIGMAS[:STEPS + 1])


def tilt_of_plain_runs(direction: torch.Tensor):
    x = plain_runs()
    logw = LAMBDA * (x @ direction)
    return ratio_estimate(torch.exp(logw - logw.max()), two_reward_statistics(x))


@pytest.mark.parametrize("potential,schedule", [("max", "two-steps"), ("diff", "every-step"),
                                                ("immediate", "two-steps-adaptive")])
def test_final_reward_sets_the_target_cheap_reward_only_steers(potential, schedule):
    gm = two_modes(2)
    config = FKConfig(potential=potential, lmbda=LAMBDA, lambda_mode="fixed", **CONFIGS[schedule])
    log_z, per_run = [], []
    for r in range(100):
        g = torch.Generator().manual_seed(20_000 + r)
        noise = torch.randn(16, 2, generator=g, dtype=torch.float64)
        res = steer(gm.denoise, SIGMAS, noise, lambda x: x @ CHEAP, config, generator=g,
                    final_reward=lambda x: x @ FINAL)
        torch.testing.assert_close(res.rewards, res.samples @ FINAL, msg="final rewards come from the judge")
        log_z.append(res.log_normalizer)
        per_run.append((res.log_weights.exp()[:, None] * two_reward_statistics(res.samples)).sum(0))
    log_z = torch.tensor(log_z, dtype=torch.float64)
    est, se = ratio_estimate(torch.exp(log_z - log_z.max()), torch.stack(per_run))
    ref, ref_se = tilt_of_plain_runs(FINAL)
    tol = 4 * torch.sqrt(se**2 + ref_se**2)
    assert torch.all((est - ref).abs() <= tol), f"FK {est.tolist()} vs final-judge tilt {ref.tolist()} ± {tol.tolist()}"
    # The test can fail: under the cheap reward's tilt the upper mode's share is far outside the tolerance
    # (more than 8 standard errors away).
    wrong, _ = tilt_of_plain_runs(CHEAP)
    assert (wrong - ref).abs()[2] > 2 * tol[2], (wrong.tolist(), ref.tolist(), tol.tolist())


def test_final_reward_is_called_once_on_the_finished_samples_only():
    gm = two_modes(2)
    calls = []

    def judge(x):
        calls.append(x.clone())
        return x @ FINAL

    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = steer(gm.denoise, SIGMAS, noise, lambda x: x @ CHEAP, FKConfig(lambda_mode="fixed", lmbda=LAMBDA, every=2),
                final_reward=judge)
    assert len(calls) == 1 and torch.equal(calls[0], res.samples)
    assert res.best_index == int(torch.argmax(res.samples @ FINAL))
    assert any("final" in note for note in res.trace.notes)


# ---------------------------------------------------------------------------------------------------
# Auto mode chooses every λ_t and the final λ from the particles, so each run targets q·exp(λ_final·r) for its own
# λ_final (reported in the trace). Its final weights are W_i ∝ exp(λ_final·r_i − applied_i) (the carried weights
# included), so W_i·exp((λ* − λ_final)·r_i) targets q·exp(λ*·r) for any common λ*, with Ẑ·Σ_i W_i e^{(λ*−λ_final) r_i}
# as that run's normalising constant. Retargeted to λ* = LAMBDA, the combined runs must match the same reference
# as every other mode: this checks the λ_t path, the ceiling, the final rise and the window together (nothing in
# it could be right by accident: a wrong λ_final, or potentials not removed, moves the estimate — checked by hand
# by dropping the retargeting, which fails by far more than the tolerance).
AUTO_CASES = [(2, "max", dict(every=4, window=(0.3, 0.7), strength=0.2, **NO_COPY_WINDOW)),
              (2, "diff", dict(every=1, strength=0.2, **NO_COPY_WINDOW)),
              # the shipped copy-variety window, active (64 elements: fk_core.window.MIN_ELEMENTS); `max` at every
              # step would compound past what a finite run can correct (see CASES above), so `diff` there
              (64, "diff", dict(every=1, strength=0.2)),
              (64, "max", dict(every=2, strength=0.2))]


@pytest.mark.parametrize("dim,potential,settings", AUTO_CASES)
def test_auto_lambda_matches_the_tilt_at_its_final_lambda(dim, potential, settings):
    a = direction(dim)
    gm = two_modes(dim)
    ref, ref_se = reference(dim)
    config = FKConfig(potential=potential, lambda_mode="auto", **settings)
    log_z, per_run, finals, checks, stops = [], [], [], [], 0
    for r in range(200):
        g = torch.Generator().manual_seed(30_000 + r)
        noise = torch.randn(16, dim, generator=g, dtype=torch.float64)
        res = steer(gm.denoise, SIGMAS, noise, lambda x: x @ a, config, generator=g)
        shift = (LAMBDA - res.trace.final_lmbda) * res.rewards
        log_w = res.log_weights + shift
        log_z.append(res.log_normalizer + float(torch.logsumexp(log_w, 0)))
        w = torch.softmax(log_w, 0)
        per_run.append((w[:, None] * statistics(res.samples, a)).sum(0))
        finals.append(res.trace.final_lmbda)
        checks.append(len(res.trace.steps))
        stops += res.trace.window_stop is not None
    est, se = ratio_estimate(torch.exp(torch.tensor(log_z) - max(log_z)), torch.stack(per_run))
    assert min(checks) >= 1 and max(finals) > min(finals) > 0, "auto chose λ from the particles: it must vary"
    if "copy_variety" not in settings:
        assert stops > 0, "the shipped window never stopped steering: the case tests nothing new"
    tol = 4 * torch.sqrt(se**2 + ref_se**2)
    assert torch.all((est - ref).abs() <= tol), f"FK {est.tolist()} vs reference {ref.tolist()} ± {tol.tolist()}"


# ---------------------------------------------------------------------------------------------------
# Guided proposals (fk_core.guidance): the step after each check proposes from N(μ + Δ, s²) instead of N(μ, s²),
# and the particle's log-weight gains log N(x'; μ, s²) − log N(x'; μ + Δ, s²). The weighted population must then
# target the very same tilt of the unguided sampler, and Ẑ stay unbiased for E_q[e^{λ r}] (fixed λ): the same
# reference, the same 4-combined-s.e. tolerance as above. Both rewards below have an x-dependent pull on the
# mixture (the linear one through the clamp |Δ| ≤ MAX_SHIFT·s, the second through its own gradient), and the cases
# cannot pass vacuously: the weight corrections must be large (their s.d. per guided step, asserted). Dropping the
# weight correction (fk_core.engine _Loop.segment) fails the normaliser check by far more than its tolerance
# (checked by hand: every guided case below fails then; Ẑ 2.50 against 1.51 ± 0.15).
GUIDED_CASES = [("diff", "every-step", 1.0), ("max", "two-steps", 1.0), ("diff", "every-step", 5.0),
                ("max", "two-steps-adaptive", 5.0)]


def guided_runs(config: FKConfig, reward, runs: int, n: int, seed: int = 50_000):
    gm = two_modes(2)
    a = direction(2)
    log_z, per_run, spread = [], [], []
    for r in range(runs):
        g = torch.Generator().manual_seed(seed + r)
        noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
        res = steer(gm.denoise, SIGMAS, noise, reward, config, generator=g)
        assert all(step.guidance is not None for step in res.trace.steps)
        log_z.append(res.log_normalizer)
        per_run.append((res.log_weights.exp()[:, None] * statistics(res.samples, a)).sum(0))
        spread += [step.guidance["correction_sd"] for step in res.trace.steps]
    return torch.tensor(log_z, dtype=torch.float64), torch.stack(per_run), sum(spread) / len(spread)


@pytest.mark.parametrize("potential,schedule,guidance", GUIDED_CASES)
def test_guided_proposals_target_the_same_tilt(potential, schedule, guidance):
    a = direction(2)
    ref, ref_se = reference(2)
    config = FKConfig(potential=potential, lmbda=LAMBDA, lambda_mode="fixed", guidance=guidance,
                      **CONFIGS[schedule])
    log_z, per_run, spread = guided_runs(config, lambda x: x @ a, runs=100, n=16)
    est, se = ratio_estimate(torch.exp(log_z - log_z.max()), per_run)
    tol = 4 * torch.sqrt(se**2 + ref_se**2)
    assert torch.all((est - ref).abs() <= tol), f"guided FK {est.tolist()} vs reference {ref.tolist()} ± {tol.tolist()}"
    assert spread > 0.3, f"weight corrections of s.d. {spread:.3f}: the proposals barely moved, the case tests nothing"


@pytest.mark.parametrize("potential,schedule,guidance", GUIDED_CASES[:2])
def test_guided_normalising_constant_matches_plain_monte_carlo(potential, schedule, guidance):
    exact, exact_se = plain_normalizer(2)
    a = direction(2)
    config = FKConfig(potential=potential, lmbda=LAMBDA, lambda_mode="fixed", guidance=guidance,
                      **CONFIGS[schedule])
    log_z, _, _ = guided_runs(config, lambda x: x @ a, runs=200, n=8, seed=60_000)
    z = log_z.exp()
    mean, se = float(z.mean()), float(z.std() / len(z) ** 0.5)
    tol = 4 * (se**2 + exact_se**2) ** 0.5
    assert abs(mean - exact) <= tol, f"mean Ẑ {mean:.4f} vs Monte-Carlo E[e^(λr)] {exact:.4f} ± {tol:.4f}"


def curved(x: torch.Tensor) -> torch.Tensor:
    """A reward whose gradient changes along the path: a·x + 0.5·sin(2 x₁)."""
    return x @ direction(2) + 0.5 * torch.sin(2 * x[:, 1])


# (Auto λ is left out here: retargeting a run from its final λ, 2 to 5 with this reward, down to λ* = 0.5 is an
# extrapolation 16 particles cannot carry, guided or not — checked by hand — so it would test the retargeting.)
@pytest.mark.parametrize("potential,schedule,guidance", [("diff", "every-step", 1.0), ("max", "two-steps", 3.0)])
def test_guided_proposals_with_a_curved_reward_target_its_tilt(potential, schedule, guidance):
    x = plain_runs()
    logw = LAMBDA * curved(x)
    ref, ref_se = ratio_estimate(torch.exp(logw - logw.max()), statistics(x, direction(2)))
    config = FKConfig(potential=potential, lmbda=LAMBDA, lambda_mode="fixed", guidance=guidance, **CONFIGS[schedule])
    log_z, per_run, spread = guided_runs(config, curved, runs=200, n=16, seed=70_000)
    est, se = ratio_estimate(torch.exp(log_z - log_z.max()), per_run)
    tol = 4 * torch.sqrt(se**2 + ref_se**2)
    assert torch.all((est - ref).abs() <= tol), f"guided FK {est.tolist()} vs reference {ref.tolist()} ± {tol.tolist()}"
    assert spread > 0.3, f"weight corrections of s.d. {spread:.3f}: the proposals barely moved, the case tests nothing"
