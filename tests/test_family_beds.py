"""The family of learned beds (testbeds.family) and the flow step rules it samples with.

Loads the cached members (FK_TESTBED_CACHE or ~/.cache/fk-steering/testbeds; a clean machine trains them once,
about two minutes of one core). The step rules are checked on data that is a single point c, where every
sampler's marginal is known exactly: x_σ = c + σ·ε (eps) and x_t = (1 − t)·c + t·ε (flow).
"""

import pytest
import torch

from fk_core.steppers import dpmpp_2m_sde, euler_ancestral, euler_ancestral_rf
from testbeds import family
from testbeds.samplers import dpmpp_2m, euler, heun


@pytest.fixture(scope="module")
def beds():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield family.beds()
    torch.set_num_threads(threads)


def test_the_family_spans_what_a_new_model_varies(beds):
    members = {(b.name.split("-")[0], b.kind) for b in beds}
    assert {m.name for m in family.MEMBERS} == {name for name, _ in members} and len(family.MEMBERS) >= 4
    assert all((m.name, kind) in members for m in family.MEMBERS for kind in ("eps", "flow"))
    assert len({b.target for b in beds}) >= 5 and {b.steps for b in beds} == {20, 30, 50}
    assert {b.sampler_name for b in beds if b.kind == "flow"} == {"euler_ancestral_rf", "dpmpp_2m_sde"}
    assert {b.name.split("-")[0] for b in beds if b.held_out} == {family.HELD_OUT}
    widths = {m.width for m in family.MEMBERS}
    assert len(widths) == len(family.MEMBERS)
    means = sorted(m.noise_mean for m in family.MEMBERS)
    assert means[0] < -1.5 and means[-1] > 0.5  # one member weighted to low σ, one to high σ


def test_every_bed_samples_digits_the_reward_reads(beds):
    state = family.load_state()
    assert state["held_out_accuracy"] >= 0.9
    for bed in beds:
        x = bed.plain(300, seed=1)
        with torch.no_grad():
            probs = torch.softmax(bed.classifier(x), 1)
        assert float(probs.max(1).values.mean()) > 0.75, bed.name  # read confidently as some digit
        hit = float(bed.has_attribute(x).float().mean())
        assert 0.02 < hit < 0.3, (bed.name, hit)  # about one in ten is the target: steering has work to do


def test_the_cache_gives_the_same_weights(beds):
    family._STATE.clear()
    again = family.beds()
    x = torch.randn(4, family.DIM, generator=torch.Generator().manual_seed(0))
    for a, b in zip(beds, again):
        assert torch.equal(a.denoiser(x, torch.tensor(0.5)), b.denoiser(x, torch.tensor(0.5))), a.name
    assert (family.digits.cache_dir() / f"family-v{family.VERSION}.pt").is_file()


def point(c):
    return lambda x, sigma: c.expand_as(x)


@pytest.mark.parametrize("kind,make", [("flow", lambda g: euler_ancestral_rf(1.0, g)),
                                       ("flow", lambda g: dpmpp_2m_sde(1.0, g, flow=True)),
                                       ("eps", lambda g: dpmpp_2m_sde(1.0, g)),
                                       ("eps", lambda g: euler_ancestral(1.0, g))])
def test_stochastic_steps_keep_the_exact_marginal_of_point_data(kind, make):
    """With data = c the x0-prediction is exact, so each step must land on the true marginal: mean (1 − t)·c and
    std t (flow), mean c and std σ (eps). 20 000 draws: the std is within 2% (about 6 standard errors)."""
    c = torch.full((1, 1), 0.7, dtype=torch.float64)
    sigmas = family.flow_sigmas(10).double() if kind == "flow" else family.eps_sigmas(10).double()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(20_000, 1, generator=g, dtype=torch.float64)
    x = noise if kind == "flow" else 0.7 + noise * sigmas[0]
    sampler = make(g)
    for k in range(1, 10):
        x = sampler(lambda x, s: point(c)(x, s), x, sigmas[k - 1:k + 1])
        s = float(sigmas[k])
        mean = (1 - s) * 0.7 if kind == "flow" else 0.7
        assert float(x.mean()) == pytest.approx(mean, abs=0.03 * max(s, 0.05)), (k, s)
        assert float(x.std()) == pytest.approx(s, rel=0.02), (k, s)
    assert torch.allclose(sampler(lambda x, s: point(c)(x, s), x, sigmas[9:]), c.expand_as(x))


@pytest.mark.parametrize("sampler", [euler, dpmpp_2m, heun])
@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_deterministic_baselines_land_on_point_data(sampler, kind):
    c = torch.full((1, 3), -0.4, dtype=torch.float64)
    sigmas = family.flow_sigmas(8).double() if kind == "flow" else family.eps_sigmas(8).double()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x if kind == "flow" else x * sigmas[0]
    torch.testing.assert_close(sampler(point(c), x, sigmas), c.expand(5, 3))


def test_the_family_bed_never_reaches_the_pack():
    """The flow steps live in fk_core (no ComfyUI import); the beds stay out of what ComfyUI loads."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert "comfy" not in (root / "fk_core" / "steppers.py").read_text().replace("ComfyUI", "")


@pytest.mark.slow
def test_training_is_deterministic(beds):
    """Retraining every member from scratch (seeded, one thread) gives the cached weights bit for bit."""
    state = family.train()
    cached = family.load_state()
    for key, value in cached.items():
        if isinstance(value, dict):
            for name, tensor in value.items():
                assert torch.equal(state[key][name], tensor), (key, name)
