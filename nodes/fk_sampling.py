"""ComfyUI glue for FK steering: a custom SAMPLER whose function drives ``fk_core.run_segments``.

No maths here. Everything happens inside ONE call of ComfyUI's sampler machinery (``KSAMPLER.sample``), so
LoRAs, ControlNets, model patches, CFG and every model family (eps, v-prediction, flow) work unchanged:

* ``model``            = the k-diffusion model ComfyUI hands the sampler function (KSamplerX0Inpaint);
* ``sample_segment``   = the chosen ComfyUI sampler's own ``sampler_function`` over sigmas[start:end+1], with a
                         per-segment noise seed and a callback whose step index is shifted to the full run;
* ``reward(x0)``       = process_latent_out -> VAE decode in sub-batches -> the FK_REWARD callable.

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

log = logging.getLogger("fk_steering")

SEGMENT_SEED_STRIDE = 1000  # seed of segment j = seed + j * stride (j = 0 keeps the plain-sampling seed)
RESAMPLING_SEED_OFFSET = 0x9E3779B97F4A7C15 % (2**63)  # resampling generator seed = seed + offset

# Samplers that add fresh noise every step: resampled copies of a particle diverge again at once.
STOCHASTIC_SAMPLERS = (
    "euler_ancestral", "euler_ancestral_cfg_pp", "dpm_2_ancestral", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
)

# Deterministic samplers and the stochastic sibling FK uses instead (copies made by resampling would stay
# identical forever with a deterministic sampler, so FK would only pick among fewer distinct images).
STOCHASTIC_SIBLING = {
    "euler": "euler_ancestral",
    "euler_cfg_pp": "euler_ancestral_cfg_pp",
    "ddim": "euler_ancestral",
    "heun": "dpmpp_2s_ancestral",
    "heunpp2": "dpmpp_2s_ancestral",
    "dpm_2": "dpm_2_ancestral",
    "lms": "euler_ancestral",
    "dpm_fast": "euler_ancestral",
    "dpm_adaptive": "euler_ancestral",
    "dpmpp_2m": "dpmpp_2m_sde",
    "dpmpp_2m_cfg_pp": "dpmpp_2m_sde",
    "ipndm": "euler_ancestral",
    "ipndm_v": "euler_ancestral",
    "deis": "euler_ancestral",
    "res_multistep": "res_multistep_ancestral",
    "res_multistep_cfg_pp": "res_multistep_ancestral_cfg_pp",
    "gradient_estimation": "euler_ancestral",
    "gradient_estimation_cfg_pp": "euler_ancestral_cfg_pp",
    "uni_pc": "dpmpp_2m_sde",
    "uni_pc_bh2": "dpmpp_2m_sde",
}


@dataclass
class SamplerChoice:
    requested: str
    used: str
    note: Optional[str]  # set when the sampler was substituted


def choose_inner_sampler(name: str) -> SamplerChoice:
    """The ComfyUI sampler FK runs between potential steps; deterministic ones map to a stochastic sibling."""
    if name in STOCHASTIC_SAMPLERS:
        return SamplerChoice(name, name, None)
    if name in STOCHASTIC_SIBLING:
        used = STOCHASTIC_SIBLING[name]
        note = (f"sampler '{name}' is deterministic: resampled copies of a particle would stay identical, so FK "
                f"uses its stochastic sibling '{used}' instead (stochastic choices: "
                f"euler_ancestral, dpmpp_2m_sde, dpmpp_sde, er_sde, …)")
        return SamplerChoice(name, used, note)
    if name not in comfy.samplers.SAMPLER_NAMES:
        raise FKError(f"unknown sampler '{name}'; choose one of {comfy.samplers.SAMPLER_NAMES}")
    raise FKError(f"sampler '{name}' is not supported by FK steering; use a stochastic sampler such as "
                  f"euler_ancestral, dpmpp_2m_sde or dpmpp_sde")


# --------------------------------------------------------------------------------------------------- checks


def _tensor_batches(obj):
    """Leading sizes of every conditioning tensor (cross-attention, pooled output …) in a processed cond."""
    cond = getattr(obj, "cond", None)
    if torch.is_tensor(cond) and cond.ndim >= 2:
        yield cond.shape[0]


def check_conditioning_batch(guider) -> None:
    """Refuse conditioning with batch > 1: ComfyUI tiles it by batch index, so after resampling a particle would
    be denoised with another particle's prompt."""
    conds = getattr(guider, "conds", None) or {}
    for name, entries in conds.items():
        for entry in entries or []:
            for key, value in (entry.get("model_conds") or {}).items():
                for size in _tensor_batches(value):
                    if size > 1:
                        raise FKError(
                            f"FK steering needs conditioning with batch size 1, but the {name} conditioning "
                            f"'{key}' has batch {size}. Encode one prompt (not a batch of prompts); the "
                            f"particles all share it.")


