"""The two sampler NODES: FK Particle Sampler (a KSampler replacement) and FK Sampler (a SAMPLER for
SamplerCustom/-Advanced).

Thin adapters: inputs are checked and turned into an FKRunSpec; sampling goes through ComfyUI's own
comfy.sample machinery with the FK KSAMPLER whose function is an :class:`~.fk_run.FKRun` (the run itself lives
in fk_run.py, sampler choice in sampler_choice.py, memory and chunk size in memory.py); no maths here.
"""

from __future__ import annotations

import json
import logging
import sys

import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io, ui

from ..fk_core import (
    check_latent,
    check_links,
    component_notes,
    contact_sheet,
    denoise_problem,
    flat_frames,
    is_out_of_memory,
    replay_payload,
    run_summary,
    stateful_patches,
    strip,
    summary_lines,
)
from .common import CATEGORY, FK_REWARD, PARTICLE_SAMPLER, SAMPLER, resend_ui_from_cache
from .conditioning import check_conditioning
from .fk_run import FKRunSpec, make_fk_ksampler
from .latents import LATENT_RATIOS, fix_empty_latent
from .layouts import absent_means
from .live import live_callbacks
from .memory import automatic_chunk, check_memory, chunked_memory_estimate, out_of_memory_error
from .potential import FKPotential, default_potential
from .preview_decoder import DEFAULT_PREVIEW_DECODER, PREVIEW_DECODER_TOOLTIP, PREVIEW_DECODERS
from .validation import check_widgets, require_widgets

log = logging.getLogger("fk_steering")

MAX_PARTICLES = 256


def _live_view(cls):
    """The live view of this node (web/fk_live.js via nodes/live.py): the observer its runs report to."""
    return live_callbacks(getattr(getattr(cls, "hidden", None), "unique_id", None))


def _show_under_node(cls, text: str | None) -> None:
    """Text under the node in the front end (ComfyUI's progress text): FK Sampler has no text output, and a note
    such as a swapped sampler must not be said only in the server console."""
    if not text:
        return
    server = getattr(sys.modules.get("server"), "PromptServer", None)  # absent when the node runs outside a server
    send = getattr(getattr(server, "instance", None), "send_progress_text", None)
    if callable(send) and cls.hidden is not None and cls.hidden.unique_id is not None:
        send(f"{SAMPLER}: {text}", cls.hidden.unique_id)


def _final_reward_input():
    return FK_REWARD.Input("final_reward", optional=True,
                           tooltip=("Optional final judge (e.g. the VLM judge or HPSv3): scores only the finished "
                                    "particles and alone decides their final weights and which one is output; "
                                    "'reward' then only steers along the way. Costs one judge call per particle "
                                    "per run."))


# A prompt without preview_decoder (written for 0.1.0, which had none) decodes with the full VAE as 0.1.0 did;
# new workflows get the widget's default (auto).
PREVIEW_DECODER_IF_ABSENT = absent_means("FKParticleSampler")["preview_decoder"]
assert PREVIEW_DECODER_IF_ABSENT == absent_means("FKSampler")["preview_decoder"]


def _preview_decoder_input():
    return io.Combo.Input("preview_decoder", options=list(PREVIEW_DECODERS), default=DEFAULT_PREVIEW_DECODER,
                          optional=True, tooltip=PREVIEW_DECODER_TOOLTIP)


def _particle_inputs(default_particles: int = 4):
    return [
        io.Int.Input("particles", default=default_particles, min=1, max=MAX_PARTICLES,
                     tooltip=("How many candidate images are sampled side by side. More = better odds of a "
                              "high-scoring image, at the cost of time and memory (like batch size).")),
        io.Int.Input("particle_chunk", default=0, min=0, max=MAX_PARTICLES, optional=True,
                     tooltip=("Run the model on at most this many particles at once (0 = automatic from free "
                              "memory). Lower it if you run out of VRAM: slower, and the same images up to float "
                              "rounding (README, Compatibility).")),
    ]


