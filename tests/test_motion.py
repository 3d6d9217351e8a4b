"""The cost-volume motion cue of the flow head."""

import numpy as np
import pytest
import torch

from synth import background, model_frames, model_input, moving_square
from vinterp import flows
from vinterp.baselines import dis_interpolate, stream_interpolate
from vinterp.config import ModelConfig
from vinterp.flows import FlowCache, dis_colour_flow, dis_flow
from vinterp.motion import (
    corr_channels,
    cost_volume,
    flows_at,
    motion_coefficients,
    prior_channels,
    prior_flows,
    velocity_candidate,
)
from vinterp.networks import build_generator
from vinterp.warp import reverse_flows


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


def test_dis_flows_measure_a_translation_both_ways():
    a = background(96, 128, seed=3)
    b = np.roll(a, shift=(2, 5), axis=(0, 1))  # content moves 5 px right, 2 px down
    x = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).reshape(1, 6, 96, 128)
    flows, coef = prior_flows("dis", x.float() / 127.5 - 1)
    assert flows.shape == (1, 2, 2, 96, 128) and flows.dtype == torch.float32
    per_t = flows_at(coef, torch.tensor([0.5]))
    assert torch.allclose(per_t[0, 0, 0], -0.5 * flows[0, 0])  # linear: F_t0 = -t F01
    inner = flows[0, :, :, 16:-16, 16:-16].flatten(2).median(2).values  # (F01 | F10, dx dy)
    assert torch.allclose(inner, torch.tensor([[5.0, 2.0], [-5.0, -2.0]]), atol=0.25)


def test_untrained_flow_prior_model_is_the_dis_baseline():
    """With `flow_prior="dis"` the zero-initialised model reproduces the `dis` baseline
    (same flows, same linear-motion warps, same time-weighted blend) up to rounding, so
    training starts from the strongest classical baseline instead of the cross-fade."""
    cfg = ModelConfig(netG="unet_32", ngf=8, flow_downscale=4, flow_gain=4, flow_prior="dis")
    G = build_generator(cfg).eval()
    first = next(m for m in G.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 6 + prior_channels("dis", 5) == 6 + 10 + 30
    a, b = moving_square(2, h=64, w=96, size=16, vx=9, x0=20, seed=5)
    x = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).reshape(1, 6, 64, 96)
    with torch.no_grad():
        out = G(x.float() / 127.5 - 1)
    got = ((out.view(5, 3, 64, 96).permute(0, 2, 3, 1) + 1) * 127.5).round().numpy()
    want = np.stack(dis_interpolate(a, b, 5)).astype(np.float64)
    assert np.abs(got - want).max() <= 1.0
    blend = np.stack([(1 - k / 6) * a + k / 6 * b.astype(np.float64) for k in range(1, 6)])
    assert np.abs(got - want).mean() < 0.1 * np.abs(blend - want).mean()  # not the blend


def test_unknown_flow_prior_is_refused():
    with pytest.raises(ValueError, match="unknown flow_prior 'raft'"):
        build_generator(ModelConfig(netG="unet_32", ngf=8, flow_prior="raft"))


def test_untrained_stream_model_is_the_stream_baseline_and_beats_dis_on_acceleration():
    """`flow_prior="stream"`: 4 frames in (I_-1, I_0, I_1, I_2), 5 out; the zero-initialised
    model reproduces the `stream` baseline (quadratic motion from the neighbours), which on an
    accelerating square puts it where it really is and `dis` (linear motion) does not."""
    cfg = ModelConfig(n_in=4, netG="unet_32", ngf=8, flow_downscale=4, flow_gain=4,
                      flow_prior="stream", flow_method="dis_colour", velocity_candidate=True)
    assert cfg.window == 7 and cfg.context == 2
    G = build_generator(cfg).eval()
    # A textured patch at x = 40 + 6t + 3t^2 for frames t = -1, 0, 1, 2 (x = 37, 40, 49, 64):
    # constant acceleration, which linear motion between frames 0 and 1 gets wrong.
    bg, patch = background(128, 192, seed=5), background(128, 192, seed=9)[:40, :40]

    def frame(t: float) -> np.ndarray:
        f, x0 = bg.copy(), int(round(40 + 6 * t + 3 * t * t))
        f[44:84, x0:x0 + 40] = patch
        return f

    ins = [frame(-1), frame(0), frame(1), frame(2)]
    with torch.no_grad():
        got = model_frames(G(model_input(ins)))
    want = np.stack(stream_interpolate(ins[1], ins[2], 5, ins[0], ins[3])).astype(np.float64)
    assert np.abs(got - want).max() <= 1.0
    real = np.stack([frame(k / 6) for k in range(1, 6)]).astype(np.float64)
    lin = np.stack(dis_interpolate(ins[1], ins[2], 5)).astype(np.float64)
    assert np.abs(want - real).mean() < 0.85 * np.abs(lin - real).mean()


