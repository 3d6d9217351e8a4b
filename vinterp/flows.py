"""Classical optical flow for the flow head's prior, in numpy and OpenCV (no torch): DIS on
luma and chroma (`FLOW_METHODS`), backward flows by inversion, the frame pairs a pair's prior
needs (`flow_requests`), and the cache that computes each flow of a stream once (`FlowCache`).
Flows are `(H, W, 2)` float32 pixels (dx, dy) between `(H, W, 3)` uint8 RGB frames."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future

import numpy as np


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """OpenCV DIS (medium preset) from `a` to `b`, two `(H, W, 3)` uint8 RGB frames: `(H, W, 2)`
    float32 pixels (dx, dy) with `a(p) ~ b(p + F(p))`. The `dis` baseline's flow."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY),
                    None)


# DIS sees one grey plane. In luma, content whose colour differs from its surroundings but not
# its brightness is invisible (a red square, luma 96, on grey 119 +- 23: DIS finds ~3 of its
# 12 px of motion). `dis_colour_flow` also runs DIS on the two chroma planes, at half
# resolution as video stores them, and takes a chroma flow only where it explains the frames
# better than luma's by a clear margin: on 6 windows of each of 8 training clips the margin of
# 4, 8 or 16 grey levels scored the same as luma alone (-0.003 to -0.001 dB mean), so the
# rule only acts where luma is blind.
COLOUR_MARGIN = 8.0  # grey levels (0-255) of mean abs RGB warp error
COLOUR_BLUR = 7  # box (pixels of the frames compared) the warp errors are averaged over
CHROMA_PRESET = "MEDIUM"  # OpenCV DIS preset of the chroma flows

_GRIDS: dict[tuple[int, int], np.ndarray] = {}  # pixel coordinates per frame size, made once
_MEAN_RGB = np.full((1, 3), 1 / 3, np.float32)  # cv2.transform weights: channel mean


def _pixel_grid(h: int, w: int) -> np.ndarray:
    """`(h, w, 2)` float32 pixel coordinates (x, y), made once per size (`cv2.remap` maps)."""
    grid = _GRIDS.get((h, w))
    if grid is None:
        grid = _GRIDS[(h, w)] = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32),
                                                      np.arange(h, dtype=np.float32)))
    return grid


