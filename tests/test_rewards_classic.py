"""Pixel rewards: known images give known orderings; combination arithmetic; input validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rewards_helpers import distinct_images

from fk_core.rewards import (
    BrightnessTarget,
    Colorfulness,
    ContrastTarget,
    JpegCompressibility,
    RewardInputError,
    Saturation,
    Sharpness,
    TargetColor,
    WeightedSum,
    parse_color,
)


def _blur(images: torch.Tensor, passes: int = 3) -> torch.Tensor:
    bchw = images.permute(0, 3, 1, 2)
    for _ in range(passes):
        bchw = F.avg_pool2d(F.pad(bchw, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return bchw.permute(0, 2, 3, 1)


def _flat(rgb, size=32):
    return torch.tensor(rgb, dtype=torch.float32).view(1, 1, 1, 3).expand(1, size, size, 3).clone()


def test_sharpness_prefers_detail_over_blur_over_flat():
    sharp = distinct_images(2, 64)
    scores_sharp = Sharpness().score(sharp)
    scores_blur = Sharpness().score(_blur(sharp))
    assert (scores_sharp > scores_blur).all()
    assert Sharpness().score(_flat([0.3, 0.6, 0.2])).item() == pytest.approx(0.0, abs=1e-5)


def test_saturation_and_colorfulness_grey_is_zero_pure_colour_is_high():
    grey = _flat([0.5, 0.5, 0.5])
    red = _flat([1.0, 0.0, 0.0])
    pastel = _flat([1.0, 0.7, 0.7])
    assert Saturation().score(grey).item() == pytest.approx(0.0, abs=1e-5)
    assert Saturation().score(red).item() == pytest.approx(1.0, abs=1e-4)
    assert Saturation().score(pastel).item() == pytest.approx(0.3, abs=1e-4)  # (max-min)/max
    assert Colorfulness().score(grey).item() == pytest.approx(0.0, abs=1e-5)
    # Flat pure red: rg = 1, yb = 0.5 everywhere, no spread -> 0.3 * sqrt(1 + 0.25).
    assert Colorfulness().score(red).item() == pytest.approx(0.3 * 1.25 ** 0.5, abs=1e-4)
    assert Colorfulness().score(red) > Colorfulness().score(pastel)


def test_brightness_and_contrast_targets_peak_at_the_target():
    levels = torch.cat([_flat([v, v, v]) for v in (0.1, 0.5, 0.9)])
    scores = BrightnessTarget(0.5).score(levels)
    torch.testing.assert_close(scores, torch.tensor([-0.4, 0.0, -0.4]), atol=1e-5, rtol=0)
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2
    half_contrast = (0.5 + 0.5 * (checker.float() * 2 - 1))[None, :, :, None].expand(1, 32, 32, 3)  # std 0.5
    low_contrast = (0.5 + 0.1 * (checker.float() * 2 - 1))[None, :, :, None].expand(1, 32, 32, 3)  # std 0.1
    contrast = ContrastTarget(0.1)
    assert contrast.score(low_contrast).item() == pytest.approx(0.0, abs=1e-4)
    assert contrast.score(half_contrast).item() == pytest.approx(-0.4, abs=1e-4)
    with pytest.raises(ValueError):
        BrightnessTarget(1.5)


def test_target_color_is_zero_on_the_colour_and_orders_by_distance():
    reward = TargetColor("#ff8800")
    orange = _flat([1.0, 136 / 255, 0.0])
    near = _flat([1.0, 0.6, 0.1])
    far = _flat([0.0, 0.2, 1.0])
    scores = reward.score(torch.cat([orange, near, far]))
    assert scores[0].item() == pytest.approx(0.0, abs=1e-3)
    assert scores[0] > scores[1] > scores[2]
    assert parse_color("255, 136, 0") == parse_color("#FF8800") == parse_color((1.0, 136 / 255, 0.0))
    with pytest.raises(ValueError, match="cannot read colour"):
        parse_color("orange-ish")


def test_jpeg_compressibility_prefers_flat_images_and_is_not_differentiable():
    reward = JpegCompressibility()
    noisy = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    scores = reward.score(torch.cat([_flat([0.4, 0.4, 0.4], 64), noisy]))
    assert scores[0] > scores[1]
    assert scores[1] < -4.0, "random noise costs several bits per pixel even at high quality"
    assert not reward.differentiable


@pytest.mark.parametrize("reward", [Sharpness(), Saturation(), Colorfulness(), BrightnessTarget(0.3),
                                    ContrastTarget(0.2), TargetColor("#2040ff")], ids=lambda r: r.name)
def test_differentiable_rewards_give_gradients_and_batch_consistency(reward):
    images = distinct_images(3, 48).requires_grad_(True)
    scores = reward.score(images)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    scores.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    singles = torch.cat([reward.score(images[i:i + 1].detach()) for i in range(3)])
    torch.testing.assert_close(scores.detach(), singles, atol=1e-6, rtol=1e-5)


def test_weighted_sum_arithmetic_name_and_nan():
    images = distinct_images(3, 48)
    combo = WeightedSum([(Saturation(), 1.0), (Sharpness(), -0.5), (Colorfulness(), 2.0)])
    expected = Saturation().score(images) - 0.5 * Sharpness().score(images) + 2.0 * Colorfulness().score(images)
    torch.testing.assert_close(combo.score(images), expected)
    assert combo.name == "saturation - 0.5*sharpness + 2*colorfulness"
    assert combo.differentiable and not combo.needs_prompt

    def broken(batch):
        out = torch.zeros(batch.shape[0])
        out[1] = float("nan")
        return out

    with_nan = WeightedSum([(Saturation(), 1.0), (broken, 1.0)]).score(images)
    assert torch.isnan(with_nan[1]) and torch.isfinite(with_nan[[0, 2]]).all()
    assert not WeightedSum([(JpegCompressibility(), 1.0), (Saturation(), 1.0)]).differentiable
    with pytest.raises(ValueError):
        WeightedSum([])


def test_bound_reward_and_input_validation():
    bound = Saturation().bind("ignored prompt")
    assert bound.name == "saturation" and bound.prompt is None
    torch.testing.assert_close(bound(_flat([1.0, 0.0, 0.0])), torch.tensor([1.0]), atol=1e-4, rtol=0)
    with pytest.raises(RewardInputError, match="latents"):
        Saturation().score(torch.rand(1, 8, 8, 16))
    with pytest.raises(RewardInputError, match="float"):
        Saturation().score(torch.zeros(1, 8, 8, 3, dtype=torch.uint8))
    with pytest.raises(RewardInputError):
        Saturation().score([[0.5]])
    grey_channel = Saturation().score(torch.full((2, 8, 8, 1), 0.5))  # 1 channel is broadcast to RGB
    torch.testing.assert_close(grey_channel, torch.zeros(2), atol=1e-5, rtol=0)
    rgba = torch.cat([_flat([1.0, 0.0, 0.0], 8), torch.ones(1, 8, 8, 1)], dim=-1)
    torch.testing.assert_close(Saturation().score(rgba), torch.tensor([1.0]), atol=1e-4, rtol=0)
