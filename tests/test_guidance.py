"""Gradient-guided proposals (fk_core.guidance): guidance 0 is today's FK draw for draw; the shift and its weight
correction are what the maths says; samplers and rewards that cannot be guided exactly are refused clearly.
Exactness of the weighted population: tests/test_exact_target.py."""

from __future__ import annotations

import math

import pytest
import torch

from fk_core import FKConfig, FKError, run_segments, steer
from fk_core.guidance import MAX_SHIFT, Guide, reward_gradient, thaw
from fk_core.rewards import JpegCompressibility, Saturation
from fk_core.steppers import dpmpp_2m_sde, euler_ancestral, euler_ancestral_rf
from testbeds.toy import karras_sigmas, two_modes

SIGMAS = karras_sigmas(12, sigma_min=0.05, sigma_max=10.0)
A = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)


def flow_model(x, t):
    """The two-mode mixture's exact denoiser seen as a rectified flow: x_t = (1 − t)·x0 + t·ε."""
    t = t.reshape(-1)[0]
    ratio = (t / (1 - t)).clamp(min=1e-3)
    return two_modes(3).denoise(x / (1 - t), ratio)


def test_guidance_zero_is_todays_fk_bit_for_bit():
    """Frozen numbers from the code before guidance existed (git main at ed59777, the same script): steer() and
    run_segments with the flow rule give exactly these samples and weights with guidance 0."""
    gm = two_modes(3)
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(8, 3, generator=g, dtype=torch.float64)
    res = steer(gm.denoise, SIGMAS, noise, lambda x: x @ A, FKConfig(guidance=0.0), generator=g)
    assert float(res.samples.sum()) == 37.91335809107841
    assert float(res.log_weights.exp().mul(torch.arange(8)).sum()) == 0.8392938740886995
    assert res.best_index == 0 and all(step.guidance is None for step in res.trace.steps)
    assert "guidance" not in res.trace.steps[0].to_dict()


@pytest.mark.parametrize("rule", [euler_ancestral, euler_ancestral_rf])
def test_a_guide_with_gamma_zero_changes_no_draw(rule):
    """The guided code path itself at γ = 0: the same stream of draws and the same result, bit for bit."""
    t = torch.linspace(0.999, 0.0, 9, dtype=torch.float64) if rule is euler_ancestral_rf else SIGMAS[:9]
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = (lambda x, s: flow_model(x, s)) if rule is euler_ancestral_rf else \
        (lambda x, s: two_modes(3).denoise(x, s[0]))
    plain = rule(1.0, torch.Generator().manual_seed(2))(model, x, t)
    guide = Guide(torch.ones_like(x), 0.0)
    guided = rule(1.0, torch.Generator().manual_seed(2))(model, x, t, guide=guide)
    assert torch.equal(plain, guided) and guide.corrections is None


def test_shift_is_gamma_s_squared_gradient_clamped_and_correction_is_the_density_ratio():
    gradient = torch.tensor([[0.01, 0.0], [3.0, 4.0]], dtype=torch.float64)
    guide = Guide(gradient, gamma=2.0)
    s = torch.tensor(0.5, dtype=torch.float64)
    shift = guide.shift(s)
    torch.testing.assert_close(shift[0], 2.0 * 0.25 * gradient[0])  # small: γ s² g as it is
    assert float(shift[1].norm()) == pytest.approx(MAX_SHIFT * 0.5)  # large: clamped to MAX_SHIFT·s
    torch.testing.assert_close(shift[1] / shift[1].norm(), gradient[1] / 5.0)
    mean = torch.tensor([[0.2, -0.1], [1.0, 2.0]], dtype=torch.float64)
    z = torch.tensor([[0.3, -1.2], [0.7, 0.1]], dtype=torch.float64)
    x_new = mean + shift + z * s
    guide.record(shift, z, s)

    def log_normal(x, m):
        return -((x - m) ** 2).sum(1) / (2 * 0.25)

    torch.testing.assert_close(guide.corrections, log_normal(x_new, mean) - log_normal(x_new, mean + shift))
    assert guide.info["max_shift"] == pytest.approx(MAX_SHIFT)


def test_guided_run_records_gamma_shift_and_backward_time():
    gm = two_modes(3)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(8, 3, generator=g, dtype=torch.float64)
    res = steer(gm.denoise, SIGMAS, noise, lambda x: x @ A, FKConfig(guidance=1.0), generator=g)
    records = [step.guidance for step in res.trace.steps]
    assert records and all(r is not None for r in records)
    for step, record in zip(res.trace.steps, records):
        assert record["gamma"] == pytest.approx(step.lmbda)  # guidance 1: γ = λ_t
        assert 0 < record["shift"] <= MAX_SHIFT + 1e-9 and record["backward_s"] >= 0
    assert res.trace.steps[0].to_dict()["guidance"]["gamma"] == records[0]["gamma"]


