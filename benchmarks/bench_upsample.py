"""Speed and memory of `vinterp upsample` at 640x360, side by side with ffmpeg's minterpolate and
the decode+encode floor, all on the same clip in one run (run by hand; prints a table).

    .venv/bin/python benchmarks/bench_upsample.py [--model PATH] [--frames 16] [--threads N]

Rows (all make (m+1)x the frames of the clip, encoded with libx264 crf 18 preset veryfast,
vinterp upsample's default):
- vinterp upsample: the real CLI in a fresh process (frames/s over the whole command, and over
  the streaming loop alone, i.e. without Python/torch start-up and model loading);
- the same on a clip 5x longer: peak memory must stay flat;
- ffmpeg minterpolate (mi_mode=mci, mc_mode=aobmc, me_mode=bidir) at (m+1)x the rate;
- floor, ffmpeg only: decode + frame-rate duplication + encode, no interpolation;
- floor, vinterp IO: `upsample_file` with the network replaced by frame repetition (the cost
  of our decode/classify/encode pipeline).
Peak memory is the summed RSS of the command's process tree (Python and its ffmpeg children),
sampled every 20 ms; the peak in each quarter of a run shows whether it grows as the run goes.

Without --model (and no bundled default model) a randomly initialised default-architecture
model (ModelConfig(): unet_256, ngf 64, flow head) is used: its speed is that of a trained one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_prep.decode import ffmpeg_exe  # noqa: E402

# The shared footage sits beside the repository, as in the README (../shared/data).
CLIP = ROOT.parent / "shared" / "data" / "videos" / "intel_bottle-detection.mp4"  # 640x360


def _children(pid: int) -> list[int]:
    """Child pids of `pid`, from its threads' /proc children lists."""
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(c) for c in (task / "children").read_text().split()]
    return kids


def tree_rss_kb(pid: int) -> int:
    """Summed VmRSS of `pid` and all its descendants. Walks the tree's own /proc entries only:
    scanning all of /proc every 20 ms took ~2.5 ms of CPU a time, 5% of a 2-core machine,
    slowing the commands it measured."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            todo += _children(p)
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


QUARTERS: list[float] = []  # peak MiB in each quarter of the last `timed` run


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run `cmd`; returns (wall seconds, peak tree RSS in MiB, stdout+stderr)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    peak = [0]
    trace: list[tuple[float, int]] = []

    def sample() -> None:
        while proc.poll() is None:
            rss = tree_rss_kb(proc.pid)
            peak[0] = max(peak[0], rss)
            trace.append((time.perf_counter() - t0, rss))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    QUARTERS[:] = [max((r for t, r in trace if q * wall / 4 <= t < (q + 1) * wall / 4),
                       default=0) / 1024 for q in range(4)]
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-2000:]}")
    return wall, peak[0] / 1024, out


def cut_clip(src: Path, frames: int, dst: Path) -> Path:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-an",
                    "-frames:v", str(frames), "-vf", "scale=640:360", "-c:v", "libx264",
                    "-crf", "12",
                    "-preset", "fast", "-pix_fmt", "yuv420p", str(dst)], check=True)
    return dst


def count_frames(path: Path) -> int:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0",
                           "-c", "copy", "-f", "null", "-"], capture_output=True, text=True)
    return int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])


_REPEAT_FLOOR = """
import sys, numpy as np
from vinterp.inference import Interpolator
from vinterp.upsample import upsample_file
class Repeat(Interpolator):
    def __init__(self, m):
        self.m, self.factor, self.context = m, m + 1, 0
        import torch
        self.device = torch.device("cpu")
    def prefetch(self, a, b):
        pass
    def interpolate_batch(self, a, b):
        return np.repeat(a[:, None], self.m, axis=1)
