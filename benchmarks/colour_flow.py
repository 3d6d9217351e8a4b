"""Luma-only DIS against `flows.dis_colour_flow` (chroma planes too), on TRAINING clips.

    .venv/bin/python benchmarks/colour_flow.py --windows 6 --margins 4,8,16
    .venv/bin/python benchmarks/colour_flow.py --windows 6 --velocity
    .venv/bin/python benchmarks/colour_flow.py --windows 4 --dis-settings
    .venv/bin/python benchmarks/colour_flow.py --windows 6 --backward 1,2,4
    .venv/bin/python benchmarks/colour_flow.py --windows 6 --chroma-presets FAST,ULTRAFAST

With `--velocity`, the colour flow with and without `motion.velocity_candidate` instead. With
`--dis-settings`, the default prior's flow (colour flow + velocity candidate) with cheaper
settings of its luma DIS (fewer variational refinement iterations, the FAST preset) against
the MEDIUM preset it uses. With `--backward STEPS`, the default prior with its backward flows
inverted from the forward ones (`flows.invert_flow` with each number of fixed-point steps)
against their own DIS calls, scored as the full `fallback` prior with the flow reversal.
With `--chroma-presets`, that same default prior with other OpenCV DIS presets for the chroma
flows of `flows.dis_colour_flow` (`flows.CHROMA_PRESET`).

For 7-frame windows at frame step 1 with their neighbouring inputs (as benchmarks/
fallback_fit.py), spread over each clip at 640x360, the `fallback` prior's in-betweens
(`warp.prior_frames`: quadratic motion, warps, cross-fade fallback) are made from each flow
method and scored against the real frames (PSNR dB, mean per clip), with the mean time of one
flow. `--margins` re-runs the colour flow with other `flows.COLOUR_MARGIN` values. The
held-out clips are never used here.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from fallback_fit import TRAINING_CLIPS, T, psnr, report_gains, window_inputs  # noqa: E402

from vinterp import flows, motion  # noqa: E402
from vinterp.warp import prior_frames  # noqa: E402


def score(method: str, inputs, velocity: bool = False) -> tuple[float, float]:
    """(mean PSNR, mean ms per flow) of the fallback prior from `method`'s flows."""
    fn, spent = flows.FLOW_METHODS[method], []

    def timed(a, b):
        t0 = time.perf_counter()
        flow = fn(a, b)
        spent.append(time.perf_counter() - t0)
        return flow

    flows.FLOW_METHODS["timed"] = timed
    scores = []
    for win, x in inputs:
        cache = flows.FlowCache(workers=1, method="timed")
        pair, coef = motion.prior_flows("stream", x, cache, velocity)
        scores.append(psnr(prior_frames(x[:, 3:9].clone(), pair, coef, T), win))
    return float(np.mean(scores)), 1000 * float(np.mean(spent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "videos"))
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--size", type=int, default=360)
    ap.add_argument("--margins", default=str(flows.COLOUR_MARGIN))
    ap.add_argument("--velocity", action="store_true")
    ap.add_argument("--dis-settings", action="store_true")
    ap.add_argument("--backward", default="", help="comma-separated inversion steps")
    ap.add_argument("--chroma-presets", default="", help="comma-separated DIS presets, e.g. FAST")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.velocity:
        compare_velocity(args)
        return
    if args.dis_settings:
        compare_dis_settings(args)
        return
    if args.backward:
        compare_backward(args, [int(v) for v in args.backward.split(",")])
        return
    if args.chroma_presets:
        compare_chroma_presets(args, args.chroma_presets.split(","))
        return
    margins = [float(v) for v in args.margins.split(",")]
    gains: dict[float, list[float]] = {g: [] for g in margins}
    for clip in TRAINING_CLIPS:
        inputs = list(window_inputs(Path(args.data) / clip, args.windows, args.size))
        base, ms = score("dis", inputs)
        line = f"{clip:34s} dis {base:.2f} ({ms:.0f} ms)"
        for g in margins:
            flows.COLOUR_MARGIN = g
            got, ms = score("dis_colour", inputs)
            gains[g].append(got - base)
            line += f"  colour margin {g:g}: {got:.2f} ({ms:.0f} ms)"
        print(line, flush=True)
    for g in margins:
        report_gains(f"margin {g:g}", gains[g], "luma DIS")


