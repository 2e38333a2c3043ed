"""Benchmark (not a test): FK Particle Sampler inside real ComfyUI vs plain KSampler.

For N in {4, 8, 16}, on a tiny real-architecture SD1.5-family UNet (random weights, CPU by default):

* plain KSampler with batch N; N sequential KSampler runs with batch 1; FK(N) through FKParticleSampler;
* model calls (batched UNet calls) and rows (particle evaluations) for each;
* FK wall time split into reward time (VAE decode + reward) and the rest; the target is
  rest <= 1.10 x plain batch N, and rows of FK(N) == rows of plain batch N exactly.

Cost of a check (--cost): full-size real-architecture UNets with random weights — SD1.5 (860 M parameters) and,
with ``--cost-models sdxl``, SDXL (2.6 B) — and the SD VAE (AutoencoderKL, 84 M), plus a TAESD decoder (ComfyUI's
class, random weights, saved as the file ComfyUI's previews look for) in a temporary models/vae_approx; for
N = 4 and 8, 20 steps, a pixel reward, the shipped defaults (``FKConfig()``), side by side in one run: plain
KSampler batch N followed by the VAE decode of its N images (a plain workflow needs that decode to get images;
FK's final full-VAE decode does the same work inside the sampler), FK with preview_decoder "full VAE" and FK with
"TAESD", their ratios to plain, the per-check decode + reward cost from FK's own trace and, on a GPU, the peak
VRAM. ``--device auto`` runs on the GPU when there is one (UNet in fp16 there). The last lines are
``cost <model> N=8: full=X.XX taesd=Y.YY`` (process CPU time on a CPU device, where the machine may be shared,
wall time on a GPU). Target: taesd <= 1.35.

Memory (--memory): peak process memory growth while sampling N=64 vs N=8 at the same particle chunk (8), each
in a fresh subprocess (peak RSS on CPU, or torch.cuda.max_memory_allocated on a GPU). Target: within 1.2x.

Usage:  python bench/bench_comfy.py [--steps 20] [--size 16] [--repeats 3] [--memory]
        python bench/bench_comfy.py --cost [--cost-size 64] [--cost-models sd15 sdxl] [--cost-repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
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


def setup(gpu: bool = False):
    path, reason = comfy_host.locate_comfyui()
    if path is None:
        sys.exit(reason)
    nodes = comfy_host.import_host(path, cpu=not gpu)
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


# --------------------------------------------------------------------------------------------------- --cost

SD15_UNET = {  # SD1.5's own UNet (what ComfyUI's model detection finds in v1-5-pruned-emaonly)
    "model_channels": 320, "in_channels": 4, "out_channels": 4, "channel_mult": [1, 2, 4, 4],
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "transformer_depth_middle": 1,
    "context_dim": 768, "num_heads": 8, "num_head_channels": -1, "image_size": 32, "use_spatial_transformer": True,
    "use_linear_in_transformer": False, "legacy": False, "adm_in_channels": None, "use_temporal_attention": False,
    "use_temporal_resblock": False, "use_checkpoint": False,
}
SDXL_UNET = {  # SDXL base's UNet (2.6 B parameters), as ComfyUI's model detection finds it in sd_xl_base_1.0
    "model_channels": 320, "in_channels": 4, "out_channels": 4, "channel_mult": [1, 2, 4],
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10,
    "context_dim": 2048, "num_heads": -1, "num_head_channels": 64, "image_size": 32, "use_spatial_transformer": True,
    "use_linear_in_transformer": True, "legacy": False, "adm_in_channels": 2816, "num_classes": "sequential",
    "use_temporal_attention": False, "use_temporal_resblock": False, "use_checkpoint": False,
}
SD15_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
            "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


@dataclass(frozen=True)
class CostModel:
    """One model family of the --cost table: its UNet, the TAESD file ComfyUI's previews use for it, and its
    text conditioning's width (SDXL also needs the pooled CLIP-G vector)."""

    name: str
    unet: dict
    family: str  # the comfy.supported_models class
    model_class: str  # the comfy.model_base class
    taesd_file: str
    context_dim: int
    pooled_dim: int = 0

    def conditioning(self, seed: int):
        return cost_conditioning(self, seed)

    def latent(self, batch: int, size: int) -> dict:
        """The empty latent the runs start from (bench/bench_video.py's spec gives a video one instead)."""
        return comfy_host.empty_latent(batch, size)


