"""`upsample_file`: stream a video through an `Interpolator` and encode the result with ffmpeg,
plus the output timing rules (`plan_timing`). See docs/upsample.md.

Frames are (H, W, 3) uint8 RGB numpy arrays throughout.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from functools import partial

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.scenes import CUT_THRESHOLD, frame_signature, signature_score
from vinterp.blend import blend_frames
from vinterp.devices import reuse_freed_memory
from vinterp.inference import InferenceError, Interpolator
from vinterp.pipeline import InOrder, Prefetch, Sink, plan_threads, torch_threads
from vinterp.video_io import VideoIOError, open_source, snap_fps
from vinterp.video_out import (
    EncodeSettings,
    FrameWriter,
    check_output,
    is_sequence,
    recover_output,
)

# --- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Which frames of the (m+1)x timeline are written, and at what rate.

    The timeline holds input frame i at index i*(m+1) and the m in-betweens of pair (i, i+1)
    after it. Output frame k shows timeline frame floor(k*step + 1/2): the one nearest in
    time, never a blend. With n input frames there are L = (m+1)(n-1)+1 timeline frames and
    ceil((L - 1/2) / step) output frames, e.g. (m+1)(n-1)+1 by default.
    """

    factor: int  # m+1: timeline frames per input frame
    step: Fraction  # timeline frames per output frame (>= 1)
    out_fps: Fraction
    keeps_duration: bool
    description: str

    def timeline_index(self, k: int) -> int:
        return math.floor(k * self.step + Fraction(1, 2))

    def selected(self, j: int) -> bool:
        """Whether timeline frame j is written."""
        k = math.ceil((j - Fraction(1, 2)) / self.step)
        return self.timeline_index(k) == j

    def count(self, n_in: int) -> int:
        """Output frames for `n_in` input frames."""
        if n_in <= 0:
            return 0
        length = self.factor * (n_in - 1) + 1
        return math.ceil((length - Fraction(1, 2)) / self.step)


def plan_timing(m: int, in_fps: Fraction, fps: float | None = None, factor: int | None = None,
                slowmo: bool = False) -> Timing:
    """Output timing for a 2:m model. Default: (m+1)x the rate, same duration. `factor` F (a
    divisor of m+1): Fx the rate. `fps`: any rate up to (m+1)x, nearest timeline frames.
    `slowmo`: the input rate, F (default m+1) times longer. Raises `InferenceError` for a
    request this model cannot serve."""
    full = m + 1
    name = f"2:{m} model"
    if fps is not None and (slowmo or factor is not None):
        raise InferenceError("--fps sets the output rate itself; do not combine it with "
                             "--slowmo or --factor")
    if factor is not None:
        divisors = [d for d in range(1, full + 1) if full % d == 0]
        if factor not in divisors:
            raise InferenceError(
                f"--factor {factor}: this {name} makes {full}x frames, so --factor must divide "
                f"{full} ({', '.join(map(str, divisors))}); use --fps for other rates")
    f = factor or full
    if fps is not None:
        if fps <= 0:
            raise InferenceError(f"--fps must be positive, got {fps}")
        target = snap_fps(fps)
        top = in_fps * full
        if target > top:
            raise InferenceError(
                f"--fps {fps:g} is above what this {name} makes from {float(in_fps):.4g} fps "
                f"input ({float(top):.4g} fps); ask for at most that, or use --slowmo")
        return Timing(full, in_fps * full / target, target, True,
                      f"{float(target):.4g} fps from the {full}x timeline (nearest frames)")
    step = Fraction(full, f)
    if slowmo:
        return Timing(full, step, in_fps, f == 1,
                      f"{f}x slow motion at {float(in_fps):.4g} fps")
    return Timing(full, step, in_fps * f, True, f"{f}x frame rate")


def atempo_chain(speed: float) -> str:
    """An ffmpeg audio filter changing tempo by `speed` (pitch kept); atempo takes 0.5-100."""
    parts = []
    while speed < 0.5:
        parts.append(0.5)
        speed /= 0.5
    parts.append(speed)
    return ",".join(f"atempo={p:.6f}" for p in parts)


