"""FK Trace Charts node: the sampler's trace (JSON STRING) → reward/ESS chart and lineage picture as IMAGEs.

A thin adapter: the drawing is ``fk_core.charts`` (the numbers come from the trace, nothing is recomputed).
"""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..fk_core.charts import TraceError, lineage_chart, reward_ess_chart
from .common import CATEGORY


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
    def execute(cls, trace: str, width: int, height: int, highlight: int) -> io.NodeOutput:
        try:
            chart = reward_ess_chart(trace, width, height)
            tree = lineage_chart(trace, width, height, highlight=None if highlight < 0 else highlight)
        except TraceError as exc:
            raise ValueError(f"FK Trace Charts: {exc}") from exc
        return io.NodeOutput(chart, tree, ui=ui.PreviewImage(torch.cat([chart, tree]), cls=cls))


NODES = [FKTraceCharts]
