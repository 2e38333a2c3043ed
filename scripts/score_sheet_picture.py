"""The README's pictures of component labels: FK Score Images' sheet (eight synthetic images: smooth colour
fields, some blurred, some washed out, scored by a combined pixel reward, best first, each reward's weighted share
under each tile) and the samplers' contact sheet of the same eight images as a run's final particles (index order,
the best framed, the same shares under each particle).

    python scripts/score_sheet_picture.py [docs/img/score_sheet.png] [docs/img/contact_sheet_components.png]

Pixel rewards only (no weights, no GPU): each sheet is what its node draws for the same images and reward (the
contact sheet from the trace's final_components record, as FK Particle Sampler builds it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fk_core import WeightedSum, component_notes, contact_sheet, score_images, score_sheet  # noqa: E402
from fk_core.rewards import BoundReward, Colorfulness, Saturation, Sharpness  # noqa: E402
from fk_core.score_sheet import components_record  # noqa: E402

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


def save(sheet: torch.Tensor, out: str) -> None:
    from PIL import Image

    Image.fromarray((sheet[0] * 255).round().to(torch.uint8).numpy()).save(out)
    print(f"{out}: {tuple(sheet.shape)}")


def main(out: str = "docs/img/score_sheet.png", run_out: str = "docs/img/contact_sheet_components.png") -> None:
    terms = [(BoundReward(Saturation()), 1.0), (BoundReward(Colorfulness()), 0.5), (BoundReward(Sharpness()), -20.0)]
    combined = WeightedSum(terms)
    reward = BoundReward(combined, None, name=combined.name)
    images = synthetic_images()
    result = score_images(images, reward, batch=8, input_size=None)
    save(score_sheet(images, result, columns=4), out)
    totals = result.scores.tolist()  # the run's final_rewards; its final_components record the same terms
    notes = component_notes(components_record(result.parts), totals)
    save(contact_sheet(images, result.scores, int(result.order[0]), columns=4, notes=notes), run_out)


if __name__ == "__main__":
    main(*sys.argv[1:])
