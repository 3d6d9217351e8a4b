"""Resampling on the flow head's path: backward warps (`warp_many`, `backward_warp`, on
`pixel_coords` and `sample_at`) and the integer-factor bilinear upsampling of its
low-resolution fields (`upsample_bilinear`).

Plain tensor code (with OpenCV's remap as a CPU engine), no knowledge of models;
`vinterp.warp` builds the flow head from it.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


def _dyadic_size(n: int) -> int:
    """Smallest 2**p + 1 >= n."""
    return 2 ** max(0, (n - 2).bit_length()) + 1


def pad_source(img: torch.Tensor) -> torch.Tensor:
    """Replicate the right/bottom edge up to `2**p + 1` pixels (see `sample_at`)."""
    h, w = img.shape[-2:]
    hp, wp = _dyadic_size(h), _dyadic_size(w)
    if (hp, wp) == (h, w):
        return img
    return F.pad(img, (0, wp - w, 0, hp - h), mode="replicate")


def pixel_coords(flows: torch.Tensor, scale: float = 1.0,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Flows `(..., 2, H, W)` (pixels (dx, dy), times `scale`) -> the positions they sample,
    `(..., 2, H, W)` pixels `(x + scale * dx, y + scale * dy)`; written into `out` (a view of
    that shape, e.g. part of a larger buffer) when given."""
    h, w = flows.shape[-2:]
    dev, dt = flows.device, flows.dtype
    gx = torch.arange(w, device=dev, dtype=dt)
    gy = torch.arange(h, device=dev, dtype=dt)[:, None]
    out = flows.new_empty(flows.shape) if out is None else out
    if torch.is_grad_enabled() and flows.requires_grad:  # out= does not take gradients
        out[..., 0, :, :] = torch.add(gx, flows[..., 0, :, :], alpha=scale)
        out[..., 1, :, :] = torch.add(gy, flows[..., 1, :, :], alpha=scale)
    else:
        torch.add(gx, flows[..., 0, :, :], alpha=scale, out=out[..., 0, :, :])
        torch.add(gy, flows[..., 1, :, :], alpha=scale, out=out[..., 1, :, :])
    return out


