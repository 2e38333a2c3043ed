"""The Qwen-VL judges: HPSv3 and the VQA-style VLM judge. Tiny random Qwen2-VL / Qwen2.5-VL models built from
transformers configs, saved as the published folders and files, loaded through the loaders users hit."""

from __future__ import annotations

import shutil

import pytest
import torch
from rewards_helpers import (
    distinct_images,
    tiny_qwen_config,
    tiny_qwen_tokenizer,
    write_qwen_processor_files,
)

from fk_core.rewards import BadWeightsError, RewardInputError, qwen_vl
from fk_core.rewards.hpsv3 import INSTRUCTION, RATING_REQUEST, REWARD_TOKEN, RankHead, load_hpsv3, split_checkpoint
from fk_core.rewards.vlm_judge import load_vqa_judge

transformers = pytest.importorskip("transformers")


def _reference_inputs(model, ids, pixels, grid) -> dict:
    inputs = dict(input_ids=ids, pixel_values=pixels, image_grid_thw=grid)
    if "mm_token_type_ids" in qwen_vl.forward_kwargs(model):  # transformers 5 wants the token types
        inputs["mm_token_type_ids"] = (ids == model.config.image_token_id).int()
    return inputs


def _widen(model, std: float = 0.3) -> None:
    """Default inits (std 0.02) give a near-uniform next-token distribution; wider weights make scores differ."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, std)


def save_tiny_vlm(folder, model_type: str = "qwen2_5_vl", seed: int = 0):
    """A Qwen-VL instruct snapshot: config.json + model.safetensors + tokenizer/preprocessor/chat template."""
    tokenizer = tiny_qwen_tokenizer()
    cls = getattr(transformers, qwen_vl.MODEL_CLASSES[model_type])
    torch.manual_seed(seed)
    model = cls(tiny_qwen_config(model_type, tokenizer))
    _widen(model)
    model.save_pretrained(str(folder))
    qwen3 = model_type == "qwen3_vl"
    write_qwen_processor_files(folder, tokenizer, *((64 * 64, 128 * 128) if qwen3 else ()), qwen3=qwen3)
    return folder


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp("Qwen2.5-VL-tiny-Instruct"))


def test_vlm_judge_scores_are_probabilities_that_depend_on_image_and_prompt(vlm_dir):
    judge = load_vqa_judge(vlm_dir)
    assert judge.needs_prompt and judge.name == f"VLM judge ({vlm_dir.name})"
    images = distinct_images(4, 64)
    scores = judge.score(images, "a photo of a cat")
    assert scores.shape == (4,) and ((scores > 0) & (scores < 1)).all()
    assert len(set(scores.tolist())) == 4, "distinct images must get distinct scores"
    assert torch.equal(scores, judge.score(images, "a photo of a cat")), "deterministic"
    assert not torch.allclose(scores, judge.score(images, "a red dog")), "the prompt must matter"


def test_vlm_judge_matches_transformers_processor_and_full_logits(vlm_dir):
    """Reference path: transformers' Qwen2VLImageProcessor on uint8 pixels, the chat template, a full forward
    pass and the softmax over the whole vocabulary at the answer position."""
    from transformers import Qwen2VLImageProcessor

    judge = load_vqa_judge(vlm_dir)
    uint8 = (distinct_images(2, 56) * 255).round().to(torch.uint8)  # 56 x 56 = min_pixels: no resize
    processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    expected = processor(images=[a.permute(2, 0, 1) for a in uint8], return_tensors="pt")
    pixels, grid, tokens = qwen_vl.image_inputs(uint8.permute(0, 3, 1, 2).float() / 255, judge.settings)
    torch.testing.assert_close(pixels, expected["pixel_values"], atol=1e-5, rtol=0)
    assert grid.tolist() == expected["image_grid_thw"].tolist() and tokens == 4

    # A resized input (512 -> 448 x 448, HPSv3's pixel budget): the processor resizes uint8 pixels, so the two
    # agree to within its rounding (about one grey level; 0.03 after normalisation is two).
    settings = qwen_vl.QwenImageSettings(min_pixels=256 * 28 * 28, max_pixels=256 * 28 * 28)
    large = (distinct_images(2, 512) * 255).round().to(torch.uint8)
    resized = Qwen2VLImageProcessor(min_pixels=256 * 28 * 28, max_pixels=256 * 28 * 28)(
        images=[a.permute(2, 0, 1) for a in large], return_tensors="pt")
    big, big_grid, big_tokens = qwen_vl.image_inputs(large.permute(0, 3, 1, 2).float() / 255, settings)
    assert big_grid.tolist() == resized["image_grid_thw"].tolist() == [[1, 32, 32]] * 2 and big_tokens == 256
    torch.testing.assert_close(big, resized["pixel_values"], atol=0.03, rtol=0)
    assert (big - resized["pixel_values"]).abs().mean() < 0.01

    tokenizer = judge.tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Does this image show: a cat? "
                                                                                  "Answer yes or no."}]}],
        chat_template=judge.template, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|vision_start|><|image_pad|><|vision_end|>Does this image show: a cat? Answer yes or "
                         "no.<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer(text.replace("<|image_pad|>", "<|image_pad|>" * tokens), return_tensors="pt")["input_ids"]
    ids = ids.expand(2, -1)
    with torch.no_grad():
        logits = judge.model(**_reference_inputs(judge.model, ids, expected["pixel_values"],
                                                 expected["image_grid_thw"])).logits[:, -1]
    yes = tokenizer.convert_tokens_to_ids("Yes")
    reference = torch.softmax(logits.float(), dim=-1)[:, yes]
    torch.testing.assert_close(judge.score(uint8.float() / 255, "a cat"), reference, atol=1e-5, rtol=1e-4)


def test_vlm_judge_question_template_and_qwen2_vl(vlm_dir, tmp_path):
    with pytest.raises(RewardInputError, match=r"must contain \{prompt\}"):
        load_vqa_judge(vlm_dir, question="Is this good?")
    custom = load_vqa_judge(vlm_dir, question="Is there {prompt} in this picture?")
    default = load_vqa_judge(vlm_dir)
    images = distinct_images(2, 64)
    assert not torch.allclose(custom.score(images, "a cat"), default.score(images, "a cat"))
    qwen2 = load_vqa_judge(save_tiny_vlm(tmp_path / "Qwen2-VL-tiny", "qwen2_vl"))
    assert qwen2.score(images, "a cat").shape == (2,)


@pytest.mark.skipif(not hasattr(transformers, "Qwen3VLForConditionalGeneration"),
                    reason="this transformers has no Qwen3-VL (added in 4.57)")
def test_vlm_judge_runs_qwen3_vl_with_its_own_patch_size(tmp_path):
    from transformers import Qwen2VLImageProcessor

    judge = load_vqa_judge(save_tiny_vlm(tmp_path / "Qwen3-VL-tiny", "qwen3_vl"))
    assert judge.settings.patch_size == 16 and judge.settings.mean == (0.5, 0.5, 0.5)
    images = distinct_images(3, 64)
    scores = judge.score(images, "a photo of a cat")
    assert ((scores > 0) & (scores < 1)).all() and len(set(scores.tolist())) == 3
    torch.testing.assert_close(judge.score(images[1:2], "a photo of a cat"), scores[1:2], atol=1e-5, rtol=1e-4)
    uint8 = (images * 255).round().to(torch.uint8)  # 64 x 64: a multiple of 16 x 2, no resize
    expected = Qwen2VLImageProcessor(patch_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3, min_pixels=64 * 64,
                                     max_pixels=128 * 128)(images=[a.permute(2, 0, 1) for a in uint8],
                                                           return_tensors="pt")
    pixels, grid, tokens = qwen_vl.image_inputs(uint8.permute(0, 3, 1, 2).float() / 255, judge.settings)
    torch.testing.assert_close(pixels, expected["pixel_values"], atol=1e-5, rtol=0)
    assert grid.tolist() == expected["image_grid_thw"].tolist() and tokens == 4


def test_vlm_judge_bad_folders_say_what_is_missing(vlm_dir, tmp_path):
    with pytest.raises(BadWeightsError, match="config.json is missing"):
        load_vqa_judge(tmp_path)
    broken = tmp_path / "no_preprocessor"
    shutil.copytree(vlm_dir, broken)
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(BadWeightsError, match="preprocessor_config.json"):
        load_vqa_judge(broken)
    clip_like = tmp_path / "clip"
    clip_like.mkdir()
    (clip_like / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(BadWeightsError, match="Qwen2-VL, Qwen2.5-VL or Qwen3-VL"):
        load_vqa_judge(clip_like)


# ---------------------------------------------------------------------------------------------------
# HPSv3
def save_tiny_hpsv3(root, seed: int = 0, old_layout: bool = False):
    """HPSv3.safetensors (Qwen2-VL reward model state dict, embeddings resized for <|Reward|>, float32 rm_head)
    next to a Qwen2-VL-7B-Instruct-style folder holding only config, tokenizer and preprocessor files."""
    base = root / "Qwen2-VL-7B-Instruct"
    tokenizer = tiny_qwen_tokenizer()
    write_qwen_processor_files(base, tokenizer)
    # The base config's vocabulary is larger than the tokenizer (as Qwen2-VL-7B's 152064 vs 151657 tokens).
    tiny_qwen_config("qwen2_vl", tokenizer, vocab_size=len(tokenizer) + 40).save_pretrained(str(base))
    with_reward = tiny_qwen_tokenizer((REWARD_TOKEN,))
    torch.manual_seed(seed)
    model = transformers.Qwen2VLForConditionalGeneration(tiny_qwen_config("qwen2_vl", with_reward))
    _widen(model, 0.1)
    head = RankHead(32)
    state = dict(model.state_dict())
    if old_layout:  # transformers <= 4.51 names
        state = {k.replace("model.visual.", "visual.").replace("model.language_model.", "model."): v
                 for k, v in state.items()}
    state.update({f"rm_head.{k}": v for k, v in head.layers.state_dict().items()})
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "HPSv3.safetensors"))
    return root / "HPSv3.safetensors", base, model.eval(), head.eval(), with_reward


@pytest.fixture(scope="module")
def tiny_hpsv3(tmp_path_factory):
    return save_tiny_hpsv3(tmp_path_factory.mktemp("HPSv3"))


def upstream_hpsv3_scores(model, head, tokenizer, template, images_uint8, prompt: str) -> torch.Tensor:
    """HPSv3 as its own code scores, written from MizzenAI/HPSv3 (``HPSv3RewardInferencer.prepare_batch`` and
    ``Qwen2VLRewardModelBT.forward``), independent of the pack's call: transformers' Qwen2VLImageProcessor at
    min = max = 256·28·28 pixels, the full chat turn, the input embeddings built by hand (token embeddings with
    the vision tower's output scattered over the image tokens), then the Qwen2-VL model called with
    ``input_ids=None, position_ids=None, inputs_embeds=...`` (so every token, image or text, gets its
    sequential position: no multimodal rotary positions), the float32 head at <|Reward|>, output 0 (mu)."""
    from transformers import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor(min_pixels=256 * 28 * 28, max_pixels=256 * 28 * 28)
    vision = processor(images=[a.permute(2, 0, 1) for a in images_uint8], return_tensors="pt")
    tokens = int(vision["image_grid_thw"][0].prod()) // 4
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"},
                                      {"type": "text", "text": INSTRUCTION.format(text_prompt=prompt)
                                       + RATING_REQUEST}]}],
        chat_template=template, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text.replace("<|image_pad|>", "<|image_pad|>" * tokens), return_tensors="pt")["input_ids"]
    ids = ids.expand(len(images_uint8), -1)
    with torch.no_grad():
        model.model.rope_deltas = None  # nothing cached from an earlier call: upstream's pass starts afresh
        inputs_embeds = model.model.language_model.embed_tokens(ids)
        image_embeds = model.model.visual(vision["pixel_values"], grid_thw=vision["image_grid_thw"])
        image_embeds = getattr(image_embeds, "pooler_output", image_embeds)  # transformers 5 returns an output
        image_mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(inputs_embeds)
        inputs_embeds = inputs_embeds.masked_scatter(image_mask, image_embeds.to(inputs_embeds.dtype))
        hidden = model.model(input_ids=None, position_ids=None, attention_mask=torch.ones_like(ids),
                             inputs_embeds=inputs_embeds).last_hidden_state
        at_token = hidden[ids == tokenizer.convert_tokens_to_ids(REWARD_TOKEN)]
        return head(at_token.float())[:, 0]


def test_hpsv3_matches_the_upstream_forward(tiny_hpsv3):
    """The scores are HPSv3's own forward's (sequential positions), not transformers' standard multimodal one."""
    checkpoint, base, model, head, tokenizer = tiny_hpsv3
    reward = load_hpsv3(checkpoint, base)
    uint8 = (distinct_images(3, 448) * 255).round().to(torch.uint8)  # 448² = 256·28·28: no resize on either side
    images = uint8.float() / 255
    scores = reward.score(images, "a photo of a cat")
    assert len(set(scores.tolist())) == 3
    assert not torch.allclose(scores, reward.score(images, "a red dog")), "the prompt must matter"
    pixels, grid, tokens = qwen_vl.image_inputs(images.permute(0, 3, 1, 2), reward.settings)
    assert tokens == 256 and grid[0].tolist() == [1, 32, 32], "HPSv3 looks at exactly 256*28*28 pixels"

    expected = upstream_hpsv3_scores(model, head, tokenizer, reward.template, uint8, "a photo of a cat")
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=1e-4)
    # The same model through transformers' standard forward (multimodal rotary positions for the image tokens)
    # scores otherwise: the comparison above can tell the two apart.
    ids = reward.prompt_ids("a photo of a cat", tokens).expand(3, -1)
    with torch.no_grad():
        standard = model.model(**_reference_inputs(model, ids, pixels, grid)).last_hidden_state[:, -1]
        standard = head(standard.float())[:, 0]
    assert (standard - expected).abs().max() > 1e-3