def test_samplers_without_a_known_density_are_refused_by_name():
    gm = two_modes(3)
    x = torch.randn(4, 3, dtype=torch.float64) * SIGMAS[0]
    with pytest.raises(FKError, match=r"dpmpp_2m_sde.*euler_ancestral"):
        run_segments(x, SIGMAS, lambda x, s: gm.denoise(x, s[0]), dpmpp_2m_sde(1.0, torch.Generator()),
                     lambda x: x @ A, FKConfig(guidance=1.0))
    with pytest.raises(FKError, match="draws no noise"):
        steer(gm.denoise, SIGMAS, torch.randn(4, 3, dtype=torch.float64), lambda x: x @ A,
              FKConfig(guidance=1.0, step_rule="euler"))
    with pytest.raises(FKError, match="guidance must be 0 or more"):
        FKConfig(guidance=-1.0)


def test_rewards_that_cannot_give_a_gradient_are_refused():
    images = two_modes(3)  # any model: the refusal comes before sampling

    def as_image(x):
        return x.float().reshape(-1, 1, 1, 3).expand(-1, 4, 4, 3).sigmoid()

    jpeg = JpegCompressibility().bind()
    x = torch.randn(4, 3, dtype=torch.float64) * SIGMAS[0]
    with pytest.raises(FKError, match="differentiable reward.*guidance to 0"):
        run_segments(x, SIGMAS, lambda x, s: images.denoise(x, s[0]), euler_ancestral(1.0, torch.Generator()),
                     _named(lambda x0: jpeg(as_image(x0)), differentiable=False), FKConfig(guidance=1.0))

    @torch.no_grad()
    def frozen(x0):
        return x0 @ A

    with pytest.raises(FKError, match="gave no gradient"):
        steer(images.denoise, SIGMAS, torch.randn(4, 3, dtype=torch.float64), frozen,
              FKConfig(guidance=1.0, copy_variety=(1.0, 0.0)))


def _named(fn, **attributes):
    class Wrapped:
        def __call__(self, x):
            return fn(x)

    wrapped = Wrapped()
    for key, value in attributes.items():
        setattr(wrapped, key, value)
    return wrapped


def test_reward_gradient_works_on_weights_and_caches_made_under_inference_mode():
    """ComfyUI runs nodes under torch.inference_mode: weights loaded there cannot be saved for backward until
    thawed; the gradient then matches the one of a reward built normally."""
    with torch.inference_mode():
        layer = torch.nn.Linear(3, 1)
        cache = {"text": torch.tensor([[1.0, 2.0, 3.0]])}
        x0 = torch.randn(5, 3)

    class Holder:
        def __init__(self):
            self.layer, self.cache = layer, cache

        def __call__(self, x):
            return self.layer(x)[:, 0] * (x * self.cache["text"]).sum(1)

    holder = Holder()
    with torch.inference_mode():
        values, gradient, seconds = reward_gradient(holder, x0, "test reward", holders=[holder])
    assert not holder.layer.weight.is_inference() and not holder.cache["text"].is_inference()
    x = x0.clone().requires_grad_(True)
    w, b, t = layer.weight.clone(), layer.bias.clone(), cache["text"].clone()
    ((x @ w.T + b)[:, 0] * (x * t).sum(1)).sum().backward()
    torch.testing.assert_close(gradient, x.grad)
    assert seconds >= 0 and values.shape == (5,)
    thaw(holder)  # a second time: nothing left to do, nothing breaks


def test_pixel_reward_guidance_runs_through_a_decoder():
    """A learned-style chain: x0 → a decoder (a linear map to an 8×8 RGB image) → Saturation, differentiable."""
    torch.manual_seed(0)
    decoder = torch.nn.Linear(3, 8 * 8 * 3).double()
    reward = Saturation().bind()

    def score(x0):
        return reward(decoder(x0).sigmoid().reshape(-1, 8, 8, 3)).double()

    gm = two_modes(3)
    g = torch.Generator().manual_seed(4)
    res = steer(gm.denoise, SIGMAS, torch.randn(6, 3, generator=g, dtype=torch.float64), _named(
        score, differentiable=True), FKConfig(guidance=1.0), generator=g)
    assert all(math.isfinite(step.guidance["shift"]) for step in res.trace.steps)


def test_memory_estimate_counts_the_backward_pass():
    """A guided run keeps the gradient and the preview decoder's activations: a budget that fits plain FK can be
    too small for it, and the refusal says so before anything is allocated."""
    from fk_core import memory_problem, particle_memory_bytes
    from fk_core.memory_estimate import BACKWARD_IMAGE_COPIES, IMAGE_COPIES, LATENT_COPIES

    samples = torch.zeros(1, 4, 64, 64)
    plain, guided = particle_memory_bytes(samples, 4), particle_memory_bytes(samples, 4, guided=True)
    latent, image = 4 * 64 * 64 * 4, 512 * 512 * 3 * 4
    assert plain == 4 * (latent * LATENT_COPIES + image * IMAGE_COPIES)
    assert guided == 4 * (latent * (LATENT_COPIES + 1) + image * (IMAGE_COPIES + BACKWARD_IMAGE_COPIES))
    free = int(plain / 0.8) + 1
    assert memory_problem("FK Particle Sampler", samples, 4, free) is None
    assert "particles" in memory_problem("FK Particle Sampler", samples, 4, free, guided=True)
