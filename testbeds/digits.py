"""A learned test bed: a small diffusion model and a learned reward, trained on CPU on scikit-learn's digits.

    python -m testbeds.digits [--retrain] [--picture docs/img/digits_plain.png]

Why: the Gaussian-mixture beds have exact denoisers and rewards that see the answer early. Real image
rewards do not: on a blurry early x0-prediction, a classifier's score says little about the finished image.
This bed has that property for real, from learned parts only:

* data: the 1 797 8×8 digit images that ship inside scikit-learn (no download), scaled to [-1, 1];
* model: an MLP denoiser with EDM preconditioning (Karras et al. 2022), x_σ = x0 + σ·ε, sampled with
  fk_core's Euler-ancestral step rule;
* reward: log p(digit = ``target`` | x0) from an MLP classifier trained on the clean images;
* attribute (for hit rates): the classifier's top class is ``target``.

Training takes well under two minutes on one CPU core; the weights are cached (``FK_TESTBED_CACHE`` or
``~/.cache/fk-steering/testbeds``) and every later load takes milliseconds. Training is seeded and
single-threaded, so the cached weights are the same on every machine with the same torch.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from fk_core.steppers import euler_ancestral

from .cache import cache_dir, cached_state
from .toy import karras_sigmas

VERSION = 2  # bump when the architecture or the training changes: the cache key
SIDE = 8
DIM = SIDE * SIDE
STEPS = 30
SIGMA_MIN, SIGMA_MAX = 0.01, 10.0
DEFAULT_TARGET = 3


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits  # a test/bench dependency only (requirements-dev.txt)

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 8.0 - 1.0  # pixel values 0..16 → [-1, 1]
    return x, torch.tensor(data.target, dtype=torch.long)


class DigitDenoiser(torch.nn.Module):
    """D(x, σ) = c_skip·x + c_out·F(c_in·x, log σ): the EDM preconditioning keeps F's input and target at unit
    scale for every σ, which is what lets a small MLP learn all noise levels at once."""

    def __init__(self, sigma_data: float, width: int = 256, frequencies: int = 16):
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(50.0), frequencies)))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(DIM + 2 * frequencies, width), torch.nn.SiLU(),
            torch.nn.Linear(width, width), torch.nn.SiLU(),
            torch.nn.Linear(width, width), torch.nn.SiLU(),
            torch.nn.Linear(width, DIM))

    def raw(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.reshape(-1, 1).to(x.dtype).expand(x.shape[0], 1)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1.0 / (sigma**2 + sd2).sqrt()
        angle = 0.25 * sigma.log() * self.freqs[None]
        features = torch.cat([c_in * x, angle.sin(), angle.cos()], dim=1)
        return c_skip * x + c_out * self.net(features)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0-prediction for a batch [N, 64] (any float dtype) at a scalar or per-sample σ."""
        dtype = x.dtype
        return self.raw(x.float(), torch.as_tensor(sigma, dtype=torch.float32)).to(dtype)


class DigitClassifier(torch.nn.Module):
    def __init__(self, width: int = 128):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(DIM, width), torch.nn.SiLU(), torch.nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


