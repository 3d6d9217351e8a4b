"""Scene-cut calibration on real footage: prints, per clip, the cuts found and the highest
non-cut score, so the threshold's margin is visible.

Run: .venv/bin/python benchmarks/calibrate_scenes.py [../shared/data/videos]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from data_prep.decode import VIDEO_EXTS, iter_video_frames
from data_prep.scenes import CUT_THRESHOLD, iter_cut_scores

# The shared footage sits beside the repository, as in the README (../shared/data).
VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def main(folder: str = str(VIDEOS)) -> None:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_EXTS)
    print(f"threshold {CUT_THRESHOLD}")
    for p in files:
        t0 = time.perf_counter()
        scores = list(iter_cut_scores(iter_video_frames(p)))
        cuts = [i + 1 for i, s in enumerate(scores) if s >= CUT_THRESHOLD]
        non = [s for s in scores if s < CUT_THRESHOLD]
        cut_scores = ", ".join(f"{scores[c - 1]:.2f}" for c in cuts)
        print(f"{p.name:40s} frames {len(scores) + 1:5d}  cuts at {cuts} ({cut_scores})  "
              f"max non-cut {max(non, default=0):.2f}  {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
