"""nodes/reward_pipeline.py in-process: the ComfyUI scorer's two phases (checks through the preview decoder at the
reward's size, the final particles full size through the VAE, scored by the final judge when there is one), its
cost record, and which party a bad score blames."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.host

N, SIZE = 3, 4  # latent side 4: 32 px images


class Identity:
    """The base model's part the full-VAE decoder uses: x0 -> the VAE's latents."""

    def process_latent_out(self, x):
        return x


class Mean:
    """A reward with a declared input size (images are shrunk to it before scoring); remembers what it saw."""

    def __init__(self, name="mean", input_size=None, answer=None):
        self.name, self.input_size, self.answer, self.seen = name, input_size, answer, []

    def __call__(self, images):
        self.seen.append(tuple(images.shape))
        if self.answer is not None:
            return self.answer(images)
        return images.mean(dim=(1, 2, 3))


def scorer(fk_pack, vae, reward, final_reward=None):
    return fk_pack.nodes.reward_pipeline.ComfyScorer("FK Test", vae, reward, final_reward, Identity(), [], 2)


def latents():
    import torch

    return torch.randn(N, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def test_check_scores_previews_at_the_reward_size_and_reports_the_cost(fk_pack, tiny_vae):
    reward = Mean(input_size=16)
    scored = scorer(fk_pack, tiny_vae, reward).check(latents(), step=3)
    assert scored.rewards.shape == (N,) and scored.rewards.dtype.is_floating_point
    assert reward.seen == [(2, 16, 16, 3), (1, 16, 16, 3)]  # sub-batches of 2, shrunk to the reward's 16 px
    assert scored.images.shape == (N, 16, 16, 3)  # the live view gets what the reward saw
    assert set(scored.cost) == {"decode_s", "reward_s"} and min(scored.cost.values()) >= 0


def test_final_keeps_full_size_images_and_asks_the_judge(fk_pack, tiny_vae):
    reward, judge = Mean(input_size=16), Mean("judge")
    s = scorer(fk_pack, tiny_vae, reward, judge)
    assert (s.name, s.final_name, s.label) == ("mean", "judge", "full VAE")
    scored = s.final(latents())
    assert reward.seen == [] and len(judge.seen) == 2  # only the judge scores the finished particles
    assert scored.images.shape == (N, 8 * SIZE, 8 * SIZE, 3) and scored.images.device.type == "cpu"


def test_sampling_models_are_reloaded_once_after_a_scoring(fk_pack, tiny_vae):
    s = scorer(fk_pack, tiny_vae, Mean())
    assert not s.models_may_have_moved
    s.check(latents(), step=1)
    assert s.models_may_have_moved
    s.reload_sampling_models()
    assert not s.models_may_have_moved


@pytest.mark.parametrize("answer, says", [
    (lambda images: images.mean(dim=(1, 2, 3))[:1], "FK Test: reward mean returned 1 scores for 2 images"),
    (lambda images: images.mean(dim=(1, 2, 3)) * float("nan"), "returned NaN/inf for every particle although"),
    (lambda images: 1 / 0, r"mean failed while scoring the previews \(division by zero\)"),
])
def test_bad_scores_are_the_rewards_problem(fk_pack, tiny_vae, answer, says):
    with pytest.raises(fk_pack.fk_core.FKError, match=says):
        scorer(fk_pack, tiny_vae, Mean(answer=answer)).check(latents(), step=1)


def test_nan_x0_is_the_models_problem(fk_pack, tiny_vae):
    import torch

    with pytest.raises(fk_pack.fk_core.FKError, match="FK Test: model predicted NaN/inf images"):
        scorer(fk_pack, tiny_vae, Mean()).check(torch.full((N, 4, SIZE, SIZE), float("nan")), step=1)

