"""Discrete state: FK steering of masked (absorbing-state) diffusion over token sequences.

Masked diffusion (MDLM, Sahoo et al. 2024): a time t ∈ [0, 1] is the fraction of masked positions, α_t = 1 − t.
The forward process replaces each token by ``mask_id`` independently with probability t. The reverse step
from t to s < t unmasks each masked position independently with probability (t − s)/t, drawing its token from
the model's x0-distribution at that position; an unmasked position never changes again (carry-over), and at
s = 0 every remaining mask is unmasked.

In the particle loop (:func:`fk_core.engine.run_segments`, unchanged) t takes the place of σ: the schedule
decreases to 0, the particles are LongTensors [N, positions…] and the x0-prediction is the per-position
distribution, as log-probabilities [N, positions…, V] (a one-hot row where the token is already decided).
A reward sees a *completion* of it: the per-position argmax, or a draw from it with the run's generator.
The potentials, λ modes, resampling and the exact final weighting are the engine's own, so the weighted final
population targets p(x)·exp(λ·r(x)) with p the distribution of this step rule's output.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .engine import FKConfig, FKResult, _cpu_generator, run_segments
from .errors import FKError
from .steppers import SegmentSampler
from .trace import PotentialStep

COMPLETIONS = ("argmax", "sample")
STEP_RULE = "masked_diffusion"


def masking_schedule(steps: int) -> torch.Tensor:
    """t from 1 (all masked) to 0 in ``steps`` equal steps (MDLM's linear α_t = 1 − t), float64."""
    if steps < 1:
        raise FKError(f"need at least one step, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


def x0_log_probs(logits: torch.Tensor, tokens: torch.Tensor, mask_id: int) -> torch.Tensor:
    """The model's x0-distribution: log-softmax of ``logits`` [N, …, V] without the mask token, and a one-hot
    row (log-probability 0 on the token) wherever ``tokens`` is already unmasked (carry-over)."""
    if logits.shape[:-1] != tokens.shape:
        raise FKError(f"the denoiser returned logits of shape {tuple(logits.shape)}; expected the tokens' shape "
                      f"{tuple(tokens.shape)} plus one vocabulary dimension")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    vocab = logits.shape[-1]
    if mask_id < vocab:  # the mask is never a prediction (MDLM's "zero masking probabilities")
        logits = logits.clone()
        logits[..., mask_id] = -torch.inf
    log_p = torch.log_softmax(logits, dim=-1)
    decided = tokens != mask_id
    if bool(decided.any()):
        if int(tokens[decided].max()) >= vocab or int(tokens[decided].min()) < 0:
            raise FKError(f"a token id lies outside the denoiser's vocabulary of {vocab}; the tokens must be ids "
                          f"in 0..{vocab - 1} or the mask id {mask_id}")
        one_hot = torch.full_like(log_p[decided], -torch.inf)
        one_hot.scatter_(1, tokens[decided].unsqueeze(1), 0.0)
        log_p = log_p.clone()
        log_p[decided] = one_hot
    return log_p


def _draw(log_p: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One token per row of ``log_p`` [M, V], drawn on the generator's device (same stream anywhere)."""
    device = generator.device if generator is not None else log_p.device
    probs = log_p.detach().to(device, torch.float64).exp()
    if not bool(torch.isfinite(probs).all()):
        raise FKError("the denoiser's logits contain NaN; check the model and its inputs")
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(log_p.device)


def unmask(tokens: torch.Tensor, log_p: torch.Tensor, t: float, s: float, mask_id: int,
           generator: Optional[torch.Generator]) -> torch.Tensor:
    """One reverse step t → s: each masked position unmasks with probability (t − s)/t (all of them at s = 0),
    its token drawn from ``log_p``; everything else stays."""
    masked = tokens == mask_id
    reveal_probability = 1.0 if s <= 0.0 else (t - s) / t
    device = generator.device if generator is not None else tokens.device
    u = torch.rand(tokens.shape, generator=generator, device=device, dtype=torch.float64).to(tokens.device)
    reveal = masked & (u < reveal_probability)
    if not bool(reveal.any()):
        return tokens
    out = tokens.clone()
    out[reveal] = _draw(log_p[reveal], generator)
    return out


def masked_diffusion(mask_id: int, generator: Optional[torch.Generator] = None) -> SegmentSampler:
    """The masked-diffusion step rule as a segment sampler (k-diffusion signature, as fk_core.steppers):
    ``model(tokens, t_batch)`` returns x0 log-probabilities (see :func:`x0_log_probs`); randomness from
    ``generator``, one stream across all segments."""

    def sample(model: Callable, x: torch.Tensor, times: torch.Tensor, extra_args: Optional[dict] = None,
               callback: Optional[Callable] = None, disable: Optional[bool] = None) -> torch.Tensor:
        extra_args = extra_args or {}
        ones = x.new_ones(x.shape[0])
        for i in range(len(times) - 1):
            t, s = times[i], times[i + 1]
            log_p = model(x, t * ones, **extra_args)  # the very call run_segments makes, so its x0 is reused
            if callback is not None:
                callback({"x": x, "i": i, "sigma": t, "sigma_hat": t, "denoised": log_p})
            x = unmask(x, log_p, float(t), float(s), mask_id, generator)
        return x

    return sample


def complete(log_p: torch.Tensor, how: str = "argmax", generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A full token sequence from x0 log-probabilities [N, …, V]: the per-position argmax, or one draw per
    position ("sample", from ``generator``). Decided positions keep their token either way."""
    if how == "argmax":
        return log_p.argmax(dim=-1)
    if how == "sample":
        flat = log_p.reshape(-1, log_p.shape[-1])
        return _draw(flat, generator).reshape(log_p.shape[:-1])
    raise FKError(f"unknown completion {how!r}; choose one of {COMPLETIONS}")


def _check_times(times, device: torch.device) -> torch.Tensor:
    times = torch.as_tensor(times, dtype=torch.float64).to(device)
    if times.dim() != 1 or len(times) < 2 or bool((times[1:] > times[:-1]).any()) or float(times[-1]) != 0.0 \
            or not 0.0 < float(times[0]) <= 1.0:
        raise FKError("times must be a 1-D non-increasing schedule from at most 1 down to 0 (the masked fraction); "
                      "use fk_core.discrete.masking_schedule(steps)")
    return times


def steer_discrete(denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], times, tokens: torch.Tensor,
                   reward: Callable[[torch.Tensor], torch.Tensor], config: Optional[FKConfig] = None, *,
                   mask_id: int, generator: Optional[torch.Generator] = None, completion: str = "argmax",
                   on_potential_step: Optional[Callable[[PotentialStep, torch.Tensor], None]] = None,
                   final_reward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> FKResult:
    """FK steering of a masked-diffusion model; the discrete counterpart of :func:`fk_core.steer`.

    ``denoiser(tokens, t)`` returns logits [N, …, V] of x0 for tokens [N, …] (LongTensor, ``mask_id`` where
    masked; ``t`` a 0-dim tensor, which many masked models ignore). ``times`` decrease from at most 1 to 0
    (:func:`masking_schedule`). ``tokens`` [N, …] are the N starting particles: all ``mask_id`` to generate
    from scratch, or with some positions given (a prompt or infilling: carry-over keeps them). ``reward``
    gets token sequences [N, …] and returns [N]: at a check, the ``completion`` ("argmax" or "sample") of each
    particle's x0-distribution; at the end, the finished particles (``final_reward`` as in run_segments).
    ``on_potential_step(event, scored)`` sees each check's record and the completions that were scored.
    One ``generator`` (default: seeded with 0) drives the unmasking, sampled completions and resampling.
    ``config.step_rule`` and ``config.eta`` do not apply; the trace's config records this step rule instead.
    """
    config = config or FKConfig()
    if completion not in COMPLETIONS:
        raise FKError(f"unknown completion {completion!r}; choose one of {COMPLETIONS}")
    if not torch.is_tensor(tokens) or tokens.dtype not in (torch.int64, torch.int32) or tokens.dim() < 2:
        raise FKError("tokens must be an integer tensor [N, positions…] (N particles; mask_id where masked)")
    tokens = tokens.long()
    if generator is None:
        generator = torch.Generator(device=tokens.device).manual_seed(0)
    times = _check_times(times, tokens.device)
    scored_tokens: dict[str, torch.Tensor] = {}

    def model(x: torch.Tensor, t_batch: torch.Tensor) -> torch.Tensor:
        return x0_log_probs(denoiser(x, t_batch.reshape(-1)[0]), x, mask_id)

    def scored_reward(x0: torch.Tensor) -> torch.Tensor:
        # a check scores a completion of the x0-distribution; the final call gets the finished tokens
        scored = complete(x0, completion, generator) if torch.is_floating_point(x0) else x0
        scored_tokens["last"] = scored
        return reward(scored)

    scored_reward.name = getattr(reward, "name", "the reward")
    hook = None
    if on_potential_step is not None:
        def hook(event: PotentialStep, x0: torch.Tensor) -> None:
            on_potential_step(event, scored_tokens["last"])

    result = run_segments(tokens, times, model, masked_diffusion(mask_id, generator), scored_reward, config,
                          generator=_cpu_generator(generator), on_potential_step=hook, final_reward=final_reward)
    if bool((result.samples == mask_id).any()):  # the last step unmasks everything; a mask here is a bug
        raise FKError("a finished particle still holds the mask token")
    result.trace.config.update(step_rule=STEP_RULE, eta=None, completion=completion, mask_id=int(mask_id))
    return result
