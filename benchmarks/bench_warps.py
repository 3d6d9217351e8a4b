"""The flow head's two warp engines (`sampling.sample_at`: OpenCV's remap, grid_sample) on
the default model's pairs, as `vinterp upsample` runs them (run by hand; prints a table).

    .venv/bin/python benchmarks/bench_warps.py [--model PATH] [--clip PATH] [--pairs 36]
        [--rounds 4] [--workers 3] [--cached]

Consecutive 640x360 pairs of the clip go through `Interpolator.interpolate_pair` with their
neighbours on `--workers` threads of one torch thread each (`upsample`'s plan on this 2-core
machine), the classical flows computed alongside unless `--cached`. The engines take turns
within one process, round after round (grid_sample by making `sampling._remap_is_exact`
answer no), so the machine's drift between minutes hits both alike: whole-command timings
on this machine swing by 10-30% and hide a 5-10% change. Prints the CPU (all threads) and
wall time per pair of each round, and whether the two engines' frames differ.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pair_breakdown import CLIP, frames  # noqa: E402

from vinterp import sampling  # noqa: E402
from vinterp.inference import Interpolator  # noqa: E402

EXACT = sampling._remap_is_exact


def run_round(interp: Interpolator, fr: np.ndarray, pool: ThreadPoolExecutor, n: int):
    """(CPU ms, wall ms) per pair, and the in-betweens, of pairs 0..n-1."""
    def pair(i: int):
        return interp.interpolate_pair(fr[i + 1], fr[i + 2], fr[i], fr[i + 3])

    c0, w0 = time.process_time(), time.perf_counter()
    out = list(pool.map(pair, range(n)))
    return (1000 * (time.process_time() - c0) / n, 1000 * (time.perf_counter() - w0) / n), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--pairs", type=int, default=36)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--cached", action="store_true", help="flows cached: the model part alone")
    args = ap.parse_args()
    torch.set_num_threads(1)
    interp = Interpolator(args.model, device="cpu")
    if args.cached:
        interp.generator.flow_cache.size = 4 * args.pairs + 8
    fr = frames(Path(args.clip), args.pairs + 3)
    engines = {"remap": EXACT, "grid_sample": lambda: False}
    if not EXACT():
        print("this OpenCV rounds remap's positions: both rows are grid_sample")
    times = {name: [] for name in engines}
    outs = {}
    with ThreadPoolExecutor(args.workers) as pool:
        run_round(interp, fr, pool, args.pairs)  # warm-up (and the cache, with --cached)
        for _ in range(args.rounds):
            for name, exact in engines.items():
                sampling._remap_is_exact = exact
                t, outs[name] = run_round(interp, fr, pool, args.pairs)
                times[name].append(t)
    sampling._remap_is_exact = EXACT
    print(f"{args.pairs} pairs of {args.clip} at 640x360 on {args.workers} threads, flows "
          f"{'cached' if args.cached else 'computed'}; ms per pair, CPU (all threads) / wall")
    for name, ts in times.items():
        print(f"  {name:12s} " + "  ".join(f"{c:5.0f} / {w:4.0f}" for c, w in ts))
    pairs = zip(outs["remap"], outs["grid_sample"], strict=True)
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max())
               for pa, pb in pairs for a, b in zip(pa, pb, strict=True))
    print(f"  largest difference between the engines' frames: {diff} grey level(s)")


if __name__ == "__main__":
    main()
