"""Engine benchmark: FK steering against best-of-N on the rare-attribute model, and FK's own overhead.

    python bench/bench_engine.py            # full tables (a few minutes on 2 CPU cores)
    python bench/bench_engine.py --quick    # fewer runs
    python bench/bench_engine.py --only overhead

Table 1: for N ∈ {1, 4, 8, 16}, best-of-N (λ = 0) and FK with each potential: hit rate of the best particle,
hit rate of a draw from the final weights, mean final reward, denoiser calls per run, wall time per run.
Table 2: schedule sweep at N = 8 (every n, window) for the default potential: where potentials act.
Table 3: bookkeeping overhead: the particle loop with the default settings (auto λ's bisection included) and a
potential at every step vs. the same sampler with no potentials, for a small conv-net denoiser; reward time
excluded (it is the user's). The wall-time difference is noisy on a busy CPU, so FK's own cost is also
measured directly with a free denoiser and reported as a share of the plain loop. Plus the trace's size
against N (the only per-step history kept).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any folder

from fk_core import FKConfig, run_segments, steer  # noqa: E402
from fk_core.steppers import euler_ancestral  # noqa: E402
from testbeds.rare import rare_attribute  # noqa: E402
from testbeds.toy import karras_sigmas  # noqa: E402

STEPS = 50
SIGMAS = karras_sigmas(STEPS, sigma_min=0.02, sigma_max=20.0)


def rare_runs(config: FKConfig, n: int, runs: int, width: float = 0.5) -> dict:
    task = rare_attribute(2)
    task.width = width
    hits_best = hits_draw = 0
    reward_sum = 0.0
    calls = 0
    t0 = time.perf_counter()
    for r in range(runs):
        g = torch.Generator().manual_seed(r)
        noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
        res = steer(task.model.denoise, SIGMAS, noise, task.reward, config, generator=g)
        hits_best += bool(task.has_attribute(res.samples[res.best_index]))
        hits_draw += bool(task.has_attribute(res.samples[res.draw_index(g)]))
        reward_sum += float(res.rewards.mean())
        calls += res.model_evaluations
    wall = (time.perf_counter() - t0) / runs
    return dict(best=hits_best / runs, draw=hits_draw / runs, reward=reward_sum / runs, calls=calls / runs,
                wall_ms=1000 * wall)


def table_potentials(runs: int, lmbda: float) -> None:
    window = (0.2, 1.0)  # the window these tables were measured in (the old default)
    print(f"\n## Rare attribute (0.3% of p0), {STEPS} Euler-ancestral steps, λ = {lmbda}, potential every step "
          f"in the default window {window[0]}–{window[1]}, {runs} runs per cell")
    print("| N | method | hit (best) | hit (weighted draw) | mean reward | denoiser calls | ms/run |")
    print("|---|---|---|---|---|---|---|")
    for n in (1, 4, 8, 16):
        rows = [("best-of-N", FKConfig(lmbda=0.0, lambda_mode="fixed"))]
        rows += [(f"FK {p}", FKConfig(potential=p, lmbda=lmbda, lambda_mode="fixed", window=window))
                 for p in ("diff", "max", "sum", "immediate")]
        for name, config in rows:
            s = rare_runs(config, n, runs)
            print(f"| {n} | {name} | {s['best']:.1%} | {s['draw']:.1%} | {s['reward']:.3f} | {s['calls']:.0f} "
                  f"| {s['wall_ms']:.1f} |")


def table_schedule(runs: int, potential: str, lmbda: float) -> None:
    print(f"\n## Where potentials act: N = 8, FK {potential}, λ = {lmbda}, {runs} runs per cell")
    print("| every | window | potential steps | hit (best) | hit (draw) |")
    print("|---|---|---|---|---|")
    for every in (1, 2, 5):
        for window in ((0.0, 1.0), (0.2, 1.0), (0.4, 1.0), (0.0, 0.6)):
            config = FKConfig(potential=potential, lmbda=lmbda, lambda_mode="fixed", every=every, window=window)
            k = len(__import__("fk_core.schedule", fromlist=["x"]).potential_steps(STEPS, every, *window))
            s = rare_runs(config, 8, runs)
            print(f"| {every} | {window[0]:.1f}–{window[1]:.1f} | {k} | {s['best']:.1%} | {s['draw']:.1%} |")


class SmallDenoiser(torch.nn.Module):
    """A small conv net standing in for a UNet (4×32×32 latents, 64 channels, 4 conv layers)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(4, 64, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(64, 64, 3, padding=1),
            torch.nn.SiLU(), torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(64, 4, 3, padding=1))

    @torch.no_grad()
    def forward(self, x, sigma):
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2) + 0.1 * self.net(x)


