"""The pack inside a real ComfyUI server over HTTP: registration, a full graph, errors, the SAMPLER path.

One server per session (conftest.comfy_server) with a thin SD1.5 checkpoint and the test-only pack
tests/host_nodes/fk_test_nodes (an FK_REWARD that needs no weights).
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.host, pytest.mark.slow]

FK_NODES = {
    "FKParticleSampler": {"model", "positive", "negative", "latent_image", "vae", "reward", "seed", "steps", "cfg",
                          "sampler_name", "scheduler", "denoise", "particles", "particle_chunk", "potential",
                          "final_reward", "preview_decoder"},
    "FKSampler": {"vae", "reward", "particles", "particle_chunk", "sampler_name", "return", "potential",
                  "final_reward", "preview_decoder"},
    "FKPotentialSelector": {"potential", "lambda_mode", "strength", "lambda", "every_n_steps", "window_start",
                            "window_end", "ess_threshold", "resampling", "output", "guidance"},
}


def _inputs(info: dict) -> dict:
    return {**info["input"].get("required", {}), **info["input"].get("optional", {})}


def test_object_info_lists_fk_nodes_with_documented_inputs(comfy_server):
    info = comfy_server.object_info()
    for node_id, expected in FK_NODES.items():
        assert node_id in info, f"{node_id} not registered; server log:\n{comfy_server.log_tail()}"
        inputs = _inputs(info[node_id])
        assert set(inputs) == expected
        for name, spec in inputs.items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert info[node_id]["category"] == "model/sampling/FK steering"
    sampler = info["FKParticleSampler"]
    assert sampler["output_name"] == ["best_latent", "best_image", "contact_sheet", "all_particles", "trace_json"]
    assert sampler["output"] == ["LATENT", "IMAGE", "IMAGE", "IMAGE", "STRING"]
    assert "euler_ancestral" in _inputs(sampler)["sampler_name"][1]["options"] or \
        "euler_ancestral" in _inputs(sampler)["sampler_name"][0]
    assert info["FKSampler"]["output"] == ["SAMPLER"]
    assert info["FKPotentialSelector"]["output"] == ["FK_POTENTIAL"]
    assert _inputs(sampler)["reward"][0] == "FK_REWARD"


def fk_graph(ckpt: str, seed: int = 0, batch: int = 1, particles: int = 4) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a lighthouse at dawn"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
        "5": {"class_type": "FKTestBrightnessReward", "inputs": {}},
        "6": {"class_type": "FKPotentialSelector", "inputs": {
            "potential": "diff", "lambda_mode": "fixed", "strength": 0.5, "lambda": 10.0, "every_n_steps": 1,
            "window_start": 0.0, "window_end": 1.0, "ess_threshold": 0.0, "resampling": "systematic",
            "output": "best reward"}},
        "7": {"class_type": "FKParticleSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "vae": ["1", 2], "reward": ["5", 0], "potential": ["6", 0], "seed": seed, "steps": 3, "cfg": 2.0,
            "sampler_name": "euler_ancestral", "scheduler": "normal", "denoise": 1.0, "particles": particles,
            "particle_chunk": 0}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 1]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["7", 2], "filename_prefix": "fk_sheet"}},
    }


def test_graph_runs_and_history_holds_best_image_and_contact_sheet(comfy_server):
    result = comfy_server.run_prompt(fk_graph(comfy_server.ckpt_name, seed=11))
    assert result.status == "success", (result.error, comfy_server.log_tail())
    best = result.outputs("8")["images"]
    sheet = result.outputs("9")["images"]
    assert len(best) == 1 and len(sheet) == 1 and sheet[0]["type"] == "output"
    for image in (best[0], sheet[0]):
        assert comfy_server.view_image(image)[:8] == b"\x89PNG\r\n\x1a\n"
    own = result.outputs("7")  # the node's own preview (contact sheet) and summary text
    assert own["images"] and own["images"][0]["type"] == "temp"
    assert any("chosen" in t for t in own["text"])
    progress = [m for m in result.messages if isinstance(m, dict) and m.get("type") == "progress"]
    assert progress and progress[-1]["data"]["max"] == 3  # one progress event per step, 3 steps
    assert comfy_server.get_json("/system_stats")["system"]  # still answering


def test_batched_latent_is_an_execution_error_not_a_crash(comfy_server):
    result = comfy_server.run_prompt(fk_graph(comfy_server.ckpt_name, seed=12, batch=2))
    assert result.status == "error"
    assert "batch size 1" in result.error["exception_message"]
    assert result.error["node_type"] == "FKParticleSampler"
    assert comfy_server.alive() and comfy_server.get_json("/system_stats")


def test_fk_sampler_in_sampler_custom_graph(comfy_server):
    graph = fk_graph(comfy_server.ckpt_name, seed=13)
    for key in ("7", "8", "9"):
        graph.pop(key)
    graph.update({
        "10": {"class_type": "FKSampler", "inputs": {
            "vae": ["1", 2], "reward": ["5", 0], "particles": 3, "particle_chunk": 0,
            "sampler_name": "dpmpp_2m", "return": "all particles (sorted by reward)", "potential": ["6", 0]}},
        "11": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 3,
                                                          "denoise": 1.0}},
        "12": {"class_type": "SamplerCustom", "inputs": {
            "model": ["1", 0], "add_noise": True, "noise_seed": 3, "cfg": 2.0, "positive": ["2", 0],
            "negative": ["3", 0], "sampler": ["10", 0], "sigmas": ["11", 0], "latent_image": ["4", 0]}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["1", 2]}},
        "14": {"class_type": "PreviewImage", "inputs": {"images": ["13", 0]}},
    })
    result = comfy_server.run_prompt(graph)
    assert result.status == "success", (result.error, comfy_server.log_tail())
    assert len(result.outputs("14")["images"]) == 3  # all particles came back, sorted by reward
