"""Video in for `vinterp upsample`: frame sources (video files and frame folders) and what is
known about them before decoding. The output side, the encoder, is `vinterp.video_out`.

Everything goes through the ffmpeg binary bundled with imageio-ffmpeg (never a system ffmpeg).
Frames are (H, W, 3) uint8 RGB numpy arrays throughout.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from data_prep.decode import (
    IMAGE_EXTS,
    DecodeError,
    ffmpeg_exe,
    iter_video_frames,
    list_frame_files,
    probe_video,
    read_image,
)

FOLDER_FPS = Fraction(30)  # assumed rate of a frame folder unless the caller gives one


class VideoIOError(Exception):
    """An input or output problem the user can fix; the message is one line."""


@dataclass(frozen=True)
class SourceInfo:
    """What is known about an input before decoding it."""

    path: str
    kind: str  # "video" | "frames"
    width: int
    height: int
    fps: Fraction  # the rate the stored frames are taken to be at, evenly spaced (`fps_note`)
    fps_note: str  # where `fps` came from, shown to the user
    duration: float | None  # seconds, from the container (None for frame folders)
    expected_frames: int | None  # an estimate for progress bars; never trusted for counting
    audio_codec: str | None  # None: no audio stream


def snap_fps(fps: float) -> Fraction:
    """ffmpeg prints rates rounded to 2 decimals; recover NTSC rates (30000/1001, ...) exactly so
    a long output does not drift against its copied audio."""
    if fps <= 0:
        raise ValueError("fps must be positive")
    ntsc = round(fps * 1.001)
    if abs(fps - round(fps)) > 0.005 and abs(fps * 1.001 - ntsc) < 0.006:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def probe_audio_codec(path: str | Path) -> str | None:
    """Name of the first audio stream's codec as ffmpeg reports it (e.g. `aac`), or None."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, errors="replace")
    m = re.search(r"Stream #\S+.*?: Audio: (\w+)", proc.stderr)
    return m.group(1) if m else None


def open_source(path: str | Path, fps: float | None = None) -> tuple[SourceInfo, Iterator]:
    """Open a video file or a folder of frames; returns its info and a frame iterator.

    The iterator yields (H, W, 3) uint8 RGB frames in order, one at a time. `fps` overrides the
    rate read from the container (and is the rate of a frame folder, default 30).
    Raises `VideoIOError` / `DecodeError` (one line) for a missing or undecodable input.
    """
    path = Path(path)
    if not path.exists():
        raise VideoIOError(f"{path}: no such file or folder")
    if path.is_dir():
        return _open_folder(path, fps)
    try:
        info = probe_video(path)
    except DecodeError as e:
        if probe_audio_codec(path) is not None:
            raise VideoIOError(f"{path}: has no video stream (audio only)") from None
        raise VideoIOError(str(e)) from None
    if fps:
        rate, note = snap_fps(fps), "given with --input-fps"
    elif info.fps > 0:
        rate, note = snap_fps(info.fps), "the container's average rate"
    else:
        rate, note = FOLDER_FPS, "the container gives none; set --input-fps"
    expected = round(info.duration * float(rate)) if info.duration else None
    audio = probe_audio_codec(path) if info.has_audio else None
    src = SourceInfo(str(path), "video", info.width, info.height, rate, note, info.duration,
                     expected, audio)
    return src, iter_stored_frames(path, info.width, info.height)


def iter_stored_frames(path: str | Path, width: int, height: int) -> Iterator[np.ndarray]:
    """Yield every frame stored in the video, as (height, width, 3) uint8 RGB, in order, each
    exactly once (variable-rate video is not resampled; see `data_prep.decode`). A stream that
    breaks off ends the iteration early."""
    for frame in iter_video_frames(path):
        if frame.shape != (height, width, 3):
            break
        yield frame


def _open_folder(path: Path, fps: float | None) -> tuple[SourceInfo, Iterator]:
    files = list_frame_files(path)
    if not files:
        raise VideoIOError(f"{path}: folder holds no image frames ({', '.join(IMAGE_EXTS)})")
    first = read_image(files[0])
    h, w = first.shape[:2]
    rate = snap_fps(fps) if fps else FOLDER_FPS
    note = "given with --input-fps" if fps else "a frame folder has none; set --input-fps"
    src = SourceInfo(str(path), "frames", w, h, rate, note, None, len(files), None)

    def frames() -> Iterator[np.ndarray]:
        yield first
        for f in files[1:]:
            img = read_image(f)
            if img.shape != first.shape:
                raise VideoIOError(f"{f}: frame is {img.shape[1]}x{img.shape[0]}, the first frame "
                                   f"is {w}x{h}; all frames of a folder must have one size")
            yield img

    return src, frames()
