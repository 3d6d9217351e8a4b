"""Bad input through the CLI, in-process (click's CliRunner, which keeps a traceback as
`result.exception`): every case ends with its exit status, exactly one line on stderr (what is
wrong and what to do), no traceback, nothing left beside the inputs (the whole folder, hidden
entries included) and the inputs' bytes unchanged. Interrupts and kills: test_signals.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from faults import VINTERP, copy_asset, screen, snapshot

# --- in-process cases ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path, Path], list[str]]  # (work folder, assets) -> CLI arguments
    message: str  # part of the one error line
    code: int = 2


def _upsample(*extra: str, src: str = "clip.mp4", out: str = "out.mp4", model="model.pt"):
    def make(d: Path, a: Path) -> list[str]:
        if src in ("clip.mp4", "frames", "mixed", "corrupt_jpeg", "audio.mp4"):
            copy_asset(a, src, d)
        if (a / model).exists():
            copy_asset(a, model, d)
        return ["upsample", src, "-o", out, "--model", model, "--quiet", *extra]
    return make


def _with(prepare: Callable[[Path], None], make):
    def wrapped(d: Path, a: Path) -> list[str]:
        args = make(d, a)
        prepare(d)
        return args
    return wrapped


CHECKPOINT_CASES = {  # file -> part of the message
    "missing.pt": "checkpoint not found",
    "empty.pt": "not a readable vinterp checkpoint",
    "truncated.pt": "not a readable vinterp checkpoint",
    "text_short.pt": "not a readable vinterp checkpoint",
    "text_long.pt": "not a readable vinterp checkpoint",
    "raw_pickle.pt": "not a readable vinterp checkpoint",
    "code_pickle.pt": "not a readable vinterp checkpoint",
    "code_zip.pt": "refused, loading it could run code",
    "generator_str.pt": "'generator' entry is not a set of named tensors",
    "ngf_str.pt": "ngf='abc' is not int",
}


def _evaluate(*extra: str, src: str = "clip.mp4", model: str | None = "model.pt",
              damage: Callable[[Path], None] | None = None):
    def make(d: Path, a: Path) -> list[str]:
        if (a / src).exists():
            copy_asset(a, src, d)
        if damage is not None:
            damage(d / src)
        args = ["evaluate", src, "--baselines", "blend", "--quiet", *extra]
        if model is not None:
            if (a / model).exists():
                copy_asset(a, model, d)
            args += ["--model", model]
        return args
    return make


def _train(*extra: str, damage: Callable[[Path], None] | None = None, resume: str | None = None):
    def make(d: Path, a: Path) -> list[str]:
        copy_asset(a, "dataset", d)
        if damage is not None:
            damage(d / "dataset")
        args = ["train", "--data", "dataset", "--out", "runs/x", "--quiet", *extra]
        if resume is not None:
            if (a / resume).exists():
                copy_asset(a, resume, d)
            args += ["--resume", resume]
        return args
    return make


def _truncate(ds: Path, name: str = "a") -> None:
    f = ds / "frames" / f"{name}.npy"
    f.write_bytes(f.read_bytes()[:5000])


def _prepare(*extra: str, src: str = "frames"):
    def make(d: Path, a: Path) -> list[str]:
        if (a / src).exists():
            copy_asset(a, src, d)
        return ["prepare", src, "--quiet", *extra]
    return make


def _export(*args: str):
    def make(d: Path, a: Path) -> list[str]:
        copy_asset(a, "model.pt", d)
        for name in ("text_short.pt",):
            copy_asset(a, name, d)
        return ["export", *args]
    return make


def _touch(name: str, data: bytes = b"precious") -> Callable[[Path], None]:
    def f(d: Path) -> None:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            p.mkdir(exist_ok=True)
        else:
            p.write_bytes(data)
    return f


def _mkdir(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).mkdir(parents=True)


CASES = [
    # upsample: inputs and outputs
    Case("upsample-missing-input", _upsample(src="nope.mp4"), "no such file"),
    Case("upsample-text-as-video", _with(_touch("t.mp4", b"hello"), _upsample(src="t.mp4")),
         "not a video"),
    Case("upsample-empty-video", _with(_touch("e.mp4", b""), _upsample(src="e.mp4")),
         "not a video"),
    Case("upsample-audio-only", _upsample(src="audio.mp4"), "no video stream"),
    Case("upsample-corrupt-jpeg", _upsample(src="corrupt_jpeg"), "000003.jpg: corrupt JPEG"),
    Case("upsample-mismatched-frame", _upsample(src="mixed"), "one size"),
    Case("upsample-output-is-folder", _with(_mkdir("outdir"), _upsample(out="outdir")),
         "outdir is a folder"),
    Case("upsample-unknown-output-type", _upsample(out="out.xyz"), "unknown output type"),
    Case("upsample-output-is-input", _upsample(out="clip.mp4"), "is the input"),
    Case("upsample-output-exists", _with(_touch("out.mp4"), _upsample()), "already exists"),
    Case("upsample-output-folder-missing", _upsample(out="nodir/out.mp4"), "does not exist"),
    Case("upsample-sequence-two-fields", _upsample(out="seq/%d_%d.png"), "one frame-number"),
    Case("upsample-sequence-into-input", _upsample(src="frames", out="frames/%06d.png"),
         "is the input folder"),
    Case("upsample-sequence-exists",
         _with(_touch("seq/000001.png"), _upsample(out="seq/%06d.png")), "--overwrite"),
    Case("upsample-bad-factor", _upsample("--factor", "4"), "must divide"),
    Case("upsample-fps-too-high", _upsample("--fps", "1000"), "at most"),
    Case("upsample-stretch-without-slowmo", _upsample("--stretch-audio"), "only applies"),
    Case("upsample-codec-container", _upsample("--codec", "h264", out="out.webm"),
         "cannot go in .webm"),
    # evaluate
    Case("evaluate-missing-input", _evaluate(src="nope.mp4"), "no such file"),
    Case("evaluate-audio-only", _evaluate(src="audio.mp4"), "no video stream"),
    Case("evaluate-text-as-video", _with(_touch("t.mp4", b"hi"), _evaluate(src="t.mp4")),
         "not a video"),
    Case("evaluate-corrupt-jpeg", _evaluate(src="corrupt_jpeg"), "000003.jpg: corrupt JPEG"),
    Case("evaluate-dataset-frames-missing",
         _evaluate(src="dataset", damage=lambda ds: (ds / "frames" / "b.npy").unlink()),
         "b.npy: unreadable frames array"),
    Case("evaluate-dataset-frames-truncated",
         _evaluate(src="dataset", damage=lambda ds: _truncate(ds, "b")),
         "b.npy: unreadable frames array"),
    Case("evaluate-unknown-baseline", _evaluate("--baselines", "magic"), "unknown baseline"),
    Case("evaluate-size-too-small", _evaluate("--size", "8"), "too small"),
    Case("evaluate-output-is-file", _with(_touch("report"), _evaluate("-o", "report")),
         "is not a folder"),
    Case("evaluate-report-exists", _with(_touch("ev/report.html"), _evaluate("-o", "ev")),
         "already exists"),
    # train
    Case("train-no-dataset", lambda d, a: ["train", "--data", "nothing", "--out", "runs/x",
                                           "--quiet"], "no prepared dataset"),
    Case("train-frames-file-missing",
         _train(damage=lambda ds: (ds / "frames" / "a.npy").unlink()), "a.npy is missing"),
    Case("train-frames-file-truncated", _train(damage=_truncate), "damaged or truncated"),
    Case("train-manifest-not-json",
         _train(damage=lambda ds: (ds / "manifest.json").write_text("{")), "not readable JSON"),
    Case("train-crop-too-big", _train("--crop", "512"), "smaller than the 512px crop"),
    Case("train-resume-with-model-option", _train("--ngf", "8", resume="model.pt"),
         "--ngf 8: --resume takes the model config"),
    Case("train-resume-inference-model", _train(resume="model.pt"), "no training state"),
    # prepare
    Case("prepare-missing-input", _prepare(src="nope"), "nope"),
    Case("prepare-output-is-input", _prepare("-o", "frames"), "would replace the input"),
    Case("prepare-output-inside-input", _prepare("-o", "frames/sub"), "is inside the input"),
    Case("prepare-output-exists", _with(_mkdir("data/prepared"), _prepare()), "already exists"),
    Case("prepare-output-is-file", _with(_touch("ds"), _prepare("-o", "ds", "--overwrite")),
         "is a file"),
    Case("prepare-static-threshold-negative", _prepare("--static-threshold", "-1"),
         "--static-threshold"),
    Case("prepare-inbetweens-zero", _prepare("--inbetweens", "0"), "--inbetweens"),
    Case("prepare-val-fraction", _prepare("--val-fraction", "1.5"), "--val-fraction"),
    # export
    Case("export-same-path", _export("model.pt", "-o", "model.pt"), "is the input"),
    Case("export-missing", _export("nope.pt", "-o", "m.pt"), "not found"),
    Case("export-text-checkpoint", _export("text_short.pt", "-o", "m.pt"), "not a readable"),
    Case("export-output-exists", _with(_touch("m.pt"), _export("model.pt", "-o", "m.pt")),
         "exists; pass --overwrite"),
]
for _name, _msg in CHECKPOINT_CASES.items():
    _stem = _name.removesuffix(".pt").replace("_", "-")
    CASES += [
        Case(f"upsample-model-{_stem}", _upsample(model=_name), _msg),
        Case(f"evaluate-model-{_stem}", _evaluate(model=_name), _msg),
        Case(f"train-resume-{_stem}", _train(resume=_name), _msg),
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, assets: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default outputs (data/prepared, evaluation, ...) land here
    args = case.make(tmp_path, assets)
    before = snapshot(tmp_path)
    r = CliRunner().invoke(main, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), \
        f"traceback: {r.exception!r}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert case.message in lines[0], lines[0]
    assert r.exit_code == case.code, (r.exit_code, r.stderr)
    assert snapshot(tmp_path) == before


FD_CASES = [  # what torch or libjpeg would print to the process's stderr, past CliRunner
    ("raw-pickle-model", ["upsample", "clip.mp4", "-o", "o.mp4", "--model", "raw_pickle.pt"],
     "not a torch.save zip archive"),
    ("corrupt-jpeg-frame", ["upsample", "corrupt_jpeg", "-o", "o.mp4", "--model", "model.pt"],
     "corrupt JPEG"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in FD_CASES],
                         ids=[c[0] for c in FD_CASES])
def test_one_line_at_the_file_descriptor(args, message, assets, tmp_path):
    """In a real process: torch's warnings about raw pickles and libjpeg's about broken data
    go to stderr directly, where CliRunner and pytest's warning capture would not see them."""
    for name in ("clip.mp4", "raw_pickle.pt", "corrupt_jpeg", "model.pt"):
        copy_asset(assets, name, tmp_path)
    before = snapshot(tmp_path)
    proc = subprocess.run([VINTERP, *args], cwd=tmp_path, capture_output=True, timeout=120)
    err = proc.stderr.decode()  # not text=True: its newline translation turns \r into \n
    lines = screen(err)  # the progress bar, cleared on the error, is not a line
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err and "warn" not in err.lower()
    assert proc.returncode == 2
    assert snapshot(tmp_path) == before
