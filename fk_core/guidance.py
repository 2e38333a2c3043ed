"""Gradient-guided proposals: FK that also pushes the particles towards the reward, with weights that stay exact.

Where. The step right after each check (the first step of the next segment), for step rules whose transition is
Gaussian with a known mean and scale, x' ~ N(μ(x), s²I) (:class:`fk_core.steppers.GaussianSteps`: Euler-ancestral
for x0 + σ·ε, its rectified-flow form, and :func:`fk_core.steer`'s own rule). The check has just scored the
particles' x0-predictions x̂0; with guidance on it also takes the gradient g = ∇_{x̂0} r(decode(x̂0)) through the
preview decoder and the reward only (the forward pass is the check's own: only the backward pass is extra).

The shift. The step proposes from N(μ + Δ, s²I), Δ = γ·s²·g with γ = ``guidance``·λ_t, λ_t the tilt the check
applied. For the tilted target p·exp(λ r) the locally optimal proposal is p(x'|x)·exp(λ r(x')) ≈ N(μ + λ s² ∇r, s²)
to first order, so ``guidance`` 1 is that proposal for the current tilt; λ_t is scale-free (the auto mode sets it
from the rewards' own spread), so ``guidance`` is too. λ_t = 0 (no steering) means no shift. Each particle's shift
is clamped to ``MAX_SHIFT``·s in norm: then the weight correction below has a standard deviation of at most
MAX_SHIFT per guided step, whatever the gradient does (a reward saturating or exploding at some pixel).

∇ w.r.t. x, not x̂0. x̂0 = x − σ·ε̂(x) (x − t·v̂ for a flow); with the network's output held fixed (no backward
pass through the diffusion model) ∂x̂0/∂x = I, so ∇ₓ r(x̂0(x)) ≈ g: the gradient w.r.t. x̂0 is applied to x as it
is. This is only a choice of proposal: the weights below are exact whatever Δ is, as long as Δ depends on x alone.

The weights. The proposal differs from the sampler's own transition, so each particle's log-weight gains
log N(x'; μ, s²) − log N(x'; μ + Δ, s²) = −|Δ|²/(2s²) − Δ·z/s, with z the step's standard-normal draw. Added to
the particle filter's log-weights (not to the potentials a final weighting removes), the weighted population still
targets p·exp(λ r) exactly (tests/test_exact_target.py checks it against the same sampler's tilt).

Refused, not inexact. A sampler whose transition density fk_core does not know (deterministic ones, DPM++ 2M SDE
and other multistep SDE solvers, ComfyUI's own sampler functions) cannot have its weights corrected; guidance
there would change the target by an unknown amount, so it raises :class:`FKError` naming the rules that work.
A reward that says it is not differentiable (``differentiable = False``), or whose value carries no gradient, is
refused the same way. ``guidance`` 0 runs exactly as before (same draws, same result).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from .errors import FKError

GUIDED_STEP_RULES = ("euler_ancestral", "euler_ancestral_rf")  # GaussianSteps names: the rules guidance works with
GUIDED_HOST_SAMPLERS = ("euler_ancestral",)  # ComfyUI samplers fk_core can run with guidance (eps and flow models)
MAX_SHIFT = 1.0  # |Δ| ≤ MAX_SHIFT·s per particle and guided step


def guidance_problem(guidance: float) -> Optional[str]:
    if not math.isfinite(float(guidance)) or float(guidance) < 0:
        return f"guidance must be 0 or more, got {guidance}"
    return None


def check_guided_sampler(sampler: Any) -> None:
    """The sampler must be fk_core's Gaussian step rule: only there is the proposal density known."""
    if callable(getattr(sampler, "transition", None)) and getattr(sampler, "name", None) in GUIDED_STEP_RULES:
        return
    name = getattr(sampler, "name", None) or getattr(sampler, "__name__", None) or type(sampler).__name__
    rules = ", ".join(GUIDED_STEP_RULES)
    raise FKError(f"guidance needs a step rule whose transition density is known (Gaussian: {rules}); the "
                  f"sampler {name!r} has none, so its weights could not stay exact. Use euler_ancestral "
                  "(eps or flow models), or set guidance to 0")


