"""FK Reward Loader's inputs: which widgets it shows, and how its values arrive.

Which reward reads which setting is fk_core's table (``SPECS[name].settings``). On hosts whose node API has
``io.DynamicCombo`` (ComfyUI 0.33+) the settings are grouped under the reward: choosing a reward shows only the
settings it reads (the front end names them ``reward.<setting>``, the prompt carries them so, and execute gets
them as ``reward={"reward": name, <setting>: value}``). Older hosts (0.3.64) show every setting, as 0.2.0 did.

Either way a prompt with the settings flat (``question=…``: 0.1.0/0.2.0 API prompts, hand-written scripts)
still runs with its values: the grouped schema accepts the flat names too (``accept_all_inputs``), and
:func:`fk_core.flat_loader_values` gives execute and the checks one flat view.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..fk_core import DEFAULT_QUESTION, SETTING_NAMES, SPECS, message, reward_names

# Per-reward widgets need DynamicCombo, and old flat prompts then need accept_all_inputs (same hosts: 0.33+).
GROUPED = hasattr(io, "DynamicCombo") and "accept_all_inputs" in getattr(io.Schema, "__dataclass_fields__", {})

AUTO_WEIGHTS = "auto (default file, downloaded if missing)"
# What a setting the prompt left out means (the widget defaults, as in 0.2.0).
SETTING_DEFAULTS = {"clip_architecture": "ViT-L-14", "clip_pretrained": "openai", "target": 0.5, "color": "#ff8800",
                    "question": DEFAULT_QUESTION, "objects": "", "judge_model": ""}
TOP_LEVEL = ("reward", "weights", "prompt", "device", "precision")

REWARD_TOOLTIP = (
    "Which judge scores the images. ImageReward, PickScore and HPSv2.1 rate how well an image matches the prompt "
    "and how much people like it; LAION aesthetic rates beauty without a prompt; the others measure simple "
    "picture properties (sharpness, colour, brightness...). HPSv3 and the VLM judge are a final judge: slow "
    "(0.5-2 s per image on a GPU): connect them to a sampler's final_reward so they only pick among the finished "
    "particles. HPSv3 = human preference on Qwen2-VL-7B (16 GB); VLM judge = probability that a Qwen-VL model "
    "answers Yes to 'does this image show the prompt?'; object counts = OWLv2 finds the listed objects with the "
    "right counts (faster, also fine for steering).")


def setting_input(name: str):
    """One setting's widget (a fresh object: each reward's group holds its own)."""
    default = SETTING_DEFAULTS[name]
    if name == "target":
        return io.Float.Input("target", default=default, min=0.0, max=1.0, step=0.01, optional=True,
                              tooltip="Only for brightness (0 = black, 1 = white) and contrast (0 = flat, "
                                      "0.5 = extreme): the level the judge likes best.")
    tooltips = {
        "clip_architecture": "Only for CLIP score and LAION aesthetic: the open_clip model name, e.g. ViT-L-14, "
                             "ViT-H-14 or ViT-B-32. Use a '-quickgelu' name for OpenAI weights picked as a file.",
        "clip_pretrained": "Only for CLIP score and LAION aesthetic: which published CLIP weights to use (an "
                           "open_clip tag such as 'openai' or 'laion2b_s32b_b82k'), downloaded into "
                           "models/fk_rewards/open_clip.",
        "color": "Only for 'target color': the colour the image should be, as #rrggbb or r,g,b (0-255).",
        "question": "Only for the VLM judge: the yes/no question asked about each image; {prompt} is replaced by "
                    "the prompt. The score is the probability of 'Yes'.",
        "objects": "Only for 'object counts': what must be in the picture, with counts, separated by commas, e.g. "
                   "'2 dog, 1 red ball' (no number = 1, 0 = must be absent). The reward is the share of objects "
                   "found exactly that often.",
        "judge_model": "Only for the VLM judge and 'object counts': the Hugging Face model to use, e.g. "
                       "Qwen/Qwen2.5-VL-7B-Instruct or Qwen/Qwen3-VL-4B-Instruct (empty = Qwen/Qwen2.5-VL-3B-"
                       "Instruct, resp. google/owlv2-base-patch16-ensemble), or the full path of a model folder "
                       "inside ComfyUI's model folders. Looked up in models/fk_rewards/vlm/<name> "
                       "(owlv2/<name>), downloaded there if missing.",
    }
    return io.String.Input(name, default=default, optional=True, tooltip=tooltips[name])


def _reward_choice():
    if not GROUPED:
        choice = io.Combo.Input("reward", options=reward_names(), default="ImageReward", tooltip=REWARD_TOOLTIP)
        # which settings each reward reads, for web/fk_migrate.js to read saves of the grouped layout by name
        choice.extra_dict = {"fk_settings": {name: list(SPECS[name].settings) for name in reward_names()}}
        return choice
    # The first option is the default (ImageReward, as before): DynamicCombo has no default of its own.
    return io.DynamicCombo.Input("reward", tooltip=REWARD_TOOLTIP, options=[
        io.DynamicCombo.Option(name, [setting_input(setting) for setting in SPECS[name].settings])
        for name in reward_names()])


def loader_inputs(weight_files: list[str]) -> list:
    """The loader's schema inputs: the reward (with its settings grouped under it where the host can), the
    weights file, the prompt, device and precision, then (hosts without grouping) every setting."""
    return [
        _reward_choice(),
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
        *([] if GROUPED else [setting_input(name) for name in SETTING_NAMES]),
    ]


class FlatLoaderSchema:
    """The loader's inputs as 0.2.0 declared them (every setting flat, the reward a plain combo): what the widget
    checks (nodes/validation.check_widgets) compare the flat values against, on every host."""

    def __init__(self, weight_files: list[str]):
        self.weight_files = weight_files

    def INPUT_TYPES(self) -> dict:  # noqa: N802 - the name ComfyUI's node classes use
        flat = [io.Combo.Input("reward", options=reward_names(), default="ImageReward")]
        flat += loader_inputs(self.weight_files)[1:5] + [setting_input(name) for name in SETTING_NAMES]
        types = {"required": {}, "optional": {}}
        for entry in flat:
            types["optional" if entry.optional else "required"][entry.id] = (entry.get_io_type(), entry.as_dict())
        return types


def unknown_input_problem(node: str, values) -> str | None:
    """A prompt input the loader has under no name (grouped schemas accept any name, so typos are caught here)."""
    unknown = sorted(set(values) - set(TOP_LEVEL) - set(SETTING_NAMES))
    if not unknown:
        return None
    return message(node, unknown[0], "is not an input of this node",
                   f"remove it; the inputs are {', '.join(TOP_LEVEL + SETTING_NAMES)}")


def with_defaults(values) -> dict:
    """Flat values with every setting the prompt left out (or sent empty as None) at its default."""
    return {**SETTING_DEFAULTS, **{name: value for name, value in values.items() if value is not None}}
