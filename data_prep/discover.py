"""Finding sequences under the input paths: MOTChallenge sequences, video files and folders of
numbered frames, in a deterministic order with unique filesystem-safe names.

MOTChallenge: a folder holding `seqinfo.ini` or an `img1/` folder of images is one sequence;
its parent folder's name (`train` / `test`) gives the split (train / val). MOT17 ships each
sequence three times (`MOT17-02-DPM`, `-FRCNN`, `-SDP`) with identical frames: those are kept
once, under the base name (`MOT17-02`), when their frame files really are identical.
"""

from __future__ import annotations

import configparser
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from data_prep import manifest
from data_prep.decode import IMAGE_EXTS, VIDEO_EXTS, list_frame_files

DEFAULT_FPS = 30.0
_MOT_DETECTORS = re.compile(r"^(?P<base>.+)-(DPM|FRCNN|SDP)$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DiscoverError(Exception):
    """Input paths that cannot be used at all; the message is one line."""


@dataclass(frozen=True)
class Source:
    """One input sequence before decoding.

    kind: "mot" | "frames" (a folder of numbered images) | "video".
    path: the video file or the folder holding the frames.
    split: "train" | "val" from the MOT layout, or None (decided later by name hash).
    fps: frames per second if known before decoding (MOT seqinfo.ini, video header), else None.
    """

    kind: str
    path: Path
    name: str
    split: str | None = None
    fps: float | None = None
    expected_frames: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def safe_name(text: str) -> str:
    """A filesystem-safe name: letters, digits, '.', '_' and '-' only."""
    name = _SAFE.sub("_", text).strip("._") or "seq"
    return name[:120]


def _is_media_file(p: Path) -> bool:
    return p.suffix.lower() in VIDEO_EXTS


def _has_images(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def _read_seqinfo(ini: Path) -> dict:
    cp = configparser.ConfigParser()
    try:
        cp.read(ini)
        return {k.lower(): v for k, v in cp["Sequence"].items()}
    except (configparser.Error, KeyError, UnicodeDecodeError):
        return {}


def _mot_source(seq_dir: Path, notes: list[str]) -> Source | None:
    ini = seq_dir / "seqinfo.ini"
    info = _read_seqinfo(ini) if ini.is_file() else {}
    img_dir = seq_dir / info.get("imdir", "img1")
    if not img_dir.is_dir() or not _has_images(img_dir):
        notes.append(f"{seq_dir}: MOT sequence without frames in {img_dir.name}/, skipped")
        return None
    parent = seq_dir.parent.name.lower()
    split = "train" if parent == "train" else "val" if parent == "test" else None
    fps, expected = None, None
    own: list[str] = []
    if not info:
        what = "no seqinfo.ini" if not ini.is_file() else "an unreadable seqinfo.ini"
        own.append(f"{seq_dir}: {what}; assuming {DEFAULT_FPS:g} fps, size from the first frame")
    else:
        try:
            fps = float(info.get("framerate", "")) or None
        except ValueError:
            fps = None
        if fps is None:
            own.append(f"{seq_dir}: seqinfo.ini has no frameRate; assuming {DEFAULT_FPS:g} fps")
        try:
            expected = int(info.get("seqlength", ""))
        except ValueError:
            expected = None
    name = info.get("name") or seq_dir.name
    return Source("mot", img_dir, name, split, fps or DEFAULT_FPS, expected, tuple(own))


def _walk(root: Path, found: list[tuple[str, Path, Path]], top: Path) -> None:
    """Depth-first, sorted: (kind, path, top) with kind "mot" (path: the sequence folder),
    "frames" (a folder with images) or "video" (a file); top is the input path searched."""
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError:
        return
    names = {p.name for p in entries}
    if manifest.NAME in names and manifest.is_prepared(root):
        return  # an output of `vinterp prepare` (its pix2pix panels are not input frames)
    if "seqinfo.ini" in names or ("img1" in names and _has_images(root / "img1")):
        found.append(("mot", root, top))
        return
    if any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in entries):
        found.append(("frames", root, top))
    for p in entries:
        if p.name.startswith("."):
            continue
        if p.is_dir():
            _walk(p, found, top)
        elif p.is_file() and _is_media_file(p):
            found.append(("video", p, top))


def _frames_fingerprint(folder: Path) -> str:
    """Names and sizes of every frame file plus the bytes of the first, middle and last: equal
    fingerprints mean identical frames for all practical purposes, at the cost of a few reads."""
    files = list_frame_files(folder)
    h = hashlib.sha1()
    for p in files:
        h.update(f"{p.name}:{p.stat().st_size};".encode())
    for i in sorted({0, len(files) // 2, len(files) - 1}) if files else ():
        h.update(files[i].read_bytes())
    return h.hexdigest()


def _dedupe_mot(sources: list[Source], notes: list[str]) -> list[Source]:
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(sources):
        m = _MOT_DETECTORS.match(s.name) if s.kind == "mot" else None
        if m:
            groups.setdefault((m["base"], s.path.parent.parent.parent), []).append(i)
    drop: set[int] = set()
    rename: dict[int, str] = {}
    for (base, _), idx in groups.items():
        by_print: dict[str, list[int]] = {}
        for i in idx:
            by_print.setdefault(_frames_fingerprint(sources[i].path), []).append(i)
        for members in by_print.values():
            keep = members[0]
            rename[keep] = base if len(by_print) == 1 else sources[keep].name
            if len(members) > 1:
                dropped = ", ".join(sources[i].name for i in members[1:])
                notes.append(f"{sources[keep].path.parent}: identical frames in {dropped}; "
                             f"using them once as {rename[keep]}")
                drop.update(members[1:])
    out = []
    for i, s in enumerate(sources):
        if i in drop:
            continue
        if i in rename:
            s = Source(s.kind, s.path, rename[i], s.split, s.fps, s.expected_frames, s.notes)
        out.append(s)
    return out


def discover(paths: list[str | Path]) -> tuple[list[Source], list[str]]:
    """Sequences under `paths` (files or folders, searched recursively), plus notes (one line
    each) about what was skipped or assumed. Raises `DiscoverError` for a path that does not
    exist. Names are unique and filesystem-safe; the order is deterministic."""
    if not paths:
        raise DiscoverError("no input given; pass a MOTChallenge folder, videos or frame folders")
    notes: list[str] = []
    found: list[tuple[str, Path, Path]] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DiscoverError(f"{raw}: no such file or folder")
        p = p.resolve()
        if p.is_file():
            # named explicitly: tried as a video whatever its suffix
            found.append(("video", p, p.parent))
        else:
            before = len(found)
            _walk(p, found, p)
            if len(found) == before:
                empty = not any(True for _ in p.iterdir())
                notes.append(f"{raw}: " + ("empty folder" if empty else
                             "no video files or image frames found in this folder"))
    sources: list[Source] = []
    seen_paths: set[Path] = set()
    for kind, p, top in found:
        if p in seen_paths:
            continue
        seen_paths.add(p)
        if kind == "mot":
            s = _mot_source(p, notes)
            if s is not None:
                sources.append(s)
        elif kind == "frames":
            rel = p.relative_to(top).parts if p != top else (p.name,)
            sources.append(Source("frames", p, "_".join(rel), fps=DEFAULT_FPS,
                                  notes=(f"{p}: frame folder; assuming {DEFAULT_FPS:g} fps",)))
        else:
            sources.append(Source("video", p, p.stem))
    sources = _dedupe_mot(sources, notes)
    return _unique_names(sources), notes


def _unique_names(sources: list[Source]) -> list[Source]:
    used: set[str] = set()
    out = []
    for s in sources:
        base = safe_name(s.name)
        name, k = base, 2
        while name.lower() in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name.lower())
        out.append(Source(s.kind, s.path, name, s.split, s.fps, s.expected_frames, s.notes))
    return out

