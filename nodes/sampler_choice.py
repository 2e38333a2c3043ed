"""Which ComfyUI sampler FK runs between potential steps.

FK needs a stochastic sampler: copies made by resampling would stay identical forever with a deterministic one,
so FK would only pick among fewer distinct images. Deterministic samplers map to a stochastic sibling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import comfy.samplers

from ..fk_core import FKError

# Samplers that add fresh noise every step: resampled copies of a particle diverge again at once.
STOCHASTIC_SAMPLERS = (
    "euler_ancestral", "euler_ancestral_cfg_pp", "dpm_2_ancestral", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
)

# Deterministic samplers and the stochastic sibling FK uses instead (copies made by resampling would stay
# identical forever with a deterministic sampler, so FK would only pick among fewer distinct images).
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


@dataclass
class SamplerChoice:
    requested: str
    used: str
    note: Optional[str]  # set when the sampler was substituted


def choose_inner_sampler(name: str) -> SamplerChoice:
    """The ComfyUI sampler FK runs between potential steps; deterministic ones map to a stochastic sibling."""
    if name in STOCHASTIC_SAMPLERS:
        return SamplerChoice(name, name, None)
    if name in STOCHASTIC_SIBLING:
        used = STOCHASTIC_SIBLING[name]
        note = (f"sampler '{name}' is deterministic: resampled copies of a particle would stay identical, so FK "
                f"uses its stochastic sibling '{used}' instead (stochastic choices: "
                f"euler_ancestral, dpmpp_2m_sde, dpmpp_sde, er_sde, …)")
        return SamplerChoice(name, used, note)
    if name not in comfy.samplers.SAMPLER_NAMES:
        raise FKError(f"unknown sampler '{name}'; choose one of {comfy.samplers.SAMPLER_NAMES}")
    raise FKError(f"sampler '{name}' is not supported by FK steering; use a stochastic sampler such as "
                  f"euler_ancestral, dpmpp_2m_sde or dpmpp_sde")