def check_raw_conditioning(conditioning, label: str) -> None:
    """Same check on a CONDITIONING input as nodes receive it: [[tensor, {…}], …]."""
    for item in conditioning or []:
        tensor = item[0] if isinstance(item, (list, tuple)) and item else None
        if torch.is_tensor(tensor) and tensor.ndim >= 2 and tensor.shape[0] > 1:
            raise FKError(f"FK steering needs {label} conditioning with batch size 1, got batch {tensor.shape[0]}. "
                          f"Encode one prompt (not a batch of prompts); the particles all share it.")
        pooled = item[1].get("pooled_output") if isinstance(item, (list, tuple)) and len(item) > 1 else None
        if torch.is_tensor(pooled) and pooled.shape[0] > 1:
            raise FKError(f"FK steering needs {label} conditioning with batch size 1 (pooled output has batch "
                          f"{pooled.shape[0]}).")


# --------------------------------------------------------------------------------------------------- chunking


class ChunkedModel:
    """Splits the particle batch across several model calls of at most ``chunk`` rows each.

    Sits below KSamplerX0Inpaint (which keeps per-particle inpainting noise/latents at full batch) and above
    the guider, so every guider (CFG, dual CFG …) and every model patch sees ordinary, smaller batches. Each
    particle is still evaluated exactly once per model call of the sampler.
    """

    def __init__(self, inner, chunk: int):
        self.inner = inner
        self.chunk = chunk

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def __call__(self, x, timestep, *args, **kwargs):
        n = x.shape[0]
        if n <= self.chunk:
            return self.inner(x, timestep, *args, **kwargs)
        outs = []
        for start in range(0, n, self.chunk):
            stop = min(n, start + self.chunk)
            t = timestep[start:stop] if torch.is_tensor(timestep) and timestep.ndim > 0 else timestep
            outs.append(self.inner(x[start:stop], t, *args, **kwargs))
            comfy.model_management.throw_exception_if_processing_interrupted()
        return torch.cat(outs, dim=0)


