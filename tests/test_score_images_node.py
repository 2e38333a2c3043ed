"""FK Score Images inside the real ComfyUI host (in-process): a score here equals the image's score in a run.

FK runs with pixel rewards (one loaded reward, and a Combine of two with a negative weight); the final
particles' images (the sampler's all_particles output, best first) are scored by the node and compared with
the final rewards the run's trace holds for them.
"""

from __future__ import annotations

import json

import pytest
from test_comfy_sampling import run_node

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def fk(fk_pack):
    return fk_pack


def _loader(fk, name: str):
    return fk.nodes.rewards.FKRewardLoader.execute(reward=name, device="cpu").result[0]


def _rewards(fk):
    single = _loader(fk, "saturation")
    combined = fk.nodes.rewards.FKRewardCombine.execute(reward_a=_loader(fk, "brightness"), weight_a=1.0,
                                                        reward_b=_loader(fk, "sharpness"), weight_b=-0.5).result[0]
    return {"single": single, "combined": combined}


@pytest.mark.parametrize("which, seed", [("single", 3), ("combined", 4), ("combined", 11)])
def test_score_of_an_image_equals_its_score_in_the_run(fk, oracle_model, tiny_vae, which, seed):
    import torch

    reward = _rewards(fk)[which]
    model, _ = oracle_model("eps")
    out = run_node(fk, model, tiny_vae, reward, particles=6, steps=4, seed=seed)
    in_run = torch.tensor(out["trace"]["final_rewards"])[out["trace"]["order"]]  # all_particles is best first
    shuffled = out["all"][[3, 0, 5, 1, 4, 2]]  # the node sorts whatever order it gets
    result = fk.nodes.score.FKScoreImages.execute(images=shuffled, reward=reward, batch_size=4)
    by_score, sheet, text_json, scores = result.result
    torch.testing.assert_close(torch.tensor(scores), in_run.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(by_score, out["all"], rtol=0, atol=0)
    record = json.loads(text_json)
    assert record["reward"] == reward.name and [e["index"] for e in record["images"]][0] in range(6)
    assert [e["score"] for e in record["images"]] == pytest.approx(in_run.tolist(), abs=1e-6)
    assert sheet.shape[0] == 1 and sheet.shape[-1] == 3
    assert result.ui["images"] and result.ui["images"][0]["type"] == "temp"
    text = result.ui["text"][0]
    if which == "combined":  # the run's trace keeps the components too (per check and for the final particles)
        final = out["trace"]["final_components"]
        assert final["weights"] == [1.0, -0.5] and all("components" in s for s in out["trace"]["steps"])
        for i, total in enumerate(out["trace"]["final_rewards"]):
            assert sum(w * v[i] for w, v in zip(final["weights"], final["values"], strict=True)) == \
                pytest.approx(total, abs=1e-6)
        names = [c["reward"] for c in record["images"][0]["components"]]
        assert names[0].startswith("brightness") and names[1] == "sharpness"
        assert " bright - " in text and " sharp" in text
        for entry in record["images"]:
            assert sum(c["share"] for c in entry["components"]) == pytest.approx(entry["score"], abs=1e-6)
    else:
        assert record["images"][0]["components"] == [] and "#1 (image" in text


def test_refuses_what_is_not_images_or_a_reward(fk):
    import torch

    node = fk.nodes.score.FKScoreImages
    with pytest.raises(ValueError, match=r"FK Score Images: images must be a batch of images .*; connect"):
        node.execute(images=torch.zeros(4, 4), reward=_loader(fk, "saturation"))
    with pytest.raises(ValueError, match=r"FK Score Images: reward is NoneType, not an FK_REWARD; connect"):
        node.execute(images=torch.zeros(1, 8, 8, 3), reward=None)
    with pytest.raises(ValueError, match=r"FK Score Images: batch_size is 0, below its minimum 1"):
        node.execute(images=torch.zeros(1, 8, 8, 3), reward=_loader(fk, "saturation"), batch_size=0)
    assert node.validate_inputs(batch_size=float("nan")).startswith("FK Score Images: batch_size")


def test_a_failing_reward_is_named(fk):
    import torch

    def broken(images):
        raise RuntimeError("boom")

    with pytest.raises(ValueError, match=r"FK Score Images: reward function failed while scoring the images \(boom\)"):
        fk.nodes.score.FKScoreImages.execute(images=torch.rand(2, 8, 8, 3), reward=broken)
