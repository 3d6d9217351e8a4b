"""Classical in-between frame makers that a model has to beat, in a registry `BASELINES`.

Every baseline is a callable `(a, b, m, prev=None, nxt=None) -> list of m frames`: `a` and `b`
are the two endpoint frames, `(H, W, 3)` uint8 RGB of the same size, and the result holds the
frames at times t = k / (m + 1), k = 1 .. m, each `(H, W, 3)` uint8 RGB. `prev` and `nxt` are
the input frames before `a` and after `b` (one pair's gap away), or None where there is none
(a clip's first or last pair, a scene cut); only `stream` uses them. Nothing is cached between
calls, so a call depends only on its arguments.

- `repeat`: nearest endpoint (`a` for t <= 1/2, else `b`): what a player shows when it just
  repeats frames.
- `blend`: the cross-fade `(1 - t) a + t b`.
- `dis`: OpenCV's DIS optical flow both ways plus backward warping (see `dis_interpolate`).
- `stream`: `dis` with quadratic motion from the neighbouring inputs, and DIS on the chroma
  planes too where luma cannot see the motion (`flows.dis_colour_flow`; see
  `stream_interpolate`): the classical prior that the default model starts from.
- `fallback`: `stream` with flow reversal, and the cross-fade where its warps fail (see
  `fallback_interpolate`): exactly what the untrained default model outputs.
- `minterpolate`: ffmpeg's motion-compensated `minterpolate` filter, run through the ffmpeg
  binary bundled with imageio-ffmpeg (see `minterpolate_interpolate`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import numpy as np
import torch

from vinterp.blend import blend_frames, times
from vinterp.config import PRESETS
from vinterp.flows import FLOW_METHODS, dis_flow_pair, flow_requests, resolve_flows
from vinterp.motion import flows_at, stream_flows, to_uint8_frames

Baseline = Callable[..., list[np.ndarray]]

# The filter options the comparison is defined with; `scd=none` is explained in
# `minterpolate_interpolate`.
# The `fallback` baseline decides at the default model's backbone resolution, so that the
# untrained default model reproduces it.
FALLBACK_DOWNSCALE = 4
# `stream` and `fallback` use the default model's optical flow, so that the untrained default
# model reproduces them; `dis` stays plain luma DIS, the classical reference.
STREAM_FLOW = PRESETS["default"].model["flow_method"]
STREAM_VELOCITY = PRESETS["default"].model["velocity_candidate"]
STREAM_BACKWARD = PRESETS["default"].model.get("backward_flows", "dis")
# ... and `fallback` its flow reversal (at FALLBACK_DOWNSCALE, as the model does it).
FALLBACK_REVERSAL = PRESETS["default"].model["flow_reversal"]

MINTERPOLATE_OPTS = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1:search_param=64:scd=none"


def _check(a: np.ndarray, b: np.ndarray, m: int) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"endpoints must be two (H, W, 3) frames of one size, got {a.shape} "
                         f"and {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError("endpoints must be uint8")
    if m < 1:
        raise ValueError(f"m (in-betweens) must be >= 1, got {m}")


def repeat_interpolate(a: np.ndarray, b: np.ndarray, m: int, prev=None, nxt=None
                       ) -> list[np.ndarray]:
    """Nearest endpoint: `a` for t <= 1/2 (the middle of an odd m goes to `a`), else `b`."""
    _check(a, b, m)
    return [(a if t <= 0.5 else b).copy() for t in times(m)]


def blend_interpolate(a: np.ndarray, b: np.ndarray, m: int, prev=None, nxt=None
                      ) -> list[np.ndarray]:
    """Linear cross-fade `round((1 - t) a + t b)`, computed in float32."""
    _check(a, b, m)
    return blend_frames(a, b, m)


def dis_interpolate(a: np.ndarray, b: np.ndarray, m: int, prev=None, nxt=None
                    ) -> list[np.ndarray]:
    """Optical-flow interpolation with OpenCV DIS, both ways, and backward warps.

    1. Flows on grayscale with `cv2.DISOpticalFlow` (medium preset): `F01` from `a` to `b`
       (`a(x) ~ b(x + F01(x))`) and `F10` from `b` to `a`, each `(H, W, 2)` float32 pixels (x, y).
    2. Linear-motion approximation of the flows from the in-between frame at time t back to the
       endpoints, read at the same pixel x (the motion field is assumed locally constant, so at
       moving edges the flow is sampled from the wrong side):
           F_t0(x) = -t F01(x),    F_t1(x) = -(1 - t) F10(x).
    3. Backward warps with `cv2.remap` (bilinear, border replicated):
           W0(x) = a(x + F_t0(x)),  W1(x) = b(x + F_t1(x)).
    4. Time-weighted blend: `I_t = (1 - t) W0 + t W1`, rounded to uint8.
    """
    _check(a, b, m)
    f01, f10 = dis_flow_pair(a, b)
    t = np.asarray(times(m), np.float32)[:, None, None, None]
    return _warp_blend(a, b, -t * f01[None], -(1 - t) * f10[None])


def stream_interpolate(a: np.ndarray, b: np.ndarray, m: int, prev: np.ndarray | None = None,
                       nxt: np.ndarray | None = None) -> list[np.ndarray]:
    """`dis` with quadratic motion from the neighbouring inputs (QVI, Xu et al. 2019), from
    the default model's optical flow (`STREAM_FLOW`: DIS, with chroma where luma is blind).

    With flows F01, F10 between the endpoints and F0,-1 (from `a` to `prev`), F12 (from `b`
    to `nxt`), each endpoint's pixels move with constant acceleration:
        D0(t) = ((F01 + F0,-1)/2) t^2 + ((F01 - F0,-1)/2) t,
        D1(s) = ((F10 + F12)/2) s^2 + ((F10 - F12)/2) s,   s = 1 - t,
    read in place as the flows back to the endpoints, F_t0 = -D0(t), F_t1 = -D1(1 - t); then
    backward warps and the time blend of `dis`. A side without a neighbour falls back to
    linear motion, so with neither this is exactly `dis`. Measured on the held-out clips
    (benchmarks/motion_stack.py): +0.26 dB over `dis`.
    """
    coef = _stream_motion(a, b, m, prev, nxt)[1]
    ft = flows_at(coef[None], torch.tensor(times(m), dtype=torch.float32))[0]  # (2, m, 2, H, W)
    ft = ft.permute(0, 1, 3, 4, 2).numpy()
    return _warp_blend(a, b, ft[0], ft[1])


def fallback_interpolate(a: np.ndarray, b: np.ndarray, m: int, prev: np.ndarray | None = None,
                         nxt: np.ndarray | None = None) -> list[np.ndarray]:
    """`stream`'s motion, reversed, then the cross-fade wherever its warps fail
    (`warp.prior_frames`).

    Both endpoints are warped to each t with `stream`'s quadratic motion, read where each
    in-between pixel came from rather than in place (`warp.reverse_flows`, FALLBACK_REVERSAL
    steps at 1/4 resolution), and time-blended, as in `stream`; where the two warped
    endpoints differ more than the endpoints themselves (`motion.fallback_logit`, decided at
    1/4 resolution and blurred) the motion is wrong, and the frame leans to the cross-fade
    `(1 - t) a + t b` instead: a soft double exposure there
    rather than torn, displaced content. Warps by `grid_sample` (the generator's), not
    `cv2.remap`. This is the untrained default model's output.
    """
    from vinterp.warp import prior_frames

    pair, coef = _stream_motion(a, b, m, prev, nxt)
    x = torch.from_numpy(np.concatenate([a, b], -1)).permute(2, 0, 1)[None].float()
    x = x / 127.5 - 1
    t = torch.tensor(times(m), dtype=torch.float32)
    out = prior_frames(x, pair[None], coef[None], t, FALLBACK_DOWNSCALE,
                       reversal=FALLBACK_REVERSAL)
    return list(to_uint8_frames(out)[0])


def _stream_motion(a: np.ndarray, b: np.ndarray, m: int, prev: np.ndarray | None,
                   nxt: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked inputs -> `STREAM_FLOW` flows `(2, 2, H, W)` (F01, F10, with the
    `STREAM_VELOCITY` candidate) and `stream`'s motion coefficients `(2, 2, 2, H, W)`
    (`motion.stream_flows`), float32 pixels."""
    _check(a, b, m)
    for n, what in ((prev, "prev"), (nxt, "nxt")):
        if n is not None and n.shape != a.shape:
            raise ValueError(f"{what} must have the endpoints' shape {a.shape}, got {n.shape}")
    flow = FLOW_METHODS[STREAM_FLOW]
    wanted = flow_requests(a, b, prev, nxt, STREAM_BACKWARD)
    flows = resolve_flows([None if p is None else flow(*p) for p in wanted], STREAM_BACKWARD)
    return stream_flows(a, b, *flows, STREAM_VELOCITY)


def _warp_blend(a: np.ndarray, b: np.ndarray, ft0: np.ndarray, ft1: np.ndarray
                ) -> list[np.ndarray]:
    """Backward warps with `cv2.remap` (bilinear, border replicated) and the time blend:
    `I_t = (1 - t) a(x + F_t0(x)) + t b(x + F_t1(x))`, rounded to uint8. ft0, ft1: `(m, H, W, 2)`
    float32 pixels, one flow per in-between at t = k / (m + 1)."""
    import cv2

    h, w = a.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    out = []
    for t, g0, g1 in zip(times(len(ft0)), ft0, ft1, strict=True):
        w0 = cv2.remap(fa, gx + g0[..., 0], gy + g0[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        w1 = cv2.remap(fb, gx + g1[..., 0], gy + g1[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        out.append(np.rint((1 - t) * w0 + t * w1).clip(0, 255).astype(np.uint8))
    return out


class MinterpolateError(RuntimeError):
    """ffmpeg's minterpolate failed or returned frames that do not line up with the input."""


def minterpolate_run(frames: list[np.ndarray], m: int, timeout: float = 120.0) -> np.ndarray:
    """Raw `minterpolate` output for `frames` fed at 1 frame/s, output at m + 1 frames/s.

    Returns `(N, H, W, 3)` uint8 RGB: whatever frames ffmpeg wrote, in order.
    """
    from data_prep.decode import ffmpeg_exe

    h, w = frames[0].shape[:2]
    vf = f"format=yuv444p,minterpolate=fps={m + 1}:{MINTERPOLATE_OPTS}"
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "1", "-i", "pipe:0",
           "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = err[-1] if err else f"exit status {proc.returncode}"
        raise MinterpolateError(f"ffmpeg minterpolate failed: {detail}")
    n = len(proc.stdout) // (h * w * 3)
    return np.frombuffer(proc.stdout[: n * h * w * 3], np.uint8).reshape(n, h, w, 3)


def minterpolate_interpolate(a: np.ndarray, b: np.ndarray, m: int, prev=None, nxt=None
                             ) -> list[np.ndarray]:
    """ffmpeg `minterpolate` (mci, aobmc, bidir, vsbmc=1, search_param=64) on one pair.

    How the frames line up (checked on a moving square in tests/test_baselines.py): the pair is
    piped as rawvideo rgb24 at an explicit 1 frame/s, as `[a, b, b]`, with
    `minterpolate=fps=m+1`, and ffmpeg writes exactly m + 2 frames: `a`, the m in-betweens at
    t = k/(m+1), then `b`. The filter only interpolates between a frame and the next once it
    has seen the frame after that (bidirectional motion search of `b` needs a successor), hence
    the repeated `b`; `[a, b]` alone gives no frames at all. Each call is one ffmpeg process,
    so no motion vectors leak between windows (the filter's EPZS search predicts from the
    previous frame pair, which batching windows into one stream would make the previous
    window's). Frames go through yuv444p (minterpolate takes no RGB), so even the endpoints
    come back with rounding error of about 0.4 grey levels.

    `scd=none`: the default scene-change detector compares this pair's mean frame difference
    with the previous pair's; with no previous pair that is the raw difference, so any window
    with more than ~10 levels of mean difference would be "a scene change" and get repeated
    frames. The evaluation skips real scene cuts itself.
    """
    _check(a, b, m)
    out = minterpolate_run([a, b, b], m)
    if len(out) != m + 2:
        raise MinterpolateError(f"ffmpeg minterpolate returned {len(out)} frames for one pair, "
                                f"expected {m + 2}")
    # The endpoints must come back (up to yuv rounding) where they were given.
    for got, want, where in ((out[0], a, "first"), (out[-1], b, "last")):
        err = np.abs(got.astype(np.int16) - want.astype(np.int16)).mean()
        if err > 3.0:
            raise MinterpolateError(f"ffmpeg minterpolate's {where} frame is not the endpoint "
                                    f"(mean abs difference {err:.1f}); frame alignment changed")
    return [f.copy() for f in out[1:-1]]


BASELINES: dict[str, Baseline] = {
    "repeat": repeat_interpolate,
    "blend": blend_interpolate,
    "dis": dis_interpolate,
    "stream": stream_interpolate,
    "fallback": fallback_interpolate,
    "minterpolate": minterpolate_interpolate,
}
