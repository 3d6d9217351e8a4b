"""Generators, discriminator, warping and the flow head."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vinterp import sampling
from vinterp.config import ModelConfig
from vinterp.networks import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
    generator_multiple,
    patchgan_receptive_field,
)
from vinterp.sampling import backward_warp, upsample_bilinear, warp_many
from vinterp.warp import FlowHead, head_channels


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def _blend(ends: torch.Tensor, m: int) -> torch.Tensor:
    a, b = ends[:, :3], ends[:, 3:]
    return torch.cat([(1 - k / (m + 1)) * a + (k / (m + 1)) * b for k in range(1, m + 1)], 1)


# ---------------------------------------------------------------------------------------------
# Shapes, registries, multiples

@pytest.mark.parametrize("netG", sorted(GENERATORS))
@pytest.mark.parametrize("head", ["pixels", "flow"])
def test_every_backbone_and_head_shapes(netG: str, head: str) -> None:
    # Exercise flow_downscale where the padded input stays small.
    ds = 2 if head == "flow" and netG in ("unet_32", "unet_64", "resnet_6blocks") else 1
    cfg = ModelConfig(netG=netG, head=head, ngf=4, flow_downscale=ds)
    G = build_generator(cfg)
    mult = generator_multiple(cfg)
    # ResNets need >= 8 px after downsampling for reflection padding.
    h, w = (mult, 2 * mult) if netG.startswith("unet") else (8 * mult, 12 * mult)
    y = G(_rand(2, 6, h, w))
    assert y.shape == (2, 15, h, w) and y.dtype == torch.float32
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize(("n_in", "n_out", "head"), [
    (2, 5, "pixels"), (2, 1, "pixels"), (2, 3, "pixels"), (4, 2, "pixels"),
    (2, 5, "flow"), (2, 1, "flow"), (2, 3, "flow"),
])
def test_n_to_m_shapes(n_in: int, n_out: int, head: str) -> None:
    cfg = ModelConfig(n_in=n_in, n_out=n_out, netG="unet_32", ngf=4, head=head)
    y = build_generator(cfg)(_rand(1, 3 * n_in, 32, 64))
    assert y.shape == (1, 3 * n_out, 32, 64)
    d = build_discriminator(cfg)(_rand(1, 3 * (n_in + n_out), 64, 64))
    assert d.shape == (1, 1, 6, 6)


def test_flow_head_needs_two_endpoints_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match="n_in = 2"):
        build_generator(ModelConfig(n_in=3, head="flow"))
    with pytest.raises(ValueError, match="unknown netG"):
        build_generator(ModelConfig(netG="unet_512"))
    with pytest.raises(ValueError, match="unknown head"):
        build_generator(ModelConfig(head="optical"))
    with pytest.raises(ValueError, match="unknown norm"):
        build_generator(ModelConfig(norm="group"))
    with pytest.raises(ValueError, match="flow_param"):
        build_generator(ModelConfig(netG="unet_32", ngf=4, flow_param="cubic"))
    with pytest.raises(ValueError, match="unknown netD"):
        build_discriminator(ModelConfig(netD="pixelgan"))


def test_generator_multiple_and_size_errors() -> None:
    assert set(DISCRIMINATORS) == {"patchgan"}
    m = {n: generator_multiple(ModelConfig(netG=n, head="pixels")) for n in GENERATORS}
    assert m == {"unet_32": 32, "unet_64": 64, "unet_128": 128, "unet_256": 256,
                 "resnet_6blocks": 4, "resnet_9blocks": 4}
    # the flow head pads its downscaled input to the backbone's multiple itself
    assert generator_multiple(ModelConfig(netG="unet_32", flow_downscale=4)) == 4
    assert generator_multiple(ModelConfig(netG="resnet_6blocks", flow_downscale=2)) == 2
    assert generator_multiple(ModelConfig(netG="unet_64", head="pixels")) == 64
    G = build_generator(ModelConfig(netG="unet_32", ngf=4, flow_downscale=2)).eval()
    assert G(_rand(1, 6, 64, 96)).shape == (1, 15, 64, 96)  # 96 / 2 = 48: padded inside
    with pytest.raises(ValueError, match="multiples"):
        G(_rand(1, 6, 64, 95))  # not a multiple of flow_downscale
    with pytest.raises(ValueError, match="multiples"):
        G(_rand(1, 6, 63, 64))


def test_unet_padding_by_level_runs_any_size_and_matches_on_multiples() -> None:
    """`unet_padding="levels"`: each level pads an odd size by one pixel, so the U-Net takes
    any size (its multiple is 1) and runs 90x160 as itself instead of as 128x192; on sizes
    that are multiples it is exactly the padded-once U-Net, so trained weights carry over.
    A flow head with it skips its own padding and gives frames of the input's size."""
    once = ModelConfig(netG="unet_32", ngf=4, head="pixels", norm="none", dropout=False)
    levels = dataclasses.replace(once, unet_padding="levels")
    assert generator_multiple(levels) == 1 and generator_multiple(once) == 32
    torch.manual_seed(0)
    a = build_generator(once).eval()
    b = build_generator(levels).eval()
    b.load_state_dict(a.state_dict())
    x = _rand(1, 6, 64, 96)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        odd = b(_rand(1, 6, 45, 77))
    assert odd.shape == (1, 15, 45, 77) and torch.isfinite(odd).all()
    with pytest.raises(ValueError, match="multiples"):
        a(_rand(1, 6, 45, 77))
    flow = ModelConfig(netG="unet_32", ngf=4, flow_downscale=4, unet_padding="levels")
    G = build_generator(flow).eval()
    assert G.backbone_multiple == 1
    with torch.no_grad():
        assert G(_rand(1, 6, 360, 640)).shape == (1, 15, 360, 640)  # 90x160 inside
    with pytest.raises(ValueError, match="unet_padding"):
        ModelConfig(unet_padding="reflect")


