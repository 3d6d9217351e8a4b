"""The model bundled with the package: it loads, interpolates, and moves things."""

from __future__ import annotations

import numpy as np

from synth import background
from vinterp.inference import Interpolator, default_model_path


def _scene(x: int, h: int = 128, w: int = 192, size: int = 24) -> np.ndarray:
    grey = background(h, w, seed=7).mean(-1, keepdims=True).astype(np.uint8)
    f = np.repeat(grey, 3, -1)
    f[52 : 52 + size, x : x + size] = (250, 30, 30)  # one red square on a grey texture
    return f


def test_bundled_default_model_loads_and_interpolates_a_pair():
    path = default_model_path()
    assert path is not None and path.stat().st_size <= 25 * 2**20
    interp = Interpolator(device="cpu")  # no checkpoint: the bundled default
    assert (interp.m, interp.factor) == (5, 6)
    a, b = _scene(40), _scene(52)
    mids = interp.interpolate_pair(a, b)
    assert len(mids) == 5
    assert all(m.shape == a.shape and m.dtype == np.uint8 for m in mids)
    # in-betweens lie between the endpoints, not somewhere else entirely
    for m in mids:
        assert np.abs(m.astype(int) - a).mean() < np.abs(b.astype(int) - a).mean() + 5


def test_default_model_moves_one_object_instead_of_fading():
    """A red square moving 12 px between the endpoints must appear once, opaque and whole, near
    its interpolated position in every in-between. A cross-fade fails this: it shows two
    half-transparent squares, opaque only where they overlap (12 px wide, not 24). So did
    luma-only DIS flow: in luma this red square (96) hardly differs from the grey texture
    around it (119 +- 23); the default model's prior also reads the chroma planes."""
    interp = Interpolator(device="cpu")
    x0, d, size = 40, 12, 24
    mids = interp.interpolate_pair(_scene(x0), _scene(x0 + d))
    for k, f in enumerate(mids, start=1):
        redness = (f[..., 0].astype(int) - f[..., 1].astype(int))[52 : 52 + size].mean(0)
        opaque = np.flatnonzero(redness > 0.75 * 220)
        assert opaque.size and np.all(np.diff(opaque) == 1), f"in-between {k}: not one object"
        assert abs(opaque.size - size) <= 3, f"in-between {k}: {opaque.size} px wide, not {size}"
        expected = x0 + d * k / 6
        assert abs(opaque[0] - expected) <= 4, f"in-between {k}: at {opaque[0]}, not {expected}"
