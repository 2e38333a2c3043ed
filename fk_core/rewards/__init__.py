"""Rewards for FK steering: one interface (``Reward.score(images BHWC [0,1], prompt) -> [B]``), learned
preference models loaded from their published checkpoints, and pixel statistics.

Nothing here imports ComfyUI; the node layer (nodes/rewards.py) adds folder lookup and memory management.
"""

from .base import BoundReward, Reward, RewardInputError, images_to_bchw
from .catalog import SPECS, RewardSpec, build_reward, reward_names
from .classic import (
    BrightnessTarget,
    Colorfulness,
    ContrastTarget,
    JpegCompressibility,
    Saturation,
    Sharpness,
    TargetColor,
    WeightedSum,
    parse_color,
)
from .clip_rewards import LaionAesthetic, OpenClipScore, load_clip_score, load_hpsv2, load_laion_aesthetic
from .imagereward import ImageRewardScore, load_imagereward
from .pickscore import PickScore, load_pickscore
from .weights import BadWeightsError, MissingWeightsError, WeightFile, resolve

__all__ = [
    "SPECS", "BadWeightsError", "BoundReward", "BrightnessTarget", "Colorfulness", "ContrastTarget",
    "ImageRewardScore", "JpegCompressibility", "LaionAesthetic", "MissingWeightsError", "OpenClipScore",
    "PickScore", "Reward", "RewardInputError", "RewardSpec", "Saturation", "Sharpness", "TargetColor",
    "WeightFile", "WeightedSum", "build_reward", "images_to_bchw", "load_clip_score", "load_hpsv2",
    "load_imagereward", "load_laion_aesthetic", "load_pickscore", "parse_color", "resolve", "reward_names",
]
