"""What every FK node shares."""

from comfy_api.latest import io

# Where the nodes appear in ComfyUI's node menu: next to KSampler, which is under model/sampling since ComfyUI 0.4
# (0.33 and the newest 0.47 keep it there; 0.3.64 still says "sampling").
CATEGORY = "model/sampling/FK steering"

# The socket type of a reward (fk_core BoundReward: images [B,H,W,C] in [0,1] -> [B]); declared once so every node
# that makes or takes a reward agrees on it.
FK_REWARD = io.Custom("FK_REWARD")
