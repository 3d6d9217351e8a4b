"""Classical motion from the stream against the `dis` baseline on real held-out windows.

    .venv/bin/python benchmarks/motion_stack.py --windows 30 --size 360

Windows of m + 2 frames at frame step 1, with the neighbouring inputs one window span before
and after (frames -(m+1) and 2(m+1)), spread evenly over each held-out clip; each window scored
on its m real in-betweens (PSNR dB, mean over frames). Methods: the `dis` and `stream`
baselines of vinterp.baselines (OpenCV DIS flow; `stream` adds quadratic motion from the
neighbours), no training.
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
from vinterp.baselines import BASELINES  # noqa: E402
from vinterp.eval_sources import resize_short  # noqa: E402
from vinterp.metrics import frame_psnr_ssim  # noqa: E402

HELD_OUT = ("sam2_bedroom.mp4", "sam2_05_default_juggle.mp4",
            "intel_one-by-one-person-detection.mp4")


def variants(frames: list[np.ndarray], prev: np.ndarray | None, nxt: np.ndarray | None
             ) -> dict[str, list[np.ndarray]]:
    m, a, b = len(frames) - 2, frames[0], frames[-1]
    return {"dis": BASELINES["dis"](a, b, m),
            "stream": BASELINES["stream"](a, b, m, prev, nxt)}


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
