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


class Clock:
    """Wall time and process CPU time (all threads). CPU time is far less sensitive to other jobs sharing the
    machine, so ratios are reported on both."""

    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


class TimedVAE:
    """Forwards .decode to the real VAE and accumulates the time spent decoding."""

    def __init__(self, vae, clock: Clock):
        self.vae = vae
        self.clock = clock

    def decode(self, latents):
        with self.clock:
            return self.vae.decode(latents)


class TimedBrightness:
    name = "brightness"

    def __init__(self, clock: Clock):
        self.clock = clock

    def __call__(self, images):
        with self.clock:
            return images.float().mean(dim=(1, 2, 3))


def timed_counting_model(model):
    """Clone ``model`` so every UNet evaluation is counted (calls, rows) and timed (``counter.model``)."""
    clone = model.clone()
    counter = comfy_host.CallCounter()
    counter.model = Clock()

    def wrapper(apply_model, args):
        counter.record(args["input"].shape[0])
        with counter.model:
            return apply_model(args["input"], args["timestep"], **args["c"])

    clone.set_model_unet_function_wrapper(wrapper)
    return clone, counter


def setup():
    path, reason = comfy_host.locate_comfyui()
    if path is None:
        sys.exit(reason)
    nodes = comfy_host.import_host(path)
    pack = comfy_host.load_pack_in_process()
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False  # keep the table readable (tqdm bars go to stderr)
    return nodes, pack


def plain(nodes, model, n, steps, size, seed, sampler, cfg):
    import torch

    counted, counter = timed_counting_model(model)
    clock = Clock()
    with torch.inference_mode(), clock:
        nodes.KSampler().sample(counted, seed, steps, cfg, sampler, "normal", comfy_host.tiny_conditioning(),
                                comfy_host.tiny_conditioning(seed=1), comfy_host.empty_latent(n, size))
    return clock, counter


def sequential(nodes, model, n, steps, size, seed, sampler, cfg):
    total, calls, rows = Clock(), 0, 0
    for i in range(n):
        clock, counter = plain(nodes, model, 1, steps, size, seed + i, sampler, cfg)
        total.wall, total.cpu = total.wall + clock.wall, total.cpu + clock.cpu
        calls, rows = calls + counter.calls, rows + counter.rows
    return total, calls, rows


def fk_run(pack, model, vae, n, steps, size, seed, sampler, cfg, chunk=0, every=1):
    import comfy.sample

    counted, counter = timed_counting_model(model)
    reward_clock, clock, node_clock = Clock(), Clock(), Clock()
    timed_vae, reward = TimedVAE(vae, reward_clock), TimedBrightness(reward_clock)
    config = pack.fk_core.FKConfig(lmbda=10.0, lambda_mode="fixed", every=every)
    real_sample_custom = comfy.sample.sample_custom

    def timed_sample_custom(*a, **k):  # the sampling itself, without the node's contact sheet / PNG preview
        with clock:
            return real_sample_custom(*a, **k)

    comfy.sample.sample_custom = timed_sample_custom
    try:
        _run_fk_node(pack, counted, timed_vae, reward, n, steps, size, seed, sampler, cfg, chunk, config, node_clock)
    finally:
        comfy.sample.sample_custom = real_sample_custom
    clock.node_wall = node_clock.wall
    return clock, reward_clock, counter


def _run_fk_node(pack, counted, timed_vae, reward, n, steps, size, seed, sampler, cfg, chunk, config, node_clock):
    import torch

    with torch.inference_mode(), node_clock:
        pack.nodes.sampler.FKParticleSampler.execute(
            model=counted, positive=comfy_host.tiny_conditioning(), negative=comfy_host.tiny_conditioning(seed=1),
            latent_image=comfy_host.empty_latent(1, size), vae=timed_vae, reward=reward, seed=seed, steps=steps,
            cfg=cfg, sampler_name=sampler, scheduler="normal", denoise=1.0, particles=n, particle_chunk=chunk,
            potential=config)


def best_of(fn, repeats):
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r[0].cpu)


def speed_table(args):
    nodes, pack = setup()
    model = comfy_host.build_tiny_model("eps")
    vae = comfy_host.build_tiny_vae()
    fk_run(pack, model, vae, 2, 2, args.size, 0, args.sampler, args.cfg)  # warm-up
    print(f"device: {comfy_host_device()}  steps={args.steps}  latent={args.size}x{args.size}  "
          f"sampler={args.sampler}  cfg={args.cfg}  potential every step  best of {args.repeats}")
    header = (f"{'N':>3} | {'plain s':>7} | {'seq N s':>7} | {'FK s':>6} | {'reward s':>8} | {'FK-reward s':>11} | "
              f"{'ratio':>5} | {'model s plain/FK':>16} | {'other s plain/FK':>16} | {'rows plain/FK/seq':>17} | "
              f"{'calls plain/FK':>14}")
    print(header)
    print("-" * len(header))
    for n in args.particles:
        p_clock, p_counter = best_of(partial(plain, nodes, model, n, args.steps, args.size, 1, args.sampler,
                                             args.cfg), args.repeats)
        s_clock, _s_calls, s_rows = best_of(partial(sequential, nodes, model, n, args.steps, args.size, 1,
                                                    args.sampler, args.cfg), 1)
        f_clock, r_clock, f_counter = best_of(partial(fk_run, pack, model, vae, n, args.steps, args.size, 1,
                                                      args.sampler, args.cfg), args.repeats)
        fk_net = f_clock.wall - r_clock.wall
        other_plain = p_clock.wall - p_counter.model.wall
        other_fk = fk_net - f_counter.model.wall
        print(f"{n:>3} | {p_clock.wall:>7.3f} | {s_clock.wall:>7.3f} | {f_clock.wall:>6.3f} | {r_clock.wall:>8.3f} | "
              f"{fk_net:>11.3f} | {fk_net / p_clock.wall:>5.2f} | "
              f"{p_counter.model.wall:>7.3f}/{f_counter.model.wall:<8.3f} | {other_plain:>7.3f}/{other_fk:<8.3f} | "
              f"{p_counter.rows:>5}/{f_counter.rows}/{s_rows:<5} | {p_counter.calls:>6}/{f_counter.calls:<7}")
    print("wall seconds. ratio = (FK - reward) / plain batch N, where FK = the sampling call (node output work\n"
          "excluded) and reward = VAE decode + reward, FK's only extra work. model = time inside UNet calls;\n"
          "other = everything else (sampler maths, FK bookkeeping). Best of the repeats by FK/plain CPU time.")


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
    parser.add_argument("--memory-only", action="store_true", help="only the memory measurement")
    parser.add_argument("--memory-size", type=int, default=16)
    parser.add_argument("--memory-child", type=int, nargs=2, metavar=("N", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child, args.size, args.steps)
        return
    if not args.memory_only:
        speed_table(args)
    if args.memory or args.memory_only:
        memory_table(args)


if __name__ == "__main__":
    main()
