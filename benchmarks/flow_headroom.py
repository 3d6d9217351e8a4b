"""How much a flow-prior model can gain over the `dis` baseline: PSNR of warping variants on
real validation windows, from what a model can compute up to oracles that see the real frame.

    .venv/bin/python benchmarks/flow_headroom.py --data data/prepared_dev [--windows 40]

Windows: `--windows` spread evenly over the val split of a prepared dataset (7-frame windows,
frames as stored). Every row warps the endpoints with backward warps and scores the 5
in-betweens (mean PSNR over frames, dB):

- dis linear: the `dis` baseline (DIS medium both ways, F_t0 = -t F01, F_t1 = -(1-t) F10,
  time-weighted blend); also the untrained `flow_prior="dis"` model.
- dis Super SloMo approx.: the same flows combined as in Super SloMo (Jiang et al. 2018),
  F_t0 = -(1-t) t F01 + t^2 F10, F_t1 = (1-t)^2 F01 - t(1-t) F10.
- dis + fwd-bwd occlusion mask: the classical consistency check |F01 + F10(x + F01)| > 1 px
  marks pixels hidden in the other frame; the blend then takes the visible candidate.
- oracle mask on dis warps: per pixel, whichever warped endpoint is closer to the real frame
  (upper bound of what masks alone can give with these flows).
- oracle flows (teacher): DIS from the real in-between to each endpoint (`dataset
  .teacher_flows`, the distillation target), time-weighted blend (upper bound of flow
  corrections).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from vinterp.dataset import WindowDataset, teacher_flows
from vinterp.flows import dis_flow_pair


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(np.mean((a - b) ** 2), 1e-10)))


def warp(img: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Backward warp: `out(p) = img(p + f(p))`, bilinear, border replicated."""
    h, w = f.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/prepared_dev")
    ap.add_argument("--windows", type=int, default=40)
    args = ap.parse_args()
    ds = WindowDataset(args.data, "val", 7)
    scores: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for i in np.linspace(0, len(ds) - 1, args.windows).astype(int):
        fr = np.asarray(ds.frames(int(i)))
        a, b = fr[0].astype(np.float32), fr[-1].astype(np.float32)
        f01, f10 = dis_flow_pair(fr[0], fr[-1])
        teacher = teacher_flows(fr).numpy()
        hidden0 = np.linalg.norm(f01 + warp(f10, f01), axis=-1) > 1.0  # I_0 pixels gone in I_1
        hidden1 = np.linalg.norm(f10 + warp(f01, f10), axis=-1) > 1.0
        for k in range(1, len(fr) - 1):
            t, real = k / (len(fr) - 1), fr[k].astype(np.float32)

            def add(name, w0, w1, mask=None, t=t, real=real):
                mask = (1 - t) if mask is None else mask
                scores.setdefault(name, []).append(_psnr(np.rint(mask * w0 + (1 - mask) * w1),
                                                         real))

            ft0, ft1 = -t * f01, -(1 - t) * f10
            w0, w1 = warp(a, ft0), warp(b, ft1)
            add("dis linear (the dis baseline)", w0, w1)
            add("dis Super SloMo approx.", warp(a, -(1 - t) * t * f01 + t * t * f10),
                warp(b, (1 - t) ** 2 * f01 - t * (1 - t) * f10))
            v0 = (1 - t) * (~(warp(hidden0.astype(np.float32), ft0) > 0.5))
            v1 = t * (~(warp(hidden1.astype(np.float32), ft1) > 0.5))
            both = (v0 + v1) == 0
            m = np.where(both, 1 - t, v0 / np.maximum(v0 + v1, 1e-6))[..., None]
            add("dis + fwd-bwd occlusion mask", w0, w1, m)
            closer = (np.abs(w0 - real).sum(-1) < np.abs(w1 - real).sum(-1))[..., None]
            add("oracle mask on dis warps", w0, w1, closer.astype(np.float32))
            tf = teacher[k - 1].transpose(0, 2, 3, 1)  # (endpoint, H, W, dx dy trust)
            add("oracle flows (teacher), time blend", warp(a, tf[0, ..., :2]),
                warp(b, tf[1, ..., :2]))
    print(f"{args.windows} val windows of {args.data}, {time.perf_counter() - t0:.0f} s")
    print(f"{'variant':<40} {'PSNR dB':>8}")
    for name, v in scores.items():
        print(f"{name:<40} {np.mean(v):8.2f}")


if __name__ == "__main__":
    main()
