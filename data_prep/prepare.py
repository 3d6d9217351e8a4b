"""`vinterp prepare`: turn MOTChallenge folders, videos and frame folders into a training set.

Output (the contract `vinterp.dataset` reads; the manifest's format: `data_prep.manifest`):
    <out>/manifest.json        sequences, windows (seq, start, step, split, weight), counts
    <out>/frames/<name>.npy    (T, H, W, 3) uint8 RGB per stored sequence, for np.load(mmap)
    <out>/pix2pix/{train,val}/<name>_<start>.jpg   with --format pix2pix: the window's frames
                                                   side by side (the aligned pix2pix layout)

Every frame of a sequence is stored once (resized, short side at most `size`); windows are
indices into it. The dataset is built under `.<out>.partial-<pid>` next to `<out>` and renamed
at the end, so an interrupted run never leaves a half dataset under the final name.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data_prep import manifest as manifest_io
from data_prep.decode import DecodeError, probe_video
from data_prep.discover import DiscoverError, Source, discover
from data_prep.npywriter import NpyFrameWriter
from data_prep.scenes import CUT_THRESHOLD, signature_score
from data_prep.sources import frame_files, iter_items
from data_prep.staging import exchange, pid_alive, remove_path, remove_stale
from data_prep.windows import DEFAULT_STATIC_THRESHOLD, plan_windows, window_span

_LISTED_PROBLEMS = 5  # bad frames warned about one by one per sequence, then counted
SPLITS = ("train", "val")


class PrepareError(Exception):
    """Nothing usable, or an output that may not be written; the message is one line."""


@dataclass(frozen=True)
class PrepareConfig:
    """Options of `vinterp prepare` (see `docs/prepare.md`)."""

    inputs: tuple[str, ...]
    out: str = "data/prepared"
    inbetweens: int = 5  # M: windows hold M + 2 frames
    frame_step: int = 1  # K: a window takes every K-th stored frame
    stride: int = 1  # distance between window starts, in stored frames
    size: int = 288  # short side of stored frames, at most (0: keep the source size)
    val_fraction: float = 0.2  # share of non-MOT sequences put in val (by name hash)
    val_patterns: tuple[str, ...] = ()  # sequence names (fnmatch) forced into val
    static_threshold: float = DEFAULT_STATIC_THRESHOLD  # 0: keep static windows
    pix2pix: bool = False  # also write each window as one image of M + 2 panels
    pix2pix_ext: str = ".jpg"
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        if self.inbetweens < 1:
            raise PrepareError(f"--inbetweens must be at least 1 (got {self.inbetweens})")
        if self.frame_step < 1 or self.stride < 1:
            raise PrepareError("--frame-step and --stride must be at least 1")
        if self.size < 0:
            raise PrepareError(f"--size must be 0 (keep) or positive (got {self.size})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise PrepareError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if not 0.0 <= self.static_threshold < 1.0:
            raise PrepareError(f"--static-threshold is a share of pixels in [0, 1) (got "
                               f"{self.static_threshold}); 0 keeps every window")
        if self.pix2pix_ext not in (".jpg", ".png"):
            raise PrepareError(f"pix2pix images are .jpg or .png (got {self.pix2pix_ext})")

    def recorded(self) -> dict:
        """The options that decide the dataset's content (not where it goes or how it shows)."""
        d = asdict(self)
        for k in ("out", "overwrite", "progress"):
            d.pop(k)
        d["inputs"] = [str(Path(p).resolve()) for p in self.inputs]
        d["val_patterns"] = list(self.val_patterns)
        return d


@dataclass
class PrepareSummary:
    """What a run produced. `per_split[split]` has sequences, frames and windows counts."""

    out: str
    per_split: dict[str, dict[str, int]]
    dropped: dict[str, int]
    skipped: list[str] = field(default_factory=list)  # one line per skipped input/part
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    frames_decoded: int = 0

    def lines(self) -> list[str]:
        out = [f"prepared {self.out} in {self.seconds:.1f} s "
               f"({self.frames_decoded} frames read, "
               f"{self.frames_decoded / max(self.seconds, 1e-9):.0f} frames/s)"]
        for s in SPLITS:
            c = self.per_split[s]
            out.append(f"  {s:5s}: {_n(c['sequences'], 'sequence')}, {_n(c['frames'], 'frame')}, "
                       f"{_n(c['windows'], 'window')}")
        drop = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.dropped.items())
        out.append(f"  windows dropped: {drop}")
        if self.skipped:
            out.append(f"  skipped: {len(self.skipped)} (see the warnings above)")
        return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class _Part:
    """A run of consecutive readable frames of one source, of one size, stored in `path`."""

    path: Path
    first_label: str
    frames: int = 0
    height: int = 0
    width: int = 0
    cuts: list[int] = field(default_factory=list)
    thumbs: list[np.ndarray] = field(default_factory=list)