def host_step_rule(sampler_name: str, flow: bool, generator: torch.Generator, notes: Optional[list] = None,
                   guidance: float = 1.0):
    """fk_core's mirror of a host sampler that guidance can run (ComfyUI's ``euler_ancestral``: the flow form for a
    rectified flow, as ComfyUI switches itself); FKError for any other. ``notes`` gets a line saying so."""
    from .steppers import euler_ancestral, euler_ancestral_rf

    if sampler_name == "euler_ancestral":
        if notes is not None:
            notes.append(f"guidance {guidance:g}: {sampler_name} steps run by fk_core's copy of the host's rule (its "
                         "noise from the seed's own stream), shifted along the reward's gradient after each check, "
                         "weights corrected")
        return euler_ancestral_rf(1.0, generator) if flow else euler_ancestral(1.0, generator)
    raise FKError(f"guidance needs a sampler whose step has a known Gaussian density, so the weights stay exact: "
                  f"{', '.join(GUIDED_HOST_SAMPLERS)}; {sampler_name!r} is not one (deterministic and multistep "
                  "SDE samplers such as dpmpp_2m_sde have no such density here). Pick euler_ancestral, or set "
                  "guidance to 0")


def host_refusal(sampler_name: str, reward: Any, final_reward: Any = None) -> Optional[tuple[str, str]]:
    """(what is wrong, what to do) when a host cannot run guidance with this sampler and reward, else None; the
    host says it before any model work (the final judge is never differentiated: it only weights)."""
    if sampler_name not in GUIDED_HOST_SAMPLERS:
        return (f"> 0 needs a sampler whose step has a known Gaussian density (so the weights stay exact), and "
                f"{sampler_name!r} has none here (deterministic and multistep SDE samplers such as dpmpp_2m_sde)",
                f"pick {' or '.join(GUIDED_HOST_SAMPLERS)} as the sampler, or set guidance to 0")
    if getattr(reward, "differentiable", None) is False:
        name = getattr(reward, "name", "the reward")
        return (f"> 0 needs a differentiable reward, and {name} is not (JPEG size, object counts, or a combination "
                "holding such a term)", "pick a differentiable reward (pixel rewards, CLIP score, PickScore, HPS, "
                "ImageReward, LAION aesthetic), or set guidance to 0")
    return None


def check_guided_run(sampler: Any, scorer: Any, reward: Any) -> None:
    """Everything a guided run needs, checked before any model call: the step rule, the reward, the scorer."""
    check_guided_sampler(sampler)
    check_differentiable(getattr(scorer, "reward", reward), getattr(scorer, "name", "the reward"))
    if not callable(getattr(scorer, "check_with_gradient", None)):
        raise FKError("guidance needs a scorer that can give the reward's gradient (check_with_gradient); "
                      "set guidance to 0")


def check_differentiable(reward: Any, name: str) -> None:
    if getattr(reward, "differentiable", None) is False:
        raise FKError(f"guidance needs a differentiable reward, and {name} is not (e.g. JPEG size, object counts, "
                      "a reward combining such a term); set guidance to 0 or pick a differentiable reward")


class Guide:
    """One guided step: the gradient at the check's x̂0 (reordered with the particles), γ, and afterwards the
    per-particle log-weight corrections and the shift sizes."""

    def __init__(self, gradient: torch.Tensor, gamma: float, info: Optional[dict] = None):
        self.gradient = gradient
        self.gamma = float(gamma)
        self.info = info if info is not None else {}  # the check's trace record: shift sizes join it
        self.corrections: Optional[torch.Tensor] = None

    def reorder(self, ancestors: torch.Tensor) -> None:
        self.gradient = self.gradient[ancestors.to(self.gradient.device)]

    def shift(self, scale: torch.Tensor) -> Optional[torch.Tensor]:
        """Δ = γ·s²·g per particle, each clamped to norm MAX_SHIFT·s; None when there is nothing to shift."""
        s = float(scale)
        if self.gamma == 0.0 or not s > 0:
            return None
        g = self.gradient.to(torch.float64)
        delta = self.gamma * s * s * torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        norms = delta.flatten(1).norm(dim=1).clamp(min=1e-300)
        factor = (MAX_SHIFT * s / norms).clamp(max=1.0)
        delta = delta * factor.reshape(-1, *([1] * (delta.dim() - 1)))
        return delta.to(self.gradient.dtype)

    def record(self, shift: torch.Tensor, noise: torch.Tensor, scale: torch.Tensor) -> None:
        """log N(x'; μ, s²) − log N(x'; μ + Δ, s²) = −|Δ|²/(2s²) − Δ·z/s, x' = μ + Δ + s·z (float64)."""
        s = float(scale)
        delta = shift.to(torch.float64).flatten(1)
        z = noise.to(device=shift.device, dtype=torch.float64).flatten(1)
        self.corrections = (-(delta * delta).sum(1) / (2 * s * s) - (delta * z).sum(1) / s).cpu()
        ratio = (delta.norm(dim=1) / s).cpu()
        self.info.update(shift=float(ratio.mean()), max_shift=float(ratio.max()),
                           correction_sd=float(self.corrections.std()) if len(self.corrections) > 1 else 0.0)


