"""`vinterp evaluate` driven through the CLI on tiny synthetic clips with known motion."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from synth import (
    background,
    moving_square,
    scene_cut_frames,
    write_frames,
    write_prepared,
    write_video,
)
from vinterp.eval_sources import Source, WindowPlan, stream_windows


@pytest.fixture(autouse=True)
def no_default_model(tmp_path, monkeypatch):
    """Tests see no bundled model unless they install one (keeps them fast and stable)."""
    monkeypatch.setattr("vinterp.inference.default_model_path", lambda: None)


def run(*args):
    res = CliRunner().invoke(main, ["evaluate", *map(str, args)])
    return res.exit_code, res.output


def load(out):
    return json.loads((out / "evaluate.json").read_text())


def square_clip(tmp_path, name="sq.mp4", seed=0):
    # 24 px square moving 1 px/frame: 6 px per window, where DIS tracks it and blend ghosts.
    return write_video(tmp_path / name, moving_square(13, 64, 96, size=24, vx=1, seed=seed))


def test_motion_clip_video_and_folder(tmp_path):
    video = square_clip(tmp_path)
    folder = write_frames(tmp_path / "frames",
                          moving_square(13, 64, 96, size=24, vx=1, seed=3, color=(30, 200, 40)))
    out = tmp_path / "out"
    code, text = run(video, folder, "--out", out)
    assert code == 0, text
    assert "baselines only" in text
    assert "frames/s" in text and "per source" in text
    doc = load(out)
    assert doc["format"] == "vinterp-evaluate"
    assert doc["inbetweens"] == 5 and doc["t"] == pytest.approx([k / 6 for k in range(1, 6)])
    assert doc["windows"] == 4  # 13 frames: windows 0-6 and 6-12 in each source
    assert set(doc["methods"]) == {"repeat", "blend", "dis", "stream", "fallback", "minterpolate"}
    for m in doc["methods"].values():
        assert len(m["psnr_t"]) == 5 and len(m["ssim_t"]) == 5
        assert m["frames"] == 20 and m["fps"] > 0
        assert 10 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
    # The harness tells motion from fade: optical flow beats the cross-fade clearly, overall,
    # in every source and at every position t.
    dis, blend = doc["methods"]["dis"], doc["methods"]["blend"]
    assert dis["psnr"] > blend["psnr"] + 2, (dis["psnr"], blend["psnr"])
    assert all(d > b for d, b in zip(dis["psnr_t"], blend["psnr_t"], strict=True))
    assert [s["name"] for s in doc["sources"]] == ["sq.mp4", "frames"]
    for s in doc["sources"]:
        assert s["windows"] == 2 and s["psnr"]["dis"] > s["psnr"]["blend"] + 1.5
    page = (out / "report.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 2 * (1 + 4)  # real + 4 methods, 2 windows
    assert "data:image/png;base64," in page
    for name in ("repeat", "blend", "dis", "minterpolate", "sq.mp4", "frames"):
        assert name in page


def test_fade_clip_blend_wins(tmp_path):
    # A cross-fade with nothing moving: blend is the right answer, repeat the worst.
    a, b = background(64, 96, seed=1), background(64, 96, seed=2)
    frames = [np.rint(a * (1 - i / 12) + b * (i / 12)).astype(np.uint8) for i in range(13)]
    out = tmp_path / "out"
    code, text = run(write_video(tmp_path / "fade.mp4", frames), "--out", out,
                     "--baselines", "repeat,blend,dis")
    assert code == 0, text
    m = load(out)["methods"]
    assert m["blend"]["psnr"] > m["repeat"]["psnr"] + 3
    assert m["blend"]["psnr"] >= m["dis"]["psnr"] - 0.2


def test_scene_cut_windows_skipped(tmp_path):
    # 2 scenes of 10 frames: windows 0-6, 6-12 (crosses the cut at 10), 12-18.
    video = write_video(tmp_path / "cut.mp4", scene_cut_frames(10, 2))
    out = tmp_path / "out"
    code, text = run(video, "--out", out, "--baselines", "blend")
    assert code == 0, text
    doc = load(out)
    assert doc["windows"] == 2 and doc["skipped_scene_cuts"] == 1
    assert doc["sources"][0]["skipped_scene_cuts"] == 1
    assert "1 skipped at scene cuts" in text


def test_inbetweens_step_and_max_windows(tmp_path):
    video = write_video(tmp_path / "sq.mp4", moving_square(25, 64, 96, vx=1))
    out = tmp_path / "out"
    code, text = run(video, "--out", out, "--inbetweens", "3", "--frame-step", "2",
                     "--max-windows", "2", "--baselines", "blend,dis", "--strips", "1")
    assert code == 0, text
    doc = load(out)
    assert doc["inbetweens"] == 3 and doc["t"] == [0.25, 0.5, 0.75]
    assert doc["windows"] == 2
    assert doc["methods"]["blend"]["frames"] == 6
    # The strip as a PNG: a label column, then 5 frames (at half size) per row; one row for
    # the real frames and one per method.
    pngs = sorted((out / "strips").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].name.startswith("sq.mp4-")
    from data_prep.decode import read_image

    img = read_image(pngs[0])
    assert img.shape[0] == 3 * 32 + 2 * 2 and img.shape[1] == 190 + 5 * 48 + 4 * 2
    assert not list((out / "strips").glob(".*"))  # no temporary files left


def test_prepared_dataset_val_split(tmp_path):
    root = write_prepared(tmp_path / "prep", {
        "trainseq": (moving_square(13, 64, 96, vx=1), "train"),
        "valseq": (moving_square(13, 64, 96, vx=1, seed=5), "val"),
    }, inbetweens=3)
    out = tmp_path / "out"
    code, text = run(root, "--out", out, "--max-windows", "4", "--baselines", "blend,repeat")
    assert code == 0, text
    doc = load(out)
    assert doc["inbetweens"] == 3  # from the manifest
    assert [s["name"] for s in doc["sources"]] == ["valseq"]
    assert doc["windows"] == 4
    code, text = run(root, "--out", tmp_path / "o2", "--inbetweens", "5")
    assert code == 2 and "prepared with 3 in-betweens" in text
    code, text = run(root, "--out", tmp_path / "o3", "--split", "test")
    assert code == 2 and "no 'test' windows" in text


def test_windows_take_the_right_frames():
    # Frame i is filled with value i, so each window's frames name their own indices.
    frames = [np.full((40, 40, 3), i, np.uint8) for i in range(30)]
    plan = WindowPlan(m=2, step=3, stride=5)
    src = Source("x", "x", "frames", windows=lambda: iter(()))
    got = [[int(f[0, 0, 0]) for f in w.frames] for w in stream_windows(iter(frames), plan, src,
                                                                       None)]
    assert got == [[s, s + 3, s + 6, s + 9] for s in (0, 5, 10, 15, 20)]
    cut_at_12 = lambda a, b: int(b[0, 0, 0]) == 12  # noqa: E731
    wins = list(stream_windows(iter(frames), plan, src, cut_at_12))
    assert [w.start for w in wins] == [0, 15, 20] and src.skipped == 2


def test_bad_input_one_line_errors(tmp_path):
    video = square_clip(tmp_path)
    code, text = run(tmp_path / "nope.mp4", "--out", tmp_path / "o")
    assert code == 2 and text.strip() == f"error: {tmp_path / 'nope.mp4'}: no such file or folder"
    code, text = run(video, "--out", tmp_path / "o", "--baselines", "blend,magic")
    assert code == 2 and "unknown baseline(s) magic" in text
    code, text = run(video, "--out", tmp_path / "o", "--model", tmp_path / "none.pt")
    assert code == 2 and "model checkpoint not found" in text
    short = write_video(tmp_path / "short.mp4", moving_square(5, 64, 96))
    code, text = run(short, "--out", tmp_path / "o")
    assert code == 2 and "no windows to evaluate" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    code, text = run(empty, "--out", tmp_path / "o")
    assert code == 2 and "no image frames and no manifest.json" in text
    assert not (tmp_path / "o").exists()


def test_refuses_to_overwrite(tmp_path):
    video = square_clip(tmp_path)
    out = tmp_path / "out"
    assert run(video, "--out", out, "--baselines", "blend")[0] == 0
    before = (out / "evaluate.json").read_text(), (out / "report.html").read_text()
    code, text = run(video, "--out", out, "--baselines", "blend")
    assert code == 2 and "already exists; pass --overwrite" in text
    assert ((out / "evaluate.json").read_text(), (out / "report.html").read_text()) == before
    code, text = run(video, "--out", out, "--baselines", "repeat", "--overwrite")
    assert code == 0 and set(load(out)["methods"]) == {"repeat"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def _tiny_checkpoint(path, n_out=5):
    from vinterp.checkpoint import model_state, save_checkpoint
    from vinterp.config import ModelConfig
    from vinterp.networks import build_generator

    cfg = ModelConfig(netG="unet_32", ngf=4, n_out=n_out)
    return save_checkpoint(path, model_state(cfg, build_generator(cfg).state_dict()))


def test_models_side_by_side(tmp_path, monkeypatch):
    # An untrained flow-head model outputs exactly the time-weighted blend (its last layer
    # starts at zero), so its scores must match the blend baseline's.
    video = square_clip(tmp_path)
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    code, text = run(video, "--model", ckpt, "--out", out, "--baselines", "blend,dis",
                     "--device", "cpu")
    assert code == 0, text
    m = load(out)["methods"]
    assert list(m) == ["tiny", "blend", "dis"] and m["tiny"]["kind"] == "model"
    assert m["tiny"]["psnr"] == pytest.approx(m["blend"]["psnr"], abs=0.05)
    assert "tiny" in (out / "report.html").read_text()
    code, text = run(video, "--model", ckpt, "--out", tmp_path / "o2", "--inbetweens", "3")
    assert code == 2 and "makes 5 in-betweens" in text
    # No --model: the bundled default is used when installed.
    default = _tiny_checkpoint(tmp_path / "models" / "default.pt", n_out=3)
    monkeypatch.setattr("vinterp.inference.default_model_path", lambda: default)
    code, text = run(video, "--out", tmp_path / "o3", "--baselines", "blend")
    assert code == 0, text
    doc = load(tmp_path / "o3")
    assert list(doc["methods"]) == ["default", "blend"] and doc["inbetweens"] == 3


def test_report_thumbnails_open_full_size(tmp_path):
    """Each strip of small frames links to an overlay holding the same strip at full size."""
    import base64
    import re

    import cv2

    video = write_video(tmp_path / "wide.mp4", moving_square(13, 144, 400, size=24, vx=2))
    out = tmp_path / "out"
    code, text = run(video, "-o", out, "--baselines", "blend", "--strips", "1", "--size", "0")
    assert code == 0, text
    page = (out / "report.html").read_text()
    links = re.findall(r'<a href="#(s0-\d+)" title="full size"><img src="data:image/\w+;'
                       r'base64,([^"]+)"', page)
    assert [ref for ref, _ in links] == ["s0-0", "s0-1", "s0-2"]  # real, blend, its heat map
    for ref, small in links:
        full = re.search(rf'<div class="full" id="{ref}"><a href="#s0" title="close"><img '
                         r'src="data:image/jpeg;base64,([^"]+)"', page)
        assert full, ref
        imgs = [cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR)
                for b in (small, full.group(1))]
        assert imgs[1].shape[0] == 144 and imgs[1].shape[1] > 7 * 400  # 7 frames side by side
        assert imgs[0].shape[0] < 144  # the thumbnail row is downscaled
    assert ".full:target" in page


def test_cli_default_baselines_are_the_registered_ones():
    from vinterp.baselines import BASELINES
    from vinterp.evaluate import EvaluateConfig

    opt = next(p for p in main.commands["evaluate"].params if p.name == "baselines")
    names = tuple(opt.default.split(","))
    assert names == EvaluateConfig(inputs=("x",)).baselines and set(names) == set(BASELINES)
    assert all(n in opt.help for n in names)
