"""One FK run inside ComfyUI's sampler machinery: :class:`FKRun` is the SAMPLER function that drives
``fk_core.run_segments`` and keeps what happened in :attr:`FKRun.result`.

No maths here. Everything happens inside ONE call of ComfyUI's sampler machinery (``KSAMPLER.sample``), so
LoRAs, ControlNets, model patches, CFG and every model family (eps, v-prediction, flow) work unchanged:

* ``model``            = the k-diffusion model ComfyUI hands the sampler function (KSamplerX0Inpaint);
* the segment sampler  = the chosen ComfyUI sampler's own ``sampler_function``, as it is (the engine hands it
                         each segment's sigmas, a per-segment noise seed and a step-shifted callback);
* ``reward(x0)``       = :class:`~.reward_pipeline.RewardPipeline`: the checks decode with the preview decoder
                         (TAESD or the full VAE), the final particles with the full VAE; scored on the device.

The engine's one-shot cache hands the x0 computed at a potential step to the next segment's first model call,
so FK makes exactly as many model evaluations as plain sampling of the same N-particle batch; samplers that
install their own model hooks at each start (CFG++) get a real call instead, one extra per potential step.

Multistep samplers (dpmpp_2m_sde, dpmpp_3m_sde, res_multistep_ancestral, sa_solver, uni_pc …) restart their
history at every potential step (segment boundary): the first step after a boundary is first order.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import comfy.model_management
import comfy.samplers
import torch

from ..fk_core import FKConfig, FKError, FKResult, run_segments
from ..fk_core.input_notes import config_notes, run_notes
from ..fk_core.schedule import potential_steps
from ..fk_core.seeds import derived_seed
from ..fk_core.steppers import flow_noise_ratio
from .check_cost import CostMeter
from .chunking import ChunkedModel, automatic_chunk
from .conditioning import check_conditioning_batch
from .patch_state import ParticleStateKeeper, stateful_patches
from .preview_decoder import DEFAULT_PREVIEW_DECODER, choose_preview_decoder
from .reward_pipeline import ReloadBeforeCall, RewardPipeline
from .sampler_checks import (
    PARTICLE_SAMPLER,
    SAMPLER,
    check_guider_conditioning,
    check_memory,
    check_noised_latent,
    check_sigmas,
    is_out_of_memory,
    out_of_memory_error,
)
from .sampler_choice import SamplerChoice, choose_inner_sampler

log = logging.getLogger("fk_steering")

@dataclass
class FKRunSpec:
    """What the FK sampler function needs besides what ComfyUI passes it."""

    config: FKConfig
    reward: Callable[[torch.Tensor], torch.Tensor]  # FK_REWARD: images [B,H,W,C] in [0,1] -> [B]
    vae: object  # comfy.sd.VAE (anything with .decode(latent) -> images)
    sampler_name: str  # as the user chose it
    particles: int
    expand: bool  # True: the incoming batch is ONE latent to be expanded into N particles (SAMPLER path)
    returns: str = "all"  # "all": every particle in index order; "chosen": only the output particle; "sorted"
    chunk: int = 0  # UNet batch chunk (0 = automatic from free memory)
    on_start: Optional[Callable] = None  # (num_steps, particles) -> None, when sampling starts
    on_potential_step: Optional[Callable] = None  # (event, images) -> None : the live UI hook
    on_finish: Optional[Callable] = None  # (FKResult) -> None, once sampling is done
    final_reward: Optional[Callable] = None  # optional FK_REWARD that alone weights and chooses the final particles
    preview_decoder: str = DEFAULT_PREVIEW_DECODER  # decoder of the checks: auto | full VAE | TAESD


@dataclass
class FKRunOutcome:
    """What one run produced, beyond the samples ComfyUI gets back: read by the node after sampling."""

    result: FKResult
    chosen_index: int
    final_images: Optional[torch.Tensor]  # decoded final particles [N,H,W,C] (reused, no second decode)
    sampler: SamplerChoice
    chunk: int
    notes: list = field(default_factory=list)

    def trace_dict(self) -> dict:
        data = self.result.trace.to_dict()
        data["chosen_index"] = self.chosen_index
        data["best_index"] = self.result.best_index
        data["sampler"] = {"requested": self.sampler.requested, "used": self.sampler.used,
                           "note": self.sampler.note}
        data["particle_chunk"] = self.chunk
        data["model_evaluations"] = self.result.model_evaluations
        return data


class FKRun:
    """The function a ComfyUI KSAMPLER calls, as an object: :meth:`sample` runs FK steering and returns the
    samples ComfyUI expects; :attr:`result` then holds the :class:`FKRunOutcome` (None before the first run).

    A SAMPLER can be run several times (ComfyUI caches node outputs): each :meth:`sample` replaces the result.
    """

    def __init__(self, spec: FKRunSpec, ksampler_object=None):
        self.spec = spec
        self.ksampler_object = ksampler_object  # the KSAMPLER calling us (its max_denoise rule, SAMPLER path)
        self.result: Optional[FKRunOutcome] = None

    def sample(self, model, x, sigmas, extra_args=None, callback=None, disable=None, **_unused):
        """Run FK steering on ``x`` (ComfyUI's noised latent batch); returns what the spec asks for."""
        spec = self.spec
        self.result = None
        extra_args = dict(extra_args or {})
        guider = model.inner_model
        base_model = guider.inner_model
        model_patcher = getattr(guider, "model_patcher", None)
        node = SAMPLER if spec.expand else PARTICLE_SAMPLER
        check_conditioning_batch(guider, node)
        check_guider_conditioning(node, guider)
        check_sigmas(node, sigmas)
        check_noised_latent(node, x)
        check_memory(node, x, spec.particles, spec.vae)

        if spec.particles < 1:
            raise FKError(f"{node}: particles must be at least 1, got {spec.particles}; set particles to 1 or more")
        if spec.expand:
            if x.shape[0] != 1:
                raise FKError(f"FK Sampler: the latent batch is {x.shape[0]}, but FK Sampler expands ONE latent "
                              f"into {spec.particles} particles. Use a batch size of 1 (or FK Particle Sampler).")
            x = _expand_particles(model, self.ksampler_object, x, sigmas, extra_args, spec.particles)
        n = x.shape[0]

        choice = choose_inner_sampler(spec.sampler_name)
        notes = [choice.note] if choice.note else []
        notes += config_notes(spec.config, len(sigmas) - 1)
        # What the rewards say of themselves: what the detector understood, a judge that runs on the CPU …
        notes += [note for r in (spec.reward, spec.final_reward) for note in getattr(r, "notes", None) or []]
        if choice.note:
            log.warning("FK steering: %s", choice.note)
        inner = comfy.samplers.sampler_object(choice.used)

        patch_options = extra_args.get("model_options") or {}
        chunk = self._install_chunking(model, model_patcher, x, notes, patch_options)
        self._patch_state = ParticleStateKeeper(patch_options, n)  # reorders patches' per-particle state
        sampling_models = ([model_patcher] if model_patcher is not None else []) + \
            list(getattr(guider, "loaded_models", None) or [])
        preview, preview_note = choose_preview_decoder(spec.preview_decoder, spec.vae, base_model, x.device, node)
        if preview_note:
            notes.append(preview_note)
        meter = CostMeter(x.device, preview.label)
        pipeline = RewardPipeline(spec.vae, spec.reward, base_model, sampling_models, chunk, preview=preview,
                                  meter=meter, node=node)
        checks = len(potential_steps(len(sigmas) - 1, spec.config.every, *spec.config.window))
        pipeline.final = checks == 0  # no check at all: the first reward call scores the final particles
        # A final judge scores only the finished particles, through the full VAE (one decode + one judge call).
        final_pipeline = None
        if spec.final_reward is not None:
            final_pipeline = RewardPipeline(spec.vae, spec.final_reward, base_model, sampling_models, chunk,
                                            meter=meter, node=node)
            final_pipeline.final = True
        if spec.on_start is not None:
            spec.on_start(len(sigmas) - 1, n)
        seed = extra_args.get("seed")
        # Resampling draws get their own stream, distinct from every noise stream of the run.
        generator = torch.Generator().manual_seed(derived_seed(seed if seed is not None else 0, "resampling"))
        sampler = functools.partial(inner.sampler_function, **inner.extra_options)  # ComfyUI's, as it is
        meter.restart()
        try:
            result = run_segments(x, sigmas, ReloadBeforeCall(model, pipeline), sampler, pipeline, spec.config,
                                  generator=generator,
                                  on_potential_step=functools.partial(self._on_check, pipeline, checks),
                                  extra_args=extra_args, callback=_interruptible(callback), disable=disable,
                                  notes=notes, final_reward=final_pipeline, noise_ratio=_noise_ratio(model))
        except (RuntimeError, MemoryError) as error:  # a chunk (or the reward) did not fit: say what to lower
            if is_out_of_memory(error):
                raise out_of_memory_error(node, n, chunk, error) from None
            raise
        result.trace.cost = meter.totals()
        result.trace.notes.extend(self._patch_state.notes())
        result.trace.notes.extend(run_notes(result.trace))
        for note in result.trace.notes[1 if choice.note else 0:]:  # the console too: FK Sampler shows no text
            log.info("%s: %s", node, note)
        chosen = result.pick(spec.config.output, generator)
        final_images = (final_pipeline or pipeline).last_images
        self.result = FKRunOutcome(result=result, chosen_index=chosen, final_images=final_images,
                                   sampler=choice, chunk=chunk, notes=list(result.trace.notes))
        if spec.on_finish is not None:
            spec.on_finish(result)
        samples = result.samples
        if spec.returns == "chosen":
            return samples[chosen:chosen + 1]
        if spec.returns == "sorted":
            return samples[reward_order(result.rewards)]
        return samples

    def _install_chunking(self, model, model_patcher, x, notes: list, model_options: dict) -> int:
        """The chunk size (the spec's, else automatic from free memory); below N the guider is wrapped.
        Model patches that keep state between calls (APG's momentum, SAG's recorded attention) would see one
        chunk's particles and then another's: with them the model runs all particles at once (the chunk still
        sizes the VAE decodes), and a note says so."""
        n = x.shape[0]
        chunk = self.spec.chunk if self.spec.chunk > 0 else automatic_chunk(model_patcher, x) if model_patcher else n
        chunk = max(1, min(chunk, n))
        stateful = stateful_patches(model_options) if chunk < n else []
        if stateful:
            notes.append(f"the model evaluates all particles at once, not in chunks of {chunk}: the model patch(es) "
                         f"{', '.join(stateful)} keep state between model calls (e.g. APG's momentum), which "
                         "chunks would mix between particles; if memory runs out, lower particles")
            return chunk
        if chunk < n:
            model.inner_model = ChunkedModel(model.inner_model, chunk)
            notes.append(f"particles evaluated in chunks of {chunk}")
        return chunk

    def _on_check(self, pipeline: RewardPipeline, checks: int, event, _x0) -> None:
        """After each check: its cost goes into the step record, the live view hears of it, and after the last
        of the ``checks`` the pipeline switches to the full VAE (the engine's next reward call scores the final
        particles)."""
        event.cost = dict(pipeline.last_cost) if pipeline.last_cost is not None else None
        if event.resampled:
            self._patch_state.resampled(event.ancestors)
        self._report(event, pipeline.last_images)
        pipeline.final = len(pipeline.meter.checks) >= checks
        pipeline.meter.restart()  # the model clock runs from here to the next check

    def _report(self, event, images) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        if self.spec.on_potential_step is not None:
            self.spec.on_potential_step(event, images)


def _interruptible(callback: Optional[Callable]) -> Callable:
    """The sampler's step callback, checking ComfyUI's Cancel button first."""

    def step(info):
        comfy.model_management.throw_exception_if_processing_interrupted()
        if callback is not None:
            callback(info)

    return step


def reward_order(rewards: torch.Tensor) -> torch.Tensor:
    """Particle indices by descending reward, NaN last (stable)."""
    r = torch.as_tensor(rewards).detach().to("cpu", torch.float64).reshape(-1)
    key = torch.where(torch.isfinite(r), -r, torch.full_like(r, math.inf))
    return torch.sort(key, stable=True).indices


def _expand_particles(model, ksampler_object, x, sigmas, extra_args, n: int) -> torch.Tensor:
    """Turn the one noised latent ComfyUI prepared into N particles with independent noise (SAMPLER path).

    Particle 0 keeps ComfyUI's own noise (so N = 1 equals plain sampling); the others draw noise from a stream
    derived from the sampling seed, distinct from the one ComfyUI drew particle 0's noise from (so particle 1
    does not start from particle 0's noise); none when ComfyUI's noise is all zero, i.e. add_noise off.
    Inpainting state (noise, latent, mask) is expanded alongside.
    """
    if n == 1:
        return x
    base_noise = getattr(model, "noise", None)
    latent = getattr(model, "latent_image", None)
    if base_noise is None or latent is None:
        raise FKError("this ComfyUI version does not expose the sampler's noise/latent; use FK Particle Sampler")
    seed = extra_args.get("seed")
    gen = torch.Generator().manual_seed(derived_seed(seed if seed is not None else 0, "particles"))
    extra = torch.randn((n - 1,) + tuple(base_noise.shape[1:]), generator=gen, dtype=torch.float32)
    if not bool(torch.any(base_noise != 0)):
        # add_noise disabled (e.g. the second pass of a split schedule): the latent already carries its noise,
        # so the particles start as copies and the stochastic sampler makes them diverge.
        extra = torch.zeros_like(extra)
    noise = torch.cat([base_noise, extra.to(base_noise.device, base_noise.dtype)], dim=0)
    latent_n = latent.expand(n, *latent.shape[1:]).clone()
    model_sampling = model.inner_model.inner_model.model_sampling
    max_denoise = ksampler_object.max_denoise(model.inner_model, sigmas)
    x_n = model_sampling.noise_scaling(sigmas[0], noise, latent_n, max_denoise).to(x.dtype)
    x_n[0:1] = x  # bit-identical particle 0
    model.noise = noise
    model.latent_image = latent_n
    mask = extra_args.get("denoise_mask")
    if torch.is_tensor(mask) and mask.shape[0] not in (1, n):
        raise FKError(f"noise mask batch {mask.shape[0]} does not match one latent")
    return x_n


def make_fk_ksampler(spec: FKRunSpec) -> tuple[comfy.samplers.KSAMPLER, FKRun]:
    """A ComfyUI SAMPLER object running FK steering, and the run whose ``.result`` it fills in."""
    choice = choose_inner_sampler(spec.sampler_name)  # fail early with a clear message
    inner = comfy.samplers.sampler_object(choice.used)
    ksampler = comfy.samplers.KSAMPLER(lambda *a, **k: None, inpaint_options=dict(inner.inpaint_options))
    run = FKRun(spec, ksampler)
    ksampler.sampler_function = run.sample
    return ksampler, run


def _noise_ratio(model) -> Optional[Callable[[float], float]]:
    """σ → noise-to-signal ratio for fk_core.window: t/(1 − t) for a rectified flow (CONST: Flux, SD3, …); None
    (σ itself) for every model ComfyUI samples as x0 + σ·ε."""
    import comfy.model_sampling

    sampling = getattr(getattr(getattr(model, "inner_model", None), "inner_model", None), "model_sampling", None)
    return flow_noise_ratio if isinstance(sampling, comfy.model_sampling.CONST) else None
