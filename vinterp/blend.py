"""The linear blend (cross-fade), the baseline every model is compared with.

In-between k of m sits at time t_k = k / (m + 1) and is `(1 - t) a + t b`. The same formula
serves the `blend` baseline and upsample's static pairs (uint8 frames, `blend_frames`) and
training's validation (stacked tensors, `blend_stack`).
"""

from __future__ import annotations

import numpy as np
import torch


def times(m: int) -> list[float]:
    """The in-between times t = k / (m + 1), k = 1 .. m."""
    return [k / (m + 1) for k in range(1, m + 1)]


def blend_frames(a: np.ndarray, b: np.ndarray, m: int) -> list[np.ndarray]:
    """`m` cross-fades of two `(H, W, 3)` uint8 frames, each `round((1 - t) a + t b)` computed
    in float32, as uint8."""
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    return [np.rint((1 - t) * fa + t * fb).clip(0, 255).astype(np.uint8) for t in times(m)]


def blend_stack(ends: torch.Tensor, m: int) -> torch.Tensor:
    """Endpoints `(B, 6, H, W)` (I_0 then I_1) -> the `m` cross-fades stacked on channels,
    `(B, 3m, H, W)`, in the endpoints' dtype and value range."""
    a, b = ends[:, :3], ends[:, 3:]
    return torch.cat([(1 - t) * a + t * b for t in times(m)], 1)


__all__ = ["blend_frames", "blend_stack", "times"]
