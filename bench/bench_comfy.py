"""Benchmark (not a test): FK Particle Sampler inside real ComfyUI vs plain KSampler.

For N in {4, 8, 16}, on a tiny real-architecture SD1.5-family UNet (random weights, CPU by default):

* plain KSampler with batch N; N sequential KSampler runs with batch 1; FK(N) through FKParticleSampler;
* model calls (batched UNet calls) and rows (particle evaluations) for each;
* FK wall time split into reward time (VAE decode + reward) and the rest; the target is
  rest <= 1.10 x plain batch N, and rows of FK(N) == rows of plain batch N exactly.

Memory (--memory): peak process memory growth while sampling N=64 vs N=8 at the same particle chunk (8), each
in a fresh subprocess (peak RSS on CPU, or torch.cuda.max_memory_allocated on a GPU). Target: within 1.2x.

Usage:  python bench/bench_comfy.py [--steps 20] [--size 16] [--repeats 3] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import comfy_host  # noqa: E402


class TimedVAE:
    """Forwards .decode to the real VAE and accumulates the time spent decoding."""

    def __init__(self, vae):
        self.vae = vae
        self.seconds = 0.0

    def decode(self, latents):
        start = time.perf_counter()
        try:
            return self.vae.decode(latents)
        finally:
            self.seconds += time.perf_counter() - start


class TimedBrightness:
    name = "brightness"

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, images):
        start = time.perf_counter()
        out = images.float().mean(dim=(1, 2, 3))
        self.seconds += time.perf_counter() - start
        return out


def setup():
    path, reason = comfy_host.locate_comfyui()
    if path is None:
        sys.exit(reason)
    nodes = comfy_host.import_host(path)
    pack = comfy_host.load_pack_in_process()
    return nodes, pack


def plain(nodes, model, n, steps, size, seed, sampler, cfg):
    import torch

    counted, counter = comfy_host.counting_model(model)
    start = time.perf_counter()
    with torch.inference_mode():
        nodes.KSampler().sample(counted, seed, steps, cfg, sampler, "normal", comfy_host.tiny_conditioning(),
                                comfy_host.tiny_conditioning(seed=1), comfy_host.empty_latent(n, size))
    return time.perf_counter() - start, counter


def sequential(nodes, model, n, steps, size, seed, sampler, cfg):
    total, calls, rows = 0.0, 0, 0
    for i in range(n):
        seconds, counter = plain(nodes, model, 1, steps, size, seed + i, sampler, cfg)
        total, calls, rows = total + seconds, calls + counter.calls, rows + counter.rows
    return total, calls, rows


def fk_run(pack, model, vae, n, steps, size, seed, sampler, cfg, chunk=0, every=1):
    import torch

    counted, counter = comfy_host.counting_model(model)
    timed_vae, reward = TimedVAE(vae), TimedBrightness()
    config = pack.fk_core.FKConfig(lmbda=10.0, every=every)
    start = time.perf_counter()
    with torch.inference_mode():
        pack.nodes.sampler.FKParticleSampler.execute(
            model=counted, positive=comfy_host.tiny_conditioning(), negative=comfy_host.tiny_conditioning(seed=1),
            latent_image=comfy_host.empty_latent(1, size), vae=timed_vae, reward=reward, seed=seed, steps=steps,
            cfg=cfg, sampler_name=sampler, scheduler="normal", denoise=1.0, particles=n, particle_chunk=chunk,
            potential=config)
    total = time.perf_counter() - start
    return total, timed_vae.seconds + reward.seconds, counter


def best_of(fn, repeats):
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r[0])


def speed_table(args):
    nodes, pack = setup()
    model = comfy_host.build_tiny_model("eps")
    vae = comfy_host.build_tiny_vae()
    fk_run(pack, model, vae, 2, 2, args.size, 0, args.sampler, args.cfg)  # warm-up
    print(f"device: {comfy_host_device()}  steps={args.steps}  latent={args.size}x{args.size}  "
          f"sampler={args.sampler}  cfg={args.cfg}  potential every step  best of {args.repeats}")
    header = (f"{'N':>3} | {'plain N s':>9} | {'seq N s':>8} | {'FK s':>7} | {'reward s':>8} | {'FK-reward s':>11} | "
              f"{'ratio':>6} | {'rows plain':>10} | {'rows FK':>7} | {'rows seq':>8} | {'calls plain/FK':>14}")
    print(header)
    print("-" * len(header))
    for n in args.particles:
        p_time, p_counter = best_of(partial(plain, nodes, model, n, args.steps, args.size, 1, args.sampler,
                                            args.cfg), args.repeats)
        s_time, _s_calls, s_rows = best_of(partial(sequential, nodes, model, n, args.steps, args.size, 1,
                                                   args.sampler, args.cfg), 1)
        f_time, f_reward, f_counter = best_of(partial(fk_run, pack, model, vae, n, args.steps, args.size, 1,
                                                      args.sampler, args.cfg), args.repeats)
        ratio = (f_time - f_reward) / p_time
        print(f"{n:>3} | {p_time:>9.3f} | {s_time:>8.3f} | {f_time:>7.3f} | {f_reward:>8.3f} | "
              f"{f_time - f_reward:>11.3f} | {ratio:>6.3f} | {p_counter.rows:>10} | {f_counter.rows:>7} | "
              f"{s_rows:>8} | {p_counter.calls:>6}/{f_counter.calls:<7}")


def comfy_host_device() -> str:
    import comfy.model_management as mm

    return str(mm.get_torch_device())


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(n, chunk, size, steps):
    """Runs in a fresh process: peak memory growth of one FK run (bytes), printed as JSON."""
    import torch

    nodes, pack = setup()
    model = comfy_host.build_tiny_model("eps")
    vae = comfy_host.build_tiny_vae()
    fk_run(pack, model, vae, 2, 2, size, 0, "euler_ancestral", 2.0, chunk=2, every=2)  # warm-up
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = current_rss_bytes()
    fk_run(pack, model, vae, n, steps, size, 0, "euler_ancestral", 2.0, chunk=chunk, every=2)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({"n": n, "chunk": chunk, "peak_growth_bytes": peak, "cuda": cuda}))


def memory_table(args):
    rows = []
    for n, chunk in ((8, 8), (64, 8), (64, 64)):
        cmd = [sys.executable, __file__, "--memory-child", str(n), str(chunk), "--size", str(args.memory_size),
               "--steps", "4"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    print(f"memory: latent {args.memory_size}x{args.memory_size}, 4 steps, cfg 2, peak growth during the FK run "
          f"({'CUDA allocated' if rows[0]['cuda'] else 'process RSS'})")
    base = rows[0]["peak_growth_bytes"]
    for row in rows:
        mib = row["peak_growth_bytes"] / 2**20
        ratio = row["peak_growth_bytes"] / base
        print(f"  N={row['n']:>3} chunk={row['chunk']:>3}: {mib:9.1f} MiB  ({ratio:.2f}x N=8)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=16, help="latent side (pixels / 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampler", default="euler_ancestral")
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--particles", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--memory", action="store_true", help="also measure peak memory N=64 vs N=8 (chunk 8)")
    parser.add_argument("--memory-size", type=int, default=32)
    parser.add_argument("--memory-child", type=int, nargs=2, metavar=("N", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child, args.size, args.steps)
        return
    speed_table(args)
    if args.memory:
        memory_table(args)


if __name__ == "__main__":
    main()
