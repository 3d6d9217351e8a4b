"""The training loop: a step learns, resume is exact, DDP on gloo agrees, the CLI works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from synth import background, moving_square
from vinterp.checkpoint import load_checkpoint
from vinterp.config import ModelConfig, TrainConfig, preset_configs
from vinterp.networks import build_generator
from vinterp.train import train

TINY = ModelConfig(netG="unet_32", ngf=8, ndf=8, n_layers_D=2)


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), crop=32, batch_size=2, n_epochs=2,
                n_epochs_decay=2, val_windows=2, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_training_step_changes_the_weights(dataset, tmp_path):
    torch.manual_seed(3)
    before = build_generator(TINY).state_dict()
    # The flow head's last layer starts at zero (a plain blend), so the first step moves only
    # that layer; from the second step on, gradients reach the whole network.
    res = train(TINY, _cfg(dataset, tmp_path / "run", max_steps=2), progress=False)
    after = load_checkpoint(res.checkpoint)["generator"]
    assert res.steps == 2
    changed = [k for k in before if before[k].dtype.is_floating_point
               and not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2


def test_resumed_run_ends_with_the_same_weights(dataset, tmp_path):
    # 3 windows/epoch at batch 2 -> 1 step per epoch... use batch 1 for several steps per epoch
    full = train(TINY, _cfg(dataset, tmp_path / "full", batch_size=1, max_steps=7),
                 progress=False)
    part = train(TINY, _cfg(dataset, tmp_path / "part", batch_size=1, max_steps=3),
                 progress=False)
    assert part.steps == 3
    resumed = train(TINY, _cfg(dataset, tmp_path / "part", batch_size=1, max_steps=7),
                    resume=part.checkpoint, progress=False)
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (full.epochs, 7)
    assert _same(a["generator"], b["generator"])
    assert _same(a["discriminator"], b["discriminator"])


def test_validation_metrics_and_strips_are_written(dataset, tmp_path):
    res = train(TINY, _cfg(dataset, tmp_path / "run", n_epochs=1, n_epochs_decay=1),
                progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one per epoch
    m = json.loads(lines[-1])
    assert {"psnr", "ssim", "blend_psnr", "blend_ssim", "epoch", "step"} <= m.keys()
    assert 5 < m["blend_psnr"] < 60 and -1 <= m["ssim"] <= 1
    strips = sorted((tmp_path / "run" / "strips").glob("*.png"))
    assert [p.name for p in strips] == ["step_000003.png", "step_000006.png"]  # 6 windows, batch 2
    from PIL import Image

    im = Image.open(strips[0])
    assert im.size == (7 * 48, 2 * 40)  # 7 frames side by side, real row above generated
    assert res.epochs == 2


def test_ddp_two_gloo_processes_end_with_identical_weights(dataset, tmp_path):
    out = tmp_path / "ddp"
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(worker), str(dataset), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    assert _same(r0["G"], r1["G"]) and _same(r0["D"], r1["D"])
    assert (out / "latest.pt").exists()
    init = build_generator(TINY)
    assert not _same({k: v for k, v in init.named_parameters()}, r0["G"])


def test_cli_train_then_resume_and_refuse_overwrite(dataset, tmp_path):
    out = tmp_path / "cli_run"
    args = ["train", "--data", str(dataset), "--out", str(out), "--netG", "unet_32",
            "--ngf", "8", "--ndf", "8", "--n-layers-D", "2", "--crop", "32", "--max-steps", "2",
            "--val-windows", "1", "--quiet"]
    runner = CliRunner()
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "checkpoint:" in r.output and (out / "latest.pt").exists()
    state = load_checkpoint(out / "latest.pt")
    # the default preset with the given fields replaced
    want = preset_configs("default", dict(netG="unet_32", ngf=8, ndf=8, n_layers_D=2))[0]
    assert state["model_config"] == want and state["preset"] == "default"
    assert state["step"] == 2

    r = runner.invoke(main, args)
    assert r.exit_code != 0 and "--resume" in r.output

    r = runner.invoke(main, ["train", "--out", str(out), "--resume", "--max-steps", "3",
                             "--quiet"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "latest.pt")["step"] == 3


def test_cli_train_with_the_dis_flow_prior_and_interpolate_from_its_checkpoint(dataset,
                                                                                tmp_path):
    """`--flow-prior dis` is stored in the checkpoint, so inference rebuilds the prior model
    from the checkpoint alone; a tiny run stays close to the dis baseline it starts from."""
    out = tmp_path / "prior_run"
    r = CliRunner().invoke(main, [
        "train", "--data", str(dataset), "--out", str(out), "--netG", "unet_32", "--ngf", "8",
        "--flow-downscale", "2", "--flow-prior", "dis", "--lambda-gan", "0",
        "--lambda-flow", "1", "--crop", "32", "--max-steps", "2", "--val-windows", "1",
        "--quiet"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "latest.pt")["model_config"].flow_prior == "dis"
    from vinterp.baselines import blend_interpolate, dis_interpolate
    from vinterp.inference import Interpolator

    a = background(40, 48, seed=4)
    b = np.roll(a, 4, axis=1)  # a textured pan: DIS finds it, the blend does not
    frames = Interpolator(out / "latest.pt", device="cpu").interpolate_pair(a, b)
    want = dis_interpolate(a, b, 5)

    def gap(xs):
        return max(np.abs(x.astype(int) - w).mean() for x, w in zip(xs, want, strict=True))

    assert len(frames) == 5
    assert gap(frames) < 1.0 < 1.5 < gap(blend_interpolate(a, b, 5))


def test_cli_train_bad_inputs_give_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--data", str(tmp_path / "nope"), "--out",
                             str(tmp_path / "o")])
    assert r.exit_code == 2 and "vinterp prepare" in r.output
    assert len(r.output.strip().splitlines()) == 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    r = runner.invoke(main, ["train", "--resume", str(bad)])
    assert r.exit_code == 2 and "not a readable vinterp checkpoint" in r.output


def test_teacher_flows_measure_the_true_motion():
    from synth import background
    from vinterp.dataset import teacher_flows

    bg = background(64, 160, seed=4)
    clip = np.stack([np.roll(bg, 2 * i, axis=1) for i in range(7)])  # 2 px/frame to the right
    tf = teacher_flows(clip).numpy()
    inner = (slice(8, -8), slice(40, -40))  # away from the wrapped border
    for k in range(5):
        # backward flow from in-between k+1 to frame 0 is -2(k+1) px, to frame 6 is 2(5-k)
        assert abs(np.median(tf[k, 0, 0][inner]) + 2 * (k + 1)) < 0.3
        assert abs(np.median(tf[k, 1, 0][inner]) - 2 * (5 - k)) < 0.3
        assert tf[k, :, 2][(slice(None), *inner)].mean() > 0.9


def test_flow_distillation_trains(dataset, tmp_path):
    res = train(TINY, _cfg(dataset, tmp_path / "run", max_steps=2, lambda_flow=1.0),
                progress=False)
    assert res.steps == 2
    with pytest.raises(Exception, match="flow head"):
        train(ModelConfig(netG="unet_32", ngf=8, head="pixels"),
              _cfg(dataset, tmp_path / "run2", max_steps=1, lambda_flow=1.0), progress=False)


def test_export_half_model_loads_for_inference(dataset, tmp_path):
    res = train(TINY, _cfg(dataset, tmp_path / "run", max_steps=2), progress=False)
    out = tmp_path / "model.pt"
    runner = CliRunner()
    r = runner.invoke(main, ["export", str(res.checkpoint), "-o", str(out)])
    assert r.exit_code == 0, r.output
    state = load_checkpoint(out)
    assert state.get("discriminator") is None and state.get("optim_G") is None
    assert all(v.dtype == torch.float16 for v in state["generator"].values()
               if v.is_floating_point())
    assert out.stat().st_size < res.checkpoint.stat().st_size / 2
    from vinterp.inference import Interpolator

    a, b = (np.full((40, 48, 3), v, np.uint8) for v in (20, 220))
    frames = Interpolator(out, device="cpu").interpolate_pair(a, b)
    assert len(frames) == 5 and frames[0].shape == (40, 48, 3) and frames[0].dtype == np.uint8
    r = runner.invoke(main, ["export", str(res.checkpoint), "-o", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_l1_only_training_leaves_the_discriminator_alone(dataset, tmp_path):
    res = train(TINY, _cfg(dataset, tmp_path / "run", max_steps=2, lambda_gan=0.0),
                progress=False)
    from vinterp.networks import build_discriminator

    torch.manual_seed(3)  # train() builds G, then D, right after seeding
    build_generator(TINY)
    init_D = build_discriminator(TINY).state_dict()
    state = load_checkpoint(res.checkpoint)
    assert _same(init_D, state["discriminator"])
    assert not _same(build_generator(TINY).state_dict(), state["generator"])


def test_cli_prepare_then_train_then_checkpoint(tmp_path, monkeypatch):
    """The user's path with default locations: videos -> `vinterp prepare` -> `vinterp train`
    (no --data, no --out) -> a checkpoint that `vinterp upsample --model` takes."""
    from synth import write_video

    vids = tmp_path / "videos"
    vids.mkdir()
    for i, (vx, vy) in enumerate([(2, 0), (-2, 1), (1, 1)]):
        write_video(vids / f"clip{i}.mp4",
                    moving_square(14, 48, 64, size=12, vx=vx, vy=vy, x0=24, seed=i), fps=10)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["prepare", str(vids), "--val", "clip2", "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["train", "--netG", "unet_32", "--ngf", "8", "--ndf", "8",
                             "--n-layers-D", "2", "--crop", "32", "--max-steps", "2",
                             "--val-windows", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "runs" / "default" / "latest.pt"
    state = load_checkpoint(ckpt)
    assert state["step"] == 2 and state["train_config"].data == "data/prepared"
    out = tmp_path / "smooth.mp4"
    r = runner.invoke(main, ["upsample", str(vids / "clip2.mp4"), "-o", str(out), "--model",
                             str(ckpt), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "output: 79 frames" in r.output  # 6 * (14 - 1) + 1
