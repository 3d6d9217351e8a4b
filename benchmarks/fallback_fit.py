"""Fit the cross-fade fallback's constants (`vinterp.motion.FALLBACK_*`) on TRAINING clips.

    .venv/bin/python benchmarks/fallback_fit.py --windows 12 --size 360 [--reversal 4] [--wide]

Windows of 7 frames at frame step 1 with their neighbouring inputs (as benchmarks/
motion_stack.py), spread over each clip; the stream prior's flows (the default model's flow
method and velocity candidate; the fit in docs/training.md predates both and used luma DIS)
are computed once per window, then every (sigma, bias, blur, pool) of the grid (`GRID`, or
`WIDE_GRID`) is scored through `warp.prior_frames` with `--reversal` flow-reversal steps
(PSNR dB of the 5 in-betweens, mean per clip). Prints each clip's best setting and the
settings with the best mean gain over `stream` across clips, with the worst clip's gain
beside it. The held-out clips (sam2_bedroom, sam2_05_default_juggle,
intel_one-by-one-person-detection) are never used here: they only score the chosen setting,
with `vinterp evaluate`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from motion_stack import clip_windows  # noqa: E402

from vinterp import flows, motion  # noqa: E402
from vinterp.baselines import STREAM_FLOW, STREAM_VELOCITY  # noqa: E402
from vinterp.metrics import frame_psnr_ssim  # noqa: E402
from vinterp.warp import prior_frames  # noqa: E402

TRAINING_CLIPS = ("sam2_01_dog.mp4", "sam2_02_cups.mp4", "sam2_03_blocks.mp4",
                  "intel_car-detection.mp4", "blender_bigbuckbunny_0-30s.webm",
                  "blender_sintel_snow.mp4", "asl_gestures/bird.mkv", "asl_gestures/book.mkv")
GRID = {"FALLBACK_SIGMA": (3.0, 5.0), "FALLBACK_BIAS": (-3.0, 0.0, 3.0),
        "FALLBACK_BLUR": (3, 5), "FALLBACK_FADE_POOL": (5, 7)}
WIDE_GRID = {"FALLBACK_SIGMA": (3.0, 5.0, 8.0), "FALLBACK_BIAS": (-6.0, -3.0, 0.0),
             "FALLBACK_BLUR": (3, 5), "FALLBACK_FADE_POOL": (5, 7)}
T = torch.arange(1, 6, dtype=torch.float32) / 6


def window_inputs(path: Path, n: int, size: int):
    """(real frames, stream model input `(1, 12, H, W)` in [-1, 1]: I_-1, I_0, I_1, I_2) per
    window, H, W cropped to multiples of 4 (the default model's backbone scale); a missing
    neighbour is its endpoint, as the model takes it."""
    for win, prev, nxt in clip_windows(path, n, size, 5):
        h, w = win[0].shape[0] // 4 * 4, win[0].shape[1] // 4 * 4
        win = [f[:h, :w] for f in win]
        prev = win[0] if prev is None else prev[:h, :w]
        nxt = win[-1] if nxt is None else nxt[:h, :w]
        x = torch.from_numpy(np.concatenate([prev, win[0], win[-1], nxt], -1))
        yield win, x.permute(2, 0, 1)[None].float() / 127.5 - 1


def windows(path: Path, n: int, size: int):
    """(real frames, endpoints tensor (1, 6, H, W), prior flows) per `window_inputs` window."""
    for win, x in window_inputs(path, n, size):
        yield win, x[:, 3:9].clone(), motion.prior_flows(
            "stream", x, flows.FlowCache(method=STREAM_FLOW), STREAM_VELOCITY)


def psnr(out: torch.Tensor, win: list[np.ndarray]) -> float:
    u8 = motion.to_uint8_frames(out)[0]
    return float(np.mean([frame_psnr_ssim(p, r)[0] for p, r in zip(u8, win[1:-1], strict=True)]))


def report_gains(label: str, gains: list[float], over: str) -> None:
    """Print one variant's per-clip `gains` (dB) as its mean and worst clip."""
    print(f"{label}: mean gain over {over} {np.mean(gains):+.3f} dB, worst clip "
          f"{min(gains):+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "videos"))
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--size", type=int, default=360)
    ap.add_argument("--reversal", type=int, default=0,
                    help="flow-reversal steps of the prior (the shipped model runs 4)")
    ap.add_argument("--wide", action="store_true", help="a wider grid (WIDE_GRID)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    grid = WIDE_GRID if args.wide else GRID
    settings = list(itertools.product(*grid.values()))
    gains = {s: [] for s in settings}
    for clip in TRAINING_CLIPS:
        base, scores = [], {s: [] for s in settings}
        for win, x, (pair, coef) in windows(Path(args.data) / clip, args.windows, args.size):
            base.append(psnr(prior_frames(x, pair, coef, T, fallback="none",
                                          reversal=args.reversal), win))
            for s in settings:
                for name, value in zip(grid, s, strict=True):
                    setattr(motion, name, value)
                scores[s].append(psnr(prior_frames(x, pair, coef, T, reversal=args.reversal),
                                      win))
        for s in settings:
            gains[s].append(np.mean(scores[s]) - np.mean(base))
        best = max(settings, key=lambda s: gains[s][-1])
        print(f"{clip:36s} stream {np.mean(base):.2f}  best {best} {gains[best][-1]:+.3f}",
              flush=True)
    print("(sigma, bias, blur, pool): mean gain over stream across clips, worst clip")
    for s in sorted(settings, key=lambda s: -np.mean(gains[s]))[:10]:
        print(f"  {s}  {np.mean(gains[s]):+.3f}  {min(gains[s]):+.3f}")


if __name__ == "__main__":
    main()