def compare_velocity(args) -> None:
    gains = []
    for clip in TRAINING_CLIPS:
        inputs = list(window_inputs(Path(args.data) / clip, args.windows, args.size))
        base, _ = score("dis_colour", inputs)
        got, _ = score("dis_colour", inputs, velocity=True)
        gains.append(got - base)
        print(f"{clip:34s} dis_colour {base:.2f}  + velocity candidate {got:.2f}", flush=True)
    report_gains("velocity candidate", gains, "the colour flow")


def luma_dis(preset: str, refinement: int | None = None):
    """A `flows.dis_flow` with another OpenCV DIS preset / variational refinement count."""
    import cv2

    def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset}"))
        if refinement is not None:
            dis.setVariationalRefinementIterations(refinement)
        return dis.calc(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY),
                        None)
    return flow


def sweep(args, names: list, base_score, variant_score, over: str) -> None:
    """Per training clip, `base_score(inputs)` and `variant_score(name, inputs)` for each of
    `names`, each `(PSNR, note)`: a line per clip with each variant's gain, then each
    variant's mean and worst clip (`report_gains`)."""
    gains: dict = {n: [] for n in names}
    for clip in TRAINING_CLIPS:
        inputs = list(window_inputs(Path(args.data) / clip, args.windows, args.size))
        base, note = base_score(inputs)
        line = f"{clip:34s} {over} {base:.2f}{note}"
        for n in names:
            got, note = variant_score(n, inputs)
            gains[n].append(got - base)
            line += f" | {n} {got - base:+.3f}{note}"
        print(line, flush=True)
    for n in names:
        report_gains(str(n), gains[n], over)


def compare_dis_settings(args) -> None:
    medium = flows.dis_flow
    variants = {"medium, refinement 0": luma_dis("MEDIUM", 0),
                "medium, refinement 2": luma_dis("MEDIUM", 2), "fast": luma_dis("FAST")}

    def with_luma(fn, inputs):
        flows.dis_flow = fn  # dis_colour_flow looks it up when called
        got, ms = score("dis_colour", inputs, velocity=True)
        return got, f" ({ms:.0f} ms)"

    try:
        sweep(args, list(variants), lambda inputs: with_luma(medium, inputs),
              lambda name, inputs: with_luma(variants[name], inputs), "medium")
    finally:
        flows.dis_flow = medium


def fallback_score(inputs, backward: str) -> float:
    """Mean PSNR of the default prior (colour flow, velocity candidate, `backward` flows,
    quadratic motion, flow reversal, cross-fade fallback) on `inputs`."""
    from vinterp.baselines import FALLBACK_REVERSAL

    scores = []
    for win, x in inputs:
        cache = flows.FlowCache(workers=1, method="dis_colour")
        pair, coef = motion.prior_flows("stream", x, cache, True, backward)
        out = prior_frames(x[:, 3:9].clone(), pair, coef, T, 4, "blend", FALLBACK_REVERSAL)
        scores.append(psnr(out, win))
    return float(np.mean(scores))


def compare_backward(args, steps: list[int]) -> None:
    default_steps = flows.INVERSION_STEPS

    labels = {f"inverted x{k}": k for k in steps}

    def inverted(label, inputs):
        flows.INVERSION_STEPS = labels[label]
        return fallback_score(inputs, "inverted"), ""

    try:
        sweep(args, list(labels), lambda inputs: (fallback_score(inputs, "dis"), ""), inverted,
              "dis backward flows")
    finally:
        flows.INVERSION_STEPS = default_steps


def compare_chroma_presets(args, presets: list[str]) -> None:
    default = flows.CHROMA_PRESET

    def with_preset(preset, inputs):
        flows.CHROMA_PRESET = preset
        return fallback_score(inputs, "dis"), ""

    try:
        sweep(args, presets, lambda inputs: with_preset(default, inputs), with_preset,
              f"chroma {default}")
    finally:
        flows.CHROMA_PRESET = default


if __name__ == "__main__":
    main()
