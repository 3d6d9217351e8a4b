"""PNG figures of evaluation windows: one row per method, the real frames on top.

Each row is a window as that method makes it: the two real endpoints at either end and the m
in-betweens between them (the top row: the real in-betweens), labelled on the left with the
method and its mean PSNR on the window. Written beside the HTML report so a window can be
shown where HTML cannot (a README, an issue).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vinterp.atomic import atomic_write

LABEL_WIDTH = 190


def _label(text: str, h: int) -> np.ndarray:
    import cv2

    tile = np.full((h, LABEL_WIDTH, 3), 255, np.uint8)
    for k, line in enumerate(text.split("\n")):
        cv2.putText(tile, line, (8, 24 + 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return tile


def strip_image(sample, methods: list[str], scale: float = 0.5) -> np.ndarray:
    """`(rows * h', LABEL_WIDTH + (m + 2) w', 3)` uint8 RGB: the real window, then each of
    `methods` (names in `sample.preds`), frames resized by `scale`."""
    import cv2

    def small(f: np.ndarray) -> np.ndarray:
        h, w = f.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(f, size, interpolation=cv2.INTER_AREA)

    ends = sample.frames[0], sample.frames[-1]
    rows = [("real frames", list(sample.frames))]
    for name in methods:
        psnr = float(np.mean(sample.psnr[name]))
        rows.append((f"{name}\n{psnr:.2f} dB", [ends[0], *sample.preds[name], ends[1]]))
    out = []
    for label, frames in rows:
        tiles = [small(f) for f in frames]
        h = tiles[0].shape[0]
        sep = np.full((h, 2, 3), 255, np.uint8)
        body = [x for t in tiles for x in (t, sep)][:-1]
        out.append(np.concatenate([_label(label, h), *body], 1))
        out.append(np.full((2, out[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(out[:-1], 0)


def write_strip(path: Path, sample, methods: list[str]) -> Path:
    """`strip_image` as a PNG at `path`, written atomically."""
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(strip_image(sample, methods), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"cannot encode {path}")
    with atomic_write(path) as f:
        f.write(png.tobytes())
    return path