def test_hpsv3_loads_both_key_layouts(tiny_hpsv3, tmp_path):
    checkpoint, base, *_ = tiny_hpsv3
    old, old_base, *_ = save_tiny_hpsv3(tmp_path, old_layout=True)
    images = distinct_images(2, 64)
    torch.testing.assert_close(load_hpsv3(old, old_base).score(images, "a cat"),
                               load_hpsv3(checkpoint, base).score(images, "a cat"))


def test_hpsv3_wrong_files(tiny_hpsv3, tmp_path):
    checkpoint, base, *_ = tiny_hpsv3
    with pytest.raises(BadWeightsError, match="rm_head"):
        split_checkpoint({"model.visual.x": torch.zeros(1), "model.language_model.embed_tokens.weight": torch.zeros(1)})
    with pytest.raises(BadWeightsError, match="not a readable safetensors"):
        (tmp_path / "HPSv3.safetensors").write_bytes(b"<html>rate limited</html>")
        load_hpsv3(tmp_path / "HPSv3.safetensors", base)
    vlm_base = tmp_path / "vlm"
    save_tiny_vlm(vlm_base)
    with pytest.raises(BadWeightsError, match="not a Qwen2-VL config"):
        load_hpsv3(checkpoint, vlm_base)
    import json

    other = tmp_path / "other-base"
    shutil.copytree(base, other)
    config = json.loads((other / "config.json").read_text())
    (config.get("text_config") or config)["intermediate_size"] = 96  # another model size than the checkpoint's
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadWeightsError, match="does not match the Qwen2-VL config"):
        load_hpsv3(checkpoint, other)
