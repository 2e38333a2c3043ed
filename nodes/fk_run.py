"""One FK run inside ComfyUI's sampler machinery: :class:`FKRun` is the SAMPLER function that plugs ComfyUI's
sampler function, model and decoders into ``fk_core.run_segments`` and keeps what happened in
:attr:`FKRun.outcome`.

No maths here. Everything happens inside ONE call of ComfyUI's sampler machinery (``KSAMPLER.sample``), so
LoRAs, ControlNets, model patches, CFG and every model family (eps, v-prediction, flow) work unchanged:

* ``model``            = the k-diffusion model ComfyUI hands the sampler function (KSamplerX0Inpaint);
* the segment sampler  = the chosen ComfyUI sampler's own ``sampler_function``, as it is (the engine hands it
                         each segment's sigmas, a per-segment noise seed and a step-shifted callback);
* the scorer          = :class:`~.reward_pipeline.ComfyScorer`: the checks decode with the preview decoder
                         (TAESD or the full VAE), the final particles with the full VAE; scored on the device;
* the observer        = the node's live view (nodes/live.py), passed in by the node.

The engine owns the schedule, the cost record, the notes and the choice of the output particle.

The engine's one-shot cache hands the x0 computed at a potential step to the next segment's first model call,
so FK makes exactly as many model evaluations as plain sampling of the same N-particle batch; samplers that
install their own model hooks at each start (CFG++) get a real call instead, one extra per potential step.

Multistep samplers (dpmpp_2m_sde, dpmpp_3m_sde, res_multistep_ancestral, sa_solver, uni_pc …) restart their
history at every potential step (segment boundary): the first step after a boundary is first order.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import comfy.model_management
import comfy.samplers
import torch

from ..fk_core import (
    ChunkedModel,
    CostClock,
    FKConfig,
    FKError,
    FKRunOutcome,
    ParticleStateKeeper,
    SamplerChoice,
    check_noised_latent,
    check_sigmas,
    derived_seed,
    flow_noise_ratio,
    guidance_refusal,
    guided_step_rule,
    is_out_of_memory,
    message,
    particle_noise,
    reward_order,
    run_segments,
    stateful_patches,
)
from .common import PARTICLE_SAMPLER, SAMPLER
from .conditioning import check_guider_conditioning
from .memory import automatic_chunk, check_memory, out_of_memory_error
from .preview_decoder import DEFAULT_PREVIEW_DECODER, choose_preview_decoder
from .reward_pipeline import ComfyScorer, ReloadBeforeCall
from .sampler_choice import choose_inner_sampler

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
    final_reward: Optional[Callable] = None  # optional FK_REWARD that alone weights and chooses the final particles
    preview_decoder: str = DEFAULT_PREVIEW_DECODER  # decoder of the checks: auto | full VAE | TAESD
    live: object = None  # the run's observer (nodes/live.py LiveCallbacks): on_start, on_potential_step, on_finish

    @property
    def node(self) -> str:
        return SAMPLER if self.expand else PARTICLE_SAMPLER


class FKRun:
    """The function a ComfyUI KSAMPLER calls, as an object: :meth:`sample` runs FK steering and returns the
    samples ComfyUI expects; :attr:`outcome` then holds the ``fk_core.FKRunOutcome`` (None before the first run).

    A SAMPLER can be run several times (ComfyUI caches node outputs): each :meth:`sample` replaces the outcome.
    """

    def __init__(self, spec: FKRunSpec, ksampler_object, choice: SamplerChoice):
        self.spec = spec
        self.ksampler_object = ksampler_object  # the KSAMPLER calling us (its max_denoise rule, SAMPLER path)
        self.choice = choice  # the ComfyUI sampler run between potential steps
        self.outcome: Optional[FKRunOutcome] = None

    def sample(self, model, x, sigmas, extra_args=None, callback=None, disable=None, **_unused):
        """Run FK steering on ``x`` (ComfyUI's noised latent batch); returns what the spec asks for."""
        spec, node, self.outcome = self.spec, self.spec.node, None
        extra_args = dict(extra_args or {})
        x = self._particles(model, x, sigmas, extra_args)
        notes = [self.choice.note] if self.choice.note else []
        patch_options = extra_args.get("model_options") or {}
        chunk = self._install_chunking(model, x, notes, patch_options)
        scorer = self._scorer(model, x, chunk, notes)
        # model patches' per-particle state follows the resampling; the live view hears of the run
        observers = [ParticleStateKeeper(patch_options, x.shape[0]), spec.live]
        seed = extra_args.get("seed")
        # Resampling draws get their own stream, distinct from every noise stream of the run.
        generator = torch.Generator().manual_seed(derived_seed(seed if seed is not None else 0, "resampling"))
        sampler = self._sampler(model, seed, notes)
        try:
            result = run_segments(x, sigmas, ReloadBeforeCall(model, scorer), sampler, scorer, spec.config,
                                  generator=generator, extra_args=extra_args, callback=_interruptible(callback),
                                  disable=disable, notes=notes, clock=scorer.clock, observer=observers,
                                  noise_ratio=_noise_ratio(model))
        except (RuntimeError, MemoryError) as error:  # a chunk (or the reward) did not fit: say what to lower
            if is_out_of_memory(error):
                raise out_of_memory_error(node, x.shape[0], chunk, error) from None
            raise
        for note in result.trace.notes:  # the console too: FK Sampler shows no text
            log.info("%s: %s", node, note)
        video = scorer.reward.record(x.shape[2], scorer.frames_scored) if scorer.video else None
        self.outcome = FKRunOutcome(result=result, sampler=self.choice, chunk=chunk, video=video)
        if spec.returns == "chosen":
            return result.samples[result.chosen_index:result.chosen_index + 1]
        return result.samples[reward_order(result.rewards)] if spec.returns == "sorted" else result.samples

    def _sampler(self, model, seed, notes: list):
        """ComfyUI's own sampler function, as it is; with guidance, fk_core's mirror of it (the same step rule,
        its noise from a stream of the seed), whose Gaussian step fk_core can shift and weight exactly."""
        if self.spec.config.guidance > 0:
            generator = torch.Generator().manual_seed(derived_seed(seed if seed is not None else 0, "guided steps"))
            return guided_step_rule(self.choice.used, _noise_ratio(model) is not None, generator, notes,
                                    self.spec.config.guidance)
        inner = comfy.samplers.sampler_object(self.choice.used)
        return functools.partial(inner.sampler_function, **inner.extra_options)

    def _particles(self, model, x, sigmas, extra_args: dict) -> torch.Tensor:
        """The inputs as the sampler got them, checked; on the SAMPLER path the one latent made N particles
        (FK Particle Sampler checked its latent, batch and memory before making them)."""
        spec, node = self.spec, self.spec.node
        check_guider_conditioning(node, model.inner_model)
        check_sigmas(node, sigmas)
        check_noised_latent(node, x, getattr(model.inner_model, "inner_model", None))
        if not spec.expand:
            return x
        check_memory(node, x, spec.particles, spec.vae, guided=spec.config.guidance > 0)
        if x.shape[0] != 1:
            raise FKError(message(node, "latent", f"batch is {x.shape[0]}, but FK Sampler expands ONE latent into "
                                  f"{spec.particles} particles", "use a batch size of 1 (or FK Particle Sampler)"))
        return _expand_particles(model, self.ksampler_object, x, sigmas, extra_args, spec.particles)

    def _install_chunking(self, model, x, notes: list, model_options: dict) -> int:
        """The chunk size (the spec's, else automatic from free memory); below N the guider is wrapped.
        Model patches that keep state between calls (APG's momentum, SAG's recorded attention) would see one
        chunk's particles and then another's: with them the model runs all particles at once (the chunk still
        sizes the VAE decodes), and a note says so."""
        n, patcher = x.shape[0], getattr(model.inner_model, "model_patcher", None)
        chunk = self.spec.chunk if self.spec.chunk > 0 else automatic_chunk(patcher, x) if patcher else n
        chunk = max(1, min(chunk, n))
        stateful = stateful_patches(model_options) if chunk < n else []
        if stateful:
            notes.append(f"the model evaluates all particles at once, not in chunks of {chunk}: the model patch(es) "
                         f"{', '.join(stateful)} keep state between model calls (e.g. APG's momentum), which "
                         "chunks would mix between particles; if memory runs out, lower particles")
        elif chunk < n:
            model.inner_model = ChunkedModel(model.inner_model, chunk,
                                             comfy.model_management.throw_exception_if_processing_interrupted)
            notes.append(f"particles evaluated in chunks of {chunk}")
        return chunk

    def _scorer(self, model, x, chunk: int, notes: list) -> ComfyScorer:
        """Checks decode with the preview decoder, the final particles with the full VAE, ``chunk`` at a time."""
        spec, guider = self.spec, model.inner_model
        base_model = guider.inner_model
        patcher = getattr(guider, "model_patcher", None)
        sampling_models = ([patcher] if patcher is not None else []) + list(getattr(guider, "loaded_models", None)
                                                                            or [])
        preview, preview_note = choose_preview_decoder(spec.preview_decoder, spec.vae, base_model, x.device,
                                                       spec.node)
        notes.extend([preview_note] if preview_note else [])
        return ComfyScorer(spec.node, spec.vae, spec.reward, spec.final_reward, base_model, sampling_models, chunk,
                           preview=preview, clock=CostClock(x.device), video=x.ndim == 5)


def _interruptible(callback: Optional[Callable]) -> Callable:
    """The sampler's step callback, checking ComfyUI's Cancel button first."""

    def step(info):
        comfy.model_management.throw_exception_if_processing_interrupted()
        if callback is not None:
            callback(info)

    return step


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
    # add_noise disabled (all-zero noise, e.g. a split schedule's second pass): the latent carries its noise
    noise = particle_noise(base_noise, n, extra_args.get("seed"))
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
    """A ComfyUI SAMPLER object running FK steering, and the run whose ``.outcome`` it fills in. The sampler
    between potential steps is chosen here, once (an unusable choice fails before any model work)."""
    choice = choose_inner_sampler(spec.sampler_name, spec.node)
    refusal = guidance_refusal(choice.used, spec.reward) if spec.config.guidance > 0 else None
    if refusal:
        raise FKError(message(spec.node, "guidance (FK Potential Selector)", *refusal))
    if choice.note:
        log.warning("FK steering: %s", choice.note)
    inner = comfy.samplers.sampler_object(choice.used)
    ksampler = comfy.samplers.KSAMPLER(lambda *a, **k: None, inpaint_options=dict(inner.inpaint_options))
    run = FKRun(spec, ksampler, choice)
    ksampler.sampler_function = run.sample
    return ksampler, run


def _noise_ratio(model) -> Optional[Callable[[float], float]]:
    """σ → noise-to-signal ratio for fk_core.window: t/(1 − t) for a rectified flow (CONST: Flux, SD3, …); None
    (σ itself) for every model ComfyUI samples as x0 + σ·ε."""
    import comfy.model_sampling

    sampling = getattr(getattr(getattr(model, "inner_model", None), "inner_model", None), "model_sampling", None)
    return flow_noise_ratio if isinstance(sampling, comfy.model_sampling.CONST) else None
