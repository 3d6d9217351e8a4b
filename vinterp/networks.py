"""Generators and discriminators of the n:m pix2pix.

Backbones follow the reference pix2pix/CycleGAN implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, `models/networks.py`) layer for layer, so with the
pixels head and the reference settings the parameter count is the reference one:

- U-Net `unet_N` (N in 32, 64, 128, 256): log2(N) stride-2 4x4 convolutions down, mirrored
  transposed convolutions up, skip connections by concatenation, dropout(0.5) in the
  `log2(N) - 5` inner 8*ngf decoder blocks.
- ResNet `resnet_{6,9}blocks`: 7x7 conv, two stride-2 convs, residual blocks, two transposed
  convs, 7x7 conv.
- PatchGAN `patchgan`: `n_layers_D` stride-2 4x4 convs then two stride-1 ones; 70x70 receptive
  field for n_layers_D = 3. It sees the whole window in temporal order
  (3 * `ModelConfig.window` channels: 21 for 2:5).

Heads (`ModelConfig.head`):
- `pixels`: the backbone writes the 3*n_out output channels directly, through tanh.
- `flow`: the backbone outputs flows, masks and residuals; `warp.FlowHead` warps the
  endpoints. Needs n_in == 2 (4 with the "stream" flow prior: the neighbouring inputs too).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vinterp.config import ModelConfig
from vinterp.motion import PRIOR_INPUTS, corr_channels, prior_channels
from vinterp.sampling import backward_warp
from vinterp.warp import FlowHead, head_channels

UNET_DEPTHS = {"unet_32": 5, "unet_64": 6, "unet_128": 7, "unet_256": 8}
RESNET_BLOCKS = {"resnet_6blocks": 6, "resnet_9blocks": 9}
NORMS = ("batch", "instance", "none")  # the names norm_layer builds
# How a U-Net takes sizes that are not a multiple of 2**depth: "input", padded once to the
# next multiple (replicate; 640x360 at 1/4 is 90x160, run as 128x192); "levels", each level
# pads an odd size by one pixel and cuts it off again on the way up (90x160 runs as itself:
# 32.6 -> 22.2 ms per pair on one thread). Sizes that are multiples are identical both ways.
UNET_PADDINGS = ("input", "levels")


# ---------------------------------------------------------------------------------------------
# Normalisation and initialisation (as in pix2pix)

def norm_layer(name: str) -> Callable[[int], nn.Module]:
    """`batch` (affine, running stats), `instance` (no affine, no running stats), `none`."""
    if name == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if name == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if name == "none":
        return lambda _c: nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose batch, instance or none")


def _conv_bias(norm: str) -> bool:
    # A conv followed by BatchNorm needs no bias (BN's shift replaces it); pix2pix keeps it
    # for instance norm (affine=False) and we keep it without normalisation.
    return norm != "batch"


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """pix2pix 'normal' init: conv/linear weights N(0, gain), biases 0, norm weights N(1, gain)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def _check_size(x: torch.Tensor, multiple: int, what: str) -> None:
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{what} input is {h}x{w}; height and width must be multiples of "
                         f"{multiple} (pad the frames, see generator_multiple)")


# ---------------------------------------------------------------------------------------------
# U-Net

