"""Speed of the evaluation baselines at 640x360: in-between frames per second.

    .venv/bin/python benchmarks/bench_baselines.py [--pairs 4] [--repeats 3] [--m 5]
        [--size 640x360] [--video PATH]

Pairs are frames k and k + m + 1 of a real clip (default: sam2_bedroom.mp4 from the shared
footage, synthetic moving squares if it is absent), resized to --size. Each baseline makes the m
in-betweens of every pair; the figure is m * pairs / seconds, the minimum time over --repeats
rounds (baselines timed round-robin: the machine is shared, the minimum is the least disturbed).
minterpolate's time includes starting one ffmpeg process per pair (about 25 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vinterp.baselines import BASELINES

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def _pairs(video: Path, n: int, m: int, w: int, h: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if video.is_file():
        from data_prep.decode import iter_video_frames

        frames = []
        for i, f in enumerate(iter_video_frames(video)):
            if i >= n * (m + 1) + 1:
                break
            frames.append(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA))
        print(f"pairs from {video.name}")
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from synth import moving_square

        frames = moving_square(n * (m + 1) + 1, h, w, size=h // 4, vx=2)
        print("pairs from synthetic moving squares (shared footage not found)")
    return [(frames[k * (m + 1)], frames[(k + 1) * (m + 1)]) for k in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--video", type=Path, default=SHARED / "sam2_bedroom.mp4")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    pairs = _pairs(args.video, args.pairs, args.m, w, h)
    times: dict[str, list[float]] = {k: [] for k in BASELINES}
    for _ in range(args.repeats):
        for name, fn in BASELINES.items():
            t0 = time.perf_counter()
            for a, b in pairs:
                fn(a, b, args.m)
            times[name].append(time.perf_counter() - t0)
    frames = args.m * len(pairs)
    print(f"{w}x{h}, m={args.m}, {len(pairs)} pairs, cv2 threads {cv2.getNumThreads()}")
    print(f"{'baseline':<14}{'frames/s (best)':>16}{'frames/s (median)':>19}{'ms/pair':>10}")
    for name, ts in times.items():
        best, med = min(ts), statistics.median(ts)
        print(f"{name:<14}{frames / best:>16.1f}{frames / med:>19.1f}"
              f"{1000 * best / len(pairs):>10.1f}")


if __name__ == "__main__":
    main()
