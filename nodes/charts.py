"""FK Trace Charts node: the sampler's trace (JSON STRING) → reward/ESS chart and lineage picture as IMAGEs.

A thin adapter: the drawing is ``fk_core.charts`` (the numbers come from the trace, nothing is recomputed).
"""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..fk_core import FKError, TraceError, lineage_chart, load_trace, message, reward_ess_chart
from .common import CATEGORY
from .validation import check_widgets, require_widgets

NODE = "FK Trace Charts"
TRACE_ADVICE = "connect the trace_json output of an FK sampler (the trace of one run, unedited)"


class FKTraceCharts(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FKTraceCharts",
            display_name="FK Trace Charts",
            category=CATEGORY,
            description="Draws an FK run's reward/ESS chart and its lineage picture, for saving or sharing.",
            inputs=[
                io.String.Input("trace", force_input=True,
                                tooltip="The 'trace' output of the FK Particle Sampler (JSON text)."),
                io.Int.Input("width", default=768, min=160, max=4096, step=8,
                             tooltip="Width of each picture in pixels."),
                io.Int.Input("height", default=384, min=120, max=4096, step=8,
                             tooltip="Height of each picture in pixels."),
                io.Int.Input("highlight", default=-1, min=-1, max=4095,
                             tooltip="Final particle whose ancestry is drawn in gold; -1 = the best one."),
            ],
            outputs=[
                io.Image.Output("reward_chart", tooltip="Reward band, best history, ESS, resampling."),
                io.Image.Output("lineage", tooltip="Which initial particle each one descends from."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values):
        return check_widgets(cls, NODE, values) or True  # **values turns ComfyUI's min/max checks off

    @classmethod
    def execute(cls, trace: str, width: int, height: int, highlight: int) -> io.NodeOutput:
        require_widgets(cls, NODE, {"width": width, "height": height, "highlight": highlight})
        if not isinstance(trace, str):
            raise FKError(message(NODE, "trace", f"must be the JSON text of a trace, got {type(trace).__name__}",
                                  TRACE_ADVICE))
        try:
            parsed = load_trace(trace)
        except TraceError as exc:
            raise FKError(message(NODE, "trace", str(exc), TRACE_ADVICE)) from None
        n = parsed["num_particles"]
        if highlight >= n:
            raise FKError(message(NODE, "highlight", f"is {highlight}, but the trace has {n} particles "
                                  f"(0..{n - 1})", f"set highlight to -1 (the best) or 0 … {n - 1}"))
        chart = reward_ess_chart(parsed, width, height)
        tree = lineage_chart(parsed, width, height, highlight=None if highlight < 0 else highlight)
        return io.NodeOutput(chart, tree, ui=ui.PreviewImage(torch.cat([chart, tree]), cls=cls))


NODES = [FKTraceCharts]
