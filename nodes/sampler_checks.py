"""Up-front checks of FK Particle Sampler and FK Sampler, before any model work (message style of
nodes/validation.py), plus the run-time checks that tell a model problem from a reward problem.

* widget values (NaN/inf, ranges, unknown sampler/scheduler/return mode): nodes/validation.py check_widgets;
* tensors: NaN/inf in the latent named as such, latent channels against the model, mask size (the conditioning:
  conditioning.py);
* memory: the N-particle latent and noise are estimated before they are allocated; a real out-of-memory in a
  chunk is reported with the same advice (:func:`out_of_memory_error`), after the models are freed;
* sigmas on the SAMPLER path: empty, increasing, non-finite;
* scores: NaN/inf/wrong shape from the reward is a reward problem, NaN/inf x0 from the model is not.
"""

from __future__ import annotations

from typing import Any

import torch

from ..fk_core import FKError, check_noise_mask, check_one_latent, finite, gib, message

PARTICLE_SAMPLER = "FK Particle Sampler"
SAMPLER = "FK Sampler"
# What lives at once in the intermediate device's memory, in copies of the N-particle latent / image batch.
LATENT_COPIES = 6
IMAGE_COPIES = 2
# guided checks (fk_core.guidance) keep the preview decoder's activations of one decode for the backward pass:
# TAESD's 64-channel full-resolution layers are about 64/3 image sizes each, a few of them alive at once
BACKWARD_IMAGE_COPIES = 48
MEMORY_HEADROOM = 0.8  # of the free memory; the rest is left to the model and the VAE
MEMORY_ADVICE = "lower particles, set particle_chunk (e.g. 4 or 2) or lower the resolution"


def check_latent(node: str, latent_image: Any, model=None) -> torch.Tensor:
    """The latent's samples tensor, refused with a message when it is not a usable one-latent batch."""
    if isinstance(latent_image, dict):
        check_not_nested(node, latent_image.get("samples"))
    if not isinstance(latent_image, dict) or not torch.is_tensor(latent_image.get("samples")):
        raise FKError(message(node, "latent_image", "is not a LATENT (no 'samples' tensor)",
                              "connect Empty Latent Image or VAE Encode"))
    samples = latent_image["samples"]
    check_one_latent(node, samples)
    check_latent_dimensions(node, samples, getattr(model, "model", None))
    channels = _model_channels(model)
    if channels is not None and samples.shape[1] != channels and not bool((samples == 0).all()):
        raise FKError(message(node, "latent_image", f"has {samples.shape[1]} channels but the model expects "
                              f"{channels}", "use the VAE and the empty-latent node that match this model"))
    mask = latent_image.get("noise_mask")
    if mask is not None and torch.is_tensor(mask):
        check_noise_mask(node, mask, samples)
    return samples


def check_not_nested(node: str, samples: Any, label: str = "latent_image") -> None:
    """ComfyUI 0.33+ packs several latents into one (comfy.nested_tensor.NestedTensor, e.g. LTX-2's video +
    audio); FK's particles are rows of one tensor (indexed, resampled, chunked): refused by name."""
    if torch.is_tensor(samples) or not getattr(samples, "is_nested", False):
        return
    shapes = ", ".join(str(list(t.shape)) for t in getattr(samples, "tensors", []))
    raise FKError(message(node, label, f"is a nested latent (several latents packed together: {shapes}), which FK "
                          "particles do not support yet", "sample it with KSampler / SamplerCustom, or give FK a "
                          "single video or image latent"))


def _is_packed_nested(x: torch.Tensor, base_model) -> bool:
    """ComfyUI 0.33+ samples a nested latent as one flat pack [B, 1, L] (comfy.utils.pack_latents); an image or
    video model's own latents are never that shape."""
    dims = getattr(getattr(base_model, "latent_format", None), "latent_dimensions", None)
    return isinstance(dims, int) and dims >= 2 and x.ndim == 3 and x.shape[1] == 1


def check_latent_dimensions(node: str, samples: torch.Tensor, base_model, label: str = "latent_image") -> None:
    """An image latent is [B, C, H, W], a video latent [B, C, T, H, W]: the model's latent format says which it
    takes (``latent_dimensions`` 2 or 3). The wrong kind would end deep in the model (conv2d on 5-D input)."""
    dims = getattr(getattr(base_model, "latent_format", None), "latent_dimensions", None)
    if not isinstance(dims, int) or dims not in (2, 3) or samples.ndim - 2 == dims:
        return
    shape = list(samples.shape)
    if dims == 2:
        what = "is a video latent" if samples.ndim == 5 else "has shape"
        raise FKError(message(node, label, f"{what} {shape} but the model is an image model (it takes [batch, "
                              "channels, height, width])", "use Empty Latent Image (or VAE Encode of an image) with "
                              "this model, or load a video model (Wan, HunyuanVideo, LTXV) for a video latent"))
    raise FKError(message(node, label, f"has shape {shape}, but the model is a video model (it takes [batch, "
                          "channels, frames, height, width])", "use the model's empty video latent node (e.g. "
                          "EmptyHunyuanLatentVideo, EmptyLTXVLatentVideo) or its image-to-video node"))


