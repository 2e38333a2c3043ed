"""fk_core.video: the frames a reward scores, per-frame scores against the old one-strip scoring, combining,
frame consistency and the per-frame input_size shrink (host-free)."""

from __future__ import annotations

import pytest
import torch

from fk_core import FrameReward, fit_to_reward, frame_consistency, strip
from fk_core.video import frame_indices


class CentreBrightness:
    """Like a learned reward's square centre crop: the mean of the central half of the image's width."""

    name = "centre"

    def __init__(self):
        self.calls = []

    def __call__(self, images):
        self.calls.append(tuple(images.shape))
        w = images.shape[2]
        return images[:, :, w // 4: w - w // 4].mean(dim=(1, 2, 3))


def clips_of(values, size=8):
    """[B, T, size, size, 3] clips whose frame t is the constant values[b][t]."""
    v = torch.tensor(values, dtype=torch.float32)
    return v[:, :, None, None, None].expand(*v.shape, size, size, 3).clone()


def test_frames_spread_over_the_clip():
    assert frame_indices(5, 4) == [0, 1, 3, 4]
    assert frame_indices(81, 4) == [0, 27, 53, 80]
    assert frame_indices(3, 4) == [0, 1, 2]
    assert frame_indices(9, 1) == [4]


def test_per_frame_score_differs_from_the_strip_on_a_clip_whose_frames_differ():
    clips = clips_of([[1.0, 0.0, 0.0, 1.0], [0.0, 0.3, 0.3, 0.0]])
    per_frame = FrameReward(CentreBrightness(), frames=4)(clips)
    on_strip = CentreBrightness()(strip(clips, 4))
    assert per_frame.tolist() == pytest.approx([0.5, 0.15])
    assert on_strip.tolist() == pytest.approx([0.0, 0.3])
    assert per_frame.argmax() != on_strip.argmax()  # the strip prefers the other clip


def test_frames_scored_in_one_batched_call_and_combined():
    inner = CentreBrightness()
    clips = clips_of([[0.2, 0.9, 0.4, 0.6, 0.8], [0.5, 0.5, 0.5, 0.5, 0.5]])
    mean = FrameReward(inner, frames=4)(clips)
    assert inner.calls == [(8, 8, 8, 3)]  # B·K frames, one call
    assert mean.tolist() == pytest.approx([(0.2 + 0.9 + 0.6 + 0.8) / 4, 0.5])  # frames 0, 1, 3, 4
    worst = FrameReward(CentreBrightness(), frames=4, combine="min")(clips)
    assert worst.tolist() == pytest.approx([0.2, 0.5])  # "every frame must be good" prefers the steady clip


def test_images_pass_to_the_image_reward_unchanged():
    images = torch.rand(3, 8, 8, 3)
    assert torch.equal(FrameReward(CentreBrightness())(images), CentreBrightness()(images))


def test_smoothness_prefers_the_clip_without_flicker():
    clips = clips_of([[0.0, 1.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])  # same mean brightness, one flickers
    assert frame_consistency(clips).tolist() == pytest.approx([-1.0, 0.0])
    plain = FrameReward(CentreBrightness(), frames=4)(clips)
    smooth = FrameReward(CentreBrightness(), frames=4, smoothness=0.5)(clips)
    assert plain[0] == pytest.approx(plain[1])
    assert smooth.tolist() == pytest.approx([0.0, 0.5])


def test_input_size_shrinks_each_frame_not_the_strip():
    clips = torch.rand(2, 5, 16, 24, 3)
    assert fit_to_reward(clips, 8).shape == (2, 5, 8, 12, 3)
    assert torch.allclose(fit_to_reward(clips, 8)[:, 2], fit_to_reward(clips[:, 2], 8))


def test_live_view_shows_each_video_particles_middle_frame():
    import base64
    import io

    from fk_trace_fixtures import toy_run
    from PIL import Image

    from fk_core import LiveReporter

    sent = []
    reporter = LiveReporter("7", 2, 4, send=lambda event, data: sent.append(data), clock=lambda: 0.0)
    clips = torch.zeros(2, 5, 8, 8, 3)
    clips[:, 2] = 1.0  # only the middle frame is white

    def on_step(event):
        reporter.potential_step(event, clips)

    toy_run(particles=2, steps=4, every=2, lmbda=1.0, on_potential_step=on_step)
    thumbs = next(data["thumbs"] for data in sent if data.get("thumbs"))
    sprite = Image.open(io.BytesIO(base64.b64decode(thumbs["sprite"].split(",", 1)[1]))).convert("L")
    assert int(torch.tensor(list(sprite.tobytes())).min()) > 200  # both thumbnails: the white middle frame
