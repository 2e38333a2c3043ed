"""fk_core — Feynman-Kac steering of diffusion samplers, in plain torch (no ComfyUI import).

This module is the public face: hosts (the ComfyUI nodes in ``nodes/``, scripts, other hosts) import from here
only. Library entry points:

* :func:`steer` — FK steering with fk_core's own Euler-ancestral step rule.
* :func:`run_segments` — the same particle loop driven by a host's sampler, model and scorer (how the ComfyUI
  nodes use it); a scorer has two phases, ``check(x0, step)`` and ``final(x)`` (:mod:`fk_core.scoring`).
* :func:`steer_discrete` — the same for masked (discrete) diffusion over token sequences (:mod:`fk_core.discrete`).
* :class:`FKConfig`, :class:`FKResult`, :class:`Trace`, :class:`PotentialStep`, :class:`FKError`.
* What hosts show: the trace's charts, the contact sheet, summary lines and the cost line; images for a reward
  or a thumbnail; the reward catalogue.
* What hosts plug around the loop: chunked model calls (:mod:`fk_core.chunking`), model patches' per-particle
  state (:mod:`fk_core.patch_state`), the stochastic sampler choice (:mod:`fk_core.sampler_choice`), latent
  decoders, latent / widget / memory checks, and the run's outcome record (:class:`FKRunOutcome`).
"""

from .charts import TraceError, lineage_chart, load_trace, reward_ess_chart
from .chunking import ChunkedModel, chunk_that_fits
from .collapse import summary_lines
from .contact_sheet import contact_sheet
from .discrete import steer_discrete
from .engine import OUTPUT_MODES, FKConfig, FKResult, ReuseFirstCall, run_segments, steer
from .errors import FKError
from .guidance import host_refusal as guidance_refusal
from .guidance import host_step_rule as guided_step_rule
from .images import downscale, encode_sprite, fit_to_reward, reward_input_size
from .latent_checks import check_latent, check_noised_latent
from .latent_decoders import FullVAEDecoder, TAESDDecoder, VideoTAEDecoder, outputs_on_device
from .live_view import LiveCallbacks, LiveReporter, replay_payload
from .memory_estimate import address_space_room, memory_problem, out_of_memory_message, particle_memory_bytes
from .messages import (
    choice_problem,
    file_name_problem,
    finite,
    is_tag,
    message,
    model_source_problem,
    number_problem,
    options_text,
    shown,
)
from .particles import ParticleFilter
from .patch_state import ParticleStateKeeper, stateful_patches
from .potentials import POTENTIALS
from .ranking import reward_order
from .resampling import RESAMPLERS
from .rewards import BoundReward, RewardInputError, WeightedSum
from .rewards.catalog import DETECTOR, SETTING_NAMES, SPECS, VLM_JUDGE, build_reward, reward_names, rewards_reading
from .rewards.detector import describe, parse_objects
from .rewards.judge_inputs import (
    bind_judge,
    check_judge_inputs,
    flat_loader_values,
    prompt_error,
    weights_error,
)
from .rewards.loader_settings import (
    AUTO_WEIGHTS,
    REWARD_HELP,
    SETTING_DEFAULTS,
    SETTING_HELP,
    unknown_input_problem,
    with_defaults,
)
from .rewards.vlm_judge import DEFAULT_QUESTION
from .rewards.weights import BadWeightsError, MissingWeightsError
from .run_checks import (
    check_links,
    check_noise_mask,
    check_one_latent,
    check_scores,
    check_sigmas,
    check_x0,
    gib,
    is_out_of_memory,
    score_tensor,
)
from .run_report import FKRunOutcome, run_summary
from .sampler_choice import SamplerChoice, choose_stochastic, draws_noise
from .score_sheet import (
    ImageScores,
    PartsRecorder,
    breakdown,
    component_notes,
    score_images,
    score_sheet,
    scores_record,
)
from .scoring import COST_KEYS, CostClock, Scored, cost_summary, decode_and_score, name_of, notes_of
from .seeds import derived_seed, particle_noise
from .setting_checks import denoise_problem, lambda_problem, window_problem
from .steppers import flow_noise_ratio
from .tempering import LAMBDA_MODES
from .trace import PotentialStep, Trace
from .video import (
    COMBINES,
    DEFAULT_FRAMES,
    FrameReward,
    as_frame_reward,
    flat_frames,
    frame_consistency,
    is_video,
    middle_frame,
    pick_frames,
    strip,
    video_reward_problem,
)
from .widget_checks import widget_problem, widgets_problem

__all__ = [
    "BadWeightsError", "BoundReward", "COMBINES", "COST_KEYS", "CostClock", "DEFAULT_FRAMES", "DEFAULT_QUESTION",
    "DETECTOR", "FKConfig", "FKError", "FKResult", "FrameReward", "ImageScores", "LAMBDA_MODES", "LiveCallbacks",
    "LiveReporter", "MissingWeightsError", "OUTPUT_MODES", "POTENTIALS", "ParticleFilter", "PartsRecorder",
    "PotentialStep", "RESAMPLERS", "ReuseFirstCall", "RewardInputError", "SPECS", "Scored", "Trace", "TraceError",
    "VLM_JUDGE", "WeightedSum", "as_frame_reward", "breakdown", "build_reward", "choice_problem", "component_notes",
    "contact_sheet", "cost_summary", "decode_and_score", "derived_seed", "describe", "downscale", "encode_sprite",
    "file_name_problem", "finite", "fit_to_reward", "flat_frames", "frame_consistency", "is_tag", "is_video",
    "lineage_chart", "load_trace", "message", "middle_frame", "model_source_problem", "name_of", "notes_of",
    "number_problem", "options_text", "parse_objects", "pick_frames", "replay_payload", "reward_ess_chart",
    "reward_names", "reward_order", "run_segments", "score_images", "score_sheet", "scores_record", "shown", "steer",
    "steer_discrete", "strip", "summary_lines", "video_reward_problem",
    "SETTING_NAMES", "flat_loader_values", "rewards_reading",
    # what a loader's inputs mean on any host (fk_core.rewards.loader_settings)
    "AUTO_WEIGHTS", "REWARD_HELP", "SETTING_DEFAULTS", "SETTING_HELP", "unknown_input_problem", "with_defaults",
    # host-agnostic checks, messages and text the nodes/ adapters use
    "bind_judge", "check_judge_inputs", "check_links", "check_noise_mask", "check_one_latent", "check_scores",
    "check_sigmas", "check_x0", "gib", "is_out_of_memory", "particle_noise", "prompt_error", "run_summary",
    "score_tensor", "weights_error", "denoise_problem", "lambda_problem", "window_problem",
    # a rectified flow's t → the noise-to-signal ratio the copy-variety stop reads
    "flow_noise_ratio",
    # guided proposals on a host: what refuses them, the step rule that runs them (fk_core.guidance)
    "guidance_refusal", "guided_step_rule",
    # what a host plugs around the loop: chunked model calls, model patches' per-particle state, the sampler
    # choice, latent decoders, latent and widget checks, memory estimates, the run's outcome record
    "ChunkedModel", "chunk_that_fits", "ParticleStateKeeper", "stateful_patches", "SamplerChoice",
    "choose_stochastic", "draws_noise", "FullVAEDecoder", "TAESDDecoder", "VideoTAEDecoder", "outputs_on_device",
    "check_latent", "check_noised_latent", "widget_problem", "widgets_problem", "address_space_room",
    "memory_problem", "out_of_memory_message", "particle_memory_bytes", "reward_input_size", "FKRunOutcome",
]
