"""fk_core/latent_checks.py without a host: the latent FK gets is one usable latent of the model's kind, or a
message naming the node, the input and what to do (in ComfyUI: test_comfy_video.py, test_comfy_sampling.py)."""

from __future__ import annotations

import pytest
import torch

from fk_core import FKError, check_latent, check_noised_latent


class LatentFormat:
    def __init__(self, channels: int, dims: int):
        self.latent_channels, self.latent_dimensions = channels, dims


class Base:
    def __init__(self, channels=4, dims=2):
        self.latent_format = LatentFormat(channels, dims)


class Patcher:  # what holds the base model as .model (ComfyUI's ModelPatcher)
    def __init__(self, channels=4, dims=2):
        self.model = Base(channels, dims)


class Nested:  # duck-typed as comfy.nested_tensor.NestedTensor
    is_nested = True
    tensors = [torch.zeros(1, 16, 2, 2, 2), torch.zeros(1, 8, 4)]


def test_a_usable_latent_passes_and_its_samples_come_back():
    samples = torch.randn(1, 4, 8, 8)
    assert check_latent("N", {"samples": samples}, Patcher()) is samples
    assert check_latent("N", {"samples": torch.zeros(1, 16, 8, 8)}, Patcher()) is not None  # empty: host resizes


@pytest.mark.parametrize("latent, model, pattern", [
    ({"samples": "x"}, None, r"^N: latent_image is not a LATENT \(no 'samples' tensor\); connect"),
    ({"samples": torch.randn(1, 16, 8, 8)}, Patcher(), r"has 16 channels but the model expects 4"),
    ({"samples": torch.randn(1, 4, 2, 8, 8)}, Patcher(), r"is a video latent \[1, 4, 2, 8, 8\] but the model is an "
                                                           r"image model"),
    ({"samples": torch.randn(1, 4, 8, 8)}, Patcher(dims=3), r"but the model is a video model"),
    ({"samples": Nested()}, None, r"is a nested latent \(several latents packed together: \[1, 16, 2, 2, 2\]"),
    ({"samples": torch.randn(1, 4, 8, 8), "noise_mask": torch.ones(1, 5, 7)}, None, r"noise mask that does not fit"),
])
def test_unusable_latents_are_refused_by_name(latent, model, pattern):
    with pytest.raises(FKError, match=pattern):
        check_latent("N", latent, model)


def test_the_samplers_input_is_one_finite_latent_of_the_models_kind():
    check_noised_latent("N", torch.randn(4, 4, 8, 8), Base())
    with pytest.raises(FKError, match=r"packed into one \[2, 1, 96\]"):
        check_noised_latent("N", torch.randn(2, 1, 96), Base())
    with pytest.raises(FKError, match=r"latent_image \(the sampler's input\) is a nested latent"):
        check_noised_latent("N", Nested(), Base())
    bad = torch.randn(2, 4, 8, 8)
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(FKError, match=r"contains NaN/inf values; check the latent and the noise node"):
        check_noised_latent("N", bad, Base())