def table_overhead(repeats: int) -> None:
    torch.manual_seed(0)
    net = SmallDenoiser().eval()
    steps = 20
    sigmas = karras_sigmas(steps, dtype=torch.float32)
    print(f"\n## Bookkeeping overhead: small conv denoiser, {steps} steps, potential every step, reward excluded")
    print("| N | plain loop ms | FK loop ms (minus reward) | difference | FK bookkeeping ms (share of plain) "
          "| trace bytes | model calls FK / plain |")
    print("|---|---|---|---|---|---|---|")
    reward_time, plain_calls = [0.0], [0]

    def reward(x0):
        t = time.perf_counter()
        r = x0.mean(dim=(1, 2, 3))
        reward_time[0] += time.perf_counter() - t
        return r

    def counted(x, s):
        plain_calls[0] += 1
        return net(x, s)

    for n in (4, 8, 16, 64):
        noise = torch.randn(n, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        plain_calls[0] = 0
        best_plain = best_fk = float("inf")
        fk_calls = 0
        for _ in range(repeats):
            g = torch.Generator().manual_seed(2)
            t = time.perf_counter()
            euler_ancestral(1.0, g)(counted, noise * sigmas[0], sigmas)
            best_plain = min(best_plain, time.perf_counter() - t)
            g = torch.Generator().manual_seed(2)
            seg = euler_ancestral(1.0, g)
            reward_time[0] = 0.0
            t = time.perf_counter()
            res = run_segments(noise * sigmas[0], sigmas, net, seg, reward, FKConfig(window=(0.0, 1.0)), generator=g)
            best_fk = min(best_fk, time.perf_counter() - t - reward_time[0])
            fk_calls = res.model_evaluations
        trace_bytes = sum(s.rewards.numel() * 8 * 2 + s.ancestors.numel() * 8 for s in res.trace.steps)
        book = bookkeeping_seconds(noise, sigmas, steps, repeats)
        print(f"| {n} | {1000 * best_plain:.1f} | {1000 * best_fk:.1f} | {best_fk / best_plain - 1:+.1%} "
              f"| {1000 * book:.1f} ({book / best_plain:.1%}) | {trace_bytes} "
              f"| {fk_calls} / {plain_calls[0] // repeats} |")


def bookkeeping_seconds(noise: torch.Tensor, sigmas: torch.Tensor, steps: int, repeats: int) -> float:
    """FK's own cost, free of timing noise from the network: the same two loops with a free denoiser
    (x0 = x/2) and a free reward, FK minus plain (best of ``repeats`` each)."""
    free = lambda x, s: x * 0.5  # noqa: E731
    reward = lambda x0: x0[:, 0, 0, 0]  # noqa: E731
    best_plain = best_fk = float("inf")
    for _ in range(repeats * 3):
        g = torch.Generator().manual_seed(2)
        t = time.perf_counter()
        euler_ancestral(1.0, g)(free, noise * sigmas[0], sigmas)
        best_plain = min(best_plain, time.perf_counter() - t)
        g = torch.Generator().manual_seed(2)
        t = time.perf_counter()
        run_segments(noise * sigmas[0], sigmas, free, euler_ancestral(1.0, g), reward,
                     FKConfig(window=(0.0, 1.0)), generator=g)
        best_fk = min(best_fk, time.perf_counter() - t)
    return max(0.0, best_fk - best_plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lmbda", type=float, default=30.0)
    parser.add_argument("--only", choices=("potentials", "schedule", "overhead"), help="run one table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = 60 if args.quick else 200
    if args.only in (None, "potentials"):
        table_potentials(runs, args.lmbda)
    if args.only in (None, "schedule"):
        table_schedule(runs, "max", args.lmbda)
    if args.only in (None, "overhead"):
        table_overhead(3 if args.quick else 7)


if __name__ == "__main__":
    main()
