"""Training throughput (windows/s) and peak memory on CPU.

    python benchmarks/bench_train.py [--threads 2] [--steps 6]

Builds a small synthetic prepared dataset (288x512 frames, the `vinterp prepare` default size)
in a temp folder and times `vinterp.train.train` steps for the default config (unet_256, ngf 64,
flow head, 256x256 crops, batch 1) and for 128x128 crops, each in a fresh process so peak RSS
(ru_maxrss) is per configuration. Timed: the wall time of steps 3..2+N of one run (data
loading included, validation and checkpointing not), from `TrainResult.step_seconds`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "default (unet_256 ngf64 flow, crop 256)": ({}, {"crop": 256}),
    "default net, crop 128 (unet_128)": ({"netG": "unet_128"}, {"crop": 128}),
    "pixels head (unet_256 ngf64, crop 256)": ({"head": "pixels"}, {"crop": 256}),
    "fast (unet_64 ngf32 flow/4, crop 256)": (
        {"netG": "unet_64", "ngf": 32, "flow_downscale": 4}, {"crop": 256}),
    "shipped recipe (fast + corr, distill, no GAN, b4)": (
        {"netG": "unet_64", "ngf": 32, "ndf": 32, "flow_downscale": 4, "flow_gain": 8,
         "corr_radius": 4},
        {"crop": 256, "batch_size": 4, "lambda_flow": 10.0, "lambda_gan": 0.0}),
}

CHILD = r"""
import json, resource, sys
import torch
sys.path.insert(0, {tests!r})
from vinterp.config import ModelConfig, TrainConfig
from vinterp.train import train
torch.set_num_threads({threads})
mc = ModelConfig(**{model!r})
base = dict(data={data!r}, out={out!r}, val_windows=1, n_epochs=1000, n_epochs_decay=0)
base.update({train_kw!r})
res = train(mc, TrainConfig(**base, max_steps={total}), progress=False)
times = res.step_seconds[{warm}:]  # the first steps warm up allocators and caches
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"sec": sum(times), "steps": len(times), "peak_mb": peak}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests"))
    from synth import moving_square, write_prepared

    with tempfile.TemporaryDirectory() as tmp:
        seqs = {f"s{i}": (moving_square(20, 288, 512, size=60, vx=4 + i, seed=i), "train")
                for i in range(3)}
        seqs["v"] = (moving_square(14, 288, 512, size=60, vx=5, seed=9), "val")
        data = write_prepared(Path(tmp) / "data", seqs)
        print(f"torch threads {args.threads}, {args.steps} timed steps after 2 warm-up steps")
        print(f"{'config':<50} {'windows/s':>10} {'s/step':>8} {'peak MB':>9}")
        for i, (name, (model, train_kw)) in enumerate(CONFIGS.items()):
            code = CHILD.format(tests=str(root / "tests"), threads=args.threads, model=model,
                                data=str(data), out=f"{tmp}/run{i}", train_kw=train_kw,
                                warm=2, total=2 + args.steps)
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  cwd=root)
            if proc.returncode:
                print(f"{name:<50} failed: {proc.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            bs = train_kw.get("batch_size", 1)
            print(f"{name:<50} {r['steps'] * bs / r['sec']:>10.2f} {r['sec'] / r['steps']:>8.2f}"
                  f" {r['peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
