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

from ..fk_core import AUTO_WEIGHTS, REWARD_HELP, SETTING_DEFAULTS, SETTING_HELP, SETTING_NAMES, SPECS, reward_names

# Per-reward widgets need DynamicCombo, and old flat prompts then need accept_all_inputs (same hosts: 0.33+).
GROUPED = hasattr(io, "DynamicCombo") and "accept_all_inputs" in getattr(io.Schema, "__dataclass_fields__", {})


def setting_input(name: str):
    """One setting's widget (a fresh object: each reward's group holds its own)."""
    if name == "target":
        return io.Float.Input("target", default=SETTING_DEFAULTS[name], min=0.0, max=1.0, step=0.01, optional=True,
                              tooltip=SETTING_HELP[name])
    return io.String.Input(name, default=SETTING_DEFAULTS[name], optional=True, tooltip=SETTING_HELP[name])


def _reward_choice():
    if not GROUPED:
        choice = io.Combo.Input("reward", options=reward_names(), default="ImageReward", tooltip=REWARD_HELP)
        # which settings each reward reads, for web/fk_migrate.js to read saves of the grouped layout by name
        choice.extra_dict = {"fk_settings": {name: list(SPECS[name].settings) for name in reward_names()}}
        return choice
    # The first option is the default (ImageReward, as before): DynamicCombo has no default of its own.
    return io.DynamicCombo.Input("reward", tooltip=REWARD_HELP, options=[
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
