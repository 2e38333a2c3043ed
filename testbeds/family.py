"""A family of learned beds: independently trained denoisers, in both parametrisations a ComfyUI user meets.

    python -m testbeds.family [--retrain]      # train (or load) every member and describe each bed

Why: defaults chosen on one learned model (testbeds.digits) need not hold on the next. This family varies what
a new model varies — training seed, width, the noise levels training weighted most — and the parametrisation:

* ``eps``: k-diffusion's x = x0 + σ·ε with EDM preconditioning (as SD1.5/SDXL look to a k-diffusion sampler);
* ``flow``: rectified flow, x_t = (1 − t)·x0 + t·ε with a velocity-predicting network, x0 = x_t − t·v (ComfyUI's
  CONST model sampling: Flux, SD3, Qwen-Image, Wan), sampled with ComfyUI's flow ancestral step and a
  DPM++-2M-SDE step in the flow's log-SNR (fk_core.steppers mirrors both).

Data: scikit-learn's 8×8 digits in [-1, 1] (as testbeds.digits). Reward: log p(digit = target | x0) from a
multinomial logistic regression trained here on noisy clean digits (not digits.py's MLP classifier, so the
family does not share its reward with the bed the defaults were first chosen on). Attribute: the regression's
top class is the target. Each bed is (member, parametrisation, stochastic sampler, target digit, steps); the
last member is kept aside (``HELD_OUT``): it was not looked at while choosing the defaults.

All members train in about two minutes of one CPU core together (seeded, one thread, deterministic), cached
next to digits.py's weights (``FK_TESTBED_CACHE`` or ``~/.cache/fk-steering/testbeds``).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch

from fk_core.steppers import dpmpp_2m_sde, euler_ancestral, euler_ancestral_rf, flow_noise_ratio

from . import digits
from .samplers import deterministic_samplers

VERSION = 1  # the cache key: bump when a member, the regression or the training changes
DIM = digits.DIM


@dataclass(frozen=True)
class Member:
    """One independently trained denoiser: its seed, width, and the log-normal (eps) / logit-normal (flow)
    distribution of the noise levels it trained on."""

    name: str
    seed: int
    width: int
    blocks: int
    noise_mean: float  # eps: mean of log σ; flow: mean of logit t
    noise_std: float
    iterations: int = 2000


MEMBERS = (
    Member("a", seed=11, width=192, blocks=2, noise_mean=-0.8, noise_std=1.6),  # EDM-like spread
    Member("b", seed=22, width=256, blocks=2, noise_mean=-1.8, noise_std=1.2),  # weighted to low σ
    Member("c", seed=33, width=128, blocks=3, noise_mean=0.6, noise_std=1.2),  # weighted to high σ
    Member("d", seed=44, width=224, blocks=2, noise_mean=-0.4, noise_std=1.4),  # kept aside (HELD_OUT)
)
FLOW_NOISE = {"a": (0.0, 1.0), "b": (-1.2, 1.0), "c": (1.2, 1.0), "d": (0.3, 1.2)}  # logit-normal t (SD3 style)
SIGMA_MIN, SIGMA_MAX = 0.01, 10.0  # eps beds' Karras schedule
FLOW_SHIFT = 3.0  # flow beds' schedule: ComfyUI's time shift (SD3's default), t ← s·t / (1 + (s − 1)·t)


class ResidualMLP(torch.nn.Module):
    """Residual MLP on [pixels, Fourier features of the noise level]; ``kind`` picks the parametrisation."""

    def __init__(self, kind: str, width: int, blocks: int, sigma_data: float, frequencies: int = 16):
        super().__init__()
        self.kind = kind
        self.sigma_data = float(sigma_data)
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(50.0), frequencies)))
        self.inp = torch.nn.Linear(DIM + 2 * frequencies, width)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, width), torch.nn.SiLU(),
                                torch.nn.Linear(width, width)) for _ in range(blocks))
        self.out = torch.nn.Linear(width, DIM)

    def _net(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        angle = level * self.freqs[None]
        h = self.inp(torch.cat([x, angle.sin(), angle.cos()], dim=1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(torch.nn.functional.silu(h))

    def raw(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0-prediction (eps: EDM-preconditioned) or velocity ε − x0 (flow: σ is t)."""
        sigma = sigma.reshape(-1, 1).to(x.dtype).expand(x.shape[0], 1)
        if self.kind == "flow":
            return self._net(x, 4.0 * (sigma - 0.5))
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1.0 / (sigma**2 + sd2).sqrt()
        return c_skip * x + c_out * self._net(c_in * x, 0.25 * sigma.log())

    @torch.no_grad()
    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The x0-prediction, as a k-diffusion/ComfyUI sampler's model returns it (flow: x − t·v, CONST)."""
        dtype = x.dtype
        xf, s = x.float(), torch.as_tensor(sigma, dtype=torch.float32)
        out = self.raw(xf, s)
        if self.kind == "flow":
            out = xf - s.reshape(-1, 1) * out
        return out.to(dtype)