class FKParticleSampler(io.ComfyNode):
    """KSampler replacement: N particles, steered by a reward; outputs the best image plus a contact sheet."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FKParticleSampler",
            display_name="FK Particle Sampler",
            category=CATEGORY,
            description=("Like KSampler, but samples several candidates (particles) at once and keeps steering them "
                         "towards images your reward scores highly (Feynman-Kac steering). Outputs the best "
                         "image, a contact sheet of all candidates and a trace of what happened."),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model, as for KSampler."),
                io.Conditioning.Input("positive", tooltip="What you want (one prompt, not a batch)."),
                io.Conditioning.Input("negative", tooltip="What you don't want (one prompt, not a batch)."),
                io.Latent.Input("latent_image", tooltip=("Starting latent (batch size 1): an empty latent, or an "
                                                         "encoded image for img2img / inpainting.")),
                io.Vae.Input("vae", tooltip="Used to turn each particle's preview into an image for the reward."),
                FK_REWARD.Input("reward", tooltip="What counts as a good image (from FK Reward Loader)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Same seed and settings = same images."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps, as for KSampler."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale, as for KSampler."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler_ancestral",
                               tooltip=("Sampler between steering checks. FK needs a random (ancestral/SDE) sampler; "
                                        "deterministic ones such as euler or dpmpp_2m are swapped for their random "
                                        "sibling (noted in the trace).")),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal",
                               tooltip="Noise schedule, as for KSampler."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Below 1 keeps part of the input latent (img2img), as for KSampler."),
                *_particle_inputs(),
                FKPotential.Input("potential", optional=True,
                                  tooltip="Steering settings (FK Potential Selector). Defaults if unconnected."),
                _final_reward_input(),
                _preview_decoder_input(),
            ],
            outputs=[
                io.Latent.Output(display_name="best_latent"),
                io.Image.Output(display_name="best_image"),
                io.Image.Output(display_name="contact_sheet"),
                io.Image.Output(display_name="all_particles"),
                io.String.Output(display_name="trace_json"),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt, io.Hidden.extra_pnginfo],
            **resend_ui_from_cache(),
        )

    @classmethod
    def validate_inputs(cls, **values):
        # **values turns ComfyUI's own min/max/option checks off for every input: they are re-checked here.
        return check_widgets(cls, PARTICLE_SAMPLER, values, denoise_problem) or True

    @classmethod
    def execute(cls, model, positive, negative, latent_image, vae, reward, seed, steps, cfg, sampler_name,
                scheduler, denoise, particles, particle_chunk=0, potential=None,
                final_reward=None, preview_decoder=PREVIEW_DECODER_IF_ABSENT) -> io.NodeOutput:
        values = dict(locals())
        # widgets linked from other nodes were not checked when the prompt was queued
        require_widgets(cls, PARTICLE_SAMPLER, values, denoise_problem)
        config = check_links(PARTICLE_SAMPLER, potential, reward, final_reward, default_potential)
        for label, conditioning in (("positive", positive), ("negative", negative)):
            check_conditioning(PARTICLE_SAMPLER, conditioning, label)
        check_latent(PARTICLE_SAMPLER, latent_image, model)
        check_memory(PARTICLE_SAMPLER, latent_image["samples"], particles, vae, guided=config.guidance > 0)
        latent = fix_empty_latent(model, latent_image)
        latent_n = latent.expand(particles, *latent.shape[1:]).contiguous()
        chunk = max(1, min(int(particle_chunk or 0) or automatic_chunk(model, latent_n), particles))
        if chunk < particles and not stateful_patches(model.model_options):  # else the model runs all at once
            model = model.clone()
            model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, "fk_steering_chunk",
                                       chunked_memory_estimate(chunk))
        spec = FKRunSpec(config=config, reward=reward, vae=vae, sampler_name=sampler_name, particles=particles,
                         expand=False, returns="all", chunk=chunk, final_reward=final_reward, live=_live_view(cls),
                         preview_decoder=preview_decoder or PREVIEW_DECODER_IF_ABSENT)
        fk_sampler, run = make_fk_ksampler(spec)
        sigmas = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=run.choice.used,
                                         scheduler=scheduler, denoise=denoise,
                                         model_options=model.model_options).sigmas
        try:
            samples = comfy.sample.sample_custom(
                model, comfy.sample.prepare_noise(latent_n, seed), cfg, fk_sampler, sigmas, positive, negative,
                latent_n, noise_mask=latent_image.get("noise_mask"), seed=seed,
                callback=latent_preview.prepare_callback(model, sigmas.shape[-1] - 1),
                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED)
        except (RuntimeError, MemoryError) as error:
            if is_out_of_memory(error):
                raise out_of_memory_error(PARTICLE_SAMPLER, particles, chunk, error) from None
            raise
        return _outputs(cls, run.outcome, samples, latent_image, vae)


def _outputs(cls, outcome, samples, latent_image: dict, vae) -> io.NodeOutput:
    """best_latent, best_image, contact_sheet, all_particles (best first), trace_json and the node's preview."""
    result = outcome.result
    chosen = result.chosen_index
    images = result.final_images
    if images is None or images.shape[0] != samples.shape[0]:  # reward never saw final images: decode now
        images = vae.decode(samples)
    # Like KSampler: the latent's own keys travel on, except those describing the input (ComfyUI 0.11+ drops
    # the downscale ratios once the empty latent has been sized for the model).
    best_latent = {k: v for k, v in latent_image.items() if k not in ("samples", "batch_index", *LATENT_RATIOS)}
    best_latent["samples"] = samples[chosen:chosen + 1].clone()
    if "noise_mask" in best_latent and torch.is_tensor(best_latent["noise_mask"]):
        best_latent["noise_mask"] = best_latent["noise_mask"][:1]
    trace = outcome.trace_dict()
    order = trace["order"]  # particles by reward, best first
    # video particles: one row per particle with a few of its frames on the sheet, every frame in the IMAGE outputs
    sheet = contact_sheet(strip(images), result.rewards, chosen, columns=1 if images.ndim == 5 else None,
                          caption=summary_lines(trace),
                          notes=component_notes(trace.get("final_components"), trace["final_rewards"]))
    # fk_live: the live view's final state, for a page that saw no live events (a cached run, a page opened later)
    replay = replay_payload(getattr(getattr(cls, "hidden", None), "unique_id", None), trace, result.best_index,
                            chosen, strip(images))
    ui_dict = {**ui.PreviewImage(sheet, cls=cls).as_dict(), "text": [run_summary(result, trace)],
               "fk_live": [replay]}
    return io.NodeOutput(best_latent, flat_frames(images[chosen:chosen + 1]).clone(), sheet,
                         flat_frames(images[order]).clone(), json.dumps(trace), ui=ui_dict)