def test_stream_model_without_neighbours_is_the_dis_model():
    """A lone pair (neighbours given as copies of the endpoints) is plain 2:5 `dis`."""
    cfg = ModelConfig(n_in=4, netG="unet_32", ngf=8, flow_downscale=4, flow_prior="stream")
    a, b = moving_square(2, h=64, w=96, size=16, vx=9, x0=20, seed=5)
    with torch.no_grad():
        got = model_frames(build_generator(cfg).eval()(model_input([a, a, b, b])))
    want = np.stack(dis_interpolate(a, b, 5)).astype(np.float64)
    assert np.abs(got - want).max() <= 1.0


def test_stream_model_keeps_a_static_pair_unchanged():
    f = background(64, 96, seed=2)
    cfg = ModelConfig(n_in=4, netG="unet_32", ngf=8, flow_downscale=4, flow_prior="stream")
    with torch.no_grad():
        got = model_frames(build_generator(cfg).eval()(model_input([f, f, f, f])))
    assert np.abs(got - f[None].astype(np.float64)).max() <= 1.0


def test_stream_prior_needs_four_inputs():
    with pytest.raises(ValueError, match="needs n_in = 4"):
        build_generator(ModelConfig(netG="unet_32", ngf=8, flow_prior="stream"))


def test_gated_prior_model_cannot_change_a_static_region():
    """With `prior_gate`, even a trained (here: random) backbone leaves regions that the prior
    explains exactly as the prior makes them, and may act where it fails."""
    torch.manual_seed(0)
    cfg = ModelConfig(n_in=4, netG="unet_32", ngf=8, flow_downscale=4, flow_prior="stream",
                      prior_gate=True)
    G = build_generator(cfg).eval()
    for p in G.backbone.last.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)  # stands in for a trained last layer
    bg = background(64, 128, seed=2)
    moving = [bg.copy() for _ in range(4)]
    patch = background(64, 128, seed=8)[:16, :16]
    for k, f in enumerate(moving):
        f[24:40, 80 + 4 * k:96 + 4 * k] = patch  # only the right part moves
    with torch.no_grad():
        got = model_frames(G(model_input(moving)))
    want = np.stack(stream_interpolate(moving[1], moving[2], 5, moving[0], moving[3]))
    diff = np.abs(got - want.astype(np.float64))
    assert diff[:, :, :48].max() <= 1.0  # far from the motion: the prior's result
    assert diff[:, :, 72:].max() > 5.0  # where it moves, the learned part acts


def _red_square(x0: int, h: int = 128, w: int = 192) -> np.ndarray:
    """A red square (luma 96) on a grey texture of about the same luma (119 +- 23)."""
    grey = background(h, w, seed=7).mean(-1, keepdims=True).astype(np.uint8)
    f = np.repeat(grey, 3, -1)
    f[52:76, x0:x0 + 24] = (250, 30, 30)
    return f


def test_colour_flow_sees_motion_that_luma_cannot():
    """DIS on luma barely sees a red square on grey of its brightness; `dis_colour_flow` takes
    the chroma planes' flow there and finds the 12 px."""
    a, b = _red_square(40), _red_square(52)
    # the square's left part, which moves onto background (its right part overlaps itself)
    square = (slice(56, 72), slice(41, 51))
    luma = dis_flow(a, b)[square][..., 0].mean()
    colour = dis_colour_flow(a, b)[square]
    assert luma < 6
    assert abs(colour[..., 0].mean() - 12) < 1.5 and abs(colour[..., 1]).mean() < 1.5


def test_colour_flow_is_luma_flow_where_luma_sees_the_motion():
    bg, patch = background(96, 128, seed=4), background(96, 128, seed=8)[:24, :24]
    a, b = bg.copy(), bg.copy()
    a[30:54, 30:54], b[30:54, 37:61] = patch, patch
    assert np.array_equal(dis_colour_flow(a, b), dis_flow(a, b))