s = upsample_file(sys.argv[1], sys.argv[2], Repeat(int(sys.argv[3])), scene_cuts=False)
print(f"frames_out={s.frames_out} loop_seconds={s.seconds:.3f}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint (default: bundled model, else random default)")
    ap.add_argument("--frames", type=int, default=16, help="frames of the short clip")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--clip", default=str(CLIP))
    args = ap.parse_args()

    import torch

    from vinterp.checkpoint import load_checkpoint, model_state, save_checkpoint
    from vinterp.config import ModelConfig
    from vinterp.inference import default_model_path
    from vinterp.networks import build_generator

    tmp = Path(tempfile.mkdtemp(prefix="bench_upsample_"))
    model = args.model or default_model_path()
    if model is None:
        torch.manual_seed(0)
        mc = ModelConfig()
        model = save_checkpoint(tmp / "random_default.pt",
                                model_state(mc, build_generator(mc).state_dict()))
        label = "random-init ModelConfig() (unet_256, ngf 64, flow head)"
    else:
        mc = load_checkpoint(model)["model_config"]
        label = str(model)
    m = mc.n_out
    short = cut_clip(Path(args.clip), args.frames, tmp / "short.mp4")
    long = cut_clip(Path(args.clip), 5 * args.frames, tmp / "long.mp4")
    from data_prep.decode import probe_video

    fps_in = float(probe_video(short).fps)
    print(f"clip: {args.clip} 640x360, {args.frames} and {5 * args.frames} frames; model: {label}"
          f"; m = {m}; torch threads: {args.threads or torch.get_num_threads()}; "
          f"cpu cores: {os.cpu_count()}")

    rows = []
    up = [sys.executable, "-c", "from cli import run; run()", "upsample"]
    extra = ["--model", str(model), "--quiet", "--overwrite"]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    for name, clip in (("vinterp upsample", short), ("vinterp upsample, 5x longer clip", long)):
        out = tmp / f"{clip.stem}_vinterp.mp4"
        wall, peak, log = timed(up + [str(clip), "-o", str(out)] + extra)
        n_out = int(re.search(r"output: (\d+) frames", log).group(1))
        loop = float(re.search(r"done in ([\d.]+) s", log).group(1))
        rows.append((name, n_out, wall, n_out / wall, n_out / loop, peak))
        quarters = "  ".join(f"{q:.0f}" for q in QUARTERS)
        print(f"{name}: peak MiB in each quarter of the run: {quarters}")

    out = tmp / "minterp.mp4"
    vf = (f"minterpolate=fps={fps_in * (m + 1):.4f}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir")
    wall, peak, _ = timed([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(short), "-vf", vf,
                           "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", str(out)])
    n = count_frames(out)
    rows.append(("ffmpeg minterpolate (mci, aobmc, bidir)", n, wall, n / wall, None, peak))

    out = tmp / "floor.mp4"
    wall, peak, _ = timed([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(short), "-vf",
                           f"fps={fps_in * (m + 1):.4f}", "-c:v", "libx264", "-crf", "18",
                           "-preset", "veryfast", str(out)])
    n = count_frames(out)
    rows.append(("floor: ffmpeg decode + encode only", n, wall, n / wall, None, peak))

    out = tmp / "floor_io.mp4"
    wall, peak, log = timed([sys.executable, "-c", _REPEAT_FLOOR, str(short), str(out), str(m)])
    n = int(re.search(r"frames_out=(\d+)", log).group(1))
    loop = float(re.search(r"loop_seconds=([\d.]+)", log).group(1))
    rows.append(("floor: vinterp IO, network replaced by repeats", n, wall, n / wall, n / loop,
                 peak))

    # Synthesized frames: the output minus the input frames it copies (fps ratio m / (m + 1)).
    print(f"{'':48s} {'frames':>7s} {'wall s':>8s} {'fps wall':>9s} {'synth/s':>8s} "
          f"{'fps loop':>9s} {'peak MiB':>9s}")
    for name, n, wall, fw, fl, peak in rows:
        loop = f"{fl:9.2f}" if fl is not None else f"{'-':>9s}"
        print(f"{name:48s} {n:7d} {wall:8.1f} {fw:9.2f} {fw * m / (m + 1):8.2f} {loop} "
              f"{peak:9.0f}")
    print(f"peak memory, 5x longer clip / short clip: {rows[1][5] / rows[0][5]:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
