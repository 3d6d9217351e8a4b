"""Shared by the fault tests (test_bad_input.py, test_signals.py): the inputs they copy from
(`build_assets`, a session fixture in conftest.py), and what they compare before and after
(`snapshot`) and read on stderr (`screen`)."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from data_prep.decode import ffmpeg_exe
from synth import moving_square, write_frames, write_prepared, write_video
from vinterp.checkpoint import model_state, save_checkpoint
from vinterp.config import ModelConfig, to_dict
from vinterp.networks import build_generator

H, W = 48, 64
VINTERP = str(Path(sys.executable).with_name("vinterp"))


class _RunsCode:
    """Unpickling this runs `touch PWNED`: a refused load leaves no such file."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _bad_checkpoints(root: Path, good: Path) -> None:
    mc = ModelConfig(netG="unet_32", ngf=8)
    (root / "text_short.pt").write_text("this is not a checkpoint\n")
    (root / "text_long.pt").write_text("a longer text file, not a checkpoint at all\n" * 50)
    (root / "empty.pt").write_bytes(b"")
    data = good.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    with open(root / "raw_pickle.pt", "wb") as f:
        pickle.dump({"generator": {}, "format": "vinterp-checkpoint"}, f)
    with open(root / "code_pickle.pt", "wb") as f:
        pickle.dump(_RunsCode(), f)
    torch.save({"x": _RunsCode()}, root / "code_zip.pt")
    save_checkpoint(root / "generator_str.pt", model_state(mc, "not weights"))
    cfg = to_dict(mc)
    cfg["ngf"] = "abc"
    save_checkpoint(root / "ngf_str.pt", {"model_config": cfg,
                                          "generator": build_generator(mc).state_dict()})


def _corrupt_jpeg_folder(folder: Path) -> None:
    """JPEG frames; frame 3 keeps its header but its body is random bytes."""
    write_frames(folder, moving_square(6, H, W), ext=".jpg")
    path = folder / "000003.jpg"
    data = path.read_bytes()
    sos = data.index(b"\xff\xda")
    body = len(data) - sos - 40
    noise = np.random.default_rng(3).integers(0, 256, body, dtype=np.uint8).tobytes()
    path.write_bytes(data[: sos + 38] + noise + b"\xff\xd9")


def build_assets(root: Path) -> Path:
    """The inputs every fault case copies from: a tiny model and damaged checkpoints, a clip
    with audio, frame folders (one with a frame of another size, one with a corrupt JPEG), an
    audio-only file and a prepared dataset."""
    torch.manual_seed(0)
    mc = ModelConfig(netG="unet_32", ngf=8)
    good = save_checkpoint(root / "model.pt", model_state(mc, build_generator(mc).state_dict()))
    _bad_checkpoints(root, good)
    write_video(root / "clip.mp4", moving_square(8, H, W, vx=3), fps=10, audio=True)
    write_frames(root / "frames", moving_square(8, H, W, vx=3))
    odd = write_frames(root / "mixed", moving_square(5, H, W))
    write_frames(odd, moving_square(1, H + 2, W), start=4)
    _corrupt_jpeg_folder(root / "corrupt_jpeg")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:a", "aac", str(root / "audio.mp4")],
                   check=True)
    seq = moving_square(16, H, W, vx=2)
    write_prepared(root / "dataset", {"a": (seq, "train"), "b": (seq[::-1], "val")})
    return root


def copy_asset(assets: Path, name: str, dest: Path, as_name: str | None = None) -> str:
    src, dst = assets / name, dest / (as_name or name)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst.name


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` (hidden ones too): folders, and files by content hash."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root)] = "folder"
        for f in files:
            p = os.path.join(folder, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def screen(err: str) -> list[str]:
    """The lines a terminal would show: a carriage return redraws its line (progress bars)."""
    return [seg for line in err.split("\n") if (seg := line.split("\r")[-1]).strip()]
