"""Interrupts and kills through the CLI: `vinterp` runs as a child process and gets the
signal only once a marker shows the work is under way (a progress update, or the temporary
output appearing), never after a fixed sleep, so the tests do not depend on the machine's
speed. Each ends with its exit status, exactly one line on stderr (what the interrupt kept),
no traceback, nothing left beside the inputs and the inputs' bytes unchanged; a SIGKILL's
leftovers are swept by the next run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from faults import VINTERP, copy_asset, screen, snapshot
from synth import moving_square, write_video

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


def _interrupt_on_progress(sig: signal.Signals, args: list[str], assets: Path, long_clip: Path,
                           work: Path, says: str) -> None:
    """`vinterp ARGS` on the long clip with the tiny model, `sig` at its first progress
    update: one interrupt line saying `says`, and the folder exactly as before."""
    shutil.copy(long_clip, work / "long.mp4")
    copy_asset(assets, "model.pt", work)
    before = snapshot(work)
    child = Child(args, work)
    child.wait_for(child.progressed(args[0]), "a progress update")
    child.proc.send_signal(sig)
    _interrupted(*child.finish(), sig, says)
    assert snapshot(work) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_upsample_video_signal(sig, assets, long_clip, tmp_path):
    _interrupt_on_progress(sig, ["upsample", "long.mp4", "-o", "out.mp4", "--model", "model.pt",
                                 "--threads", "1", "--preset", "veryslow"],
                           assets, long_clip, tmp_path, "the partial output was removed")


def _partial_frames(folder: Path, name: str) -> Callable[[], bool]:
    return lambda: any(folder.glob(f".{name}.partial-*/*.png"))


def test_upsample_sequence_sigterm_leaves_no_partial_folder(assets, long_clip, tmp_path):
    shutil.copy(long_clip, tmp_path / "long.mp4")
    copy_asset(assets, "model.pt", tmp_path)
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
    copy_asset(assets, "model.pt", tmp_path)
    copy_asset(assets, "clip.mp4", tmp_path)
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
    copy_asset(assets, "dataset", tmp_path, "prepared")  # the previous dataset, to be replaced
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
    _interrupt_on_progress(sig, ["evaluate", "long.mp4", "--model", "model.pt", "--baselines",
                                 "dis", "--size", "0", "-o", "ev"],
                           assets, long_clip, tmp_path, "nothing was written to ev")


def test_train_sigint(assets, tmp_path):
    copy_asset(assets, "dataset", tmp_path)
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
    copy_asset(assets, "dataset", tmp_path)
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
    copy_asset(assets, "frames", tmp_path)
    copy_asset(assets, "dataset", tmp_path, f".prepared.old-{_dead_pid()}")
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
