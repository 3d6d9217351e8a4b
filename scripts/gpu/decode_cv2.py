"""For `train.sh` on a lent GPU machine, which has OpenCV but not imageio-ffmpeg: decode each
video under SRC with OpenCV into a PNG frame folder under DST (same relative path, no suffix),
resized as `vinterp prepare` resizes (short side 288), for `vinterp prepare` to read as frame
folders.  python scripts/gpu/decode_cv2.py SRC DST [MAX_FRAMES]"""
import os
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from data_prep.sources import resize  # noqa: E402

SRC, DST = Path(sys.argv[1]), Path(sys.argv[2])
LIMIT = int(sys.argv[3]) if len(sys.argv) > 3 else 10**9


def one(path: Path) -> str:
    cv2.setNumThreads(1)
    out = DST / path.relative_to(SRC).with_suffix("")
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(path))
    n = 0
    while n < LIMIT:
        ok, bgr = cap.read()
        if not ok:
            break
        small = resize(bgr, 288)
        n += 1
        cv2.imwrite(str(out / f"{n:06d}.png"), small, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return f"{path.name}: {n} frames"


if __name__ == "__main__":
    files = sorted(p for p in SRC.rglob("*") if p.suffix in (".mp4", ".mkv", ".webm"))
    with Pool(os.cpu_count()) as pool:
        for line in pool.imap_unordered(one, files):
            print(line, flush=True)
