"""What N particles need in memory, estimated before anything is allocated, and the messages when it is short.

FK keeps copies of the N-particle latent and of the decoded N-image batch on the host's intermediate device;
:func:`particle_memory_bytes` counts them, :func:`memory_problem` compares with what the host says is free (on the
CPU also capped by the process's address-space limit, :func:`address_space_room`), and
:func:`out_of_memory_message` says what to lower after a real out-of-memory. The VAE is read duck-typed
(ComfyUI's ``spacial_compression_decode()`` and ``upscale_ratio``); without one an SD-family 8x VAE is assumed.
"""

from __future__ import annotations

import torch

from .messages import message
from .run_checks import gib

# What lives at once in the intermediate device's memory, in copies of the N-particle latent / image batch.
LATENT_COPIES = 6
IMAGE_COPIES = 2
# guided checks (fk_core.guidance) keep the preview decoder's activations of one decode for the backward pass:
# TAESD's 64-channel full-resolution layers are about 64/3 image sizes each, a few of them alive at once
BACKWARD_IMAGE_COPIES = 48
MEMORY_HEADROOM = 0.8  # of the free memory; the rest is left to the model and the VAE
MEMORY_ADVICE = "lower particles, set particle_chunk (e.g. 4 or 2) or lower the resolution"


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


def memory_problem(node: str, samples: torch.Tensor, particles: int, free: int | None, vae=None,
                   guided: bool = False) -> str | None:
    """The message when ``particles`` of the latent ``samples`` need more than :data:`MEMORY_HEADROOM` of
    ``free`` bytes (None: the host cannot tell, nothing is refused)."""
    need = particle_memory_bytes(samples, particles, vae, guided)
    if free is None or need <= free * MEMORY_HEADROOM:
        return None
    return message(node, "particles", f"({particles}) of a {'x'.join(map(str, samples.shape[1:]))} latent need "
                   f"about {gib(need)} for their latents and decoded previews, but only {gib(free)} is free",
                   MEMORY_ADVICE)


def out_of_memory_message(node: str, particles: int, chunk: int, error: BaseException) -> str:
    """What to say after a real out-of-memory during sampling (the host has freed its models)."""
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return message(node, "particles", f"({particles}, model run in chunks of {chunk}) ran out of memory "
                   f"({first}); the models were unloaded", MEMORY_ADVICE)
