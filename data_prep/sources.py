"""Streaming the frames of one discovered `Source`, with gaps marked instead of skipped.

Frames come as `Item`s in source order. A frame that cannot be read (corrupt or truncated
image, a jump in the file numbering) comes as an item with `frame=None` and a one-line `problem`,
so the caller can end the current run of frames there: a window must never span a gap.
Image files are decoded and resized in a small thread pool (OpenCV releases the GIL); videos are
decoded by ffmpeg in its own process.
"""

from __future__ import annotations

import io
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.decode import DecodeError, iter_video_frames, list_frame_files
from data_prep.discover import Source
from data_prep.scenes import FrameSignature, frame_signature
from data_prep.windows import motion_thumb

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclass
class Item:
    """One frame position: `frame` (h, w, 3) uint8 RGB after resizing, `shape` the (H, W) it was
    decoded at, `label` a name for messages (file name or frame number). `frame` is None for a
    gap, with `problem` saying why."""

    label: str
    frame: np.ndarray | None = None
    shape: tuple[int, int] | None = None
    problem: str | None = None
    signature: FrameSignature | None = None  # for the scene-cut test
    thumb: np.ndarray | None = None  # `motion_thumb`, for the static test

    def analysed(self) -> Item:
        """Fill `signature` and `thumb` (run in the worker threads, off the main thread)."""
        if self.frame is not None:
            self.signature = frame_signature(self.frame)
            self.thumb = motion_thumb(self.frame)
        return self


def resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) with the short side scaled down to `size` (never up; 0: unchanged)."""
    if size <= 0 or min(h, w) <= size:
        return h, w
    s = size / min(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize(frame: np.ndarray, size: int, source_hw: tuple[int, int] | None = None) -> np.ndarray:
    """(h, w, 3) uint8 -> the size `resized_shape(*source_hw, size)`, area-averaged (no
    aliasing). `source_hw` is the full size when `frame` was decoded at a reduced scale."""
    import cv2

    h, w = resized_shape(*(source_hw or frame.shape[:2]), size)
    if (h, w) == frame.shape[:2]:
        return frame
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def _jpeg_reduction(h: int, w: int, size: int) -> int:
    """Largest libjpeg DCT scale-down (1, 2, 4, 8) that keeps the short side >= `size`:
    decoding a 1080p JPEG at half scale then area-resizing to 288 is about twice as fast as a
    full decode, and differs from it by a quarter of a grey level on average."""
    if size <= 0:
        return 1
    for f in (8, 4, 2):
        if min(h, w) // f >= size:
            return f
    return 1


def load_frame(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Read one image file as (h, w, 3) uint8 RGB resized for storage (see `resize`), plus its
    full (H, W). Rejects JPEGs cut short (OpenCV decodes those with a grey bottom and only a
    warning) and unreadable files with `DecodeError`."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    full_hw = None
    flag = cv2.IMREAD_COLOR
    if path.suffix.lower() in (".jpg", ".jpeg") and data.size:
        if not data[-64:].tobytes().rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
            raise DecodeError(f"{path}: truncated JPEG (no end-of-image marker)")
        full_hw = _jpeg_size(data)
        if full_hw is not None:
            f = _jpeg_reduction(*full_hw, size)
            flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                    4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[f]
    img = cv2.imdecode(data, flag) if data.size else None
    if img is None:
        raise DecodeError(f"{path}: corrupt or unreadable image")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if flag == cv2.IMREAD_COLOR:
        full_hw = img.shape[:2]
    return resize(img, size, full_hw), full_hw


def _jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(H, W) from a JPEG's header, or None if it cannot be read (then a full decode decides).
    EXIF-rotated JPEGs return None so the size is taken after OpenCV applies the rotation."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            if im.getexif().get(0x0112, 1) != 1:
                return None
            return im.height, im.width
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def _prefetch(fn: Callable, items: Iterable, depth: int) -> Iterator:
    """`fn(x)` for x in items, in order, at most `depth` computed ahead (bounded memory).
    `items` is consumed on the calling thread (a decoder generator stays on one thread)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        queue: deque[Future] = deque()
        it = iter(items)
        for x in it:
            queue.append(pool.submit(fn, x))
            if len(queue) >= depth:
                break
        while queue:
            yield queue.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append(pool.submit(fn, nxt))


def _numbers(files: list[Path]) -> list[int | None]:
    out = []
    for p in files:
        m = _LAST_NUMBER.search(p.stem)
        out.append(int(m.group(1)) if m else None)
    return out


def frame_files(src: Source) -> list[Path]:
    return [p for p in list_frame_files(src.path) if not p.name.startswith(".")]


def iter_folder(src: Source, size: int) -> Iterator[Item]:
    files = frame_files(src)
    nums = _numbers(files)

    def load(p: Path) -> Item:
        try:
            frame, full_hw = load_frame(p, size)
        except (DecodeError, OSError) as e:
            return Item(p.name, problem=str(e).split(": ", 1)[-1])
        return Item(p.name, frame, full_hw).analysed()

    for i, item in enumerate(_prefetch(load, files, depth=8)):
        if i and nums[i] is not None and nums[i - 1] is not None and nums[i] != nums[i - 1] + 1:
            yield Item(item.label, problem=f"frame numbers jump from {files[i - 1].name} "
                                           f"to {files[i].name} (missing frames)")
        yield item


def iter_video(src: Source, size: int, info_out: list) -> Iterator[Item]:
    """Raises `DecodeError` if the file does not open as a video."""

    def load(numbered: tuple[int, np.ndarray]) -> Item:
        i, frame = numbered
        return Item(f"frame {i + 1}", resize(frame, size), frame.shape[:2]).analysed()

    yield from _prefetch(load, enumerate(iter_video_frames(src.path, info_out)), depth=8)


def iter_items(src: Source, size: int, info_out: list) -> Iterator[Item]:
    """Items of any source kind (see `Item`); `info_out` receives a video's `VideoInfo`."""
    if src.kind == "video":
        return iter_video(src, size, info_out)
    return iter_folder(src, size)
