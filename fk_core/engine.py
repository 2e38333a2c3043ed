"""The particle loop: segments of a host sampler between potential steps.

``run_segments`` is the one loop every host drives. Between potential steps it lets the host's sampler
run (fk_core's own Euler-ancestral, or ComfyUI's samplers); at a potential step it evaluates the model once
at the current sigma, scores that x0-prediction, lets the :class:`~fk_core.particles.ParticleFilter`
reweight and resample, and reorders the particles. The x0-prediction computed there is handed to the next
segment's first model call through :class:`ReuseFirstCall`, so FK costs no model evaluation beyond plain
sampling of the same batch: N·steps in total.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import torch

from .collapse import collapse_notes
from .errors import FKError
from .guidance import Guide, check_guided_run, guidance_problem
from .input_notes import config_notes, run_notes
from .particles import ParticleFilter
from .potentials import POTENTIALS
from .resampling import RESAMPLERS
from .schedule import potential_steps
from .score_sheet import components_record
from .scoring import CostClock, as_scorer, cost_totals, scored
from .seeds import segment_seed
from .steppers import SegmentSampler, euler_ancestral
from .tempering import LAMBDA_MODES
from .trace import PotentialStep, Trace
from .window import CopyWindow, NoiseRatio

STEP_RULES = ("euler_ancestral", "euler")
OUTPUT_MODES = ("best", "sample")


@dataclass(kw_only=True)  # FKConfig(10.0) once meant λ; fields grew in between: names only
class FKConfig:
    """Everything that defines a steered run except the model, the reward and the noise.

    Defaults come from ``bench/bench_defaults.py`` on the learned digits bed and the rare-attribute bed, and hold on
    the family of learned beds (``--family``: eps and flow models trained independently, one kept aside; README,
    "Recommended settings"): they beat the stronger of stochastic and deterministic best-of-N at equal model calls
    and keep the final particles at least 90% as varied as independent samples of what the reward wants.
    """

    potential: str = "max"
    lmbda: float = 10.0  # the final λ in "fixed" and "adaptive" modes; "auto" chooses its own
    lambda_mode: str = "auto"  # "fixed": λ at every check; "adaptive"/"auto": λ_t rises by the ESS target
    strength: float = 0.5  # adaptive modes: each check keeps ESS/N ≥ 1 − strength (fk_core.tempering)
    every: int = 1
    # x0-predictions in the first fifth are blur (no signal, pure cost); checks in the last fifth cost a decode
    # and a reward call each for little (bench/bench_defaults.py: no change on the learned bed, +0.006 to +0.03
    # reward on the rare one)
    window: tuple[float, float] = (0.2, 0.8)
    ess_threshold: Optional[float] = None  # None: resample at every potential step
    resampling: str = "systematic"
    output: str = "best"  # which particle a host shows: "best" reward or a "sample" from the final weights
    step_rule: str = "euler_ancestral"  # only for steer(); hosts bring their own
    eta: float = 1.0
    # Inside the window, checks run while a copy made at the check would end between these shares (begin, stop)
    # of the variety of independent samples, from the noise left against the particles' own data scale
    # (fk_core.window: steering stops below 0.9; a begin bound below 1 is off by default). (1, 0) = the window alone.
    copy_variety: tuple[float, float] = (1.0, 0.9)
    # Gradient-guided proposals (fk_core.guidance): the step after each check leans towards the reward by
    # guidance·λ_t·s²·∇r, weights corrected exactly. 0 = plain FK (same draws); needs a Gaussian step rule.
    guidance: float = 0.0

    def __post_init__(self):
        self.window = (float(self.window[0]), float(self.window[1]))
        if self.potential not in POTENTIALS:
            raise FKError(f"unknown potential {self.potential!r}; choose one of {POTENTIALS}")
        if self.resampling not in RESAMPLERS:
            raise FKError(f"unknown resampling scheme {self.resampling!r}; choose one of {sorted(RESAMPLERS)}")
        if self.step_rule not in STEP_RULES:
            raise FKError(f"unknown step rule {self.step_rule!r}; choose one of {STEP_RULES}")
        if self.lambda_mode not in LAMBDA_MODES:
            raise FKError(f"unknown lambda mode {self.lambda_mode!r}; choose one of {LAMBDA_MODES}")
        if not 0.0 <= self.strength <= 1.0:
            raise FKError(f"strength must be between 0 and 1, got {self.strength}")
        if self.output not in OUTPUT_MODES:
            raise FKError(f"unknown output mode {self.output!r}; choose one of {OUTPUT_MODES}")
        problem = guidance_problem(self.guidance)
        if problem:
            raise FKError(problem)
        potential_steps(2, self.every, *self.window)  # validates every and window
        self.copy_variety = (float(self.copy_variety[0]), float(self.copy_variety[1]))
        if not 0.0 <= self.copy_variety[1] <= self.copy_variety[0] <= 1.0:
            raise FKError(f"copy_variety must be (begin, stop) with 0 <= stop <= begin <= 1, got {self.copy_variety}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FKResult:
    samples: torch.Tensor  # [N, ...] finished particles
    rewards: torch.Tensor  # [N] float64 final rewards (NaN kept)
    log_weights: torch.Tensor  # [N] normalised final log-weights: the population targets p·exp(λ r)
    best_index: int  # highest final reward
    trace: Trace
    model_evaluations: int  # particle-batch model calls made by the loop (= steps for plain sampling)
    final_images: Optional[torch.Tensor] = None  # what the final scorer looked at (a host's decoded particles)
    chosen_index: int = -1  # the particle to output under config.output (run_segments sets it)

    @property
    def log_normalizer(self) -> float:
        return self.trace.log_normalizer

    def draw_index(self, generator: torch.Generator) -> int:
        """One particle drawn from the final weights (an exact draw from the weighted population)."""
        return int(torch.multinomial(self.log_weights.exp(), 1, generator=generator))

    def pick(self, mode: str, generator: Optional[torch.Generator] = None) -> int:
        if mode == "best":
            return self.best_index
        if mode == "sample":
            return self.draw_index(generator if generator is not None else torch.Generator().manual_seed(0))
        raise FKError(f"unknown output mode {mode!r}; choose one of {OUTPUT_MODES}")


class ReuseFirstCall:
    """Wraps the model so the x0-prediction made at a potential step serves the next segment's first call.

    :meth:`evaluate` calls the model and remembers (x, sigma, keyword arguments, x0); :meth:`reorder` applies
    the resampling to that memory. The next call with the same x, sigma and keyword arguments returns the
    remembered x0 instead of calling the model (the memory is used at most once). "Same keyword arguments"
    means the very same objects (plain numbers and strings: equal values): a sampler that installs its own
    hooks into the model options (ComfyUI's CFG++ samplers record the unconditional prediction in a post-CFG
    function) passes new ones, and must see a real call, so it gets one (counted in :attr:`refused`).
    Attribute access goes to the wrapped model, so a host sampler that inspects its model sees the real one.
    """

    def __init__(self, model: Callable, *, enabled: bool = True):
        self.model = model
        self.enabled = enabled
        self.evaluations = 0
        self.refused = 0  # remembered x0 not reused because the call's arguments differed: one extra evaluation
        self._memory: Optional[tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]] = None

    def __getattr__(self, name: str):
        return getattr(self.__dict__["model"], name)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs):
        memory, self._memory = self._memory, None
        if memory is not None and self.enabled:
            mx, msigma, mkwargs, x0 = memory
            if x.shape == mx.shape and torch.equal(torch.as_tensor(sigma, device=msigma.device), msigma) \
                    and torch.equal(x, mx):
                if _same_arguments(kwargs, mkwargs):
                    return x0
                self.refused += 1
        self.evaluations += 1
        return self.model(x, sigma, **kwargs)

    def evaluate(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        self._memory = None
        x0 = self(x, sigma, **kwargs)
        self._memory = (x, sigma, dict(kwargs), x0)
        return x0

    def reorder(self, x: torch.Tensor, ancestors: torch.Tensor) -> torch.Tensor:
        """Resample x and the remembered x0 together; returns the new x."""
        mx, sigma, kwargs, x0 = self._memory
        idx = ancestors.to(x.device)
        x, x0 = x[idx], x0[idx]
        self._memory = (x, sigma, kwargs, x0)
        return x


def _same_arguments(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if value is other:
            continue
        if isinstance(value, (int, float, str, bool)) and type(value) is type(other) and value == other:
            continue
        return False
    return True


def _segment_args(extra_args: dict, segment: int) -> dict:
    """The sampler's extra arguments for one segment: its own noise seed (see fk_core.seeds), the rest shared."""
    args = dict(extra_args)
    if "seed" in args:
        args["seed"] = segment_seed(args["seed"], segment)
    return args


