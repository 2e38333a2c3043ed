"""Discrete FK on the text bed: best-of-N against FK at equal model calls, N = 4 and 8.

    python bench/bench_discrete.py              # the README table (a few minutes on 2 shared CPU cores)
    python bench/bench_discrete.py --seeds 40   # quicker, larger standard errors

Bed: testbeds.text (a masked-diffusion LM trained on Shakespeare's plays, 16 tokens, 32 steps; reward: the
offensive-language probability of alt-profanity-check; attribute: the classifier's label, probability > 0.5).
For each N every method runs on the same seeds; best-of-N is FK with λ = 0 (N independent samples, the one with
the highest final reward), so every row costs N·32 model calls (32 calls on a batch of N). FK uses the
library defaults (potential max, auto λ, strength 0.5, checks in 20–80% of the run) and scores each check on
the argmax or on a sampled completion of the x0-distribution.

Columns: the output's attribute rate and reward (mean ± s.e. over seeds); the perplexity the bed model gives
the outputs (exp of its NELBO per token, the MDLM bound: lower is more fluent under the model); the share of
distinct outputs; model calls per run. "output drawn" rows take the output from the final weights instead of
the top reward (the weighted population, which targets p·exp(λ r)).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fk_core import FKConfig  # noqa: E402
from fk_core.discrete import masking_schedule, steer_discrete  # noqa: E402
from testbeds import text  # noqa: E402


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0


def describe(bed: text.TextBed, name: str, outputs: torch.Tensor, calls: str) -> str:
    rewards = bed.reward(outputs)
    rate, rate_se = mean_se((rewards > text.OFFENSIVE).double())
    reward, reward_se = mean_se(rewards)
    distinct = len({tuple(row) for row in outputs.tolist()}) / len(outputs)
    return (f"| {name} | {rate:.1%} ± {rate_se:.1%} | {reward:.3f} ± {reward_se:.3f} | "
            f"{bed.perplexity(outputs):.0f} | {distinct:.0%} | {calls} |")


def run(bed: text.TextBed, n: int, seeds: int) -> list[str]:
    times = masking_schedule(text.STEPS)
    methods = [("best-of-N (λ = 0)", FKConfig(lmbda=0.0, lambda_mode="fixed"), "argmax"),
               ("FK, argmax completion", FKConfig(), "argmax"),
               ("FK, sampled completion", FKConfig(), "sample")]
    rows = []
    for name, config, completion in methods:
        best, drawn = [], []
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            res = steer_discrete(bed.model, times, bed.start(n), bed.reward, config, generator=g, mask_id=bed.mask_id,
                                 completion=completion)
            assert res.model_evaluations == text.STEPS
            best.append(res.samples[res.best_index])
            drawn.append(res.samples[res.pick("sample", torch.Generator().manual_seed(10_000 + seed))])
        calls = f"{n}·{text.STEPS}"
        rows.append(describe(bed, f"N = {n}: {name}", torch.stack(best), calls))
        if name.startswith("FK, argmax"):
            rows.append(describe(bed, f"N = {n}: {name}, output drawn", torch.stack(drawn), calls))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--plain", type=int, default=1000, help="plain samples for the base rate")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    bed = text.load()
    print(f"text bed: {bed.vocabulary.size} tokens + mask, {text.LENGTH} per sequence, {text.STEPS} steps; "
          f"held-out perplexity {bed.held_out_perplexity:.0f}; {args.seeds} seeds per row")
    header = "| | attribute rate (offensive) | reward | perplexity (bed model) | distinct | model calls |"
    print(header)
    print("|---|---|---|---|---|---|")
    print(describe(bed, "held-out corpus (reference)", text.held_out(bed)[:args.plain], "—"))
    print(describe(bed, f"plain samples (base rate, {args.plain})", text.plain_samples(bed, args.plain, seed=0),
                   f"1·{text.STEPS}"))
    for n in (4, 8):
        for row in run(bed, n, args.seeds):
            print(row, flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
