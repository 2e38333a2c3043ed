"""Which sampler FK runs between potential steps, decided by what the sampler does, not by a list.

FK needs a stochastic sampler: copies made by resampling would stay identical forever with a deterministic one,
so FK would only pick among fewer distinct images. Whether a sampler is stochastic is measured
(:func:`draws_noise`): its own function runs three steps on a stand-in model (x0 = x/2, no network) with two noise
seeds; if the results differ, it draws noise. That covers every sampler a host offers, including ones newer hosts
or other node packs add. A deterministic sampler runs as its stochastic sibling (the table below, an override;
else a stochastic ``<name>_sde`` / ``<name>_ancestral`` when the host has one); without a sibling it is refused
with a message saying what to pick (:func:`choose_stochastic`).

Sampler functions have k-diffusion's signature as ComfyUI calls them: ``f(model, x, sigmas, extra_args=…,
callback=…, disable=…)``, the model a KSamplerX0Inpaint-like callable (what :class:`ProbeModel` stands in for).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Collection, Optional

import torch

from .errors import FKError
from .messages import message, options_text

SUGGESTED = "euler_ancestral, dpmpp_2m_sde, dpmpp_sde or er_sde"

# Deterministic samplers and the stochastic sibling FK uses instead (an override of the generic rule).
STOCHASTIC_SIBLING = {
    "euler": "euler_ancestral",
    "euler_cfg_pp": "euler_ancestral_cfg_pp",
    "ddim": "euler_ancestral",
    "heun": "dpmpp_2s_ancestral",
    "heunpp2": "dpmpp_2s_ancestral",
    "dpm_2": "dpm_2_ancestral",
    "lms": "euler_ancestral",
    "dpm_fast": "euler_ancestral",
    "dpm_adaptive": "euler_ancestral",
    "dpmpp_2m": "dpmpp_2m_sde",
    "dpmpp_2m_cfg_pp": "dpmpp_2m_sde",
    "ipndm": "euler_ancestral",
    "ipndm_v": "euler_ancestral",
    "deis": "euler_ancestral",
    "res_multistep": "res_multistep_ancestral",
    "res_multistep_cfg_pp": "res_multistep_ancestral_cfg_pp",
    "gradient_estimation": "euler_ancestral",
    "gradient_estimation_cfg_pp": "euler_ancestral_cfg_pp",
    "uni_pc": "dpmpp_2m_sde",
    "uni_pc_bh2": "dpmpp_2m_sde",
}

# probe(name) -> (stochastic, problem): ``problem`` says why the sampler could not be run (then not stochastic)
Probe = Callable[[str], "tuple[bool, Optional[str]]"]


@dataclass
class SamplerChoice:
    requested: str
    used: str
    note: Optional[str]  # set when the sampler was substituted


def choose_stochastic(name: str, names: Collection[str], probe: Probe, node: str = "FK steering") -> SamplerChoice:
    """The sampler FK runs for the user's choice ``name`` among the host's ``names``; raises FKError with what to
    pick instead."""
    if name not in names:
        raise FKError(message(node, "sampler_name", f"{name!r} is not a sampler of this ComfyUI",
                              f"choose one of {options_text(names)}"))
    stochastic, problem = probe(name)
    if stochastic:
        return SamplerChoice(name, name, None)
    if problem is not None:
        raise FKError(message(node, "sampler_name", f"{name!r} could not be checked for random noise ({problem}); "
                              "FK needs a stochastic sampler", f"Pick one such as {SUGGESTED}"))
    sibling = stochastic_sibling(name, names, probe)
    if sibling is None:
        raise FKError(message(node, "sampler_name", f"{name!r} is deterministic (its result does not depend on the "
                              "noise seed), so copies made by resampling would stay identical, and it has no "
                              "stochastic sibling here", f"Pick a stochastic sampler such as {SUGGESTED}"))
    note = (f"sampler '{name}' is deterministic: resampled copies of a particle would stay identical, so FK "
            f"uses its stochastic sibling '{sibling}' instead (stochastic choices: {SUGGESTED}, …)")
    return SamplerChoice(name, sibling, note)


def stochastic_sibling(name: str, names: Collection[str], probe: Probe) -> Optional[str]:
    """The table's sibling, else ``<name>_sde`` or ``<name>_ancestral`` if the host has it and it is stochastic."""
    candidates = [STOCHASTIC_SIBLING[name]] if name in STOCHASTIC_SIBLING else []
    candidates += [f"{name}_sde", f"{name}_ancestral"]
    for candidate in candidates:
        if candidate in names and probe(candidate)[0]:
            return candidate
    return None


def draws_noise(sampler_function: Callable, model_sampling, sigmas: torch.Tensor) -> tuple[bool, Optional[str]]:
    """(stochastic, problem): does ``sampler_function`` give different results for different noise seeds on the
    stand-in model? ``problem`` says why it could not be run there (then ``stochastic`` is False)."""
    x = torch.randn((1, 4, 4, 4), generator=torch.Generator().manual_seed(0)) * sigmas[0]
    results = []
    for seed in (1, 2):
        model = ProbeModel(model_sampling)
        try:
            # the stand-in's tiny schedule trips harmless warnings (torchsde's interval ends, dpm_fast's tensors)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = sampler_function(model, x.clone(), sigmas, extra_args={"seed": seed, "model_options": {}},
                                       callback=None, disable=True)
        except Exception as err:  # a sampler that needs more of the host than the stand-in has: say which
            return False, f"{type(err).__name__}: {err}"
        results.append(out)
    return not torch.equal(results[0], results[1]), None


class ProbeModel:
    """Enough of KSamplerX0Inpaint -> guider -> base model for a sampler function: x0 = x/2, and the post-CFG
    functions (CFG++ samplers record the unconditional prediction there) called as ComfyUI's CFG would."""

    def __init__(self, model_sampling):
        patcher = _ProbePatcher(model_sampling)
        base = _Namespace(model_sampling=model_sampling)
        self.inner_model = _Namespace(inner_model=base, model_patcher=patcher, model_sampling=model_sampling)

    def __call__(self, x, sigma, model_options=None, seed=None, **_unused):
        denoised = x * 0.5
        for function in (model_options or {}).get("sampler_post_cfg_function", []):
            denoised = function({"denoised": denoised, "cond_denoised": denoised, "uncond_denoised": denoised,
                                 "cond": None, "uncond": None, "cond_scale": 1.0, "model": None, "input": x,
                                 "sigma": sigma, "model_options": model_options})
        return denoised


class _ProbePatcher:
    def __init__(self, model_sampling):
        self.model_sampling = model_sampling

    def get_model_object(self, name):
        if name == "model_sampling":
            return self.model_sampling
        raise AttributeError(f"the sampler probe has no model object '{name}'")


class _Namespace:
    def __init__(self, **attributes):
        self.__dict__.update(attributes)
