"""CLIP score, HPSv2.1, LAION aesthetic and PickScore: tiny random models of the real classes, saved in the
published file formats and loaded back through the same loaders users hit. No downloads."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from rewards_helpers import distinct_images

from fk_core.rewards import BadWeightsError, MissingWeightsError
from fk_core.rewards.clip_rewards import AestheticMLP, load_clip_score, load_hpsv2, load_laion_aesthetic
from fk_core.rewards.pickscore import load_pickscore

open_clip = pytest.importorskip("open_clip")

TINY_ARCH = "fk-tiny-clip"
TINY_CLIP = {"embed_dim": 32, "quick_gelu": False,
             "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}}


@pytest.fixture(scope="module")
def tiny_clip_files(tmp_path_factory):
    """A random tiny open_clip model registered under TINY_ARCH and saved three ways."""
    folder = tmp_path_factory.mktemp("openclip")
    (folder / "configs").mkdir()
    (folder / "configs" / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "configs")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_ARCH, pretrained=None)
    state = model.state_dict()
    torch.save(state, folder / "plain.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 1}, folder / "hps_style.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "weights.safetensors"))
    return folder


def _check_reward(reward, prompt):
    images = distinct_images(4, 64)
    scores = reward.score(images, prompt)
    assert scores.shape == (4,) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert len(set(scores.tolist())) == 4, "distinct images must get distinct scores"
    assert torch.equal(scores, reward.score(images, prompt)), "deterministic"
    singles = torch.cat([reward.score(images[i:i + 1], prompt) for i in range(4)])
    torch.testing.assert_close(scores, singles, atol=1e-4, rtol=1e-5)
    grad_images = images.clone().requires_grad_(True)
    reward.score(grad_images, prompt).sum().backward()
    assert torch.isfinite(grad_images.grad).all() and grad_images.grad.abs().sum() > 0
    return scores


def test_clip_score_loads_pt_and_safetensors_identically(tiny_clip_files):
    from_pt = load_clip_score(TINY_ARCH, tiny_clip_files / "plain.pt")
    from_st = load_clip_score(TINY_ARCH, tiny_clip_files / "weights.safetensors")
    scores = _check_reward(from_pt, "a photo of a cat")
    torch.testing.assert_close(scores, from_st.score(distinct_images(4, 64), "a photo of a cat"))
    assert not torch.allclose(scores, from_pt.score(distinct_images(4, 64), "a red dog"))
    # Score is 100 * cosine, so it is bounded by 100.
    assert scores.abs().max() <= 100.0
    assert from_pt.needs_prompt and from_pt.differentiable


def test_clip_score_matches_open_clip_reference_math(tiny_clip_files):
    reward = load_clip_score(TINY_ARCH, tiny_clip_files / "plain.pt")
    model = reward.clip
    images = distinct_images(2, 32)  # already at the model's input size: preprocessing is only normalisation
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        image = model.encode_image((images.permute(0, 3, 1, 2) - mean) / std, normalize=True)
        text = model.encode_text(open_clip.get_tokenizer(TINY_ARCH)(["a photo of a cat"]), normalize=True)
    torch.testing.assert_close(reward.score(images, "a photo of a cat"), 100 * (image @ text.T)[:, 0])


def test_hpsv2_checkpoint_with_state_dict_wrapper(tiny_clip_files):
    reward = load_hpsv2(tiny_clip_files / "hps_style.pt", arch=TINY_ARCH)
    scores = _check_reward(reward, "a photo of a cat")
    assert scores.abs().max() <= 1.0, "HPS reports the raw cosine"
    plain = load_clip_score(TINY_ARCH, tiny_clip_files / "plain.pt")
    torch.testing.assert_close(scores * 100, plain.score(distinct_images(4, 64), "a photo of a cat"))


def test_laion_aesthetic_head_on_clip(tiny_clip_files, tmp_path):
    torch.manual_seed(1)
    head = AestheticMLP(TINY_CLIP["embed_dim"]).eval()
    torch.save(head.state_dict(), tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    reward = load_laion_aesthetic(tmp_path / "sac+logos+ava1-l14-linearMSE.pth", tiny_clip_files / "plain.pt",
                                  arch=TINY_ARCH)
    assert not reward.needs_prompt
    scores = _check_reward(reward, None)
    with torch.no_grad():
        expected = head(reward.image_embeddings(distinct_images(4, 64).permute(0, 3, 1, 2))).squeeze(-1)
    torch.testing.assert_close(scores, expected)


def test_open_clip_wrong_files(tiny_clip_files, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BadWeightsError, match="not a readable PyTorch checkpoint"):
        load_clip_score(TINY_ARCH, garbage)
    with pytest.raises(BadWeightsError, match="does not hold ViT-B-32 weights"):
        load_clip_score("ViT-B-32", tiny_clip_files / "plain.pt")
    wrong_head = tmp_path / "head.pth"
    torch.save(AestheticMLP(16).state_dict(), wrong_head)
    with pytest.raises(BadWeightsError, match="aesthetic"):
        load_laion_aesthetic(wrong_head, tiny_clip_files / "plain.pt", arch=TINY_ARCH)
    with pytest.raises(MissingWeightsError, match="neither an existing file nor a known pretrained tag"):
        load_clip_score(TINY_ARCH, tmp_path / "does_not_exist.pt")


def test_open_clip_tag_offline_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as error:
        load_clip_score("ViT-B-32", "openai", cache_dir=tmp_path / "open_clip")
    message = str(error.value)
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message and str(tmp_path / "open_clip") in message


# ---------------------------------------------------------------------------------------------------
# PickScore (transformers CLIPModel + CLIPProcessor)
def _bytes_to_unicode():
    codes = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = codes[:]
    extra = 0
    for byte in range(256):
        if byte not in codes:
            codes.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(codes, map(chr, chars), strict=True))


def _write_clip_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """CLIP's real 49408-token BPE vocabulary rebuilt from open_clip's bundled merges (no hub access)."""
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe) as handle:
        merges = handle.read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    vocab = list(_bytes_to_unicode().values())
    vocab += [token + "</w>" for token in vocab]
    vocab += ["".join(merge.split()) for merge in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder / "vocab.json", folder / "merges.txt"


@pytest.fixture(scope="module")
def pickscore_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("pickscore")
    vocab, merges = _write_clip_tokenizer_files(folder)
    tokenizer = CLIPTokenizer(str(vocab), str(merges), pad_token="!")  # as laion/CLIP-ViT-H-14's tokenizer
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "vocab_size": 49408, "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder / "model")
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder / "processor")
    return folder


def test_pickscore_round_trip(pickscore_dir):
    reward = load_pickscore(pickscore_dir / "model", pickscore_dir / "processor")
    assert len(reward.tokenizer) == 49408
    assert reward.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    scores = _check_reward(reward, "a photo of a cat")
    # PickScore = logit_scale.exp() * cosine, so |score| <= exp(logit_scale).
    assert scores.abs().max() <= reward.model.logit_scale.exp() + 1e-4


def test_pickscore_wrong_dirs(pickscore_dir, tmp_path):
    with pytest.raises(BadWeightsError, match="no config.json"):
        load_pickscore(tmp_path)
    with pytest.raises(BadWeightsError, match="processor"):
        load_pickscore(pickscore_dir / "model", tmp_path)


def test_pickscore_matches_reference_processor_path(pickscore_dir):
    """PickScore's published recipe: CLIPProcessor (PIL) -> get_*_features -> logit_scale * cosine.
    At the model's input size with uint8-exact pixels our torch preprocessing must agree."""
    from PIL import Image
    from transformers import AutoProcessor

    reward = load_pickscore(pickscore_dir / "model", pickscore_dir / "processor")
    processor = AutoProcessor.from_pretrained(str(pickscore_dir / "processor"))
    uint8 = (distinct_images(3, 32) * 255).round().to(torch.uint8)
    inputs = processor(images=[Image.fromarray(a.numpy()) for a in uint8], text=["a photo of a cat"],
                       padding=True, return_tensors="pt")
    model = reward.model
    with torch.no_grad():
        image = model.get_image_features(pixel_values=inputs["pixel_values"])
        text = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        image = image if torch.is_tensor(image) else image.pooler_output
        text = text if torch.is_tensor(text) else text.pooler_output
        image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
        expected = model.logit_scale.exp() * (image @ text.T)[:, 0]
    torch.testing.assert_close(reward.score(uint8.float() / 255, "a photo of a cat"), expected, atol=1e-4, rtol=0)
