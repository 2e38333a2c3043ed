"""fk_core/run_report.py and FrameReward.record without a host: the trace record a host outputs after a run
(its fields in a real ComfyUI run: test_comfy_sampling.py, test_comfy_video.py)."""

from __future__ import annotations

import json

import torch

from fk_core import FKConfig, FKRunOutcome, FrameReward, SamplerChoice, steer


def _result():
    def denoiser(x, sigma):
        return x * 0.5

    reward = lambda x0: torch.tensor([0.1, float("nan"), 0.7, 0.3])
    return steer(denoiser, torch.linspace(3.0, 0.0, 5), torch.randn(4, 2), reward,
                 FKConfig(lmbda=1.0, lambda_mode="fixed"), generator=torch.Generator().manual_seed(0))


def test_trace_dict_adds_the_hosts_fields_to_the_engine_trace():
    result = _result()
    choice = SamplerChoice("euler", "euler_ancestral", "swapped")
    data = FKRunOutcome(result=result, sampler=choice, chunk=2).trace_dict()
    assert {k: data[k] for k in ("chosen_index", "best_index", "particle_chunk", "model_evaluations")} == {
        "chosen_index": result.chosen_index, "best_index": result.best_index, "particle_chunk": 2,
        "model_evaluations": result.model_evaluations}
    assert data["sampler"] == {"requested": "euler", "used": "euler_ancestral", "note": "swapped"}
    assert data["order"] == [2, 3, 0, 1] and "video" not in data  # best first, NaN last
    json.dumps(data)  # JSON-ready as the node outputs it


def test_video_record_says_the_frame_settings_and_the_frames_scored():
    reward = FrameReward(lambda images: images.mean(dim=(1, 2, 3)), frames=3, combine="min", smoothness=0.5)
    record = reward.record(latent_frames=torch.tensor(4), frames_scored=[0, 6, 12])
    assert record == {"latent_frames": 4, "reward": reward.name, "frames": 3, "combine": "min", "smoothness": 0.5,
                      "frames_scored": [0, 6, 12]}
    data = FKRunOutcome(result=_result(), sampler=SamplerChoice("a", "a", None), chunk=4, video=record).trace_dict()
    assert data["video"] == record
