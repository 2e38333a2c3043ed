"""Which sampling steps carry a potential (reward → weight → maybe resample).

A run has ``num_steps`` steps; step k goes from sigmas[k] to sigmas[k+1]. A potential at step k is applied
*before* step k, to the x0-prediction the step computes anyway at sigmas[k], so the resampled particles then
take the (stochastic) step and copies diverge at once. Step 0 (pure noise) never carries one: the
x0-prediction there is the dataset mean. Nor does the last step: it lands on σ = 0 and adds no noise in any
ancestral or SDE sampler, so copies made there would stay identical; the final weighting, on the finished
samples, always happens and does that step's job.
"""

from __future__ import annotations


def potential_steps(num_steps: int, every: int, start: float, end: float) -> list[int]:
    """Steps k in 1..num_steps-2 with start <= k/num_steps <= end, every ``every``-th from the first one."""
    if every < 1:
        raise ValueError(f"'every' must be at least 1, got {every}")
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"window must satisfy 0 <= start <= end <= 1, got ({start}, {end})")
    eps = 1e-9  # so that e.g. end=0.3 with 10 steps includes step 3 despite float rounding
    inside = [k for k in range(1, num_steps - 1) if start - eps <= k / num_steps <= end + eps]
    return inside[::every]