def _shifted(callback: Optional[Callable], start: int) -> Optional[Callable]:
    """The sampler counts steps from its slice's start; the caller's callback gets indices of the whole run."""
    if callback is None:
        return None
    return lambda info: callback({**info, "i": info["i"] + start})


class _Loop:
    """One run's state between the segments: the particle filter, its trace, the model wrapper that reuses a
    check's x0, the scorer, the cost record and who hears of the run."""

    def __init__(self, n: int, num_steps: int, model: Callable, scorer, config: FKConfig,
                 generator: Optional[torch.Generator], reuse_x0: bool, clock: Optional[CostClock],
                 observer, on_potential_step: Optional[Callable]):
        self.n, self.config, self.scorer, self.clock = n, config, scorer, clock
        self.observer, self.on_potential_step = observer, on_potential_step
        self.pf = ParticleFilter(n, config.potential, config.lmbda, resampling=config.resampling,
                                 ess_threshold=config.ess_threshold, generator=generator,
                                 lambda_mode=config.lambda_mode, strength=config.strength)
        self.trace = self.pf.new_trace(num_steps, config.to_dict())
        self.wrapped = ReuseFirstCall(model, enabled=reuse_x0)
        self.generator = generator
        self.check_costs: list[dict] = []
        self.final_cost: Optional[dict] = None
        self.guide: Optional[Guide] = None  # the gradient of the last check, for the next segment's first step

    def evaluate(self, x: torch.Tensor, sigma: torch.Tensor, args: dict) -> torch.Tensor:
        """The x0-prediction at a potential step, remembered for the next segment's first call."""
        # Evaluated with the next segment's arguments: the call its first step would make, so it can reuse x0.
        return self.wrapped.evaluate(x, sigma * x.new_ones(self.n), **args)

    def check(self, x: torch.Tensor, k: int, sigma: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """A potential step: score the x0-prediction ``x0`` at ``sigma``, reweight, resample; returns the new x."""
        model_s = self.clock.lap() if self.clock is not None else None
        guided = self.config.guidance > 0
        result = scored(self.scorer.check_with_gradient(x0, k) if guided else self.scorer.check(x0, k))
        event = self.pf.observe(k, float(sigma), result.rewards)
        event.components = components_record(result.parts)
        if model_s is not None:
            event.cost = {"model_s": model_s, "decode_s": 0.0, "reward_s": 0.0, **result.cost}
            self.check_costs.append(event.cost)
        if guided:  # γ = guidance·λ_t: the first-order optimal proposal for this tilt at guidance 1
            event.guidance = {"gamma": self.config.guidance * event.lmbda,
                              "backward_s": float(result.cost.get("backward_s", 0.0))}
            self.guide = Guide(result.gradient, event.guidance["gamma"], event.guidance)
        if event.resampled:
            x = self.wrapped.reorder(x, event.ancestors)
            if self.guide is not None:
                self.guide.reorder(event.ancestors)
        if self.on_potential_step is not None:
            self.on_potential_step(event, x0)
        _tell(self.observer, "on_potential_step", event, result.images)
        self.trace.steps.append(event)
        if self.clock is not None:
            self.clock.restart()  # the model clock runs from here to the next check
        return x

    def segment(self, sampler: SegmentSampler, x: torch.Tensor, sigmas: torch.Tensor, args: dict,
                callback: Optional[Callable], disable: Optional[bool]) -> torch.Tensor:
        """One segment of the host's sampler; its first step guided by the last check's gradient (if any), the
        proposal's density ratio then joins the particles' log-weights."""
        guide, self.guide = self.guide, None
        extra = {"guide": guide} if guide is not None else {}
        x = sampler(self.wrapped, x, sigmas, extra_args=args, callback=callback, disable=disable, **extra)
        if guide is not None and guide.corrections is not None:
            self.pf.add_log_weights(guide.corrections)
        return x

    def finish(self, x: torch.Tensor, sigmas: torch.Tensor, args: dict) -> FKResult:
        """Score the finished particles, weight them, choose the output particle, record it all."""
        final_sigma, trace = sigmas[-1], self.trace
        if float(final_sigma) > 0:
            # A schedule that stops above σ = 0 (the first pass of a split schedule) leaves noisy samples: score
            # the x0-prediction there instead. The one case that costs a model evaluation beyond plain sampling.
            target = self.wrapped.evaluate(x, final_sigma * x.new_ones(self.n), **args)
            trace.notes.append(f"the schedule ends at sigma {float(final_sigma):.4g} > 0: final rewards score the "
                               "x0-prediction there (one extra model evaluation)")
        else:
            target = x
        if self.wrapped.refused:
            trace.notes.append(f"the sampler changes the model options at each segment start (e.g. CFG++ post-CFG "
                               f"hooks), so the x0 of a potential step could not be reused: {self.wrapped.refused} "
                               "extra model evaluation(s), one per potential step")
        if getattr(self.scorer, "final_name", None) is not None:
            # λ·r_final(x0) minus the potentials applied along the lineage: the cheap reward's tilt cancels exactly.
            trace.notes.append(f"final weights and output choice by {self.scorer.final_name}; "
                               f"{getattr(self.scorer, 'name', 'the reward')} only steered the checks")
        model_s = self.clock.lap() if self.clock is not None else None
        result = scored(self.scorer.final(target))
        # a final judge's λ is a new target on its own scale (fk_core.particles.ParticleFilter.finish)
        final = self.pf.finish(result.rewards, new_reward=getattr(self.scorer, "final_name", None) is not None)
        self.trace.final_components = components_record(result.parts)
        if model_s is not None:
            self.final_cost = {"model_s": model_s, "decode_s": 0.0, "reward_s": 0.0, **result.cost}
        return self._result(x, final, result.images)

    def _result(self, x: torch.Tensor, final, images: Optional[torch.Tensor]) -> FKResult:
        trace, pf = self.trace, self.pf
        trace.origin = pf.origin.clone()
        trace.final_rewards = final.rewards
        trace.final_log_weights = final.log_weights
        trace.final_invalid = [int(i) for i in torch.nonzero(~torch.isfinite(final.rewards)).flatten()]
        trace.log_normalizer = pf.log_normalizer
        trace.final_lmbda = pf.final_lmbda
        trace.notes.extend(collapse_notes(trace.to_dict()))
        trace.notes.extend(run_notes(trace))
        if self.clock is not None:
            trace.cost = cost_totals(self.check_costs, self.final_cost, getattr(self.scorer, "label", None))
        result = FKResult(samples=x, rewards=final.rewards, log_weights=final.log_weights,
                          best_index=final.best_index, trace=trace, model_evaluations=self.wrapped.evaluations,
                          final_images=images)
        result.chosen_index = result.pick(self.config.output, self.generator)
        return result


def _tell(observer, hook: str, *args) -> None:
    """Call ``hook`` on the observer, or on each of a list of observers, that has it."""
    for one in observer if isinstance(observer, (list, tuple)) else [observer]:
        method = getattr(one, hook, None) if one is not None else None
        if method is not None:
            method(*args)


def run_segments(x: torch.Tensor, sigmas: torch.Tensor, model: Callable, sampler: SegmentSampler,
                 reward, config: FKConfig, *, generator: Optional[torch.Generator] = None,
                 on_potential_step: Optional[Callable[[PotentialStep, torch.Tensor], None]] = None,
                 extra_args: Optional[dict] = None, callback: Optional[Callable] = None,
                 disable: Optional[bool] = None, notes: Optional[list[str]] = None,
                 reuse_x0: bool = True,
                 final_reward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 clock: Optional[CostClock] = None, observer=None,
                 noise_ratio: Optional[NoiseRatio] = None) -> FKResult:
    """Run N particles (the batch of ``x``, already at sigmas[0]) through ``sigmas`` with FK steering.

    ``model(x, sigma_batch, **extra_args)`` → x0-prediction; ``sampler(model, x, sigmas_slice, extra_args=,
    callback=, disable=)`` is any k-diffusion sampler (see fk_core.steppers): it runs one segment between
    potential steps, with that segment's ``extra_args["seed"]`` (when there is one) from fk_core.seeds;
    ``callback`` gets step indices of the whole run. ``reward`` is a scorer (see fk_core.scoring: ``check(x0,
    step)`` at each potential step, ``final(x)`` on the finished particles) or a plain ``reward(x0) -> [N]``;
    ``final_reward`` (optional with a plain reward, e.g. a slow judge) then scores only the finished samples:
    the final weights and the output choice come from it, so the weighted output targets p·exp(λ·r_final)
    while ``reward`` only steers. ``on_potential_step(event, x0)`` sees each step's record and the x0 batch
    that was scored (before resampling). ``observer`` (e.g. a host's live view; or a list of them, told in order)
    may have ``on_start(num_steps, particles)``, ``on_potential_step(event, images)`` (the images the scorer
    looked at, or None) and ``on_finish(result)``. ``clock`` (a :class:`~fk_core.scoring.CostClock`) asks for
    the cost record in ``trace.cost`` and each step's ``cost``. ``generator`` drives resampling and the output
    draw only (CPU); the sampler owns its noise. ``reuse_x0=False`` makes every segment's first call a real one
    (for checking the reuse changes nothing). ``notes`` (the host's remarks) open the trace's notes.
    ``noise_ratio(sigma)``: the noise-to-signal ratio of x at sigma (None: sigma itself, as for x0 + σ·ε; a
    rectified flow's is t/(1 − t), fk_core.steppers.flow_noise_ratio); it tells fk_core.window where to stop.
    """
    n, num_steps = x.shape[0], len(sigmas) - 1
    if num_steps < 1:
        raise FKError("need at least one sampling step (sigmas must have two or more entries)")
    extra_args = dict(extra_args or {})
    scorer = as_scorer(reward, final_reward)
    if config.guidance > 0:
        check_guided_run(sampler, scorer, reward)
    loop = _Loop(n, num_steps, model, scorer, config, generator, reuse_x0, clock, observer, on_potential_step)
    loop.trace.notes.extend([*(notes or []), *config_notes(config, num_steps), *getattr(scorer, "notes", [])])
    _tell(observer, "on_start", num_steps, n)
    if clock is not None:
        clock.restart()
    start = segment = 0
    planned = potential_steps(num_steps, config.every, *config.window)
    window = CopyWindow(config.copy_variety, noise_ratio, num_steps, planned[0] if planned else None)
    for k in planned:
        x = loop.segment(sampler, x, sigmas[start:k + 1], _segment_args(extra_args, segment),
                         _shifted(callback, start), disable)
        segment += 1
        start = k
        x0 = loop.evaluate(x, sigmas[k], _segment_args(extra_args, segment))
        # No reward call at a step the window skips: the x0 computed here still serves the next segment's first call
        phase = window.phase(k, sigmas[k], x0, loop.trace)
        if phase == "stop":
            break
        if phase == "check":
            x = loop.check(x, k, sigmas[k], x0)
    x = loop.segment(sampler, x, sigmas[start:], _segment_args(extra_args, segment), _shifted(callback, start),
                     disable)
    result = loop.finish(x, sigmas, _segment_args(extra_args, segment))
    _tell(observer, "on_finish", result)
    return result


def steer(denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sigmas: torch.Tensor,
          noise: torch.Tensor, reward: Callable[[torch.Tensor], torch.Tensor], config: Optional[FKConfig] = None, *,
          generator: Optional[torch.Generator] = None,
          on_potential_step: Optional[Callable[[PotentialStep, torch.Tensor], None]] = None,
          final_reward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> FKResult:
    """FK steering with fk_core's own step rule.

    ``denoiser(x, sigma)`` returns the x0-prediction of the batch x (sigma a 0-dim tensor); x_σ = x0 + σ·ε;
    ``sigmas`` decrease to 0; ``noise`` is [N, ...] (N particles), the run starts at x = noise·sigmas[0];
    ``reward(x0) -> [N]``; ``final_reward`` as in :func:`run_segments`. One ``generator`` (default: seeded
    with 0) drives both the step noise and the resampling, so a seed fixes the whole run.
    """
    config = config or FKConfig()
    if generator is None:
        generator = torch.Generator(device=noise.device).manual_seed(0)
    sigmas = torch.as_tensor(sigmas, dtype=noise.dtype, device=noise.device)
    if sigmas.dim() != 1 or len(sigmas) < 2 or bool((sigmas[1:] > sigmas[:-1]).any()) or float(sigmas[-1]) != 0.0:
        raise FKError("sigmas must be a 1-D decreasing schedule ending at 0")
    notes = []
    eta = config.eta if config.step_rule == "euler_ancestral" else 0.0
    if config.guidance > 0 and eta == 0.0:
        raise FKError(f"guidance needs a stochastic step (a Gaussian proposal to shift): step rule "
                      f"{config.step_rule!r} with eta {config.eta} draws no noise; use euler_ancestral with eta > 0 "
                      "or set guidance to 0")
    if eta == 0.0:
        message = ("deterministic step rule: particles copied by resampling stay identical from then on, so "
                   "FK degenerates to picking among fewer distinct samples; use euler_ancestral with eta > 0")
        warnings.warn(message, stacklevel=2)
        notes.append(message)

    def model(x: torch.Tensor, sigma_batch: torch.Tensor) -> torch.Tensor:
        return denoiser(x, sigma_batch.reshape(-1)[0])

    return run_segments(noise * sigmas[0], sigmas, model, euler_ancestral(eta, generator), reward,
                        config, generator=_cpu_generator(generator), on_potential_step=on_potential_step, notes=notes,
                        final_reward=final_reward)


def _cpu_generator(generator: torch.Generator) -> torch.Generator:
    """Resampling runs on the CPU; derive a CPU generator from a device one so a seed still fixes everything."""
    if generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)