# --- streaming -------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpsampleSummary:
    """What `upsample_file` did."""

    input: str
    output: str
    frames_in: int
    frames_out: int
    seconds: float
    in_fps: float
    in_fps_note: str  # where the input rate came from
    out_fps: float
    timing: str
    width: int  # output size (odd sizes are padded to even for yuv420p)
    height: int
    model_pairs: int  # pairs sent through the network
    static_pairs: int  # (near-)identical pairs, blended instead
    scene_cuts: int  # pairs across a cut, nearest frame repeated instead
    audio: str  # copied | re-encoded | stretched | dropped | none
    notices: tuple[str, ...] = ()


def _plan_audio(src, output, timing: Timing, stretch: bool,
                note: Callable[[str], None]) -> tuple[str | None, str | None, str]:
    """Where the output's audio comes from, the filter it goes through, and what to report."""
    if not src.audio_codec:
        return None, None, "none"
    if is_sequence(output):
        note("audio is not written to an image sequence")
        return None, None, "dropped"
    if timing.keeps_duration:
        return src.path, None, "none"
    if stretch:
        return src.path, atempo_chain(float(timing.step / timing.factor)), "none"  # 1/slow-down
    note("--slowmo: audio dropped (it would end long before the video); "
         "pass --stretch-audio to slow it down with the pitch kept")
    return None, None, "dropped"


def _pair_kind(prev: np.ndarray, cur: np.ndarray, lo: int, m: int, timing: Timing,
               cut: bool, static_tolerance: int) -> str:
    """How the in-betweens of a pair are made: skip (none is written), static (blend), cut
    (repeat the nearest endpoint) or model."""
    if not any(timing.selected(j) for j in range(lo, lo + m)):
        return "skip"
    if int(cv2.absdiff(prev, cur).max()) <= static_tolerance:
        return "static"
    return "cut" if cut else "model"


def _mids(kind: str, a: np.ndarray, b: np.ndarray, m: int, made) -> list:
    if kind == "model":
        return list(next(made))
    if kind == "static":
        return blend_frames(a, b, m)
    if kind == "cut":  # nearest endpoint in time; the midpoint keeps the earlier
        return [a if 2 * k <= m + 1 else b for k in range(1, m + 1)]
    return [None] * m  # no in-between of this pair is written


def _interpolate(interp: Interpolator, todo: list) -> np.ndarray:
    """In-betweens `(B, m, H, W, 3)` of the model pairs `todo` ([kind, a, b, lo, before,
    after]); a model with context gets each pair's neighbours, a missing one given as its
    endpoint (which the model reads as none)."""
    a, b = np.stack([p[1] for p in todo]), np.stack([p[2] for p in todo])
    if not interp.context:
        return interp.interpolate_batch(a, b)
    before = np.stack([p[1] if p[4] is None else p[4] for p in todo])
    after = np.stack([p[2] if p[5] is None else p[5] for p in todo])
    return interp.interpolate_batch(a, b, before, after)


