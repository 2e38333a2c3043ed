"""Which decoder turns the particles' x0-predictions into images for the reward at FK's intermediate checks.

* ``full VAE``: the workflow's VAE, the same decode as the final images.
* ``TAESD``: the TAESD-family decoder ComfyUI's own live previews use for the model's latent format
  (``models/vae_approx/taesd_decoder…`` for SD1.5, ``taesdxl_decoder…`` for SDXL, ``taesd3_decoder…`` for SD3,
  ``taef1_decoder…`` for Flux …), found and built exactly as ``latent_preview.get_previewer`` does: the first file
  in the ``vae_approx`` folders whose name starts with ``latent_format.taesd_decoder_name``, loaded into
  ``comfy.taesd.taesd.TAESD``. About 1/30 of the full VAE's parameters and roughly 10x cheaper per image.
* ``video TAE`` (ComfyUI 0.33+, video models): the TAEHV-family decoder ComfyUI's own video previews load
  (``latent_preview.VIDEO_TAES``: taehv, lighttaew2_1 / 2_2, lighttaehy1_5, taeltx_2 …) from the same
  ``vae_approx`` file, through ``comfy.sd.VAE`` as ComfyUI does; chosen by ``auto`` and ``TAESD`` alike.
* ``auto``: TAESD (or the video TAE) when that file is there, else the full VAE.

The final particles are always decoded with the full VAE (that is what the user gets and what the final
weights score). The decoders themselves are fk_core's (fk_core/latent_decoders.py): images [B, H, W, C] (video:
clips [B, T, H, W, C]) in [0, 1] on the decoding device, no CPU round trip; this file finds and loads the files.
"""

from __future__ import annotations

import os
from typing import Optional

import comfy.taesd.taesd
import folder_paths
import latent_preview
import torch

from ..fk_core import FKError, FullVAEDecoder, TAESDDecoder, VideoTAEDecoder

PREVIEW_DECODERS = ("auto", "full VAE", "TAESD")
DEFAULT_PREVIEW_DECODER = "auto"
VAE_APPROX = "vae_approx"  # ComfyUI's folder for preview decoders (models/vae_approx)
PREVIEW_DECODER_TOOLTIP = (
    "How each check turns the particles' previews into images for the reward. 'auto': the small TAESD decoder "
    "ComfyUI's live previews use (models/vae_approx: taesd_decoder for SD1.5, taesdxl_decoder for SDXL, "
    "taesd3_decoder for SD3, taef1_decoder for Flux) when it is there, else the full VAE. 'TAESD': always that "
    "decoder (error if the file is missing). 'full VAE': the workflow's VAE at every check (slowest, exact). "
    "The final images are always decoded with the full VAE.")


def _load_once(cache: dict, key: tuple, load, failure: str, advice: str):
    """``load()``, kept in ``cache`` under ``key`` (file path and modification time …): a check run reuses the
    decoder it loaded; one entry only (decoders are small, but a stale one per edited file is pointless). A file
    that does not load is named with ``failure`` and ``advice`` in the FKError."""
    if key not in cache:
        try:
            built = load()
        except Exception as err:  # unreadable file, wrong keys or shapes: say which file, re-raised below
            detail = (str(err).splitlines() or [""])[0][:200]
            raise FKError(f"{failure} ({type(err).__name__}: {detail}); {advice}") from err
        cache.clear()
        cache[key] = built
    return cache[key]


_VIDEO_TAE_CACHE: dict[tuple, object] = {}


def load_video_tae(path: str, who: str):
    """The video TAE file as ComfyUI's previewer loads it (``comfy.sd.VAE`` of the file's state dict), cached."""
    import comfy.sd
    import comfy.utils

    def load():
        vae = comfy.sd.VAE(comfy.utils.load_torch_file(path))
        # a file of other keys builds an empty VAE that fails only at its first decode: refused here, by name
        getattr(vae, "throw_exception_if_invalid", lambda: None)()
        return vae

    vae = _load_once(_VIDEO_TAE_CACHE, (path, os.path.getmtime(path)), load,
                     f"{who}: preview_decoder could not load {path} as a video TAE",
                     "replace it with the file from github.com/madebyollin/taehv or choose full VAE")
    first_stage = getattr(vae, "first_stage_model", None)
    if first_stage is not None and hasattr(first_stage, "show_progress_bar"):
        first_stage.show_progress_bar = False
    return vae


