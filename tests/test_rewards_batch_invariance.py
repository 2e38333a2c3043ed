"""Every reward is batch-invariant: an image scored alone gets the same score as inside a batch of other images
(float tolerance). FK scores N particles in one batch, so a batch-dependent reward would make a particle's weight
depend on its neighbours. One test per reward, each built as the other reward tests build it (tiny random models
of the real architectures, loaded through the real loaders)."""

from __future__ import annotations

import pytest
import torch
from rewards_helpers import distinct_images

# Module-scoped model fixtures of the other reward tests, looked up by name below.
from test_rewards_learned import TINY_ARCH, pickscore_dir, tiny_clip_files  # noqa: F401, E402, I001

from fk_core.rewards import (
    BrightnessTarget,
    Colorfulness,
    ContrastTarget,
    JpegCompressibility,
    Saturation,
    Sharpness,
    TargetColor,
    WeightedSum,
)

PROMPT = "a photo of a cat"


def _pixel(reward):
    return lambda request, tmp_path: (reward, None)


def _imagereward(request, tmp_path):
    from test_rewards_imagereward import _save_tiny_checkpoint

    from fk_core.rewards import load_imagereward

    return load_imagereward(*_save_tiny_checkpoint(tmp_path)), PROMPT


def _clip_score(request, tmp_path):
    from fk_core.rewards import load_clip_score

    return load_clip_score(TINY_ARCH, request.getfixturevalue("tiny_clip_files") / "plain.pt"), PROMPT


def _hpsv2(request, tmp_path):
    from fk_core.rewards import load_hpsv2

    return load_hpsv2(request.getfixturevalue("tiny_clip_files") / "hps_style.pt", arch=TINY_ARCH), PROMPT


def _aesthetic(request, tmp_path):
    from fk_core.rewards.clip_rewards import AestheticMLP, load_laion_aesthetic

    torch.manual_seed(1)
    torch.save(AestheticMLP(32).state_dict(), tmp_path / "head.pth")
    return load_laion_aesthetic(tmp_path / "head.pth", request.getfixturevalue("tiny_clip_files") / "plain.pt",
                                arch=TINY_ARCH), None


def _pickscore(request, tmp_path):
    from fk_core.rewards.pickscore import load_pickscore

    folder = request.getfixturevalue("pickscore_dir")
    return load_pickscore(folder / "model", folder / "processor"), PROMPT


def _hpsv3(request, tmp_path):
    from test_rewards_vlm import save_tiny_hpsv3

    from fk_core.rewards.hpsv3 import load_hpsv3

    checkpoint, base, *_ = save_tiny_hpsv3(tmp_path)
    return load_hpsv3(checkpoint, base), PROMPT


def _vlm_judge(request, tmp_path):
    from test_rewards_vlm import save_tiny_vlm

    from fk_core.rewards.vlm_judge import load_vqa_judge

    return load_vqa_judge(save_tiny_vlm(tmp_path / "vlm")), PROMPT


def _detector(request, tmp_path):
    from test_rewards_detector import save_tiny_owlv2

    from fk_core.rewards.detector import load_object_detector

    return load_object_detector(save_tiny_owlv2(tmp_path), threshold=0.05), "2 dog, 1 red ball"


REWARDS = {
    "sharpness": _pixel(Sharpness()), "saturation": _pixel(Saturation()), "colorfulness": _pixel(Colorfulness()),
    "brightness": _pixel(BrightnessTarget(0.3)), "contrast": _pixel(ContrastTarget(0.2)),
    "target color": _pixel(TargetColor("#2040ff")), "JPEG compressibility": _pixel(JpegCompressibility()),
    "weighted sum": _pixel(WeightedSum([(Saturation(), 1.0), (Sharpness(), -0.5)])),
    "ImageReward": _imagereward, "CLIP score": _clip_score, "HPSv2.1": _hpsv2, "LAION aesthetic": _aesthetic,
    "PickScore": _pickscore, "HPSv3": _hpsv3, "VLM judge": _vlm_judge, "object counts": _detector,
}


@pytest.mark.parametrize("name", list(REWARDS))
def test_score_alone_equals_score_inside_a_batch_of_others(name, request, tmp_path):
    if name in ("CLIP score", "HPSv2.1", "LAION aesthetic", "PickScore", "object counts"):
        pytest.importorskip("open_clip")
    reward, prompt = REWARDS[name](request, tmp_path)
    image = distinct_images(1, 64, seed=7)
    others = distinct_images(3, 64, seed=3)
    batch = torch.cat([others[:2], image, others[2:]])
    with torch.no_grad():
        alone = reward.score(image, prompt)
        inside = reward.score(batch, prompt)
    assert alone.shape == (1,) and inside.shape == (4,)
    assert len(set(inside.tolist())) > 1, "the batch holds different images: their scores must differ"
    torch.testing.assert_close(inside[2:3], alone, atol=1e-4, rtol=1e-4)
