"""Contact sheet: every final particle in one grid image, labelled with its reward and rank, best marked.

Plain torch + PIL (no ComfyUI). Images follow ComfyUI's IMAGE layout: float [N, H, W, C] in [0, 1].
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .ranking import reward_order

BEST_COLOUR = (1.0, 0.78, 0.1)  # amber frame around the chosen particle
PAD = 4  # pixels between tiles and around the grid
BORDER = 3  # frame width around the chosen tile
LABEL_HEIGHT = 14  # strip under each tile for "#rank  r=…"
CAPTION_LINE = 12  # pixels per caption line under the grid (PIL's built-in font is 11 px high)


def _rank_of(rewards: torch.Tensor) -> list[int]:
    """1-based rank by descending reward; NaN rewards rank last (in index order)."""
    ranks = [0] * int(torch.as_tensor(rewards).numel())
    for r, i in enumerate(reward_order(rewards).tolist()):
        ranks[i] = r + 1
    return ranks


def _label(rank: int, reward: float, best: bool) -> str:
    value = "nan" if not math.isfinite(reward) else f"{reward:.3g}"
    return f"{'* ' if best else ''}#{rank} r={value}"


def _draw_labels(sheet: torch.Tensor, boxes: Sequence[tuple[int, int, str]]) -> torch.Tensor:
    """Write each text at (x, y) onto the [H, W, 3] sheet with PIL's built-in font."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    array = (sheet.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array, mode="RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for x, y, text in boxes:
        draw.text((x, y), text, fill=(235, 235, 235), font=font)
    return torch.from_numpy(np.asarray(image).copy()).float() / 255.0


def contact_sheet(images: torch.Tensor, rewards: torch.Tensor, best_index: int,
                  columns: Optional[int] = None, labels: bool = True,
                  caption: Sequence[str] = ()) -> torch.Tensor:
    """Grid of ``images`` [N, H, W, C] (C = 1, 3 or 4) in index order; returns [1, H', W', 3] float in [0, 1].

    Each tile gets a label strip "#rank r=reward" (rank 1 = highest reward; "*" marks ``best_index``) and the
    ``best_index`` tile an amber frame. ``columns`` defaults to a near-square grid. ``caption`` lines (e.g.
    :func:`fk_core.collapse.summary_lines`) go in a strip under the grid; long lines are cut at its edge.
    """
    if images.ndim != 4:
        raise ValueError(f"contact_sheet expects images [N, H, W, C], got shape {tuple(images.shape)}")
    n, h, w, c = images.shape
    rewards = torch.as_tensor(rewards).reshape(-1)
    if rewards.numel() != n:
        raise ValueError(f"contact_sheet got {n} images but {rewards.numel()} rewards")
    if not 0 <= best_index < n:
        raise ValueError(f"best_index {best_index} is outside 0..{n - 1}")
    if columns is None or columns < 1:
        columns = max(1, math.ceil(math.sqrt(n)))
    columns = min(columns, n)
    rows = math.ceil(n / columns)

    tiles = images.detach().to("cpu", torch.float32).clamp(0, 1)
    if c == 1:
        tiles = tiles.expand(n, h, w, 3)
    elif c >= 3:
        tiles = tiles[..., :3]
    else:
        raise ValueError(f"contact_sheet supports 1, 3 or 4 channels, got {c}")

    label_h = LABEL_HEIGHT if labels else 0
    cell_w, cell_h = w + 2 * BORDER, h + 2 * BORDER + label_h
    sheet_w = PAD + columns * (cell_w + PAD)
    grid_h = PAD + rows * (cell_h + PAD)
    sheet_h = grid_h + (len(caption) * CAPTION_LINE + PAD if caption else 0)
    sheet = torch.full((sheet_h, sheet_w, 3), 0.12)
    ranks = _rank_of(rewards)
    texts = []
    for i in range(n):
        row, col = divmod(i, columns)
        x0, y0 = PAD + col * (cell_w + PAD), PAD + row * (cell_h + PAD)
        if i == best_index:
            sheet[y0:y0 + h + 2 * BORDER, x0:x0 + cell_w] = torch.tensor(BEST_COLOUR)
        sheet[y0 + BORDER:y0 + BORDER + h, x0 + BORDER:x0 + BORDER + w] = tiles[i]
        texts.append((x0 + BORDER, y0 + h + 2 * BORDER + 1, _label(ranks[i], float(rewards[i]), i == best_index)))
    texts = texts if labels else []
    texts += [(PAD, grid_h + i * CAPTION_LINE, str(line)) for i, line in enumerate(caption)]
    if texts:
        sheet = _draw_labels(sheet, texts)
    return sheet.unsqueeze(0)
