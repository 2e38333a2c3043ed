"""The shipped defaults on a family of learned beds (testbeds.family), against the baselines users run.

    python bench/bench_defaults.py --family          # or: python bench/bench_family.py [--seeds 60]

For each bed (an independently trained denoiser, eps or flow, its stochastic sampler, a target digit, a step
count) and N = 4, 8, on the same seeds (the same initial noises) and at equal model calls:

* FK with the shipped defaults (``FKConfig()``), on the bed's stochastic sampler;
* best-of-N with that same stochastic sampler (FK at λ = 0);
* best-of-N with the deterministic samplers a user would pick: Euler, DPM++ 2M, Heun at half the steps.

Printed per bed and N: the output's reward gain over the stochastic and over the *stronger* baseline (the one with
the higher mean output reward) ± paired s.e. and its z; hit rates (the output has the attribute); the variety of
the N final particles (mean pairwise distance) as a share of N independent plain samples that have the attribute;
where steering stopped. The last line names the worst bed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fk_core import FKConfig, run_segments  # noqa: E402
from testbeds import family  # noqa: E402
from testbeds.digits import mean_pairwise_distance  # noqa: E402

NS = (4, 8)
GAIN_Z = 2.0  # the bar: gain over the stronger baseline by more than 2 standard errors
VARIETY_BAR = 0.9  # and final particles at least 90% as varied as independent samples with the attribute


@dataclass
class Cell:
    rewards: list = field(default_factory=list)
    hits: list = field(default_factory=list)
    variety: list = field(default_factory=list)
    stopped: list = field(default_factory=list)  # fraction of the run where steering stopped (None: never stopped)


def fk_run(bed: family.Bed, config: FKConfig, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, family.DIM, generator=g)
    return run_segments(bed.initial(noise), bed.sigmas, bed.model, bed.sampler(g), bed.reward, config,
                        generator=torch.Generator().manual_seed(seed), noise_ratio=bed.noise_ratio)


def fk_cell(bed, config: FKConfig, n: int, seeds: int) -> Cell:
    cell = Cell()
    for seed in range(seeds):
        res = fk_run(bed, config, n, seed)
        best = res.best_index
        cell.rewards.append(float(res.rewards[best]))
        cell.hits.append(float(bool(bed.has_attribute(res.samples[best:best + 1]))))
        cell.variety.append(mean_pairwise_distance(res.samples))
        stop = res.trace.window_stop
        cell.stopped.append(None if stop is None else stop["step"] / bed.steps)
    return cell


def deterministic_cell(bed, sampler, sigmas, n: int, seeds: int) -> Cell:
    cell = Cell()
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(n, family.DIM, generator=g)
        x0 = noise * sigmas[0] if bed.kind == "eps" else noise
        x = sampler(bed.model, x0, sigmas)
        r = bed.reward(x)
        best = int(torch.argmax(r))
        cell.rewards.append(float(r[best]))
        cell.hits.append(float(bool(bed.has_attribute(x[best:best + 1]))))
        cell.variety.append(mean_pairwise_distance(x))
    return cell


def reference_variety(bed, n: int, pool: int = 3000, groups: int = 400) -> float:
    """Mean pairwise distance of n independent plain samples (the bed's stochastic sampler) with the attribute."""
    x = bed.plain(pool, seed=999)
    kept = x[bed.has_attribute(x)]
    g = torch.Generator().manual_seed(5)
    return sum(mean_pairwise_distance(kept[torch.randperm(len(kept), generator=g)[:n]])
               for _ in range(groups)) / groups


def paired(a: list, b: list) -> tuple[float, float]:
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    return float(d.mean()), float(d.std() / math.sqrt(len(d)))


def mean(values: list) -> float:
    return sum(values) / len(values)


def bed_rows(bed, config: FKConfig, seeds: int) -> list[dict]:
    rows = []
    for n in NS:
        fk = fk_cell(bed, config, n, seeds)
        baselines = {"stochastic": fk_cell(bed, FKConfig(lmbda=0.0, lambda_mode="fixed"), n, seeds)}
        for name, (sampler, sigmas) in bed.deterministic().items():
            baselines[name] = deterministic_cell(bed, sampler, sigmas, n, seeds)
        stronger = max(baselines, key=lambda k: mean(baselines[k].rewards))
        gain_s, se_s = paired(fk.rewards, baselines["stochastic"].rewards)
        gain, se = paired(fk.rewards, baselines[stronger].rewards)
        stops = [s for s in fk.stopped if s is not None]
        rows.append(dict(bed=bed.name, held_out=bed.held_out, n=n, gain_stochastic=(gain_s, se_s),
                         stronger=stronger, gain=(gain, se), z=gain / se if se > 0 else math.inf,
                         hit=mean(fk.hits), hit_stochastic=mean(baselines["stochastic"].hits),
                         hit_stronger=mean(baselines[stronger].hits),
                         variety=mean(fk.variety) / reference_variety(bed, n),
                         stopped=(len(stops) / seeds, mean(stops) if stops else None)))
    return rows


def print_row(row: dict) -> None:
    gs, ss = row["gain_stochastic"]
    g, s = row["gain"]
    share, where = row["stopped"]
    stop = f"{share:.0%} at {where:.2f}" if where is not None else "never"
    name = row["bed"] + (" **(held out)**" if row["held_out"] else "")
    print(f"| {name} | {row['n']} | {gs:+.2f} ± {ss:.2f} | {row['stronger']}: {g:+.2f} ± {s:.2f} (z {row['z']:.1f}) "
          f"| {row['hit']:.0%} / {row['hit_stochastic']:.0%} / {row['hit_stronger']:.0%} | {row['variety']:.0%} "
          f"| {stop} |")


def run(seeds: int, config: FKConfig, include_held_out: bool = True) -> list[dict]:
    which = "shipped defaults" if config == FKConfig() else f"copy_variety {config.copy_variety}"
    print(f"\n## Family of learned beds (testbeds.family), {which}, {seeds} seeds per cell")
    print("| bed | N | gain over stochastic best-of-N ± s.e. | gain over the stronger baseline ± s.e. (z) "
          "| hit FK / stochastic / stronger | variety (share of independent) | steering stopped (runs, mean "
          "fraction) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for bed in family.beds(include_held_out):
        for row in bed_rows(bed, config, seeds):
            print_row(row)
            rows.append(row)
            sys.stdout.flush()
    worst_z = min(rows, key=lambda r: r["z"])
    worst_v = min(rows, key=lambda r: r["variety"])
    passing = all(r["z"] > GAIN_Z and r["variety"] >= VARIETY_BAR for r in rows)
    print(f"\nworst bed: gain z {worst_z['z']:.1f} ({worst_z['bed']}, N = {worst_z['n']}, over {worst_z['stronger']}); "
          f"variety {worst_v['variety']:.0%} ({worst_v['bed']}, N = {worst_v['n']}); "
          f"{'every bed passes' if passing else 'NOT every bed passes'} the bar (z > {GAIN_Z:g}, variety ≥ "
          f"{VARIETY_BAR:.0%})")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=60)
    parser.add_argument("--tuning", action="store_true", help="leave out the held-out member")
    parser.add_argument("--copy-variety", type=float, nargs=2, default=None, help="override the shipped bounds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    config = FKConfig() if args.copy_variety is None else FKConfig(copy_variety=tuple(args.copy_variety))
    run(args.seeds, config, include_held_out=not args.tuning)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