def test_instance_norm_and_dropout_placement() -> None:
    cfg = ModelConfig(netG="unet_256", ngf=4, norm="instance", head="pixels")
    G = build_generator(cfg)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in G.modules())
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in G.modules()) > 0
    # pix2pix: dropout only in the num_downs - 5 inner 8*ngf decoder blocks.
    assert sum(isinstance(m, nn.Dropout) for m in G.modules()) == 3
    for name, n_drop in [("unet_32", 0), ("unet_64", 1), ("unet_128", 2)]:
        g = build_generator(dataclasses.replace(cfg, netG=name))
        assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == n_drop
    g = build_generator(dataclasses.replace(cfg, dropout=False))
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())


def test_init_is_pix2pix_normal() -> None:
    G = build_generator(ModelConfig(head="pixels", netG="unet_64", ngf=16))
    convs = [m.weight for m in G.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    w = torch.cat([c.flatten() for c in convs])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    bn = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.01 and 0.01 < bn.std().item() < 0.03


# ---------------------------------------------------------------------------------------------
# Parameter counts, derived by hand from the reference layer list

def _conv(cin: int, cout: int, bias: bool = False, k: int = 4) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _bn(c: int) -> int:
    return 2 * c  # affine weight + bias (running stats are buffers)


def _unet256_reference_count(input_nc: int, output_nc: int, ngf: int = 64) -> int:
    """junyanz UnetGenerator(input_nc, output_nc, 8, ngf, BatchNorm2d): convs before a
    BatchNorm have no bias; the outermost down conv has none either; the outermost up conv has
    one. Each block: down conv(outer -> inner) [+ BN(inner) unless innermost/outermost],
    up convT(2*inner -> outer) (innermost: inner -> outer) [+ BN(outer) unless outermost]."""
    g = ngf
    outermost = _conv(input_nc, g) + _conv(2 * g, output_nc, bias=True)
    b2 = _conv(g, 2 * g) + _bn(2 * g) + _conv(4 * g, g) + _bn(g)
    b3 = _conv(2 * g, 4 * g) + _bn(4 * g) + _conv(8 * g, 2 * g) + _bn(2 * g)
    b4 = _conv(4 * g, 8 * g) + _bn(8 * g) + _conv(16 * g, 4 * g) + _bn(4 * g)
    b5_7 = 3 * (_conv(8 * g, 8 * g) + _bn(8 * g) + _conv(16 * g, 8 * g) + _bn(8 * g))
    innermost = _conv(8 * g, 8 * g) + _conv(8 * g, 8 * g) + _bn(8 * g)
    return outermost + b2 + b3 + b4 + b5_7 + innermost


def test_unet256_parameter_count_matches_reference_derivation() -> None:
    # 6 -> 15 channels, written out layer by layer (ngf = 64):
    expected = (
        6 * 64 * 16 + (128 * 15 * 16 + 15)                        # outermost down, up (+bias)
        + 64 * 128 * 16 + 2 * 128 + 256 * 64 * 16 + 2 * 64         # 64 <-> 128
        + 128 * 256 * 16 + 2 * 256 + 512 * 128 * 16 + 2 * 128      # 128 <-> 256
        + 256 * 512 * 16 + 2 * 512 + 1024 * 256 * 16 + 2 * 256    # 256 <-> 512
        + 3 * (512 * 512 * 16 + 2 * 512 + 1024 * 512 * 16 + 2 * 512)  # three dropout blocks
        + 512 * 512 * 16 + 512 * 512 * 16 + 2 * 512               # innermost
    )
    assert expected == _unet256_reference_count(6, 15)
    G = build_generator(ModelConfig(netG="unet_256", ngf=64, norm="batch", head="pixels"))
    assert count_parameters(G) == expected
    # The reference prints "[Network G] Total number of parameters : 54.414 M" for 3 -> 3.
    g33 = build_generator(ModelConfig(n_in=1, n_out=1, head="pixels"))
    assert count_parameters(g33) == _unet256_reference_count(3, 3)
    assert round(_unet256_reference_count(3, 3) / 1e6, 3) == 54.414


def test_patchgan_parameter_count_matches_reference_derivation() -> None:
    def basic_d(in_nc: int) -> int:  # NLayerDiscriminator(in_nc, 64, 3, BatchNorm2d)
        return (_conv(in_nc, 64, bias=True) + _conv(64, 128) + _bn(128) + _conv(128, 256)
                + _bn(256) + _conv(256, 512) + _bn(512) + _conv(512, 1, bias=True))
    # Reference pix2pix (6-channel pairs) prints 2.769 M.
    assert count_parameters(build_discriminator(ModelConfig(n_in=1, n_out=1))) == basic_d(6)
    assert round(basic_d(6) / 1e6, 3) == 2.769
    assert count_parameters(build_discriminator(ModelConfig())) == basic_d(21)


# ---------------------------------------------------------------------------------------------
# Discriminator

def test_patchgan_receptive_field_is_70_for_three_layers() -> None:
    assert patchgan_receptive_field(3) == 70
    D = build_discriminator(ModelConfig()).eval()  # eval: BN must not mix pixels via stats
    x = _rand(1, 21, 256, 256).requires_grad_(True)
    out = D(x)
    assert out.shape == (1, 1, 30, 30)
    out[0, 0, 15, 15].backward()
    infl = x.grad.abs().sum((0, 1)) > 0
    rows = infl.any(1).nonzero().flatten()
    cols = infl.any(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70 and len(rows) == 70
    assert cols.max() - cols.min() + 1 == 70 and len(cols) == 70
    assert infl.sum() == 70 * 70


@pytest.mark.parametrize("n_layers", [1, 2, 4])
def test_patchgan_layers_configurable(n_layers: int) -> None:
    D = build_discriminator(ModelConfig(n_layers_D=n_layers, ndf=8))
    out = D(_rand(2, 21, 64, 64))
    assert out.shape == (2, 1, 64 // 2 ** n_layers - 2, 64 // 2 ** n_layers - 2)
    assert patchgan_receptive_field(n_layers) == {1: 16, 2: 34, 4: 142}[n_layers]


# ---------------------------------------------------------------------------------------------
# Warping

@pytest.mark.parametrize(("h", "w"), [(37, 53), (64, 64), (360, 640)])
def test_backward_warp_integer_translation_is_exact(h: int, w: int) -> None:
    img = _rand(2, 3, h, w)
    flow = torch.zeros(2, 2, h, w)
    flow[:, 0], flow[:, 1] = 3, -2  # sample 3 px to the right and 2 px up
    out = backward_warp(img, flow)
    assert torch.equal(out[:, :, 2:, : w - 3], img[:, :, : h - 2, 3:])
    # Border padding: rows sampled above the image repeat row 0 (shifted).
    assert torch.equal(out[:, :, 0, : w - 3], img[:, :, 0, 3:])
    assert torch.equal(backward_warp(img, torch.zeros_like(flow)), img)


def test_backward_warp_half_pixel_is_bilinear_and_differentiable() -> None:
    img = _rand(1, 3, 16, 16)
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 0.5
    flow.requires_grad_(True)
    out = backward_warp(img, flow)
    mid = (img[..., :, :-1] + img[..., :, 1:]) / 2
    torch.testing.assert_close(out[..., :, :-1], mid, atol=1e-6, rtol=0)
    out.sum().backward()
    assert flow.grad is not None and flow.grad[:, 0].abs().sum() > 0


def test_backward_warp_gives_the_same_values_in_training_and_inference() -> None:
    """Inference on the CPU warps with OpenCV's remap (no autograd there); training keeps
    grid_sample. Both must sample the same points: equal to float rounding."""
    img = _rand(2, 3, 37, 53)
    flow = torch.randn(2, 2, 37, 53) * 6
    with torch.no_grad():
        fast = backward_warp(img, flow)
    trained = backward_warp(img, flow.clone().requires_grad_(True))
    assert trained.requires_grad
    torch.testing.assert_close(fast, trained.detach(), atol=2e-6, rtol=0)
    assert (fast - trained.detach()).abs().max() < 2e-6


def test_remap_is_used_only_where_it_is_exact(monkeypatch) -> None:
    """The OpenCV path is taken (without gradients, float32, on the CPU) only where this
    OpenCV interpolates at float positions; otherwise grid_sample gives the same values."""
    img = _rand(1, 3, 20, 30)
    flow = torch.zeros(1, 2, 20, 30)
    flow[:, 0] = 0.3
    with torch.no_grad():
        if sampling._remap_is_exact():  # OpenCV 5: channels-last memory underneath
            assert backward_warp(img, flow).stride()[1] == 1
        monkeypatch.setattr(sampling, "_remap_is_exact", lambda: False)
        slow = backward_warp(img, flow)
    assert slow.stride()[-1] == 1  # grid_sample's NCHW
    torch.testing.assert_close(slow[..., :-1], 0.7 * img[..., :-1] + 0.3 * img[..., 1:],
                               atol=1e-5, rtol=0)


def test_warp_many_of_a_half_precision_image_samples_like_float32() -> None:
    """A float16 image with float32 flows is sampled in float32 (either engine) and returned
    in float16."""
    img = _rand(1, 3, 20, 30)
    flows = torch.randn(1, 2, 2, 20, 30) * 3
    with torch.no_grad():
        half = warp_many(img.half(), flows)
        full = warp_many(img, flows)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, atol=2e-3, rtol=0)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_upsample_bilinear_matches_torch_and_keeps_gradients(factor: int) -> None:
    """The flow head's field upsampling (lerps of shifted copies) gives torch's bilinear
    upsampling (align_corners=False, edges repeated) to float rounding, at every factor, and a
    tensor that needs gradients still gets them."""
    x = torch.randn(2, 7, 9, 13) * 20
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    with torch.no_grad():
        got = upsample_bilinear(x, factor)
    assert got.shape == (2, 7, 9 * factor, 13 * factor) and got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)  # ~1e-6 relative: rounding
    x.requires_grad_(True)
    upsample_bilinear(x, factor).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, torch.full_like(x, factor**2))