class FKSampler(io.ComfyNode):
    """A SAMPLER for SamplerCustom / SamplerCustomAdvanced: FK with any guider, sigmas and noise."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FKSampler",
            display_name="FK Sampler",
            category=CATEGORY,
            description=("A sampler for SamplerCustom / SamplerCustomAdvanced that runs FK steering with several "
                         "particles. The latent batch must be 1; the output is the best particle, or all "
                         "particles sorted by reward when 'return' is set to all."),
            inputs=[
                io.Vae.Input("vae", tooltip="Used to turn each particle's preview into an image for the reward."),
                FK_REWARD.Input("reward", tooltip="What counts as a good image (from FK Reward Loader)."),
                *_particle_inputs(),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler_ancestral",
                               tooltip=("Sampler between steering checks; deterministic ones are swapped for their "
                                        "random sibling.")),
                io.Combo.Input("return", options=["best particle", "all particles (sorted by reward)"],
                               default="best particle", optional=True,
                               tooltip=("'best particle': one latent, like any sampler. 'all particles': every "
                                        "particle as a batch, best first.")),
                FKPotential.Input("potential", optional=True,
                                  tooltip="Steering settings (FK Potential Selector). Defaults if unconnected."),
                _final_reward_input(),
                _preview_decoder_input(),
            ],
            outputs=[io.Sampler.Output(display_name="sampler")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **values):
        return check_widgets(cls, SAMPLER, values) or True  # re-checks what **values switched off

    @classmethod
    def execute(cls, vae, reward, particles, sampler_name, particle_chunk=0, potential=None, final_reward=None,
                **kwargs) -> io.NodeOutput:
        require_widgets(cls, SAMPLER, {"particles": particles, "particle_chunk": particle_chunk,
                                       "sampler_name": sampler_name, **kwargs})
        config = check_links(SAMPLER, potential, reward, final_reward, default_potential)
        returns = "sorted" if str(kwargs.get("return", "best particle")).startswith("all") else "chosen"
        spec = FKRunSpec(config=config, reward=reward, vae=vae, sampler_name=sampler_name, particles=particles,
                         expand=True, returns=returns, chunk=int(particle_chunk or 0), final_reward=final_reward,
                         live=_live_view(cls),
                         preview_decoder=kwargs.get("preview_decoder") or PREVIEW_DECODER_IF_ABSENT)
        fk_sampler, run = make_fk_ksampler(spec)
        _show_under_node(cls, run.choice.note)
        return io.NodeOutput(fk_sampler)


NODES = [FKParticleSampler, FKSampler]