def sample_at(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of each image at k sets of positions, borders replicated.

    img: `(N, C, H, W)` float; coords: `(N, k, 2, H, W)` pixel positions (x, y), as
    `pixel_coords` makes them. Returns `(N, k, C, H, W)` in the promoted dtype (a view,
    not necessarily contiguous).

    Without gradients on the CPU in float32 this is OpenCV's `remap`, where it interpolates
    in float (`_remap_is_exact`): the same values as `grid_sample` to float rounding, at less
    than half its CPU time (16 warps of 640x360 RGB: ~27 against ~60 ms on one thread).
    Otherwise `grid_sample`, made exact for integer positions: it maps normalized `g` to
    `(g + 1) / 2 * (S - 1)`, which float32 only gets exactly right for every integer position
    when `S - 1` is a power of two, so the image is border-replicated on the right/bottom up
    to size `2**p + 1` (`pad_source`; border padding behaves exactly as on the original
    image, the added pixels repeat the edge). The k position sets stack along the height.
    """
    n, c, h, w = img.shape
    k = coords.shape[1]
    if coords.shape != (n, k, 2, h, w):
        raise ValueError(f"coords must be {(n, k, 2, h, w)}, got {tuple(coords.shape)}")
    dtype = torch.promote_types(img.dtype, coords.dtype)
    if _remap_applies(img, coords, dtype):
        return _remap(img.to(dtype), coords.to(dtype))
    src = pad_source(img.to(dtype))
    grid = _normalized_grid(coords.to(dtype), *src.shape[-2:]).view(n, k * h, w, 2)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, c, k, h, w).transpose(1, 2)


def _normalized_grid(coords: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """Pixel positions `(..., 2, H, W)` -> contiguous grid `(..., H, W, 2)` for
    `grid_sample(align_corners=True)` on a source of size `hp x wp`."""
    h, w = coords.shape[-2:]
    # Each coordinate written into its slot of the interleaved grid from contiguous planes:
    # ~2x faster than one multiply-add over the channel-last view, and differentiable.
    grid = coords.new_empty(*coords.shape[:-3], h, w, 2)
    grid[..., 0] = coords[..., 0, :, :] * (2.0 / (wp - 1)) - 1.0
    grid[..., 1] = coords[..., 1, :, :] * (2.0 / (hp - 1)) - 1.0
    return grid


# OpenCV's remap takes at most 4 channels per image in one call.
_REMAP_MAX_CHANNELS = 4


def _remap_applies(img: torch.Tensor, coords: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether `sample_at` may use OpenCV: CPU float32 tensors that need no gradient, images
    OpenCV takes in one call, and an OpenCV that interpolates at float positions."""
    if img.device.type != "cpu" or coords.device.type != "cpu" or dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (img.requires_grad or coords.requires_grad):
        return False
    return img.shape[1] <= _REMAP_MAX_CHANNELS and max(img.shape[-2:]) < 32767 \
        and _remap_is_exact()


@functools.cache
def _remap_is_exact() -> bool:
    """Whether this OpenCV's `remap` interpolates float32 images at float positions exactly.
    OpenCV 4 rounds positions to 1/32 pixel (3.01 samples at 3.0); 5 does not. Checked once,
    on first use."""
    import cv2

    ramp = np.tile(np.arange(8, dtype=np.float32) * 100, (2, 1))
    at = np.full((2, 8), 3.01, np.float32)
    got = cv2.remap(ramp, at, np.zeros_like(at), cv2.INTER_LINEAR)
    return abs(float(got[0, 0]) - 301.0) < 1e-3


def _remap(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """`sample_at` by `cv2.remap`, one call per image and position set; the result is
    channels-last underneath (`(N, k, H, W, C)` memory)."""
    import cv2

    n, c, h, w = img.shape
    k = coords.shape[1]
    src = img.permute(0, 2, 3, 1).contiguous().numpy()  # float32 (`_remap_applies`)
    xy = coords.contiguous().numpy()
    out = torch.empty(n, k, h, w, c, dtype=torch.float32)
    dst = out.numpy()
    for i in range(n):
        for j in range(k):
            cv2.remap(src[i], xy[i, j, 0], xy[i, j, 1], cv2.INTER_LINEAR, dst=dst[i, j],
                      borderMode=cv2.BORDER_REPLICATE)
    return out.permute(0, 1, 4, 2, 3)


def warp_many(img: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """Warp each image by k flows in one call, without copying the image k times.

    img: `(N, C, H, W)`; flows: `(N, k, 2, H, W)` pixels (dx, dy). Returns `(N, k, C, H, W)`
    (a view, not necessarily contiguous): `sample_at` the flows' `pixel_coords`, so integer
    flows reproduce translations exactly with either engine.
    """
    n, c, h, w = img.shape
    k = flows.shape[1]
    if flows.shape != (n, k, 2, h, w):
        raise ValueError(f"flows must be {(n, k, 2, h, w)}, got {tuple(flows.shape)}")
    dtype = torch.promote_types(img.dtype, flows.dtype)
    return sample_at(img, pixel_coords(flows.to(dtype))).to(img.dtype)


def backward_warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `img` at `p + flow(p)` for every output pixel `p` (bilinear, border padding).

    img: `(B, C, H, W)` float; flow: `(B, 2, H, W)` float in pixels, channel 0 = dx (to the
    right), channel 1 = dy (down). Returns `(B, C, H, W)` in img's dtype:
    `out[..., y, x] = img[..., y + dy, x + dx]`; an integer flow reproduces a translation
    exactly (see `warp_many`).
    """
    b, _, h, w = img.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(f"flow must be {(b, 2, h, w)}, got {tuple(flow.shape)}")
    return warp_many(img, flow.unsqueeze(1))[:, 0]


def upsample_bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)` for an
    integer `factor`, the same values to float rounding (~5e-7).

    x: `(B, C, h, w)` float -> `(B, C, factor*h, factor*w)`, contiguous. Output pixel
    `factor*k + j` of a row lies at `k + o_j`, `o_j = (j + 0.5) / factor - 0.5`, between
    input pixels k and k -+ 1 with edge pixels repeated: so each axis is `factor` lerps of
    shifted copies, written into interleaved slots. Width first, on the small tensor, so the
    full-size pass writes whole rows. On the CPU with many channels, torch's own kernel reads
    the planes pixel by pixel: 45 channels 90x160 -> 360x640 on one thread, ~15-19 ms against
    ~9 ms here. The lerps write into preallocated outputs, which autograd cannot follow, so a
    tensor that needs gradients (training) takes torch's kernel.
    """
    if factor == 1:
        return x
    b, c, h, w = x.shape
    if x.requires_grad and torch.is_grad_enabled():
        return F.interpolate(x, size=(h * factor, w * factor), mode="bilinear",
                             align_corners=False)
    offsets = [(j + 0.5) / factor - 0.5 for j in range(factor)]
    planes = x.reshape(b * c, h, w)
    padded = F.pad(planes, (1, 1), mode="replicate")  # (bc, h, w + 2)
    rows = x.new_empty(b * c, h, w, factor)
    _lerps(padded[..., :-2], padded[..., 1:-1], padded[..., 2:], offsets, rows, -1)
    rows = rows.view(b * c, h, w * factor)
    padded = torch.cat([rows[:, :1], rows, rows[:, -1:]], 1)  # (bc, h + 2, W)
    out = x.new_empty(b * c, h, factor, w * factor)
    _lerps(padded[:, :-2], padded[:, 1:-1], padded[:, 2:], offsets, out, 2)
    return out.view(b, c, h * factor, w * factor)


def _lerps(before: torch.Tensor, at: torch.Tensor, after: torch.Tensor, offsets: list[float],
           out: torch.Tensor, dim: int) -> None:
    """`out.select(dim, j) = at + o_j * (after - at)` (or towards `before` for o_j < 0)."""
    for j, o in enumerate(offsets):
        torch.lerp(at, before if o < 0 else after, abs(o), out=out.select(dim, j))
