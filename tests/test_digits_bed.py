"""The learned test bed (testbeds.digits): trained once and cached, it behaves like a real reward would.

The first use trains for about a minute on one core (then cached in FK_TESTBED_CACHE or
~/.cache/fk-steering/testbeds); every test here then takes seconds. Bounds are binomial/sampling margins
around what bench/bench_defaults.py measured (README, "Recommended settings").
"""

import pytest
import torch

from fk_core import FKConfig, steer
from testbeds import digits


@pytest.fixture(scope="module")
def bed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield digits.load()
    torch.set_num_threads(threads)


def test_classifier_reads_held_out_digits(bed):
    assert bed.held_out_accuracy >= 0.9


def test_plain_samples_look_like_the_data(bed):
    x = digits.plain_samples(bed, 500, seed=1)
    data, _ = digits._digits()
    with torch.no_grad():
        probs = torch.softmax(bed.classifier(x), 1)
    assert float(probs.max(1).values.mean()) > 0.8  # read confidently as some digit, not as noise
    counts = torch.bincount(probs.argmax(1), minlength=10)
    assert int(counts.min()) >= 15  # every digit is drawn (10% each on average: 50 of 500)
    # each sample lies about as close to some training digit as training digits lie to one another (2.1)
    assert float(torch.cdist(x, data).min(1).values.mean()) < 3.0


def test_early_rewards_carry_little_signal_late_ones_almost_all(bed):
    corr = {k: c for k, _, c in digits.reward_correlations(bed, n=400)}
    assert corr[3] < 0.4 and corr[21] > 0.95
    assert corr[3] < corr[9] < corr[15]


def test_the_cache_gives_the_same_weights(bed):
    again = digits.load()
    x = torch.randn(4, digits.DIM, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.denoiser(x, torch.tensor(1.0)), bed.denoiser(x, torch.tensor(1.0)))
    assert (digits.cache_dir() / f"digits-v{digits.VERSION}.pt").is_file()


def test_the_defaults_beat_best_of_4(bed):
    """The bench measured hit rates of about 0.85 (defaults) against about 0.35 (best-of-4): with 40 seeds,
    0.6 and 0.7 are over 4 binomial standard errors away from those."""
    sig = digits.sigmas()

    def hit_rate(config: FKConfig) -> float:
        hits = 0
        for seed in range(40):
            g = torch.Generator().manual_seed(seed)
            res = steer(bed.denoiser, sig, torch.randn(4, digits.DIM, generator=g), bed.reward, config, generator=g)
            hits += bool(bed.has_attribute(res.samples[res.best_index:res.best_index + 1]))
        return hits / 40

    fk, best_of_4 = hit_rate(FKConfig()), hit_rate(FKConfig(lmbda=0.0, lambda_mode="fixed"))
    assert fk >= 0.6 and best_of_4 <= 0.7 and fk >= best_of_4 + 0.25, (fk, best_of_4)


def test_the_pack_never_imports_the_test_beds():
    """Test beds (and scikit-learn) stay out of what ComfyUI loads: fk_core and nodes do not name them."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = [*root.glob("fk_core/**/*.py"), *root.glob("nodes/**/*.py"), root / "__init__.py"]
    importing = re.compile(r"^\s*(from|import)\s+[.\w]*(testbeds|sklearn)", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for p in sources if importing.search(p.read_text())]
    assert sources and offenders == []


@pytest.mark.slow
def test_training_is_deterministic(bed, tmp_path, monkeypatch):
    """Retraining from scratch (seeded, one thread) gives the cached weights bit for bit."""
    monkeypatch.setenv("FK_TESTBED_CACHE", str(tmp_path))
    state = digits.train()
    for name, value in bed.denoiser.state_dict().items():
        assert torch.equal(state["denoiser"][name], value), name
    for name, value in bed.classifier.state_dict().items():
        assert torch.equal(state["classifier"][name], value), name
