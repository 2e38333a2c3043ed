"""Which ComfyUI sampler FK runs between potential steps: fk_core.sampler_choice's rule over this host's
``comfy.samplers.SAMPLER_NAMES``, each sampler probed once with its own ``sampler_function``."""

from __future__ import annotations

import functools
from typing import Optional

import comfy.model_sampling
import comfy.samplers

from ..fk_core import SamplerChoice, choose_stochastic, draws_noise


def choose_inner_sampler(name: str, node: str = "FK steering") -> SamplerChoice:
    """The ComfyUI sampler FK runs for the user's choice ``name``; raises FKError with what to pick instead."""
    return choose_stochastic(name, comfy.samplers.SAMPLER_NAMES, probe_sampler, node)


@functools.lru_cache(maxsize=None)
def probe_sampler(name: str) -> tuple[bool, Optional[str]]:
    """(stochastic, problem): does sampler ``name`` give different results for different noise seeds?
    ``problem`` says why it could not be run on the stand-in model (then ``stochastic`` is False)."""
    sampler = comfy.samplers.sampler_object(name)
    model_sampling = _probe_model_sampling()
    sigmas = comfy.samplers.calculate_sigmas(model_sampling, "normal", 3)
    return draws_noise(functools.partial(sampler.sampler_function, **sampler.extra_options), model_sampling, sigmas)


def _probe_model_sampling():
    """An SD1.5-style (eps, discrete) model_sampling: the stochastic/deterministic property does not depend on it."""

    class ProbeSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
        pass

    return ProbeSampling()
