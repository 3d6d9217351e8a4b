"""`vinterp prepare` on bad input: one clear line each, the run goes on where something is
usable, a non-zero exit where nothing is, and no window ever spans a gap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import synth
from cli import main

H, W = 48, 64


def run(*args: str):
    return CliRunner().invoke(main, ["prepare", "--quiet", *args], catch_exceptions=False)


def lines(text: str, word: str) -> list[str]:
    return [ln for ln in text.splitlines() if word in ln]


def windows(out: Path) -> dict[str, list[int]]:
    m = json.loads((out / "manifest.json").read_text())
    res: dict[str, list[int]] = {s["name"]: [] for s in m["sequences"]}
    for w in m["windows"]:
        res[w["seq"]].append(w["start"])
    return res


def test_nonexistent_path(tmp_path: Path):
    r = run(str(tmp_path / "nope"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file or folder"
    assert not (tmp_path / "out").exists()


def test_empty_folder_and_folder_without_media(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    r = run(str(tmp_path / "empty"), str(tmp_path / "docs"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 2
    assert len(lines(r.stderr, "empty folder")) == 1
    assert len(lines(r.stderr, "no video files or image frames found")) == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: no videos, frame folders")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_not_a_video_is_skipped_and_alone_fails(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a video")
    r = run(str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 2
    (warn,) = lines(r.stderr, "warning:")
    assert "notes.txt: not a video ffmpeg can decode" in warn and warn.endswith("skipped")
    assert "error: no usable windows" in r.stderr
    assert not (tmp_path / "out").exists()

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "broken.mp4").write_bytes(b"\x00" * 1000)
    synth.write_video(tmp_path / "v" / "good.mp4", synth.moving_square(9, H, W, vx=2), fps=10)
    r = run(str(tmp_path / "v"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert len(lines(r.stderr, "broken.mp4: not a video")) == 1
    assert windows(tmp_path / "out") == {"good": [0, 1, 2]}
    assert "skipped: 1" in r.output


def test_too_short_sequence_is_skipped(tmp_path: Path):
    synth.write_video(tmp_path / "short.mp4", synth.moving_square(6, H, W, vx=2), fps=10)
    r = run(str(tmp_path / "short.mp4"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 2
    (warn,) = lines(r.stderr, "warning:")
    assert "short.mp4: 6 frames, fewer than one window needs (7); skipped" in warn
    # the same clip is long enough for 3-frame windows
    r = run(str(tmp_path / "short.mp4"), "-o", str(tmp_path / "out"), "--inbetweens", "1")
    assert r.exit_code == 0, r.output
    assert windows(tmp_path / "out") == {"short": [0, 1, 2, 3]}


def test_truncated_videos(tmp_path: Path):
    frames = synth.moving_square(40, H, W, vx=1)
    full = synth.write_video(tmp_path / "full.mkv", frames, fps=10).read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.mkv").write_bytes(full[: len(full) // 2])
    mp4 = synth.write_video(tmp_path / "full.mp4", frames, fps=10).read_bytes()
    (tmp_path / "in" / "cut.mp4").write_bytes(mp4[: len(mp4) // 2])  # index lost: unreadable
    r = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    (mkv_warn,) = lines(r.stderr, "cut.mkv")
    assert "header promises about 40; the file may be truncated" in mkv_warn
    (mp4_warn,) = lines(r.stderr, "cut.mp4")
    assert "not a video" in mp4_warn and mp4_warn.endswith("skipped")
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (seq,) = m["sequences"]
    n = seq["frames"]
    assert 7 <= n < 40
    assert windows(tmp_path / "out") == {"cut": list(range(n - 6))}


def test_gaps_split_frame_sequences(tmp_path: Path):
    """A corrupt PNG, a missing frame number and a size change each end a run of frames; no
    window spans them."""
    folder = tmp_path / "frames"
    synth.write_frames(folder, synth.moving_square(30, H, W, vx=1, seed=2), ext=".png")
    (folder / "000009.png").write_bytes(b"\x89PNG garbage")  # corrupt: frames 1-8 | 10-
    (folder / "000018.png").unlink()  # missing: 10-17 | 19-
    big = synth.moving_square(30, H * 2, W * 2, vx=1, seed=2)
    for i in range(25, 31):  # 19-24 at 64x48, 25-30 at 128x96
        synth.write_frames(folder, [big[i - 1]], ext=".png", start=i)
    r = run(str(folder), "-o", str(tmp_path / "out"), "--size", "0")
    assert r.exit_code == 0, r.output
    assert len(lines(r.stderr, "000009.png: corrupt or unreadable image")) == 1
    assert len(lines(r.stderr, "frame numbers jump from 000017.png to 000019.png")) == 1
    assert len(lines(r.stderr, "000025.png is 128x96 but earlier frames are 64x48")) == 1
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    parts = {s["name"]: (s["frames"], s["width"]) for s in m["sequences"]}
    # runs: 1-8 (8), 10-17 (8), 19-24 (6: too short, skipped), 25-30 (6: too short, skipped)
    assert parts == {"frames-part1": (8, W), "frames-part2": (8, W)}
    assert windows(tmp_path / "out") == {"frames-part1": [0, 1], "frames-part2": [0, 1]}
    assert len(lines(r.stderr, "fewer than one window needs (7); skipped")) == 2
    second = np.load(tmp_path / "out" / "frames" / "frames-part2.npy")
    from data_prep.decode import read_image

    np.testing.assert_array_equal(second[0], read_image(folder / "000010.png"))


def test_bad_options_are_one_line(tmp_path: Path):
    synth.write_video(tmp_path / "a.mp4", synth.moving_square(9, H, W, vx=2), fps=10)
    for args, msg in [(["--inbetweens", "0"], "--inbetweens must be at least 1"),
                      (["--stride", "0"], "--frame-step and --stride must be at least 1"),
                      (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)")]:
        r = run(str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"), *args)
        assert r.exit_code == 2 and r.stderr.strip().startswith(f"error: {msg}"), r.stderr


def test_output_never_replaces_an_input(tmp_path: Path):
    clips = tmp_path / "clips"
    synth.write_frames(clips / "a", synth.moving_square(9, H, W, vx=2), ext=".png")
    for out in (clips, tmp_path):
        r = run(str(clips / "a"), "-o", str(out), "--overwrite")
        assert r.exit_code == 2
        assert r.stderr.strip() == (f"error: the output {out} would replace the input "
                                    f"{clips / 'a'}; choose another folder with -o")
    assert len(list((clips / "a").iterdir())) == 9


def test_many_bad_frames_are_counted_not_listed(tmp_path: Path):
    folder = synth.write_frames(tmp_path / "f", synth.moving_square(30, H, W, vx=1), ext=".png")
    for i in range(12, 22):
        (folder / f"{i:06d}.png").write_bytes(b"broken")
    r = run(str(folder), "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert len(lines(r.stderr, "corrupt or unreadable image")) == 5
    assert len(lines(r.stderr, "5 more unreadable or missing frames (not listed)")) == 1
    assert windows(tmp_path / "out") == {"f-part1": list(range(5)), "f-part2": list(range(3))}
