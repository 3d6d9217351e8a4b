"""The threads of `upsample`'s stream: decoding ahead of the model (`Prefetch`), encoding
behind it (`Sink`), and frame pairs through the model several at once, written back in order
(`InOrder`, with `plan_threads` and `torch_threads` for the CPU). Each queue is bounded, so
memory does not grow with the video's length."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from vinterp.video_out import FrameWriter

_END = object()


class Prefetch:
    """Iterate `it` on a background thread, `depth` items ahead (decoding overlaps the model).
    `close()` stops the thread and closes `it` there, which ends its ffmpeg process."""

    def __init__(self, it, depth: int):
        self._it, self._q = it, queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._it:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put((_END, e))
        finally:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is _END:
                return
            if isinstance(item, tuple) and len(item) == 2 and item[0] is _END:
                raise item[1]
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


class Sink:
    """Feed a `FrameWriter` from a background thread so encoding overlaps the model."""

    def __init__(self, writer: FrameWriter, depth: int):
        self._writer, self._q = writer, queue.Queue(max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (frame := self._q.get()) is not _END:
                self._writer.write(frame)
        except BaseException as e:
            self._error = e

    def put(self, frame: np.ndarray) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._q.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """After an error: let the thread end (the writer is aborted by its owner)."""
        while self._thread.is_alive():
            try:
                self._q.put_nowait(_END)
            except queue.Full:
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    pass
            self._thread.join(timeout=0.1)


# On the CPU, frame pairs are interpolated up to this many at once, each on its own thread(s).
# Splitting one pair's work over two cores wastes much of the second: the network's layers at
# 1/4 resolution are small and OpenMP's threads wait for each other at every operation, the
# more so while the flows of the next pair are computed beside them. Single-threaded pairs
# never wait for each other, and one pair more than there are threads keeps a core busy while
# a pair waits (for its flows, for Python's lock): docs/upsample.md.
MAX_PARALLEL_PAIRS = 3


def plan_threads(threads: int | None, device: torch.device) -> tuple[int, int]:
    """(pairs in the model at once, torch threads each) for `threads` CPU threads (None:
    torch's current count, by default the number of cores): one pair more than threads, at
    most MAX_PARALLEL_PAIRS; one pair at a time for a single thread. Off the CPU: one batch at
    a time, torch's threads unchanged (None)."""
    if device.type != "cpu":
        return 1, threads
    threads = threads or torch.get_num_threads()
    workers = 1 if threads == 1 else min(threads + 1, MAX_PARALLEL_PAIRS)
    return workers, max(1, threads // workers)


@contextmanager
def torch_threads(n: int | None):
    """torch's intra-op threads set to `n` (process-wide) for the block, then restored."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class InOrder:
    """Batches of pairs through `run` on `workers` threads, one batch per thread; batches come
    back in the order they were given (what `run` returned for the batch's model pairs, or
    None for a batch without any, with the batch itself). A pair is a list whose first item
    is its kind ("model": it goes through `run`)."""

    def __init__(self, run: Callable[[list], np.ndarray], workers: int):
        self._run, self._workers = run, workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="pairs")
        self._queue: deque = deque()  # (future of the in-betweens or None, batch), oldest first

    def submit(self, batch: list) -> None:
        todo = [p for p in batch if p[0] == "model"]
        job = self._pool.submit(self._run, todo) if todo else None
        self._queue.append((job, list(batch)))

    def ready(self, wait: bool = False):
        """Yield `(in-betweens iterator or None, batch)`, oldest first: those already done, and
        the oldest ones until fewer than `workers` are in the model (memory stays bounded);
        with `wait`, all."""
        q = self._queue
        while q and (wait or len(q) > 2 * self._workers + 2
                     or sum(job is not None for job, _ in q) >= self._workers
                     or q[0][0] is None or q[0][0].done()):
            job, batch = q.popleft()
            yield (None if job is None else iter(job.result())), batch

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)  # a running batch ends within a pair
