"""Generator speed at 640x360 on CPU: forward ms and synthesized frames/s.

    .venv/bin/python benchmarks/bench_generator.py [--threads 2] [--repeats 5] [--size 640x360]
        [--only NAME ...] [--idle 0.75] [--max-wait 900]

Each config runs one generator pass (n_out = 5 frames) on a (1, 6, H', W') input, H' and W'
the frame size padded up to `generator_multiple(cfg)`, under `torch.inference_mode()` in eval
mode, including the flow head's downscale, upsampling and warp. The figure reported is the
minimum over `--repeats` timed passes after one warm-up pass, configs timed round-robin (the
machine is shared; the minimum is the least disturbed run; the median is printed too).
`--idle 0.75` waits before each round until the CPUs are mostly idle, which on a shared
machine is the way to get uncontended figures. `cpu-ms/thr`: process CPU time of the fastest
pass divided by the thread count, a rough second opinion under load (it still grows with
contention, and OpenMP spin-waiting counts as CPU time).
Target: >= 15 frames/s at 640x360 on 2 threads (<= ~333 ms/pass).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vinterp.config import ModelConfig
from vinterp.networks import build_generator, count_parameters, generator_multiple

CONFIGS: dict[str, ModelConfig] = {
    "unet_256 ngf64 pixels (reference)": ModelConfig(netG="unet_256", ngf=64, head="pixels"),
    "unet_256 ngf64 flow ds1 (default)": ModelConfig(netG="unet_256", ngf=64),
    "unet_128 ngf32 flow ds2": ModelConfig(netG="unet_128", ngf=32, flow_downscale=2),
    "unet_64 ngf32 flow ds2": ModelConfig(netG="unet_64", ngf=32, flow_downscale=2),
    "unet_64 ngf40 flow ds2": ModelConfig(netG="unet_64", ngf=40, flow_downscale=2),
    "unet_64 ngf48 flow ds2": ModelConfig(netG="unet_64", ngf=48, flow_downscale=2),
    "unet_64 ngf64 flow ds2": ModelConfig(netG="unet_64", ngf=64, flow_downscale=2),
    "unet_64 ngf96 flow ds2": ModelConfig(netG="unet_64", ngf=96, flow_downscale=2),
    "unet_64 ngf64 flow ds2 corr4": ModelConfig(netG="unet_64", ngf=64, flow_downscale=2,
                                                flow_gain=8.0, corr_radius=4),
    "unet_64 ngf32 flow ds4": ModelConfig(netG="unet_64", ngf=32, flow_downscale=4),
    "unet_64 ngf64 flow ds4": ModelConfig(netG="unet_64", ngf=64, flow_downscale=4),
    "unet_64 ngf32 flow ds4 corr4": ModelConfig(netG="unet_64", ngf=32, flow_downscale=4,
                                                flow_gain=8.0, corr_radius=4),
    "unet_64 ngf64 flow ds4 corr4": ModelConfig(netG="unet_64", ngf=64, flow_downscale=4,
                                                flow_gain=8.0, corr_radius=4),
    "unet_32 ngf16 flow ds2": ModelConfig(netG="unet_32", ngf=16, flow_downscale=2),
    "unet_32 ngf24 flow ds2": ModelConfig(netG="unet_32", ngf=24, flow_downscale=2),
    "unet_32 ngf32 flow ds2": ModelConfig(netG="unet_32", ngf=32, flow_downscale=2),
    "unet_32 ngf48 flow ds2": ModelConfig(netG="unet_32", ngf=48, flow_downscale=2),
    "unet_32 ngf32 flow ds4": ModelConfig(netG="unet_32", ngf=32, flow_downscale=4),
    "unet_32 ngf64 flow ds4": ModelConfig(netG="unet_32", ngf=64, flow_downscale=4),
    "unet_32 ngf96 flow ds4": ModelConfig(netG="unet_32", ngf=96, flow_downscale=4),
    "resnet_6blocks ngf16 flow ds2": ModelConfig(netG="resnet_6blocks", ngf=16,
                                                 flow_downscale=2),
    "resnet_6blocks ngf32 flow ds4": ModelConfig(netG="resnet_6blocks", ngf=32,
                                                 flow_downscale=4),
}


def pad_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def idle_fraction(seconds: float) -> float:
    """Fraction of all CPUs idle over `seconds` (Linux /proc/stat; 1.0 where unavailable)."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(n) for n in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    try:
        i0, t0 = read()
        time.sleep(seconds)
        i1, t1 = read()
    except OSError:
        return 1.0
    return (i1 - i0) / max(1, t1 - t0)


def wait_for_idle(threshold: float, deadline: float) -> None:
    while threshold > 0 and time.time() < deadline and idle_fraction(0.5) < threshold:
        pass


def gflops(G: torch.nn.Module, x: torch.Tensor) -> float:
    """Convolution/matmul GFLOPs of one pass (elementwise work of the head not counted)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        G(x)
    return counter.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per config")
    ap.add_argument("--size", default="640x360", help="WxH before padding")
    ap.add_argument("--only", nargs="*", help="substrings of config names to run")
    ap.add_argument("--idle", type=float, default=0.0,
                    help="before each round wait until this fraction of the CPUs is idle "
                         "(e.g. 0.75 on a shared machine; 0 = don't wait)")
    ap.add_argument("--max-wait", type=float, default=900.0,
                    help="give up waiting for idle CPUs after this many seconds in total")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    names = [n for n in CONFIGS if not args.only or any(s in n for s in args.only)]
    runs = {}
    for name in names:
        cfg = CONFIGS[name]
        mult = generator_multiple(cfg)
        h, w = pad_up(height, mult), pad_up(width, mult)
        runs[name] = (build_generator(cfg).eval(), torch.rand(1, 3 * cfg.n_in, h, w) * 2 - 1)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    # Round-robin over configs so a burst of load from other jobs hits all of them alike.
    with torch.inference_mode():
        for name in names:
            G, x = runs[name]
            G(x)  # warm-up
        deadline = time.time() + args.max_wait
        for _ in range(args.repeats):
            wait_for_idle(args.idle, deadline)
            for name in names:
                G, x = runs[name]
                t0, c0 = time.perf_counter(), time.process_time()
                G(x)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size} padded per config, "
          f"min (median) of {args.repeats} passes; load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'config':34s} {'padded':>8s} {'params':>7s} {'GFLOP':>6s} {'ms/pass':>15s} "
          f"{'frames/s':>9s} {'cpu-ms/thr':>10s}")
    for name in names:
        G, x = runs[name]
        ms = min(times[name]) * 1000
        med = statistics.median(times[name]) * 1000
        fps = CONFIGS[name].n_out / (ms / 1000)
        padded = f"{x.shape[-1]}x{x.shape[-2]}"
        cpu_ms = min(cpu[name]) * 1000 / args.threads
        print(f"{name:34s} {padded:>8s} {count_parameters(G) / 1e6:6.2f}M "
              f"{gflops(G, x):6.1f} {ms:7.1f} ({med:5.0f}) {fps:9.1f} {cpu_ms:10.1f}")


if __name__ == "__main__":
    main()
