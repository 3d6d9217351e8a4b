"""Classical motion variants against the `dis` baseline on real held-out windows (PSNR dB).

    .venv/bin/python benchmarks/motion_stack.py --windows 30 --size 360

Windows of m + 2 frames at frame step 1, with the neighbouring inputs one window span before
and after (frames -(m+1) and 2(m+1)), spread over each clip; every window scored on its m real
in-betweens. Variants (all from OpenCV DIS flows, no training):
  dis       the `dis` baseline (linear motion read in place, backward warps, time blend)
  rev       flow reversal: both endpoints' linear motion splatted to t (vinterp.splat)
  quad      quadratic motion from the neighbours, read in place
  quad+rev  quadratic motion, then flow reversal: the stream prior
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_prep.decode import iter_video_frames  # noqa: E402
from vinterp import splat  # noqa: E402
from vinterp.eval_sources import resize_short  # noqa: E402
from vinterp.metrics import frame_psnr_ssim  # noqa: E402
from vinterp.motion import dis_flow_pair  # noqa: E402
from vinterp.warp import warp_many  # noqa: E402

HELD_OUT = ("sam2_bedroom.mp4", "sam2_05_default_juggle.mp4",
            "intel_one-by-one-person-detection.mp4")


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()


def _err(a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Mean abs error of a(p) vs b(p + f(p)), (B, 1, H, W) in [0, 1]; a, b in [0, 255]."""
    return (warp_many(b, f.unsqueeze(1))[:, 0] - a).abs().mean(1, keepdim=True) / 255.0


def variants(frames: list[np.ndarray], prev: np.ndarray | None, nxt: np.ndarray | None
             ) -> dict[str, list[np.ndarray]]:
    m = len(frames) - 2
    a, b = frames[0], frames[-1]
    t = torch.arange(1, m + 1, dtype=torch.float32) / (m + 1)
    f01, f10 = (_t(f) for f in dis_flow_pair(a, b))
    f0m = _t(dis_flow_pair(a, prev)[0]) if prev is not None else None
    f12 = _t(dis_flow_pair(b, nxt)[0]) if nxt is not None else None
    ia, ib = _t(a), _t(b)
    e0, e1 = _err(ia, ib, f01), _err(ib, ia, f10)
    out = {}
    lin0 = splat.displacement(f01, None, t)
    lin1 = splat.displacement(f10, None, 1 - t)
    q0 = splat.displacement(f01, f0m, t)
    q1 = splat.displacement(f10, f12, 1 - t)
    flows = {
        "dis": (-lin0, -lin1),
        "rev": splat.reverse_flows(lin0, lin1, f01, f10, e0, e1, t),
        "quad": (-q0, -q1),
        "quad+rev": splat.reverse_flows(q0, q1, f01, f10, e0, e1, t),
    }
    tt = t.view(1, m, 1, 1, 1)
    for name, (ft0, ft1) in flows.items():
        w0, w1 = warp_many(ia, ft0), warp_many(ib, ft1)
        y = ((1 - tt) * w0 + tt * w1)[0].round().clamp(0, 255).to(torch.uint8)
        out[name] = list(y.permute(0, 2, 3, 1).numpy())
    return out


def clip_windows(path: Path, n_windows: int, size: int, m: int):
    frames = [resize_short(f, size) for f in iter_video_frames(path)]
    span = m + 1
    lo, hi = 0, len(frames) - span - 1
    starts = np.linspace(lo, hi, n_windows).round().astype(int)
    for s in starts:
        prev = frames[s - span] if s - span >= 0 else None
        nxt = frames[s + 2 * span] if s + 2 * span < len(frames) else None
        yield frames[s:s + span + 1], prev, nxt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "videos"))
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--size", type=int, default=360)
    ap.add_argument("--m", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    totals: dict[str, list[float]] = {}
    for clip in HELD_OUT:
        scores: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for win, prev, nxt in clip_windows(Path(args.data) / clip, args.windows, args.size,
                                           args.m):
            for name, pred in variants(win, prev, nxt).items():
                ps = [frame_psnr_ssim(p, r)[0] for p, r in zip(pred, win[1:-1], strict=True)]
                scores.setdefault(name, []).extend(ps)
                totals.setdefault(name, []).extend(ps)
        line = "  ".join(f"{k} {np.mean(v):.3f}" for k, v in scores.items())
        print(f"{clip:42s} {line}   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"{'all':42s} " + "  ".join(f"{k} {np.mean(v):.3f}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
