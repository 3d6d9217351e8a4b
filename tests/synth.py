"""Tiny synthetic footage for tests: moving shapes on a textured background, written as real
video files (through the bundled ffmpeg) or numbered frame folders."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch


def background(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture, (h, w, 3) uint8, so motion is visible and codecs behave."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, size=(max(2, h // 8), max(2, w // 8), 3)).astype(np.float32)
    import cv2

    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def moving_square(
    n: int, h: int = 64, w: int = 96, size: int = 16, vx: float = 2.0, vy: float = 0.0,
    x0: float = 8.0, y0: float = 20.0, seed: int = 0, color=(250, 30, 30),
) -> list[np.ndarray]:
    """`n` frames of a square moving by (vx, vy) pixels per frame over a fixed background."""
    bg = background(h, w, seed)
    frames = []
    for i in range(n):
        f = bg.copy()
        x, y = int(round(x0 + vx * i)), int(round(y0 + vy * i))
        f[max(0, y):max(0, y + size), max(0, x):max(0, x + size)] = color
        frames.append(f)
    return frames


def scene_cut_frames(n_per_scene: int, scenes: int = 2, h: int = 64, w: int = 96) -> list:
    """Scenes of `n_per_scene` frames each, on unrelated backgrounds (hard cuts between)."""
    out = []
    for s in range(scenes):
        out += moving_square(n_per_scene, h, w, seed=100 + s, color=(30, 30 + 80 * s, 250))
    return out


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 10.0,
                audio: bool = False, codec: str = "libx264", crf: int = 12) -> Path:
    """Encode RGB frames to a video file with the bundled ffmpeg (optionally a sine audio track)."""
    import imageio_ffmpeg

    path = Path(path)
    h, w = frames[0].shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if audio:
        dur = len(frames) / fps
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={dur}"]
    if codec == "libx264":
        cmd += ["-c:v", "libx264", "-crf", str(crf), "-preset", "ultrafast"]
        if w % 2 == 0 and h % 2 == 0:
            cmd += ["-pix_fmt", "yuv420p"]
        else:
            cmd += ["-pix_fmt", "yuv444p"]
    else:
        cmd += ["-c:v", codec]
    if audio:
        cmd += ["-c:a", "aac", "-shortest"]
    cmd += [str(path)]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    subprocess.run(cmd, input=data, check=True)
    return path


def write_frames(folder: str | Path, frames: list[np.ndarray], ext: str = ".png",
                 start: int = 1) -> Path:
    """Write numbered frames `000001.png`, ... into `folder`."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i + start:06d}{ext}"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def write_prepared(root: str | Path, sequences: dict, inbetweens: int = 5, stride: int = 1,
                   step: int = 1) -> Path:
    """Write a dataset in `vinterp prepare`'s format directly (for tests of training only):
    `sequences` maps name -> (list of frames, "train" | "val")."""
    import json

    root = Path(root)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    seqs, windows = [], []
    span = (inbetweens + 1) * step
    for name, (frames, split) in sequences.items():
        arr = np.stack(frames)
        np.save(root / "frames" / f"{name}.npy", arr)
        seqs.append({"name": name, "source": name, "split": split, "fps": 10.0,
                     "frames": len(frames), "height": arr.shape[1], "width": arr.shape[2],
                     "file": f"frames/{name}.npy"})
        for start in range(0, len(frames) - span, stride):
            windows.append({"seq": name, "start": start, "step": step, "split": split,
                            "weight": 1.0})
    manifest = {"format": "vinterp-prepared", "version": 1, "config": {},
                "inbetweens": inbetweens, "sequences": seqs, "windows": windows,
                "dropped": {}, "summary": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def model_input(frames: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 frames -> a generator input `(1, 3k, H, W)` float32 in [-1, 1]."""
    h, w = frames[0].shape[:2]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).reshape(1, 3 * len(frames), h, w)
    return x.float() / 127.5 - 1


def model_frames(out: torch.Tensor) -> np.ndarray:
    """A generator output `(1, 3m, H, W)` in [-1, 1] -> `(m, H, W, 3)` float64 grey levels,
    rounded as uint8 frames would be."""
    _, c, h, w = out.shape
    return ((out.view(c // 3, 3, h, w).permute(0, 2, 3, 1) + 1) * 127.5).round().double().numpy()