def test_unknown_flow_method_is_refused():
    with pytest.raises(ValueError, match="unknown flow method 'farneback'"):
        FlowCache(method="farneback")


def test_velocity_candidate_replaces_a_wrong_flow_and_keeps_a_right_one():
    """Where the pair's flow misses a patch's 7 px motion and the neighbouring flow says it came
    from 7 px the other way, constant velocity wins there; the still background keeps the
    pair's flow, and the cached inputs are left as they were."""
    bg, patch = background(96, 128, seed=4), background(96, 128, seed=8)[:24, :24]
    a, b = bg.copy(), bg.copy()
    a[30:54, 30:54], b[30:54, 37:61] = patch, patch
    wrong = np.zeros((96, 128, 2), np.float32)  # "nothing moved"
    back = np.zeros_like(wrong)
    back[30:54, 30:54, 0] = -7.0  # the patch came from 7 px to the left
    kept = (wrong.copy(), back.copy())
    got = velocity_candidate(wrong, back, a, b)
    assert np.allclose(got[34:50, 34:50, 0], 7.0)
    assert np.array_equal(got[:, 70:], wrong[:, 70:])
    assert np.array_equal(wrong, kept[0]) and np.array_equal(back, kept[1])
    right = flows.dis_flow(a, b)  # explains b everywhere: the candidate is not even tried
    same = velocity_candidate(right, np.full_like(back, 50.0), a, b)
    assert np.array_equal(same, right) and same is not right  # a copy: the cache keeps its own


def test_flow_reversal_reads_the_motion_where_a_pixel_came_from():
    """Under a zoom F01(x) = a x, pixel q is at q (1 + t a) at time t, so the true flow back
    to frame 0 from p is -p t a / (1 + t a); read in place it is -p t a. Each fixed-point step
    of `reverse_flows` shrinks the error by the factor t a, and a uniform motion, which has
    no edges, is left as it is."""
    h, w, a = 24, 200, 0.2
    xs = torch.arange(w, dtype=torch.float32).expand(h, w)
    f01 = torch.stack([a * xs, torch.zeros(h, w)])  # pixels at x move by a x (right)
    coef = torch.stack([motion_coefficients(f01, None), motion_coefficients(-f01, None)])[None]
    t = torch.tensor([0.5])
    in_place = flows_at(coef, t)  # (1, 2, 1, 2, h, w)
    truth = -xs * 0.5 * a / (1 + 0.5 * a)
    inner = slice(20, 120)  # away from the border, where sampling would clamp
    err0 = (in_place[0, 0, 0, 0, :, inner] - truth[:, inner]).abs().max()
    err2 = (reverse_flows(in_place, 2)[0, 0, 0, 0, :, inner] - truth[:, inner]).abs().max()
    assert err0 > 0.5 and err2 < 0.02 * err0
    uniform = torch.full((1, 2, 5, 2, 8, 12), 3.5)
    assert torch.allclose(reverse_flows(uniform, 2), uniform)


def test_the_classical_flows_need_no_torch():
    """`vinterp.flows` is numpy and OpenCV only (the flow threads and a caller that only
    wants DIS flows do not load torch)."""
    import subprocess
    import sys

    code = "import sys, vinterp.flows; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_colour_flow_skips_the_chroma_flows_where_luma_explains_every_pixel(monkeypatch):
    """A chroma flow can only win where luma's warp error exceeds COLOUR_MARGIN, so where it
    nowhere does, `dis_colour_flow` runs DIS once (luma) and gives luma's flow; the red square
    that luma cannot see still gets the chroma flows."""
    import cv2

    made = []
    real = cv2.DISOpticalFlow_create
    monkeypatch.setattr(cv2, "DISOpticalFlow_create", lambda *a: made.append(1) or real(*a))
    bg = background(96, 128, seed=4)
    shifted = np.roll(bg, 3, axis=1)  # a camera pan: luma explains all but the new column
    got = flows.dis_colour_flow(bg, shifted)
    assert len(made) == 1 and np.array_equal(got, flows.dis_flow(bg, shifted))
    made.clear()
    flows.dis_colour_flow(_red_square(40), _red_square(52))
    assert len(made) == 2  # luma, then one DIS object for both chroma planes
