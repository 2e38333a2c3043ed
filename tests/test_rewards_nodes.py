"""FKRewardLoader / FKRewardCombine inside a real ComfyUI host (in-process, CPU): schema, folder lookup,
ModelPatcher memory management, caching, and the error messages users see."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from rewards_helpers import distinct_images
from test_rewards_imagereward import _save_tiny_checkpoint

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def reward_nodes(fk_pack):
    """nodes/rewards.py as ComfyUI loaded it (through its custom-node loader, via the project fixture)."""
    module = sys.modules[f"{fk_pack.__name__}.nodes.rewards"]
    assert {"FKRewardLoader", "FKRewardCombine"} <= {n.define_schema().node_id for n in module.NODES}
    return module


def _pack_rewards(reward_nodes):
    """fk_core.rewards as the pack imported it (relative import): its exception classes are the ones raised."""
    return sys.modules[reward_nodes.__name__.rsplit(".nodes.", 1)[0] + ".fk_core.rewards"]


@pytest.fixture
def reward_folder(reward_nodes, tmp_path, monkeypatch):
    import folder_paths

    exts = folder_paths.folder_names_and_paths[reward_nodes.REWARD_FOLDER][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, reward_nodes.REWARD_FOLDER, ([str(tmp_path)], exts))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reward_nodes._MODEL_CACHE.clear()
    return tmp_path


def test_schema_ids_tooltips_and_registration(reward_nodes):
    assert [node.define_schema().node_id for node in reward_nodes.NODES] == ["FKRewardLoader", "FKRewardCombine"]
    for node in reward_nodes.NODES:
        schema = node.define_schema()
        for item in schema.inputs:
            assert item.tooltip and len(item.tooltip) > 20, f"{schema.node_id}.{item.id} needs a plain tooltip"
        assert [out.io_type for out in schema.outputs] == ["FK_REWARD"]
    import folder_paths

    assert any(p.endswith("fk_rewards") for p in folder_paths.get_folder_paths("fk_rewards"))


def test_pixel_reward_needs_no_weights_or_prompt(reward_nodes, reward_folder):
    out = reward_nodes.FKRewardLoader.execute(reward="sharpness").result[0]
    assert out.name == "sharpness" and callable(out)
    images = distinct_images(3, 32)
    assert out(images).shape == (3,)
    out = reward_nodes.FKRewardLoader.execute(reward="target color", color="0,0,255").result[0]
    assert out.name == "target_color(#0000ff)"


def _tiny_imagereward_folder(root: Path) -> None:
    folder = root / "ImageReward"
    folder.mkdir()
    _save_tiny_checkpoint(folder)
    (folder / "bert-base-uncased").mkdir()
    (folder / "vocab.txt").rename(folder / "bert-base-uncased" / "vocab.txt")


def test_imagereward_from_model_folder_with_patcher_and_cache(reward_nodes, reward_folder):
    _tiny_imagereward_folder(reward_folder)
    first = reward_nodes.FKRewardLoader.execute(reward="ImageReward", prompt="a photo of a cat", device="cpu").result[0]
    assert first.name == "ImageReward" and first.patcher is not None
    scores = first(distinct_images(4, 48))
    assert scores.shape == (4,) and len(set(scores.tolist())) == 4
    assert any(model is first.patcher for model in reward_nodes.mm.loaded_models()), \
        "scoring must go through ComfyUI's memory manager"
    second = reward_nodes.FKRewardLoader.execute(reward="ImageReward", prompt="a red dog", device="cpu").result[0]
    assert second.bound.reward is first.bound.reward, "one model per process, reused across prompts"
    assert not torch.allclose(second(distinct_images(4, 48)), scores)
    # Choosing the file explicitly from the folder list loads the same weights.
    import folder_paths

    assert "ImageReward/ImageReward.pt" in folder_paths.get_filename_list("fk_rewards")
    chosen = reward_nodes.FKRewardLoader.execute(reward="ImageReward", weights="ImageReward/ImageReward.pt",
                                                 prompt="a photo of a cat", device="cpu").result[0]
    torch.testing.assert_close(chosen(distinct_images(4, 48)), scores)


def test_missing_weights_offline_says_which_file_goes_where(reward_nodes, reward_folder):
    # The node file imports fk_core relative to the pack package, so use that copy's exception classes.
    MissingWeightsError = _pack_rewards(reward_nodes).MissingWeightsError
    with pytest.raises(MissingWeightsError) as error:
        reward_nodes.FKRewardLoader.execute(reward="ImageReward", prompt="a cat", device="cpu")
    message = str(error.value)
    assert str(reward_folder / "ImageReward" / "ImageReward.pt") in message
    assert "https://huggingface.co/THUDM/ImageReward/resolve/main/ImageReward.pt" in message
    assert "offline" in message
    assert "med_config.json" in message and "bert-base-uncased/vocab.txt" in message, "all missing files listed"
    with pytest.raises(MissingWeightsError, match="HPS_v2.1_compressed.pt"):
        reward_nodes.FKRewardLoader.execute(reward="HPSv2.1", prompt="a cat", device="cpu")
    with pytest.raises(MissingWeightsError, match="PickScore_v1"):
        reward_nodes.FKRewardLoader.execute(reward="PickScore", prompt="a cat", device="cpu")


def test_wrong_file_and_missing_prompt_are_clear(reward_nodes, reward_folder):
    pack_rewards = _pack_rewards(reward_nodes)
    BadWeightsError, RewardInputError = pack_rewards.BadWeightsError, pack_rewards.RewardInputError
    _tiny_imagereward_folder(reward_folder)
    with pytest.raises(RewardInputError, match="connect the positive prompt"):
        reward_nodes.FKRewardLoader.execute(reward="ImageReward", prompt="  ", device="cpu")
    (reward_folder / "HPSv2").mkdir()
    (reward_folder / "HPSv2" / "HPS_v2.1_compressed.pt").write_bytes(b"html error page instead of weights")
    with pytest.raises(BadWeightsError, match="not a readable PyTorch checkpoint"):
        reward_nodes.FKRewardLoader.execute(reward="HPSv2.1", prompt="a cat", device="cpu")


def test_combine_weights_rewards(reward_nodes, reward_folder):
    load = reward_nodes.FKRewardLoader.execute
    saturation = load(reward="saturation").result[0]
    sharpness = load(reward="sharpness").result[0]
    combined = reward_nodes.FKRewardCombine.execute(reward_a=saturation, weight_a=1.0, reward_b=sharpness,
                                                    weight_b=-0.5).result[0]
    images = distinct_images(3, 32)
    torch.testing.assert_close(combined(images), saturation(images) - 0.5 * sharpness(images))
    assert combined.name == "saturation - 0.5*sharpness"
    nested = reward_nodes.FKRewardCombine.execute(reward_a=combined, weight_a=2.0).result[0]
    torch.testing.assert_close(nested(images), 2 * combined(images))
    with pytest.raises(ValueError, match="at least one reward"):
        reward_nodes.FKRewardCombine.execute(reward_a=saturation, weight_a=0.0)


def test_imagereward_chosen_file_with_flat_vocab_needs_no_download(reward_nodes, reward_folder):
    """A checkpoint picked from another subfolder, with med_config.json and vocab.txt beside it: nothing
    else is looked up or downloaded (offline mode would raise if it were)."""
    (reward_folder / "mine").mkdir()
    _save_tiny_checkpoint(reward_folder / "mine")
    out = reward_nodes.FKRewardLoader.execute(reward="ImageReward", weights="mine/ImageReward.pt",
                                              prompt="a photo of a cat", device="cpu").result[0]
    assert out(distinct_images(2, 48)).shape == (2,)


# ---------------------------------------------------------------------------------------------------
# The final judges and the detector through the loader node
def test_vlm_judge_from_model_folder_with_question_and_patcher(reward_nodes, reward_folder):
    from test_rewards_vlm import save_tiny_vlm

    save_tiny_vlm(reward_folder / "vlm" / "Qwen2.5-VL-3B-Instruct")
    load = reward_nodes.FKRewardLoader.execute
    judge = load(reward="VLM judge (Qwen-VL)", prompt="a photo of a cat", device="cpu").result[0]
    scores = judge(distinct_images(3, 64))
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    assert any(model is judge.patcher for model in reward_nodes.mm.loaded_models())
    other = load(reward="VLM judge (Qwen-VL)", prompt="a photo of a cat", device="cpu",
                 question="Is there {prompt} here?").result[0]
    assert other.bound.reward.model is judge.bound.reward.model, "a new question reuses the loaded model"
    assert not torch.allclose(other(distinct_images(3, 64)), scores)
    with pytest.raises(ValueError, match=r"FK Reward Loader: question 'Is it nice\?' has no \{prompt\}"):
        load(reward="VLM judge (Qwen-VL)", prompt="a cat", device="cpu", question="Is it nice?")
    # The same model picked as a weights file (any shard stands for its folder) or typed as a folder path.
    picked = load(reward="VLM judge (Qwen-VL)", prompt="a photo of a cat", device="cpu",
                  weights="vlm/Qwen2.5-VL-3B-Instruct/model.safetensors").result[0]
    torch.testing.assert_close(picked(distinct_images(3, 64)), scores)
    typed = load(reward="VLM judge (Qwen-VL)", prompt="a photo of a cat", device="cpu",
                 judge_model=str(reward_folder / "vlm" / "Qwen2.5-VL-3B-Instruct")).result[0]
    torch.testing.assert_close(typed(distinct_images(3, 64)), scores)


def test_judges_offline_name_the_repository_and_folder(reward_nodes, reward_folder):
    MissingWeightsError = _pack_rewards(reward_nodes).MissingWeightsError
    load = reward_nodes.FKRewardLoader.execute
    with pytest.raises(MissingWeightsError) as error:
        load(reward="VLM judge (Qwen-VL)", prompt="a cat", device="cpu", judge_model="Qwen/Qwen3-VL-4B-Instruct")
    assert "https://huggingface.co/Qwen/Qwen3-VL-4B-Instruct" in str(error.value)
    assert str(reward_folder / "vlm" / "Qwen3-VL-4B-Instruct") in str(error.value) and "offline" in str(error.value)
    with pytest.raises(MissingWeightsError) as error:
        load(reward="HPSv3", prompt="a cat", device="cpu")
    assert str(reward_folder / "HPSv3" / "HPSv3.safetensors") in str(error.value)
    assert "huggingface.co/MizzenAI/HPSv3" in str(error.value)
    with pytest.raises(MissingWeightsError, match="owlv2-base-patch16-ensemble"):
        load(reward="object counts (OWLv2)", objects="2 dog", device="cpu")


def test_hpsv3_from_its_folder(reward_nodes, reward_folder):
    from test_rewards_vlm import save_tiny_hpsv3

    save_tiny_hpsv3(reward_folder / "HPSv3")
    out = reward_nodes.FKRewardLoader.execute(reward="HPSv3", prompt="a photo of a cat", device="cpu").result[0]
    assert out.name == "HPSv3" and out(distinct_images(2, 64)).shape == (2,)


def test_detector_reads_the_object_list_before_loading(reward_nodes, reward_folder, caplog):
    pytest.importorskip("open_clip")
    from test_rewards_detector import save_tiny_owlv2

    load = reward_nodes.FKRewardLoader.execute
    FKError = sys.modules[reward_nodes.__name__.rsplit(".nodes.", 1)[0] + ".fk_core"].FKError
    with pytest.raises(FKError, match="FK Reward Loader: objects is empty"):
        load(reward="object counts (OWLv2)", device="cpu")
    with pytest.raises(FKError, match="FK Reward Loader: objects '2 dog, 1 dog' cannot be read"):
        load(reward="object counts (OWLv2)", objects="2 dog, 1 dog", device="cpu")
    folder = reward_folder / "owlv2" / "owlv2-base-patch16-ensemble"
    folder.mkdir(parents=True)
    save_tiny_owlv2(folder)
    with caplog.at_level("INFO"):
        out = load(reward="object counts (OWLv2)", objects="2 dog, a red ball", device="cpu").result[0]
    assert out.name == "object counts: 2 x 'dog', 1 x 'red ball'"
    assert out.notes == ["object counts looks for 2 x 'dog', 1 x 'red ball' (detection score above 0.3)"]
    assert "2 x 'dog', 1 x 'red ball'" in caplog.text, "the node says what it understood"
    assert out(distinct_images(2, 64)).shape == (2,)


@pytest.mark.parametrize("value", ["../../../../../../../../etc", "/etc", "/nonexistent/model", "~/x"])
def test_judge_model_confined_when_run(reward_nodes, value):
    """Issue 19: a linked judge_model is checked again when the loader runs (same message as at queue time)."""
    with pytest.raises(ValueError) as error:
        reward_nodes.FKRewardLoader.execute(reward="VLM judge (Qwen-VL)", prompt="a cat", device="cpu",
                                            judge_model=value)
    text = str(error.value)
    assert text.startswith("FK Reward Loader: judge_model ") and "model folder" in text
    assert "weights" not in text and "huggingface.co" not in text


def test_object_counts_must_be_whole_and_not_negative(reward_nodes):
    with pytest.raises(ValueError, match=r"FK Reward Loader: objects '-1 cat' .*whole number.*; list what"):
        reward_nodes.FKRewardLoader.execute(reward="object counts (OWLv2)", device="cpu", objects="-1 cat")
