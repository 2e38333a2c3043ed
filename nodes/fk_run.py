"""One FK run inside ComfyUI's sampler machinery: :class:`FKRun` is the SAMPLER function that drives
``fk_core.run_segments`` and keeps what happened in :attr:`FKRun.result`.

No maths here. Everything happens inside ONE call of ComfyUI's sampler machinery (``KSAMPLER.sample``), so
LoRAs, ControlNets, model patches, CFG and every model family (eps, v-prediction, flow) work unchanged:

* ``model``            = the k-diffusion model ComfyUI hands the sampler function (KSamplerX0Inpaint);
* the segment sampler  = the chosen ComfyUI sampler's own ``sampler_function`` over sigmas[start:end+1], with a
                         per-segment noise seed and a callback whose step index is shifted to the full run;
* ``reward(x0)``       = :class:`~.reward_pipeline.RewardPipeline`: the checks decode with the preview decoder
                         (TAESD or the full VAE), the final particles with the full VAE; scored on the device.

The engine's one-shot cache hands the x0 computed at a potential step to the next segment's first model call,
so FK makes exactly as many model evaluations as plain sampling of the same N-particle batch.

Multistep samplers (dpmpp_2m_sde, dpmpp_3m_sde, res_multistep_ancestral, sa_solver, uni_pc …) restart their
history at every potential step (segment boundary): the first step after a boundary is first order.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import comfy.model_management
import comfy.samplers
import torch

from ..fk_core import FKConfig, FKError, FKResult, run_segments
from .check_cost import CostMeter
from .chunking import ChunkedModel, automatic_chunk
from .conditioning import check_conditioning_batch
from .preview_decoder import DEFAULT_PREVIEW_DECODER, choose_preview_decoder
from .reward_pipeline import RewardPipeline
from .sampler_choice import SamplerChoice, choose_inner_sampler

log = logging.getLogger("fk_steering")

SEGMENT_SEED_STRIDE = 1000  # seed of segment j = seed + j * stride (j = 0 keeps the plain-sampling seed)
RESAMPLING_SEED_OFFSET = 0x9E3779B97F4A7C15 % (2**63)  # resampling generator seed = seed + offset


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
    on_potential_step: Optional[Callable] = None  # (event, images) -> None : the live UI hook
    on_finish: Optional[Callable] = None  # (FKResult) -> None, once sampling is done
    preview_decoder: str = DEFAULT_PREVIEW_DECODER  # decoder of the checks: auto | full VAE | TAESD
    node_name: str = "FK sampler"  # display name of the node, for messages


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


def _segment_seed(seed: Optional[int], index: int) -> Optional[int]:
    if seed is None:
        return None
    return (int(seed) + index * SEGMENT_SEED_STRIDE) % (2**63)


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
        spec = self.spec
        extra_args = dict(extra_args or {})
        guider = model.inner_model
        base_model = guider.inner_model
        model_patcher = getattr(guider, "model_patcher", None)
        check_conditioning_batch(guider)

        if spec.particles < 1:
            raise FKError(f"need at least one particle, got {spec.particles}")
        if spec.expand:
            if x.shape[0] != 1:
                raise FKError(f"the FK SAMPLER expands ONE latent into {spec.particles} particles, but the latent "
                              f"batch is {x.shape[0]}. Use a batch size of 1 (or FK Particle Sampler).")
            x = _expand_particles(model, self.ksampler_object, x, sigmas, extra_args, spec.particles)
        n = x.shape[0]

        choice = choose_inner_sampler(spec.sampler_name)
        notes = [choice.note] if choice.note else []
        if choice.note:
            log.warning("FK steering: %s", choice.note)
        inner = comfy.samplers.sampler_object(choice.used)

        chunk = spec.chunk if spec.chunk > 0 else automatic_chunk(model_patcher, x) if model_patcher else n
        chunk = max(1, min(chunk, n))
        if chunk < n:
            model.inner_model = ChunkedModel(guider, chunk)
            notes.append(f"particles evaluated in chunks of {chunk}")

        sampling_models = ([model_patcher] if model_patcher is not None else []) + \
            list(getattr(guider, "loaded_models", None) or [])
        preview, preview_note = choose_preview_decoder(spec.preview_decoder, spec.vae, base_model, x.device,
                                                       spec.node_name)
        if preview_note:
            notes.append(preview_note)
        meter = CostMeter(x.device, preview.label)
        pipeline = RewardPipeline(spec.vae, spec.reward, base_model, sampling_models, chunk, preview=preview,
                                  meter=meter)
        seed = extra_args.get("seed")
        segment_index = [0]

        def sample_segment(wrapped_model, x_seg, start, end):
            args = dict(extra_args)
            args["seed"] = _segment_seed(seed, segment_index[0])
            segment_index[0] += 1

            def shifted_callback(info):
                comfy.model_management.throw_exception_if_processing_interrupted()
                if callback is not None:
                    callback({**info, "i": info["i"] + start})

            out = inner.sampler_function(wrapped_model, x_seg, sigmas[start:end + 1], extra_args=args,
                                         callback=shifted_callback, disable=disable, **inner.extra_options)
            if end == len(sigmas) - 1:
                pipeline.final = True  # the segment that ends the schedule: the next reward call is the final one
            return out

        def on_potential_step(event):
            comfy.model_management.throw_exception_if_processing_interrupted()
            event.cost = dict(pipeline.last_cost) if pipeline.last_cost is not None else None
            if spec.on_potential_step is not None:
                spec.on_potential_step(event, pipeline.last_images)
            meter.restart()  # the model clock runs from here to the next check

        # Resampling draws get their own stream: offset so they are not the same numbers as the particle noise.
        generator = torch.Generator().manual_seed((int(seed if seed is not None else 0) + RESAMPLING_SEED_OFFSET)
                                                  % (2**63))
        result = run_segments(x, sigmas, model, sample_segment, pipeline, spec.config, generator=generator,
                              on_potential_step=on_potential_step, model_kwargs=extra_args, notes=notes)
        result.trace.cost = meter.totals()
        chosen = result.pick(spec.config.output, generator)
        self.result = FKRunOutcome(result=result, chosen_index=chosen, final_images=pipeline.last_images,
                                   sampler=choice, chunk=chunk, notes=notes)
        if spec.on_finish is not None:
            spec.on_finish(result)
        samples = result.samples
        if spec.returns == "chosen":
            return samples[chosen:chosen + 1]
        if spec.returns == "sorted":
            return samples[reward_order(result.rewards)]
        return samples


def reward_order(rewards: torch.Tensor) -> torch.Tensor:
    """Particle indices by descending reward, NaN last (stable)."""
    r = torch.as_tensor(rewards).detach().to("cpu", torch.float64).reshape(-1)
    key = torch.where(torch.isfinite(r), -r, torch.full_like(r, math.inf))
    return torch.sort(key, stable=True).indices


def _expand_particles(model, ksampler_object, x, sigmas, extra_args, n: int) -> torch.Tensor:
    """Turn the one noised latent ComfyUI prepared into N particles with independent noise (SAMPLER path).

    Particle 0 keeps ComfyUI's own noise (so N = 1 equals plain sampling); the others draw noise from a
    generator seeded with the sampling seed (none when ComfyUI's noise is all zero, i.e. add_noise off).
    Inpainting state (noise, latent, mask) is expanded alongside.
    """
    if n == 1:
        return x
    base_noise = getattr(model, "noise", None)
    latent = getattr(model, "latent_image", None)
    if base_noise is None or latent is None:
        raise FKError("this ComfyUI version does not expose the sampler's noise/latent; use FK Particle Sampler")
    seed = extra_args.get("seed")
    gen = torch.Generator().manual_seed(int(seed if seed is not None else 0) % (2**63))
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
