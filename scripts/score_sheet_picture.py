"""The README's picture of FK Score Images' sheet: eight synthetic images (smooth colour fields, some blurred,
some washed out) scored by a combined pixel reward, best first, each reward's weighted share under each tile.

    python scripts/score_sheet_picture.py [docs/img/score_sheet.png]

Pixel rewards only (no weights, no GPU): the sheet is what the node draws for the same inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fk_core import WeightedSum, score_images, score_sheet  # noqa: E402
from fk_core.rewards import BoundReward, Colorfulness, Saturation, Sharpness  # noqa: E402

SIZE = 112


def synthetic_images(n: int = 8, seed: int = 7) -> torch.Tensor:
    """Colour fields of varying detail (upsampled noise), saturation (mixed with grey) and blur."""
    gen = torch.Generator().manual_seed(seed)
    images = []
    for i in range(n):
        coarse = torch.rand(1, 3, 4 + 2 * i, 4 + 2 * i, generator=gen)
        field = F.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(0, 1)
        grey = field.mean(dim=1, keepdim=True)
        washed = i % 3 / 3  # a third of them washed out, a third half-way
        images.append((1 - washed) * field + washed * grey)
    return torch.cat(images).movedim(1, -1).contiguous()


def main(out: str = "docs/img/score_sheet.png") -> None:
    from PIL import Image

    terms = [(BoundReward(Saturation()), 1.0), (BoundReward(Colorfulness()), 0.5), (BoundReward(Sharpness()), -20.0)]
    combined = WeightedSum(terms)
    reward = BoundReward(combined, None, name=combined.name)
    images = synthetic_images()
    result = score_images(images, reward, batch=8, input_size=None)
    sheet = score_sheet(images, result, columns=4)[0]
    Image.fromarray((sheet * 255).round().to(torch.uint8).numpy()).save(out)
    print(f"{out}: {tuple(sheet.shape)} scored by {reward.name}")


if __name__ == "__main__":
    main(*sys.argv[1:])