def _stream(frames, first: np.ndarray, interp: Interpolator, timing: Timing,
            writer: FrameWriter, name: str, *, batch: int, workers: int, scene_cuts: bool,
            static_tolerance: int, total: int | None, progress: bool,
            on_progress: Callable[[int, int], None] | None) -> dict[str, int]:
    """Decode, interpolate and encode every frame, then commit the output; on any error or
    interrupt the partial output is removed. Returns the counts for the summary."""
    m, full = interp.m, interp.factor
    counts = {"in": 1, "out": 0, "model": 0, "static": 0, "cut": 0}
    bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True,
               file=sys.stderr, smoothing=0.05, desc="upsample")
    prefetch = Prefetch(frames, depth=2 * batch + 2)
    sink = Sink(writer, depth=2 * batch * full + 2)
    order = InOrder(partial(_interpolate, interp), workers)

    def emit(frame: np.ndarray, j: int) -> None:
        if timing.selected(j):
            sink.put(frame)
            counts["out"] += 1

    def flush(pending: list, wait: bool = False) -> None:
        order.submit(pending)
        pending.clear()
        for made, batch in order.ready(wait):
            for kind, a, b, lo, _, _ in batch:
                for k, mid in enumerate(_mids(kind, a, b, m, made)):
                    if mid is not None:
                        emit(mid, lo + k)
                emit(b, lo + m)
                counts[kind] = counts.get(kind, 0) + 1
            bar.update(counts["out"] - bar.n)
            if on_progress is not None:
                on_progress(counts["in"], counts["out"])

    try:
        sig_prev = frame_signature(first) if scene_cuts else None
        emit(first, 0)
        # Each pair waits for the next input, its neighbour after (the "stream" prior reads the
        # inputs on both sides of a pair): [kind, a, b, lo, before, after].
        prev, pending, waiting, before = first, [], None, None
        for i, cur in enumerate(prefetch, start=1):
            if cur.shape != first.shape:
                raise VideoIOError(f"{name}: frame {i} is {cur.shape[1]}x{cur.shape[0]}, the "
                                   f"first is {first.shape[1]}x{first.shape[0]}")
            counts["in"] += 1
            lo = (i - 1) * full + 1
            sig = frame_signature(cur) if scene_cuts else None
            cut = scene_cuts and signature_score(sig_prev, sig) >= CUT_THRESHOLD
            kind = _pair_kind(prev, cur, lo, m, timing, cut, static_tolerance)
            if waiting is not None:
                waiting[5] = None if kind == "cut" else cur
                pending.append(tuple(waiting))
                if len(pending) >= batch:
                    flush(pending)
            waiting = [kind, prev, cur, lo, before, None]
            if kind == "model":  # its flows, while the network works on the pairs before it
                interp.prefetch(prev, cur)
            before = None if kind == "cut" else prev  # the next pair's neighbour before
            prev, sig_prev = cur, sig
        if waiting is not None:
            pending.append(tuple(waiting))
        flush(pending, wait=True)
        sink.finish()
        writer.commit()
    except BaseException:
        writer.abort()  # first: killing ffmpeg unblocks a write the sink thread may be in
        sink.close()
        bar.leave = False  # cleared, so the error or interrupt line stands alone
        raise
    finally:
        order.close()
        prefetch.close()
        bar.close()
    return counts


def upsample_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    model: Interpolator | str | os.PathLike | None = None,
    *,
    fps: float | None = None,
    factor: int | None = None,
    slowmo: bool = False,
    stretch_audio: bool = False,
    input_fps: float | None = None,
    encode: EncodeSettings = EncodeSettings(),
    overwrite: bool = False,
    batch_size: int = 0,
    scene_cuts: bool = True,
    static_tolerance: int = 2,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    tile: int = 0,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> UpsampleSummary:
    """Stream `input` (a video file or a folder of frames) through the model into `output` (a
    video file, or an image sequence such as `out/%06d.png`).

    Memory does not grow with the video's length: frames are decoded, interpolated in batches
    of `batch_size` pairs (0: 4 on GPU, 1 on CPU) and encoded as they go. The output is written
    to a temporary name and renamed at the end; any error or Ctrl-C removes it. Input frames
    are copied to the output unchanged; pairs across a scene cut repeat the nearest endpoint;
    pairs whose pixels differ by at most `static_tolerance` levels are blended, not sent through
    the network. On the CPU, `threads` (None: torch's count) are shared by up to
    `pipeline.MAX_PARALLEL_PAIRS` batches in the model at once (`pipeline.plan_threads`);
    torch's thread count is restored at the end. `notify` gets one-line notices;
    `on_progress(frames_in, frames_out)` is called after each batch. Raises `VideoIOError`,
    `DecodeError`, `CheckpointError` or `InferenceError` with a one-line message.
    """
    started = time.perf_counter()
    notices: list[str] = []
    # First, before the decoder's and the pairs' threads allocate: glibc's one-arena setting
    # only holds for threads that have not allocated yet.
    reuse_freed_memory()

    def note(msg: str) -> None:
        notices.append(msg)
        if notify is not None:
            notify(msg)

    recover_output(output)  # leftovers of killed runs first, so the checks see what is real
    check_output(output, (input,), overwrite, encode)
    src, frames = open_source(input, input_fps)
    with ExitStack() as done:  # on return or any error: the decoder, then our model's threads
        done.callback(getattr(frames, "close", lambda: None))
        interp = model
        if not isinstance(model, Interpolator):
            interp = Interpolator(model, device=device, precision=precision, tile=tile)
            done.callback(interp.close)  # its flow threads; a caller's model stays as it was
        return _upsample(input, src, frames, interp, output, fps=fps, factor=factor,
                         slowmo=slowmo, stretch_audio=stretch_audio, encode=encode,
                         overwrite=overwrite, batch_size=batch_size, scene_cuts=scene_cuts,
                         static_tolerance=static_tolerance, threads=threads,
                         progress=progress, note=note, on_progress=on_progress,
                         notices=notices, started=started)


