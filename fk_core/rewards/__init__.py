"""Rewards for FK steering: one interface (``Reward.score(images BHWC [0,1], prompt) -> [B]``), learned
preference models loaded from their published checkpoints, and pixel statistics.

Nothing here imports ComfyUI; the node layer (nodes/rewards.py) adds folder lookup and memory management.
"""

from .base import BoundReward, Reward, RewardInputError, images_to_bchw
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
from .imagereward import ImageRewardScore, load_imagereward
from .weights import BadWeightsError, MissingWeightsError, WeightFile, resolve

__all__ = [
    "BadWeightsError", "BoundReward", "BrightnessTarget", "Colorfulness", "ContrastTarget", "ImageRewardScore",
    "JpegCompressibility", "MissingWeightsError", "Reward", "RewardInputError", "Saturation", "Sharpness",
    "TargetColor", "WeightFile", "WeightedSum", "images_to_bchw", "load_imagereward", "parse_color", "resolve",
]
