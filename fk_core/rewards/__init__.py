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
from .detector import ObjectCountReward, load_object_detector, parse_objects
from .hpsv3 import HPSv3, load_hpsv3
from .imagereward import ImageRewardScore, load_imagereward
from .pickscore import PickScore, load_pickscore
from .vlm_judge import VQAJudge, load_vqa_judge
from .weights import BadWeightsError, MissingWeightsError, WeightFile, resolve

__all__ = [
    "SPECS", "BadWeightsError", "BoundReward", "BrightnessTarget", "Colorfulness", "ContrastTarget",
    "ImageRewardScore", "JpegCompressibility", "LaionAesthetic", "MissingWeightsError", "OpenClipScore",
    "PickScore", "Reward", "RewardInputError", "RewardSpec", "Saturation", "Sharpness", "TargetColor",
    "WeightFile", "WeightedSum", "build_reward", "images_to_bchw", "load_clip_score", "load_hpsv2",
    "load_imagereward", "load_laion_aesthetic", "load_pickscore", "parse_color", "resolve", "reward_names",
    "HPSv3", "ObjectCountReward", "VQAJudge", "load_hpsv3", "load_object_detector", "load_vqa_judge", "parse_objects",
]
