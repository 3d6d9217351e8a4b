"""The cross-fade fallback: the default model leans to the cross-fade where its classical
motion is wrong, keeps the warp where it is right, and starts as the `fallback` baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synth import background, model_frames, model_input
from vinterp.baselines import fallback_interpolate
from vinterp.config import ConfigError, ModelConfig
from vinterp.motion import motion_coefficients
from vinterp.networks import build_generator
from vinterp.warp import prior_frames

FALLBACK = ModelConfig(n_in=4, netG="unet_32", ngf=8, flow_downscale=4, flow_prior="stream",
                       flow_method="dis_colour", velocity_candidate=True, flow_reversal=2,
                       prior_gate=True, fallback="blend")
T = torch.arange(1, 6, dtype=torch.float32) / 6


def _moved(x0: int, h: int = 64, w: int = 160) -> np.ndarray:
    """A textured 24 px patch at column x0 on another still texture."""
    f = background(h, w, seed=5)
    f[20:44, x0:x0 + 24] = background(h, w, seed=9)[:24, :24]
    return f


def _uniform_motion(dx: float, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`prior_frames`' flows for content moving dx px between the endpoints everywhere."""
    f01 = torch.zeros(2, h, w)
    f01[0] = dx
    pair = torch.stack([f01, -f01])
    coef = torch.stack([motion_coefficients(f01, None), motion_coefficients(-f01, None)])
    return pair[None], coef[None]


def test_untrained_fallback_model_is_the_fallback_baseline():
    """Through the generator with its 4 inputs, a zero-initialised model with the fallback gives
    exactly the `fallback` baseline (to rounding)."""
    ins = [_moved(x) for x in (36, 40, 52, 70)]
    with torch.no_grad():
        got = model_frames(build_generator(FALLBACK).eval()(model_input(ins)))
    want = np.stack(fallback_interpolate(ins[1], ins[2], 5, ins[0], ins[3]))
    assert np.abs(got - want.astype(np.float64)).max() <= 1.0


def test_fallback_keeps_a_static_pair_unchanged():
    f = background(64, 96, seed=2)
    with torch.no_grad():
        got = model_frames(build_generator(FALLBACK).eval()(model_input([f, f, f, f])))
    assert np.abs(got - f[None].astype(np.float64)).max() <= 1.0
    assert all(np.array_equal(g, f) for g in fallback_interpolate(f, f, 5))


def test_fallback_keeps_right_motion_and_cross_fades_wrong_motion():
    """With the true motion (the whole frame shifting 8 px) the output is the warp, the content
    at its interpolated place; given motion where nothing moves, the two warps disagree while
    the endpoints agree, and the output is the cross-fade (here the still frame) rather than
    displaced content."""
    h, w = 64, 160
    bg = background(h, w + 16, seed=3)
    a, b = bg[:, 8:8 + w], bg[:, :w]  # b is a moved 8 px to the right
    inner = (slice(None), slice(8, -8), slice(16, -16))
    x = model_input([a, b])
    out = model_frames(prior_frames(x, *_uniform_motion(8.0, h, w), T))
    warp_only = model_frames(prior_frames(x, *_uniform_motion(8.0, h, w), T, fallback="none"))
    real = np.stack([bg[:, 8 - round(8 * t):8 - round(8 * t) + w] for t in T.tolist()])
    assert np.abs(out - warp_only)[inner].mean() < 0.5
    assert np.abs(out - real)[inner].mean() < 2.0

    still = model_input([a, a])
    out = model_frames(prior_frames(still, *_uniform_motion(8.0, h, w), T))
    torn = model_frames(prior_frames(still, *_uniform_motion(8.0, h, w), T, fallback="none"))
    err, torn_err = np.abs(out - a)[inner].mean(), np.abs(torn - a)[inner].mean()
    assert err < 1.0 and torn_err > 10 * err


def test_fallback_needs_a_flow_prior():
    with pytest.raises(ConfigError, match="fallback"):
        ModelConfig(fallback="blend")
    with pytest.raises(ConfigError, match="fallback"):
        ModelConfig(fallback="wipe", flow_prior="stream", n_in=4)
