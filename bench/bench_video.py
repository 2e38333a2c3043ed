"""Benchmark (not a test): the cost of FK steering on a video model inside real ComfyUI.

``--cost``: Wan 2.1 T2V 1.3B (ComfyUI's WAN21_T2V with the 1.3B config, as comfy/model_detection.py reads it from
wan2.1_t2v_1.3B: dim 1536, ffn 8960, 12 heads, 30 blocks; random weights), the Wan 2.1 VAE (its real, fixed
architecture; random weights) and random umt5-xxl-shaped text conditioning [1, 512, 4096]; 480x832 (latent
60x104), 17 frames (latent T=5), 20 steps, euler_ancestral (FK needs a random sampler), cfg 1, the shipped defaults
(``FKConfig()``), preview_decoder "full VAE" (ComfyUI 0.3.64 has no video TAE), for N = 2 and 4, side by side in
one run: plain KSampler batch N followed by the VAE decode of its N clips, and FK Particle Sampler with N
particles in one batch. Printed: plain and FK seconds, their ratio, seconds per check (decode + reward, FK's own
trace), the number of checks, peak VRAM. ``--device auto`` runs on the GPU when there is one (UNet in bf16 there).
The last line is ``cost Wan2.1-1.3B N=<max N>: full=X.XX`` (wall time on a GPU, process CPU time on the CPU).

``--tiny`` swaps the 1.3B model for the thin Wan the tests use (one block of width 128), to check the script on a
CPU in seconds: ``python bench/bench_video.py --cost --tiny --frames 5 --width 64 --height 64 --steps 3``.

Usage:  python bench/bench_video.py --cost [--frames 17] [--width 832] [--height 480] [--steps 20]
                                           [--particles 2 4] [--repeats 1] [--device auto] [--dtype auto] [--tiny]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_comfy  # noqa: E402  (puts tests/ on sys.path: comfy_host)
import comfy_host  # noqa: E402

WAN21_T2V_1_3B = {  # comfy/model_detection.py on wan2.1_t2v_1.3B (num_heads = dim // 128; text_dim WanModel's default)
    "image_model": "wan2.1", "model_type": "t2v", "dim": 1536, "ffn_dim": 8960, "freq_dim": 256, "text_dim": 4096,
    "num_heads": 12, "num_layers": 30, "in_dim": 16, "out_dim": 16, "patch_size": (1, 2, 2), "text_len": 512,
    "window_size": (-1, -1), "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6,
}
TEXT_TOKENS, TEXT_DIM = 512, 4096  # umt5-xxl's output as ComfyUI's Wan text encoder gives it


@dataclass(frozen=True)
class VideoSpec:
    """What bench_comfy's plain_with_decode / fk_cost_run need of a model family: its conditioning and the empty
    latent of a clip (EmptyHunyuanLatentVideo's shape: [batch, 16, (frames-1)//4+1, height/8, width/8])."""

    name: str
    frames: int
    height: int
    width: int

    def conditioning(self, seed: int):
        return comfy_host.tiny_conditioning(seed=seed, context_dim=TEXT_DIM, tokens=TEXT_TOKENS)

    def latent(self, batch: int, size=None) -> dict:
        import torch

        return {"samples": torch.zeros(batch, 16, (self.frames - 1) // 4 + 1, self.height // 8, self.width // 8)}


def build_wan(unet_config: dict, dtype, seed: int = 0):
    """ModelPatcher around ComfyUI's WAN21 (flow) with ``unet_config``, built in ``dtype`` as ComfyUI's loader builds
    it (the patch embedding stays fp32, as WanModel makes it), random weights."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    config = comfy.supported_models.WAN21_T2V(dict(unet_config))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({}, device=torch.device("cpu"))
    comfy_host.init_weights_(model.diffusion_model, seed)  # no .to(dtype): WanModel keeps patch_embedding fp32
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def video_cost_rows(args, nodes, pack, dtype):
    """The table's rows; returns {N: FK/plain} (wall on a GPU, process CPU time on the CPU)."""
    spec = VideoSpec("Wan2.1-tiny" if args.tiny else "Wan2.1-1.3B", args.frames, args.height, args.width)
    unet_config = comfy_host.thin_wan_unet_config() if args.tiny else WAN21_T2V_1_3B
    model = build_wan(unet_config, dtype)
    vae = comfy_host.build_wan_vae()
    run_args = (args.steps, None, 1, args.sampler, args.cfg)  # steps, size (unused: the spec knows), seed, ...
    warm = (2, None, 0, args.sampler, args.cfg)  # loads, allocations, kernels
    bench_comfy.fk_cost_run(pack, spec, model, vae, 2, *warm, "full VAE")
    bench_comfy.plain_with_decode(nodes, spec, model, vae, 2, *warm)
    use_cpu_time = bench_comfy.comfy_host_device() == "cpu"
    latent = spec.latent(1)["samples"].shape
    print(f"\n{spec.name}: device {bench_comfy.comfy_host_device()} ({bench_comfy.device_name()}), UNet {dtype}, "
          f"Wan 2.1 VAE (random weights), {args.width}x{args.height}, {args.frames} frames (latent "
          f"{tuple(latent[2:])}), steps={args.steps}, sampler={args.sampler}, cfg={args.cfg}, FK defaults "
          f"(FKConfig()), preview_decoder full VAE, best of {args.repeats}")
    header = (f"{'N':>3} | {'plain s':>7} | {'FK s':>7} | {'FK/plain':>8} | {'CPU FK/plain':>12} | "
              f"{'check s':>7} | {'checks':>6} | {'in-run':>6} | {'VRAM GiB plain/FK':>17}")
    print(header)
    print("-" * len(header))
    ratios = {}
    for n in args.particles:
        plains, fks = [], []
        for _ in range(args.repeats):  # interleaved, so a busy spell on a shared machine hits both
            plains.append(bench_comfy.peak_vram_gib(partial(
                bench_comfy.plain_with_decode, nodes, spec, model, vae, n, *run_args)))
            fks.append(bench_comfy.peak_vram_gib(partial(
                bench_comfy.fk_cost_run, pack, spec, model, vae, n, *run_args, "full VAE")))

        def seconds(clock):
            return clock.cpu if use_cpu_time else clock.wall

        plain, plain_vram = min(plains, key=lambda run: seconds(run[0]))
        (fk, cost), fk_vram = min(fks, key=lambda run: seconds(run[0][0]))
        ratio, cpu_ratio = fk.wall / plain.wall, fk.cpu / plain.cpu
        ratios[n] = cpu_ratio if use_cpu_time else ratio
        vram = "/".join("-" if v is None else f"{v:.1f}" for v in (plain_vram, fk_vram))
        print(f"{n:>3} | {plain.wall:>7.2f} | {fk.wall:>7.2f} | {ratio:>8.2f} | {cpu_ratio:>12.2f} | "
              f"{cost['per_check_s']:>7.3f} | {cost['checks']:>6} | "
              f"{bench_comfy.in_run_ratio(fk.wall, cost):>6.2f} | {vram:>17}")
    return spec, ratios


def cost_table(args):
    import torch

    gpu = args.device == "gpu" or (args.device == "auto" and torch.cuda.is_available())
    nodes, pack = bench_comfy.setup(gpu=gpu)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        args.dtype if args.dtype != "auto" else ("bf16" if gpu else "fp32")]
    print("seconds. plain = KSampler batch N + Wan VAE decode of its N clips; FK = FK Particle Sampler's sampling\n"
          "call (checks and the final full-VAE decode included); check s = decode + reward per check (wall, FK's\n"
          "trace); in-run = FK wall / (FK wall - its checks); VRAM = peak torch.cuda.max_memory_allocated.")
    spec, ratios = video_cost_rows(args, nodes, pack, dtype)
    last = max(ratios)
    print(f"cost {spec.name} N={last}: full={ratios[last]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost", action="store_true", help="the cost table (the only mode)")
    parser.add_argument("--frames", type=int, default=17, help="pixel frames (4k+1)")
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--particles", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sampler", default="euler_ancestral")
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--tiny", action="store_true", help="the tests' thin Wan instead of the 1.3B (CPU check)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="where ComfyUI runs (auto: the GPU when there is one)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                        help="the UNet's dtype (auto: bf16 on a GPU, fp32 on the CPU)")
    args = parser.parse_args()
    if (args.frames - 1) % 4 or args.width % 16 or args.height % 16:
        parser.error("--frames must be 4k+1 and --width / --height multiples of 16 (Wan's latent and patch sizes)")
    if not args.cost:
        parser.error("only --cost is implemented: python bench/bench_video.py --cost")
    cost_table(args)


if __name__ == "__main__":
    main()
