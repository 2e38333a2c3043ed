"""Independent, reproducible seeds for the separate random streams of one run.

A run seeded with ``seed`` needs several streams (each segment's sampler noise, the extra particles' starting
noise, the resampling draws). Deriving them by arithmetic such as ``seed + 1000·j`` makes runs whose seeds
differ by 1000 share noise; hashing (seed, purpose, index) gives streams that collide only by chance (2⁻⁶³).
"""

from __future__ import annotations

import hashlib
from typing import Optional

import torch

SEED_RANGE = 2**63  # torch.Generator.manual_seed and ComfyUI's noise take seeds below this without wrapping


def derived_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A seed for stream ``(purpose, index)`` of a run seeded with ``seed``; the same inputs give the same seed."""
    digest = hashlib.blake2b(f"fk-steering/{purpose}/{int(index)}/{int(seed)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % SEED_RANGE


def segment_seed(seed: Optional[int], segment: int) -> Optional[int]:
    """Noise seed of segment ``segment``: segment 0 keeps the run's seed (so a run without potential steps is
    plain sampling with that seed); later segments get derived seeds. None stays None (the host's default)."""
    if seed is None:
        return None
    if segment == 0:
        return int(seed)
    return derived_seed(seed, "segment", segment)


def particle_noise(base_noise: torch.Tensor, n: int, seed: Optional[int]) -> torch.Tensor:
    """Noise for ``n`` particles grown from one latent's noise ``base_noise`` [1, …]: particle 0 keeps it, the
    others draw from a stream derived from ``seed`` (not the stream particle 0's noise came from, so particle 1
    does not repeat it); all zero when ``base_noise`` is (the host added no noise: the particles start as copies
    and a stochastic sampler makes them diverge)."""
    gen = torch.Generator().manual_seed(derived_seed(seed if seed is not None else 0, "particles"))
    extra = torch.randn((n - 1,) + tuple(base_noise.shape[1:]), generator=gen, dtype=torch.float32)
    if not bool(torch.any(base_noise != 0)):
        extra = torch.zeros_like(extra)
    return torch.cat([base_noise, extra.to(base_noise.device, base_noise.dtype)], dim=0)
