"""What every FK node shares."""

from comfy_api.latest import io

# Where the nodes appear in ComfyUI's node menu: next to KSampler, which is under model/sampling since ComfyUI 0.4
# (0.33 and the newest 0.47 keep it there; 0.3.64 still says "sampling").
CATEGORY = "model/sampling/FK steering"
# The two sampler nodes' display names, as every message about their inputs names them.
PARTICLE_SAMPLER = "FK Particle Sampler"
SAMPLER = "FK Sampler"

# The socket type of a reward (fk_core BoundReward: images [B,H,W,C] in [0,1] -> [B]); declared once so every node
# that makes or takes a reward agrees on it.
FK_REWARD = io.Custom("FK_REWARD")


def resend_ui_from_cache() -> dict:
    """Schema flags that make ComfyUI re-send a node's UI (preview, text) when it serves the node from its cache.

    ComfyUI 0.19+ does so for nodes declaring ``has_intermediate_output`` (a node that is not an output node is
    otherwise not visited on a cache hit, so its preview stays empty); older hosts' schemas lack the flag.
    """
    fields = getattr(io.Schema, "__dataclass_fields__", {})
    return {"has_intermediate_output": True} if "has_intermediate_output" in fields else {}
