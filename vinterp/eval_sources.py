"""Where evaluation windows come from: video files, frame folders and prepared datasets.

A window is m + 2 frames: two endpoints and the m real frames between them, each `(H, W, 3)`
uint8 RGB. From videos and frame folders windows are built on the fly while frames stream past
(only the frames of the current windows are held); a prepared dataset lists its windows in
`manifest.json` and keeps frames in memory-mapped `.npy` arrays.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep import manifest
from data_prep.decode import (
    VIDEO_EXTS,
    DecodeError,
    iter_video_frames,
    list_frame_files,
    probe_video,
    read_image,
)
from data_prep.manifest import ManifestError, read_manifest
from data_prep.manifest import Window as ManifestWindow


class EvaluateError(Exception):
    """Bad evaluation input or options; the message is one line saying what to do."""


@dataclass(frozen=True)
class Window:
    """One evaluation window: `frames` holds m + 2 `(H, W, 3)` uint8 RGB frames in time order
    (endpoints first and last); `start` and `step` locate it in its source (frame indices).
    `prev` and `next` are the inputs one window span before and after it (frames
    start - span and start + 2 span), which a method may use as a stream would give them; None
    where the source ends or a scene cut lies between."""

    frames: list[np.ndarray]
    start: int
    step: int
    prev: np.ndarray | None = None
    next: np.ndarray | None = None


@dataclass(frozen=True)
class WindowPlan:
    """How to cut windows from a stream: m in-betweens, `step` source frames between window
    frames, a window starting every `stride` frames (None: decided per source), at most
    `max_windows` per source (0: all), frames downscaled to short side `size` (0: native)."""

    m: int
    step: int = 1
    stride: int | None = None
    max_windows: int = 0
    size: int = 0

    @property
    def span(self) -> int:
        """Source frames from the first endpoint to the last."""
        return (self.m + 1) * self.step


@dataclass
class Source:
    """One clip to score: `windows()` yields `Window`s; `skipped` counts windows left out
    because a scene cut lies inside them (known once `windows()` is exhausted)."""

    name: str
    path: str
    kind: str  # video | frames | prepared
    windows: Callable[[], Iterator[Window]]
    skipped: int = 0


def resize_short(frame: np.ndarray, size: int) -> np.ndarray:
    """Downscale so the short side is `size` (sides rounded to even); never upscales."""
    import cv2

    h, w = frame.shape[:2]
    if size <= 0 or min(h, w) <= size:
        return frame
    s = size / min(h, w)
    nw, nh = max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)
    return cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)


def auto_stride(plan: WindowPlan, n_frames: int | None) -> int:
    """The stride to use: the plan's, or windows side by side (sharing endpoints), spread over
    the whole clip when `max_windows` would otherwise stop at its start."""
    if plan.stride:
        return plan.stride
    if plan.max_windows and n_frames:
        return max(plan.span, (n_frames - plan.span) // plan.max_windows)
    return plan.span


def stream_windows(frames: Iterator[np.ndarray], plan: WindowPlan, source: Source,
                   cut: Callable[[np.ndarray, np.ndarray], bool] | None,
                   n_frames: int | None = None) -> Iterator[Window]:
    """Windows from a stream of frames, with their neighbouring inputs (see `Window`); windows
    with a scene cut between any two consecutive source frames inside them are skipped
    (counted in `source.skipped`).

    Every frame is resized and checked for a cut (a neighbour must not lie across one); at
    most 3 spans + 1 frames are held. A window is yielded once its next neighbour has arrived
    or the stream has ended.
    """
    span, stride = plan.span, auto_stride(plan, n_frames)
    held: deque = deque(maxlen=3 * span + 1)  # (index, frame, cut between index - 1 and index)
    waiting: deque = deque()  # starts of complete windows, waiting for their next neighbour
    made = 0
    for i, raw in enumerate(frames):
        f = resize_short(raw, plan.size)
        if held and f.shape != held[-1][1].shape:
            raise EvaluateError(f"{source.path}: frame {i} is {f.shape[1]}x{f.shape[0]}, "
                                f"earlier frames are {held[-1][1].shape[1]}x"
                                f"{held[-1][1].shape[0]}; all frames must have one size")
        held.append((i, f, bool(cut(held[-1][1], f)) if cut and held else False))
        start = i - span
        if start >= 0 and start % stride == 0:
            if _cut_between(held, start, start + span):
                source.skipped += 1
            else:
                waiting.append(start)
        while waiting and (waiting[0] + 2 * span <= i):
            yield _window(held, waiting.popleft(), plan)
            made += 1
            if plan.max_windows and made >= plan.max_windows:
                return
    while waiting and not (plan.max_windows and made >= plan.max_windows):
        yield _window(held, waiting.popleft(), plan)
        made += 1


def _cut_between(held: deque, lo: int, hi: int) -> bool:
    """A scene cut between any two consecutive frames of lo .. hi (indices held)."""
    return any(c for j, _, c in held if lo < j <= hi)


def _window(held: deque, start: int, plan: WindowPlan) -> Window:
    by_index = {j: f for j, f, _ in held}
    span = plan.span
    before, after = start - span, start + 2 * span
    prev = by_index.get(before) if not _cut_between(held, before, start) else None
    nxt = by_index.get(after) if not _cut_between(held, start + span, after) else None
    return Window(frames=[by_index[start + k * plan.step] for k in range(plan.m + 2)],
                  start=start, step=plan.step, prev=prev, next=nxt)


def _video_source(path: Path, plan: WindowPlan, cut) -> Source:
    src = Source(name=path.name, path=str(path), kind="video", windows=lambda: iter(()))

    def windows() -> Iterator[Window]:
        info: list = []
        frames = iter_video_frames(path, info_out=info)
        try:
            first = next(frames)
        except StopIteration:
            return
        # Only used to spread windows out; a wrong container estimate changes nothing else.
        n_est = int(info[0].duration * info[0].fps) if info[0].duration and info[0].fps else None

        def chained() -> Iterator[np.ndarray]:
            yield first
            yield from frames

        try:
            yield from stream_windows(chained(), plan, src, cut, n_est)
        finally:
            frames.close()

    src.windows = windows
    return src


def _folder_source(path: Path, files: list[Path], plan: WindowPlan, cut) -> Source:
    src = Source(name=path.name, path=str(path), kind="frames", windows=lambda: iter(()))
    src.windows = lambda: stream_windows((read_image(f) for f in files), plan, src, cut,
                                         len(files))
    return src


def _prepared_sources(root: Path, plan: WindowPlan, split: str) -> list[Source]:
    """Sources of a prepared dataset's `split`: one per sequence that has windows in it.

    Prepared windows were checked for scene cuts when the dataset was made, so none are
    skipped here; `max_windows` keeps that many per sequence, evenly spaced.
    """
    try:
        man = read_manifest(root)
    except ManifestError as e:
        raise EvaluateError(str(e)) from None
    m = man.inbetweens
    if m != plan.m:
        raise EvaluateError(f"{root} was prepared with {m} in-betweens per window but "
                            f"--inbetweens is {plan.m}; leave --inbetweens out or pass {m}")
    by_seq: dict[str, list[ManifestWindow]] = {}
    for w in man.split(split):
        by_seq.setdefault(w.seq, []).append(w)
    if not by_seq:
        raise EvaluateError(f"{root} has no '{split}' windows (splits there: "
                            f"{', '.join(man.splits()) or 'none'}); pick one with --split")
    out = []
    for name, wins in by_seq.items():
        if plan.max_windows and len(wins) > plan.max_windows:
            keep = np.unique(np.linspace(0, len(wins) - 1, plan.max_windows).round().astype(int))
            wins = [wins[k] for k in keep]
        file = man.sequences[name].file
        out.append(Source(name=name, path=str(file), kind="prepared",
                          windows=_prepared_windows(file, wins, plan)))
    return out


def _prepared_windows(file: Path, wins: list[ManifestWindow], plan: WindowPlan):
    def windows() -> Iterator[Window]:
        try:
            arr = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise EvaluateError(f"{file}: unreadable frames array ({e}); re-run `vinterp "
                                "prepare`") from None
        if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
            raise EvaluateError(f"{file}: expected (T, H, W, 3) uint8 frames, got "
                                f"{arr.shape} {arr.dtype}")
        for w in wins:
            start, step = w.start, w.step
            idx = [start + k * step for k in range(plan.m + 2)]
            if idx[-1] >= len(arr):
                raise EvaluateError(f"{file}: window at {start} needs frame {idx[-1]} but the "
                                    f"sequence has {len(arr)}; re-run `vinterp prepare`")
            yield Window(frames=[resize_short(np.asarray(arr[i]), plan.size) for i in idx],
                         start=start, step=step)  # no neighbours: cuts are not stored here

    return windows


def is_prepared(path: Path) -> bool:
    """A folder written by `vinterp prepare` (it has a manifest.json)."""
    return path.is_dir() and manifest.path(path).is_file()


def prepared_inbetweens(path: Path) -> int | None:
    """The m a prepared dataset's windows have, or None if its manifest does not say."""
    return manifest.stored_inbetweens(path)


