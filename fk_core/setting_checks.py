"""Rules between a node's settings that no single widget range expresses, as ``(node, values) -> message or
None`` (``values``: the widget values by name, only those present; the host runs them after its own range checks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from .messages import message


def window_problem(node: str, values: Mapping[str, Any]) -> Optional[str]:
    """The steering window runs forwards: window_start at most window_end."""
    window_start, window_end = values.get("window_start"), values.get("window_end")
    if window_start is not None and window_end is not None and window_start > window_end:
        return message(node, "window_start", f"({window_start:g}) is after window_end ({window_end:g})",
                       "set window_start to at most window_end (0 = start of the run, 1 = its end)")
    return None


def lambda_problem(node: str, values: Mapping[str, Any]) -> Optional[str]:
    """An adaptive λ rises from 0 to lambda, so lambda must not be negative."""
    lmbda = values.get("lambda")
    if values.get("lambda_mode") == "adaptive" and lmbda is not None and float(lmbda) < 0:
        return message(node, "lambda", f"is {float(lmbda):g}, but an adaptive lambda rises from 0 up to lambda",
                       "set lambda to 0 or more, or use lambda_mode fixed to steer away from the reward")
    return None


def denoise_problem(node: str, values: Mapping[str, Any]) -> Optional[str]:
    """denoise 0 would sample nothing."""
    denoise = values.get("denoise")
    if isinstance(denoise, (int, float)) and denoise <= 0.0:
        return message(node, "denoise", f"is {denoise:g}: at 0 nothing would be sampled",
                       "set denoise above 0 (1 = text-to-image, below 1 = img2img)")
    return None
