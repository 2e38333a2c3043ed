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

from ..fk_core import FKError, finite, message

PARTICLE_SAMPLER = "FK Particle Sampler"
SAMPLER = "FK Sampler"
# What lives at once in the intermediate device's memory, in copies of the N-particle latent / image batch.
LATENT_COPIES = 6
IMAGE_COPIES = 2
MEMORY_HEADROOM = 0.8  # of the free memory; the rest is left to the model and the VAE
MEMORY_ADVICE = "lower particles, set particle_chunk (e.g. 4 or 2) or lower the resolution"


def check_latent(node: str, latent_image: Any, model=None) -> torch.Tensor:
    """The latent's samples tensor, refused with a message when it is not a usable one-latent batch."""
    if not isinstance(latent_image, dict) or not torch.is_tensor(latent_image.get("samples")):
        raise FKError(message(node, "latent_image", "is not a LATENT (no 'samples' tensor)",
                              "connect Empty Latent Image or VAE Encode"))
    samples = latent_image["samples"]
    if samples.ndim < 4:
        raise FKError(message(node, "latent_image", f"has shape {tuple(samples.shape)}, not [batch, channels, "
                              "height, width]", "connect Empty Latent Image or VAE Encode"))
    if samples.shape[0] != 1:
        raise FKError(message(node, "latent_image", f"has batch {samples.shape[0]}, but FK takes ONE latent "
                              "(batch size 1) and makes the particles itself",
                              "set the latent's batch size to 1 and raise particles instead"))
    if not finite(samples):
        bad = int((~torch.isfinite(samples)).sum())
        raise FKError(message(node, "latent_image", f"contains NaN/inf values ({bad} of {samples.numel()})",
                              "re-encode the image or use a fresh Empty Latent Image; the reward is not the cause"))
    channels = _model_channels(model)
    if channels is not None and samples.shape[1] != channels and not bool((samples == 0).all()):
        raise FKError(message(node, "latent_image", f"has {samples.shape[1]} channels but the model expects "
                              f"{channels}", "use the VAE and the empty-latent node that match this model"))
    mask = latent_image.get("noise_mask")
    if mask is not None and torch.is_tensor(mask):
        if not finite(mask):
            raise FKError(message(node, "latent_image", "has a noise mask with NaN/inf values",
                                  "rebuild the mask (Set Latent Noise Mask)"))
        if mask.ndim >= 3 and mask.shape[0] not in (1,):
            raise FKError(message(node, "latent_image", f"has a noise mask of batch {mask.shape[0]}; FK takes one "
                                  "latent with one mask", "use a single mask (batch 1)"))
        h, w = samples.shape[-2:]
        mh, mw = mask.shape[-2:]
        if (mh, mw) not in ((h, w), (h * 8, w * 8)) and (mh * w != mw * h):
            raise FKError(message(node, "latent_image", f"has a {mh}x{mw} noise mask that does not fit the "
                                  f"{h}x{w} latent (not even in aspect ratio)",
                                  "make the mask from an image of the same size as the latent's image"))
    return samples


def _model_channels(model) -> int | None:
    try:
        return int(model.model.latent_format.latent_channels)
    except (AttributeError, TypeError, ValueError):
        return None


def particle_memory_bytes(samples: torch.Tensor, particles: int, vae=None) -> int:
    """Bytes FK keeps in the intermediate device's memory for N particles: copies of the N-particle latent
    (the latents, their noise, the noised batch, the remembered x0, the sampler's temporaries, the output)
    and of the decoded N-image batch (the step's previews and the final images)."""
    latent = samples[0].numel() * 4  # float32
    ratio = _vae_ratio(vae)
    image = samples.shape[-2] * samples.shape[-1] * ratio * ratio * 3 * 4
    return particles * (latent * LATENT_COPIES + image * IMAGE_COPIES)


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


