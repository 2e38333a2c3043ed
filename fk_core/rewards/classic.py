"""Rewards computed from pixels alone (no weights, no prompt). All but JPEG are differentiable.

Each score is a per-image statistic in a small, documented range so that it can be mixed with learned
rewards in a weighted sum without one term drowning the others.
"""

from __future__ import annotations

import io
import re

import kornia
import torch

from .base import Reward, RewardInputError
from .preprocess import to_grey

# Keeps sqrt differentiable at exactly zero variance (a flat image).
_EPS = 1e-12


def _per_image_std(values: torch.Tensor) -> torch.Tensor:
    flat = values.flatten(1)
    return torch.sqrt(flat.var(dim=1, unbiased=False) + _EPS)


class Sharpness(Reward):
    """Standard deviation of the Laplacian of the grey image: 0 for a flat or very blurred image,
    about 0.05-0.3 for detailed images. Higher = crisper edges and more fine detail."""

    name = "sharpness"
    differentiable = True

    def _score(self, images, prompt):
        laplacian = kornia.filters.laplacian(to_grey(images), kernel_size=3, border_type="reflect")
        return _per_image_std(laplacian)


class Saturation(Reward):
    """Mean HSV saturation in [0, 1]: 0 for greys, 1 for pure colours."""

    name = "saturation"
    differentiable = True

    def _score(self, images, prompt):
        hsv = kornia.color.rgb_to_hsv(images.clamp(0.0, 1.0))
        return hsv[:, 1].flatten(1).mean(dim=1)


class Colorfulness(Reward):
    """Hasler & Suesstrunk (2003) colourfulness on [0, 1] pixels: about 0 for grey images, 0.1-0.2 for
    typical photos, up to ~0.6 for vivid saturated scenes."""

    name = "colorfulness"
    differentiable = True

    def _score(self, images, prompt):
        red, green, blue = images[:, 0], images[:, 1], images[:, 2]
        rg = (red - green).flatten(1)
        yb = (0.5 * (red + green) - blue).flatten(1)
        spread = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False) + _EPS)
        offset = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2 + _EPS)
        return spread + 0.3 * offset


class BrightnessTarget(Reward):
    """Minus the distance between the mean grey level and a target in [0, 1]: 0 is a perfect match."""

    name = "brightness"
    differentiable = True

    def __init__(self, target: float = 0.5):
        super().__init__()
        if not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"brightness target must be between 0 and 1, got {target}")
        self.target = float(target)
        self.name = f"brightness(target={self.target:g})"

    def _score(self, images, prompt):
        return -(to_grey(images).flatten(1).mean(dim=1) - self.target).abs()


class ContrastTarget(Reward):
    """Minus the distance between the grey-level standard deviation (RMS contrast, 0-0.5) and a target."""

    name = "contrast"
    differentiable = True

    def __init__(self, target: float = 0.25):
        super().__init__()
        if not 0.0 <= float(target) <= 0.5:
            raise ValueError(f"contrast target must be between 0 and 0.5, got {target}")
        self.target = float(target)
        self.name = f"contrast(target={self.target:g})"

    def _score(self, images, prompt):
        return -(_per_image_std(to_grey(images)) - self.target).abs()


