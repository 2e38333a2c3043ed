"""fk_core.contact_sheet: grid layout, rank labels, best-particle frame (no ComfyUI needed)."""

from __future__ import annotations

import pytest
import torch

from fk_core.contact_sheet import BEST_COLOUR, BORDER, CAPTION_LINE, LABEL_HEIGHT, PAD, contact_sheet, wrap_text


def test_grid_size_and_range():
    images = torch.rand(5, 16, 12, 3)
    sheet = contact_sheet(images, torch.tensor([0.1, 0.5, 0.3, float("nan"), -1.0]), best_index=1, labels=False)
    columns, rows = 3, 2  # near-square for 5 tiles
    assert sheet.shape == (1, PAD + rows * (16 + 2 * BORDER + PAD),
                           PAD + columns * (12 + 2 * BORDER + PAD), 3)
    assert 0.0 <= float(sheet.min()) and float(sheet.max()) <= 1.0


def test_tiles_are_copied_and_best_is_framed():
    images = torch.stack([torch.full((8, 8, 3), v) for v in (0.2, 0.4, 0.6)])
    sheet = contact_sheet(images, torch.tensor([1.0, 3.0, 2.0]), best_index=1, columns=3, labels=False)[0]
    cell_w = 8 + 2 * BORDER + PAD
    for i, v in enumerate((0.2, 0.4, 0.6)):
        x, y = PAD + i * cell_w + BORDER, PAD + BORDER
        assert torch.allclose(sheet[y:y + 8, x:x + 8], torch.full((8, 8, 3), v))
    frame_best = sheet[PAD, PAD + cell_w]  # top-left corner of tile 1's frame
    frame_other = sheet[PAD, PAD]
    assert torch.allclose(frame_best, torch.tensor(BEST_COLOUR))
    assert not torch.allclose(frame_other, torch.tensor(BEST_COLOUR))


def test_labels_draw_text_in_label_strip():
    images = torch.zeros(2, 16, 128, 3)  # wide tiles: each label fits on one line
    sheet = contact_sheet(images, torch.tensor([0.5, 0.25]), 0, labels=True)[0]
    strip = sheet[PAD + 16 + 2 * BORDER:PAD + 16 + 2 * BORDER + LABEL_HEIGHT]
    assert float(strip.max()) > 0.8  # light text on the dark (0.12) strip
    plain = contact_sheet(images, torch.tensor([0.5, 0.25]), 0, labels=False)[0]
    assert plain.shape[0] == sheet.shape[0] - LABEL_HEIGHT


def test_rank_order_nan_last():
    from fk_core.ranking import reward_ranks

    assert reward_ranks(torch.tensor([0.1, float("nan"), 0.9, -2.0])) == [2, 4, 1, 3]


def test_tiles_are_numbered_by_index_with_the_rank_beside():
    """Issue 19 item 6: one numbering everywhere: tile i says #i+1 (as the live view and the node text do) and
    its rank by reward separately; the best one is starred."""
    from fk_core.contact_sheet import _label_pieces

    assert _label_pieces(2, 1, 0.8234, True) == ["* #3", "r=0.823", "rank 1"]
    assert _label_pieces(0, 4, float("nan"), False) == ["#1", "r=nan", "rank 4"]


def _text_columns(sheet: torch.Tensor) -> torch.Tensor:
    """Columns of the [H, W, 3] sheet where light text was drawn (the tiles here are mid grey)."""
    return (sheet.min(dim=-1).values > 0.75).any(dim=0)


def test_labels_and_caption_fit_64px_tiles_and_render_lambda():
    """Issue 19 item 6: on 64 px tiles the labels (with a combined reward's breakdown) and the run summary wrap
    inside the sheet instead of running off its right edge, and λ is spelled (PIL's built-in font has no glyph:
    it drew a box)."""
    from fk_core.contact_sheet import drawable

    images = torch.full((4, 64, 64, 3), 0.5)
    rewards = torch.tensor([0.8234, -1.25e-3, 12.5, float("nan")])
    notes = [["= 0.93 aes", "+ 0.31 clip", "- 0.42 sharp"]] * 4
    caption = ["λ rose from 0.0123 to 45.6 over 12 checks (adaptive, strength 0.5); final λ 45.6",
               "weights from /home/someone/ComfyUI/models/fk_rewards/a-rather-long-folder-name"]
    sheet = contact_sheet(images, rewards, 2, notes=notes, caption=caption)[0]
    width = sheet.shape[1]
    assert not bool(_text_columns(sheet)[width - PAD + 1:].any()), "text runs off the sheet's right edge"
    grid_h = contact_sheet(images, rewards, 2, notes=notes)[0].shape[0]
    gap = slice(PAD + 64 + 2 * BORDER + 1, PAD + 64 + 2 * BORDER + PAD)  # between the two columns of tiles
    assert not bool(_text_columns(sheet[:grid_h])[gap].any()), "a tile's text runs into the next tile"
    assert drawable("final λ 45.6 × 2 −1") == "final lambda 45.6 x 2 -1"
    spelled = contact_sheet(images, rewards, 2, caption=["final lambda 45.6"])
    assert torch.equal(contact_sheet(images, rewards, 2, caption=["final λ 45.6"]), spelled)


def test_grayscale_and_rgba_inputs():
    assert contact_sheet(torch.rand(2, 8, 8, 1), torch.zeros(2), 0).shape[-1] == 3
    assert contact_sheet(torch.rand(2, 8, 8, 4), torch.zeros(2), 0).shape[-1] == 3


@pytest.mark.parametrize("kwargs,message", [
    ({"images": torch.rand(8, 8, 3)}, "N, H, W, C"),
    ({"rewards": torch.zeros(3)}, "rewards"),
    ({"best_index": 4}, "best_index"),
])
def test_bad_input_is_explained(kwargs, message):
    args = {"images": torch.rand(2, 8, 8, 3), "rewards": torch.zeros(2), "best_index": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        contact_sheet(**args)


def test_caption_lines_go_in_a_strip_under_the_grid():
    images = torch.full((2, 16, 16, 3), 0.5)
    plain = contact_sheet(images, torch.tensor([1.0, 2.0]), best_index=1)
    lines = ["λ rose from 0.1 to 3 over 5 checks", "particles kept per resampling: first 2 of 2"]
    captioned = contact_sheet(images, torch.tensor([1.0, 2.0]), best_index=1, caption=lines)
    wrapped = [part for line in lines for part in wrap_text(line, plain.shape[2] - 2 * PAD)]
    assert len(wrapped) > len(lines)  # two 16 px tiles: the lines wrap to the sheet's width
    assert captioned.shape[1] == plain.shape[1] + len(wrapped) * CAPTION_LINE + PAD
    assert captioned.shape[2] == plain.shape[2]
    assert torch.equal(captioned[:, : plain.shape[1]], plain)  # the grid itself is unchanged
    strip = captioned[0, plain.shape[1]:]
    assert float(strip.max()) > 0.8  # light text was drawn on the dark strip