def taesd_decoder_name(latent_format) -> Optional[str]:
    return getattr(latent_format, "taesd_decoder_name", None)


def is_video_decoder(name: str) -> bool:
    """ComfyUI 0.33+ previews video formats with TAEHV-style decoders through comfy.sd.VAE (VideoTAEDecoder)."""
    return name in getattr(latent_preview, "VIDEO_TAES", ())


def find_taesd_decoder(latent_format) -> Optional[str]:
    """Full path of the decoder file ComfyUI's live previews would load for this latent format, or None.

    The same rule as ``latent_preview.get_previewer``: the first file in ``vae_approx`` whose name starts with
    the format's ``taesd_decoder_name``."""
    name = taesd_decoder_name(latent_format)
    if not name:
        return None
    filename = next((fn for fn in folder_paths.get_filename_list(VAE_APPROX) if fn.startswith(name)), None)
    return folder_paths.get_full_path(VAE_APPROX, filename) if filename else None


def vae_approx_folders() -> str:
    return ", ".join(folder_paths.get_folder_paths(VAE_APPROX)) or "models/vae_approx"


# Built decoders by (path, file modification time, latent channels): a check run reuses the one it loaded.
_TAESD_CACHE: dict[tuple, torch.nn.Module] = {}


def load_taesd(path: str, latent_channels: int, who: str) -> torch.nn.Module:
    def load():
        module = comfy.taesd.taesd.TAESD(None, path, latent_channels=latent_channels)
        return module.eval()

    return _load_once(_TAESD_CACHE, (path, os.path.getmtime(path), int(latent_channels)), load,
                      f"{who}: preview_decoder could not load {path} as a TAESD decoder for {latent_channels}-channel "
                      "latents", "replace the file with the matching decoder from github.com/madebyollin/taesd or "
                      "choose full VAE")


def choose_preview_decoder(choice: str, vae, base_model, device: torch.device,
                           who: str = "FK sampler") -> tuple[object, Optional[str]]:
    """(decoder for the checks, note for the trace or None). ``who`` names the node in messages."""
    full = FullVAEDecoder(vae, base_model)
    if choice == "full VAE":
        return full, None
    if choice not in PREVIEW_DECODERS:
        raise FKError(f"{who}: preview_decoder {choice!r} is not a choice; use one of {', '.join(PREVIEW_DECODERS)}")
    latent_format = base_model.latent_format
    format_name = type(latent_format).__name__
    name = taesd_decoder_name(latent_format)
    video_tae = bool(name) and is_video_decoder(name)
    # image TAESDs only for image latents: a video latent ([B, C, T, H, W]) would reach a conv2d with 5-D input
    supported = bool(name) and (video_tae or getattr(latent_format, "latent_dimensions", 2) == 2)
    path = find_taesd_decoder(latent_format) if supported else None
    if path is not None and video_tae:
        return VideoTAEDecoder(load_video_tae(path, who), path), None
    if path is not None:
        return TAESDDecoder(load_taesd(path, latent_format.latent_channels, who), path, device), None
    if choice == "auto":
        if not supported:
            return full, None  # nothing cheaper exists for this model: the full VAE is the only choice
        return full, (f"checks decode with the full VAE: put {name}.pth (or .safetensors) in {vae_approx_folders()} "
                      f"for cheaper checks with TAESD (the file ComfyUI's live previews use)")
    if not supported:
        raise FKError(f"{who}: preview_decoder TAESD has no decoder for this model's latent format ({format_name}); "
                      f"choose auto or full VAE")
    raise FKError(f"{who}: preview_decoder TAESD needs {name}.pth (or .safetensors) in {vae_approx_folders()} for "
                  f"this model's latent format ({format_name}), and none is there; put the file from "
                  f"github.com/madebyollin/taesd there (ComfyUI's TAESD live previews use the same file) or choose "
                  f"auto or full VAE")