def _train_denoiser(x: torch.Tensor, iterations: int, generator: torch.Generator) -> DigitDenoiser:
    model = DigitDenoiser(sigma_data=float(x.std()))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    for _ in range(iterations):
        batch = x[torch.randint(0, x.shape[0], (256,), generator=generator)]
        # EDM's log-normal noise levels, widened to cover the sampler's σ range (0.01 … 10)
        sigma = torch.exp(-0.8 + 1.6 * torch.randn(batch.shape[0], 1, generator=generator))
        noisy = batch + sigma * torch.randn(batch.shape, generator=generator)
        sd2 = model.sigma_data**2
        weight = (sigma**2 + sd2) / (sigma * model.sigma_data) ** 2
        loss = (weight * (model.raw(noisy, sigma) - batch) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


def _train_classifier(x: torch.Tensor, y: torch.Tensor, iterations: int,
                      generator: torch.Generator) -> DigitClassifier:
    model = DigitClassifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(iterations):
        idx = torch.randint(0, x.shape[0], (256,), generator=generator)
        # a little pixel noise so finished samples (never quite clean) are read as digits; early, blurry
        # x0-predictions stay out of its training distribution, as they are for real image rewards
        batch = x[idx] + 0.1 * torch.randn(len(idx), DIM, generator=generator)
        loss = torch.nn.functional.cross_entropy(model(batch), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def train(denoiser_iterations: int = 5000, classifier_iterations: int = 1500) -> dict:
    """Train both models from seed 0 (single-threaded, deterministic) and return their state."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # layer initialisation draws from torch's global generator: seed it, in a fork that leaves the
        # caller's random state untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return _train(denoiser_iterations, classifier_iterations)
    finally:
        torch.set_num_threads(threads)


def _train(denoiser_iterations: int, classifier_iterations: int) -> dict:
    x, y = _digits()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=g)
    held_out, train_idx = perm[:300], perm[300:]
    classifier = _train_classifier(x[train_idx], y[train_idx], classifier_iterations, g)
    with torch.no_grad():
        accuracy = float((classifier(x[held_out]).argmax(1) == y[held_out]).float().mean())
    denoiser = _train_denoiser(x, denoiser_iterations, g)
    return {"version": VERSION, "denoiser": denoiser.state_dict(), "sigma_data": denoiser.sigma_data,
            "classifier": classifier.state_dict(), "held_out_accuracy": accuracy}


class TargetDigit:
    """The reward and attribute of a digits bed, from its ``classifier`` (logits over 10 digits) and ``target``."""

    classifier: torch.nn.Module
    target: int

    @torch.no_grad()
    def reward(self, x0: torch.Tensor) -> torch.Tensor:
        """log p(digit = target | x0), one per row of x0 [N, 64]; ≤ 0, higher is better."""
        return torch.log_softmax(self.classifier(x0), dim=1)[:, self.target].double()

    @torch.no_grad()
    def has_attribute(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x).argmax(1) == self.target


@dataclass
class DigitsBed(TargetDigit):
    denoiser: DigitDenoiser
    classifier: DigitClassifier
    target: int
    held_out_accuracy: float
    training_seconds: Optional[float] = None

    @staticmethod
    def images(x: torch.Tensor) -> torch.Tensor:
        """[N, 8, 8, 1] in [0, 1] (ComfyUI's IMAGE layout, one channel)."""
        return ((x.float().reshape(-1, SIDE, SIDE, 1) + 1.0) / 2.0).clamp(0, 1)


_LOADED: dict = {}


def load(target: int = DEFAULT_TARGET, retrain: bool = False) -> DigitsBed:
    """The bed, trained on first use and cached on disk (and in memory for the rest of the process)."""
    if not 0 <= target <= 9:
        raise ValueError(f"target must be a digit 0–9, got {target}")
    if retrain or "state" not in _LOADED:
        _LOADED["state"], _LOADED["from_cache"] = cached_state(f"digits-v{VERSION}.pt", train, retrain)
    state = _LOADED["state"]
    denoiser = DigitDenoiser(state["sigma_data"])
    denoiser.load_state_dict(state["denoiser"])
    classifier = DigitClassifier()
    classifier.load_state_dict(state["classifier"])
    return DigitsBed(denoiser.eval(), classifier.eval(), target, float(state["held_out_accuracy"]),
                     state.get("training_seconds"))


def sigmas(steps: int = STEPS) -> torch.Tensor:
    return karras_sigmas(steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, dtype=torch.float32)


def plain_samples(bed: DigitsBed, n: int, seed: int, steps: int = STEPS) -> torch.Tensor:
    """n independent samples of the model (no steering), Euler-ancestral, seeded."""
    s = sigmas(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g) * s[0]
    return euler_ancestral(1.0, g)(lambda x, sig: bed.denoiser(x, sig), x, s)


def reward_correlations(bed: DigitsBed, n: int = 1000, seed: int = 0,
                        steps: int = STEPS) -> list[tuple[int, float, float]]:
    """(step k, σ_k, correlation over n plain runs between the reward of the x0-prediction at step k and the
    reward of the finished sample). How much an early check can know."""
    s = sigmas(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g) * s[0]
    segment = euler_ancestral(1.0, g)
    early = []
    for k in range(1, steps):
        x = segment(lambda x, sig: bed.denoiser(x, sig), x, s[k - 1:k + 1])
        early.append(bed.reward(bed.denoiser(x, s[k])))
    x = segment(lambda x, sig: bed.denoiser(x, sig), x, s[steps - 1:steps + 1])
    final = bed.reward(x)
    out = []
    for k, r in enumerate(early, start=1):
        stacked = torch.stack([r, final])
        out.append((k, float(s[k]), float(torch.corrcoef(stacked)[0, 1])))
    return out


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean L2 distance over all pairs of rows: the diversity of a set of samples."""
    n = x.shape[0]
    if n < 2:
        return 0.0
    d = torch.cdist(x.double(), x.double())
    return float(d.sum() / (n * (n - 1)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train (or load) the digits test bed and describe it.")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--target", type=int, default=DEFAULT_TARGET)
    parser.add_argument("--picture", default=None, help="write a grid of 64 plain samples here (PNG)")
    parser.add_argument("--compare", default=None,
                        help="write PREFIX_best_of_8.png and PREFIX_fk.png: the final particles of 6 seeds, one row "
                             "each, best-of-8 (λ = 0) and FK with the default settings")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bed = load(args.target, retrain=args.retrain)
    trained = "loaded from the cache" if _LOADED.get("from_cache") else f"trained in {bed.training_seconds:.0f} s"
    print(f"digits bed ({trained}, {cache_dir()}): classifier held-out accuracy {bed.held_out_accuracy:.1%}")
    samples = plain_samples(bed, 2000, seed=0)
    rate = float(bed.has_attribute(samples).float().mean())
    print(f"plain samples read as a {args.target}: {rate:.1%}; mean reward {float(bed.reward(samples).mean()):.3f}")
    print("| step k | sigma | corr(reward of x0-prediction at k, final reward) |")
    print("|---|---|---|")
    for k, sigma, corr in reward_correlations(bed):
        if k in (1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29):
            print(f"| {k} | {sigma:.3g} | {corr:.2f} |")
    if args.picture:
        write_grid(samples[:64], args.picture)
        print(f"wrote {args.picture}")
    if args.compare:
        from fk_core import FKConfig, steer

        for name, config in (("best_of_8", FKConfig(lmbda=0.0, lambda_mode="fixed")), ("fk", FKConfig())):
            rows = []
            for seed in range(6):
                g = torch.Generator().manual_seed(seed)
                noise = torch.randn(8, DIM, generator=g)
                rows.append(steer(bed.denoiser, sigmas(), noise, bed.reward, config, generator=g).samples)
            write_grid(torch.cat(rows), f"{args.compare}_{name}.png", columns=8)
            print(f"wrote {args.compare}_{name}.png")


def write_grid(x: torch.Tensor, path: str, columns: int = 16, scale: int = 6, pad: int = 2) -> None:
    """A plain grid of samples (white digits on black, as in the data), enlarged ``scale`` times."""
    from PIL import Image

    images = DigitsBed.images(x)[..., 0].repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    rows = math.ceil(images.shape[0] / columns)
    cell = SIDE * scale + pad
    grid = torch.full((pad + rows * cell, pad + columns * cell), 0.35)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[pad + r * cell: pad + r * cell + SIDE * scale, pad + c * cell: pad + c * cell + SIDE * scale] = image
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().byte().numpy()).save(path)


if __name__ == "__main__":
    main()
