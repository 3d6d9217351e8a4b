"""Where one pair's time goes inside the default model at 640x360 (run by hand; prints a table).

    .venv/bin/python benchmarks/pair_breakdown.py [--model PATH] [--clip PATH] [--pairs 20]
        [--prefetch] [--precision bf16] [--threads 1]

Consecutive pairs of the clip (scaled to 640x360) go through `Interpolator.interpolate_pair`
with their neighbours, as `vinterp upsample` hands them over, after 3 warm-up pairs. The
stages are timed by wrapping the functions that do them (wall ms per pair, the mean):
the prior's flows (`motion.prior_flows_of_frames`: DIS calls, velocity candidate), each
flow method call (summed over the DIS threads, so it can exceed its caller), the prior's cues
(`warp._prior_cues`, with the flow reversal), the U-Net, and the whole pass. `--prefetch`
also starts the next pair's flows in the background, as `upsample` does; the whole pair's
wall and CPU time (both cores) are printed beside it. One pair at a time on `--threads` torch
threads (2 by default): `upsample` itself runs several single-threaded pairs at once on the
CPU (`pipeline.plan_threads`; `--threads 1` times one of them alone), so its per-pair wall
time is not this one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_prep.decode import ffmpeg_exe  # noqa: E402
from vinterp import flows, motion, warp  # noqa: E402
from vinterp.inference import Interpolator  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "videos" / "sam2_bedroom.mp4"
SPENT: dict[str, float] = {}


def timed(name: str, fn):
    def run(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        SPENT[name] = SPENT.get(name, 0.0) + time.perf_counter() - t0
        return out
    return run


def frames(clip: Path, n: int) -> np.ndarray:
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(clip), "-vf", "scale=640:360",
           "-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 360, 640, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--prefetch", action="store_true")
    ap.add_argument("--precision", default="fp32", help="fp32 or bf16 (as upsample's)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (1: as each of upsample's pairs in flight runs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    interp = Interpolator(args.model, device="cpu", precision=args.precision)
    G = interp.generator
    method = G.flow_cache.method
    flows.FLOW_METHODS[method] = timed(f"flow method {method} (summed over threads)",
                                        flows.FLOW_METHODS[method])
    # The Interpolator hands the generator a prior made from the uint8 frames.
    motion.prior_flows_of_frames = timed("prior flows (motion.prior_flows_of_frames)",
                                         motion.prior_flows_of_frames)
    warp._prior_cues = timed("prior cues + reversal (warp._prior_cues)", warp._prior_cues)
    G.backbone.forward = timed("U-Net", G.backbone.forward)
    fr = frames(Path(args.clip), args.pairs + 7)

    def pair(i: int) -> None:
        if args.prefetch:
            interp.prefetch(fr[i + 2], fr[i + 3])
        interp.interpolate_pair(fr[i + 1], fr[i + 2], fr[i], fr[i + 3])

    for i in range(3):
        pair(i)
    SPENT.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(3, 3 + args.pairs):
        pair(i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = args.pairs
    print(f"{n} pairs of {args.clip} at 640x360, prefetch {'on' if args.prefetch else 'off'}, "
          f"{args.precision}")
    for name, s in SPENT.items():
        print(f"  {name:48s} {1000 * s / n:7.1f} ms")
    print(f"  {'whole pair (interpolate_pair), wall':48s} {1000 * wall / n:7.1f} ms")
    print(f"  {'whole pair, CPU (all threads)':48s} {1000 * cpu / n:7.1f} ms")


if __name__ == "__main__":
    main()