def automatic_chunk(model_patcher, x: torch.Tensor, cfg_batches: int = 2) -> int:
    """Largest chunk whose UNet working memory fits in free memory (at least 1). ``cfg_batches``: cond+uncond."""
    n = x.shape[0]
    try:
        device = model_patcher.load_device
        free = comfy.model_management.get_free_memory(device)
        per_row = model_patcher.model.memory_required([cfg_batches] + list(x.shape[1:])) / cfg_batches
    except (AttributeError, TypeError, RuntimeError) as err:  # unusual model objects: do not chunk
        log.debug("FK: no automatic chunk size (%s); running all %d particles at once", err, n)
        return n
    if per_row <= 0:
        return n
    fits = int(free * 0.8 // (per_row * cfg_batches))
    return max(1, min(n, fits))


# --------------------------------------------------------------------------------------------------- the run


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
    decode_batch: int = 0  # VAE decode sub-batch (0 = same as chunk)
    on_potential_step: Optional[Callable] = None  # (event, images) -> None : the live UI hook
    on_finish: Optional[Callable] = None  # (FKResult) -> None, once sampling is done


@dataclass
class FKRunOutcome:
    """Filled in by the sampler function; read by the node after sampling."""

    result: Optional[FKResult] = None
    chosen_index: int = 0
    final_images: Optional[torch.Tensor] = None  # decoded final particles [N,H,W,C] (reused, no second decode)
    sampler: Optional[SamplerChoice] = None
    chunk: int = 0
    notes: list = field(default_factory=list)

    def trace_dict(self) -> dict:
        data = self.result.trace.to_dict() if self.result is not None else {}
        data["chosen_index"] = self.chosen_index
        data["best_index"] = self.result.best_index if self.result is not None else None
        if self.sampler is not None:
            data["sampler"] = {"requested": self.sampler.requested, "used": self.sampler.used,
                               "note": self.sampler.note}
        data["particle_chunk"] = self.chunk
        data["model_evaluations"] = self.result.model_evaluations if self.result is not None else None
        return data


def _segment_seed(seed: Optional[int], index: int) -> Optional[int]:
    if seed is None:
        return None
    return (int(seed) + index * SEGMENT_SEED_STRIDE) % (2**63)


class RewardPipeline:
    """x0 (the model's internal latent space) -> external latent -> VAE decode in sub-batches -> FK_REWARD."""

    def __init__(self, spec: FKRunSpec, base_model, sampling_models: list, decode_batch: int):
        self.spec = spec
        self.base_model = base_model
        self.sampling_models = sampling_models  # what ComfyUI loaded for sampling (UNet, ControlNets …)
        self.decode_batch = max(1, decode_batch)
        self.last_images: Optional[torch.Tensor] = None

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        latents = self.base_model.process_latent_out(x0.float())
        n = latents.shape[0]
        out = None  # filled chunk by chunk: no list + cat, so only one N-image batch is alive at a time
        for start in range(0, n, self.decode_batch):
            comfy.model_management.throw_exception_if_processing_interrupted()
            images = self.spec.vae.decode(latents[start:start + self.decode_batch])
            if images.ndim == 5:  # video VAEs return [B, T, H, W, C]: score the frames as one strip per particle
                b, t, h, w, c = images.shape
                images = images.permute(0, 2, 1, 3, 4).reshape(b, h, t * w, c)
            if out is None:
                out = torch.empty((n,) + tuple(images.shape[1:]), dtype=torch.float32,
                                  device=comfy.model_management.intermediate_device())
            out[start:start + images.shape[0]] = images
            del images
        # Decoding may have moved the UNet (or a ControlNet) off the device to make room; sampling continues
        # right after, so put back everything the sampler had loaded (a no-op when nothing moved).
        if self.sampling_models:
            comfy.model_management.load_models_gpu(self.sampling_models)
        return out

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.last_images = None  # release the previous step's images before decoding the next ones
            images = self.decode(x0)
            self.last_images = images
            scores = self.spec.reward(images)
        if not torch.is_tensor(scores):
            scores = torch.as_tensor(scores)
        return scores.detach().float().reshape(-1).cpu()


def fk_sampler_function(spec: FKRunSpec, outcome: FKRunOutcome, ksampler_object):
    """Build the function ComfyUI's KSAMPLER calls: (model, x, sigmas, extra_args, callback, disable)."""

    def sample_fk(model, x, sigmas, extra_args=None, callback=None, disable=None, **_unused):
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
            x = _expand_particles(model, ksampler_object, x, sigmas, extra_args, spec.particles)
        n = x.shape[0]

        choice = choose_inner_sampler(spec.sampler_name)
        outcome.sampler = choice
        notes = [choice.note] if choice.note else []
        if choice.note:
            log.warning("FK steering: %s", choice.note)
        inner = comfy.samplers.sampler_object(choice.used)

        chunk = spec.chunk if spec.chunk > 0 else automatic_chunk(model_patcher, x) if model_patcher else n
        chunk = max(1, min(chunk, n))
        outcome.chunk = chunk
        if chunk < n:
            model.inner_model = ChunkedModel(guider, chunk)
            notes.append(f"particles evaluated in chunks of {chunk}")

        sampling_models = ([model_patcher] if model_patcher is not None else []) + \
            list(getattr(guider, "loaded_models", None) or [])
        pipeline = RewardPipeline(spec, base_model, sampling_models, spec.decode_batch or chunk)
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

            return inner.sampler_function(wrapped_model, x_seg, sigmas[start:end + 1], extra_args=args,
                                          callback=shifted_callback, disable=disable, **inner.extra_options)

        def on_potential_step(event):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if spec.on_potential_step is not None:
                spec.on_potential_step(event, pipeline.last_images)

        # Resampling draws get their own stream: offset so they are not the same numbers as the particle noise.
        generator = torch.Generator().manual_seed((int(seed if seed is not None else 0) + RESAMPLING_SEED_OFFSET)
                                                  % (2**63))
        result = run_segments(x, sigmas, model, sample_segment, pipeline, spec.config, generator=generator,
                              on_potential_step=on_potential_step, model_kwargs=extra_args, notes=notes)
        outcome.result = result
        outcome.final_images = pipeline.last_images
        outcome.chosen_index = result.pick(spec.config.output, generator)
        outcome.notes = notes
        if spec.on_finish is not None:
            spec.on_finish(result)
        samples = result.samples
        if spec.returns == "chosen":
            return samples[outcome.chosen_index:outcome.chosen_index + 1]
        if spec.returns == "sorted":
            return samples[reward_order(result.rewards)]
        return samples

    return sample_fk


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


def chunked_memory_estimate(chunk: int):
    """PREPARE_SAMPLING wrapper: ComfyUI sizes its memory reservation for the batch it will really run (one
    chunk of particles), not for all N at once, so large N does not force the model into low-VRAM mode."""

    def wrapper(executor, model, noise_shape, conds, model_options=None):
        shape = (min(chunk, noise_shape[0]),) + tuple(noise_shape[1:])
        return executor(model, shape, conds, model_options=model_options)

    return wrapper


def make_fk_ksampler(spec: FKRunSpec) -> tuple[comfy.samplers.KSAMPLER, FKRunOutcome]:
    """A ComfyUI SAMPLER object running FK steering, and the outcome record it fills in."""
    outcome = FKRunOutcome()
    choice = choose_inner_sampler(spec.sampler_name)  # fail early with a clear message
    inner = comfy.samplers.sampler_object(choice.used)
    ksampler = comfy.samplers.KSAMPLER(lambda *a, **k: None, inpaint_options=dict(inner.inpaint_options))
    ksampler.sampler_function = fk_sampler_function(spec, outcome, ksampler)
    ksampler.fk_outcome = outcome
    return ksampler, outcome
