"""ComfyUI adapters for FK steering (thin: inputs in, fk_core does the maths). Each module exports NODES."""

from .potential import NODES as POTENTIAL_NODES
from .sampler import NODES as SAMPLER_NODES

NODES = [*SAMPLER_NODES, *POTENTIAL_NODES]

__all__ = ["NODES"]
