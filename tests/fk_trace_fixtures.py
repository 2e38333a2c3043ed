"""Real traces for the chart and live-view tests: fk_core's own sampler on the closed-form toy model."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch

from fk_core import FKConfig, FKResult, steer
from testbeds.toy import karras_sigmas, two_modes


def toy_run(particles: int = 8, steps: int = 12, every: int = 2, seed: int = 0, lmbda: float = 8.0,
            on_potential_step=None, nan_particle_at_step: int | None = None) -> FKResult:
    """FK on two 2-D modes with reward = first coordinate: resampling happens, lineages merge.

    ``nan_particle_at_step``: particle 0's reward is NaN at that potential step (the failed-reward path)."""
    model = two_modes(2, dtype=torch.float32)
    sigmas = karras_sigmas(steps).float()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(particles, 2, generator=gen)
    calls = {"n": 0}
    step_hook = None if on_potential_step is None else (lambda event, _x0: on_potential_step(event))

    def reward(x0: torch.Tensor) -> torch.Tensor:
        r = x0[:, 0].double().clone()
        calls["n"] += 1
        if nan_particle_at_step is not None and calls["n"] == nan_particle_at_step:
            r[0] = float("nan")
        return r

    config = FKConfig(potential="diff", lmbda=lmbda, lambda_mode="fixed", every=every)
    return steer(model.denoise, sigmas, noise, reward, config, generator=gen,
                 on_potential_step=step_hook)


PACK_DIR = Path(__file__).resolve().parents[1]


def load_pack_file(relative: str):
    """Import one pack module by path, e.g. ``nodes/live.py``, with its relative imports of ``fk_core`` working:
    the pack is mounted as the package ``fk_test_pack`` (the name ``nodes`` would clash with ComfyUI's own) and
    its ``nodes`` package is entered without running ``nodes/__init__.py`` (which needs ComfyUI)."""
    package = "fk_test_pack"
    if package not in sys.modules:
        for name, folder in ((package, PACK_DIR), (f"{package}.nodes", PACK_DIR / "nodes")):
            module = types.ModuleType(name)
            module.__path__ = [str(folder)]
            sys.modules[name] = module
    return importlib.import_module(f"{package}.{relative.removesuffix('.py').replace('/', '.')}")
