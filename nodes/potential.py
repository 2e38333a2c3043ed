"""FK Potential Selector: how rewards turn into particle weights, as an FK_POTENTIAL (an FKConfig)."""

from __future__ import annotations

from comfy_api.latest import io

from ..fk_core import LAMBDA_MODES, POTENTIALS, FKConfig, lambda_problem, window_problem
from .common import CATEGORY
from .layouts import absent_means
from .validation import check_widgets, require_widgets

FKPotential = io.Custom("FK_POTENTIAL")
NODE = "FK Potential Selector"

RESAMPLING_SCHEMES = ("systematic", "stratified", "residual", "multinomial")
ABSENT_MEANS = absent_means("FKPotentialSelector")  # what 0.1.0 did without lambda_mode/strength
OUTPUT_CHOICES = ("best reward", "draw from final weights")
_OUTPUT_MODE = {"best reward": "best", "draw from final weights": "sample"}
GUIDANCE_TOOLTIP = ("Also push each particle towards the reward right after each check, along the reward's gradient "
                    "(through the preview decoder; needs a differentiable reward and the euler_ancestral sampler). "
                    "0 = off (plain FK), 1 = the push the current steering strength calls for. Weights are "
                    "corrected, so the result stays faithful; costs one backward pass per check.")


def default_potential() -> FKConfig:
    """What the samplers use when no FK_POTENTIAL is connected (the engine's recommended defaults)."""
    return FKConfig()


class FKPotentialSelector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        defaults = FKConfig()
        return io.Schema(
            node_id="FKPotentialSelector",
            display_name="FK Potential Selector",
            category=CATEGORY,
            description=("Decides how strongly and how often FK steering favours the images your reward likes. "
                         "Connect it to FK Particle Sampler or FK Sampler."),
            inputs=[
                io.Combo.Input("potential", options=list(POTENTIALS),
                               default=defaults.potential,
                               tooltip=("How a particle's score becomes its weight. 'max' (recommended) counts the "
                                        "best score it has had so far; 'diff' rewards improvement since the last "
                                        "check (the most faithful, keeps the most variety); 'sum' adds up every "
                                        "score (greediest); 'immediate' counts every score seen.")),
                # lambda_mode and strength came after the first release (0.1.0): optional, so they sit after
                # every required widget (a 0.1.0 save keeps its positions) and a 0.1.0 API prompt without them
                # runs as it did (execute's defaults: fixed λ). web/fk_migrate.js maps saves of other layouts.
                io.Combo.Input("lambda_mode", options=list(LAMBDA_MODES), default=defaults.lambda_mode,
                               optional=True,
                               tooltip=("How hard the reward pushes. 'auto' (recommended): chosen at every check "
                                        "from the particles' own scores, so 'strength' means the same for every "
                                        "reward; lambda is not used. 'adaptive': the same, but never past "
                                        "lambda, which is also the final strength. 'fixed': lambda at every "
                                        "check (lambda 0 = no steering: plain best-of-N).")),
                io.Float.Input("strength", default=defaults.strength, min=0.0, max=1.0, step=0.05,
                               optional=True,
                               tooltip=("For 'auto' and 'adaptive': how much of the particles' variety each check "
                                        "may use up. 0 = no steering, 0.5 (recommended) = each check may leave "
                                        "about half the particles in play, 1 = the best particle takes all. "
                                        "Works the same whatever the reward's scale.")),
                io.Float.Input("lambda", default=defaults.lmbda, min=-1000.0, max=1000.0, step=0.5,
                               tooltip=("For 'fixed' and 'adaptive': the steering strength in the reward's own "
                                        "units. 0 = no steering. Higher = the reward decides more, at the cost "
                                        "of variety. Its right size depends on the reward (about 1 for CLIP "
                                        "score, 10 for ImageReward); 'auto' needs none. Negative (fixed mode) "
                                        "steers away from the reward (the run notes it).")),
                io.Int.Input("every_n_steps", default=defaults.every, min=1, max=1000,
                             tooltip="Check and reshuffle the particles every this many sampling steps."),
                io.Float.Input("window_start", default=defaults.window[0], min=0.0, max=1.0, step=0.05,
                               tooltip=("Start steering at this fraction of the steps (0 = from the start). Early "
                                        "previews are blurry, so rewards there are rough.")),
                io.Float.Input("window_end", default=defaults.window[1], min=0.0, max=1.0, step=0.05,
                               tooltip="Stop steering after this fraction of the steps (1 = until the end)."),
                io.Float.Input("ess_threshold", default=0.0, min=0.0, max=1.0, step=0.05,
                               tooltip=("0 = reshuffle at every check. Otherwise reshuffle only when the particles' "
                                        "weights get this uneven (fraction of particles effectively in play, "
                                        "e.g. 0.5): keeps more variety.")),
                io.Combo.Input("resampling", options=list(RESAMPLING_SCHEMES), default=defaults.resampling,
                               tooltip=("How particles are copied and dropped. 'systematic' (recommended) is the "
                                        "least random; 'multinomial' the most.")),
                io.Combo.Input("output", options=list(OUTPUT_CHOICES), default="best reward",
                               tooltip=("Which particle the sampler outputs: the one with the best final score, or "
                                        "one drawn at random according to the final weights (more faithful to "
                                        "the model, less greedy).")),
                io.Float.Input("guidance", default=defaults.guidance, min=0.0, max=10.0, step=0.1, optional=True,
                               tooltip=GUIDANCE_TOOLTIP),  # last, optional: older saves and prompts run as before
            ],
            outputs=[FKPotential.Output(display_name="potential")],
        )

    @classmethod
    def validate_inputs(cls, **values):
        # Taking **values switches off ComfyUI's own min/max/option checks for every input: re-check them all.
        return check_widgets(cls, NODE, values, window_problem, lambda_problem) or True

    @classmethod
    def execute(cls, potential: str, every_n_steps: int, window_start: float, window_end: float,
                ess_threshold: float, resampling: str, output: str,
                lambda_mode: str = ABSENT_MEANS["lambda_mode"], strength: float = ABSENT_MEANS["strength"],
                guidance: float = ABSENT_MEANS["guidance"], **kwargs) -> io.NodeOutput:
        lmbda = kwargs["lambda"]
        values = {"potential": potential, "lambda_mode": lambda_mode, "strength": strength, "lambda": lmbda,
                  "every_n_steps": every_n_steps, "window_start": window_start, "window_end": window_end,
                  "ess_threshold": ess_threshold, "resampling": resampling, "output": output, "guidance": guidance}
        # linked widget values were not checked at queue time
        require_widgets(cls, NODE, values, window_problem, lambda_problem)
        config = FKConfig(potential=potential, lmbda=float(lmbda), lambda_mode=lambda_mode,
                          strength=float(strength), every=int(every_n_steps),
                          window=(float(window_start), float(window_end)),
                          ess_threshold=float(ess_threshold) if ess_threshold > 0 else None,
                          resampling=resampling, output=_OUTPUT_MODE[output], guidance=float(guidance))
        return io.NodeOutput(config)


NODES = [FKPotentialSelector]
