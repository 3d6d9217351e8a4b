"""A parameter-free motion cue for the flow head: a local cost volume between the endpoints and
its soft-argmax, computed at the backbone's (downscaled) resolution.

A U-Net given only the two frames must learn to detect motion from scratch, which takes far
more steps than a CPU budget allows (measured: flows of ~0.1 px after 400 steps while the
true motion was 2-5 px). A cost volume, as in PWC-Net, hands it the matching evidence
directly, and the soft-argmax a first linear-motion estimate V_est, as extra input channels.

The flow prior goes further: classical DIS optical flow between the endpoints (OpenCV) seeds
the flow head's motion, so training only has to learn where and how that flow is wrong.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def corr_channels(radius: int) -> int:
    """Extra backbone input channels for `radius`: the (2r+1)^2 costs plus V_est (2)."""
    return 0 if radius <= 0 else (2 * radius + 1) ** 2 + 2


def _normalize(img: torch.Tensor) -> torch.Tensor:
    # Local zero-mean, unit-variance colour: matching then ignores lighting and flat regions
    # give near-zero costs everywhere instead of a spurious best match.
    mean = F.avg_pool2d(img, 5, 1, 2, count_include_pad=False)
    var = F.avg_pool2d((img - mean) ** 2, 5, 1, 2, count_include_pad=False).mean(1, True)
    return (img - mean) / (var + 1e-3).sqrt()


def cost_volume(a: torch.Tensor, b: torch.Tensor, radius: int,
                temperature: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Costs and soft-argmax motion from `a` to `b`.

    a, b: `(B, 3, h, w)` float (any range). Returns `(costs, v_est)`: costs `(B, (2r+1)^2, h, w)`,
    the 3x3-window mean of normalized colour correlation of a(p) with b(p + d) for every
    displacement d = (dx, dy) in [-r, r]^2 (dy-major order); v_est `(B, 2, h, w)` in pixels
    (dx, dy), the softmax(costs / temperature)-weighted mean displacement: where a's content
    went in b.
    """
    fa, fb = _normalize(a.float()), _normalize(b.float())
    _, _, h, w = fa.shape
    r = radius
    pb = F.pad(fb, (r, r, r, r), mode="replicate")
    costs, disp = [], []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = pb[:, :, r + dy : r + dy + h, r + dx : r + dx + w]
            costs.append((fa * shifted).mean(1, keepdim=True))
            disp.append((dx, dy))
    cost = F.avg_pool2d(torch.cat(costs, 1), 3, 1, 1, count_include_pad=False)
    p = torch.softmax(cost / temperature, dim=1)
    d = torch.tensor(disp, dtype=cost.dtype, device=cost.device)  # (D, 2)
    v_est = torch.einsum("bdhw,dk->bkhw", p, d)
    return cost, v_est


# ---------------------------------------------------------------------------------------------
# Classical flow prior

PRIORS = ("none", "dis")


def prior_channels(prior: str, n_out: int) -> int:
    """Extra backbone input channels for `prior` (see `warp._prior_cues`): the two endpoint
    flows (4), the two brightness-constancy errors of warping each endpoint onto the other
    with them (6), and both endpoints warped to each of the `n_out` times (6 n_out)."""
    if prior not in PRIORS:
        raise ValueError(f"unknown flow_prior {prior!r}; choose one of {', '.join(PRIORS)}")
    return 0 if prior == "none" else 10 + 6 * n_out


def dis_flow_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV DIS (medium preset) both ways between two `(H, W, 3)` uint8 RGB frames.

    Returns `(F01, F10)`, each `(H, W, 2)` float32 pixels (dx, dy) with `a(p) ~ b(p + F01(p))`
    and `b(p) ~ a(p + F10(p))`. The one definition shared by the `dis` baseline and the
    generator's flow prior, so an untrained prior model reproduces that baseline.
    """
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    g0 = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return dis.calc(g0, g1, None), dis.calc(g1, g0, None)


@torch.no_grad()
def dis_flows(x: torch.Tensor) -> torch.Tensor:
    """DIS flows between the endpoints of a batch, as a non-trainable input of the generator.

    x: `(B, 6, H, W)` float in [-1, 1] (I_0 then I_1; any device). The frames are quantised to
    uint8 as video frames are, so a model fed decoded frames sees exactly the flows the `dis`
    baseline computes. Returns `(B, 2, 2, H, W)` float32 pixels on x's device:
    `[:, 0]` = F01, `[:, 1]` = F10 (see `dis_flow_pair`). Runs on the CPU (about 20 ms per
    640x360 pair on one core).
    """
    b, _, h, w = x.shape
    u8 = ((x.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    u8 = u8.view(b, 2, 3, h, w).permute(0, 1, 3, 4, 2).cpu().numpy()
    out = np.empty((b, 2, h, w, 2), np.float32)
    for i in range(b):
        out[i, 0], out[i, 1] = dis_flow_pair(np.ascontiguousarray(u8[i, 0]),
                                             np.ascontiguousarray(u8[i, 1]))
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3).to(x.device)
