"""fk_core/messages.py: the one message style, NaN/inf and range checks, file names that could leave the model
folders (host-free)."""

from __future__ import annotations

import math

import pytest

import fk_core.messages as v


def test_message_style():
    assert v.message("FK Node", "lambda", "is NaN", "type a number") == "FK Node: lambda is NaN; type a number"


@pytest.mark.parametrize("value, says", [
    (math.nan, "is NaN"), (math.inf, "is inf (infinite)"), (-math.inf, "is -inf"), (5.0, "above its maximum 1"),
    (-1.0, "below its minimum 0"), ("3", "must be a number"), (True, "must be a number"),
])
def test_number_problems(value, says):
    text = v.number_problem("N", "x", value, 0.0, 1.0)
    assert text.startswith("N: x ") and says in text and "; " in text


def test_numbers_in_range_pass_and_whole_numbers_are_checked():
    assert v.number_problem("N", "x", 0.5, 0.0, 1.0) is None
    assert v.number_problem("N", "steps", 3, 1, 10, whole=True) is None
    assert "whole number" in v.number_problem("N", "steps", 2.5, 1, 10, whole=True)
    assert "18446744073709551615" in v.number_problem("N", "seed", -1, 0, 0xFFFFFFFFFFFFFFFF, whole=True)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.pt", "a/../../x.pt", "..\\x.pt", "C:\\x.pt", "~/x.pt",
                                  "a\x00b.pt"])
def test_file_names_that_leave_the_model_folder(name):
    assert v.file_name_problem("N", "weights", name) is not None


@pytest.mark.parametrize("name", ["ImageReward/ImageReward.pt", "my clip.safetensors", "a..b.pt"])
def test_file_names_inside_the_model_folder(name):
    assert v.file_name_problem("N", "weights", name) is None


def test_choice_problem_lists_options():
    text = v.choice_problem("N", "mode", "x", ["a", "b"])
    assert text == "N: mode has an unknown value 'x'; choose one of 'a', 'b'"
    assert v.choice_problem("N", "mode", "a", ["a", "b"]) is None
