"""Choosing training windows in one stored sequence.

A window of `inbetweens + 2` frames starting at `start` with step `step` uses the stored frames
`start + k * step`, k = 0..inbetweens+1. Windows are dropped when:

- `scene_cut`: a cut lies between any two consecutive source frames the window spans (cuts are
  found between every pair of stored frames, so a step > 1 cannot jump over one unseen);
- `static`: nothing visibly moves: the largest share of changed pixels between the first frame
  and any later frame of the window is below `static_threshold` (see `motion_thumb`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MOTION_SHORT_SIDE = 64
MOTION_PIXEL_DELTA = 12  # grey levels; above compression noise after the blur
DEFAULT_STATIC_THRESHOLD = 0.002  # share of thumbnail pixels that changed


@dataclass(frozen=True)
class WindowPlan:
    """Windows kept in one sequence (their start indices) and the counts dropped by reason."""

    starts: tuple[int, ...]
    dropped: dict[str, int]


def motion_thumb(frame: np.ndarray) -> np.ndarray:
    """(h, w) uint8 blurred grey thumbnail (short side 64) of an (H, W, 3) uint8 RGB frame, for
    `changed_share`; the blur hides sensor and compression noise, not moving objects."""
    import cv2

    h, w = frame.shape[:2]
    s = MOTION_SHORT_SIDE / min(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    grey = cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(grey, (3, 3), 0)


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels of two `motion_thumb`s that differ by more than MOTION_PIXEL_DELTA."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float((diff > MOTION_PIXEL_DELTA).mean())


def window_span(inbetweens: int, step: int) -> int:
    """Distance in stored frames from a window's first to its last frame."""
    return (inbetweens + 1) * step


def plan_windows(
    n_frames: int, cuts: Sequence[int], thumbs: Sequence[np.ndarray] | None, inbetweens: int,
    step: int, stride: int, static_threshold: float = DEFAULT_STATIC_THRESHOLD,
) -> WindowPlan:
    """Windows of a sequence of `n_frames` stored frames.

    cuts: indices i where a scene cut lies between frame i-1 and frame i.
    thumbs: `motion_thumb` of every frame (None: no static test).
    Starts run 0, stride, 2*stride, ... while the window fits.
    """
    if inbetweens < 1 or step < 1 or stride < 1:
        raise ValueError("inbetweens, step and stride must be at least 1")
    span = window_span(inbetweens, step)
    cut_set = np.zeros(n_frames + 1, dtype=np.int64)
    for c in cuts:
        if 0 < c < n_frames:
            cut_set[c] = 1
    cum = np.cumsum(cut_set)  # cum[i] = cuts at indices <= i
    starts: list[int] = []
    dropped = {"scene_cut": 0, "static": 0}
    for s in range(0, n_frames - span, stride) if n_frames > span else ():
        if cum[s + span] - cum[s] > 0:  # a cut at some i with s < i <= s + span
            dropped["scene_cut"] += 1
            continue
        if thumbs is not None and static_threshold > 0:
            first = thumbs[s]
            motion = max(changed_share(first, thumbs[s + k * step])
                         for k in range(1, inbetweens + 2))
            if motion < static_threshold:
                dropped["static"] += 1
                continue
        starts.append(s)
    return WindowPlan(tuple(starts), dropped)