def _log_default(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _name_hash(name: str) -> float:
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / float(16**12)


def assign_splits(sources: list[Source], val_fraction: float,
                  patterns: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Split per sequence (never per window): `--val` patterns first, then the MOT folder
    (train / test), then a hash of the name against `val_fraction`, so adding inputs never moves
    another sequence. If the hash puts none of several sequences in val, the one with the lowest
    hash goes there. Returns name -> split and notes."""
    notes: list[str] = []
    split: dict[str, str] = {}
    matched = {p: False for p in patterns}
    free: list[Source] = []
    for s in sources:
        hits = [p for p in patterns if fnmatch.fnmatchcase(s.name.lower(), p.lower())]
        for p in hits:
            matched[p] = True
        if hits:
            split[s.name] = "val"
        elif s.split is not None:
            split[s.name] = s.split
        else:
            free.append(s)
            split[s.name] = "val" if _name_hash(s.name) < val_fraction else "train"
    shown = ", ".join(s.name for s in sources[:8]) + (", ..." if len(sources) > 8 else "")
    for p, hit in matched.items():
        if not hit:
            notes.append(f"--val {p!r} matches no sequence (names: {shown})")
    if val_fraction > 0 and len(free) >= 2 and all(split[s.name] == "train" for s in free):
        pick = min(free, key=lambda s: _name_hash(s.name))
        split[pick.name] = "val"
    return split, notes


def _expected_frames(src: Source, log: Callable[[str], None]) -> int | None:
    if src.kind != "video":
        n = len(frame_files(src))
        if src.expected_frames is not None and n != src.expected_frames:
            log(f"warning: {src.path}: {n} frame files but seqinfo.ini says seqLength="
                f"{src.expected_frames}")
        return n
    try:
        info = probe_video(src.path)
    except DecodeError:
        return None
    return round(info.duration * info.fps) if info.duration and info.fps else None


class _Builder:
    """Writes the frames of each source into a temporary dataset folder."""

    def __init__(self, cfg: PrepareConfig, root: Path, log: Callable[[str], None], bar):
        self.cfg, self.root, self.log, self.bar = cfg, root, log, bar
        self.span = window_span(cfg.inbetweens, cfg.frame_step)
        self.sequences: list[dict] = []
        self.windows: list[dict] = []
        self.dropped = {"scene_cut": 0, "static": 0}
        self.skipped: list[str] = []
        self.warnings: list[str] = []
        self.decoded = 0

    def warn(self, msg: str, skipped: bool = False) -> None:
        self.warnings.append(msg)
        if skipped:
            self.skipped.append(msg)
        self.log(f"warning: {msg}")

    def add_source(self, src: Source, split: str, expected: int | None) -> None:
        parts: list[_Part] = []
        cur: _Part | None = None
        writer: NpyFrameWriter | None = None
        prev_sig = None
        orig: tuple[int, int] | None = None
        info: list = []
        count = 0
        problems = 0

        def close() -> None:
            nonlocal writer, cur
            if writer is not None:
                cur.frames = writer.close()
                parts.append(cur)
            writer, cur = None, None

        try:
            for item in iter_items(src, self.cfg.size, info):
                self.bar.update(1)
                count += 1
                if item.frame is None:
                    problems += 1
                    if problems <= _LISTED_PROBLEMS:
                        self.warn(f"{src.path}: {item.label}: {item.problem}; "
                                  "the sequence is split there")
                    close()
                    continue
                self.decoded += 1
                if orig is not None and item.shape != orig:
                    self.warn(f"{src.path}: {item.label} is {item.shape[1]}x{item.shape[0]} "
                              f"but earlier frames are {orig[1]}x{orig[0]}; "
                              "the sequence is split there")
                    close()
                if writer is None:
                    orig = item.shape
                    h, w = item.frame.shape[:2]
                    path = self.root / "frames" / f".{src.name}.part{len(parts)}.npy"
                    cur = _Part(path, item.label, height=h, width=w)
                    writer = NpyFrameWriter(path, h, w)
                    prev_sig = None
                sig = item.signature
                if prev_sig is not None and signature_score(prev_sig, sig) >= CUT_THRESHOLD:
                    cur.cuts.append(writer.count)
                prev_sig = sig
                cur.thumbs.append(item.thumb)
                writer.write(item.frame)
        except DecodeError as e:
            if writer is not None:
                writer.abort()
            for p in parts:
                p.path.unlink(missing_ok=True)
            self.warn(f"{e}; skipped", skipped=True)
            return
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        close()
        if problems > _LISTED_PROBLEMS:
            self.warn(f"{src.path}: {problems - _LISTED_PROBLEMS} more unreadable or missing "
                      "frames (not listed); the sequence is split at each")
        if src.kind == "video" and expected and count < 0.9 * expected - 2:
            self.warn(f"{src.path}: decoded {count} frames but the header promises about "
                      f"{expected}; the file may be truncated, using the {count} that decode")
        fps = info[0].fps if info and info[0].fps else (src.fps or 30.0)
        self._finish(src, split, fps, parts)

    def _finish(self, src: Source, split: str, fps: float, parts: list[_Part]) -> None:
        need = self.span + 1
        usable = []
        for p in parts:
            if p.frames >= need:
                usable.append(p)
                continue
            p.path.unlink(missing_ok=True)
            where = "" if len(parts) == 1 else f" from {p.first_label}"
            self.warn(f"{src.path}: {p.frames} frames{where}, fewer than one window needs "
                      f"({need}); skipped", skipped=True)
        if not parts:
            self.warn(f"{src.path}: no readable frames; skipped", skipped=True)
        for k, p in enumerate(usable):
            name = src.name if len(usable) == 1 else f"{src.name}-part{k + 1}"
            final = self.root / "frames" / f"{name}.npy"
            os.replace(p.path, final)
            plan = plan_windows(p.frames, p.cuts, p.thumbs, self.cfg.inbetweens,
                                self.cfg.frame_step, self.cfg.stride, self.cfg.static_threshold)
            for key, v in plan.dropped.items():
                self.dropped[key] += v
            self.sequences.append({
                "name": name, "source": str(src.path), "split": split, "fps": float(fps),
                "frames": p.frames, "height": p.height, "width": p.width,
                "file": f"frames/{name}.npy", "cuts": list(p.cuts),
            })
            for s in plan.starts:
                self.windows.append({"seq": name, "start": s, "step": self.cfg.frame_step,
                                     "split": split, "weight": 1.0})
            if self.cfg.pix2pix:
                self._write_pix2pix(name, final, split, plan.starts)

    def _write_pix2pix(self, name: str, file: Path, split: str, starts) -> None:
        import cv2

        arr = np.load(file, mmap_mode="r")
        folder = self.root / "pix2pix" / split
        folder.mkdir(parents=True, exist_ok=True)
        k = np.arange(self.cfg.inbetweens + 2) * self.cfg.frame_step
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if self.cfg.pix2pix_ext == ".jpg" else []
        for s in starts:
            strip = np.concatenate(list(arr[s + k]), axis=1)
            path = folder / f"{name}_{s:06d}{self.cfg.pix2pix_ext}"
            cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), params)


def _check_not_nested(out: Path, inputs: tuple[str, ...]) -> None:
    """The output may neither be nor hold an input (it would replace it) nor lie inside one
    (the next run would read the dataset back as footage)."""
    o = out.resolve()
    for raw in inputs:
        p = Path(raw).resolve()
        if p == o or o in p.parents:
            raise PrepareError(f"the output {out} would replace the input {raw}; "
                               "choose another folder with -o")
        if p in o.parents:
            raise PrepareError(f"the output {out} is inside the input {raw}; "
                               "choose a folder outside it with -o")


def prepare(cfg: PrepareConfig, log: Callable[[str], None] | None = None) -> PrepareSummary:
    """Build the dataset described by `cfg` (see the module docstring). Warnings (skipped
    inputs, assumptions) go to `log` one line each. Raises `PrepareError` when nothing usable
    was found or the output exists without `overwrite`."""
    t0 = time.perf_counter()
    log = log or _log_default
    cfg.check()
    out = Path(cfg.out)
    _check_not_nested(out, cfg.inputs)
    # A killed run's leftovers first: an old dataset it had moved aside goes back in place.
    _recover(out.resolve().parent, out.name)
    if out.exists() and not out.is_dir():
        raise PrepareError(f"{out} is a file, not a dataset folder; choose another -o")
    if out.exists() and not cfg.overwrite:
        raise PrepareError(f"{out} already exists; pass --overwrite to replace it "
                           "or -o to write elsewhere")
    try:
        sources, notes = discover(list(cfg.inputs))
    except DiscoverError as e:
        raise PrepareError(str(e)) from None
    for n in notes:
        log(f"warning: {n}")
    for s in sources:
        for n in s.notes:
            log(f"note: {n}")
    if not sources:
        raise PrepareError("no videos, frame folders or MOTChallenge sequences found in "
                           + ", ".join(cfg.inputs))
    splits, split_notes = assign_splits(sources, cfg.val_fraction, cfg.val_patterns)
    for n in split_notes:
        log(f"warning: {n}")

    parent = out.resolve().parent
    tmp = parent / f".{out.name}.partial-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "frames").mkdir(parents=True)
        summary = _build(cfg, sources, splits, tmp, log)
        if summary.per_split["train"]["windows"] + summary.per_split["val"]["windows"] == 0:
            need = window_span(cfg.inbetweens, cfg.frame_step) + 1
            raise PrepareError("no usable windows in the input (see the warnings above); "
                               f"a sequence needs at least {need} readable frames in a row")
        _publish(tmp, out, cfg.overwrite)
    except OSError as e:  # the output side: disk full, no permission
        shutil.rmtree(tmp, ignore_errors=True)
        where = e.filename or out
        raise PrepareError(f"cannot write {where}: {e.strerror or e}; "
                           "check the output folder (-o) and free space") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.out = str(out)
    summary.seconds = time.perf_counter() - t0
    return summary


def _build(cfg: PrepareConfig, sources: list[Source], splits: dict[str, str], tmp: Path,
           log: Callable[[str], None]) -> PrepareSummary:
    from tqdm import tqdm

    expected = {s.name: _expected_frames(s, log) for s in sources}
    total = sum(v or 0 for v in expected.values())
    with tqdm(total=total or None, unit="frame", disable=not cfg.progress, file=sys.stderr,
              dynamic_ncols=True, desc="prepare") as bar:
        b = _Builder(cfg, tmp, log, bar)
        try:
            for s in sources:
                bar.set_postfix_str(s.name[:30], refresh=False)
                b.add_source(s, splits[s.name], expected[s.name])
        except BaseException:
            bar.leave = False  # cleared, so the error or interrupt line stands alone
            raise
    per_split = {}
    for sp in SPLITS:
        seqs = [q for q in b.sequences if q["split"] == sp]
        per_split[sp] = {"sequences": len(seqs), "frames": sum(q["frames"] for q in seqs),
                         "windows": sum(1 for w in b.windows if w["split"] == sp)}
    counts = {"per_split": per_split, "skipped": len(b.skipped)}
    manifest = {"format": manifest_io.FORMAT, "version": manifest_io.VERSION,
                "config": cfg.recorded(),
                "inbetweens": cfg.inbetweens, "sequences": b.sequences, "windows": b.windows,
                "dropped": b.dropped, "summary": counts}
    (tmp / manifest_io.NAME).write_text(manifest_io.manifest_text(manifest))
    return PrepareSummary(out="", per_split=per_split, dropped=dict(b.dropped),
                          skipped=b.skipped, warnings=b.warnings, frames_decoded=b.decoded)


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished dataset into place. With `overwrite` the old and new datasets are
    swapped in one atomic step where the system can (Linux), so `out` always names a complete
    dataset; elsewhere the old one is first renamed to `.NAME.old-PID`, which `_recover` puts
    back if a kill lands between the two renames."""
    if not (out.exists() or out.is_symlink()):
        os.replace(tmp, out)
        return
    if not overwrite:
        raise PrepareError(f"{out} appeared while preparing; pass --overwrite to replace it")
    if out.is_dir() and not out.is_symlink() and exchange(tmp, out):
        remove_path(tmp)  # now the old dataset
        return
    old = tmp.with_name(tmp.name.replace(".partial-", ".old-"))
    os.replace(out, old)
    os.replace(tmp, out)
    remove_path(old)


def _recover(parent: Path, name: str) -> None:
    """Undo what killed runs left: `.NAME.partial-PID` folders are removed; a `.NAME.old-PID`
    is the previous dataset, put back if a kill left nothing under NAME, else removed."""
    remove_stale(parent, f".{name}.partial-")
    for old in sorted(parent.glob(f".{name}.old-*")):
        pid = old.name.rsplit("-", 1)[1]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        final = parent / name
        if not (final.exists() or final.is_symlink()):
            os.replace(old, final)
        else:
            remove_path(old)
