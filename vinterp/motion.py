"""A parameter-free motion cue for the flow head: a local cost volume between the endpoints and
its soft-argmax, computed at the backbone's (downscaled) resolution.

A U-Net given only the two frames must learn to detect motion from scratch, which takes far
more steps than a CPU budget allows (measured: flows of ~0.1 px after 400 steps while the
true motion was 2-5 px). A cost volume, as in PWC-Net, hands it the matching evidence
directly, and the soft-argmax a first linear-motion estimate V_est, as extra input channels.

The flow prior goes further: classical DIS optical flow between the endpoints (OpenCV,
`vinterp.flows`) seeds the flow head's motion, so training only has to learn where and how
that flow is wrong. This module turns those flows into the prior: quadratic motion from the
neighbouring inputs, the velocity candidate, `PriorSpec`, and the cross-fade fallback's logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vinterp.flows import FlowCache, flow_requests, resolve_flows, warp_error


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
# Classical flow priors

# Frames the generator takes for each prior (`ModelConfig.n_in`): "stream" also sees the input
# before the first endpoint and the one after the second, for quadratic motion.
PRIOR_INPUTS = {"none": 2, "dis": 2, "stream": 4}
PRIORS = tuple(PRIOR_INPUTS)


def prior_channels(prior: str, n_out: int) -> int:
    """Extra backbone input channels for `prior` (see `warp._prior_cues`): the two endpoint
    flows (4), the two brightness-constancy errors of warping each endpoint onto the other
    with them (6), and both endpoints warped to each of the `n_out` times (6 n_out)."""
    if prior not in PRIOR_INPUTS:
        raise ValueError(f"unknown flow_prior {prior!r}; choose one of {', '.join(PRIORS)}")
    return 0 if prior == "none" else 10 + 6 * n_out


def to_uint8_frames(x: torch.Tensor) -> np.ndarray:
    """`(B, 3k, H, W)` float in [-1, 1] -> `(B, k, H, W, 3)` uint8 RGB on the CPU, quantised as
    decoded video frames are (so a model fed decoded frames sees its baseline's flows)."""
    b, c, h, w = x.shape
    u8 = ((x.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    # Made contiguous here: torch's permuting copy is ~3x faster than numpy's, which the
    # frames' users (OpenCV) would otherwise make per frame (11.7 -> ~5 ms at 4 x 640x360).
    return u8.view(b, c // 3, 3, h, w).permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()


def motion_coefficients(f_fwd: torch.Tensor, f_back: torch.Tensor | None) -> torch.Tensor:
    """Where a frame's pixels are at time t (in units of the gap to the next frame), relative
    to where they start: D(t) = c[0] t^2 + c[1] t, as coefficients `(2, 2, H, W)`
    [acceleration term, velocity term] so they can be resampled (8 channels per pair) before
    they are evaluated at every t (4m channels, `flows_at`).

    f_fwd: `(2, H, W)` flow to the next frame; f_back: `(2, H, W)` flow to the previous frame,
    or None (none, or across a scene cut): linear motion, D(t) = t F_fwd. Otherwise quadratic,
    constant-acceleration motion as in QVI (Xu et al. 2019),
    `D(t) = ((F_fwd + F_back)/2) t^2 + ((F_fwd - F_back)/2) t`, which is F_fwd at t = 1 and
    F_back at t = -1."""
    if f_back is None:
        return torch.stack([torch.zeros_like(f_fwd), f_fwd])
    return torch.stack([0.5 * (f_fwd + f_back), 0.5 * (f_fwd - f_back)])


def flows_at(coef: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The prior's flows from each in-between back to the endpoints, read in place.

    coef: `(B, 2, 2, 2, H, W)` [endpoint, (acceleration, velocity), (dx, dy)] from
    `prior_flows`; t: `(m,)`. Returns `(B, 2, m, 2, H, W)`: F_t->0 = -D0(t) and
    F_t->1 = -D1(1 - t).
    """
    tau = torch.stack([t, 1 - t]).to(coef.dtype).view(1, 2, -1, 1, 1, 1)  # (1, 2, m, 1, 1, 1)
    acc, vel = coef[:, :, :1], coef[:, :, 1:2]  # (B, 2, 1, 2, H, W)
    return -(acc * tau * tau + vel * tau)


def add_flows_at(flows: torch.Tensor, coef: torch.Tensor, t: torch.Tensor, scale: float = 1.0
                 ) -> torch.Tensor:
    """`flows + scale * flows_at(coef, t)` for flows `(B, 2, m, 2, H, W)`, in two fused
    multiply-adds and no full-size temporaries (the full-resolution add is on the inference
    path of every pair)."""
    tau = torch.stack([t, 1 - t]).to(coef.dtype).view(1, 2, -1, 1, 1, 1)
    acc, vel = coef[:, :, :1], coef[:, :, 1:2]
    out = torch.addcmul(flows, acc, tau * tau * -scale)
    return out.addcmul_(vel, tau * -scale)


# The stream's neighbouring flows offer each endpoint a second motion candidate, constant
# velocity: F01 ~ -F0,-1 (a "temporal candidate", as in 3-D recursive search). It replaces the
# pair's own flow where it explains the other endpoint better by VELOCITY_MARGIN grey levels
# (`warp_error`). On 6 windows of each of 8 training clips, over the `dis_colour` stream
# prior: +0.033 dB mean, worst clip -0.011 (`benchmarks/colour_flow.py --velocity`); DIS seeded
# with the candidate as a third one added +0.015 more for a third DIS call, not kept.
VELOCITY_MARGIN = 8.0


def velocity_candidate(f_fwd: np.ndarray, f_back: np.ndarray, a: np.ndarray, b: np.ndarray
                       ) -> np.ndarray:
    """The flow from `a` to `b`, `(H, W, 2)` float32, choosing per pixel between `f_fwd` (the
    pair's own) and `-f_back` (constant velocity from `f_back`, the flow from `a` to the frame
    on its other side): the latter where its `warp_error` is lower by VELOCITY_MARGIN. A new
    array; the inputs (cached flows) are not modified."""
    limit = warp_error(a, b, f_fwd) - VELOCITY_MARGIN
    if limit.max() <= 0:  # an error >= 0 cannot be below it: the candidate cannot win
        return f_fwd.copy()
    cand = -f_back
    take = warp_error(a, b, cand) < limit
    return np.where(take[..., None], cand, f_fwd)


def stream_flows(a: np.ndarray, b: np.ndarray, f01: np.ndarray, f10: np.ndarray,
                 back: np.ndarray | None, fwd: np.ndarray | None, velocity: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One pair's flows `(H, W, 2)` (F01, F10, F0,-1 or None, F12 or None) between uint8 frames
    -> (pair `(2, 2, H, W)`, coef `(2, 2, 2, H, W)`) as in `prior_flows`; with `velocity`
    each endpoint flow first takes its `velocity_candidate` where a neighbour exists. Shared by
    the generator's prior and the `stream` and `fallback` baselines."""
    if velocity and back is not None:
        f01 = velocity_candidate(f01, back, a, b)
    if velocity and fwd is not None:
        f10 = velocity_candidate(f10, fwd, b, a)
    f01, f10, back, fwd = (None if f is None else torch.from_numpy(f).permute(2, 0, 1)
                           for f in (f01, f10, back, fwd))
    coef = torch.stack([motion_coefficients(f01, back), motion_coefficients(f10, fwd)])
    return torch.stack([f01, f10]), coef


@torch.no_grad()
def prior_flows(prior: str, x: torch.Tensor, cache: FlowCache | None = None,
                velocity: bool = False, backward: str = "dis"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Classical flows for the generator (non-trainable inputs, computed on the CPU).

    x: `(B, 3 n_in, H, W)` float in [-1, 1]: I_0, I_1 for "dis"; I_-1, I_0, I_1, I_2 for
    "stream", where a neighbour given as an exact copy of its endpoint means "none" (the
    first or last pair of a clip, a scene cut) and that side falls back to linear motion.
    Returns `(pair, coef)` on x's device, float32 pixels: pair `(B, 2, 2, H, W)` = F01, F10
    (the cache's flow method between the endpoints: a fresh `FlowCache()`, plain DIS, when
    none is given); coef `(B, 2, 2, 2, H, W)` the `motion_coefficients` of each
    endpoint's motion (linear for "dis", the `dis` baseline; quadratic where neighbours exist
    for "stream", the `stream` baseline); `flows_at(coef, t)` gives the flows at each t.
    `velocity`: "stream" only, see `stream_flows`; `backward`: `BACKWARD_FLOWS`.
    """
    pair, coef = prior_flows_of_frames(prior, to_uint8_frames(x), cache, velocity, backward)
    return pair.to(x.device), coef.to(x.device)


def prior_flows_of_frames(prior: str, frames: np.ndarray, cache: FlowCache | None = None,
                          velocity: bool = False, backward: str = "dis"
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """`prior_flows` of frames already in uint8: `(B, n_in, H, W, 3)` RGB, C-contiguous (each
    frame OpenCV-ready), as decoded video gives them; (pair, coef) on the CPU. Skips the
    float -> uint8 requantisation that `prior_flows` makes (it gives the same frames back)."""
    first = 1 if prior == "stream" else 0
    cache = cache or FlowCache()
    wanted = []  # per sample: its endpoints and `flow_requests`
    for f in frames:
        a, b = f[first], f[first + 1]
        has_back = prior == "stream" and not np.array_equal(f[0], a)
        has_fwd = prior == "stream" and not np.array_equal(f[3], b)
        wanted.append((a, b, flow_requests(a, b, f[0] if has_back else None,
                                           f[3] if has_fwd else None, backward)))
    flat = [p for *_, w in wanted for p in w if p is not None]
    got = iter(cache.flows(flat))
    pair, coef = [], []
    for a, b, w in wanted:
        flows = resolve_flows([None if p is None else next(got) for p in w], backward)
        p, c = stream_flows(a, b, *flows, velocity=velocity and prior == "stream")
        pair.append(p)
        coef.append(c)
    return torch.stack(pair), torch.stack(coef)


@dataclass(frozen=True)
class PriorSpec:
    """A generator's classical flow prior, as `prior_flows` computes it: the prior's name
    (`PRIORS`), its flow method (`FLOW_METHODS`), the velocity candidate and how its backward
    flows are made (`BACKWARD_FLOWS`). Lets the
    training data compute the prior outside the generator (`dataset.WindowDataset`)."""

    prior: str
    method: str = "dis"
    velocity: bool = False
    backward: str = "dis"

    def _cache(self, cache: FlowCache | None) -> FlowCache:
        cache = cache or FlowCache(method=self.method)
        if cache.method != self.method:
            raise ValueError(f"the cache computes {cache.method!r} flows, the prior wants "
                             f"{self.method!r}")
        return cache

    def flows(self, x: torch.Tensor, cache: FlowCache | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """`prior_flows` of x `(B, 3 n_in, H, W)` in [-1, 1] -> (pair, coef); `cache` must
        use this spec's flow method."""
        return prior_flows(self.prior, x, self._cache(cache), self.velocity, self.backward)

    def flows_of_frames(self, frames: np.ndarray, cache: FlowCache | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """`prior_flows_of_frames` of `(B, n_in, H, W, 3)` uint8 frames, on the CPU."""
        return prior_flows_of_frames(self.prior, frames, self._cache(cache), self.velocity,
                                     self.backward)


# ---------------------------------------------------------------------------------------------
# Cross-fade fallback: where the prior's two warps of the endpoints disagree more than the
# endpoints themselves do, its motion is wrong (fast small objects, motion blur, occlusions)
# and the plain cross-fade is closer to the truth than torn warps. Values fitted on training
# clips only, never the held-out ones (benchmarks/fallback_fit.py).

FALLBACKS = ("none", "blend")
FALLBACK_SIGMA = 5.0  # grey levels (0-255) per unit of logit
# Negative: where the two disagree equally the cross-fade is the safer guess (no tearing).
FALLBACK_BIAS = -3.0  # grey levels the warps may disagree by beyond the endpoints
FALLBACK_BLUR = 5  # box blur (backbone pixels) of the warps' disagreement
# The endpoints' disagreement is max-pooled: the cross-fade is only trusted where the endpoints
# agree over a whole neighbourhood, not at a pixel that a moving object happens to cover in
# both (a car roof). A box blur here cost 0.6 dB on a training clip of fast cars.
# Chosen on 12 windows of each of 8 training clips (benchmarks/fallback_fit.py): +0.25 dB mean
# over `stream`, no clip worse by more than 0.01 dB.
FALLBACK_FADE_POOL = 5


def fallback_logit(small: torch.Tensor, cand0: torch.Tensor, cand1: torch.Tensor
                   ) -> torch.Tensor:
    """Logit of the cross-fade's weight at each in-between, `(B, m, h, w)`:
    `(box(d_warp) - maxpool(d_fade) - FALLBACK_BIAS) / FALLBACK_SIGMA`, with d_warp the mean
    abs RGB difference of the two warped endpoints at t and d_fade that of the endpoints, in
    grey levels.

    small: `(B, 6, h, w)` the endpoints, float in [-1, 1]; cand0, cand1: `(B, m, 3, h, w)` the
    endpoints warped to each t by the prior's flows (`warp._prior_cues`), same range.
    """
    k, z = FALLBACK_BLUR, FALLBACK_FADE_POOL
    d_warp = F.avg_pool2d((cand0 - cand1).abs().mean(2), k, 1, k // 2, count_include_pad=False)
    d_fade = F.max_pool2d((small[:, :3] - small[:, 3:]).abs().mean(1, True), z, 1, z // 2)
    return (d_warp - d_fade) * (127.5 / FALLBACK_SIGMA) - FALLBACK_BIAS / FALLBACK_SIGMA
