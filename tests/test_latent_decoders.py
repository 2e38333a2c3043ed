"""fk_core/latent_decoders.py without a host: each decoder's arithmetic and layout, and the VAE's output device
restored (with ComfyUI's real VAE and TAESD files: test_preview_decoder.py)."""

from __future__ import annotations

import pytest
import torch

from fk_core import FullVAEDecoder, TAESDDecoder, VideoTAEDecoder, outputs_on_device


class VAE:
    device, output_device = "device", "cpu"

    def __init__(self):
        self.seen_output_device = None

    def decode(self, latents):
        self.seen_output_device = self.output_device
        return (latents[:, :3].movedim(1, -1) / 10).double()


class Base:
    @staticmethod
    def process_latent_out(x):
        return x * 10


def test_outputs_stay_on_the_vaes_device_while_decoding_and_the_setting_comes_back():
    vae = VAE()
    with pytest.raises(RuntimeError), outputs_on_device(vae):
        assert vae.output_device == "device"
        raise RuntimeError("restored on errors too")
    assert vae.output_device == "cpu"
    with outputs_on_device(object()):  # a VAE without the setting: nothing to do
        pass


def test_full_vae_decodes_the_models_latents_as_float_images():
    vae, x0 = VAE(), torch.rand(2, 4, 3, 5)
    images = FullVAEDecoder(vae, Base()).decode(x0)
    assert images.dtype == torch.float32 and images.shape == (2, 3, 5, 3)
    assert torch.allclose(images, x0[:, :3].movedim(1, -1)) and vae.seen_output_device == "device"
    assert FullVAEDecoder.label == "full VAE"


def test_video_tae_decodes_x0_as_given():
    vae, x0 = VAE(), torch.rand(1, 4, 2, 2)
    decoder = VideoTAEDecoder(vae, "/models/vae_approx/taehv.safetensors")
    assert decoder.label == "video TAE (taehv.safetensors)"
    assert torch.allclose(decoder.decode(x0), x0[:, :3].movedim(1, -1) / 10)


def test_taesd_maps_its_minus_one_to_one_output_to_images():
    class Module(torch.nn.Module):
        def decode(self, x):
            return x[:, :3] * 4 - 1  # [-1, 1] for x in [0, 0.5], clipped beyond

    x0 = torch.linspace(0, 1, 2 * 4 * 2 * 2).reshape(2, 4, 2, 2)
    decoder = TAESDDecoder(Module(), "/m/taesd_decoder.pth", torch.device("cpu"))
    images = decoder.decode(x0)
    assert decoder.label == "TAESD (taesd_decoder.pth)" and images.shape == (2, 2, 2, 3)
    assert torch.allclose(images, (x0[:, :3] * 2).clamp(0, 1).movedim(1, -1))
