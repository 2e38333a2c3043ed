"""What a reward loader's inputs mean, on any host: each setting's default and help text, the inputs a loader has
at all, and one flat view of a prompt's values with the defaults filled in.

Which reward reads which setting is the catalogue's table (``SPECS[name].settings``); this module says what the
settings are, so a host only declares widgets (ComfyUI's FK Reward Loader: ``nodes/reward_inputs.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..messages import message
from .catalog import SETTING_NAMES
from .vlm_judge import DEFAULT_QUESTION

AUTO_WEIGHTS = "auto (default file, downloaded if missing)"
# The inputs every reward has (the settings are SETTING_NAMES).
TOP_LEVEL = ("reward", "weights", "prompt", "device", "precision")
# What a setting the prompt left out means (the widget defaults, as in 0.2.0).
SETTING_DEFAULTS = {"clip_architecture": "ViT-L-14", "clip_pretrained": "openai", "target": 0.5, "color": "#ff8800",
                    "question": DEFAULT_QUESTION, "objects": "", "judge_model": ""}

REWARD_HELP = (
    "Which judge scores the images. ImageReward, PickScore and HPSv2.1 rate how well an image matches the prompt "
    "and how much people like it; LAION aesthetic rates beauty without a prompt; the others measure simple "
    "picture properties (sharpness, colour, brightness...). HPSv3 and the VLM judge are a final judge: slow "
    "(0.5-2 s per image on a GPU): connect them to a sampler's final_reward so they only pick among the finished "
    "particles. HPSv3 = human preference on Qwen2-VL-7B (16 GB); VLM judge = probability that a Qwen-VL model "
    "answers Yes to 'does this image show the prompt?'; object counts = OWLv2 finds the listed objects with the "
    "right counts (faster, also fine for steering).")

SETTING_HELP = {
    "clip_architecture": "Only for CLIP score and LAION aesthetic: the open_clip model name, e.g. ViT-L-14, "
                         "ViT-H-14 or ViT-B-32. Use a '-quickgelu' name for OpenAI weights picked as a file.",
    "clip_pretrained": "Only for CLIP score and LAION aesthetic: which published CLIP weights to use (an open_clip "
                       "tag such as 'openai' or 'laion2b_s32b_b82k'), downloaded into models/fk_rewards/open_clip.",
    "target": "Only for brightness (0 = black, 1 = white) and contrast (0 = flat, 0.5 = extreme): the level the "
              "judge likes best.",
    "color": "Only for 'target color': the colour the image should be, as #rrggbb or r,g,b (0-255).",
    "question": "Only for the VLM judge: the yes/no question asked about each image; {prompt} is replaced by the "
                "prompt. The score is the probability of 'Yes'.",
    "objects": "Only for 'object counts': what must be in the picture, with counts, separated by commas, e.g. "
               "'2 dog, 1 red ball' (no number = 1, 0 = must be absent). The reward is the share of objects found "
               "exactly that often.",
    "judge_model": "Only for the VLM judge and 'object counts': the Hugging Face model to use, e.g. "
                   "Qwen/Qwen2.5-VL-7B-Instruct or Qwen/Qwen3-VL-4B-Instruct (empty = Qwen/Qwen2.5-VL-3B-Instruct, "
                   "resp. google/owlv2-base-patch16-ensemble), or the full path of a model folder inside ComfyUI's "
                   "model folders. Looked up in models/fk_rewards/vlm/<name> (owlv2/<name>), downloaded there if "
                   "missing.",
}


def unknown_input_problem(node: str, values: Mapping[str, Any]) -> str | None:
    """A prompt input the loader has under no name (grouped schemas accept any name, so typos are caught here)."""
    unknown = sorted(set(values) - set(TOP_LEVEL) - set(SETTING_NAMES))
    if not unknown:
        return None
    return message(node, unknown[0], "is not an input of this node",
                   f"remove it; the inputs are {', '.join(TOP_LEVEL + SETTING_NAMES)}")


def with_defaults(values: Mapping[str, Any]) -> dict:
    """Flat values with every setting the prompt left out (or sent empty as None) at its default."""
    return {**SETTING_DEFAULTS, **{name: value for name, value in values.items() if value is not None}}
