"""Resampling on the flow head's path: backward warps (`warp_many`, `backward_warp`) and the
integer-factor bilinear upsampling of its low-resolution fields (`upsample_bilinear`).

Plain tensor code, no knowledge of models; `vinterp.warp` builds the flow head from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _dyadic_size(n: int) -> int:
    """Smallest 2**p + 1 >= n."""
    return 2 ** max(0, (n - 2).bit_length()) + 1


def pad_source(img: torch.Tensor) -> torch.Tensor:
    """Replicate the right/bottom edge up to `2**p + 1` pixels (see `warp_many`)."""
    h, w = img.shape[-2:]
    hp, wp = _dyadic_size(h), _dyadic_size(w)
    if (hp, wp) == (h, w):
        return img
    return F.pad(img, (0, wp - w, 0, hp - h), mode="replicate")


def sampling_grid(flows: torch.Tensor, hp: int, wp: int, scale: float = 1.0,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Flows `(..., 2, H, W)` (pixels, times `scale`) -> contiguous grid `(..., H, W, 2)` for
    `grid_sample(align_corners=True)` on a source of size `hp x wp`; written into `out` (a
    view of that shape, e.g. part of a larger grid) when given."""
    h, w = flows.shape[-2:]
    dev, dt = flows.device, flows.dtype
    gx = torch.arange(w, device=dev, dtype=dt) * (2.0 / (wp - 1)) - 1.0
    gy = (torch.arange(h, device=dev, dtype=dt) * (2.0 / (hp - 1)) - 1.0)[:, None]
    # Each coordinate written into its slot of the interleaved grid from contiguous planes:
    # ~2x faster than one multiply-add over the channel-last view of the flows, the same
    # values, and differentiable (training and inference share it).
    grid = flows.new_empty(*flows.shape[:-3], h, w, 2) if out is None else out
    grid[..., 0] = torch.add(gx, flows[..., 0, :, :], alpha=2.0 * scale / (wp - 1))
    grid[..., 1] = torch.add(gy, flows[..., 1, :, :], alpha=2.0 * scale / (hp - 1))
    return grid


def warp_many(img: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """Warp each image by k flows in one `grid_sample` call, without copying the image k times.

    img: `(N, C, H, W)`; flows: `(N, k, 2, H, W)` pixels (dx, dy). Returns `(N, k, C, H, W)`.

    Exactness: grid_sample (align_corners=True) maps normalized `g` to `(g + 1) / 2 * (S - 1)`,
    which float32 only gets exactly right for every integer position when `S - 1` is a power of
    two. So the image is border-replicated on the right/bottom up to size `2**p + 1`: sampling
    is then exact for integer flows, and border padding behaves exactly as on the original
    image (the added pixels repeat the edge). The grids stack the k flows along the height.
    """
    n, c, h, w = img.shape
    k = flows.shape[1]
    if flows.shape != (n, k, 2, h, w):
        raise ValueError(f"flows must be {(n, k, 2, h, w)}, got {tuple(flows.shape)}")
    dtype = torch.promote_types(img.dtype, flows.dtype)
    src = pad_source(img.to(dtype))
    grid = sampling_grid(flows.to(dtype), *src.shape[-2:]).view(n, k * h, w, 2)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, c, k, h, w).transpose(1, 2).to(img.dtype)


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
