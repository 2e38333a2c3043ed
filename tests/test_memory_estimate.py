"""fk_core/memory_estimate.py without a host: what N particles need, the refusal when it is short and the message
after a real out-of-memory (with a real video VAE: test_comfy_video.py)."""

from __future__ import annotations

import torch

from fk_core import memory_problem, out_of_memory_message, particle_memory_bytes
from fk_core.memory_estimate import IMAGE_COPIES, LATENT_COPIES, MEMORY_ADVICE, address_space_room


def test_memory_estimate_counts_latents_and_previews():
    samples = torch.zeros(1, 4, 8, 8)
    per_particle = 4 * 8 * 8 * 4 * LATENT_COPIES + 64 * 64 * 3 * 4 * IMAGE_COPIES  # SD-family 8x VAE assumed
    assert particle_memory_bytes(samples, 5) == 5 * per_particle


def test_video_latents_count_the_frames_the_vae_decodes():
    class WanLikeVAE:
        upscale_ratio = (lambda frames: 4 * (frames - 1) + 1, 8, 8)

        @staticmethod
        def spacial_compression_decode():
            return 8

    video, image = torch.zeros(1, 16, 3, 2, 2), torch.zeros(1, 16, 2, 2)
    frame = 16 * 16 * 3 * 4 * IMAGE_COPIES
    assert particle_memory_bytes(video, 1, WanLikeVAE()) - particle_memory_bytes(image, 1, WanLikeVAE()) == (
        2 * 16 * 2 * 2 * 4 * LATENT_COPIES + (9 - 1) * frame)  # 3 latent frames decode to 4·2+1 = 9


def test_refusal_only_past_the_headroom_and_none_when_free_is_unknown():
    samples = torch.zeros(1, 4, 8, 8)
    need = particle_memory_bytes(samples, 4)
    assert memory_problem("N", samples, 4, None) is None
    assert memory_problem("N", samples, 4, int(need / 0.8) + 1) is None
    problem = memory_problem("N", samples, 4, need)
    assert problem.startswith("N: particles (4) of a 4x8x8 latent need about") and problem.endswith(MEMORY_ADVICE)


def test_out_of_memory_message_names_the_chunk_and_the_first_line():
    text = out_of_memory_message("N", 8, 2, RuntimeError("CUDA out of memory. Tried 2 GiB\nmore detail"))
    assert text == (f"N: particles (8, model run in chunks of 2) ran out of memory (CUDA out of memory. Tried 2 GiB); "
                    f"the models were unloaded; {MEMORY_ADVICE}")
    assert "(MemoryError)" in out_of_memory_message("N", 8, 2, MemoryError())


def test_address_space_room_is_none_or_bytes():
    room = address_space_room()
    assert room is None or (isinstance(room, int) and room >= 0)
