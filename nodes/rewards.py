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
    DEFAULT_QUESTION,
    DETECTOR,
    SPECS,
    VLM_JUDGE,
    BadWeightsError,
    BoundReward,
    FKError,
    MissingWeightsError,
    RewardInputError,
    WeightedSum,
    bind_judge,
    build_reward,
    check_judge_inputs,
    message,
    prompt_error,
    reward_names,
    weights_error,
)
from .common import CATEGORY, FK_REWARD
from .reward_checks import (
    COMBINE,
    LOADER,
    loader_problem,
    resolve_clip_pretrained,
)
from .validation import check_widgets, require, require_widgets

log = logging.getLogger(__name__)

REWARD_FOLDER = "fk_rewards"
WEIGHT_EXTENSIONS = {".pt", ".pth", ".bin", ".safetensors"}
AUTO_WEIGHTS = "auto (default file, downloaded if missing)"
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


def _dtype(precision: str, load_device: torch.device, bf16_only: bool = False) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
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
    judge_model = judge_model if reward in (VLM_JUDGE, DETECTOR) else ""
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


def _reward_inputs(weight_files: list[str]) -> list:
    """What to load: the reward, its weights file, the prompt, where and in which precision it runs."""
    return [
        io.Combo.Input("reward", options=reward_names(), default="ImageReward",
                       tooltip="Which judge scores the images. ImageReward, PickScore and HPSv2.1 rate how well an "
                               "image matches the prompt and how much people like it; LAION aesthetic rates beauty "
                               "without a prompt; the others measure simple picture properties (sharpness, colour, "
                               "brightness...). HPSv3 and the VLM judge are a final judge: slow (0.5-2 s per image "
                               "on a GPU): connect them to a sampler's final_reward so they only pick among the "
                               "finished particles. HPSv3 = human preference on Qwen2-VL-7B (16 GB); VLM judge = "
                               "probability that a Qwen-VL model answers Yes to 'does this image show the "
                               "prompt?'; object counts = OWLv2 finds the listed objects with the right counts "
                               "(faster, also fine for steering)."),
        io.Combo.Input("weights", options=weight_files, default=AUTO_WEIGHTS,
                       tooltip="The judge's weights file from models/fk_rewards. 'auto' uses the standard file name "
                               "and downloads it when missing. Ignored by the simple picture-property judges."),
        io.String.Input("prompt", multiline=True, default="", optional=True,
                        tooltip="What the image should show. Connect your positive prompt text here. Only "
                                "ImageReward, PickScore, HPSv2.1 and CLIP score use it."),
        io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                       tooltip="Where the judge runs. 'auto' uses the GPU and lets ComfyUI move it off again when "
                               "memory is needed; 'cpu' saves VRAM but is much slower."),
        io.Combo.Input("precision", options=["auto", "fp32", "fp16", "bf16"], default="auto",
                       tooltip="Number precision of the judge. 'auto' = half precision on GPUs that support it "
                               "(less memory, same ranking), full precision on CPU."),
    ]


def _setting_inputs() -> list:
    """Settings only some rewards read (CLIP model, target level, colour, judge question, objects, judge model)."""

    def text(name: str, default: str, tooltip: str):
        return io.String.Input(name, default=default, optional=True, tooltip=tooltip)

    return [
        text("clip_architecture", "ViT-L-14", "Only for CLIP score and LAION aesthetic: the open_clip model name, "
             "e.g. ViT-L-14, ViT-H-14 or ViT-B-32. Use a '-quickgelu' name for OpenAI weights picked as a file."),
        text("clip_pretrained", "openai", "Only for CLIP score and LAION aesthetic: which published CLIP weights to "
             "use (an open_clip tag such as 'openai' or 'laion2b_s32b_b82k'), downloaded into "
             "models/fk_rewards/open_clip."),
        io.Float.Input("target", default=0.5, min=0.0, max=1.0, step=0.01, optional=True,
                       tooltip="Only for brightness (0 = black, 1 = white) and contrast (0 = flat, 0.5 = extreme): "
                               "the level the judge likes best."),
        text("color", "#ff8800", "Only for 'target color': the colour the image should be, as #rrggbb or r,g,b "
             "(0-255)."),
        text("question", DEFAULT_QUESTION, "Only for the VLM judge: the yes/no question asked about each image; "
             "{prompt} is replaced by the prompt. The score is the probability of 'Yes'."),
        text("objects", "", "Only for 'object counts': what must be in the picture, with counts, separated by "
             "commas, e.g. '2 dog, 1 red ball' (no number = 1, 0 = must be absent). The reward is the share of "
             "objects found exactly that often."),
        text("judge_model", "", "Only for the VLM judge and 'object counts': the Hugging Face model to use, e.g. "
             "Qwen/Qwen2.5-VL-7B-Instruct or Qwen/Qwen3-VL-4B-Instruct (empty = Qwen/Qwen2.5-VL-3B-Instruct, resp. "
             "google/owlv2-base-patch16-ensemble), or the full path of a model folder inside ComfyUI's model "
             "folders. Looked up in models/fk_rewards/vlm/<name> (owlv2/<name>), downloaded there if missing."),
    ]


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
            inputs=[
                *_reward_inputs(weight_files),
                *_setting_inputs(),
            ],
            outputs=[FK_REWARD.Output(display_name="reward",
                                      tooltip="Connect to an FK sampler or to FK Reward Combine.")],
        )

    @classmethod
    def validate_inputs(cls, **values):
        # **values switches off ComfyUI's own min/max/option checks: loader_problem re-checks every input.
        return loader_problem(cls, values, REWARD_FOLDER, AUTO_WEIGHTS) or True

    @classmethod
    def execute(cls, reward: str, weights: str = AUTO_WEIGHTS, prompt: str = "", device: str = "auto",
                precision: str = "auto", clip_architecture: str = "ViT-L-14", clip_pretrained: str = "openai",
                target: float = 0.5, color: str = "#ff8800", question: str = DEFAULT_QUESTION, objects: str = "",
                judge_model: str = "") -> io.NodeOutput:
        values = {name: value for name, value in locals().items() if name != "cls"}  # every input, by name
        require(loader_problem(cls, values, REWARD_FOLDER, AUTO_WEIGHTS))  # again: linked values came late
        understood = check_judge_inputs(LOADER, reward, question, objects)  # before any load: typos cost nothing
        clip_architecture = clip_architecture or "ViT-L-14"
        clip_pretrained = clip_pretrained or "openai"
        if reward in ("CLIP score", "LAION aesthetic"):
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
