"""fk_core — Feynman-Kac steering of diffusion samplers, in plain torch (no ComfyUI import).

Library entry points:

* :func:`steer` — FK steering with fk_core's own Euler-ancestral step rule.
* :func:`run_segments` — the same particle loop driven by a host's sampler (how the ComfyUI nodes use it).
* :func:`steer_discrete` — the same for masked (discrete) diffusion over token sequences (:mod:`fk_core.discrete`).
* :class:`FKConfig`, :class:`FKResult`, :class:`Trace`, :class:`PotentialStep`.
"""

from .discrete import steer_discrete
from .engine import FKConfig, FKResult, ReuseFirstCall, run_segments, steer
from .particles import FKError, ParticleFilter
from .trace import PotentialStep, Trace

__all__ = ["FKConfig", "FKError", "FKResult", "ParticleFilter", "PotentialStep", "ReuseFirstCall", "Trace",
           "run_segments", "steer", "steer_discrete"]
