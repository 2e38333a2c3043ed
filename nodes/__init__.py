"""ComfyUI adapters for FK steering (thin: inputs in, fk_core does the maths). Each module exports NODES."""

from .charts import NODES as CHART_NODES
from .potential import NODES as POTENTIAL_NODES
from .rewards import NODES as REWARD_NODES
from .sampler import NODES as SAMPLER_NODES
from .score import NODES as SCORE_NODES
from .video_reward import NODES as VIDEO_REWARD_NODES

NODES = [*SAMPLER_NODES, *POTENTIAL_NODES, *REWARD_NODES, *SCORE_NODES, *CHART_NODES, *VIDEO_REWARD_NODES]

__all__ = ["NODES"]
