"""The detector reward (OWLv2, GenEval-style counting): the object-list parser, the counting and scoring rule on
known detections, and a tiny random OWLv2 saved as the published folder and loaded through the real loader."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from rewards_helpers import distinct_images

from fk_core.rewards import BadWeightsError, RewardInputError
from fk_core.rewards.detector import (
    CONFIDENCE_WEIGHT,
    ObjectCountReward,
    WantedObject,
    describe,
    load_object_detector,
    nms_count,
    parse_objects,
)

transformers = pytest.importorskip("transformers")


def test_parse_objects_reads_counts_words_and_defaults():
    assert parse_objects("2 dog, 1 red ball") == [WantedObject(2, "dog"), WantedObject(1, "red ball")]
    assert parse_objects("three cats; a red ball\nkite") == [WantedObject(3, "cats"), WantedObject(1, "red ball"),
                                                             WantedObject(1, "kite")]
    assert parse_objects("0 people, 1 bench") == [WantedObject(0, "people"), WantedObject(1, "bench")]
    assert describe(parse_objects("2 dog, 1 red ball")) == "2 x 'dog', 1 x 'red ball'"
    for bad, message in (("", "objects to look for"), (" , ;", "objects to look for"), ("2 3", "cannot read"),
                         ("2 dog, 1 dog", "listed twice"), ("99 ants", "at most 50")):
        with pytest.raises(RewardInputError, match=message):
            parse_objects(bad)


def test_nms_merges_overlapping_boxes_only():
    boxes = torch.tensor([[0.2, 0.2, 0.2, 0.2], [0.21, 0.2, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    assert nms_count(boxes, torch.tensor([0.9, 0.8, 0.7])) == 2
    assert nms_count(boxes[[0, 2]], torch.tensor([0.9, 0.7])) == 2


class _StubDetector(torch.nn.Module):
    """Returns fixed OWL outputs: logits [B, patches, Q] and boxes [B, patches, 4]."""

    def __init__(self, logits, boxes):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.logits, self.boxes = logits, boxes

    def forward(self, pixel_values, input_ids, attention_mask):
        assert input_ids.shape[0] == pixel_values.shape[0] * self.logits.shape[2], "OWL wants B * Q text rows"
        return SimpleNamespace(logits=self.logits, pred_boxes=self.boxes)


def _logit(p):
    return torch.logit(torch.tensor(p))


def test_reward_counts_per_object_with_the_right_count():
    # Image 0: two separate dogs and one ball -> both counts right. Image 1: one dog (its second box overlaps
    # the first) and no ball above the threshold -> neither count right.
    boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.1, 0.1], [0.5, 0.2, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]])
    boxes = torch.stack([boxes, boxes.clone()])
    boxes[1, 1] = boxes[1, 0] + torch.tensor([0.005, 0, 0, 0])
    low = -6.0
    logits = torch.full((2, 4, 2), low)
    logits[0, 0, 0], logits[0, 1, 0], logits[0, 2, 1] = _logit(0.9), _logit(0.8), _logit(0.7)
    logits[1, 0, 0], logits[1, 1, 0], logits[1, 2, 1] = _logit(0.9), _logit(0.6), _logit(0.2)
    tokenizer = lambda texts, **kw: {"input_ids": torch.zeros(len(texts), 16, dtype=torch.long),  # noqa: E731
                                     "attention_mask": torch.ones(len(texts), 16, dtype=torch.long)}
    reward = ObjectCountReward(_StubDetector(logits, boxes), tokenizer, image_size=32, threshold=0.3)
    scores = reward.score(distinct_images(2, 32), "2 dog, 1 ball")
    assert reward.last_counts == [{"dog": 2, "ball": 1}, {"dog": 1, "ball": 0}]
    expected = torch.tensor([(2 + CONFIDENCE_WEIGHT * (0.9 + 0.7)) / 2, (0 + CONFIDENCE_WEIGHT * (0.9 + 0.2)) / 2])
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    # Asking for absence: "0 ball" is right in image 1 only; its confidence term is 1 - best ball score.
    scores = reward.score(distinct_images(2, 32), "1 dog, 0 ball")
    expected = torch.tensor([(0 + CONFIDENCE_WEIGHT * (0.9 + 0.3)) / 2, (2 + CONFIDENCE_WEIGHT * (0.9 + 0.8)) / 2])
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    assert not reward.differentiable


# ---------------------------------------------------------------------------------------------------
# A tiny real OWLv2
def save_tiny_owlv2(folder, seed: int = 0):
    from test_rewards_learned import _write_clip_tokenizer_files
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor

    vocab, merges = _write_clip_tokenizer_files(folder)
    tokenizer = CLIPTokenizer(str(vocab), str(merges), pad_token="!")
    config = Owlv2Config(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "vocab_size": 49408, "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16},
        projection_dim=32)
    torch.manual_seed(seed)
    Owlv2ForObjectDetection(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    Owlv2ImageProcessor(size={"height": 64, "width": 64}).save_pretrained(str(folder))
    for name in ("vocab.json", "merges.txt"):
        assert (folder / name).is_file()
    return folder


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory):
    pytest.importorskip("open_clip")  # source of CLIP's BPE merges for the offline tokenizer
    return save_tiny_owlv2(tmp_path_factory.mktemp("owlv2-tiny"))


def test_tiny_owlv2_loads_and_scores_like_the_reference_processor(owl_dir):
    from transformers import Owlv2ImageProcessor

    reward = load_object_detector(owl_dir)
    images = distinct_images(3, 64)
    scores = reward.score(images, "2 dog, 1 red ball")
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert torch.equal(scores, reward.score(images, "2 dog, 1 red ball")), "deterministic"
    assert len(reward.last_counts) == 3 and set(reward.last_counts[0]) == {"dog", "red ball"}
    # Pixels at the model's size: only normalisation, as transformers' processor does.
    uint8 = (images * 255).round().to(torch.uint8)
    expected = Owlv2ImageProcessor.from_pretrained(str(owl_dir))(images=[a.permute(2, 0, 1) for a in uint8],
                                                                 return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(reward.pixels(uint8.permute(0, 3, 1, 2).float() / 255), expected, atol=1e-5, rtol=0)
    # Larger inputs are blurred (anti-aliasing) and shrunk as the processor does; transformers 5's processor is
    # matched to float precision, 4's (a different interpolation) to within a grey level on average.
    large = (distinct_images(2, 112) * 255).round().to(torch.uint8)
    expected = Owlv2ImageProcessor.from_pretrained(str(owl_dir))(images=[a.permute(2, 0, 1) for a in large],
                                                                 return_tensors="pt")["pixel_values"]
    ours = reward.pixels(large.permute(0, 3, 1, 2).float() / 255)
    if int(transformers.__version__.split(".")[0]) >= 5:
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    else:
        assert (ours - expected).abs().mean() < 0.01
    # Non-square inputs are padded to a square (bottom/right) with grey 0.5, as the original OWLv2 code and
    # transformers 4's processor do; transformers 5's processor pads with 0 (black) instead, so there its pad is
    # given the original's grey and the rest of its pipeline compared. 48 x 64: padding only; 80 x 112: padding
    # then the shrink.
    processor = Owlv2ImageProcessor.from_pretrained(str(owl_dir))
    version5 = int(transformers.__version__.split(".")[0]) >= 5
    for height, width in ((48, 64), (80, 112)):
        wide = (distinct_images(2, width)[:, :height] * 255).round().to(torch.uint8)
        ours = reward.pixels(wide.permute(0, 3, 1, 2).float() / 255)
        assert ours.shape == (2, 3, 64, 64)
        if version5:
            black = processor(images=[a.permute(2, 0, 1) for a in wide], return_tensors="pt")["pixel_values"]
            assert (ours - black)[..., height * 64 // width + 1:, :].abs().min() > 0.5  # grey, not black
            grey = _grey_padding(Owlv2ImageProcessor).from_pretrained(str(owl_dir))
            expected = grey(images=[a.permute(2, 0, 1) for a in wide], return_tensors="pt")["pixel_values"]
            torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
        else:
            expected = processor(images=[a.permute(2, 0, 1) for a in wide], return_tensors="pt")["pixel_values"]
            if height == 48:
                torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
            else:
                assert (ours - expected).abs().mean() < 0.01


def _grey_padding(processor_class):
    """transformers 5's OWLv2 processor with the original OWLv2 padding value (grey 0.5, after rescaling)."""

    class GreyPadded(processor_class):
        def pad(self, images, *args, constant_value=0.0, **kwargs):
            return super().pad(images, *args, constant_value=0.5, **kwargs)

    return GreyPadded


def test_owlv2_wrong_folders(owl_dir, tmp_path):
    with pytest.raises(BadWeightsError, match="config.json is missing"):
        load_object_detector(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    (tmp_path / "preprocessor_config.json").write_text("{}")
    with pytest.raises(BadWeightsError, match="not OWLv2"):
        load_object_detector(tmp_path)
    with pytest.raises(RewardInputError, match="threshold"):
        load_object_detector(owl_dir, threshold=1.5)