def check_memory(node: str, samples: torch.Tensor, particles: int, vae=None, device=None) -> None:
    """Refuse before allocating when the N-particle latents and images cannot fit."""
    import comfy.model_management as mm

    device = device if device is not None else mm.intermediate_device()
    need = particle_memory_bytes(samples, particles, vae)
    free = free_memory_bytes(device)
    if free is not None and need > free * MEMORY_HEADROOM:
        raise FKError(message(node, "particles", f"({particles}) of a {'x'.join(map(str, samples.shape[1:]))} "
                              f"latent need about {_gib(need)} for their latents and decoded previews, but only "
                              f"{_gib(free)} is free", MEMORY_ADVICE))


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def is_out_of_memory(error: BaseException) -> bool:
    """torch's out-of-memory errors (GPU or CPU allocator). Not comfy's OOM_EXCEPTION: on a torch without
    CUDA support that is plain ``Exception``, which would call every error an out-of-memory."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if isinstance(t, type))
    if (oom_types and isinstance(error, oom_types)) or isinstance(error, MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)


def out_of_memory_error(node: str, particles: int, chunk: int, error: BaseException) -> FKError:
    """A real out-of-memory during sampling: free the models (as ComfyUI does for an OOM) and say what to do."""
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache()
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return FKError(message(node, "particles", f"({particles}, model run in chunks of {chunk}) ran out of memory "
                           f"({first}); the models were unloaded", MEMORY_ADVICE))


def check_sigmas(node: str, sigmas: torch.Tensor) -> None:
    """The SAMPLER path gets its sigmas from another node: refuse what no sampler can run."""
    if not torch.is_tensor(sigmas) or sigmas.ndim != 1 or sigmas.numel() < 2:
        size = sigmas.numel() if torch.is_tensor(sigmas) else 0
        raise FKError(message(node, "sigmas", f"has {size} value(s): no step to take",
                              "connect a scheduler (e.g. BasicScheduler) with at least 1 step"))
    if not finite(sigmas):
        raise FKError(message(node, "sigmas", "contain NaN/inf values", "connect a scheduler node's SIGMAS"))
    if bool((sigmas[1:] > sigmas[:-1]).any()):
        raise FKError(message(node, "sigmas", "increase somewhere (a sampler goes from noise down to 0)",
                              "connect the scheduler's sigmas unchanged, or flip them back into decreasing order"))


def check_noised_latent(node: str, x: torch.Tensor) -> None:
    if not finite(x):
        raise FKError(message(node, "latent_image", "(the sampler's input) contains NaN/inf values",
                              "check the latent and the noise node feeding SamplerCustom; the reward is not the "
                              "cause"))


def check_x0(node: str, x0: torch.Tensor) -> torch.Tensor:
    """Before decoding: the particles whose x0-prediction is NaN/inf ([N] bool). All of them is the model's
    problem (told before the reward could be blamed for scoring NaN images)."""
    n = x0.shape[0]
    bad = ~torch.isfinite(x0.reshape(n, -1)).all(dim=1)
    if bool(bad.all()):
        raise FKError(message(node, "model", "predicted NaN/inf images for every particle (not a reward problem)",
                              "lower cfg, try --force-fp32 or --fp32-vae, or check the model and its LoRAs"))
    return bad.cpu()


def score_tensor(node: str, scores: Any, name: str, n: int) -> torch.Tensor:
    """A reward's answer for ``n`` images as a float [n] CPU tensor; anything else is the reward's problem."""
    try:
        scores = torch.as_tensor(scores).detach().float().reshape(-1).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise FKError(message(node, "reward", f"{name} returned {type(scores).__name__}, not numbers",
                              "check the reward node (FK Reward Loader)")) from None
    if scores.numel() != n:
        raise FKError(message(node, "reward", f"{name} returned {scores.numel()} scores for {n} images",
                              "the reward must give one number per image; check the reward node"))
    return scores


def check_scores(node: str, scores: Any, name: str, bad_x0: torch.Tensor) -> torch.Tensor:
    """Scores as a float [N] tensor; a wrong shape or an all-NaN result from fine images is the reward's problem."""
    scores = score_tensor(node, scores, name, bad_x0.shape[0])
    if not bool(torch.isfinite(scores[~bad_x0]).any()):
        raise FKError(message(node, "reward", f"{name} returned NaN/inf for every particle although the "
                              "images were fine", "check the reward model and its weights, or pick another reward"))
    return scores
