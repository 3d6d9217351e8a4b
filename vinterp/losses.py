"""Training losses that need no downloaded weights.

Frame stacks are `(B, 3k, H, W)` float in [-1, 1]; every 3-channel group is one RGB image and
the losses treat them as a batch of B*k images.

- `GANLoss`: pix2pix's adversarial loss, `vanilla` (BCE with logits) or `lsgan` (MSE).
- `census_loss`: soft ternary census transform distance (UnFlow, Meister et al. 2018; used by
  RIFE and others): compares local 7x7 intensity patterns, so it ignores brightness shifts and
  rewards sharp, correctly placed structure rather than averaged pixels.
- `laplacian_loss`: L1 summed over a Laplacian pyramid (band-pass levels + low-pass residual);
  penalises blur at every scale.
- `reverse_consistency`: time-reversal consistency G(x1, x0) == reverse(G(x0, x1)).
- `flow_distillation`: L1 of the flow head's flows to teacher flows, where the teacher is
  trusted.

`GENERATOR_LOSSES` is the table the training step sums (as FILM's loss registry): one
`LossTerm` per term, weighted by a `TrainConfig.lambda_*` field; a new loss is one entry here
plus its weight field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GAN_MODES = ("vanilla", "lsgan")


def as_images(x: torch.Tensor) -> torch.Tensor:
    """`(B, 3k, H, W)` -> `(B*k, 3, H, W)`, one image per 3-channel group."""
    b, c, h, w = x.shape
    if c % 3:
        raise ValueError(f"expected a stack of RGB frames (3k channels), got {c} channels")
    return x.reshape(b * (c // 3), 3, h, w)


def reverse_frames(x: torch.Tensor) -> torch.Tensor:
    """Reverse the temporal order of the RGB frames stacked in `(B, 3k, H, W)`."""
    b, c, h, w = x.shape
    return x.reshape(b, c // 3, 3, h, w).flip(1).reshape(b, c, h, w)


class GANLoss(nn.Module):
    """pix2pix GANLoss: `loss(logits, target_is_real) -> scalar`.

    vanilla: mean BCE-with-logits against 1 (real) or 0 (fake);
    lsgan:   mean squared error against 1 or 0.
    logits: any shape (e.g. PatchGAN `(B, 1, h, w)`), any float dtype; computed in float32.
    """

    def __init__(self, mode: str = "vanilla", real_label: float = 1.0,
                 fake_label: float = 0.0) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {mode!r}; choose one of {', '.join(GAN_MODES)}")
        self.mode = mode
        self.register_buffer("real_label", torch.tensor(real_label))
        self.register_buffer("fake_label", torch.tensor(fake_label))

    def forward(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        logits = logits.float()
        target = (self.real_label if target_is_real else self.fake_label).expand_as(logits)
        if self.mode == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)


# ---------------------------------------------------------------------------------------------
# Census (soft ternary) loss

_CENSUS_PATCH = 7
_CENSUS_EPS = 0.81  # on the 0..255 grey scale (UnFlow); sets the soft sign's steepness


def _census_transform(gray255: torch.Tensor) -> torch.Tensor:
    """`(N, 1, H, W)` grey in [0, 255] -> `(N, 49, H, W)` soft signs of (neighbour - centre)."""
    p = _CENSUS_PATCH
    eye = torch.eye(p * p, dtype=gray255.dtype, device=gray255.device)
    patches = F.conv2d(gray255, eye.view(p * p, 1, p, p), padding=p // 2)
    d = patches - gray255
    return d / torch.sqrt(_CENSUS_EPS + d * d)


def census_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Hamming distance of 7x7 census transforms, averaged over pixels (border of 3
    pixels excluded, where the patch leaves the image) and frames.

    pred, target: `(B, 3k, H, W)` in [-1, 1]. Returns a float32 scalar in [0, 1): zero iff the
    census signatures agree (identical images, or a brightness offset of each other).
    """
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    grey_w = torch.tensor([0.2989, 0.5870, 0.1140], device=pred.device).view(1, 3, 1, 1)

    def grey255(x: torch.Tensor) -> torch.Tensor:
        return ((as_images(x.float()) + 1) * 127.5 * grey_w).sum(1, keepdim=True)

    t1, t2 = _census_transform(grey255(pred)), _census_transform(grey255(target))
    d = (t1 - t2) ** 2
    dist = (d / (0.1 + d)).mean(1)  # (N, H, W)
    r = _CENSUS_PATCH // 2
    inner = dist[:, r:-r, r:-r] if min(dist.shape[-2:]) > 2 * r else dist
    return inner.mean()


