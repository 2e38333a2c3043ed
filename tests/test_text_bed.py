"""The text bed (testbeds.text): a masked-diffusion LM on Shakespeare and a learned offensive-language reward.

The first use trains the model (a few minutes on one core; then cached in FK_TESTBED_CACHE or
~/.cache/fk-steering/testbeds); every test here then takes seconds. Bounds are binomial margins around what
bench/bench_discrete.py measured (README, "Discrete state").
"""

import math
from collections import Counter

import pytest
import torch

from fk_core import FKConfig
from fk_core.discrete import masking_schedule, steer_discrete
from testbeds import text


@pytest.fixture(scope="module")
def bed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield text.load()
    torch.set_num_threads(threads)


def test_the_corpus_ships_inside_a_package():
    words = text.corpus_words()
    assert len(text._plays()) == 38 and len(words) > 900_000
    # spoken lines only, in file order: A Midsummer Night's Dream comes first and opens with Theseus
    assert words[:5] == ["now", ",", "fair", "hippolyta", ","]
    assert "theseus" not in words[:20]  # the speaker's name is not part of the text
    vocabulary = text.build_vocabulary(words)
    assert len(vocabulary.words) == text.WORDS and vocabulary.words[:4] == [",", ".", "the", "and"]
    ids = vocabulary.encode(["to", "be", "or", "not", "to", "be", ",", "zounds-not-a-word"])
    assert ids[-1] == vocabulary.unk_id and ids[0] == ids[4]
    assert vocabulary.decode(ids[None, :-1]) == ["to be or not to be,"]


def test_the_model_has_learned_the_corpus(bed):
    """Held-out perplexity (the model's ELBO bound, an upper bound) below that of the corpus's unigram
    distribution: the model uses context. Measured 243 against 309 (0.79); 0.9 allows for another torch."""
    words = text.corpus_words()
    training, held_out = text.sequences(bed.vocabulary, words)
    counts = Counter(training.reshape(-1).tolist())
    total = sum(counts.values())
    unigram = math.exp(-sum(math.log(counts[t] / total) for t in held_out.reshape(-1).tolist()) / held_out.numel())
    assert bed.held_out_perplexity < 0.9 * unigram, (bed.held_out_perplexity, unigram)


def test_the_attribute_is_rare_in_plain_samples(bed):
    """The bench measured 5.9% ± 0.7%; with 500 samples 10% is about 4 binomial standard errors above it."""
    samples = text.plain_samples(bed, 500, seed=123)
    assert not bool((samples == bed.mask_id).any())
    rate = float(bed.has_attribute(samples).double().mean())
    assert rate < 0.1, rate


def test_the_cache_gives_the_same_weights(bed):
    again = text.load()
    x = bed.start(2)
    assert torch.equal(again.model(x), bed.model(x))
    assert (text.cache_dir() / f"text-v{text.VERSION}.pt").is_file()


def test_fk_beats_best_of_4_at_equal_model_calls(bed):
    """The bench measured attribute rates of 48% (FK, defaults) against 18% (best-of-4) over 100 seeds. With 60
    other seeds the bounds below lie about 3 binomial standard errors from those (and the gap's 2.5)."""
    def hit_rate(config: FKConfig) -> float:
        hits = 0
        for seed in range(60):
            g = torch.Generator().manual_seed(1000 + seed)
            res = steer_discrete(bed.model, masking_schedule(text.STEPS), bed.start(4), bed.reward, config,
                                 generator=g, mask_id=bed.mask_id)
            assert res.model_evaluations == text.STEPS
            hits += bool(bed.has_attribute(res.samples[res.best_index:res.best_index + 1]))
        return hits / 60

    fk, best_of_4 = hit_rate(FKConfig()), hit_rate(FKConfig(lmbda=0.0, lambda_mode="fixed"))
    assert fk >= 0.3 and best_of_4 <= 0.35 and fk >= best_of_4 + 0.1, (fk, best_of_4)


def test_the_cache_trains_once_and_then_loads(tmp_path, monkeypatch):
    """testbeds.cache, shared by the digits and text beds: the first call trains and writes, later ones load."""
    from testbeds.cache import cached_state

    monkeypatch.setenv("FK_TESTBED_CACHE", str(tmp_path))
    calls = []

    def train():
        calls.append(1)
        return {"weights": torch.arange(3)}

    first, from_cache = cached_state("bed-v1.pt", train)
    assert not from_cache and "training_seconds" in first and (tmp_path / "bed-v1.pt").is_file()
    second, from_cache = cached_state("bed-v1.pt", train)
    assert from_cache and torch.equal(second["weights"], torch.arange(3)) and len(calls) == 1
    _, from_cache = cached_state("bed-v1.pt", train, retrain=True)
    assert not from_cache and len(calls) == 2 and list(tmp_path.iterdir()) == [tmp_path / "bed-v1.pt"]