def warp_error(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`(h, w)` float32: mean abs RGB difference of `b` warped back by `flow` and `a`, in grey
    levels, box-averaged over COLOUR_BLUR pixels."""
    import cv2

    warped = cv2.remap(b, _pixel_grid(*a.shape[:2]) + flow, None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    diff = cv2.transform(cv2.absdiff(warped, a).astype(np.float32), _MEAN_RGB)
    return cv2.blur(diff, (COLOUR_BLUR, COLOUR_BLUR))


def dis_colour_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`dis_flow`, except where DIS on a chroma plane (Cr or Cb of YCrCb, frames halved)
    explains `b` better by COLOUR_MARGIN grey levels (`warp_error`, judged at half
    resolution): there that flow, upsampled. Same arguments and result as `dis_flow`; about
    1.6x its time (two more DIS calls at a quarter of the pixels, three warps) where luma's
    warp error exceeds COLOUR_MARGIN anywhere, ~1.05x where it does not."""
    import cv2

    flow = dis_flow(a, b)
    h, w = a.shape[:2]
    hs, ws = h // 2, w // 2
    if min(hs, ws) < 16:  # too small for a DIS pyramid; luma alone
        return flow
    a2, b2 = (cv2.resize(f, (ws, hs), interpolation=cv2.INTER_AREA) for f in (a, b))
    scale = np.array([w / ws, h / hs], np.float32)
    small = cv2.resize(flow, (ws, hs), interpolation=cv2.INTER_AREA) / scale
    best = warp_error(a2, b2, small) - COLOUR_MARGIN
    # A chroma flow's error is >= 0, so it can only win where luma's error exceeds the margin:
    # where none does, the chroma flows cannot change the result and are not computed (the
    # same flow, ~40% less time; most pairs of a static camera, none of sam2_bedroom's).
    if best.max() <= 0:
        return flow
    ya, yb = cv2.cvtColor(a2, cv2.COLOR_RGB2YCrCb), cv2.cvtColor(b2, cv2.COLOR_RGB2YCrCb)
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{CHROMA_PRESET}"))
    chroma = [dis.calc(np.ascontiguousarray(ya[..., c]), np.ascontiguousarray(yb[..., c]), None)
              for c in (1, 2)]
    choice = np.zeros((hs, ws), np.uint8)
    for i, f in enumerate(chroma, 1):
        err = warp_error(a2, b2, f)
        better = err < best
        best[better], choice[better] = err[better], i
    for i, f in enumerate(chroma, 1):
        # Masked copies in OpenCV: numpy's boolean indexing took ~5 ms a flow at 640x360.
        where = cv2.resize((choice == i).view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        if where.any():
            up = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
            up *= scale
            cv2.copyTo(up, where, flow)
    return flow


# Optical flow methods a flow prior can use (`ModelConfig.flow_method`); looked up when called.
FLOW_METHODS = {"dis": dis_flow, "dis_colour": dis_colour_flow}

# How a prior gets the flows against time order (F10, F0,-1; `ModelConfig.backward_flows`):
# "dis", their own flow-method call; "inverted", the forward flow inverted (`invert_flow`),
# so a stream costs one flow-method call per input pair instead of two.
BACKWARD_FLOWS = ("dis", "inverted")
# One step: on 6 windows of each of 8 training clips (the `fallback` prior with the flow
# reversal, 640x360) +0.027 dB mean over "dis" backward flows, worst clip -0.159; 2 / 4 steps
# -0.012 / -0.017 (`benchmarks/colour_flow.py --windows 6 --backward 1,2,4`).
INVERSION_STEPS = 1


def invert_flow(flow: np.ndarray, steps: int | None = None) -> np.ndarray:
    """The flow the other way, `(H, W, 2)` float32 pixels: G with G(q) = -F(q + G(q)) (where
    `a(p) ~ b(p + F(p))`, then `b(q) ~ a(q + G(q))`), by `steps` (INVERSION_STEPS)
    fixed-point steps from -F."""
    import cv2

    steps = INVERSION_STEPS if steps is None else steps
    grid = _pixel_grid(*flow.shape[:2])
    g = -flow
    for _ in range(steps):
        g = cv2.remap(flow, grid + g, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        np.negative(g, out=g)
    return g


def check_backward(backward: str) -> None:
    if backward not in BACKWARD_FLOWS:
        raise ValueError(f"unknown backward flows {backward!r}; choose one of "
                         f"{', '.join(BACKWARD_FLOWS)}")


def flow_requests(a: np.ndarray, b: np.ndarray, prev: np.ndarray | None,
                  nxt: np.ndarray | None, backward: str = "dis") -> list:
    """The frame pairs whose flows a pair's prior needs (None: no neighbour there), in the
    order `resolve_flows` takes their flows: F01, F10, F0,-1, F12 with "dis" backward flows;
    F01, F-1,0, F12 with "inverted" ones (the stream's forward flows only)."""
    check_backward(backward)
    if backward == "inverted":
        return [(a, b), None if prev is None else (prev, a), None if nxt is None else (b, nxt)]
    return [(a, b), (b, a), None if prev is None else (a, prev), None if nxt is None else (b, nxt)]


def resolve_flows(flows: list, backward: str = "dis") -> list:
    """`flow_requests`' flows -> [F01, F10, F0,-1 or None, F12 or None]."""
    if backward == "inverted":
        f01, f_prev, f12 = flows
        return [f01, invert_flow(f01), None if f_prev is None else invert_flow(f_prev), f12]
    return list(flows)


def dis_flow_pair(a: np.ndarray, b: np.ndarray, method: str = "dis"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`(F01, F10)`: the flow `method` (`FLOW_METHODS`) both ways between two `(H, W, 3)` uint8
    RGB frames. The one definition shared by the `dis`, `stream` and `fallback` baselines and
    the generator's flow priors, so an untrained prior model reproduces its baseline."""
    fn = FLOW_METHODS[method]
    return fn(a, b), fn(b, a)


class FlowCache:
    """The last few flows of one `method` (`FLOW_METHODS`), keyed by the two frames' bytes.

    In a stream, pair i's flow to the frame before (F_0,-1) is pair i-1's F10 and its flow to
    the frame after (F_12) is pair i+1's F01, so with this cache the stream prior costs two DIS
    calls per pair, as the `dis` prior does; results are identical to recomputing them. Flows
    not in the cache are computed on `workers` threads at once (OpenCV releases the GIL).
    Thread-safe: pairs interpolated on several threads at once share it, and a flow that one
    thread is computing is waited for by the others, not computed twice.
    """

    def __init__(self, size: int = 8, workers: int = 2, method: str = "dis") -> None:
        if method not in FLOW_METHODS:
            raise ValueError(f"unknown flow method {method!r}; choose one of "
                             f"{', '.join(FLOW_METHODS)}")
        self.size, self.workers, self.method = size, workers, method
        self._flows: dict[tuple, Future] = {}
        self._pool, self._pid = None, None
        self._lock = threading.Lock()

    @staticmethod
    def _key(a: np.ndarray, b: np.ndarray) -> tuple:
        return (a.shape, hash(a.tobytes()), hash(b.tobytes()))

    def _executor(self):
        # A forked process (a DataLoader worker) inherits the pool object but not its threads:
        # it would wait forever on work submitted there, so each process makes its own.
        if self._pool is None or self._pid != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dis")
            self._pid = os.getpid()
        return self._pool

    def prefetch(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Start computing the flows of `pairs` in the background (a stream's next pair, while
        the network runs on this one); `flows` then waits for them instead of starting over.
        The arrays must not be modified until then."""
        with self._lock:
            for a, b in pairs:
                key = self._key(a, b)
                if key not in self._flows:
                    self._store(key, self._executor().submit(self._flow, a, b))

    def flows(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """The flow of each `(a, b)` of `pairs`, from the cache where it can."""
        keys = [self._key(a, b) for a, b in pairs]
        inline = []  # computed on this thread: (future, pair)
        with self._lock:
            todo = {k: p for k, p in zip(keys, pairs, strict=True) if k not in self._flows}
            pooled = len(todo) > 1 and self.workers > 1
            for k, p in todo.items():
                if pooled:
                    self._flows[k] = self._executor().submit(self._flow, *p)
                else:
                    self._flows[k] = Future()
                    inline.append((self._flows[k], p))
            # Taken before anything is stored back: a batch may need more flows than the cache
            # holds, and storing evicts the oldest.
            wanted = {k: self._flows[k] for k in keys}
        for fut, p in inline:
            try:
                fut.set_result(self._flow(*p))
            except BaseException as e:
                fut.set_exception(e)
        got = {k: f.result() for k, f in wanted.items()}
        with self._lock:
            for k, f in wanted.items():
                self._store(k, f)
        return [got[k] for k in keys]

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return FLOW_METHODS[self.method](a, b)

    def close(self) -> None:
        """Finish the flows in progress, stop the worker threads and forget the cached flows
        (a stream that has ended). The cache still works afterwards, with new threads."""
        with self._lock:
            pool, self._pool, self._flows = self._pool, None, {}
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=True)

    def _store(self, key: tuple, value: Future) -> None:
        self._flows.pop(key, None)
        self._flows[key] = value  # most recent last
        while len(self._flows) > self.size:
            del self._flows[next(iter(self._flows))]

    def __getstate__(self) -> dict:  # a thread pool does not pickle; a copy starts without
        return {"size": self.size, "workers": self.workers, "method": self.method}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)
