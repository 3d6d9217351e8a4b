"""Figures for `vinterp prepare`: preparation speed next to plain decoding (the floor) with
peak memory, and the random-window read speed of candidate storage formats (why frames are
stored as raw .npy).

Run (prints a table; takes a few minutes on 2 cores):
    .venv/bin/python benchmarks/bench_prepare.py
    .venv/bin/python benchmarks/bench_prepare.py --inputs ../shared/data/videos --no-storage

Each measurement runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own.
Timings depend on machine load; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]

_FLOOR = """
import sys, time
from data_prep.discover import discover
from data_prep.decode import iter_video_frames, read_image
from data_prep.sources import frame_files
t0 = time.perf_counter(); n = 0
for s in discover([sys.argv[1]])[0]:
    if s.kind == "video":
        for _ in iter_video_frames(s.path):
            n += 1
    else:
        for p in frame_files(s):
            read_image(p); n += 1
print(n, time.perf_counter() - t0)
"""


def _peak_rss(cmd: list[str]) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak resident MiB) of a subprocess, from its own rusage."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status:
        raise SystemExit(f"{' '.join(cmd[:4])} failed with status {status}")
    return out.decode(), wall, ru.ru_maxrss / 1024


def make_mot_1080p(root: Path, src: Path) -> Path:
    """A MOT17-sized sequence (1920x1080 JPEGs) made by upscaling the sample's frames, so the
    figures cover the resolution of real MOT17/MOT20 releases."""
    import cv2

    seq = root / "MOT-1080p" / "train" / "UPSCALED-01"
    (seq / "img1").mkdir(parents=True)
    files = sorted(src.glob("*.jpg"))
    for p in files:
        img = cv2.resize(cv2.imread(str(p)), (1920, 1080), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(seq / "img1" / p.name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname=UPSCALED-01\nimDir=img1\nframeRate=30\nseqLength={len(files)}\n"
        "imWidth=1920\nimHeight=1080\nimExt=.jpg\n")
    return root / "MOT-1080p"


def bench_prepare(inputs: list[str]) -> None:
    py = sys.executable
    vinterp = str(Path(py).with_name("vinterp"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    inputs = [str(Path(p)) for p in inputs]
    print(f"{'input':45s} {'frames':>7s} {'decode fps':>10s} {'decode MiB':>10s} "
          f"{'prepare fps':>11s} {'prepare MiB':>11s} {'wall s':>7s} {'dataset MiB':>11s}")
    for inp in inputs:
        out, _, floor_mib = _peak_rss([py, "-c", _FLOOR, inp])
        n, floor_s = out.split()
        n, floor_s = int(n), float(floor_s)
        with tempfile.TemporaryDirectory(dir=ROOT / "data" if (ROOT / "data").is_dir()
                                         else None) as tmp:
            ds = Path(tmp) / "prepared"
            out, wall, prep_mib = _peak_rss([vinterp, "prepare", inp, "-o", str(ds), "--quiet"])
            prep_s = float(out.split(" in ", 1)[1].split(" s ", 1)[0])  # "prepared X in N s"
            m = json.loads((ds / "manifest.json").read_text())
            frames = sum(s["frames"] for s in m["sequences"])
            size = sum(p.stat().st_size for p in ds.rglob("*") if p.is_file()) / 2**20
        print(f"{inp:45s} {n:7d} {n / floor_s:10.0f} {floor_mib:10.0f} "
              f"{frames / prep_s:11.0f} {prep_mib:11.0f} {wall:7.1f} {size:11.0f}")
    print("decode: every frame decoded to RGB and dropped, one thread (the floor). prepare: "
          "the time `vinterp prepare` reports (finding inputs, decoding, resizing to 288, cut "
          "and motion tests, writing); wall s adds interpreter start. MiB: peak resident memory.")


def bench_storage(video: Path, n_frames: int = 200, reads: int = 200, crop: int = 256) -> None:
    """Random 7-frame windows with a random 256x256 crop, read the way training reads them."""
    import cv2

    from data_prep.decode import iter_video_frames
    from data_prep.sources import resize

    frames = []
    for f in iter_video_frames(video):
        frames.append(resize(f, 288))
        if len(frames) == n_frames:
            break
    arr = np.stack(frames)
    t, h, w, _ = arr.shape
    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(0, t - 6)), int(rng.integers(0, h - crop + 1)),
              int(rng.integers(0, w - crop + 1))) for _ in range(reads)]
    print(f"\nstorage: {t} frames {w}x{h} from {video.name}; {reads} random windows of 7 "
          f"frames, {crop}x{crop} crop, one process, warm page cache")
    print(f"{'format':22s} {'windows/s':>10s} {'ms/window':>10s} {'MiB on disk':>12s}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "seq.npy", arr)
        for ext, params in ((".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), (".png", [])):
            (tmp / ext).mkdir()
            for i, f in enumerate(frames):
                cv2.imwrite(str(tmp / ext / f"{i:06d}{ext}"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                            params)

        def npy_reader():
            a = np.load(tmp / "seq.npy", mmap_mode="r")
            return lambda s, y, x: np.ascontiguousarray(a[s:s + 7, y:y + crop, x:x + crop])

        def img_reader(ext):
            def read(s, y, x):
                out = []
                for i in range(s, s + 7):
                    img = cv2.imread(str(tmp / ext / f"{i:06d}{ext}"), cv2.IMREAD_COLOR)
                    out.append(cv2.cvtColor(img[y:y + crop, x:x + crop], cv2.COLOR_BGR2RGB))
                return np.stack(out)
            return read

        cases = [("raw .npy memmap", npy_reader(), (tmp / "seq.npy").stat().st_size),
                 ("JPEG q95 (cv2)", img_reader(".jpg"), _du(tmp / ".jpg")),
                 ("PNG (cv2)", img_reader(".png"), _du(tmp / ".png"))]
        for name, read, nbytes in cases:
            read(*picks[0])  # warm up
            t0 = time.perf_counter()
            for p in picks:
                read(*p)
            dt = time.perf_counter() - t0
            print(f"{name:22s} {reads / dt:10.0f} {1000 * dt / reads:10.2f} "
                  f"{nbytes / 2**20:12.1f}")


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", nargs="*", default=[str(SHARED / "motchallenge-sample"),
                                                    str(SHARED / "videos")])
    ap.add_argument("--no-1080p", action="store_true",
                    help="skip the upscaled 1920x1080 MOT sequence")
    ap.add_argument("--no-prepare", action="store_true")
    ap.add_argument("--no-storage", action="store_true")
    ap.add_argument("--storage-video", default=str(SHARED / "videos" / "sam2_bedroom.mp4"))
    a = ap.parse_args()
    if not a.no_prepare:
        with tempfile.TemporaryDirectory() as tmp:
            inputs = list(a.inputs)
            if not a.no_1080p:
                inputs.append(str(make_mot_1080p(
                    Path(tmp), SHARED / "motchallenge-sample" / "train" / "SAM2-BEDROOM" / "img1")))
            bench_prepare(inputs)
    if not a.no_storage:
        bench_storage(Path(a.storage_video))


if __name__ == "__main__":
    main()