def open_sources(inputs: list[str], plan: WindowPlan, split: str = "val",
                 cut: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> list[Source]:
    """Sources for the given paths: video files, folders of numbered frames, prepared datasets
    (their `split` windows). Raises `EvaluateError` for a path that is none of those."""
    sources: list[Source] = []
    for s in inputs:
        p = Path(s)
        if not p.exists():
            raise EvaluateError(f"{p}: no such file or folder")
        if p.is_dir():
            if is_prepared(p):
                sources += _prepared_sources(p, plan, split)
                continue
            files = list_frame_files(p)
            if not files:
                raise EvaluateError(f"{p}: no image frames and no manifest.json (neither a "
                                    "frame folder nor a prepared dataset)")
            sources.append(_folder_source(p, files, plan, cut))
        elif p.suffix.lower() in VIDEO_EXTS:
            probe_video(p)  # an undecodable or audio-only file fails now, before any scoring
            sources.append(_video_source(p, plan, cut))
        else:
            raise EvaluateError(f"{p}: not a video file ({', '.join(VIDEO_EXTS)}), frame folder "
                                "or prepared dataset")
    names = [src.name for src in sources]
    for src in sources:  # same file name in two folders: tell them apart by path
        if names.count(src.name) > 1:
            src.name = src.path
    return sources


__all__ = ["DecodeError", "EvaluateError", "Source", "Window", "WindowPlan", "open_sources",
           "resize_short", "stream_windows", "is_prepared", "prepared_inbetweens"]
