"""ComfyUI adapters for FK steering (thin: inputs in, fk_core does the maths). Each module exports NODES."""

from .charts import NODES as CHART_NODES
from .live import live_callbacks
from .potential import NODES as POTENTIAL_NODES
from .rewards import NODES as REWARD_NODES
from .sampler import LIVE_HOOKS
from .sampler import NODES as SAMPLER_NODES

LIVE_HOOKS["factory"] = live_callbacks  # the sampler nodes report to the live view (web/fk_live.js)

NODES = [*SAMPLER_NODES, *POTENTIAL_NODES, *REWARD_NODES, *CHART_NODES]

__all__ = ["NODES"]
