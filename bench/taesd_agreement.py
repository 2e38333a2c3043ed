"""How closely rewards on TAESD previews agree with rewards on full-VAE previews, step by step (needs real weights).

FK's cheap checks (preview_decoder auto / TAESD) score each particle's x0-prediction decoded by the tiny TAESD
decoder instead of the full VAE. That only helps if the reward ranks the particles nearly the same way on both
pictures. This script measures it on a real checkpoint, a real TAESD file and a real reward:

for each seed, N particles are sampled plainly (ComfyUI's own sampler, no steering); at every step of FK's default
check window the x0-prediction is decoded with the full VAE and with TAESD, and both batches are scored (at the
reward's input size, as FK does). Per step it prints

* pearson / spearman: correlation of the two reward vectors across the N particles, averaged over seeds (FK only
  compares particles of one run with each other, so within-run agreement is what matters);
* same best: share of seeds where both decoders pick the same best particle;
* regret: full-VAE reward lost by keeping TAESD's best instead of the full VAE's, in units of the full-VAE
  rewards' spread across particles at that step (0 = no loss).

Usage (inside or beside a ComfyUI install whose models/ holds the files):
    python bench/taesd_agreement.py --ckpt v1-5-pruned-emaonly-fp16.safetensors --reward ImageReward \\
        --prompt "a photo of an astronaut riding a horse" [--particles 8] [--steps 20] [--seeds 0 1 2 3]
ComfyUI is found like the tests find it (COMFYUI_PATH, the pack's grandparent, ~/comfy/ComfyUI). The TAESD file is
the one ComfyUI's live previews use for the checkpoint's latent format (models/vae_approx/taesd_decoder.pth for
SD1.5, taesdxl_decoder for SDXL, taesd3_decoder for SD3, taef1_decoder for Flux).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import comfy_host  # noqa: E402


def setup(cpu: bool):
    path, reason = comfy_host.locate_comfyui()
    if path is None:
        sys.exit(reason)
    nodes = comfy_host.import_host(path, cpu=cpu)
    pack = comfy_host.load_pack_in_process()
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return nodes, pack


def load_checkpoint(nodes, ckpt: str):
    if Path(ckpt).is_file():
        import comfy.sd
        import folder_paths

        embeddings = folder_paths.get_folder_paths("embeddings")
        return comfy.sd.load_checkpoint_guess_config(ckpt, output_vae=True, output_clip=True,
                                                     embedding_directory=embeddings)[:3]
    return nodes.CheckpointLoaderSimple().load_checkpoint(ckpt)[:3]


def ranks(values: list[float]) -> list[float]:
    """Average ranks (ties share their mean rank), for Spearman's correlation."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2.0
        i = j + 1
    return result


def pearson(a: list[float], b: list[float]) -> float:
    """Pearson correlation; NaN when either side has no spread (a correlation is undefined then)."""
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / (va * vb) ** 0.5 if va > 0 and vb > 0 else float("nan")


def agreement(full: list[float], taesd: list[float]) -> dict:
    best_full = max(range(len(full)), key=full.__getitem__)
    best_taesd = max(range(len(taesd)), key=taesd.__getitem__)
    spread = statistics.pstdev(full)
    return {
        "pearson": pearson(full, taesd),
        "spearman": pearson(ranks(full), ranks(taesd)),
        "same_best": float(best_full == best_taesd),
        "regret": (full[best_full] - full[best_taesd]) / spread if spread > 0 else 0.0,
    }


