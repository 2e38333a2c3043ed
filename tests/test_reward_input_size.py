"""``Reward.input_size``: the shorter image side a reward resizes to before it looks. A host may shrink images
to it first (FK does, on the device, at every check); the promise tested here is that the score does not change."""

from __future__ import annotations

import json

import pytest
import torch
from rewards_helpers import distinct_images

from fk_core.rewards import BoundReward, WeightedSum
from fk_core.rewards.classic import BrightnessTarget, Sharpness
from fk_core.rewards.preprocess import clip_preprocess, resize_shorter_side

TINY_ARCH = "fk-tiny-clip-input-size"
TINY_CLIP = {"embed_dim": 32, "quick_gelu": False,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1}}


def test_preprocessing_after_a_resize_to_input_size_is_unchanged():
    images = distinct_images(3, 96).permute(0, 3, 1, 2)
    wide = torch.nn.functional.interpolate(images, size=(96, 160), mode="bilinear", align_corners=False)
    for batch in (images, wide):
        shrunk = resize_shorter_side(batch, 32)
        assert min(shrunk.shape[-2:]) == 32
        assert torch.equal(clip_preprocess(shrunk, 32), clip_preprocess(batch, 32))


@pytest.fixture(scope="module")
def tiny_clip_score(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    from fk_core.rewards.clip_rewards import load_clip_score

    folder = tmp_path_factory.mktemp("openclip-input-size")
    (folder / "configs").mkdir()
    (folder / "configs" / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "configs")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_ARCH, pretrained=None)
    torch.save(model.state_dict(), folder / "plain.pt")
    return load_clip_score(TINY_ARCH, folder / "plain.pt")


def test_learned_reward_declares_its_size_and_scores_shrunk_images_the_same(tiny_clip_score):
    reward = tiny_clip_score
    assert reward.input_size == TINY_CLIP["vision_cfg"]["image_size"]
    images = distinct_images(4, 80)  # (B, H, W, C)
    shrunk = resize_shorter_side(images.permute(0, 3, 1, 2), reward.input_size).permute(0, 2, 3, 1)
    full_scores = reward.score(images, "a photo of a cat")
    assert len(set(full_scores.tolist())) == 4
    torch.testing.assert_close(reward.score(shrunk, "a photo of a cat"), full_scores, atol=1e-6, rtol=0)
    assert BoundReward(reward, "a photo of a cat").input_size == reward.input_size


def test_pixel_rewards_use_every_pixel():
    assert Sharpness().input_size is None and BrightnessTarget().input_size is None


def test_weighted_sum_shrinks_only_when_every_term_does_alike(tiny_clip_score):
    clip = BoundReward(tiny_clip_score, "a cat")
    assert WeightedSum([(clip, 1.0), (clip, 0.5)]).input_size == tiny_clip_score.input_size
    assert WeightedSum([(clip, 1.0), (Sharpness(), 0.5)]).input_size is None