def _upsample(input, src, frames, interp: Interpolator, output, *, fps, factor, slowmo,
              stretch_audio, encode, overwrite, batch_size, scene_cuts, static_tolerance,
              threads, progress, note, on_progress, notices, started) -> UpsampleSummary:
    """`upsample_file` once the source is open and the model loaded (the caller closes
    `frames` and the model it made)."""
    timing = plan_timing(interp.m, src.fps, fps, factor, slowmo)
    first = next(iter(frames), None)
    if first is None:
        raise InferenceError(f"{input}: no frames could be decoded (empty or broken video)")
    batch = batch_size or (4 if interp.device.type == "cuda" else 1)
    workers, per_worker = plan_threads(threads, interp.device)

    audio_from, audio_filter, audio = _plan_audio(src, output, timing, stretch_audio, note)
    writer = FrameWriter(output, src.width, src.height, timing.out_fps, encode,
                         audio_from=audio_from, audio_codec=src.audio_codec, overwrite=overwrite,
                         audio_filter=audio_filter)
    if writer.audio:
        audio = writer.audio
    if writer.padded:
        note(f"{src.width}x{src.height} has an odd side and yuv420p needs even ones: the output "
             f"is {writer.out_width}x{writer.out_height} (edge repeated); --lossless or an "
             f"image sequence keeps the exact size")
    total = timing.count(src.expected_frames) if src.expected_frames else None
    with torch_threads(per_worker):
        counts = _stream(frames, first, interp, timing, writer, str(input), batch=batch,
                         workers=workers, scene_cuts=scene_cuts,
                         static_tolerance=static_tolerance, total=total, progress=progress,
                         on_progress=on_progress)

    if counts["in"] == 1:
        note("one input frame: nothing to interpolate, it is written as a 1-frame output")
    if src.duration and counts["in"] > 2:
        avg = counts["in"] / src.duration
        if abs(avg - float(src.fps)) > 0.02 * float(src.fps) and src.kind == "video":
            note(f"decoded {counts['in']} frames over {src.duration:.2f} s ({avg:.3g} fps on "
                 f"average) but assumed {float(src.fps):.4g} fps ({src.fps_note}): variable frame"
                 f" rate, a wrong header or a damaged file; frames were taken as evenly spaced")
    return UpsampleSummary(
        input=str(input), output=str(output), frames_in=counts["in"], frames_out=counts["out"],
        seconds=time.perf_counter() - started, in_fps=float(src.fps), in_fps_note=src.fps_note,
        out_fps=float(timing.out_fps), timing=timing.description, width=writer.out_width,
        height=writer.out_height, model_pairs=counts["model"], static_pairs=counts["static"],
        scene_cuts=counts["cut"], audio=audio, notices=tuple(notices))
