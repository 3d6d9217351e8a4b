"""Decoding video files and frame folders into RGB uint8 frames, streamed one at a time.

Every decode goes through the ffmpeg binary bundled with imageio-ffmpeg, never a system ffmpeg.
Frame counts come from decoding, not from container headers (which can be wrong).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class DecodeError(Exception):
    """An input that cannot be decoded; the message is one line naming the file."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reports about a video before decoding it (frame count is not trusted)."""

    path: str
    width: int
    height: int
    fps: float  # the container's rate; for variable-rate input, the rate ffmpeg assumes
    duration: float | None  # seconds, if known
    codec: str | None
    has_audio: bool


def _open(path: Path, pix_fmt: str = "rgb24"):
    import imageio_ffmpeg

    # passthrough: a plain raw decode converts variable-rate video to a constant rate by
    # duplicating and dropping frames; we want every stored frame exactly once.
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt=pix_fmt,
                                     output_params=["-map", "0:v:0", "-fps_mode", "passthrough"])
    try:
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as e:
        gen.close()
        msg = str(e).strip().splitlines()
        detail = msg[-1][:160] if msg else type(e).__name__
        raise DecodeError(f"{path}: not a video ffmpeg can decode ({detail})") from None
    return gen, meta


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's stream info; raises `DecodeError` for files ffmpeg cannot open."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")
    gen, meta = _open(path)
    gen.close()
    return _info(path, meta)


def _info(path: Path, meta: dict) -> VideoInfo:
    w, h = meta.get("size") or (0, 0)
    if not w or not h:
        raise DecodeError(f"{path}: ffmpeg found no video stream")
    return VideoInfo(
        path=str(path),
        width=int(w),
        height=int(h),
        fps=float(meta.get("fps") or 0.0),
        duration=float(meta["duration"]) if meta.get("duration") else None,
        codec=meta.get("codec"),
        has_audio=bool(meta.get("audio_codec")),
    )


def iter_video_frames(path: str | Path, info_out: list | None = None) -> Iterator[np.ndarray]:
    """Yield frames of a video as (H, W, 3) uint8 RGB arrays, in order, one at a time.

    If `info_out` is a list, the `VideoInfo` is appended to it before the first frame.
    A stream that breaks off mid-way (truncated file) ends the iteration early: callers get
    every frame that decoded, and a truncated file never raises after the first frame.
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")
    gen, meta = _open(path)
    info = _info(path, meta)
    if info_out is not None:
        info_out.append(info)
    nbytes = info.width * info.height * 3
    try:
        for raw in gen:
            if len(raw) != nbytes:
                break
            yield np.frombuffer(raw, dtype=np.uint8).reshape(info.height, info.width, 3)
    except (OSError, RuntimeError):
        return
    finally:
        gen.close()


_NUM = re.compile(r"(\d+)")


def _natural_key(p: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in _NUM.split(p.name))


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, in natural numeric order (2.png before 10.png)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=_natural_key)


def read_image(path: str | Path) -> np.ndarray:
    """Read one image as (H, W, 3) uint8 RGB; raises `DecodeError` if it is corrupt."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DecodeError(f"{path}: corrupt or unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
