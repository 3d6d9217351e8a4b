"""Losses: GAN, census, Laplacian pyramid, time-reversal consistency."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vinterp.config import ModelConfig
from vinterp.losses import (
    GANLoss,
    census_loss,
    laplacian_loss,
    laplacian_pyramid,
    reverse_consistency,
    reverse_frames,
)
from vinterp.networks import build_generator


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def _smooth(*shape: int, seed: int = 0) -> torch.Tensor:
    """Natural-ish image stack: random noise blurred, in [-0.8, 0.8]."""
    x = F.avg_pool2d(_rand(*shape, seed=seed), 5, stride=1, padding=2)
    return x / x.abs().max() * 0.8


# ---------------------------------------------------------------------------------------------
# GAN loss

def test_gan_loss_vanilla_known_values() -> None:
    gan = GANLoss("vanilla")
    logits = torch.tensor([[2.0, -1.0]])
    real = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2  # -log sigmoid(x)
    fake = (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-1.0))) / 2  # -log(1 - sigmoid(x))
    assert gan(logits, True).item() == pytest.approx(real, rel=1e-6)
    assert gan(logits, False).item() == pytest.approx(fake, rel=1e-6)
    assert gan(torch.zeros(2, 1, 30, 30), True).item() == pytest.approx(math.log(2), rel=1e-6)


def test_gan_loss_lsgan_known_values_and_half_precision() -> None:
    gan = GANLoss("lsgan")
    logits = torch.tensor([[2.0, -1.0]])
    assert gan(logits, True).item() == pytest.approx(((2 - 1) ** 2 + (-1 - 1) ** 2) / 2)
    assert gan(logits, False).item() == pytest.approx((2 ** 2 + 1 ** 2) / 2)
    out = gan(logits.half(), True)
    assert out.dtype == torch.float32 and out.item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="gan_mode"):
        GANLoss("wgan")


def test_gan_loss_gradient_pushes_logits_the_right_way() -> None:
    for mode in ("vanilla", "lsgan"):
        logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
        GANLoss(mode)(logits, True).backward()
        assert (logits.grad < 0).all()  # descending raises "real" logits


# ---------------------------------------------------------------------------------------------
# Census

def test_census_zero_for_identical_positive_otherwise() -> None:
    a = _smooth(2, 15, 32, 32)
    assert census_loss(a, a).item() == 0.0
    b = _smooth(2, 15, 32, 32, seed=1)
    assert census_loss(a, b).item() > 0.1
    shifted = torch.roll(a, 2, dims=-1)
    assert 0 < census_loss(a, shifted).item() < census_loss(a, b).item() + 1e-6


def test_census_ignores_brightness_offset_but_not_blur() -> None:
    a = _smooth(1, 3, 32, 32)
    assert census_loss(a, a + 0.1).item() < 1e-5
    blurred = F.avg_pool2d(a, 3, stride=1, padding=1)
    assert census_loss(a, blurred).item() > census_loss(a, a + 0.1).item() + 1e-3


def test_census_treats_each_frame_separately_and_has_gradients() -> None:
    a, b = _smooth(1, 6, 24, 24), _smooth(1, 6, 24, 24, seed=2)
    both = census_loss(a, b)
    per = [census_loss(a[:, i:i + 3], b[:, i:i + 3]) for i in (0, 3)]
    torch.testing.assert_close(both, sum(per) / 2)
    p = b.clone().requires_grad_(True)
    census_loss(p, a).backward()
    assert p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="3k channels"):
        census_loss(a[:, :4], b[:, :4])


# ---------------------------------------------------------------------------------------------
# Laplacian pyramid L1

def test_laplacian_pyramid_reconstructs_the_image() -> None:
    x = _rand(2, 3, 37, 50)
    pyr = laplacian_pyramid(x, 4)
    assert [p.shape[-2:] for p in pyr] == [(37, 50), (19, 25), (10, 13), (5, 7), (3, 4)]
    cur = pyr[-1]
    for band in reversed(pyr[:-1]):
        cur = band + F.interpolate(cur, size=band.shape[-2:], mode="bilinear")
    torch.testing.assert_close(cur, x, atol=1e-5, rtol=0)
    # The low-pass level is a blurred, subsampled image: close to the local mean.
    assert pyr[-1].abs().max() < 0.5 * x.abs().max()


def test_laplacian_loss_values() -> None:
    a = _smooth(1, 15, 32, 32)
    assert laplacian_loss(a, a).item() == 0.0
    b = a.clone()
    b[..., 10:20, 10:20] += 0.3
    lap = laplacian_loss(b, a).item()
    assert lap > 0
    # A constant offset lives in the low-pass level only.
    assert laplacian_loss(a + 0.25, a).item() == pytest.approx(0.25, abs=1e-5)
    # Sum over levels: a pixel-level error shows in several bands, so it costs more than L1.
    assert lap > (b - a).abs().mean().item()
    # Tiny images: the pyramid stops at 1x1 instead of failing.
    assert laplacian_loss(_rand(1, 3, 3, 3), _rand(1, 3, 3, 3, seed=1), levels=5).item() > 0


# ---------------------------------------------------------------------------------------------
# Time reversal

def test_reverse_frames_matches_manual_reversal() -> None:
    x = _rand(2, 15, 4, 4)
    want = torch.cat([x[:, 3 * k: 3 * k + 3] for k in reversed(range(5))], 1)
    assert torch.equal(reverse_frames(x), want)
    assert torch.equal(reverse_frames(reverse_frames(x)), x)


def test_reverse_consistency_zero_for_symmetric_generator_positive_otherwise() -> None:
    ends = _rand(1, 6, 32, 64)
    # The untrained flow head is the time-weighted blend, which is exactly time-symmetric.
    G = build_generator(ModelConfig(netG="unet_32", ngf=4)).eval()
    fake = G(ends)
    assert reverse_consistency(G, ends, fake).item() < 1e-6

    def copy_first(x: torch.Tensor) -> torch.Tensor:  # always outputs I_0: not symmetric
        return x[:, :3].repeat(1, 5, 1, 1)

    val = reverse_consistency(copy_first, ends, copy_first(ends)).item()
    assert val == pytest.approx((ends[:, :3] - ends[:, 3:]).abs().mean().item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Pixel terms of the loss table


def _inputs(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor):
    from vinterp.losses import LossInputs

    b, _, h, w = fake.shape
    return LossInputs(fake=fake, real=real, ends=torch.zeros(b, 6, h, w), weight=weight,
                      fake_clip=torch.zeros(b, 21, h, w))


def test_mse_term_is_the_weighted_mean_squared_error() -> None:
    from vinterp.losses import GENERATOR_LOSSES

    real = torch.zeros(2, 15, 4, 4)
    fake = torch.zeros(2, 15, 4, 4)
    fake[0] = 0.5  # window 0 off by 0.5 everywhere, window 1 exact
    mse = GENERATOR_LOSSES["mse"].fn
    assert mse(_inputs(fake, real, torch.ones(2))).item() == pytest.approx(0.125)
    # Per-window weights scale each window's share, as they do for L1.
    assert mse(_inputs(fake, real, torch.tensor([2.0, 1.0]))).item() == pytest.approx(0.25)


def test_mse_prefers_the_mean_of_two_candidates_where_l1_does_not_care() -> None:
    """Why the term exists: given two equally likely truths, the blend of the candidates halfway
    has a lower squared error than either candidate, while L1 scores them all the same."""
    from vinterp.losses import GENERATOR_LOSSES

    a, b = torch.full((1, 15, 2, 2), -0.5), torch.full((1, 15, 2, 2), 0.5)
    one = torch.ones(1)

    def total(name: str, guess: torch.Tensor) -> float:
        fn = GENERATOR_LOSSES[name].fn
        return (fn(_inputs(guess, a, one)) + fn(_inputs(guess, b, one))).item()

    mid = (a + b) / 2
    assert total("mse", mid) < total("mse", a) - 0.1
    assert total("l1", mid) == pytest.approx(total("l1", a))
