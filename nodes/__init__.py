"""ComfyUI adapters for FK steering (thin: inputs in, fk_core does the maths). Each module exports NODES."""

from .charts import NODES as CHART_NODES
from .potential import NODES as POTENTIAL_NODES
from .rewards import NODES as REWARD_NODES
from .sampler import NODES as SAMPLER_NODES

NODES = [*SAMPLER_NODES, *POTENTIAL_NODES, *REWARD_NODES, *CHART_NODES]

__all__ = ["NODES"]
