"""The prior's flows read in place against `warp.reverse_flows` (flow reversal by fixed-point
steps), on TRAINING clips.

    .venv/bin/python benchmarks/flow_reversal.py --windows 6 --steps 1,2,3,4

For 7-frame windows at frame step 1 with their neighbouring inputs, spread over each clip at
640x360 (as benchmarks/fallback_fit.py), the `fallback` prior's in-betweens
(`warp.prior_frames`: the default model's flow method and velocity candidate, quadratic
motion, warps, cross-fade fallback) are scored against the real frames (PSNR dB, mean per
clip) with the per-t flows read in place and after each number of reversal steps (at 1/4
resolution, the backbone's, as the model does it). Prints each clip and the mean gain over
reading in place, with the worst clip's. The held-out clips are never used here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fallback_fit import TRAINING_CLIPS, T, psnr, report_gains, windows  # noqa: E402

from vinterp.warp import prior_frames  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "videos"))
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--size", type=int, default=360)
    ap.add_argument("--steps", default="1,2,3,4")
    args = ap.parse_args()
    torch.set_num_threads(2)
    steps = [int(v) for v in args.steps.split(",")]
    gains: dict[int, list[float]] = {k: [] for k in steps}
    for clip in TRAINING_CLIPS:
        wins = list(windows(Path(args.data) / clip, args.windows, args.size))
        base = np.mean([psnr(prior_frames(x, pair, coef, T), win)
                        for win, x, (pair, coef) in wins])
        line = f"{clip:34s} in place {base:.3f}"
        for k in steps:
            got = np.mean([psnr(prior_frames(x, pair, coef, T, reversal=k), win)
                           for win, x, (pair, coef) in wins])
            gains[k].append(got - base)
            line += f"  {k} step(s) {got:.3f}"
        print(line, flush=True)
    for k in steps:
        report_gains(f"{k} step(s)", gains[k], "reading in place")


if __name__ == "__main__":
    main()
