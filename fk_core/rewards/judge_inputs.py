"""What a prompt-comparing judge is asked, checked before any model loads and then fixed on the reward: the VLM
judge's question (it must hold ``{prompt}``), the object detector's list of objects and counts, the prompt."""

from __future__ import annotations

import logging

from ..errors import FKError
from .base import RewardInputError
from .catalog import DETECTOR, VLM_JUDGE
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