# ---------------------------------------------------------------------------------------------------------------
# The gradient of a reward w.r.t. the x0-predictions, on any host.

def reward_gradient(score: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, name: str,
                    holders: Iterable[Any] = (), clock=None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(values [N] detached, ∂Σr/∂x̂0 [N, ...], seconds of the backward pass) for ``score(x0) -> [N]`` (decode +
    reward, each image's value depending on its own x̂0 only, so the gradient of the sum is each particle's own).

    Runs with gradients on and outside inference mode (ComfyUI executes nodes under ``torch.inference_mode``); the
    weights and cached tensors of ``holders`` (the reward, the decoder) made under inference mode are replaced by
    normal copies first (:func:`thaw`), since autograd cannot save inference tensors for the backward pass."""
    with torch.inference_mode(False), torch.enable_grad():
        for holder in holders:
            thaw(holder)
        leaf = x0.detach().clone().requires_grad_(True)
        values = score(leaf)
        if not torch.is_tensor(values) or not values.requires_grad:
            raise FKError(f"guidance: {name} gave no gradient (its score leaves torch or runs without gradients); "
                          "set guidance to 0 or pick a differentiable reward")
        watch = Stopwatch(clock)
        (gradient,) = torch.autograd.grad(values.float().sum(), leaf, allow_unused=True)
        seconds = watch.seconds()
    if gradient is None:
        raise FKError(f"guidance: {name} does not depend on the image through torch; set guidance to 0")
    return values.detach(), gradient.detach(), seconds


def thaw(obj: Any, _seen: Optional[set] = None, _depth: int = 0) -> None:
    """Replace inference-mode tensors (weights, buffers, cached embeddings) reachable from ``obj`` by normal copies,
    in place. Must run outside inference mode. Cheap after the first time (normal tensors are left alone)."""
    seen = _seen if _seen is not None else set()
    if obj is None or id(obj) in seen or _depth > 6 or isinstance(obj, (str, bytes, int, float, bool)):
        return
    seen.add(id(obj))
    if isinstance(obj, nn.Module):
        for module in obj.modules():
            seen.add(id(module))
            for key, param in list(module._parameters.items()):
                if param is not None and param.is_inference():
                    module._parameters[key] = nn.Parameter(param.clone(), requires_grad=False)
            for key, buffer in list(module._buffers.items()):
                if buffer is not None and buffer.is_inference():
                    module._buffers[key] = buffer.clone()
            _thaw_attributes(module, seen, _depth)
        return
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            if torch.is_tensor(value):
                if value.is_inference():
                    obj[key] = value.clone()
            else:
                thaw(value, seen, _depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for value in obj:
            if not torch.is_tensor(value):
                thaw(value, seen, _depth + 1)
        return
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        _thaw_attributes(obj, seen, _depth)


def _thaw_attributes(obj: Any, seen: set, depth: int) -> None:
    for key, value in list(vars(obj).items()):
        if key in ("_parameters", "_buffers", "_modules"):
            continue
        if torch.is_tensor(value):
            if value.is_inference():
                setattr(obj, key, value.clone())
        elif isinstance(value, (nn.Module, dict, list, tuple)) or hasattr(value, "__dict__"):
            thaw(value, seen, depth + 1)


class Stopwatch:
    def __init__(self, clock=None):
        self.clock = clock
        self.start = clock.now() if clock is not None else time.perf_counter()

    def seconds(self) -> float:
        return (self.clock.now() if self.clock is not None else time.perf_counter()) - self.start
