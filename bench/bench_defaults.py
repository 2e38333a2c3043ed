"""Defaults from evidence: best-of-N against FK candidates on both beds, at equal model calls.

    python bench/bench_defaults.py              # both tables (a few minutes on 2 shared CPU cores)
    python bench/bench_defaults.py --seeds 40   # quicker, larger standard errors
    python bench/bench_defaults.py --family     # the defaults on the family of learned beds (bench_family.py)

Learned bed (testbeds.digits; reward log p(digit 3 | x0) from a classifier, 30 Euler-ancestral steps) and
rare-attribute bed (testbeds.rare; 0.3% of p0, reward sigmoid, 50 steps). For N = 4 and 8, every method
runs on the same seeds (the same initial noise): best-of-N is λ = 0, so all rows cost N·steps model calls.

Columns: reward of the output image (the best final particle) mean ± s.e. over seeds; the paired difference
to best-of-N ± s.e.; hit rate (the output has the attribute: classified as a 3 / beyond the rare threshold);
ESS after the first check; distinct initial noises with descendants at the end; and on the learned bed the
diversity of the N final particles (mean pairwise distance) as a share of the diversity of N independent
plain samples that have the attribute (the reference, from a pool of plain samples classified as a 3).
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

from fk_core import FKConfig, steer, tempering  # noqa: E402
from testbeds import digits  # noqa: E402
from testbeds.rare import rare_attribute  # noqa: E402
from testbeds.toy import karras_sigmas  # noqa: E402

RARE_STEPS = 50


def candidates(quick: bool) -> list[tuple[str, FKConfig, float]]:
    """(name, config, auto ceiling): best-of-N, the old defaults, the shipped one and its neighbours, a λ sweep.

    Every row but the two old defaults stops by the copy-variety rule (fk_core.window) as the shipped default does.
    """
    tilt = tempering.AUTO_TILT
    auto = dict(potential="max", lambda_mode="auto")
    off = dict(copy_variety=(1.0, 0.0))  # the copy-variety stop (fk_core.window) switched off
    rows = [("best-of-N (λ = 0)", FKConfig(lmbda=0.0, lambda_mode="fixed"), tilt),
            ("old default: max, λ 10 fixed, window 0.2–1, no stop", FKConfig(potential="max", lmbda=10.0,
                                                                             lambda_mode="fixed", window=(0.2, 1.0),
                                                                             **off), tilt),
            ("previous default: max, auto, strength 0.5, window 0.2–0.8, no stop", FKConfig(**off), tilt),
            ("**default**: the same with the copy-variety stop", FKConfig(), tilt),
            ("max, auto, strength 0.3", FKConfig(**auto, strength=0.3), tilt),
            ("max, auto, strength 0.7", FKConfig(**auto, strength=0.7), tilt),
            ("max, auto, strength 0.5, window 0.2–1", FKConfig(**auto, window=(0.2, 1.0)), tilt),
            ("diff, auto, strength 0.5", FKConfig(potential="diff", lambda_mode="auto"), tilt),
            ("max, auto, strength 0.5, ceiling 10", FKConfig(**auto), 10.0),
            ("max, auto, strength 0.5, ceiling 100", FKConfig(**auto), 100.0),
            ("max, auto, no ceiling", FKConfig(**auto), math.inf)]
    if not quick:
        for lmbda in (0.3, 1.0, 3.0, 10.0, 30.0):
            rows.append((f"max, λ {lmbda:g} fixed", FKConfig(potential="max", lmbda=lmbda, lambda_mode="fixed"), tilt))
    return rows


def mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(t))) if len(t) > 1 else float("nan")


def run_cell(config: FKConfig, n: int, seeds: int, denoise, reward, has_attribute, sigmas, noise_dim,
             diversity=None, tilt: float = tempering.AUTO_TILT) -> dict:
    shipped, tempering.AUTO_TILT = tempering.AUTO_TILT, tilt
    try:
        return _run_cell(config, n, seeds, denoise, reward, has_attribute, sigmas, noise_dim, diversity)
    finally:
        tempering.AUTO_TILT = shipped


def _run_cell(config, n, seeds, denoise, reward, has_attribute, sigmas, noise_dim, diversity) -> dict:
    rewards, hits, first_ess, lineages, spread = [], [], [], [], []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(n, noise_dim, generator=g, dtype=sigmas.dtype)
        res = steer(denoise, sigmas, noise, reward, config, generator=g)
        best = res.best_index
        rewards.append(float(res.rewards[best]))
        hits.append(float(bool(has_attribute(res.samples[best:best + 1]))))
        first_ess.append(res.trace.steps[0].ess if res.trace.steps else float(n))
        lineages.append(len(set(res.trace.origin.tolist())))
        if diversity is not None:
            spread.append(diversity(res.samples))
    return dict(rewards=rewards, hit=sum(hits) / seeds, ess=sum(first_ess) / seeds,
                lineages=sum(lineages) / seeds, diversity=sum(spread) / seeds if spread else None)


def independent_diversity(bed, n: int, pool: int = 4000, groups: int = 400) -> float:
    """Mean pairwise distance of n independent plain samples that are classified as the target digit."""
    x = digits.plain_samples(bed, pool, seed=999)
    kept = x[bed.has_attribute(x)]
    g = torch.Generator().manual_seed(5)
    values = [digits.mean_pairwise_distance(kept[torch.randperm(len(kept), generator=g)[:n]]) for _ in range(groups)]
    return sum(values) / groups


def table(title: str, rows: list[tuple[str, dict]], base: dict, n: int, with_diversity: bool) -> None:
    for name, cell in rows:
        mean, se = mean_se(cell["rewards"])
        diff, diff_se = mean_se([a - b for a, b in zip(cell["rewards"], base["rewards"])])
        gap = "—" if cell is base else f"{diff:+.3f} ± {diff_se:.3f}"
        line = (f"| {n} | {name} | {mean:.3f} ± {se:.3f} | {gap} | {cell['hit']:.0%} | {cell['ess']:.2f} "
                f"| {cell['lineages']:.2f} |")
        if with_diversity:
            line += f" {cell['diversity']:.2f} ({cell['diversity'] / with_diversity:.0%}) |"
        print(line)


def learned_bed(seeds: int, quick: bool) -> None:
    bed = digits.load()
    sig = digits.sigmas()
    print(f"\n## Learned bed: digits, reward log p(3 | x0), {digits.STEPS} Euler-ancestral steps, {seeds} seeds "
          "per cell (same seeds in every row)")
    print("\nreward of the x0-prediction at step k against the final reward (1000 plain runs):")
    print("| step k (of 30) | " + " | ".join(str(k) for k in (3, 6, 9, 12, 15, 21)) + " |")
    print("|---" * 7 + "|")
    corr = {k: c for k, _, c in digits.reward_correlations(bed)}
    print("| correlation | " + " | ".join(f"{corr[k]:.2f}" for k in (3, 6, 9, 12, 15, 21)) + " |")
    for n in (4, 8):
        reference = independent_diversity(bed, n)
        print(f"\nN = {n}: diversity of {n} independent plain samples classified as a 3 = {reference:.2f}")
        print("| N | method | output reward ± s.e. | − best-of-N ± s.e. | hit (is a 3) | ESS at 1st check "
              "| initial noises kept | diversity (share of independent) |")
        print("|---|---|---|---|---|---|---|---|")
        rows = []
        for name, config, tilt in candidates(quick):
            rows.append((name, run_cell(config, n, seeds, bed.denoiser, bed.reward, bed.has_attribute, sig,
                                        digits.DIM, digits.mean_pairwise_distance, tilt)))
        table("learned", rows, rows[0][1], n, reference)


def rare_bed(seeds: int, quick: bool) -> None:
    task = rare_attribute(2)
    task.width = 0.5
    sig = karras_sigmas(RARE_STEPS, sigma_min=0.02, sigma_max=20.0)
    print(f"\n## Rare-attribute bed: 0.3% of p0, reward sigmoid((a·x − c)/0.5), {RARE_STEPS} steps, {seeds} seeds "
          "per cell")
    print("| N | method | output reward ± s.e. | − best-of-N ± s.e. | hit (has it) | ESS at 1st check "
          "| initial noises kept |")
    print("|---|---|---|---|---|---|---|")
    for n in (4, 8):
        rows = []
        for name, config, tilt in candidates(quick):
            rows.append((name, run_cell(config, n, seeds, task.model.denoise, task.reward, task.has_attribute,
                                        sig, 2, tilt=tilt)))
        table("rare", rows, rows[0][1], n, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="skip the fixed-λ sweep")
    parser.add_argument("--only", choices=("learned", "rare"))
    parser.add_argument("--family", action="store_true",
                        help="the shipped defaults on the family of learned beds (bench/bench_family.py) instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    if args.family:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_family

        bench_family.run(60 if args.seeds == 100 else args.seeds, FKConfig())
        print(f"\n({time.perf_counter() - started:.0f} s)")
        return
    if args.only in (None, "learned"):
        learned_bed(args.seeds, args.quick)
    if args.only in (None, "rare"):
        rare_bed(args.seeds, args.quick)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
