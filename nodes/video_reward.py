"""FK Video Reward: how an image reward scores video particles (fk_core.video.FrameReward). Without it a video
run scores 4 frames spread over each clip and takes their mean; this node sets the frame count, the combination
(mean, or min for "every frame must be good") and a weight for frame consistency (prefers clips without flicker).
Put it last, between the reward (Loader or Combine) and the sampler."""

from __future__ import annotations

from comfy_api.latest import io

from ..fk_core import COMBINES, DEFAULT_FRAMES, FKError, FrameReward, message
from .common import CATEGORY, FK_REWARD
from .validation import check_widgets, require_widgets

VIDEO_REWARD = "FK Video Reward"
MAX_FRAMES = 256


class FKVideoReward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FKVideoReward",
            display_name=VIDEO_REWARD,
            category=CATEGORY,
            description=("Scores video particles frame by frame with an image reward: a few frames spread over each "
                         "clip, scored in one batch, combined by mean or min; optionally rewards smooth clips. "
                         "Connect it between the reward and the FK sampler."),
            inputs=[
                FK_REWARD.Input("reward", tooltip="An image reward (FK Reward Loader or FK Reward Combine)."),
                io.Int.Input("frames", default=DEFAULT_FRAMES, min=1, max=MAX_FRAMES,
                             tooltip=("How many frames of each clip the reward scores, spread from the first to the "
                                      "last (more = slower checks). All frames when the clip has fewer.")),
                io.Combo.Input("combine", options=list(COMBINES), default="mean",
                               tooltip="'mean': the average frame; 'min': the worst frame (every frame must be good)."),
                io.Float.Input("smoothness", default=0.0, min=0.0, max=100.0, step=0.05,
                               tooltip=("Weight of frame consistency (minus the mean change between consecutive "
                                        "scored frames, in [-1, 0]; no model): above 0 prefers clips without "
                                        "flicker. Video latents only.")),
            ],
            outputs=[FK_REWARD.Output(display_name="reward")],
        )

    @classmethod
    def validate_inputs(cls, **values):
        return check_widgets(cls, VIDEO_REWARD, values) or True

    @classmethod
    def execute(cls, reward, frames: int = DEFAULT_FRAMES, combine: str = "mean",
                smoothness: float = 0.0) -> io.NodeOutput:
        require_widgets(cls, VIDEO_REWARD, {"frames": frames, "combine": combine, "smoothness": smoothness})
        if reward is None or not callable(reward):
            raise FKError(message(VIDEO_REWARD, "reward", f"is {type(reward).__name__}, not an FK_REWARD",
                                  "connect FK Reward Loader or FK Reward Combine"))
        if isinstance(reward, FrameReward):
            raise FKError(message(VIDEO_REWARD, "reward", "is already an FK Video Reward",
                                  "connect the image reward directly (one FK Video Reward per chain)"))
        return io.NodeOutput(FrameReward(reward, frames=frames, combine=combine, smoothness=smoothness))


NODES = [FKVideoReward]
