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


def _roots(tmp_path):
    models = tmp_path / "models"
    (models / "fk_rewards" / "vlm" / "Qwen2.5-VL-3B-Instruct").mkdir(parents=True)
    (models / "checkpoints").mkdir()
    (models / "checkpoints" / "x.safetensors").write_bytes(b"0")
    (tmp_path / "elsewhere").mkdir()
    return models, [str(models), str(models / "fk_rewards")]


@pytest.mark.parametrize("value", ["", None, "  ", "Qwen/Qwen2.5-VL-3B-Instruct", "google/owlv2-base-patch16-ensemble",
                                   "{models}/fk_rewards/vlm/Qwen2.5-VL-3B-Instruct"])
def test_model_source_accepts_hub_ids_and_folders_inside_the_model_folders(tmp_path, value):
    models, roots = _roots(tmp_path)
    value = value.format(models=models) if isinstance(value, str) else value
    assert v.model_source_problem("N", "judge_model", value, roots, "the model folders", "a/b") is None


@pytest.mark.parametrize("value, says", [
    ("../../../../../../../../etc", "leaves the model folders"), ("/etc", "outside the model folders"),
    ("/nonexistent/model", "outside the model folders"), ("~/models/x", "outside the model folders"),
    ("{models}/checkpoints/x.safetensors", "is a file"), ("{models}/fk_rewards/vlm/missing", "not an existing folder"),
    ("{models}/../elsewhere", "outside the model folders"), ("{tmp}/elsewhere", "outside the model folders"),
    ("{models}", "outside the model folders"), ("Qwen/../../etc", "leaves"), ("a/b/c", "neither a Hugging Face id"),
    ("Qwen", "neither a Hugging Face id"), ("Qwen/model.safetensors", "names a file"), ("C:\\x", "outside"),
    ("a\x00b/c", "outside"), (3, "must be text"),
])
def test_model_source_refuses_everything_else_by_name(tmp_path, value, says):
    models, roots = _roots(tmp_path)
    value = value.format(models=models, tmp=tmp_path) if isinstance(value, str) else value
    text = v.model_source_problem("N", "judge_model", value, roots, "the model folders", "Qwen/Qwen2.5-VL-3B-Instruct")
    assert text is not None and text.startswith("N: judge_model ") and says in text and "; " in text
    assert "weights file from" not in text and "huggingface.co" not in text
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in text or "config.json" in text or "must be text" in text


def test_model_source_follows_links_out_of_the_model_folders(tmp_path):
    models, roots = _roots(tmp_path)
    (models / "fk_rewards" / "vlm" / "escape").symlink_to(tmp_path / "elsewhere")
    text = v.model_source_problem("N", "judge_model", str(models / "fk_rewards" / "vlm" / "escape"), roots,
                                  "the model folders", "a/b")
    assert text is not None and "outside the model folders" in text


def test_setting_rules_between_widgets():
    """fk_core/setting_checks.py: the rules no single widget range expresses, in the one message style; values
    that are absent or fine pass."""
    from fk_core.setting_checks import denoise_problem, lambda_problem, window_problem

    assert window_problem("N", {"window_start": 0.8, "window_end": 0.2}) == (
        "N: window_start (0.8) is after window_end (0.2); set window_start to at most window_end (0 = start of "
        "the run, 1 = its end)")
    assert window_problem("N", {"window_start": 0.2, "window_end": 0.2}) is None
    assert window_problem("N", {"window_start": 0.8}) is None
    assert lambda_problem("N", {"lambda_mode": "adaptive", "lambda": -1.0}).startswith(
        "N: lambda is -1, but an adaptive lambda rises from 0 up to lambda; ")
    assert lambda_problem("N", {"lambda_mode": "fixed", "lambda": -1.0}) is None
    assert denoise_problem("N", {"denoise": 0.0}).startswith("N: denoise is 0: at 0 nothing would be sampled; ")
    assert denoise_problem("N", {"denoise": 0.3}) is None and denoise_problem("N", {}) is None
