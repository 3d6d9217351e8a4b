"""The cost-volume motion cue of the flow head."""

import numpy as np
import torch

from synth import background
from vinterp.config import ModelConfig
from vinterp.motion import corr_channels, cost_volume
from vinterp.networks import build_generator


def _img(h=64, w=96, seed=1):
    return torch.from_numpy(background(h, w, seed)).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_cost_volume_finds_a_translation():
    a = _img()
    b = torch.roll(a, shifts=(1, 3), dims=(2, 3))  # content moves 3 px right, 1 px down
    costs, v = cost_volume(a, b, radius=4)
    assert costs.shape == (1, 81, 64, 96) and corr_channels(4) == 83
    inner = v[0, :, 8:-8, 8:-8].flatten(1)
    assert torch.allclose(inner.median(1).values, torch.tensor([3.0, 1.0]), atol=0.25)
    # the true displacement matches better than none (dy-major: index (dy+r)*(2r+1) + dx+r)
    c = costs[0, :, 8:-8, 8:-8]
    assert (c[(1 + 4) * 9 + (3 + 4)] > c[4 * 9 + 4]).float().mean() > 0.75  # smooth texture


def test_flow_head_with_cost_volume_starts_as_the_blend():
    cfg = ModelConfig(netG="unet_32", ngf=8, flow_downscale=2, flow_gain=8, corr_radius=3)
    G = build_generator(cfg).eval()
    first = next(m for m in G.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 6 + 49 + 2  # endpoints, costs, soft-argmax motion
    a = _img(64, 128, seed=2)
    b = torch.roll(a, shifts=(0, 4), dims=(2, 3))
    with torch.no_grad():
        frames = G(torch.cat([a, b], 1))
    assert frames.shape == (1, 15, 64, 128)
    t = torch.arange(1, 6).view(5, 1, 1, 1) / 6
    blend = ((1 - t) * a + t * b).reshape(1, 15, 64, 128)
    assert torch.allclose(frames, blend, atol=1e-5)
    assert np.isfinite(frames.numpy()).all()