def sample_x0s(model, positive, negative, n, size, steps, cfg, sampler, scheduler, seed, check_steps):
    """Plain sampling of n particles; the x0-prediction at every check step (model latent space)."""
    import comfy.sample
    import torch

    latent = comfy.sample.fix_empty_latent_channels(model, torch.zeros(n, 4, size // 8, size // 8))
    noise = comfy.sample.prepare_noise(latent, seed)
    wanted, captured = set(check_steps), {}

    def callback(step, x0, x, total_steps):
        if step in wanted:
            captured[step] = x0.detach().clone()

    with torch.inference_mode():
        comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                            callback=callback, disable_pbar=True, seed=seed)
    return captured


def score(decoder, x0, reward, input_size, fit_to_reward) -> list[float]:
    import torch

    with torch.inference_mode():
        images = fit_to_reward(decoder.decode(x0), input_size)
        return [float(v) for v in torch.as_tensor(reward(images)).float().reshape(-1).cpu()]


def measure(nodes, pack, args) -> list[dict]:
    import comfy.model_management as mm

    preview = pack.nodes.preview_decoder
    model, clip, vae = load_checkpoint(nodes, args.ckpt)
    if clip is None or vae is None:
        sys.exit(f"{args.ckpt}: the checkpoint has no text encoder or VAE; this script needs both")
    positive = nodes.CLIPTextEncode().encode(clip, args.prompt)[0]
    negative = nodes.CLIPTextEncode().encode(clip, args.negative)[0]
    reward = pack.nodes.rewards.FKRewardLoader.execute(
        reward=args.reward, weights=pack.nodes.rewards.AUTO_WEIGHTS if args.weights == "auto" else args.weights,
        prompt=args.prompt, device=args.reward_device).result[0]
    base_model = model.model
    device = mm.get_torch_device()
    taesd, _ = preview.choose_preview_decoder("TAESD", vae, base_model, device, "taesd_agreement")
    full = pack.fk_core.FullVAEDecoder(vae, base_model)
    input_size = pack.fk_core.reward_input_size(reward)
    check_steps = pack.fk_core.schedule.potential_steps(args.steps, 1, 0.2, 1.0)
    print(f"checkpoint {args.ckpt}  reward {args.reward}  {taesd.label}  N={args.particles}  steps={args.steps}  "
          f"size={args.size}  cfg={args.cfg}  seeds={args.seeds}  reward input size={input_size}")
    per_step = {k: [] for k in check_steps}
    for seed in args.seeds:
        x0s = sample_x0s(model, positive, negative, args.particles, args.size, args.steps, args.cfg, args.sampler,
                         args.scheduler, seed, check_steps)
        for k in check_steps:
            full_r = score(full, x0s[k], reward, input_size, pack.fk_core.fit_to_reward)
            taesd_r = score(taesd, x0s[k], reward, input_size, pack.fk_core.fit_to_reward)
            per_step[k].append(agreement(full_r, taesd_r))
    rows = []
    for k in check_steps:
        runs = per_step[k]
        row = {"step": k}
        for key in ("pearson", "spearman", "same_best", "regret"):
            values = [r[key] for r in runs if r[key] == r[key]]  # NaN (no spread) left out
            row[key] = statistics.fmean(values) if values else float("nan")
        rows.append(row)
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"{'step':>4} | {'pearson':>7} | {'spearman':>8} | {'same best':>9} | {'regret':>6}")
    print("-" * 47)
    for row in rows:
        print(f"{row['step']:>4} | {row['pearson']:>7.3f} | {row['spearman']:>8.3f} | {row['same_best']:>9.2f} | "
              f"{row['regret']:>6.3f}")
    mean = {key: statistics.fmean(r[key] for r in rows if r[key] == r[key]) for key in ("pearson", "spearman")}
    print(f"agreement: mean pearson={mean['pearson']:.3f} spearman={mean['spearman']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint name in models/checkpoints, or a file path")
    parser.add_argument("--reward", default="ImageReward", help="a reward name of FK Reward Loader")
    parser.add_argument("--weights", default="auto", help="the reward's weights file in models/fk_rewards "
                        "(auto: the default file, downloaded if missing)")
    parser.add_argument("--reward-device", default="auto", choices=["auto", "cpu"])
    parser.add_argument("--prompt", default="a photo of an astronaut riding a horse on the moon")
    parser.add_argument("--negative", default="")
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--sampler", default="euler_ancestral")
    parser.add_argument("--scheduler", default="normal")
    parser.add_argument("--cpu", action="store_true", help="run ComfyUI on the CPU even when a GPU is there")
    args = parser.parse_args(argv)
    nodes, pack = setup(cpu=args.cpu or not _has_gpu())
    rows = measure(nodes, pack, args)
    print_rows(rows)
    return rows


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