def _train_member(member: Member, kind: str, x: torch.Tensor) -> ResidualMLP:
    g = torch.Generator().manual_seed(member.seed + (1000 if kind == "flow" else 0))
    torch.manual_seed(member.seed + (1000 if kind == "flow" else 0))  # layer initialisation
    model = ResidualMLP(kind, member.width, member.blocks, float(x.std()))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, member.iterations)
    mean, std = (member.noise_mean, member.noise_std) if kind == "eps" else FLOW_NOISE[member.name]
    for _ in range(member.iterations):
        batch = x[torch.randint(0, x.shape[0], (256,), generator=g)]
        z = mean + std * torch.randn(batch.shape[0], 1, generator=g)
        noise = torch.randn(batch.shape, generator=g)
        if kind == "eps":
            sigma = torch.exp(z)
            sd2 = model.sigma_data**2
            weight = (sigma**2 + sd2) / (sigma * model.sigma_data) ** 2
            loss = (weight * (model.raw(batch + sigma * noise, sigma) - batch) ** 2).mean()
        else:
            t = torch.sigmoid(z)
            loss = ((model.raw((1 - t) * batch + t * noise, t) - (noise - batch)) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


class LogisticReward(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(DIM, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.float())


def _train_regression(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[LogisticReward, float]:
    perm = torch.randperm(x.shape[0], generator=g)
    held_out, train_idx = perm[:300], perm[300:]
    model = LogisticReward()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(1500):
        idx = train_idx[torch.randint(0, len(train_idx), (256,), generator=g)]
        batch = x[idx] + 0.1 * torch.randn(len(idx), DIM, generator=g)
        loss = torch.nn.functional.cross_entropy(model(batch), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        accuracy = float((model(x[held_out]).argmax(1) == y[held_out]).float().mean())
    return model.eval(), accuracy


def train() -> dict:
    """Every member in both parametrisations and the reward regression (seeded, one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            x, y = digits._digits()
            torch.manual_seed(0)
            regression, accuracy = _train_regression(x, y, torch.Generator().manual_seed(0))
            state = {"version": VERSION, "sigma_data": float(x.std()), "regression": regression.state_dict(),
                     "held_out_accuracy": accuracy}
            for member in MEMBERS:
                for kind in ("eps", "flow"):
                    state[f"{member.name}-{kind}"] = _train_member(member, kind, x).state_dict()
            return state
    finally:
        torch.set_num_threads(threads)


_STATE: dict = {}


def load_state(retrain: bool = False) -> dict:
    if "state" in _STATE and not retrain:
        return _STATE["state"]
    path = digits.cache_dir() / f"family-v{VERSION}.pt"
    if path.is_file() and not retrain:
        state = torch.load(path, weights_only=True)
    else:
        started = time.perf_counter()
        state = train()
        state["training_seconds"] = time.perf_counter() - started
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(state, partial)
        os.replace(partial, path)
    _STATE["state"] = state
    return state


def member(name: str, kind: str, state: dict | None = None) -> ResidualMLP:
    state = state or load_state()
    spec = next(m for m in MEMBERS if m.name == name)
    model = ResidualMLP(kind, spec.width, spec.blocks, state["sigma_data"])
    model.load_state_dict(state[f"{name}-{kind}"])
    return model.eval()


def regression(state: dict | None = None) -> LogisticReward:
    state = state or load_state()
    model = LogisticReward()
    model.load_state_dict(state["regression"])
    return model.eval()


def eps_sigmas(steps: int) -> torch.Tensor:
    from .toy import karras_sigmas

    return karras_sigmas(steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, dtype=torch.float32)


def flow_sigmas(steps: int, shift: float = FLOW_SHIFT) -> torch.Tensor:
    """ComfyUI's 'simple' schedule for a shifted flow model: t from 1 to 0 in equal steps of the unshifted time."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)
    return shift * t / (1 + (shift - 1) * t)


@dataclass
class Bed(digits.TargetDigit):
    """One learned bed: a member in one parametrisation, a stochastic sampler, a target digit, a step count."""

    name: str
    kind: str  # "eps" or "flow"
    sampler_name: str
    target: int
    steps: int
    denoiser: ResidualMLP
    classifier: LogisticReward
    held_out: bool = False

    @property
    def sigmas(self) -> torch.Tensor:
        return eps_sigmas(self.steps) if self.kind == "eps" else flow_sigmas(self.steps)

    def initial(self, noise: torch.Tensor) -> torch.Tensor:
        """The sampler's starting point for unit noise: σ_max·noise (eps) or the noise itself (flow, t = 1)."""
        return noise * self.sigmas[0] if self.kind == "eps" else noise

    def model(self, x: torch.Tensor, sigma_batch: torch.Tensor, **_) -> torch.Tensor:
        return self.denoiser(x, sigma_batch.reshape(-1)[0])

    def sampler(self, generator: torch.Generator):
        """The bed's stochastic segment sampler (fk_core.steppers), its noise from ``generator``."""
        if self.sampler_name == "euler_ancestral":
            return euler_ancestral(1.0, generator)
        if self.sampler_name == "euler_ancestral_rf":
            return euler_ancestral_rf(1.0, generator)
        if self.sampler_name == "dpmpp_2m_sde":
            return dpmpp_2m_sde(1.0, generator, flow=self.kind == "flow")
        raise ValueError(f"unknown sampler {self.sampler_name!r}")

    def deterministic(self) -> dict[str, tuple[Callable, torch.Tensor]]:
        """The deterministic samplers a user would run for best-of-N, each with its schedule at equal model calls."""
        return deterministic_samplers(self.kind, self.steps, eps_sigmas if self.kind == "eps" else flow_sigmas)

    @property
    def noise_ratio(self):
        """σ → noise-to-signal ratio of x (eps: σ itself; flow: t / (1 − t)), for fk_core.window."""
        return None if self.kind == "eps" else flow_noise_ratio

    def plain(self, n: int, seed: int) -> torch.Tensor:
        """n independent plain samples with the bed's own stochastic sampler."""
        g = torch.Generator().manual_seed(seed)
        x = self.initial(torch.randn(n, DIM, generator=g))
        return self.sampler(g)(self.model, x, self.sigmas)


# (member, parametrisation, stochastic sampler, target digit, steps): every member in both parametrisations,
# eight targets, steps 20/30/50, both flow samplers ComfyUI has for a CONST model.
BEDS = (
    ("a", "eps", "euler_ancestral", 3, 30),
    ("b", "eps", "euler_ancestral", 5, 50),
    ("c", "eps", "dpmpp_2m_sde", 9, 20),
    ("a", "flow", "euler_ancestral_rf", 8, 30),
    ("b", "flow", "dpmpp_2m_sde", 0, 20),
    ("c", "flow", "euler_ancestral_rf", 4, 50),
    ("d", "eps", "euler_ancestral", 2, 30),
    ("d", "flow", "dpmpp_2m_sde", 7, 30),
)
HELD_OUT = "d"  # the member kept aside: evaluated once the defaults were chosen


def beds(include_held_out: bool = True) -> list[Bed]:
    state = load_state()
    classifier = regression(state)
    out = []
    for name, kind, sampler, target, steps in BEDS:
        if name == HELD_OUT and not include_held_out:
            continue
        out.append(Bed(f"{name}-{kind} {sampler} digit {target} {steps} steps", kind, sampler, target, steps,
                       member(name, kind, state), classifier, held_out=name == HELD_OUT))
    return out


def reward_correlations(bed: Bed, n: int = 500, seed: int = 0) -> list[tuple[int, float, float]]:
    """(step k, σ_k, correlation over n plain runs of the reward of the x0-prediction at k with the final one)."""
    s = bed.sigmas
    g = torch.Generator().manual_seed(seed)
    x = bed.initial(torch.randn(n, DIM, generator=g))
    early = []
    for k in range(1, bed.steps):
        x = bed.sampler(g)(bed.model, x, s[k - 1:k + 1])
        early.append(bed.reward(bed.denoiser(x, s[k])))
    x = bed.sampler(g)(bed.model, x, s[bed.steps - 1:])
    final = bed.reward(x)
    return [(k, float(s[k]), float(torch.corrcoef(torch.stack([r, final]))[0, 1])) for k, r in enumerate(early, 1)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train (or load) the family of learned beds and describe them.")
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    state = load_state(args.retrain)
    seconds = state.get("training_seconds")
    print(f"family v{VERSION}: trained in {seconds:.0f} s" if seconds else f"family v{VERSION}: loaded from cache")
    print(f"reward regression held-out accuracy {state['held_out_accuracy']:.1%}")
    print("| bed | plain hit | plain confident | corr at 20% / 40% / 60% / 80% of the run |")
    print("|---|---|---|---|")
    for bed in beds():
        x = bed.plain(1000, seed=0)
        hit = float(bed.has_attribute(x).float().mean())
        confident = float(torch.softmax(bed.classifier(x), 1).max(1).values.mean())
        corr = {k: c for k, _, c in reward_correlations(bed, n=300)}
        at = [corr[max(1, min(bed.steps - 1, round(f * bed.steps)))] for f in (0.2, 0.4, 0.6, 0.8)]
        print(f"| {bed.name}{' (held out)' if bed.held_out else ''} | {hit:.1%} | {confident:.2f} | "
              + " / ".join(f"{c:.2f}" for c in at) + " |")


if __name__ == "__main__":
    main()
