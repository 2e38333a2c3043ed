"""Every reward that says it is differentiable (``differentiable = True``, what guided proposals rely on) has the
gradient its score really has: the autograd directional derivative ∇r·v against the central finite difference
(r(x + h v) − r(x − h v)) / 2h, at small size, in float64 where the model allows. Learned rewards: tiny random
models of the real architectures, saved and loaded through the loaders users hit (the same builders as their own
tests). Images are larger than the rewards' input size so the resize on the way in is differentiated too.

Tolerance: central differences err by O(h^2 r''') plus rounding of order eps·|r|/h. The pixel rewards run in float64
all the way: at h = 1e-4 both terms are far below 1e-4 relative. The learned ones resize in float32 whatever the
model's dtype (clip_preprocess, qwen_vl.image_inputs: bicubic in half precision loses detail, so they use float32),
so eps is 1.2e-7 and the rounding term is up to ~1e-3 at h = 1e-3 for scores of order 1-100: 2e-3 relative and
absolute, the float32 tolerance.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from rewards_helpers import distinct_images

import fk_core.rewards as rewards_module
from fk_core.rewards import (
    BrightnessTarget,
    Colorfulness,
    ContrastTarget,
    JpegCompressibility,
    Reward,
    Saturation,
    Sharpness,
    TargetColor,
    WeightedSum,
)
from fk_core.rewards.base import images_to_bchw
from fk_core.rewards.detector import ObjectCountReward


def raw_score(reward, images: torch.Tensor, prompt) -> torch.Tensor:
    """What ``score`` computes before its final cast to float32 (which would round the differences away)."""
    return reward._score(images_to_bchw(images), prompt).double()


def directional_check(reward, images: torch.Tensor, prompt, h: float, rtol: float, atol: float) -> None:
    """∇r·v (autograd) against the central difference along a random direction v, for each image."""
    v = torch.randn(images.shape, generator=torch.Generator().manual_seed(1), dtype=images.dtype)
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(raw_score(reward, x, prompt).sum(), x)
    analytic = (grad * v).flatten(1).sum(1).double()
    with torch.no_grad():
        numeric = (raw_score(reward, images + h * v, prompt) - raw_score(reward, images - h * v, prompt)) / (2 * h)
    assert analytic.abs().max() > 0, "a zero gradient checks nothing"
    torch.testing.assert_close(analytic, numeric, rtol=rtol, atol=atol)


def away_from_clamps(batch: int, size: int) -> torch.Tensor:
    """distinct images squeezed into [0.1, 0.9]: the pixel rewards clamp to [0, 1], whose edge has no derivative."""
    return (0.1 + 0.8 * distinct_images(batch, size)).double()


PIXEL_REWARDS = [Sharpness(), Saturation(), Colorfulness(), BrightnessTarget(0.3), ContrastTarget(0.2),
                 TargetColor("#2040ff")]


@pytest.mark.parametrize("reward", PIXEL_REWARDS, ids=lambda r: r.name)
def test_pixel_rewards_match_finite_differences(reward):
    assert reward.differentiable
    directional_check(reward, away_from_clamps(3, 12), None, h=1e-4, rtol=1e-4, atol=1e-8)


def test_weighted_sum_is_differentiable_iff_every_term_is_and_its_gradient_is_the_sum():
    combo = WeightedSum([(Saturation(), 1.0), (Sharpness(), -0.5)])
    assert combo.differentiable
    images = away_from_clamps(2, 12)
    gradients = []
    for reward in (combo, Saturation(), Sharpness()):  # each term is checked against finite differences above
        x = images.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(reward.score(x).sum(), x)
        gradients.append(grad)
    torch.testing.assert_close(gradients[0], gradients[1] - 0.5 * gradients[2])
    assert not WeightedSum([(Saturation(), 1.0), (JpegCompressibility(), 1.0)]).differentiable
    assert not JpegCompressibility().differentiable and not ObjectCountReward.differentiable


def test_every_reward_class_that_says_differentiable_is_checked_here():
    """A new reward marked differentiable must get its finite-difference check in this file."""
    checked = {"Sharpness", "Saturation", "Colorfulness", "BrightnessTarget", "ContrastTarget", "TargetColor",
               "WeightedSum", "OpenClipScore", "LaionAesthetic", "PickScore", "ImageRewardScore", "HPSv3", "VQAJudge"}
    import fk_core.rewards.clip_rewards
    import fk_core.rewards.hpsv3
    import fk_core.rewards.imagereward
    import fk_core.rewards.pickscore
    import fk_core.rewards.vlm_judge

    modules = [rewards_module, fk_core.rewards.clip_rewards, fk_core.rewards.hpsv3, fk_core.rewards.imagereward,
               fk_core.rewards.pickscore, fk_core.rewards.vlm_judge]
    marked = {cls.__name__ for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, Reward) and cls.__dict__.get("differentiable", None) is not False
              and getattr(cls, "differentiable", False) and not cls.__name__.startswith("_")}
    assert marked <= checked, f"differentiable rewards without a gradient check: {marked - checked}"
    assert Reward.differentiable is False, "the default must be the safe one"


# ---------------------------------------------------------------------------------------------------------------
# Learned rewards: tiny random models of the real architectures (built as in their own test files).

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

from test_rewards_learned import TINY_ARCH, TINY_CLIP, pickscore_dir, tiny_clip_files  # noqa: E402, F401


def test_clip_score_and_hpsv2_match_finite_differences(tiny_clip_files):  # noqa: F811
    from fk_core.rewards.clip_rewards import load_clip_score, load_hpsv2

    for reward in (load_clip_score(TINY_ARCH, tiny_clip_files / "plain.pt", dtype=torch.float64),
                   load_hpsv2(tiny_clip_files / "hps_style.pt", arch=TINY_ARCH, dtype=torch.float64)):
        assert reward.differentiable
        # 40 px images resized to the model's 32 (bicubic, antialiased, in float32), then encoded
        directional_check(reward, distinct_images(2, 40).double(), "a photo of a cat", h=1e-3, rtol=2e-3, atol=2e-3)


def test_laion_aesthetic_matches_finite_differences(tiny_clip_files, tmp_path):  # noqa: F811
    from fk_core.rewards.clip_rewards import AestheticMLP, load_laion_aesthetic

    torch.manual_seed(1)
    torch.save(AestheticMLP(TINY_CLIP["embed_dim"]).state_dict(), tmp_path / "head.pth")
    reward = load_laion_aesthetic(tmp_path / "head.pth", tiny_clip_files / "plain.pt", arch=TINY_ARCH,
                                  dtype=torch.float64)
    assert reward.differentiable
    directional_check(reward, distinct_images(2, 40).double(), None, h=1e-3, rtol=2e-3, atol=2e-3)


def test_pickscore_matches_finite_differences(pickscore_dir):  # noqa: F811
    from fk_core.rewards.pickscore import load_pickscore

    reward = load_pickscore(pickscore_dir / "model", pickscore_dir / "processor", dtype=torch.float64)
    assert reward.differentiable
    directional_check(reward, distinct_images(2, 40).double(), "a photo of a cat", h=1e-3, rtol=2e-3, atol=2e-3)


def test_imagereward_matches_finite_differences(tmp_path):
    from test_rewards_imagereward import _save_tiny_checkpoint

    from fk_core.rewards.imagereward import load_imagereward

    reward = load_imagereward(*_save_tiny_checkpoint(tmp_path), dtype=torch.float64)
    assert reward.differentiable
    directional_check(reward, distinct_images(2, 40).double(), "a photo of a cat", h=1e-3, rtol=2e-3, atol=2e-3)


def test_hpsv3_and_vlm_judge_match_finite_differences(tmp_path):
    from test_rewards_vlm import save_tiny_hpsv3, save_tiny_vlm

    from fk_core.rewards.hpsv3 import load_hpsv3
    from fk_core.rewards.vlm_judge import load_vqa_judge

    checkpoint, base, *_ = save_tiny_hpsv3(tmp_path / "hps")
    hps = load_hpsv3(checkpoint, base, dtype=torch.float64)
    judge = load_vqa_judge(save_tiny_vlm(tmp_path / "vlm"), dtype=torch.float64)
    for reward in (hps, judge):
        assert reward.differentiable
        # 60 px images resized to Qwen-VL's patch grid in float32, then the vision tower and the language model
        directional_check(reward, distinct_images(2, 60).double(), "a photo of a cat", h=1e-3, rtol=2e-3,
                          atol=2e-3)