# ---------------------------------------------------------------------------------------------
# Laplacian pyramid L1

def _gauss_kernel(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    k2 = torch.outer(k, k) / 256.0
    return k2.expand(channels, 1, 5, 5).contiguous()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])


def _expand(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Bilinear rather than the classic zero-insertion + blur: it keeps constants constant up to
    # the image border, so a plain brightness offset shows up only in the low-pass level.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """`(N, C, H, W)` -> `levels` band-pass images (finest first) plus the low-pass residual.

    Level i = g_i - expand(g_{i+1}) with g_{i+1} = blur(g_i) subsampled by 2 (5-tap binomial
    blur, replicate padding); exact reconstruction: g_i = level_i + expand(g_{i+1}).
    Stops early when the image gets smaller than 2x2.
    """
    kernel = _gauss_kernel(x.shape[1], x.device, x.dtype)
    pyr, cur = [], x
    for _ in range(levels):
        if min(cur.shape[-2:]) < 2:
            break
        down = _blur(cur, kernel)[..., ::2, ::2]
        pyr.append(cur - _expand(down, cur.shape[-2:]))
        cur = down
    pyr.append(cur)
    return pyr


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Sum over pyramid levels of the mean absolute difference (Laplacian L1, as in
    Bojanowski et al. 2018 / common interpolation training code).

    pred, target: `(B, 3k, H, W)` in [-1, 1]. Returns a float32 scalar >= 0, zero iff equal.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    # The pyramid is linear, so one pyramid of the difference equals the difference of pyramids.
    diff = as_images(pred.float() - target.float())
    return sum(level.abs().mean() for level in laplacian_pyramid(diff, levels))


# ---------------------------------------------------------------------------------------------
# Time reversal

def reverse_consistency(generator: nn.Module, endpoints: torch.Tensor,
                        fake: torch.Tensor) -> torch.Tensor:
    """L1 between `fake = G(x0, x1)` and the time-reversed `G(x1, x0)`.

    endpoints: `(B, 6, H, W)` (I_0 then I_1) in [-1, 1]; fake: `(B, 3m, H, W)`, the generator's
    output for `endpoints` (pass it in so the forward pass is not repeated). Runs G once more on
    the swapped endpoints, with gradients through both passes. Returns a float32 scalar.
    """
    fake_rev = generator(reverse_frames(endpoints))
    return (reverse_frames(fake_rev.float()) - fake.float()).abs().mean()


# ---------------------------------------------------------------------------------------------
# Flow distillation

def flow_distillation(aux: dict[str, torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
    """Mean L1 (pixels) between the flow head's flows and the teacher's, over trusted pixels.

    aux: the flow head's `flow0`, `flow1`, each `(B, m, 2, H, W)` (in-between -> endpoint);
    teacher: `(B, m, 2, 3, H, W)` = [endpoint, (dx, dy, trust)] per in-between
    (`dataset.teacher_flows`). Returns a float32 scalar.
    """
    pred = torch.stack([aux["flow0"], aux["flow1"]], 2).float()  # (B, m, 2, 2, H, W)
    trust = teacher[:, :, :, 2:]
    return ((pred - teacher[:, :, :, :2]).abs() * trust).sum() / (2 * trust.sum()).clamp(min=1)


# ---------------------------------------------------------------------------------------------
# The generator's loss table

@dataclass(frozen=True)
class LossInputs:
    """What a generator loss term may use, for one batch (B windows of m in-betweens)."""

    fake: torch.Tensor  # (B, 3m, H, W) float32, the generated in-betweens in [-1, 1]
    real: torch.Tensor  # (B, 3m, H, W), the real in-betweens
    ends: torch.Tensor  # (B, 6, H, W), the endpoints I_0, I_1
    weight: torch.Tensor  # (B,), per-window weights from the dataset
    fake_clip: torch.Tensor  # (B, 3(m+2), H, W), the clip with generated in-betweens
    generator: nn.Module | None = None  # for terms that run G again (not DDP-wrapped)
    discriminator: nn.Module | None = None  # D with its parameters frozen for the G step
    gan: GANLoss | None = None
    aux: dict[str, torch.Tensor] | None = None  # the flow head's flows (see warp.FlowHead)
    teacher: torch.Tensor | None = None  # (B, m, 2, 3, H, W) teacher flows


def _l1_term(x: LossInputs) -> torch.Tensor:
    return ((x.fake - x.real).abs() * x.weight.view(-1, 1, 1, 1)).mean()


def _mse_term(x: LossInputs) -> torch.Tensor:
    # PSNR is a mean squared error: where the motion is uncertain (a juggled ball) its optimum
    # is the mean of the candidates, which L1's median-seeking gradient pushes away from.
    return ((x.fake - x.real).square() * x.weight.view(-1, 1, 1, 1)).mean()


def _gan_term(x: LossInputs) -> torch.Tensor:
    return x.gan(x.discriminator(x.fake_clip), True)  # fool D


def _census_term(x: LossInputs) -> torch.Tensor:
    return census_loss(x.fake, x.real)


def _laplacian_term(x: LossInputs) -> torch.Tensor:
    return laplacian_loss(x.fake, x.real)


def _flow_term(x: LossInputs) -> torch.Tensor:
    return flow_distillation(x.aux, x.teacher)


def _reverse_term(x: LossInputs) -> torch.Tensor:
    # The same clip played backwards must give the same frames, reversed.
    return reverse_consistency(x.generator, x.ends, x.fake)


@dataclass(frozen=True)
class LossTerm:
    weight: str  # the TrainConfig field holding this term's weight; 0 = not computed
    fn: Callable[[LossInputs], torch.Tensor]  # -> float32 scalar
    # Terms that run a network go under the step's autocast; pixel losses stay in float32.
    autocast: bool = False
    # "flows": needs the flow head's aux outputs and the dataset's teacher flows;
    # "discriminator": needs D (the discriminator is trained only when this term is on).
    needs: str = ""


# Summed in this order by the training step; the log shows each term under its key.
GENERATOR_LOSSES: dict[str, LossTerm] = {
    "l1": LossTerm("lambda_l1", _l1_term),
    "mse": LossTerm("lambda_mse", _mse_term),
    "gan": LossTerm("lambda_gan", _gan_term, autocast=True, needs="discriminator"),
    "census": LossTerm("lambda_census", _census_term),
    "lap": LossTerm("lambda_lap", _laplacian_term),
    "flow": LossTerm("lambda_flow", _flow_term, needs="flows"),
    "reverse": LossTerm("lambda_reverse", _reverse_term, autocast=True),
}


def active_terms(cfg: object) -> dict[str, tuple[float, LossTerm]]:
    """The terms of `GENERATOR_LOSSES` with a non-zero weight in `cfg` (a TrainConfig)."""
    out = {}
    for name, term in GENERATOR_LOSSES.items():
        w = float(getattr(cfg, term.weight))
        if w:
            out[name] = (w, term)
    return out


def needs(cfg: object, what: str) -> bool:
    """Whether an active term of `cfg` needs `what` ("flows" or "discriminator")."""
    return any(term.needs == what for _, term in active_terms(cfg).values())


__all__ = ["GANLoss", "GENERATOR_LOSSES", "LossInputs", "LossTerm", "active_terms",
           "as_images", "census_loss", "flow_distillation", "laplacian_loss", "laplacian_pyramid",
           "needs", "reverse_consistency", "reverse_frames"]
