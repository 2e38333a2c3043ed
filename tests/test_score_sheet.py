"""fk_core.score_sheet (FK Score Images without a host): scores as a run gives them, best first, a combined
reward's components summing to its score exactly, the sheet and the JSON record."""

from __future__ import annotations

import math

import pytest
import torch

from fk_core import WeightedSum, breakdown, fit_to_reward, score_images, score_sheet, scores_record
from fk_core.rewards import BoundReward, Colorfulness, Saturation, Sharpness
from fk_core.score_sheet import breakdown_pieces, short_name


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(seed))


def _combined() -> BoundReward:
    terms = [(BoundReward(Saturation()), 0.9), (BoundReward(Colorfulness()), 0.3), (BoundReward(Sharpness()), -0.4)]
    total = WeightedSum(terms)
    return BoundReward(total, None, name=total.name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_combined_parts_sum_to_the_score_exactly(seed):
    reward, images = _combined(), _images(5, seed=seed)
    result = score_images(images, reward, batch=2, input_size=None)
    assert torch.equal(result.scores, reward(images).float())  # the combined reward's own answer, bit for bit
    assert [(name, weight) for name, weight, _ in result.parts] == [("saturation", 0.9), ("colorfulness", 0.3),
                                                                     ("sharpness", -0.4)]
    total = sum(weight * values for _, weight, values in result.parts)
    torch.testing.assert_close(total, result.scores, rtol=0, atol=1e-6)


def test_sub_batches_and_input_size_match_a_run():
    """Sub-batch size changes nothing; images are shrunk to the reward's side exactly as a run's scoring does."""
    images = _images(7, size=48, seed=3)
    reward = BoundReward(Sharpness())
    reward.input_size = 16  # sharpness depends on resolution: a wrong resize would show
    one = score_images(images, reward, batch=1, input_size=16).scores
    seven = score_images(images, reward, batch=7, input_size=16).scores
    torch.testing.assert_close(one, seven, rtol=0, atol=1e-6)
    torch.testing.assert_close(seven, reward(fit_to_reward(images, 16)).float(), rtol=0, atol=0)
    assert not torch.allclose(seven, reward(images).float(), atol=1e-4)  # the resize matters for this reward


def test_order_is_best_first_with_nan_last():
    scores = torch.tensor([0.2, float("nan"), 0.9, 0.5])
    result = score_images(_images(4), lambda images: scores[: images.shape[0]], batch=8, input_size=None)
    assert result.order.tolist() == [2, 3, 0, 1]
    record = scores_record(result)
    assert [entry["index"] for entry in record] == [2, 3, 0, 1]
    assert [entry["rank"] for entry in record] == [1, 2, 3, 4]
    assert record[-1]["score"] is None and record[0]["score"] == pytest.approx(0.9)
    assert record[0]["components"] == []


def test_breakdown_names_each_weighted_share():
    assert breakdown_pieces(0.82, [("LAION aesthetic", 1.0, 0.9), ("CLIP score", 1.5, 0.2),
                                   ("sharpness", -0.5, 0.8)]) == ["r=0.82 =", "0.9 aes", "+ 0.3 clip", "- 0.4 sharp"]
    assert breakdown_pieces(0.5, []) == []
    assert breakdown_pieces(-0.1, [("sharpness", -0.5, 0.2), ("saturation", 1.0, 0.0)], with_total=False) == \
        ["= -0.1 sharp", "+ 0 sat"]
    assert short_name("object counts: 2 x 'dog'") == "object" and short_name("VLM judge (Qwen-VL)") == "VLM"
    assert short_name("brightness(target=0.5)") == "bright"
    reward, images = _combined(), _images(3)
    result = score_images(images, reward, batch=8, input_size=None)
    line = breakdown(result, 0)
    assert line.startswith(f"r={float(result.scores[0]):.3g} = ") and " sat" in line and " sharp" in line
    record = scores_record(result)
    for entry in record:
        shares = [c["share"] for c in entry["components"]]
        assert math.isclose(sum(shares), entry["score"], abs_tol=1e-6)
        assert all(c["share"] == pytest.approx(c["weight"] * c["value"]) for c in entry["components"])


def test_sheet_is_best_first_and_grows_for_the_breakdown():
    reward, images = _combined(), _images(4, size=64)
    result = score_images(images, reward, batch=8, input_size=None)
    single = score_images(images, BoundReward(Saturation()), batch=8, input_size=None)
    sheet, plain = score_sheet(images, result), score_sheet(images, single)
    assert sheet.ndim == 4 and sheet.shape[0] == 1 and sheet.shape[-1] == 3
    assert sheet.shape[1] > plain.shape[1], "the component lines need room under each tile"
    assert sheet.shape[2] == plain.shape[2]
    best = int(result.order[0])
    pad, border = 4, 3  # the first tile (top left) is the best image, framed
    tile = sheet[0, pad + border:pad + border + 64, pad + border:pad + border + 64]
    torch.testing.assert_close(tile, images[best], atol=1 / 255, rtol=0)


# ---- components everywhere (issue 19 item 2): the trace keeps a combined reward's terms


def _two_mode_run(reward, seed: int):
    from fk_trace_fixtures import karras_sigmas, two_modes

    from fk_core import FKConfig, steer

    model = two_modes(2, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(6, 2, generator=gen)
    config = FKConfig(potential="diff", lmbda=4.0, lambda_mode="fixed", every=2)
    return steer(model.denoise, karras_sigmas(8).float(), noise, reward, config, generator=gen)


class _Coordinate:
    def __init__(self, k: int):
        self.name = f"x{k}"
        self.k = k

    def __call__(self, x):
        return x[:, self.k].float()


@pytest.mark.parametrize("seed", [0, 5])
def test_trace_keeps_components_per_check_and_for_the_final_particles(seed):
    combined = WeightedSum([(_Coordinate(0), 1.0), (_Coordinate(1), -0.5)])
    trace = _two_mode_run(combined, seed).trace.to_dict()
    assert trace["steps"], "the run made no potential step"
    for record, rewards in [(s["components"], s["rewards"]) for s in trace["steps"]] + \
            [(trace["final_components"], trace["final_rewards"])]:
        assert record["names"] == ["x0", "x1"] and record["weights"] == [1.0, -0.5]
        for i, total in enumerate(rewards):
            share = sum(w * values[i] for w, values in zip(record["weights"], record["values"], strict=True))
            assert share == pytest.approx(total, abs=1e-6)


def test_a_single_reward_leaves_the_trace_as_it_was():
    trace = _two_mode_run(_Coordinate(0), 0).trace.to_dict()
    assert "final_components" not in trace and all("components" not in s for s in trace["steps"])


def test_contact_sheet_notes_come_from_the_trace_components():
    from fk_core import component_notes

    record = {"names": ["LAION aesthetic", "sharpness"], "weights": [1.0, -0.5], "values": [[5.0, 4.0], [0.2, None]]}
    notes = component_notes(record, [4.9, None])
    assert notes[0] == ["= 5 aes", "- 0.1 sharp"]  # the tile's label already says r=4.9
    assert notes[1] == ["= 4 aes", "+ nan sharp"]
    assert component_notes(None, [1.0]) is None
