"""The prepared dataset's manifest: the one module that writes and reads `manifest.json`.

`vinterp prepare` writes it (`manifest_text`); `vinterp.dataset` (training) and
`vinterp.eval_sources` (evaluation) read it with `read_manifest`; `data_prep.discover` skips
folders that hold one (`is_prepared`). Layout (JSON, one sequence / window per line):

    format: "vinterp-prepared"   version: VERSION   config: the PrepareConfig used
    inbetweens: m (windows hold m + 2 frames)
    sequences: [{name, source, split, fps, frames, height, width, file, cuts}]
               file: frames/<name>.npy; cuts: frame c follows a scene cut (optional)
    windows:   [{seq, start, step, split, weight}]   frames start + k * step, k = 0 .. m + 1
    dropped: {reason: count}     summary: counts per split
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = "manifest.json"
FORMAT, VERSION = "vinterp-prepared", 1


class ManifestError(Exception):
    """A manifest that is missing, unreadable, foreign or inconsistent; one line, saying what
    to do."""


@dataclass(frozen=True)
class Sequence:
    """One stored sequence: `file` holds its frames, `(frames, height, width, 3)` uint8."""

    name: str
    split: str
    frames: int
    height: int
    width: int
    file: Path  # absolute (the manifest's folder joined with the stored relative path)
    fps: float = 0.0
    source: str = ""
    cuts: tuple[int, ...] = ()  # scene cuts: cut c lies between frames c - 1 and c


@dataclass(frozen=True)
class Window:
    """Frames `start + k * step` (k = 0 .. m + 1) of sequence `seq`."""

    seq: str
    start: int
    step: int
    split: str
    weight: float = 1.0


@dataclass(frozen=True)
class Manifest:
    root: Path
    inbetweens: int
    sequences: dict[str, Sequence]
    windows: tuple[Window, ...]
    raw: dict[str, Any]  # the whole JSON document (config, dropped, summary, ...)

    def split(self, name: str) -> list[Window]:
        """The windows of split `name`, in stored order."""
        return [w for w in self.windows if w.split == name]

    def splits(self) -> list[str]:
        return sorted({w.split for w in self.windows})


def path(root: str | Path) -> Path:
    return Path(root) / NAME


def is_prepared(root: str | Path) -> bool:
    """Whether `root` is a folder written by `vinterp prepare` (cheap: reads 200 bytes)."""
    try:
        with open(path(root), "rb") as f:
            return FORMAT.encode() in f.read(200)
    except OSError:
        return False


def manifest_text(manifest: dict) -> str:
    """JSON with one sequence / window per line: readable, diffable and compact."""
    out = ["{"]
    keys = list(manifest)
    for i, key in enumerate(keys):
        value = manifest[key]
        end = "," if i < len(keys) - 1 else ""
        if isinstance(value, list) and value:
            body = ",\n".join("  " + json.dumps(v, sort_keys=False) for v in value)
            out.append(f" {json.dumps(key)}: [\n{body}\n ]{end}")
        else:
            out.append(f" {json.dumps(key)}: {json.dumps(value)}{end}")
    out.append("}")
    return "\n".join(out) + "\n"


def _load_json(root: Path) -> dict:
    p = path(root)
    if not p.is_file():
        raise ManifestError(f"no prepared dataset at {root} (missing {NAME}); run "
                            "`vinterp prepare PATH` first or pass the folder it wrote (--data)")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{p} is not readable JSON ({e}); rerun `vinterp prepare`") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"{p} is not a vinterp dataset manifest; rerun `vinterp prepare`")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ManifestError(f"{p} has manifest version {version}; this vinterp reads up to "
                            f"{VERSION}: upgrade vinterp or rerun `vinterp prepare`")
    return doc


def read_manifest(root: str | Path) -> Manifest:
    """Read and check `<root>/manifest.json`; raises `ManifestError` saying what to do."""
    root = Path(root)
    doc = _load_json(root)
    p = path(root)
    try:
        seqs = {s["name"]: Sequence(
            name=s["name"], split=s["split"], frames=int(s["frames"]), height=int(s["height"]),
            width=int(s["width"]), file=root / s["file"], fps=float(s.get("fps", 0.0)),
            source=str(s.get("source", "")), cuts=tuple(int(c) for c in s.get("cuts", ())))
            for s in doc.get("sequences", [])}
        windows = tuple(Window(w["seq"], int(w["start"]), int(w.get("step", 1)), w["split"],
                               float(w.get("weight", 1.0))) for w in doc.get("windows", []))
        inbetweens = int(doc["inbetweens"])
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"{p} has a malformed entry ({type(e).__name__}: {e}); rerun "
                            "`vinterp prepare`") from None
    unknown = next((w.seq for w in windows if w.seq not in seqs), None)
    if unknown is not None:
        raise ManifestError(f"{p}: a window refers to unknown sequence '{unknown}'; rerun "
                            "`vinterp prepare`")
    return Manifest(root, inbetweens, seqs, windows, doc)


def stored_inbetweens(root: str | Path) -> int | None:
    """The m of a prepared dataset's windows, or None if it has no readable manifest."""
    try:
        return int(_load_json(Path(root))["inbetweens"])
    except (ManifestError, KeyError, TypeError, ValueError):
        return None


__all__ = ["FORMAT", "Manifest", "ManifestError", "NAME", "Sequence", "VERSION", "Window",
           "is_prepared", "manifest_text", "read_manifest", "stored_inbetweens"]