COST_MODELS = {
    "sd15": CostModel("SD1.5", SD15_UNET, "SD15", "BaseModel", "taesd_decoder", 768),
    "sdxl": CostModel("SDXL", SDXL_UNET, "SDXL", "SDXL", "taesdxl_decoder", 2048, pooled_dim=1280),
}


def build_unet(spec: CostModel, dtype, seed: int = 0):
    """ModelPatcher around a full-size UNet with random weights, in ``dtype`` (fp16 on a GPU, as ComfyUI
    would load a real checkpoint there)."""
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    config = getattr(comfy.supported_models, spec.family)(dict(spec.unet))
    config.set_inference_dtype(dtype, None)
    model_class = getattr(comfy.model_base, spec.model_class)
    model = model_class(config, model_type=comfy.model_base.ModelType.EPS, device=torch.device("cpu"))
    comfy_host.init_weights_(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def build_sd15_model(seed: int = 0):
    """ModelPatcher around SD1.5's full UNet with random weights (fp32)."""
    import torch

    return build_unet(COST_MODELS["sd15"], torch.float32, seed)


def build_sd15_vae(seed: int = 0):
    """comfy.sd.VAE around SD1.5's AutoencoderKL with random weights (loaded from its state dict, as from a file).
    SDXL's VAE has the same architecture (other weights), so it serves both --cost models."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    net = AutoencoderKL(ddconfig=dict(SD15_VAE), embed_dim=4)
    comfy_host.init_weights_(net, seed)
    return comfy.sd.VAE(sd={k: v.detach().clone() for k, v in net.state_dict().items()})


def install_random_taesd(folder: Path, seed: int = 0, name: str = "taesd_decoder") -> Path:
    """``<name>.safetensors`` (ComfyUI's TAESD decoder, random weights) in ``folder``, registered as the only
    models/vae_approx folder so the pack finds it exactly as ComfyUI's live previews would."""
    import folder_paths
    import safetensors.torch

    prefix = "taesd_decoder."
    decoder = {k[len(prefix):]: v.contiguous() for k, v in comfy_host.taesd_state_dict(seed).items()
               if k.startswith(prefix)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    safetensors.torch.save_file(decoder, str(path))
    extensions = folder_paths.folder_names_and_paths["vae_approx"][1]
    folder_paths.folder_names_and_paths["vae_approx"] = ([str(folder)], extensions)
    folder_paths.filename_list_cache.clear()
    return path


def cost_conditioning(spec: CostModel, seed: int):
    """CONDITIONING as the model's text encoder would return it (SDXL: with the pooled vector and image size)."""
    import torch

    cond = comfy_host.tiny_conditioning(seed=seed, context_dim=spec.context_dim)
    if spec.pooled_dim:
        gen = torch.Generator().manual_seed(seed + 100)
        cond[0][1]["pooled_output"] = torch.randn(1, spec.pooled_dim, generator=gen)
    return cond


class Contrast:
    """Pixel reward (standard deviation of the pixels): cheap, uses every pixel (no input_size); differentiable,
    so a guided run's backward pass is almost all the preview decoder's."""

    name = "contrast"
    differentiable = True

    def __call__(self, images):
        return images.float().std(dim=(1, 2, 3))


def plain_with_decode(nodes, spec, model, vae, n, steps, size, seed, sampler, cfg):
    import torch

    clock = Clock()
    with torch.inference_mode(), clock:
        out = nodes.KSampler().sample(model, seed, steps, cfg, sampler, "normal", spec.conditioning(0),
                                      spec.conditioning(1), spec.latent(n, size))
        vae.decode(out[0]["samples"])
        synchronize()
    return clock


def fk_cost_run(pack, spec, model, vae, n, steps, size, seed, sampler, cfg, preview_decoder, guidance=0.0):
    """Wall time of FK Particle Sampler's sampling call (checks and final decode included) and its trace cost.
    All N particles in one UNet batch (particle_chunk = N), exactly the batch of the plain run it is compared with.
    ``guidance`` > 0: guided proposals (a backward pass through the preview decoder and the reward per check)."""
    import comfy.sample
    import torch

    clock, captured = Clock(), {}
    real_sample_custom = comfy.sample.sample_custom

    def timed_sample_custom(*a, **k):
        with clock:
            return real_sample_custom(*a, **k)

    comfy.sample.sample_custom = timed_sample_custom
    try:
        with torch.inference_mode():
            out = pack.nodes.sampler.FKParticleSampler.execute(
                model=model, positive=spec.conditioning(0), negative=spec.conditioning(1),
                latent_image=spec.latent(1, size), vae=vae, reward=Contrast(), seed=seed, steps=steps,
                cfg=cfg, sampler_name=sampler, scheduler="normal", denoise=1.0, particles=n, particle_chunk=n,
                potential=pack.fk_core.FKConfig(guidance=guidance), preview_decoder=preview_decoder)
            synchronize()
        captured["cost"] = json.loads(out.result[4])["cost"]
    finally:
        comfy.sample.sample_custom = real_sample_custom
    return clock, captured["cost"]


def in_run_ratio(wall: float, cost: dict) -> float:
    checks = cost["decode_s"] + cost["reward_s"]
    return wall / (wall - checks) if wall > checks else float("nan")


def synchronize():
    """Wait for the GPU, so wall clocks measure finished work (a no-op on the CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_vram_gib(fn):
    """Run ``fn`` and return (its result, the peak CUDA memory allocated meanwhile in GiB, or None on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return fn(), None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    return result, torch.cuda.max_memory_allocated() / 2**30


def cost_runs(args) -> dict:
    """{key: (preview decoder, guidance)} of the FK runs timed against plain sampling."""
    runs = {"full": ("full VAE", 0.0), "taesd": ("TAESD", 0.0)}
    if args.cost_guidance > 0:
        runs["guided"] = ("TAESD", args.cost_guidance)
    return runs


def timed_cost_runs(args, nodes, pack, spec, model, vae, n) -> dict:
    """Best of ``cost_repeats`` for plain and each FK run: {key: ((clock, trace cost or None), peak VRAM)}."""
    use_cpu_time = comfy_host_device() == "cpu"
    size, steps, fk_runs = args.cost_size, args.steps, cost_runs(args)
    runs = {key: [] for key in ("plain", *fk_runs)}
    for _ in range(args.cost_repeats):  # interleaved, so a busy spell on a shared machine hits all of them
        clock, vram = peak_vram_gib(partial(
            plain_with_decode, nodes, spec, model, vae, n, steps, size, 1, args.sampler, args.cfg))
        runs["plain"].append(((clock, None), vram))
        for key, (decoder, guidance) in fk_runs.items():
            runs[key].append(peak_vram_gib(partial(
                fk_cost_run, pack, spec, model, vae, n, steps, size, 1, args.sampler, args.cfg, decoder, guidance)))

    def seconds(run):
        clock = run[0][0]
        return clock.cpu if use_cpu_time else clock.wall

    return {key: min(found, key=seconds) for key, found in runs.items()}


def cost_row(n: int, best: dict, use_cpu_time: bool) -> tuple[str, tuple]:
    """One printed row and the (full/plain, taesd/plain) ratios it shows."""
    (plain, _), plain_vram = best["plain"]
    (full, full_cost), full_vram = best["full"]
    (taesd, taesd_cost), taesd_vram = best["taesd"]
    wall = (full.wall / plain.wall, taesd.wall / plain.wall)
    cpu = (full.cpu / plain.cpu, taesd.cpu / plain.cpu)
    in_run = (in_run_ratio(full.wall, full_cost), in_run_ratio(taesd.wall, taesd_cost))
    vram = "/".join("-" if v is None else f"{v:.1f}" for v in (plain_vram, full_vram, taesd_vram))
    row = (f"{n:>3} | {plain.wall:>7.2f} | {full.wall:>9.2f} | {taesd.wall:>10.2f} | {wall[0]:>10.2f} | "
           f"{wall[1]:>11.2f} | {cpu[0]:>14.2f} | {cpu[1]:>15.2f} | "
           f"{full_cost['per_check_s']:>8.3f}/{taesd_cost['per_check_s']:<9.3f} | "
           f"{taesd_cost['checks']:>6} | {in_run[0]:>8.2f}/{in_run[1]:<8.2f} | {vram:>25}")
    if "guided" in best:
        (guided, guided_cost), guided_vram = best["guided"]
        ratio = guided.cpu / plain.cpu if use_cpu_time else guided.wall / plain.wall
        row += (f" | {ratio:>12.2f} | {guided_cost.get('backward_per_check_s', float('nan')):>13.3f} | "
                f"{'-' if guided_vram is None else f'{guided_vram:.1f}':>11}")
    return row, (cpu if use_cpu_time else wall)


def cost_rows(args, nodes, pack, spec, dtype):
    """The --cost table's rows for one model family; returns {N: (full/plain, taesd/plain)}."""
    import tempfile

    model = build_unet(spec, dtype)
    vae = build_sd15_vae()
    install_random_taesd(Path(tempfile.mkdtemp(prefix="fk-bench-vae-approx-")), name=spec.taesd_file)
    size, steps = args.cost_size, args.steps
    for decoder, guidance in cost_runs(args).values():  # warm-up (loads, allocations, kernels)
        fk_cost_run(pack, spec, model, vae, 2, 2, size, 0, args.sampler, args.cfg, decoder, guidance)
    plain_with_decode(nodes, spec, model, vae, 2, 2, size, 0, args.sampler, args.cfg)
    use_cpu_time = comfy_host_device() == "cpu"
    print(f"\n{spec.name}: device {comfy_host_device()} ({device_name()}), UNet {dtype} + VAE + TAESD (random "
          f"weights), steps={steps}, latent {size}x{size} ({size * 8} px), sampler={args.sampler}, cfg={args.cfg}, "
          f"FK defaults (FKConfig()), best of {args.cost_repeats}")
    header = (f"{'N':>3} | {'plain s':>7} | {'FK full s':>9} | {'FK taesd s':>10} | {'full/plain':>10} | "
              f"{'taesd/plain':>11} | {'CPU full/plain':>14} | {'CPU taesd/plain':>15} | "
              f"{'check s full/taesd':>18} | {'checks':>6} | {'in-run full/taesd':>17} | "
              f"{'VRAM GiB plain/full/taesd':>25}")
    if args.cost_guidance > 0:
        header += f" | {'guided/plain':>12} | {'backward s/ck':>13} | {'guided VRAM':>11}"
    print(header)
    print("-" * len(header))
    ratios = {}
    for n in args.cost_particles:
        row, ratios[n] = cost_row(n, timed_cost_runs(args, nodes, pack, spec, model, vae, n), use_cpu_time)
        print(row)
    return ratios


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def cost_table(args):
    import torch

    gpu = args.device == "gpu" or (args.device == "auto" and torch.cuda.is_available())
    nodes, pack = setup(gpu=gpu)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        args.dtype if args.dtype != "auto" else ("fp16" if gpu else "fp32")]
    print("seconds. plain = KSampler batch N + VAE decode of its N images; FK = FK Particle Sampler's sampling call\n"
          "(checks and the final full-VAE decode included); check s = decode + reward per check (wall, FK's trace).\n"
          "CPU = process CPU time, all threads: on a shared CPU machine it depends far less on the neighbours.\n"
          "in-run = FK wall / (FK wall - its checks' decode + reward): the checks' share inside one run, immune to\n"
          "the neighbours changing between runs (FK makes exactly the model calls of plain sampling).\n"
          "VRAM = peak torch.cuda.max_memory_allocated during the run (weights included).\n"
          "guided = FK with TAESD checks and guided proposals (--cost-guidance); backward s/ck = the backward pass\n"
          "through TAESD and the reward per check (FK's trace).\n"
          f"The last lines' ratios use {'process CPU time' if comfy_host_device() == 'cpu' else 'wall time'}.")
    summary = []
    for key in args.cost_models:
        ratios = cost_rows(args, nodes, pack, COST_MODELS[key], dtype)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        last = max(ratios)
        summary.append(f"cost {COST_MODELS[key].name} N={last}: full={ratios[last][0]:.2f} taesd={ratios[last][1]:.2f}")
    print("\n".join(summary))


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
    parser.add_argument("--cost", action="store_true",
                        help="only the cost of a check: SD1.5 UNet + VAE vs TAESD, N = 4 and 8")
    parser.add_argument("--cost-size", type=int, default=16, help="latent side for --cost (pixels / 8)")
    parser.add_argument("--cost-repeats", type=int, default=1)
    parser.add_argument("--cost-models", nargs="+", choices=sorted(COST_MODELS), default=["sd15"])
    parser.add_argument("--cost-particles", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--cost-guidance", type=float, default=0.0,
                        help="--cost: also time guided proposals (TAESD checks, this guidance) against plain")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="--cost: where ComfyUI runs (auto: the GPU when there is one)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                        help="--cost: the UNet's dtype (auto: fp16 on a GPU, fp32 on the CPU)")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child, args.size, args.steps)
        return
    if args.cost:
        cost_table(args)
        return
    if not args.memory_only:
        speed_table(args)
    if args.memory or args.memory_only:
        memory_table(args)


if __name__ == "__main__":
    main()
