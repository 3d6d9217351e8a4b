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
        if _audio_only(path):  # ffmpeg's own message would be about its output files
            raise DecodeError(f"{path}: has an audio stream but no video stream; give a video "
                              "file") from None
        msg = str(e).strip().splitlines()
        detail = msg[-1][:160] if msg else type(e).__name__
        raise DecodeError(f"{path}: not a video ffmpeg can decode ({detail})") from None
    return gen, meta


def _audio_only(path: Path) -> bool:
    import subprocess

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, errors="replace")
    kinds = set(re.findall(r"Stream #\S+.*?: (Video|Audio):", proc.stderr))
    return kinds == {"Audio"}


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
    if data[:2].tobytes() == b"\xff\xd8":
        # libjpeg decodes a garbage body without complaint (and a truncated one with warnings
        # printed on stderr), so the file's structure is checked first.
        problem = jpeg_problem(data)
        if problem:
            raise DecodeError(f"{path}: corrupt JPEG ({problem})")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DecodeError(f"{path}: corrupt or unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# Markers that may start a JPEG segment: SOFn/DHT/DAC, RSTn, SOI..COM-range, APPn, JPGn, COM.
_JPEG_MARKERS = frozenset([*range(0xC0, 0xF0), 0xFE, *range(0xF0, 0xFE)])


def jpeg_problem(data: np.ndarray) -> str | None:
    """Walk a JPEG's segments and entropy-coded scans: None if the structure holds up to the
    end-of-image marker, else what is wrong. Random bytes in a scan almost surely contain a
    0xFF followed by a byte that is no valid marker, or segments that run past the file."""
    n, pos = len(data), 2
    truncated = "cut short before its end-of-image marker"
    while True:
        if pos >= n:
            return truncated
        if data[pos] != 0xFF:
            return f"no marker where one belongs, at byte {pos}"
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return truncated
        marker = int(data[pos])
        pos += 1
        if marker == 0xD9:
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers, no length
            continue
        if marker not in _JPEG_MARKERS or marker == 0xD8:
            return f"invalid marker 0x{marker:02X} at byte {pos - 1}"
        if pos + 2 > n:
            return truncated
        length = int(data[pos]) << 8 | int(data[pos + 1])
        if length < 2 or pos + length > n:
            return truncated if pos + length > n else f"bad segment length at byte {pos}"
        pos += length
        if marker == 0xDA:  # a scan: entropy-coded bytes up to the next real marker
            ff = np.flatnonzero(data[pos:n - 1] == 0xFF) + pos
            nxt = data[ff + 1]
            real = ff[(nxt != 0) & ((nxt < 0xD0) | (nxt > 0xD7)) & (nxt != 0xFF)]
            if not len(real):
                return truncated
            pos = int(real[0])