# ---------------------------------------------------------------------------------------------
# Flow head

@pytest.mark.parametrize("param", ["shared", "free"])
@pytest.mark.parametrize("downscale", [1, 2])
def test_flow_head_starts_at_the_linear_blend(param: str, downscale: int) -> None:
    cfg = ModelConfig(netG="unet_32", ngf=8, flow_downscale=downscale, flow_param=param)
    G = build_generator(cfg)
    x = _rand(2, 6, 64, 128)
    for mode in (G.train, G.eval):
        mode()
        frames, aux = G.forward_with_aux(x)
        torch.testing.assert_close(frames, _blend(x, 5), atol=1e-5, rtol=0)
        assert aux["flow0"].abs().max() == 0 and aux["residual"].abs().max() == 0
    assert aux["mask"].shape == (2, 5, 1, 64, 128)


class _ConstantBackbone(nn.Module):
    """Stands in for the U-Net: outputs fixed per-channel values at the backbone resolution."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.values = values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.values.view(1, -1, 1, 1).expand(b, -1, h, w).clone()


@pytest.mark.parametrize("downscale", [1, 2])
def test_flow_head_reproduces_linear_motion_given_the_true_flow(downscale: int) -> None:
    """A texture moving by V = (6, -12) px over the window: with V predicted (at backbone
    scale) and zero corrections, every in-between is the texture moved by t V, exactly."""
    m, (vx, vy) = 5, (6, -12)  # t V is an integer shift for t = k / 6
    h, w, pad = 48, 64, 16
    tex = _rand(1, 3, h + 2 * pad, w + 2 * pad, seed=3)

    def frame(t: float) -> torch.Tensor:  # content moved by t V: I_t(p) = T(p - t V)
        sx, sy = round(t * vx), round(t * vy)
        return tex[:, :, pad - sy: pad - sy + h, pad - sx: pad - sx + w]

    values = torch.zeros(head_channels(m, "shared"))
    values[0], values[1] = vx / downscale, vy / downscale
    head = FlowHead(_ConstantBackbone(values), m, downscale, "shared")
    x = torch.cat([frame(0), frame(1)], 1)
    out, aux = head.forward_with_aux(x)
    r = 12  # interior: no warp reaches the border
    for k in range(1, m + 1):
        want = frame(k / (m + 1))
        got = out[:, 3 * (k - 1): 3 * k]
        torch.testing.assert_close(got[..., r:-r, r:-r], want[..., r:-r, r:-r], atol=1e-6, rtol=0)
        # -t V and (1 - t) V are integers only to float rounding (t = k / 6 in float32)
        for warped in (aux["warped0"], aux["warped1"]):
            torch.testing.assert_close(warped[:, k - 1, :, r:-r, r:-r], want[..., r:-r, r:-r],
                                       atol=1e-6, rtol=0)
    # And it is genuinely different from the blend the untrained model gives.
    assert (out - _blend(x, m))[..., r:-r, r:-r].abs().mean() > 0.1


def test_flow_head_trains_through_the_warp() -> None:
    torch.manual_seed(0)
    G = build_generator(ModelConfig(netG="unet_32", ngf=8, dropout=False))
    x, target = _rand(1, 6, 32, 32), _rand(1, 15, 32, 32, seed=1)
    loss = (G(x) - target).abs().mean()
    loss.backward()
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and G.backbone.last.weight.grad.abs().sum() > 0
