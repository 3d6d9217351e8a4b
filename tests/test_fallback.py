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
from vinterp.warp import mix_times, prior_frames

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


MIXED = ModelConfig(**{**FALLBACK.__dict__, "flow_reversal": 4, "reversal_mix": 1 / 3})


def test_untrained_model_with_reversal_mix_is_prior_frames_with_it():
    """The shipped model's second motion hypothesis (the flows read in place, mixed in at 1/3):
    the untrained model is `prior_frames` with the same mix, which differs from the reversed
    reading alone where the motion accelerates."""
    ins = [_moved(x) for x in (30, 40, 54, 72)]  # accelerating: the readings differ
    x = model_input(ins)
    G = build_generator(MIXED).eval()
    with torch.no_grad():
        got = G(x)
        pair, coef = G.prior_spec().flows(x, G.flow_cache)
    ends = x[:, 3:9]
    want = prior_frames(ends, pair, coef, T, 4, reversal=4, reversal_mix=1 / 3)
    assert (got - want).abs().max() <= 1e-4
    assert (want - prior_frames(ends, pair, coef, T, 4, reversal=4)).abs().max() > 0.05


def test_reversal_mix_is_the_weighted_mean_of_both_readings_in_the_head():
    """Without a fallback, the untrained head mixing the readings is, at the middle
    in-betweens (1/4 < t < 3/4: the 2nd to 4th of 5), exactly (1 - w) x the reversed head plus
    w x the head reading the same prior in place (reversal 0), and the reversed head elsewhere."""
    cfg = {**MIXED.__dict__, "fallback": "none"}
    ins = [_moved(x) for x in (30, 40, 54, 72)]
    x = model_input(ins)
    outs = []
    for rev, mix in ((4, 0.25), (4, 0.0), (0, 0.0)):
        G = build_generator(ModelConfig(**{**cfg, "flow_reversal": rev, "reversal_mix": mix}))
        with torch.no_grad():
            outs.append(G.eval()(x))
    mixed, reversed_, in_place = (o.view(5, 3, *o.shape[-2:]) for o in outs)
    torch.testing.assert_close(mixed[1:4], 0.75 * reversed_[1:4] + 0.25 * in_place[1:4],
                               atol=1e-5, rtol=0)
    assert torch.equal(mixed[[0, 4]], reversed_[[0, 4]])
    assert (reversed_ - in_place)[1:4].abs().max() > 0.05


def test_reversal_mix_keeps_a_static_pair_and_is_validated():
    f = background(64, 96, seed=2)
    with torch.no_grad():
        got = model_frames(build_generator(MIXED).eval()(model_input([f, f, f, f])))
    assert np.abs(got - f[None].astype(np.float64)).max() <= 1.0
    with pytest.raises(ConfigError, match="reversal_mix"):
        ModelConfig(**{**MIXED.__dict__, "reversal_mix": 1.0})


def test_reversal_mix_trains():
    """The mixed readings are differentiable: a fine-tune with the option gets gradients into
    the backbone's last layer (which starts at zero) from an L1 loss."""
    G = build_generator(MIXED).train()
    x = model_input([_moved(x) for x in (30, 40, 54, 72)])
    target = torch.zeros(1, 15, *x.shape[-2:])
    (G(x) - target).abs().mean().backward()
    assert G.backbone.last.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("m", "want"), [(5, (1, 4)), (1, (0, 1)), (2, (0, 2)), (3, (1, 2)),
                                         (7, (2, 5))])
def test_mix_times_are_the_in_betweens_strictly_inside_a_quarter_of_the_ends(m, want):
    got = mix_times(m)
    assert (got.start, got.stop) == want
    t = [(k + 1) / (m + 1) for k in range(m)]
    assert all((0.25 < tk < 0.75) == (got.start <= k < got.stop) for k, tk in enumerate(t))
