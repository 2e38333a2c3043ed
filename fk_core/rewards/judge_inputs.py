"""A reward loader's host-agnostic part: what a prompt-comparing judge is asked, checked before any model loads
and then fixed on the reward (the VLM judge's question, which must hold ``{prompt}``, the object detector's list of
objects and counts, the prompt), and the loader's words for a reward that cannot load or has no prompt."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import FKError
from ..messages import message
from .base import RewardInputError
from .catalog import DETECTOR, SETTING_NAMES, VLM_JUDGE
from .detector import describe, parse_objects
from .vlm_judge import DEFAULT_QUESTION

log = logging.getLogger(__name__)


def check_judge_inputs(node: str, reward: str, question: str, objects: str) -> str | None:
    """``node``'s VLM judge's question and the detector's object list, checked before anything is loaded.
    Returns what the detector understood (None for other rewards)."""
    if reward == VLM_JUDGE and "{prompt}" not in (question or DEFAULT_QUESTION):
        raise FKError(f"{node}: question {question!r} has no {{prompt}}; put {{prompt}} where the "
                      f"prompt goes, e.g. {DEFAULT_QUESTION!r}")
    if reward != DETECTOR:
        return None
    if not (objects or "").strip():
        raise FKError(f"{node}: objects is empty; list what must be in the picture with counts, "
                      "e.g. '2 dog, 1 red ball'")
    try:
        understood = describe(parse_objects(objects))
    except RewardInputError as error:
        raise FKError(f"{node}: objects {objects!r} cannot be read ({error})") from None
    log.info("%s: object counts will look for %s", node, understood)
    return understood


def bind_judge(model, reward: str, prompt: str, question: str, objects: str, understood: str | None):
    """Fix what the reward compares against: the prompt, for the VLM judge also its question, for the detector
    the object list (the reward is then named after what was understood, which the trace shows)."""
    if reward == VLM_JUDGE:
        model = model.asking(question or DEFAULT_QUESTION)
    if reward == DETECTOR:
        bound = model.bind(objects.strip())
        bound.name = f"object counts: {understood}"
        bound.notes = [f"object counts looks for {understood} (detection score above {model.threshold:g})"]
        return bound
    return model.bind((prompt or "").strip() or None)


def weights_error(node: str, error: Exception, reward: str, missing: bool) -> Exception:
    """A weights file that is missing, corrupt, truncated or of another model, in ``node``'s words. Same
    exception class as the reward code raised (callers may tell missing from unusable), message restyled."""
    text = _plain(str(error))
    if missing:
        restyled = message(node, "weights", f"for {reward} are missing: {text}",
                           "put the files where this message says, or go online and keep weights on auto")
    else:
        restyled = message(node, "weights", f"for {reward} are not usable: {text}",
                           f"pick a complete weights file of the {reward} model (a fresh download), or choose auto")
    return type(error)(restyled)


def _plain(text: str) -> str:
    """The reward code's reason without torch's unpickler lecture (it advises weights_only=False, which would
    run whatever code a bad file holds: never advice to give a user)."""
    text = text.strip()
    if "Weights only load failed" in text:
        head = text.split("Weights only load failed")[0].rstrip(" :")
        head = head.removesuffix("UnpicklingError").rstrip(" :")
        text = (f"{head}: it is not a plain checkpoint of tensors (an HTML error page, a truncated download or "
                "another format)")
    return text.rstrip(".")


def prompt_error(node: str, error: Exception, reward: str) -> Exception:
    """An empty prompt given to a reward that compares the image with one."""
    return type(error)(message(node, "prompt", f"is empty, but {reward} compares the image with a prompt",
                               "connect the positive prompt text (or type it) into the prompt input"))


def flat_loader_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A loader's inputs by their plain names, whichever way a host delivered them: flat (``question=…``, old
    prompts and hosts without per-reward inputs) or grouped under the reward (``reward={"reward": name,
    "question": …}``, ComfyUI's DynamicCombo). A grouped value wins over a flat one of the same name; a grouped
    input the prompt left out (None) leaves the flat one, or the default, in place. ``reward.<setting>`` of
    another reward than the chosen one (the host does not group those) is not read, like a flat setting the
    chosen reward does not read."""
    flat = {name: value for name, value in values.items()
            if not (name.startswith("reward.") and name.split(".", 1)[1] in SETTING_NAMES)}
    chosen = flat.get("reward")
    if isinstance(chosen, Mapping):
        flat.update({name: value for name, value in chosen.items() if value is not None})
        if isinstance(flat.get("reward"), Mapping):  # a group without the reward's own name
            flat["reward"] = None
    return flat