def _model_channels(model) -> int | None:
    try:
        return int(model.model.latent_format.latent_channels)
    except (AttributeError, TypeError, ValueError):
        return None


def particle_memory_bytes(samples: torch.Tensor, particles: int, vae=None, guided: bool = False) -> int:
    """Bytes FK keeps in the intermediate device's memory for N particles: copies of the N-particle latent
    (the latents, their noise, the noised batch, the remembered x0, the sampler's temporaries, the output)
    and of the decoded N-image batch (the step's previews and the final images)."""
    latent = samples[0].numel() * 4  # float32
    ratio = _vae_ratio(vae)
    image = samples.shape[-2] * samples.shape[-1] * ratio * ratio * 3 * 4 * _decoded_frames(samples, vae)
    if guided:  # the gradient (one more latent copy) and the decoder's activations for the backward pass
        return particles * (latent * (LATENT_COPIES + 1) + image * (IMAGE_COPIES + BACKWARD_IMAGE_COPIES))
    return particles * (latent * LATENT_COPIES + image * IMAGE_COPIES)


def _decoded_frames(samples: torch.Tensor, vae) -> int:
    """Frames a video latent [B, C, T, H, W] decodes to (the VAE's temporal rule, e.g. 4(T-1)+1 for Wan); 1 for
    an image latent."""
    if samples.ndim != 5:
        return 1
    frames = int(samples.shape[2])
    rule = getattr(vae, "upscale_ratio", None)
    if isinstance(rule, tuple) and rule and callable(rule[0]):
        try:
            return max(1, int(rule[0](frames)))
        except (TypeError, ValueError):
            return frames
    return frames


def _vae_ratio(vae) -> int:
    try:
        ratio = vae.spacial_compression_decode() if vae is not None else 8
        return int(ratio)
    except (AttributeError, TypeError, ValueError):
        return 8  # SD-family VAEs


def free_memory_bytes(device) -> int | None:
    try:
        import comfy.model_management as mm

        free = int(mm.get_free_memory(device))
    except (AttributeError, TypeError, RuntimeError):
        return None
    if getattr(device, "type", str(device)) == "cpu":
        room = address_space_room()
        if room is not None:
            free = min(free, room)
    return free


def address_space_room() -> int | None:
    """Bytes this process may still map under its address-space limit (``ulimit -v``, ``prlimit --as``,
    RLIMIT_AS), or None without a limit. Free RAM above that limit cannot be used: an allocation past it fails
    however much RAM the machine has."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_AS
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(0, soft - _mapped_bytes())


def _mapped_bytes() -> int:
    """This process's current virtual size (what RLIMIT_AS counts)."""
    import psutil  # a ComfyUI requirement

    return int(psutil.Process().memory_info().vms)


def check_memory(node: str, samples: torch.Tensor, particles: int, vae=None, device=None,
                 guided: bool = False) -> None:
    """Refuse before allocating when the N-particle latents and images cannot fit."""
    import comfy.model_management as mm

    device = device if device is not None else mm.intermediate_device()
    need = particle_memory_bytes(samples, particles, vae, guided)
    free = free_memory_bytes(device)
    if free is not None and need > free * MEMORY_HEADROOM:
        raise FKError(message(node, "particles", f"({particles}) of a {'x'.join(map(str, samples.shape[1:]))} "
                              f"latent need about {gib(need)} for their latents and decoded previews, but only "
                              f"{gib(free)} is free", MEMORY_ADVICE))


def out_of_memory_error(node: str, particles: int, chunk: int, error: BaseException) -> FKError:
    """A real out-of-memory during sampling: free the models (as ComfyUI does for an OOM) and say what to do."""
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache()
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return FKError(message(node, "particles", f"({particles}, model run in chunks of {chunk}) ran out of memory "
                           f"({first}); the models were unloaded", MEMORY_ADVICE))


def check_noised_latent(node: str, x: torch.Tensor, base_model=None) -> None:
    check_not_nested(node, x, "latent_image (the sampler's input)")
    if _is_packed_nested(x, base_model):
        raise FKError(message(node, "latent_image (the sampler's input)", f"is several latents packed into one "
                              f"{list(x.shape)} (how ComfyUI hands samplers a nested latent, e.g. LTX-2's video + "
                              "audio), which FK particles do not support yet", "sample it with KSampler / "
                              "SamplerCustom's own samplers, or give FK a single video or image latent"))
    check_latent_dimensions(node, x, base_model, "latent_image (the sampler's input)")
    if not finite(x):
        raise FKError(message(node, "latent_image", "(the sampler's input) contains NaN/inf values",
                              "check the latent and the noise node feeding SamplerCustom; the reward is not the "
                              "cause"))
