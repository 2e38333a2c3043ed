"""The bad-input cases of tests/test_bad_inputs.py: API graphs a careless user (or script) could queue.

Each :class:`Case` says what the server must answer: ``rejected`` (HTTP 400 with node_errors, nothing runs),
``error`` (an execution error from the named node), ``success`` with a note in the sampler's text, or
``interrupted``. ``says`` are substrings the message must contain: the node and input (``"<Node>: <input>"``)
and the advice. Sizes are tiny (64x64 images, 3 steps, 2 particles) so the whole list runs in a few minutes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

NAN, INF = float("nan"), float("inf")

# Node ids of the base graph.
CKPT, POS, NEG, LATENT, REWARD, POTENTIAL, SAMPLER, PREVIEW = "1", "2", "3", "4", "5", "6", "7", "8"
LOADER, COMBINE, STRING, CHARTS, FLOAT_IN = "20", "21", "30", "31", "32"
FK_SAMPLER, SCHEDULER, CUSTOM, DECODE, PREVIEW_2, SIGMAS_EDIT = "10", "11", "12", "13", "14", "15"

PS, FS, SEL, LOAD, COMB, TC = ("FK Particle Sampler", "FK Sampler", "FK Potential Selector", "FK Reward Loader",
                               "FK Reward Combine", "FK Trace Charts")
SCORE, SCORE_NODE, IMAGE_IN = "FK Score Images", "33", "34"


@dataclass
class Case:
    id: str
    graph: dict
    expect: str  # rejected | error | success | interrupted
    says: list[str] = field(default_factory=list)
    node: str | None = None  # node id the error must come from
    never: list[str] = field(default_factory=list)  # substrings the message must not contain


def base_graph(ckpt: str, seed: int = 0, steps: int = 3, particles: int = 2) -> dict:
    return {
        CKPT: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        POS: {"class_type": "CLIPTextEncode", "inputs": {"clip": [CKPT, 1], "text": "a lighthouse"}},
        NEG: {"class_type": "CLIPTextEncode", "inputs": {"clip": [CKPT, 1], "text": "blurry"}},
        LATENT: {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        REWARD: {"class_type": "FKTestBrightnessReward", "inputs": {}},
        POTENTIAL: {"class_type": "FKPotentialSelector", "inputs": {
            "potential": "max", "lambda_mode": "fixed", "strength": 0.5, "lambda": 10.0, "every_n_steps": 1,
            "window_start": 0.0, "window_end": 1.0,
            "ess_threshold": 0.0, "resampling": "systematic", "output": "best reward"}},
        SAMPLER: {"class_type": "FKParticleSampler", "inputs": {
            "model": [CKPT, 0], "positive": [POS, 0], "negative": [NEG, 0], "latent_image": [LATENT, 0],
            "vae": [CKPT, 2], "reward": [REWARD, 0], "potential": [POTENTIAL, 0], "seed": seed, "steps": steps,
            "cfg": 2.0, "sampler_name": "euler_ancestral", "scheduler": "normal", "denoise": 1.0,
            "particles": particles, "particle_chunk": 0}},
        PREVIEW: {"class_type": "PreviewImage", "inputs": {"images": [SAMPLER, 1]}},
    }


def sampler_path_graph(ckpt: str, seed: int = 0) -> dict:
    graph = base_graph(ckpt, seed)
    for key in (SAMPLER, PREVIEW):
        graph.pop(key)
    graph.update({
        FK_SAMPLER: {"class_type": "FKSampler", "inputs": {
            "vae": [CKPT, 2], "reward": [REWARD, 0], "particles": 2, "particle_chunk": 0,
            "sampler_name": "euler_ancestral", "return": "best particle", "potential": [POTENTIAL, 0]}},
        SCHEDULER: {"class_type": "BasicScheduler", "inputs": {"model": [CKPT, 0], "scheduler": "normal",
                                                               "steps": 3, "denoise": 1.0}},
        CUSTOM: {"class_type": "SamplerCustom", "inputs": {
            "model": [CKPT, 0], "add_noise": True, "noise_seed": seed, "cfg": 2.0, "positive": [POS, 0],
            "negative": [NEG, 0], "sampler": [FK_SAMPLER, 0], "sigmas": [SCHEDULER, 0],
            "latent_image": [LATENT, 0]}},
        DECODE: {"class_type": "VAEDecode", "inputs": {"samples": [CUSTOM, 0], "vae": [CKPT, 2]}},
        PREVIEW_2: {"class_type": "PreviewImage", "inputs": {"images": [DECODE, 0]}},
    })
    return graph


def charts_graph(trace_text: str, width: int = 320, highlight: int = -1) -> dict:
    return {
        STRING: {"class_type": "PrimitiveString", "inputs": {"value": trace_text}},
        CHARTS: {"class_type": "FKTraceCharts", "inputs": {"trace": [STRING, 0], "width": width, "height": 160,
                                                           "highlight": highlight}},
    }


def _with(graph: dict, node: str, **inputs) -> dict:
    graph = copy.deepcopy(graph)
    graph[node]["inputs"].update(inputs)
    return graph


def _with_loader(ckpt: str, **inputs) -> dict:
    graph = base_graph(ckpt)
    loader = {"reward": "sharpness", "weights": "auto (default file, downloaded if missing)", "prompt": "a cat",
              "device": "cpu", "precision": "auto", "clip_architecture": "ViT-L-14", "clip_pretrained": "openai",
              "target": 0.5, "color": "#ff8800"}
    loader.update(inputs)
    graph[LOADER] = {"class_type": "FKRewardLoader", "inputs": loader}
    graph[SAMPLER]["inputs"]["reward"] = [LOADER, 0]
    return graph


def _with_combine(ckpt: str, **weights) -> dict:
    graph = base_graph(ckpt)
    inputs = {"reward_a": [REWARD, 0], "weight_a": 1.0, "weight_b": 1.0, "weight_c": 1.0, "weight_d": 1.0}
    inputs.update(weights)
    graph[COMBINE] = {"class_type": "FKRewardCombine", "inputs": inputs}
    graph[SAMPLER]["inputs"]["reward"] = [COMBINE, 0]
    return graph


def _number_cases(prefix: str, graph: dict, node: str, display: str, name: str, values) -> list[Case]:
    return [Case(f"{prefix}-{name}={v}", _with(graph, node, **{name: v}), "rejected", [f"{display}: {name}"], node)
            for v in values]


def judge_model_cases(ckpt: str, models_dir: str | None = None) -> list[Case]:
    """judge_model confined to hub ids and folders inside ComfyUI's model folders (issue 19): traversal, folders
    elsewhere, files, '~' and relative paths are refused by name, never blamed on weights, never sent to the hub."""
    values = ["../../../../../../../../etc", "/etc", "/nonexistent/model", "~/models/qwen", "Qwen/../../etc",
              "C:\\models\\qwen", "models/vlm/qwen/extra", "/etc/passwd", "Qwen/Qwen2.5-VL-3B.safetensors"]
    if models_dir is not None:  # a checkpoint file inside the model folders: a file, not a model folder
        values.append(f"{models_dir}/checkpoints/{ckpt}")
    cases = []
    for reward in ("VLM judge (Qwen-VL)", "object counts (OWLv2)"):
        for value in values:
            graph = _with_loader(ckpt, reward=reward, judge_model=value, objects="1 cat")
            cases.append(Case(f"loader-{reward.split()[0]}-judge_model={value!r}", graph, "rejected",
                              [f"{LOAD}: judge_model", "model folder"], LOADER,
                              never=["weights", "huggingface.co/"]))
    for value in ("-1 cat", "1.5 cat", "+2 dog", "2 dog, -3 cat"):
        graph = _with_loader(ckpt, reward="object counts (OWLv2)", objects=value)
        cases.append(Case(f"loader-objects={value!r}", graph, "rejected",
                          [f"{LOAD}: objects", "whole number", "e.g. '2 dog"], LOADER))
    return cases


def score_graph(batch_size=8, columns=0) -> dict:
    """FK Score Images on a plain image batch with a pixel reward (no checkpoint needed)."""
    return {
        IMAGE_IN: {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 3, "color": 255}},
        LOADER: {"class_type": "FKRewardLoader", "inputs": {
            "reward": "saturation", "weights": "auto (default file, downloaded if missing)", "device": "cpu",
            "precision": "auto"}},
        SCORE_NODE: {"class_type": "FKScoreImages", "inputs": {"images": [IMAGE_IN, 0], "reward": [LOADER, 0],
                                                               "batch_size": batch_size, "columns": columns}},
    }


def rejected_cases(ckpt: str, models_dir: str | None = None) -> list[Case]:
    """Refused when the prompt is queued (HTTP 400), before any node runs."""
    g = base_graph(ckpt)
    s = sampler_path_graph(ckpt)
    cases: list[Case] = []
    # FK Potential Selector: every float NaN/inf/out of range, ints out of range, unknown combos.
    cases += _number_cases("selector", g, POTENTIAL, SEL, "lambda", [NAN, INF, -INF, 1e9, -2000.0])
    cases += _number_cases("selector", g, POTENTIAL, SEL, "every_n_steps", [0, -3, 100000])
    cases += _number_cases("selector", g, POTENTIAL, SEL, "window_start", [NAN, INF, -0.1, 1.5])
    cases += _number_cases("selector", g, POTENTIAL, SEL, "window_end", [NAN, -INF, 2.0])
    cases += _number_cases("selector", g, POTENTIAL, SEL, "ess_threshold", [NAN, INF, -0.5, 1.5])
    cases += _number_cases("selector", g, POTENTIAL, SEL, "strength", [NAN, -INF, -0.1, 1.5])
    cases += _number_cases("selector", g, POTENTIAL, SEL, "guidance", [NAN, INF, -0.5, 11.0])
    cases.append(Case("selector-window-reversed", _with(g, POTENTIAL, window_start=0.8, window_end=0.2), "rejected",
                      [f"{SEL}: window_start", "at most window_end"], POTENTIAL))
    for name, value in (("potential", "best"), ("potential", "MAX"), ("potential", ""), ("resampling", "bogus"),
                        ("output", "best"), ("lambda_mode", "manual")):
        cases.append(Case(f"selector-{name}={value!r}", _with(g, POTENTIAL, **{name: value}), "rejected",
                          [f"{SEL}: {name} has an unknown value", "choose one of"], POTENTIAL))
    # FK Particle Sampler widgets.
    cases += _number_cases("particle", g, SAMPLER, PS, "cfg", [NAN, INF, -1.0, 1000.0])
    cases += _number_cases("particle", g, SAMPLER, PS, "denoise", [NAN, INF, -0.5, 2.0])
    cases.append(Case("particle-denoise=0", _with(g, SAMPLER, denoise=0.0), "rejected",
                      [f"{PS}: denoise", "set denoise above 0"], SAMPLER))
    cases += _number_cases("particle", g, SAMPLER, PS, "steps", [0, 100000])
    cases += _number_cases("particle", g, SAMPLER, PS, "seed", [-1])
    cases += _number_cases("particle", g, SAMPLER, PS, "particles", [0, -2, 100000])
    cases += _number_cases("particle", g, SAMPLER, PS, "particle_chunk", [-1, 100000])
    for name, value in (("sampler_name", "nope"), ("sampler_name", ""), ("scheduler", "nope"),
                        ("scheduler", "Normal")):
        cases.append(Case(f"particle-{name}={value!r}", _with(g, SAMPLER, **{name: value}), "rejected",
                          [f"{PS}: {name} has an unknown value", "choose one of"], SAMPLER))
    # FK Sampler widgets.
    cases += _number_cases("sampler", s, FK_SAMPLER, FS, "particles", [0, 9999])
    cases += _number_cases("sampler", s, FK_SAMPLER, FS, "particle_chunk", [-1])
    for name, value in (("sampler_name", "nope"), ("return", "everything")):
        cases.append(Case(f"sampler-{name}={value!r}", _with(s, FK_SAMPLER, **{name: value}), "rejected",
                          [f"{FS}: {name} has an unknown value", "choose one of"], FK_SAMPLER))
    # FK Reward Loader: unknown combos, path traversal in every file-name or tag input, devices, targets.
    for name, value in (("reward", "nope"), ("precision", "fp8")):
        cases.append(Case(f"loader-{name}={value!r}", _with_loader(ckpt, **{name: value}), "rejected",
                          [f"{LOAD}: {name} has an unknown value", "choose one of"], LOADER))
    for value in ("../../../etc/passwd", "/etc/passwd", "..\\..\\secret.pt", "C:\\Windows\\x.pt", "~/x.pt",
                  "ImageReward/../../../../etc/hosts"):
        cases.append(Case(f"loader-weights={value!r}", _with_loader(ckpt, reward="ImageReward", weights=value),
                          "rejected", [f"{LOAD}: weights", "pick a weights file from the list"], LOADER))
    cases.append(Case("loader-weights-not-in-list", _with_loader(ckpt, reward="ImageReward", weights="missing.pt"),
                      "rejected", [f"{LOAD}: weights has an unknown value", "choose one of"], LOADER))
    for value in ("/etc/passwd", "../../etc/passwd.pt", "~/.ssh/id_rsa", "..\\..\\x.bin", "open_clip/../../y.pt"):
        cases.append(Case(f"loader-clip_pretrained={value!r}", _with_loader(ckpt, reward="CLIP score",
                                                                            clip_pretrained=value),
                          "rejected", [f"{LOAD}: clip_pretrained", "model folder"], LOADER))
    cases.append(Case("loader-clip_pretrained-unknown-tag", _with_loader(ckpt, reward="CLIP score",
                                                                         clip_pretrained="no_such_tag"),
                      "rejected", [f"{LOAD}: clip_pretrained", "not a published weights tag", "openai"], LOADER))
    cases.append(Case("loader-clip_pretrained-missing-file",
                      _with_loader(ckpt, reward="LAION aesthetic", clip_pretrained="missing_clip.safetensors"),
                      "rejected", [f"{LOAD}: clip_pretrained", "is not in models/fk_rewards"], LOADER))
    cases.append(Case("loader-clip_architecture-traversal", _with_loader(ckpt, reward="LAION aesthetic",
                                                                         clip_architecture="../../etc/passwd"),
                      "rejected", [f"{LOAD}: clip_architecture", "not an open_clip model"], LOADER))
    cases.append(Case("loader-clip_architecture-unknown", _with_loader(ckpt, reward="CLIP score",
                                                                       clip_architecture="ViT-Q-99"),
                      "rejected", [f"{LOAD}: clip_architecture", "not an open_clip model"], LOADER))
    for value in ("cuda", "gpu:1"):
        cases.append(Case(f"loader-device={value}", _with_loader(ckpt, device=value), "rejected",
                          [f"{LOAD}: device", "choose"], LOADER))
    cases.append(Case("loader-device=tpu", _with_loader(ckpt, device="tpu"), "rejected",
                      [f"{LOAD}: device has an unknown value", "choose one of"], LOADER))
    for value in (NAN, INF, -0.1, 1.5):
        cases.append(Case(f"loader-target={value}", _with_loader(ckpt, reward="brightness", target=value),
                          "rejected", [f"{LOAD}: target"], LOADER))
    cases.append(Case("loader-contrast-target-0.8", _with_loader(ckpt, reward="contrast", target=0.8), "rejected",
                      [f"{LOAD}: target", "0 … 0.5 for contrast"], LOADER))
    cases += judge_model_cases(ckpt, models_dir)
    # FK Score Images widgets.
    for name, value in (("batch_size", 0), ("batch_size", 300), ("columns", -1), ("columns", 1000)):
        cases.append(Case(f"score-{name}={value}", score_graph(**{name: value}), "rejected", [f"{SCORE}: {name}"],
                          SCORE_NODE))
    cases.append(Case("socket-score-reward-from-image", _with(score_graph(), SCORE_NODE, reward=[IMAGE_IN, 0]),
                      "rejected", ["reward"], SCORE_NODE))
    # FK Reward Combine weights.
    for name, value in (("weight_a", NAN), ("weight_b", INF), ("weight_c", -INF), ("weight_d", 1e6)):
        cases.append(Case(f"combine-{name}={value}", _with_combine(ckpt, **{name: value}), "rejected",
                          [f"{COMB}: {name}"], COMBINE))
    # FK Trace Charts widgets.
    charts = charts_graph("{}")
    for name, value in (("width", 10), ("width", 100000), ("height", 0), ("highlight", -5)):
        cases.append(Case(f"charts-{name}={value}", _with(charts, CHARTS, **{name: value}), "rejected",
                          [f"{TC}: {name}"], CHARTS))
    # Wrong socket types: ComfyUI's own type check answers (the input is named).
    wrong = [("reward-from-vae", SAMPLER, "reward", [CKPT, 2]), ("potential-from-latent", SAMPLER, "potential",
                                                                   [LATENT, 0]),
             ("latent-from-conditioning", SAMPLER, "latent_image", [POS, 0]), ("vae-from-model", SAMPLER, "vae",
                                                                             [CKPT, 0])]
    combine = _with_combine(ckpt, reward_b=[LATENT, 0])
    cases.append(Case("socket-combine-reward-from-latent", combine, "rejected", ["reward_b"], COMBINE))
    for case_id, node, name, link in wrong:
        cases.append(Case(f"socket-{case_id}", _with(g, node, **{name: link}), "rejected", [name], node))
    return cases


def _broken_reward(ckpt: str, mode: str, chunk: int = 0, steps: int = 3) -> dict:
    graph = base_graph(ckpt, steps=steps)
    graph["40"] = {"class_type": "FKTestBrokenReward", "inputs": {"mode": mode}}
    graph[SAMPLER]["inputs"].update(reward=["40", 0], particle_chunk=chunk)
    return graph


def _bad_latent(ckpt: str, mode: str) -> dict:
    graph = base_graph(ckpt)
    graph["41"] = {"class_type": "FKTestBadLatent", "inputs": {"mode": mode}}
    graph[SAMPLER]["inputs"]["latent_image"] = ["41", 0]
    return graph


def execution_cases(ckpt: str, traces: dict[str, str]) -> list[Case]:
    """Accepted when queued, refused by the node when it runs (linked values, tensors, files, traces)."""
    g = base_graph(ckpt)
    s = sampler_path_graph(ckpt)
    cases: list[Case] = []
    # Trace Charts on malformed traces: the message names the field.
    for name, text, says in (
        ("not-json", "{not json", "not valid JSON"),
        ("wrong-format", '{"format": "other"}', "not an FK steering trace"),
        ("missing-steps", traces["missing-steps"], "field 'steps' is missing"),
        ("step-is-int", traces["step-is-int"], "field 'steps[0]' is 7"),
        ("spliced", traces["spliced"], "spliced"),
        ("text-reward", traces["text-reward"], "field 'steps[0].rewards[1]' is the text"),
        ("float-ancestor", traces["float-ancestor"], "field 'steps[0].ancestors[0]' is 0.0"),
        ("text-step-count", traces["text-step-count"], "field 'num_steps'"),
        ("huge-claim", traces["huge-claim"], "claims 3000000 particles"),
    ):
        cases.append(Case(f"charts-trace-{name}", charts_graph(text), "error",
                          [f"{TC}: trace", says, "connect the trace_json output"], CHARTS))
    cases.append(Case("charts-highlight-beyond-particles", charts_graph(traces["good"], highlight=99), "error",
                      [f"{TC}: highlight is 99", "set highlight to -1"], CHARTS))
    # Widget values linked from primitive nodes are not checked at queue time: the node checks them itself.
    for name, value in (("cfg", NAN), ("denoise", NAN)):
        graph = _with(g, SAMPLER, **{name: [FLOAT_IN, 0]})
        graph[FLOAT_IN] = {"class_type": "PrimitiveFloat", "inputs": {"value": value}}
        cases.append(Case(f"particle-linked-{name}={value}", graph, "error", [f"{PS}: {name}"], SAMPLER))
    graph = _with(g, POTENTIAL, **{"lambda": [FLOAT_IN, 0]})
    graph[FLOAT_IN] = {"class_type": "PrimitiveFloat", "inputs": {"value": NAN}}
    cases.append(Case("selector-linked-lambda=nan", graph, "error", [f"{SEL}: lambda is NaN"], POTENTIAL))
    # Guided proposals (fk_core.guidance) need a differentiable reward and a sampler with a known step density.
    graph = _with(_with_loader(ckpt, reward="JPEG compressibility"), POTENTIAL, guidance=1.0)
    cases.append(Case("guidance-jpeg-reward", graph, "error", [f"{PS}: guidance", "not", "differentiable",
                                                                "set guidance to 0"], SAMPLER))
    graph = _with(_with(g, POTENTIAL, guidance=1.0), SAMPLER, sampler_name="dpmpp_2m_sde")
    cases.append(Case("guidance-dpmpp-2m-sde", graph, "error", [f"{PS}: guidance", "'dpmpp_2m_sde'",
                                                                 "pick euler_ancestral"], SAMPLER))
    # Latents, conditioning, masks.
    cases.append(Case("latent-batch-2", _with(g, LATENT, batch_size=2), "error",
                      [f"{PS}: latent_image has batch 2", "batch size 1"], SAMPLER))
    for mode, says in (("nan", "contains NaN/inf"), ("inf", "contains NaN/inf"), ("16 channels", "16 channels")):
        cases.append(Case(f"latent-{mode}", _bad_latent(ckpt, mode), "error", [f"{PS}: latent_image", says],
                          SAMPLER))
    graph = copy.deepcopy(g)
    graph["42"] = {"class_type": "FKTestNaNConditioning", "inputs": {"conditioning": [POS, 0]}}
    graph[SAMPLER]["inputs"]["positive"] = ["42", 0]
    cases.append(Case("conditioning-nan", graph, "error", [f"{PS}: positive conditioning contains NaN/inf",
                                                           "not the cause"], SAMPLER))
    graph = copy.deepcopy(g)
    graph["43"] = {"class_type": "ConditioningConcat", "inputs": {"conditioning_to": [POS, 0],
                                                                  "conditioning_from": [NEG, 0]}}
    graph["44"] = {"class_type": "FKTestNaNConditioning", "inputs": {"conditioning": ["43", 0]}}
    graph[SAMPLER]["inputs"]["negative"] = ["44", 0]
    cases.append(Case("conditioning-nan-negative", graph, "error", [f"{PS}: negative conditioning"], SAMPLER))
    graph = copy.deepcopy(g)
    graph["50"] = {"class_type": "FKTestNaNConditioning", "inputs": {"conditioning": [POS, 0], "mode": "batch 2"}}
    graph[SAMPLER]["inputs"]["positive"] = ["50", 0]
    cases.append(Case("conditioning-batch-2", graph, "error", ["positive", "batch"], SAMPLER))
    graph = copy.deepcopy(g)
    graph["45"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 13, "height": 7}}
    graph["46"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": [LATENT, 0], "mask": ["45", 0]}}
    graph[SAMPLER]["inputs"]["latent_image"] = ["46", 0]
    cases.append(Case("mask-wrong-size", graph, "error", [f"{PS}: latent_image", "noise mask"], SAMPLER))
    # Memory: refused before the particle latents are allocated (8192² x 256 particles: ~400 GB of previews,
    # more than any test machine has, so the case can never start a real run).
    cases.append(Case("memory-estimate", _with(_with(g, LATENT, width=8192, height=8192), SAMPLER, particles=256),
                      "error", [f"{PS}: particles (256)", "GiB", "particle_chunk"], SAMPLER))
    # Rewards that misbehave are reported as reward problems.
    for mode, says in (("nan", "returned NaN/inf for every particle"), ("inf", "returned NaN/inf"),
                       ("wrong shape", "returned 3 scores for 2 images"), ("raise", "failed while scoring")):
        cases.append(Case(f"reward-{mode}", _broken_reward(ckpt, mode), "error", [f"{PS}: reward", says], SAMPLER))
    # Reward weights: missing (offline), corrupt, truncated, of the wrong model.
    cases.append(Case("weights-missing-offline", _with_loader(ckpt, reward="ImageReward"), "error",
                      [f"{LOAD}: weights for ImageReward are missing", "ImageReward.pt", "fk_rewards"], LOADER))
    cases.append(Case("weights-garbage-hps", _with_loader(ckpt, reward="HPSv2.1"), "error",
                      [f"{LOAD}: weights for HPSv2.1 are not usable", "not a readable"], LOADER))
    cases.append(Case("weights-truncated", _with_loader(ckpt, reward="CLIP score", clip_architecture="ViT-B-32",
                                                        weights="corrupt/truncated.safetensors"), "error",
                      [f"{LOAD}: weights for CLIP score are not usable", "truncated.safetensors"], LOADER))
    cases.append(Case("weights-wrong-model", _with_loader(ckpt, reward="CLIP score", clip_architecture="ViT-B-32",
                                                          weights="corrupt/wrong_model.safetensors"), "error",
                      [f"{LOAD}: weights for CLIP score are not usable", "does not hold ViT-B-32"], LOADER))
    cases.append(Case("loader-color-unreadable", _with_loader(ckpt, reward="target color", color="not a colour"),
                      "error", [f"{LOAD}: color"], LOADER))
    cases.append(Case("weights-garbage-pt", _with_loader(ckpt, reward="CLIP score", clip_architecture="ViT-B-32",
                                                         weights="corrupt/garbage.pt"), "error",
                      [f"{LOAD}: weights for CLIP score are not usable", "not a readable PyTorch checkpoint"],
                      LOADER))
    # The SAMPLER path: sigmas that no sampler can run.
    graph = copy.deepcopy(s)
    graph[SIGMAS_EDIT] = {"class_type": "FlipSigmas", "inputs": {"sigmas": [SCHEDULER, 0]}}
    graph[CUSTOM]["inputs"]["sigmas"] = [SIGMAS_EDIT, 0]
    cases.append(Case("sigmas-increasing", graph, "error", [f"{FS}: sigmas increase"], CUSTOM))
    graph = copy.deepcopy(s)
    graph[SIGMAS_EDIT] = {"class_type": "SplitSigmas", "inputs": {"sigmas": [SCHEDULER, 0], "step": 0}}
    graph[CUSTOM]["inputs"]["sigmas"] = [SIGMAS_EDIT, 0]
    cases.append(Case("sigmas-one-value", graph, "error", [f"{FS}: sigmas has 1 value"], CUSTOM))
    graph = _bad_latent(ckpt, "nan")
    graph.update({k: v for k, v in sampler_path_graph(ckpt).items() if k not in graph})
    graph[CUSTOM]["inputs"]["latent_image"] = ["41", 0]
    for key in (SAMPLER, PREVIEW):
        graph.pop(key)
    cases.append(Case("sampler-path-latent-nan", graph, "error", [f"{FS}: latent_image", "NaN/inf"], CUSTOM))
    graph = copy.deepcopy(s)
    graph["42"] = {"class_type": "FKTestNaNConditioning", "inputs": {"conditioning": [POS, 0]}}
    graph[CUSTOM]["inputs"]["positive"] = ["42", 0]
    cases.append(Case("sampler-path-conditioning-nan", graph, "error", [f"{FS}: positive conditioning",
                                                                        "NaN/inf"], CUSTOM))
    graph = copy.deepcopy(s)
    graph["47"] = {"class_type": "FKTestOutOfMemoryModel", "inputs": {"model": [CKPT, 0]}}
    graph[CUSTOM]["inputs"]["model"] = ["47", 0]
    graph[FK_SAMPLER]["inputs"]["particle_chunk"] = 1
    cases.append(Case("sampler-path-out-of-memory", graph, "error", [f"{FS}: particles (2, model run in chunks of 1)",
                                                                     "ran out of memory"], CUSTOM))
    # Out of memory in a chunk (simulated): reported with the advice, models freed.
    graph = copy.deepcopy(g)
    graph["47"] = {"class_type": "FKTestOutOfMemoryModel", "inputs": {"model": [CKPT, 0]}}
    graph[SAMPLER]["inputs"].update(model=["47", 0], particle_chunk=1)
    cases.append(Case("out-of-memory-in-chunk", graph, "error", [f"{PS}: particles (2, model run in chunks of 1)",
                                                                 "ran out of memory", "particle_chunk"], SAMPLER))
    return cases


def note_cases(ckpt: str) -> list[Case]:
    """Legal but surprising: the run goes on and the sampler's text output (FK Sampler: the console) carries
    the note."""
    g = base_graph(ckpt)
    split = sampler_path_graph(ckpt)
    split[SIGMAS_EDIT] = {"class_type": "SplitSigmas", "inputs": {"sigmas": [SCHEDULER, 0], "step": 2}}
    split[CUSTOM]["inputs"]["sigmas"] = [SIGMAS_EDIT, 0]
    steep = _broken_reward(ckpt, "steep", steps=6)
    strong = _with(_with(steep, POTENTIAL, potential="diff", **{"lambda": 1000.0}), SAMPLER, particles=4)
    return [
        Case("note-sigmas-end-above-zero", split, "success", ["FK Sampler: the schedule ends at sigma"], None),
        Case("note-lambda-so-large-one-particle-survives", strong, "success", ["every check kept only one"],
             SAMPLER),
        Case("note-negative-lambda", _with(g, POTENTIAL, **{"lambda": -5.0}), "success", ["steers AWAY"], SAMPLER),
        Case("note-window-covers-nothing", _with(g, POTENTIAL, window_start=0.5, window_end=0.5), "success",
             ["no potential step in this run"], SAMPLER),
        Case("note-two-steps", _with(g, SAMPLER, steps=2), "success", ["no potential step in this run"], SAMPLER),
    ]


def cancel_cases(ckpt: str) -> list[Case]:
    """Cancel while the UNet runs, while the reward scores, while the VAE decodes previews: the test presses
    Cancel as soon as the slow test node reports that it is busy."""
    mid_run = base_graph(ckpt, steps=8)
    mid_run["48"] = {"class_type": "FKTestSlowModel", "inputs": {"model": [CKPT, 0]}}
    mid_run[SAMPLER]["inputs"]["model"] = ["48", 0]
    mid_decode = base_graph(ckpt, steps=8)
    mid_decode["49"] = {"class_type": "FKTestSlowVAE", "inputs": {"vae": [CKPT, 2]}}
    mid_decode[SAMPLER]["inputs"].update(vae=["49", 0], particle_chunk=1)
    return [
        Case("cancel-mid-run", mid_run, "interrupted", says=["model"]),
        Case("cancel-mid-reward", _broken_reward(ckpt, "slow", steps=8), "interrupted", says=["reward"]),
        Case("cancel-mid-decode", mid_decode, "interrupted", says=["decode"]),
    ]


def trace_texts(good: dict) -> dict[str, str]:
    """Malformed traces made from a real one (``good``: Trace.to_dict())."""

    def edited(edit) -> str:
        t = json.loads(json.dumps(good))
        edit(t)
        return json.dumps(t)

    return {
        "good": json.dumps(good),
        "missing-steps": edited(lambda t: t.pop("steps")),
        "step-is-int": edited(lambda t: t["steps"].__setitem__(0, 7)),
        "spliced": edited(lambda t: t["steps"].extend(t["steps"][:1])),
        "text-reward": edited(lambda t: t["steps"][0]["rewards"].__setitem__(1, "high")),
        "float-ancestor": edited(lambda t: t["steps"][0]["ancestors"].__setitem__(0, 0.0)),
        "text-step-count": edited(lambda t: t.update(num_steps="ten")),
        "huge-claim": '{"format": "fk-steering-trace/1", "num_particles": 3000000, "steps": []}',
    }
