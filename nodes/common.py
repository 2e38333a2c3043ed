"""What every FK node shares."""

from comfy_api.latest import io

CATEGORY = "sampling/FK steering"  # where the nodes appear in ComfyUI's node menu

# The socket type of a reward (fk_core BoundReward: images [B,H,W,C] in [0,1] -> [B]); declared once so every node
# that makes or takes a reward agrees on it.
FK_REWARD = io.Custom("FK_REWARD")
