"""FK Score Images node: any IMAGE batch + any FK_REWARD → the images by score, a labelled sheet, the scores.

A thin adapter: fk_core.score_sheet scores (with the very preprocessing of a run), sorts, breaks a combined
reward into its weighted shares and draws the sheet; this file adds ComfyUI's sockets, checks and preview.
"""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui

from ..fk_core import FKError, breakdown, message, name_of, reward_input_size, score_images, score_sheet, scores_record
from .common import CATEGORY, FK_REWARD
from .reward_pipeline import call_reward
from .validation import check_widgets, require_widgets

NODE = "FK Score Images"
MAX_LISTED = 64  # lines of the node's text preview (the JSON output always has every image)


class FKScoreImages(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FKScoreImages",
            display_name="FK Score Images",
            category=CATEGORY,
            description="Scores a batch of images with an FK reward (FK Reward Loader or FK Reward Combine), "
                        "exactly as FK steering would score them, and sorts them best first. With a Combine, "
                        "the sheet and the JSON show each reward's weighted share, for tuning the weights.",
            inputs=[
                io.Image.Input("images", tooltip="Any batch of images (e.g. from VAE Decode or Load Image)."),
                FK_REWARD.Input("reward", tooltip="A reward from FK Reward Loader or FK Reward Combine."),
                io.Int.Input("batch_size", default=8, min=1, max=256, optional=True,
                             tooltip="Images per reward call (lower it if a learned reward runs out of memory; "
                                     "the scores do not change)."),
                io.Int.Input("columns", default=0, min=0, max=64, optional=True,
                             tooltip="Tiles per row of the sheet; 0 = a near-square grid."),
            ],
            outputs=[
                io.Image.Output(display_name="images_by_score", tooltip="The images, best first."),
                io.Image.Output(display_name="score_sheet",
                                tooltip="The images best first, with rank, score and (for a Combine) each "
                                        "reward's weighted share under each one."),
                io.String.Output(display_name="scores_json",
                                 tooltip="Best first: rank, position in the input batch, score and components."),
                io.Float.Output(display_name="scores", is_output_list=True,
                                tooltip="The scores, best first (one FLOAT per image)."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values):
        return check_widgets(cls, NODE, values) or True  # **values turns ComfyUI's min/max checks off

    @classmethod
    def execute(cls, images, reward, batch_size: int = 8, columns: int = 0) -> io.NodeOutput:
        require_widgets(cls, NODE, {"batch_size": batch_size, "columns": columns})
        images = _checked_images(images)
        if reward is None or not callable(reward):
            raise FKError(message(NODE, "reward", f"is {type(reward).__name__}, not an FK_REWARD",
                                  "connect FK Reward Loader or FK Reward Combine"))
        name = name_of(reward)
        result = score_images(images, reward, batch_size, reward_input_size(reward),
                              call=lambda score, seen: call_reward(NODE, score, name, seen, "the images"))
        sheet = score_sheet(images, result, columns or None)
        record = scores_record(result)
        text = _text(result, name, record)
        scores = [float(result.scores[i]) for i in result.order.tolist()]
        preview = {**ui.PreviewImage(sheet, cls=cls).as_dict(), "text": [text]}
        return io.NodeOutput(images[result.order].clone(), sheet,
                             json.dumps({"reward": name, "images": record}), scores, ui=preview)


def _checked_images(images) -> torch.Tensor:
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] not in (1, 3, 4):
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise FKError(message(NODE, "images", f"must be a batch of images [N, H, W, C], got {shape}",
                              "connect an IMAGE output (e.g. VAE Decode or Load Image)"))
    return images


def _text(result, name: str, record: list[dict]) -> str:
    lines = [f"{len(record)} images scored by {name}, best first:"]
    for entry in record[:MAX_LISTED]:
        score = "r=nan" if entry["score"] is None else f"r={entry['score']:.4g}"
        detail = breakdown(result, entry["index"]) or score
        lines.append(f"#{entry['rank']} (image {entry['index']}) {detail}")
    if len(record) > MAX_LISTED:
        lines.append(f"… {len(record) - MAX_LISTED} more in scores_json")
    return "\n".join(lines)


NODES = [FKScoreImages]
