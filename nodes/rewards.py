"""ComfyUI nodes that load and combine rewards (V3 schema). No maths here: fk_core.rewards does the work;
this file adds ComfyUI's model folders, memory management and the node UI."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import torch
from comfy_api.latest import io
from torch import nn

from ..fk_core import (
    AUTO_WEIGHTS,
    SETTING_NAMES,
    SPECS,
    BadWeightsError,
    BoundReward,
    FKError,
    MissingWeightsError,
    RewardInputError,
    WeightedSum,
    bind_judge,
    build_reward,
    check_judge_inputs,
    flat_loader_values,
    message,
    prompt_error,
    unknown_input_problem,
    weights_error,
    with_defaults,
)
from .common import CATEGORY, FK_REWARD
from .reward_checks import (
    COMBINE,
    LOADER,
    loader_problem,
    resolve_clip_pretrained,
)
from .reward_inputs import GROUPED, FlatLoaderSchema, loader_inputs
from .validation import check_widgets, require, require_widgets

log = logging.getLogger(__name__)

REWARD_FOLDER = "fk_rewards"
WEIGHT_EXTENSIONS = {".pt", ".pth", ".bin", ".safetensors"}
# Learned reward models kept in RAM between runs (ComfyUI moves them off the GPU when it needs memory).
MAX_CACHED_MODELS = 3


def register_reward_folder() -> None:
    """models/fk_rewards (plus any fk_rewards entry from extra_model_paths.yaml, which keeps priority)."""
    folder_paths.add_model_folder_path(REWARD_FOLDER, os.path.join(folder_paths.models_dir, REWARD_FOLDER))
    paths, extensions = folder_paths.folder_names_and_paths[REWARD_FOLDER]
    folder_paths.folder_names_and_paths[REWARD_FOLDER] = (paths, extensions | WEIGHT_EXTENSIONS)


register_reward_folder()


class _RewardHolder(nn.Module):
    """What ModelPatcher manages: it writes ``.device`` and bookkeeping attributes onto the module, which
    must not clash with the Reward's own read-only ``device`` property."""

    def __init__(self, reward: nn.Module, device: torch.device):
        super().__init__()
        self.reward = reward
        self.device = device


class ManagedReward:
    """The FK_REWARD value for a learned reward: loads the model onto its device through ComfyUI's memory
    manager before every scoring call, so the sampler and the reward share VRAM politely."""

    def __init__(self, bound: BoundReward, patcher):
        self.bound = bound
        self.patcher = patcher
        self.name = bound.name
        self.differentiable = bound.differentiable
        # remarks the sampler copies into its trace: what the reward understood, that it runs on the CPU …
        self.notes: list[str] = list(getattr(bound, "notes", None) or [])
        self.input_size = bound.input_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.patcher is not None:
            # Plain torch layers cannot be streamed in low-VRAM mode: load the whole reward.
            mm.load_models_gpu([self.patcher], force_full_load=True)
        return self.bound(images)

    def __repr__(self) -> str:
        return f"ManagedReward({self.name})"


_MODEL_CACHE: OrderedDict[tuple, tuple[nn.Module, object]] = OrderedDict()


def _devices(device_choice: str) -> tuple[torch.device, torch.device]:
    if device_choice == "cpu":
        return torch.device("cpu"), torch.device("cpu")
    return mm.get_torch_device(), mm.unet_offload_device()


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _dtype(precision: str, load_device: torch.device, bf16_only: bool = False) -> torch.dtype:
    if precision in PRECISIONS:
        return PRECISIONS[precision]
    if mm.is_device_cpu(load_device):
        return torch.float32
    if bf16_only:  # Qwen language models overflow in float16: bfloat16 or full precision
        return torch.bfloat16 if mm.should_use_bf16(load_device) else torch.float32
    return torch.float16 if mm.should_use_fp16(load_device) else torch.float32


def _weights_path(weights: str) -> str | None:
    if weights in ("", AUTO_WEIGHTS):
        return None
    return folder_paths.get_full_path_or_raise(REWARD_FOLDER, weights)


def load_managed_reward(reward: str, weights: str, device: str, precision: str, clip_architecture: str,
                        clip_pretrained: str, target: float, color: str, judge_model: str = ""):
    """Build (or fetch from the cache) the reward and, for learned ones, its ModelPatcher."""
    spec = SPECS[reward]
    if not spec.learned:
        return build_reward(reward, [], target=target, color=color), None
    load_device, offload_device = _devices(device)
    dtype = _dtype(precision, load_device, spec.bf16)
    weights_file = _weights_path(weights)
    judge_model = judge_model if "judge_model" in spec.settings else ""
    key = (reward, weights_file, str(load_device), str(offload_device), dtype, clip_architecture, clip_pretrained,
           judge_model)
    if key in _MODEL_CACHE:
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]
    roots = folder_paths.get_folder_paths(REWARD_FOLDER)
    model = build_reward(reward, roots, device=offload_device, dtype=dtype, weights_file=weights_file,
                         clip_architecture=clip_architecture, clip_pretrained=clip_pretrained,
                         judge_model=judge_model or None)
    holder = _RewardHolder(model, offload_device)
    patcher = comfy.model_patcher.ModelPatcher(holder, load_device=load_device, offload_device=offload_device)
    _MODEL_CACHE[key] = (model, patcher)
    while len(_MODEL_CACHE) > MAX_CACHED_MODELS:
        dropped, _ = _MODEL_CACHE.popitem(last=False)
        log.info("FK rewards: releasing cached reward model %s", dropped[0])
    return model, patcher


class FKRewardLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        weight_files = [AUTO_WEIGHTS] + folder_paths.get_filename_list(REWARD_FOLDER)
        return io.Schema(
            node_id="FKRewardLoader",
            display_name="FK Reward Loader",
            category=CATEGORY,
            description="Loads a reward (a judge that scores images) for FK steering. The sampler keeps the "
                        "particles this reward likes. Learned judges download their weights into "
                        "models/fk_rewards the first time if they are not there yet.",
            inputs=loader_inputs(weight_files),
            outputs=[FK_REWARD.Output(display_name="reward",
                                      tooltip="Connect to an FK sampler or to FK Reward Combine.")],
            **({"accept_all_inputs": True} if GROUPED else {}),  # old prompts' flat settings (reward_inputs.py)
        )

    @classmethod
    def problem(cls, values) -> str | None:
        """The first problem with the loader's values, flat or grouped under the reward (reward_inputs.py)."""
        values = flat_loader_values(values)
        schema = FlatLoaderSchema([AUTO_WEIGHTS] + folder_paths.get_filename_list(REWARD_FOLDER))
        return unknown_input_problem(LOADER, values) or loader_problem(schema, values, REWARD_FOLDER, AUTO_WEIGHTS)

    @classmethod
    def validate_inputs(cls, **values):
        # **values switches off ComfyUI's own min/max/option checks: loader_problem re-checks every input.
        return cls.problem(values) or True

    @classmethod
    def execute(cls, reward, weights: str = AUTO_WEIGHTS, prompt: str = "", device: str = "auto",
                precision: str = "auto", **settings) -> io.NodeOutput:
        values = {"reward": reward, "weights": weights, "prompt": prompt, "device": device, "precision": precision,
                  **settings}
        require(cls.problem(values))  # again: linked values came late
        values = with_defaults(flat_loader_values(values))
        reward, prompt = values["reward"], values.get("prompt") or ""
        clip_architecture, clip_pretrained, target, color, question, objects, judge_model = (
            values[name] for name in SETTING_NAMES)
        understood = check_judge_inputs(LOADER, reward, question, objects)  # before any load: typos cost nothing
        clip_architecture = clip_architecture or "ViT-L-14"
        clip_pretrained = clip_pretrained or "openai"
        if "clip_pretrained" in SPECS[reward].settings:
            clip_pretrained = resolve_clip_pretrained(clip_pretrained, clip_architecture, REWARD_FOLDER)
        try:
            model, patcher = load_managed_reward(reward, weights, device, precision, clip_architecture,
                                                 clip_pretrained, target, color, (judge_model or "").strip())
        except MissingWeightsError as error:
            raise weights_error(LOADER, error, reward, missing=True) from None
        except BadWeightsError as error:
            raise weights_error(LOADER, error, reward, missing=False) from None
        except ValueError as error:  # the pixel rewards' own checks (e.g. a colour that does not parse)
            if isinstance(error, FKError):
                raise
            raise FKError(message(LOADER, "color" if reward == "target color" else "reward", str(error),
                                  "fix the value as the tooltip describes")) from None
        try:
            bound = bind_judge(model, reward, prompt, question, objects, understood)
        except RewardInputError as error:
            raise prompt_error(LOADER, error, reward) from None
        managed = ManagedReward(bound, patcher)
        if SPECS[reward].learned and device == "auto" and mm.is_device_cpu(mm.get_torch_device()):
            managed.notes.append(f"{LOADER}: device auto found no GPU, so {reward} runs on the CPU (slow)")
        return io.NodeOutput(managed)


class FKRewardCombine(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        inputs = []
        for index, letter in enumerate("abcd"):
            inputs.append(FK_REWARD.Input(f"reward_{letter}", optional=index > 0,
                                          tooltip="A reward from FK Reward Loader (or another Combine)."))
            inputs.append(io.Float.Input(f"weight_{letter}", default=1.0, min=-100.0, max=100.0, step=0.05,
                                         tooltip="How much this reward counts. Negative = penalise it "
                                                 "(e.g. -0.5 on sharpness to avoid harsh detail)."))
        return io.Schema(
            node_id="FKRewardCombine",
            display_name="FK Reward Combine",
            category=CATEGORY,
            description="Adds rewards together with weights, e.g. ImageReward + 0.5 x aesthetic - blur. "
                        "Rewards have different ranges (see the loader tooltips): scale the weights to match.",
            inputs=inputs,
            outputs=[FK_REWARD.Output(display_name="reward")],
        )

    @classmethod
    def validate_inputs(cls, **values):
        return check_widgets(cls, COMBINE, values) or True  # NaN/inf weights named (JSON NaN passes min/max)

    @classmethod
    def execute(cls, reward_a, weight_a: float = 1.0, reward_b=None, weight_b: float = 1.0, reward_c=None,
                weight_c: float = 1.0, reward_d=None, weight_d: float = 1.0) -> io.NodeOutput:
        require_widgets(cls, COMBINE, {"weight_a": weight_a, "weight_b": weight_b, "weight_c": weight_c,
                                       "weight_d": weight_d})
        pairs = [(reward_a, weight_a), (reward_b, weight_b), (reward_c, weight_c), (reward_d, weight_d)]
        terms = [(reward, float(weight)) for reward, weight in pairs if reward is not None and weight != 0.0]
        if not terms:
            raise FKError(message(COMBINE, "weight_a", "and the other weights of the connected rewards are all 0",
                                  "connect at least one reward with a non-zero weight"))
        combined = WeightedSum(terms)
        bound = BoundReward(combined, None, name=combined.name)
        bound.notes = [note for reward, _ in terms for note in getattr(reward, "notes", None) or []]
        return io.NodeOutput(bound)


NODES = [FKRewardLoader, FKRewardCombine]