class UnetSkipBlock(nn.Module):
    """pix2pix UnetSkipConnectionBlock: `x -> cat(x, up(sub(down(x))))` (outermost: no cat).

    `last_act` is the outermost block's final activation (tanh for pixels, identity for flow).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, norm: str = "batch", dropout: bool = False,
                 last_act: nn.Module | None = None, pad_odd: bool = False) -> None:
        super().__init__()
        self.outermost, self.pad_odd = outermost, pad_odd
        nl, bias = norm_layer(norm), _conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, last_act or nn.Identity()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, nl(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1,
                                        bias=bias)
            layers = [downrelu, downconv, nl(inner_nc), submodule, uprelu, upconv, nl(outer_nc)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.pad_odd and (h % 2 or w % 2):  # the stride-2 conv wants an even size
            y = self.model(F.pad(x, (0, w % 2, 0, h % 2), mode="replicate"))[..., :h, :w]
        else:
            y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net with `num_downs` downsamplings; `(B, in, H, W) -> (B, out, H, W)`,
    H and W multiples of 2**num_downs, or any size with `pad_levels` (each level pads an odd
    size by one replicated pixel and cuts it off again: `UNET_PADDINGS`). The last layer is
    `self.last` (for custom init)."""

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64,
                 norm: str = "batch", dropout: bool = False, tanh: bool = True,
                 pad_levels: bool = False) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"the U-Net needs at least 5 downsamplings, got {num_downs}")
        block_ = functools.partial(UnetSkipBlock, norm=norm, pad_odd=pad_levels)
        block = block_(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = block_(ngf * 8, ngf * 8, submodule=block, dropout=dropout)
        block = block_(ngf * 4, ngf * 8, submodule=block)
        block = block_(ngf * 2, ngf * 4, submodule=block)
        block = block_(ngf, ngf * 2, submodule=block)
        self.model = block_(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                            last_act=nn.Tanh() if tanh else None)
        self.multiple = 1 if pad_levels else 2 ** num_downs

    @property
    def last(self) -> nn.Module:
        return self.model.model[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.multiple, "U-Net")
        return self.model(x)


# ---------------------------------------------------------------------------------------------
# ResNet (CycleGAN)

class ResnetBlock(nn.Module):
    """`x + conv-norm-relu-(dropout)-conv-norm(x)` with reflection padding."""

    def __init__(self, dim: int, norm: str, dropout: bool) -> None:
        super().__init__()
        nl, bias = norm_layer(norm), _conv_bias(norm)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), nl(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), nl(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator; `(B, in, H, W) -> (B, out, H, W)`, H, W multiples of 4."""

    def __init__(self, input_nc: int, output_nc: int, n_blocks: int, ngf: int = 64,
                 norm: str = "batch", dropout: bool = False, tanh: bool = True) -> None:
        super().__init__()
        nl, bias = norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3),
                                   nn.Conv2d(input_nc, ngf, 7, bias=bias), nl(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       nl(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       nl(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7)]
        if tanh:
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)
        self.multiple = 4
        self._last_index = len(layers) - (2 if tanh else 1)

    @property
    def last(self) -> nn.Module:
        return self.model[self._last_index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.multiple, "ResNet generator")
        return self.model(x)


# ---------------------------------------------------------------------------------------------
# PatchGAN

class NLayerDiscriminator(nn.Module):
    """pix2pix PatchGAN; `(B, in, H, W) -> (B, 1, H/2**n_layers - 2, W/2**n_layers - 2)`
    logits (for H, W multiples of 2**n_layers), each judging one receptive field patch."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3,
                 norm: str = "batch") -> None:
        super().__init__()
        nl, bias = norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                       nl(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
                   nl(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def patchgan_receptive_field(n_layers: int) -> int:
    """Receptive field (pixels) of one PatchGAN logit: 70 for n_layers = 3."""
    rf = 4  # final 4x4 stride-1 conv
    rf = rf + 3  # stride-1 4x4 conv before it
    for _ in range(n_layers):
        rf = (rf - 1) * 2 + 4  # stride-2 4x4 conv
    return rf


# ---------------------------------------------------------------------------------------------
# Registries and builders

BackboneBuilder = Callable[[int, int, ModelConfig, bool], nn.Module]


def _unet(depth: int) -> BackboneBuilder:
    def build(in_nc: int, out_nc: int, cfg: ModelConfig, tanh: bool) -> nn.Module:
        return UnetGenerator(in_nc, out_nc, depth, cfg.ngf, cfg.norm, cfg.dropout, tanh,
                             pad_levels=cfg.unet_padding == "levels")
    return build


def _resnet(blocks: int) -> BackboneBuilder:
    def build(in_nc: int, out_nc: int, cfg: ModelConfig, tanh: bool) -> nn.Module:
        return ResnetGenerator(in_nc, out_nc, blocks, cfg.ngf, cfg.norm, cfg.dropout, tanh)
    return build


# name -> builder(in_channels, out_channels, cfg, tanh_output) -> backbone with `.last`
GENERATORS: dict[str, BackboneBuilder] = {
    **{name: _unet(d) for name, d in UNET_DEPTHS.items()},
    **{name: _resnet(b) for name, b in RESNET_BLOCKS.items()},
}

# name -> builder(cfg) -> discriminator over the whole clip
DISCRIMINATORS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "patchgan": lambda cfg: NLayerDiscriminator(3 * cfg.window, cfg.ndf, cfg.n_layers_D,
                                                cfg.norm),
}

HEADS = ("flow", "pixels")


def _check(cfg: ModelConfig) -> None:
    if cfg.netG not in GENERATORS:
        raise ValueError(f"unknown netG {cfg.netG!r}; choose one of {', '.join(GENERATORS)}")
    if cfg.head not in HEADS:
        raise ValueError(f"unknown head {cfg.head!r}; choose one of {', '.join(HEADS)}")
    if cfg.n_in < 1 or cfg.n_out < 1:
        raise ValueError(f"n_in and n_out must be >= 1, got {cfg.n_in}:{cfg.n_out}")
    if cfg.head == "flow" and cfg.n_in != PRIOR_INPUTS.get(cfg.flow_prior, 2):
        need = PRIOR_INPUTS.get(cfg.flow_prior, 2)
        raise ValueError(f"the flow head with flow_prior {cfg.flow_prior!r} needs n_in = {need}, "
                         f"got {cfg.n_in} (use head=pixels for other n_in)")
    if cfg.flow_downscale < 1:
        raise ValueError(f"flow_downscale must be >= 1, got {cfg.flow_downscale}")
    norm_layer(cfg.norm)


def generator_multiple(cfg: ModelConfig) -> int:
    """H and W of generator inputs must be multiples of this: for the pixels head
    2**downsamplings for U-Nets and 4 for ResNets; for the flow head `flow_downscale` (it pads
    the downscaled endpoints to the backbone's multiple internally)."""
    _check(cfg)
    # The flow head pads its downscaled input to the backbone's multiple itself.
    return cfg.flow_downscale if cfg.head == "flow" else _backbone_multiple(cfg)


def _backbone_multiple(cfg: ModelConfig) -> int:
    if cfg.netG in UNET_DEPTHS:
        return 1 if cfg.unet_padding == "levels" else 2 ** UNET_DEPTHS[cfg.netG]
    return 4


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The generator for `cfg`, initialised like pix2pix.

    forward(x: `(B, 3*n_in, H, W)` float32 in [-1, 1]) -> `(B, 3*n_out, H, W)` float32 in
    [-1, 1]; H, W multiples of `generator_multiple(cfg)`. The flow head also offers
    `forward_with_aux(x) -> (frames, aux)` (see `warp.FlowHead`). Its last layer starts at
    zero, so the untrained model outputs exactly the time-weighted linear blend.
    """
    _check(cfg)
    build = GENERATORS[cfg.netG]
    if cfg.head == "pixels":
        return init_weights(build(3 * cfg.n_in, 3 * cfg.n_out, cfg, True))
    param = cfg.flow_param
    in_nc = 6 + corr_channels(cfg.corr_radius) + prior_channels(cfg.flow_prior, cfg.n_out)
    out_nc = head_channels(cfg.n_out, param, cfg.fallback)
    backbone = init_weights(build(in_nc, out_nc, cfg, False))
    nn.init.zeros_(backbone.last.weight)
    nn.init.zeros_(backbone.last.bias)
    return FlowHead(backbone, cfg.n_out, cfg.flow_downscale, param, cfg.flow_gain,
                    cfg.corr_radius, backbone_multiple=_backbone_multiple(cfg),
                    prior=cfg.flow_prior, gated=cfg.prior_gate, fallback=cfg.fallback,
                    flow_method=cfg.flow_method, velocity=cfg.velocity_candidate,
                    reversal=cfg.flow_reversal, backward=cfg.backward_flows,
                    reversal_mix=cfg.reversal_mix)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    """forward(clip: `(B, 3*window, H, W)` float32 in [-1, 1], frames in temporal order)
    -> logits `(B, 1, h, w)`."""
    if cfg.netD not in DISCRIMINATORS:
        raise ValueError(f"unknown netD {cfg.netD!r}; choose one of {', '.join(DISCRIMINATORS)}")
    norm_layer(cfg.norm)
    return init_weights(DISCRIMINATORS[cfg.netD](cfg))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = [
    "DISCRIMINATORS", "GENERATORS", "FlowHead", "NLayerDiscriminator", "ResnetGenerator",
    "UnetGenerator", "backward_warp", "build_discriminator", "build_generator",
    "count_parameters", "generator_multiple", "init_weights", "patchgan_receptive_field",
]