def parse_color(color: str | tuple | list) -> tuple[float, float, float]:
    """'#RRGGBB', 'RRGGBB', 'r,g,b' (0-255) or a 3-tuple of floats in [0, 1] -> RGB floats in [0, 1]."""
    if isinstance(color, (tuple, list)):
        if len(color) != 3:
            raise ValueError(f"a colour needs 3 components, got {color!r}")
        rgb = tuple(float(c) for c in color)
        if any(not 0.0 <= c <= 1.0 for c in rgb):
            raise ValueError(f"colour components must be in [0, 1], got {color!r}")
        return rgb
    text = str(color).strip()
    hex_match = re.fullmatch(r"#?([0-9a-fA-F]{6})", text)
    if hex_match:
        value = hex_match.group(1)
        return tuple(int(value[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    if len(parts) == 3 and all(re.fullmatch(r"\d{1,3}", p) for p in parts) and all(int(p) <= 255 for p in parts):
        return tuple(int(p) / 255.0 for p in parts)
    raise ValueError(f"cannot read colour {color!r}: use '#ff8800' or '255,136,0'")


class TargetColor(Reward):
    """Closeness of the image to one colour: minus the mean CIE-Lab distance (Delta E 1976) of every pixel
    to the target, divided by 100. 0 = every pixel is exactly that colour; about -0.5 for unrelated images."""

    name = "target_color"
    differentiable = True

    def __init__(self, color: str | tuple = "#ff8800"):
        super().__init__()
        self.rgb = parse_color(color)
        self.name = "target_color(#{:02x}{:02x}{:02x})".format(*(round(c * 255) for c in self.rgb))

    def _score(self, images, prompt):
        lab = kornia.color.rgb_to_lab(images.clamp(0.0, 1.0))
        target = torch.tensor(self.rgb, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        target_lab = kornia.color.rgb_to_lab(target)
        distance = torch.sqrt(((lab - target_lab) ** 2).sum(dim=1) + _EPS)
        return -distance.flatten(1).mean(dim=1) / 100.0


class JpegCompressibility(Reward):
    """Minus the JPEG size in bits per pixel (quality 95, the DDPO setting): simple, flat images score
    near -0.5, busy detailed ones -4 or lower. Not differentiable (the encoder is discrete)."""

    name = "jpeg_compressibility"
    differentiable = False

    def __init__(self, quality: int = 95):
        super().__init__()
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be 1-100, got {quality}")
        self.quality = int(quality)

    def _score(self, images, prompt):
        from PIL import Image  # the JPEG encoder itself; only this reward needs it

        pixels = (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
        height, width = pixels.shape[1:3]
        sizes = []
        for array in pixels:  # JPEG encoders take one image at a time
            buffer = io.BytesIO()
            Image.fromarray(array, mode="RGB").save(buffer, format="JPEG", quality=self.quality)
            sizes.append(buffer.tell())
        bits_per_pixel = torch.tensor(sizes, dtype=torch.float64) * 8.0 / (height * width)
        return (-bits_per_pixel).to(device=images.device, dtype=torch.float32)


class WeightedSum(Reward):
    """sum_i weight_i * reward_i. Terms may be Rewards (they receive the prompt) or already-bound
    callables (their prompt is fixed). A NaN in any term makes that image's total NaN, so the sampler
    gives it weight 0 rather than silently ignoring the failed term."""

    name = "weighted_sum"

    def __init__(self, terms):
        super().__init__()
        terms = list(terms)
        if not terms:
            raise ValueError("a weighted sum needs at least one reward")
        self._callables = []
        modules = []
        for term in terms:
            if not (isinstance(term, (tuple, list)) and len(term) == 2):
                raise ValueError("each weighted-sum term must be a (reward, weight) pair")
            reward, weight = term
            if not callable(reward):
                raise TypeError(f"{reward!r} is not a reward")
            self._callables.append((reward, float(weight)))
            if isinstance(reward, Reward):
                modules.append(reward)
        # Registered so .to()/.parameters() see learned sub-rewards.
        self.parts = torch.nn.ModuleList(modules)
        self.needs_prompt = any(isinstance(r, Reward) and r.needs_prompt for r, _ in self._callables)
        self.differentiable = all(bool(getattr(r, "differentiable", False)) for r, _ in self._callables)
        self.name = _describe_sum(self._callables)
        sizes = [getattr(r, "input_size", None) for r, _ in self._callables]
        # Smaller images leave the sum unchanged only when every term resizes to the same size.
        self.input_size = sizes[0] if len(set(sizes)) == 1 else None

    def score(self, images, prompt=None):
        return weighted_total(self.parts(images, prompt))

    def parts(self, images, prompt=None) -> list[tuple[str, float, torch.Tensor]]:
        """Each term's (name, weight, values [B]) before weighting; :func:`weighted_total` of them is the score."""
        if self.needs_prompt and (prompt is None or not isinstance(prompt, str)):
            raise RewardInputError(f"{self.name} contains a reward that needs a prompt; give it one")
        found = []
        for reward, weight in self._callables:
            value = reward.score(images, prompt) if isinstance(reward, Reward) else reward(images)
            found.append((getattr(reward, "name", "reward"), weight,
                          value.to(device=images.device, dtype=torch.float32)))
        return found


def weighted_total(parts) -> torch.Tensor:
    """sum_i weight_i * values_i, in term order (the one summation: a score and its breakdown agree exactly)."""
    total = None
    for _name, weight, value in parts:
        total = weight * value if total is None else total + weight * value
    return total


def _describe_sum(terms) -> str:
    pieces = []
    for index, (reward, weight) in enumerate(terms):
        label = getattr(reward, "name", "reward")
        sign = "-" if weight < 0 else "+"
        magnitude = f"{abs(weight):g}*" if abs(weight) != 1.0 else ""
        if index == 0:
            pieces.append(f"{'-' if weight < 0 else ''}{magnitude}{label}")
        else:
            pieces.append(f" {sign} {magnitude}{label}")
    return "".join(pieces)
