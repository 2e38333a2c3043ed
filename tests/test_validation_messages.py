"""nodes/validation.py, reward_checks.py and fk_core/run_checks.py in-process: widget values
re-checked, the score checks that tell a reward problem from a model problem, file names resolved inside the model
folders (the single value checks and the message style themselves: test_messages.py)."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.host


def test_scores_blame_the_right_party(fk_pack):
    import torch

    checks = fk_pack.fk_core  # the run-time checks: fk_core/run_checks.py
    FKError = fk_pack.fk_core.FKError
    x0 = torch.zeros(3, 4, 2, 2)
    fine = checks.check_x0("S", x0)
    assert fine.tolist() == [False, False, False]
    assert checks.check_scores("S", [1.0, float("nan"), 2.0], "r", fine).shape == (3,)
    with pytest.raises(FKError, match="S: reward r returned 2 scores for 3 images"):
        checks.check_scores("S", [1.0, 2.0], "r", fine)
    with pytest.raises(FKError, match="returned NaN/inf for every particle although the images were fine"):
        checks.check_scores("S", [float("nan")] * 3, "r", fine)
    one_bad = x0.clone()
    one_bad[1] = float("nan")
    bad = checks.check_x0("S", one_bad)
    assert bad.tolist() == [False, True, False]
    with pytest.raises(FKError, match="every particle although the images were fine"):
        checks.check_scores("S", [float("nan")] * 3, "r", bad)
    with pytest.raises(FKError, match="S: model predicted NaN/inf images .*not a reward problem"):
        checks.check_x0("S", torch.full_like(x0, float("nan")))


def test_out_of_memory_is_recognised_by_type_not_by_any_exception(fk_pack):
    import torch

    checks = fk_pack.fk_core

    assert checks.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert checks.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ..."))
    assert not checks.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not checks.is_out_of_memory(ValueError("out of memory"))


def test_clip_pretrained_resolves_inside_the_model_folders_only(fk_pack, tmp_path, monkeypatch):
    import folder_paths

    rc = sys.modules[f"{fk_pack.__name__}.nodes.reward_checks"]
    FKError = fk_pack.fk_core.FKError
    exts = folder_paths.folder_names_and_paths["fk_rewards"][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "fk_rewards", ([str(tmp_path)], exts))
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    (tmp_path / "open_clip").mkdir()
    (tmp_path / "open_clip" / "other.pt").write_bytes(b"x")
    resolve = rc.resolve_clip_pretrained
    assert resolve("openai", "ViT-L-14", "fk_rewards") == "openai"
    assert resolve("mine.safetensors", "ViT-L-14", "fk_rewards") == str(tmp_path / "mine.safetensors")
    assert resolve("other.pt", "ViT-L-14", "fk_rewards") == str(tmp_path / "open_clip" / "other.pt")
    outside = tmp_path.parent / "outside.pt"
    outside.write_bytes(b"x")
    for name in (str(outside), "../outside.pt", "open_clip/../../outside.pt"):
        with pytest.raises(FKError, match="clip_pretrained"):
            resolve(name, "ViT-L-14", "fk_rewards")
    with pytest.raises(FKError, match="not a published weights tag for ViT-L-14"):
        resolve("laion2b_made_up", "ViT-L-14", "fk_rewards")
