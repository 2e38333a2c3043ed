"""Contact sheet: every final particle in one grid image, labelled with its reward and rank, best marked.

Plain torch + PIL (no ComfyUI). Images follow ComfyUI's IMAGE layout: float [N, H, W, C] in [0, 1].
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .ranking import reward_ranks

BEST_COLOUR = (1.0, 0.78, 0.1)  # amber frame around the chosen particle
PAD = 4  # pixels between tiles and around the grid
BORDER = 3  # frame width around the chosen tile
LABEL_HEIGHT = 14  # strip under each tile for its first label line "#i r=… rank k"
CAPTION_LINE = 12  # pixels per caption line under the grid (PIL's built-in font is 11 px high)


# Characters PIL's built-in font draws as a box, spelled in ones it has (the font differs between Pillow versions:
# any other missing glyph is found by comparing with the font's "no glyph" box, see drawable()).
SPELLED = {"λ": "lambda", "σ": "sigma", "×": "x", "−": "-", "–": "-", "—": "-", "→": "->", "≥": ">=", "≤": "<="}


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def drawable(text: str) -> str:
    """``text`` in glyphs the sheet's font has: λ becomes "lambda", accents are dropped, other missing glyphs "?"."""
    import unicodedata

    font = _font()
    missing = bytes(font.getmask("\uffff"))
    out = []
    for ch in str(text):
        if ch.isascii() or bytes(font.getmask(ch)) != missing:
            out.append(ch)
            continue
        plain = SPELLED.get(ch) or unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        out.append(plain or "?")
    return "".join(out)


def _label_pieces(index: int, rank: Optional[int], reward: float, best: bool) -> list[str]:
    """Particle #index+1 (the one numbering of every view), its reward, its rank by reward beside it (None: the
    tiles are already in rank order)."""
    value = "nan" if not math.isfinite(reward) else f"{reward:.3g}"
    return [f"{'* ' if best else ''}#{index + 1}", f"r={value}"] + ([] if rank is None else [f"rank {rank}"])


def _draw_labels(sheet: torch.Tensor, boxes: Sequence[tuple[int, int, str]]) -> torch.Tensor:
    """Write each text at (x, y) onto the [H, W, 3] sheet with PIL's built-in font."""
    import numpy as np
    from PIL import Image, ImageDraw

    array = (sheet.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array, mode="RGB")
    draw = ImageDraw.Draw(image)
    font = _font()
    for x, y, text in boxes:
        draw.text((x, y), drawable(text), fill=(235, 235, 235), font=font)
    return torch.from_numpy(np.asarray(image).copy()).float() / 255.0


def wrap_pieces(pieces: Sequence[str], width: int) -> list[str]:
    """``pieces`` (e.g. ``["r=0.82 =", "0.9 aes", "+ 0.3 clip"]``) joined with spaces into lines no wider than
    ``width`` pixels in the sheet's font; a piece wider than a line alone (a folder path) is broken after a "/"
    where it can, else between characters."""
    font = _font()

    def fits(text: str) -> bool:
        return font.getlength(drawable(text)) <= width

    lines: list[str] = []
    for piece in map(str, pieces):
        if lines and fits(f"{lines[-1]} {piece}"):
            lines[-1] = f"{lines[-1]} {piece}"
            continue
        while not fits(piece) and len(piece) > 1:
            cut = max(k for k in range(1, len(piece)) if fits(piece[:k]) or k == 1)
            slash = piece.rfind("/", 0, cut) + 1
            cut = slash if slash > cut // 2 else cut
            lines.append(piece[:cut])
            piece = piece[cut:]
        lines.append(piece)
    return lines


def wrap_text(line: str, width: int) -> list[str]:
    """One caption line as lines no wider than ``width`` pixels, broken at spaces."""
    return wrap_pieces(str(line).split(" "), width) or [""]


def _tile_lines(rewards: torch.Tensor, best_index: int, width: int, notes: Optional[Sequence[Sequence[str]]],
                ranked: bool) -> list[list[str]]:
    """Per tile its label then its notes, wrapped to ``width`` px (64 px tiles get several short lines)."""
    n = rewards.numel()
    if notes is not None and len(notes) != n:
        raise ValueError(f"contact_sheet got {n} images but notes for {len(notes)}")
    ranks = [None] * n if ranked else reward_ranks(rewards)
    return [wrap_pieces(_label_pieces(i, ranks[i], float(rewards[i]), i == best_index), width) +
            (wrap_pieces(notes[i], width) if notes is not None else []) for i in range(n)]


def contact_sheet(images: torch.Tensor, rewards: torch.Tensor, best_index: int,
                  columns: Optional[int] = None, labels: bool = True,
                  caption: Sequence[str] = (), notes: Optional[Sequence[Sequence[str]]] = None,
                  ranked: bool = False) -> torch.Tensor:
    """Grid of ``images`` [N, H, W, C] (C = 1, 3 or 4) in index order; returns [1, H', W', 3] float in [0, 1].

    Each tile gets a label "#i r=reward rank k" (particle i+1 in index order, as every view numbers them; rank 1
    = highest reward; "*" marks ``best_index``), wrapped to the tile's width, and the ``best_index`` tile an amber
    frame. ``columns`` defaults to a near-square grid. ``caption`` lines (e.g.
    :func:`fk_core.collapse.summary_lines`) go in a strip under the grid, wrapped to its width.
    ``notes[i]``: pieces of text under tile i's label (e.g. a combined reward's components), wrapped to the
    tile's width (:func:`wrap_pieces`). ``ranked``: the images come best first, so "#i" is the rank already.
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

    tile_lines = _tile_lines(rewards, best_index, w + 2 * BORDER - 1, notes, ranked) if labels else []
    label_h = LABEL_HEIGHT + (max(len(lines) for lines in tile_lines) - 1) * CAPTION_LINE if labels else 0
    cell_w, cell_h = w + 2 * BORDER, h + 2 * BORDER + label_h
    sheet_w = PAD + columns * (cell_w + PAD)
    grid_h = PAD + rows * (cell_h + PAD)
    caption_lines = [part for line in caption for part in wrap_text(line, sheet_w - 2 * PAD)]
    sheet_h = grid_h + (len(caption_lines) * CAPTION_LINE + PAD if caption_lines else 0)
    sheet = torch.full((sheet_h, sheet_w, 3), 0.12)
    texts = []
    for i in range(n):
        row, col = divmod(i, columns)
        x0, y0 = PAD + col * (cell_w + PAD), PAD + row * (cell_h + PAD)
        if i == best_index:
            sheet[y0:y0 + h + 2 * BORDER, x0:x0 + cell_w] = torch.tensor(BEST_COLOUR)
        sheet[y0 + BORDER:y0 + BORDER + h, x0 + BORDER:x0 + BORDER + w] = tiles[i]
        texts += [(x0 + 1, y0 + h + 2 * BORDER + 1 + k * CAPTION_LINE, line) for k, line in enumerate(tile_lines[i])
                  ] if labels else []
    texts += [(PAD, grid_h + i * CAPTION_LINE, line) for i, line in enumerate(caption_lines)]
    if texts:
        sheet = _draw_labels(sheet, texts)
    return sheet.unsqueeze(0)
