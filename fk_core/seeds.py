"""Independent, reproducible seeds for the separate random streams of one run.

A run seeded with ``seed`` needs several streams (each segment's sampler noise, the extra particles' starting
noise, the resampling draws). Deriving them by arithmetic such as ``seed + 1000·j`` makes runs whose seeds
differ by 1000 share noise; hashing (seed, purpose, index) gives streams that collide only by chance (2⁻⁶³).
"""

from __future__ import annotations

import hashlib
from typing import Optional

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
