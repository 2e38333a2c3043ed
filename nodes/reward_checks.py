"""Input checks of FK Reward Loader and FK Reward Combine (messages in the style of nodes/validation.py).

File names and weight tags are resolved inside ComfyUI's model folders before anything is opened: an
absolute path or a '..' never reaches open_clip or torch.load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import folder_paths
import torch

from ..fk_core import (
    DETECTOR,
    FKError,
    RewardInputError,
    file_name_problem,
    is_tag,
    message,
    model_source_problem,
    parse_objects,
    rewards_reading,
    shown,
)
from .validation import check_widgets

LOADER = "FK Reward Loader"
COMBINE = "FK Reward Combine"
CLIP_REWARDS = rewards_reading("clip_architecture")  # CLIP score, LAION aesthetic
JUDGE_REWARDS = rewards_reading("judge_model")  # the VLM judge and the detector
MODEL_PLACES = "ComfyUI's model folders (models/… or extra_model_paths.yaml)"
CONTRAST_MAX_TARGET = 0.5  # RMS contrast of a 0/1 checkerboard: nothing can be more contrasted


def loader_problem(node_cls, values: Mapping[str, Any], reward_folder: str, auto_weights: str) -> str | None:
    """First problem with the FK Reward Loader's widget values (only those present), or None."""
    weights = values.get("weights")
    if weights is not None and weights != auto_weights:
        problem = file_name_problem(LOADER, "weights", weights, "a weights file from the list, or auto")
        if problem:
            return problem
    device = values.get("device")
    if isinstance(device, str) and device.lower().startswith(("cuda", "gpu")):
        if not torch.cuda.is_available():
            return message(LOADER, "device", f"{shown(device)} asks for a GPU, but this machine has none",
                           "choose cpu (or auto, which uses the GPU when there is one)")
        return message(LOADER, "device", f"has an unknown value {shown(device)}",
                       "choose auto (the GPU, managed by ComfyUI) or cpu")
    problem = check_widgets(node_cls, LOADER, values)
    if problem:
        return problem
    reward, target = values.get("reward"), values.get("target")
    problem = judge_problem(reward, values.get("judge_model"), values.get("objects"))
    if problem:
        return problem
    if reward == "contrast" and target is not None and target > CONTRAST_MAX_TARGET:
        return message(LOADER, "target", f"is {shown(float(target))}, above the highest contrast "
                       f"({CONTRAST_MAX_TARGET:g}, a black-and-white checkerboard)",
                       f"set target to 0 … {CONTRAST_MAX_TARGET:g} for contrast")
    if reward in CLIP_REWARDS:
        return clip_problem(values.get("clip_architecture"), values.get("clip_pretrained"), reward_folder,
                            weights_chosen=weights not in (None, "", auto_weights) and reward == "CLIP score")
    return None


def model_roots() -> list[str]:
    """Every folder ComfyUI keeps models in (each model type's folders, extra_model_paths.yaml included)."""
    roots = [folder_paths.models_dir]
    for paths, _extensions in folder_paths.folder_names_and_paths.values():
        roots += [path for path in paths if path not in roots]
    return roots


def judge_problem(reward: str | None, judge_model: Any, objects: Any) -> str | None:
    """judge_model: a hub id or a model folder inside ComfyUI's model folders (checked for the rewards that read
    it, or when the reward is not known yet); objects: a list the detector can read, counts whole and >= 0."""
    if reward is None or reward in JUDGE_REWARDS:
        example = "google/owlv2-base-patch16-ensemble" if reward == DETECTOR else "Qwen/Qwen2.5-VL-3B-Instruct"
        problem = model_source_problem(LOADER, "judge_model", judge_model, model_roots(), MODEL_PLACES, example)
        if problem:
            return problem
    if reward == DETECTOR and isinstance(objects, str) and objects.strip():
        try:
            parse_objects(objects)
        except RewardInputError as error:
            return message(LOADER, "objects", f"{shown(objects)} cannot be read: {str(error).split('; ')[0]}",
                           "list what must be in the picture with whole counts of 0 or more, e.g. '2 dog, 1 red "
                           "ball'")
    return None


def clip_problem(architecture: str | None, pretrained: str | None, reward_folder: str,
                 weights_chosen: bool = False) -> str | None:
    """Problems with clip_architecture / clip_pretrained (None = not given: the defaults apply)."""
    import open_clip

    if architecture:
        if architecture not in open_clip.list_models():
            close = [m for m in open_clip.list_models() if m.lower().startswith(architecture.lower()[:5])][:6]
            hint = f" (similar: {', '.join(close)})" if close else ""
            return message(LOADER, "clip_architecture", f"{shown(architecture)} is not an open_clip model{hint}",
                           "type a name such as ViT-L-14, ViT-H-14 or ViT-B-32")
    if not pretrained or weights_chosen:  # a chosen weights file replaces clip_pretrained for CLIP score
        return None
    try:
        resolve_clip_pretrained(pretrained, architecture or "ViT-L-14", reward_folder)
    except FKError as error:
        return str(error)
    return None


def resolve_clip_pretrained(value: str, architecture: str, reward_folder: str) -> str:
    """A published tag for ``architecture`` (returned as is), or a file name found inside the reward model
    folders (returned as its full path). Anything else is refused before any file is opened."""
    import open_clip

    looks_like_file = any(sep in value for sep in ("/", "\\")) or os.path.splitext(value)[1].lower() in (
        ".pt", ".pth", ".bin", ".safetensors")
    if not looks_like_file:
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        if is_tag(value) and value in tags:
            return value
        return _refuse("clip_pretrained", f"{shown(value)} is not a published weights tag for {architecture}",
                       f"use one of {', '.join(tags) or '(none: pick a weights file instead)'}, or the name of a "
                       f"weights file in models/{reward_folder}")
    problem = file_name_problem(LOADER, "clip_pretrained", value,
                                f"a tag such as 'openai' or a file name inside models/{reward_folder}")
    if problem:
        raise FKError(problem)
    for candidate in (value, os.path.join("open_clip", value)):
        path = folder_paths.get_full_path(reward_folder, candidate)
        if path is not None:
            return path
    return _refuse("clip_pretrained", f"file {shown(value)} is not in models/{reward_folder}",
                   f"put the file in models/{reward_folder} (or its open_clip folder), or use a tag such as 'openai'")


def _refuse(input_name: str, problem: str, advice: str):
    raise FKError(message(LOADER, input_name, problem, advice))
