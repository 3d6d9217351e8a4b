"""Faults and bad input through the CLI: every case ends with its exit status, exactly one line
on stderr (what is wrong and what to do, or what an interrupt kept), no traceback, nothing left
beside the inputs (the whole folder, hidden entries included) and the inputs' bytes unchanged.

Most cases run in-process (click's CliRunner, which keeps a traceback as `result.exception`);
the signal cases run `vinterp` as a child process and send the signal only once a marker shows
the work is under way (a progress update, or the temporary output appearing), never after a
fixed sleep, so they do not depend on the machine's speed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from data_prep.decode import ffmpeg_exe
from synth import moving_square, write_frames, write_prepared, write_video
from vinterp.checkpoint import model_state, save_checkpoint
from vinterp.config import ModelConfig, to_dict
from vinterp.networks import build_generator

H, W = 48, 64
VINTERP = str(Path(sys.executable).with_name("vinterp"))


# --- inputs --------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this runs `touch PWNED`: a refused load leaves no such file."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _bad_checkpoints(root: Path, good: Path) -> None:
    mc = ModelConfig(netG="unet_32", ngf=8)
    (root / "text_short.pt").write_text("this is not a checkpoint\n")
    (root / "text_long.pt").write_text("a longer text file, not a checkpoint at all\n" * 50)
    (root / "empty.pt").write_bytes(b"")
    data = good.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    with open(root / "raw_pickle.pt", "wb") as f:
        pickle.dump({"generator": {}, "format": "vinterp-checkpoint"}, f)
    with open(root / "code_pickle.pt", "wb") as f:
        pickle.dump(_RunsCode(), f)
    torch.save({"x": _RunsCode()}, root / "code_zip.pt")
    save_checkpoint(root / "generator_str.pt", model_state(mc, "not weights"))
    cfg = to_dict(mc)
    cfg["ngf"] = "abc"
    save_checkpoint(root / "ngf_str.pt", {"model_config": cfg,
                                          "generator": build_generator(mc).state_dict()})


def _corrupt_jpeg_folder(folder: Path) -> None:
    """JPEG frames; frame 3 keeps its header but its body is random bytes."""
    write_frames(folder, moving_square(6, H, W), ext=".jpg")
    path = folder / "000003.jpg"
    data = path.read_bytes()
    sos = data.index(b"\xff\xda")
    body = len(data) - sos - 40
    noise = np.random.default_rng(3).integers(0, 256, body, dtype=np.uint8).tobytes()
    path.write_bytes(data[: sos + 38] + noise + b"\xff\xd9")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    mc = ModelConfig(netG="unet_32", ngf=8)
    good = save_checkpoint(root / "model.pt", model_state(mc, build_generator(mc).state_dict()))
    _bad_checkpoints(root, good)
    write_video(root / "clip.mp4", moving_square(8, H, W, vx=3), fps=10, audio=True)
    write_frames(root / "frames", moving_square(8, H, W, vx=3))
    odd = write_frames(root / "mixed", moving_square(5, H, W))
    write_frames(odd, moving_square(1, H + 2, W), start=4)
    _corrupt_jpeg_folder(root / "corrupt_jpeg")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:a", "aac", str(root / "audio.mp4")],
                   check=True)
    seq = moving_square(16, H, W, vx=2)
    write_prepared(root / "dataset", {"a": (seq, "train"), "b": (seq[::-1], "val")})
    return root


def _copy(assets: Path, name: str, dest: Path, as_name: str | None = None) -> str:
    src, dst = assets / name, dest / (as_name or name)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst.name


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` (hidden ones too): folders, and files by content hash."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root)] = "folder"
        for f in files:
            p = os.path.join(folder, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def screen(err: str) -> list[str]:
    """The lines a terminal would show: a carriage return redraws its line (progress bars)."""
    return [seg for line in err.split("\n") if (seg := line.split("\r")[-1]).strip()]


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
            _copy(a, src, d)
        if (a / model).exists():
            _copy(a, model, d)
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
            _copy(a, src, d)
        if damage is not None:
            damage(d / src)
        args = ["evaluate", src, "--baselines", "blend", "--quiet", *extra]
        if model is not None:
            if (a / model).exists():
                _copy(a, model, d)
            args += ["--model", model]
        return args
    return make


def _train(*extra: str, damage: Callable[[Path], None] | None = None, resume: str | None = None):
    def make(d: Path, a: Path) -> list[str]:
        _copy(a, "dataset", d)
        if damage is not None:
            damage(d / "dataset")
        args = ["train", "--data", "dataset", "--out", "runs/x", "--quiet", *extra]
        if resume is not None:
            if (a / resume).exists():
                _copy(a, resume, d)
            args += ["--resume", resume]
        return args
    return make


def _truncate(ds: Path, name: str = "a") -> None:
    f = ds / "frames" / f"{name}.npy"
    f.write_bytes(f.read_bytes()[:5000])


def _prepare(*extra: str, src: str = "frames"):
    def make(d: Path, a: Path) -> list[str]:
        if (a / src).exists():
            _copy(a, src, d)
        return ["prepare", src, "--quiet", *extra]
    return make


def _export(*args: str):
    def make(d: Path, a: Path) -> list[str]:
        _copy(a, "model.pt", d)
        for name in ("text_short.pt",):
            _copy(a, name, d)
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
        _copy(assets, name, tmp_path)
    before = snapshot(tmp_path)
    proc = subprocess.run([VINTERP, *args], cwd=tmp_path, capture_output=True, timeout=120)
    err = proc.stderr.decode()  # not text=True: its newline translation turns \r into \n
    lines = screen(err)  # the progress bar, cleared on the error, is not a line
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err and "warn" not in err.lower()
    assert proc.returncode == 2
    assert snapshot(tmp_path) == before


# --- signals -------------------------------------------------------------------------------


class Child:
    """`vinterp ARGS` in `cwd`, stderr collected by a thread so the test can wait on it."""

    def __init__(self, args: list[str], cwd: Path):
        self.proc = subprocess.Popen(
            [VINTERP, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            # A background job of a non-interactive shell (as CI may be) inherits SIGINT
            # ignored: give the child a terminal's default so Ctrl-C is what a user's is.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self._err = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stderr.fileno(), 65536):
            self._err += chunk

    @property
    def err(self) -> str:
        return self._err.decode(errors="replace")

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"exited before {what}: {self.err}"
            assert time.monotonic() < deadline, f"never saw {what}: {self.err}"
            time.sleep(0.01)

    def progressed(self, desc: str) -> Callable[[], bool]:
        """A progress update counting at least one item (not the bar's initial 0)."""
        prefix = f"{desc}:" if desc else ""  # train's bar has no description
        pattern = re.compile(rf"{prefix}(?:[^\r\n]*\|\s*[1-9]\d*/|\s*[1-9]\d*\s*[a-z])")
        return lambda: bool(pattern.search(self.err))

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode, self.err


def _interrupted(rc: int, err: str, sig: signal.Signals, says: str) -> None:
    assert "Traceback" not in err, err
    lines = screen(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"interrupted ({sig.name}): ") and says in lines[0], lines[0]
    assert rc == 128 + sig, (rc, err)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Enough work that a command is still busy when the signal lands, even on a fast
    machine (the signal follows the marker at once, so the test waits for little of it)."""
    root = tmp_path_factory.mktemp("long")
    return write_video(root / "long.mp4", moving_square(300, 160, 224, vx=1), fps=10,
                       audio=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_upsample_video_signal(sig, assets, long_clip, tmp_path):
    shutil.copy(long_clip, tmp_path / "long.mp4")
    _copy(assets, "model.pt", tmp_path)
    before = snapshot(tmp_path)
    child = Child(["upsample", "long.mp4", "-o", "out.mp4", "--model", "model.pt",
                   "--threads", "1", "--preset", "veryslow"], tmp_path)
    child.wait_for(child.progressed("upsample"), "a progress update")
    child.proc.send_signal(sig)
    _interrupted(*child.finish(), sig, "the partial output was removed")
    assert snapshot(tmp_path) == before


def _partial_frames(folder: Path, name: str) -> Callable[[], bool]:
    return lambda: any(folder.glob(f".{name}.partial-*/*.png"))


def test_upsample_sequence_sigterm_leaves_no_partial_folder(assets, long_clip, tmp_path):
    shutil.copy(long_clip, tmp_path / "long.mp4")
    _copy(assets, "model.pt", tmp_path)
    before = snapshot(tmp_path)
    child = Child(["upsample", "long.mp4", "-o", "seq/%06d.png", "--model", "model.pt",
                   "--threads", "1", "--quiet"], tmp_path)
    child.wait_for(_partial_frames(tmp_path, "seq"), "frames in the partial folder")
    child.proc.send_signal(signal.SIGTERM)
    rc, err = child.finish()
    assert err.splitlines() == [err.strip()]  # --quiet: exactly one line, no bar
    _interrupted(rc, err, signal.SIGTERM, "nothing was written to seq/%06d.png")
    assert snapshot(tmp_path) == before


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie nobody reaps has still stopped writing


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_upsample_sigkill_leftovers_are_swept_by_the_next_run(assets, long_clip, tmp_path,
                                                             monkeypatch):
    shutil.copy(long_clip, tmp_path / "long.mp4")
    _copy(assets, "model.pt", tmp_path)
    _copy(assets, "clip.mp4", tmp_path)
    child = Child(["upsample", "long.mp4", "-o", "seq/%06d.png", "--model", "model.pt",
                   "--threads", "1", "--quiet"], tmp_path)
    child.wait_for(_partial_frames(tmp_path, "seq"), "frames in the partial folder")
    encoders = _children(child.proc.pid)
    child.proc.kill()
    child.finish()
    # ffmpeg runs in its own session and survives the kill; it ends on its closed input.
    deadline = time.monotonic() + 60
    while not all(_gone(p) for p in encoders):
        assert time.monotonic() < deadline, "ffmpeg kept running"
        time.sleep(0.05)
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".seq.partial-")]
    assert left, "SIGKILL left nothing to sweep (the test is not testing anything)"
    # a complete-looking video partial of a dead process, as a killed video run leaves
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".out.mp4.partial-{dead.pid}-0badc0de.mp4").write_bytes(b"x" * 1000)

    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    for out in ("seq/%06d.png", "out.mp4"):
        r = CliRunner().invoke(main, ["upsample", "clip.mp4", "-o", out, "--model", "model.pt",
                                      "--quiet"])
        assert r.exit_code == 0, r.output
    kept = {k: v for k, v in before.items() if not k.startswith((".seq.", ".out.mp4."))}
    after = snapshot(tmp_path)
    made = {k for k in after if k not in kept}
    assert made == {"out.mp4", "seq", *(f"seq/{i:06d}.png" for i in range(1, 44))}, made
    assert all(after[k] == v for k, v in kept.items())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_prepare_signal_keeps_the_old_dataset(sig, assets, long_clip, tmp_path):
    shutil.copy(long_clip, tmp_path / "long.mp4")
    _copy(assets, "dataset", tmp_path, "prepared")  # the previous dataset, to be replaced
    before = snapshot(tmp_path)
    child = Child(["prepare", "long.mp4", "-o", "prepared", "--overwrite", "--quiet"], tmp_path)
    child.wait_for(lambda: any(tmp_path.glob(".prepared.partial-*/frames/.long*")),
                   "frames being written")
    child.proc.send_signal(sig)
    rc, err = child.finish()
    assert err.splitlines() == [err.strip()]
    _interrupted(rc, err, sig, "the partial dataset was removed")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_evaluate_signal(sig, assets, long_clip, tmp_path):
    shutil.copy(long_clip, tmp_path / "long.mp4")
    _copy(assets, "model.pt", tmp_path)
    before = snapshot(tmp_path)
    child = Child(["evaluate", "long.mp4", "--model", "model.pt", "--baselines", "dis",
                   "--size", "0", "-o", "ev"], tmp_path)
    child.wait_for(child.progressed("evaluate"), "a progress update")
    child.proc.send_signal(sig)
    _interrupted(*child.finish(), sig, "nothing was written to ev")
    assert snapshot(tmp_path) == before


def test_train_sigint(assets, tmp_path):
    _copy(assets, "dataset", tmp_path)
    child = Child(["train", "--data", "dataset", "--out", "run", "--netG", "unet_32", "--ngf",
                   "8", "--ndf", "8", "--crop", "32", "--max-steps", "100000"], tmp_path)
    child.wait_for(child.progressed(""), "a training step")
    child.proc.send_signal(signal.SIGINT)
    rc, err = child.finish()
    assert "Traceback" not in err and rc == 130, err
    assert screen(err)[-1].startswith("interrupted (SIGINT): "), err


# --- leftovers of SIGKILL ------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_train_resume_after_kill_sweeps_temporaries_and_duplicate_rows(assets, tmp_path,
                                                                      monkeypatch):
    """A kill -9 inside a save leaves `.latest.pt.*.tmp`; one between a validation row and its
    checkpoint leaves a row the resumed run writes again. Both are cleaned on resume."""
    monkeypatch.chdir(tmp_path)
    _copy(assets, "dataset", tmp_path)
    common = ["--data", "dataset", "--out", "run", "--quiet", "--val-every-steps", "1",
              "--val-windows", "1"]
    r = CliRunner().invoke(main, ["train", *common, "--netG", "unet_32", "--ngf", "8",
                                  "--ndf", "8", "--crop", "32", "--max-steps", "2"])
    assert r.exit_code == 0, r.output
    metrics = tmp_path / "run" / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    assert [json.loads(x)["step"] for x in rows] == [1, 2]
    # what the kills leave: a row of step 3 whose checkpoint never landed, and temporaries
    with metrics.open("a") as f:
        f.write(json.dumps({**json.loads(rows[-1]), "step": 3}) + "\n")
    (tmp_path / "run" / f".latest.pt.{_dead_pid()}-0badc0de.tmp").write_bytes(b"x" * 100)
    (tmp_path / "run" / ".latest.pt.k2j4_x9a.tmp").write_bytes(b"x" * 100)  # mkstemp-named
    r = CliRunner().invoke(main, ["train", *common, "--resume", "run/latest.pt",
                                  "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "latest.pt", "metrics.jsonl", "strips"]


def test_prepare_puts_back_a_dataset_a_kill_left_aside(assets, tmp_path, monkeypatch):
    """A kill between the two renames of a non-atomic replace leaves only `.NAME.old-PID`."""
    monkeypatch.chdir(tmp_path)
    _copy(assets, "frames", tmp_path)
    _copy(assets, "dataset", tmp_path, f".prepared.old-{_dead_pid()}")
    (tmp_path / f".prepared.partial-{_dead_pid()}").mkdir()
    old = snapshot(next(tmp_path.glob(".prepared.old-*")))
    r = CliRunner().invoke(main, ["prepare", "frames", "-o", "prepared", "--quiet"])
    assert r.exit_code == 2 and "prepared already exists" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "prepared"]
    assert snapshot(tmp_path / "prepared") == old
    r = CliRunner().invoke(main, ["prepare", "frames", "-o", "prepared", "--quiet",
                                  "--overwrite", "--val-fraction", "0"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "prepared"]
    assert snapshot(tmp_path / "prepared") != old


@pytest.mark.parametrize("phase", [1, 2])
def test_a_sequence_commit_cut_short_is_undone_or_finished(tmp_path, phase):
    """`_commit_sequence` into a folder holding other files: a kill in phase 1 (old frames
    being moved aside) restores the old sequence; in phase 2 (new frames coming in) the next
    run completes the new one. Never a mix."""
    from vinterp.video_out import recover_output

    folder = tmp_path / "seq"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    token = f"{_dead_pid()}-0badc0de"
    old, new = folder / f".seq.old-{token}", folder / f".seq.partial-{token}"
    old.mkdir()
    new.mkdir()
    for i in range(1, 4):
        (new / f"{i:06d}.png").write_text(f"new {i}")
    if phase == 1:  # two of three old frames moved aside so far
        (folder / "000001.png").write_text("old 1")
        for i in (2, 3):
            (old / f"{i:06d}.png").write_text(f"old {i}")
    else:  # all old frames aside (marker written), one new frame moved in so far
        for i in (1, 2, 3):
            (old / f"{i:06d}.png").write_text(f"old {i}")
        (old / ".moved").touch()
        os.replace(new / "000001.png", folder / "000001.png")
    recover_output(folder / "%06d.png")
    want = "old" if phase == 1 else "new"
    assert sorted(p.name for p in folder.iterdir()) == [
        "000001.png", "000002.png", "000003.png", "notes.txt"]
    assert [(folder / f"{i:06d}.png").read_text() for i in (1, 2, 3)] == [
        f"{want} {i}" for i in (1, 2, 3)]
