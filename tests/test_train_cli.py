"""`vinterp train` as a user meets it: help text, one-line errors, the default preset, what it
says while it runs, autosave, and Ctrl-C / SIGTERM that keep the work."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from cli import _Names, main
from synth import moving_square, write_prepared
from vinterp.checkpoint import load_checkpoint
from vinterp.config import preset_configs
from vinterp.train import train

ROOT = Path(__file__).resolve().parents[1]
# A tiny network on the default preset: the CLI flags and the same fields for train().
TINY_FLAGS = ["--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--n-layers-D", "2",
              "--flow-downscale", "2", "--corr-radius", "2", "--crop", "32", "--batch-size",
              "1", "--num-workers", "0", "--val-windows", "1"]
TINY_MODEL = dict(netG="unet_32", ngf=8, ndf=8, n_layers_D=2, flow_downscale=2, corr_radius=2)
TINY_TRAIN = dict(crop=32, batch_size=1, num_workers=0, val_windows=1)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- help ------------------------------------------------------------------------------------

def _commands():
    return sorted(main.commands.items())


@pytest.mark.parametrize(("name", "command"), _commands())
def test_every_command_and_option_has_help_text(name, command):
    """As sqlite-utils's test suite does: no command, no option without help."""
    assert (command.help or "").strip(), f"`vinterp {name}` has no help text"
    for p in command.params:
        if isinstance(p, click.Option) and not p.hidden:
            assert (p.help or "").strip(), f"`vinterp {name} {p.opts[0]}` has no help text"
    r = CliRunner().invoke(main, [name, "--help"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(("name", "command"), _commands())
def test_options_with_a_fixed_set_of_values_show_them_in_help(name, command):
    text = CliRunner().invoke(main, [name, "--help"], terminal_width=400).output
    for p in command.params:
        if isinstance(p.type, click.Choice):
            names = list(p.type.choices)
        elif isinstance(p.type, _Names):
            names = list(p.type.names())
        else:
            continue
        assert "[" + "|".join(names) + "]" in text, (name, p.opts)


def test_train_text_options_are_choices_and_options_are_grouped():
    named = {"--netG", "--norm", "--head", "--gan-mode", "--flow-prior", "--flow-param",
             "--netD", "--preset"}
    params = {p.opts[0]: p for p in main.commands["train"].params}
    assert all(isinstance(params[o].type, _Names) for o in named)
    text = CliRunner().invoke(main, ["train", "--help"]).output
    sections = [line for line in text.splitlines() if line.endswith("options:")]
    assert sections == ["Recipe options:", "Data options:", "Model options:",
                        "Losses options:", "Schedule options:", "Runtime options:",
                        "Other options:"]
    assert "--inbetweens" in text and "--n-out" not in text  # the old name is hidden


# --- bad values ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "words"), [
    (["--netG", "nonsense"], ["--netG", "unet_32", "resnet_9blocks"]),
    (["--batch-size", "0"], ["--batch-size", "at least 1"]),
    (["--crop", "7"], ["--crop", "multiple of 4"]),
    (["--lr", "-1"], ["--lr", "greater than 0"]),
    (["--norm", "group"], ["--norm", "batch, instance, none"]),
    (["--gan-mode", "wgan"], ["--gan-mode", "vanilla, lsgan"]),
    (["--preset", "nope"], ["--preset", "default, finetune, pix2pix"]),
    (["--device", "gpu"], ["--device", "cuda:N"]),
    (["--inbetweens", "0"], ["--inbetweens", "at least 1"]),
    (["--batch-size", "abc"], ["--batch-size", "integer"]),
    (["--no-such-option"], ["--no-such-option"]),
    (["--preset", "pix2pix", "--crop", "128"], ["--crop", "multiple of 256"]),
    (["--head", "pixels", "--lambda-flow", "1"], ["--lambda-flow", "flow head", "give 0"]),
    (["--n-out", "0"], ["--inbetweens", "at least 1"]),  # the old name still works
])
def test_bad_values_give_one_line_and_exit_2(tmp_path, args, words):
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "none"), "--out",
                                  str(tmp_path / "run"), *args])
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)  # no traceback
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "run").exists()


def test_resume_without_a_checkpoint_says_why(tmp_path):
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "run"), "--resume"])
    assert r.exit_code == 2 and "no run has saved there yet" in r.stderr
    r = CliRunner().invoke(main, ["train", "--resume", "--preset", "pix2pix"])
    assert r.exit_code == 2 and "--preset pix2pix: --resume takes" in r.stderr
    r = CliRunner().invoke(main, ["train", "--resume", "--inbetweens", "3"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --inbetweens 3: --resume takes")


# --- the default preset ----------------------------------------------------------------------

def _one_step_then_save(run) -> None:
    import vinterp.train as train_mod

    train_mod.train_step(run, next(iter(train_mod._loader(run))))
    train_mod.save(run)


def test_train_with_no_options_builds_the_default_preset(tmp_path, monkeypatch):
    """`vinterp train` and nothing else, on a small dataset in the default place, builds the
    default preset (256x256 crops, batch 4, unet_64 ...) and stores it with the checkpoint.
    One real step instead of the 3 + 3 epochs, which would take CI 20 s."""
    import vinterp.train as train_mod

    seqs = {"a": (moving_square(12, 256, 256, size=40, vx=3, seed=1), "train"),
            "b": (moving_square(12, 256, 256, size=30, vx=-2, vy=2, x0=90, seed=2), "train"),
            "c": (moving_square(7, 256, 256, size=40, vx=3, seed=3), "val")}
    write_prepared(tmp_path / "data" / "prepared", seqs, stride=2)  # 6 train windows
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_mod, "train_loop", _one_step_then_save)
    r = CliRunner().invoke(main, ["train"])
    assert r.exit_code == 0, r.output
    state = load_checkpoint(tmp_path / "runs" / "default" / "latest.pt")
    model, cfg = preset_configs("default")
    assert state["preset"] == "default" and state["step"] == 1
    assert state["model_config"] == model and state["train_config"] == cfg
    assert (model.netG, model.ngf, model.flow_downscale, cfg.lambda_gan) == ("unet_64", 32, 4, 0)
    assert "preset: default (the shipped model's first stage" in r.stderr
    assert "schedule: 1 steps/epoch x 4 epochs (2 + 2 decaying) = 4 steps" in r.stderr


# --- what it says ----------------------------------------------------------------------------

def test_start_up_summary_progress_and_checkpoint_size(dataset, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(out),
                                  *TINY_FLAGS, "--max-steps", "6", "--val-every-steps", "3",
                                  "--log-every", "2"])
    assert r.exit_code == 0, r.output
    err = r.stderr
    for words in ["preset: default", "device: cpu, 1 CPU threads",
                  "data: ", "6 train / 2 val windows of 7 frames",
                  "model: unet_32 ngf 8, flow head", "M parameters",
                  "schedule: 6 steps/epoch x 4 epochs (2 + 2 decaying) = 24 steps, stopping "
                  "at step 6", "saves: ", "every 3 steps, every 10 min and on Ctrl-C / SIGTERM",
                  f"resume: vinterp train --out {out} --resume", "validates: 1 val windows",
                  "pace: ", "ETA", "step 2/6", "validating 1 windows at step 3",
                  "val PSNR", "MiB (weights, optimizer and RNG states)"]:
        assert words in err, (words, err)
    assert err.count("MiB (weights") == 1  # the size is said once, at the first save
    r = CliRunner().invoke(main, ["train", "--out", str(out), "--resume", "--max-steps", "7"])
    assert r.exit_code == 0, r.output
    assert f"resuming {out / 'latest.pt'} from step 6 (epoch 1, 0 of 6 steps into it)" in r.stderr


def test_time_based_autosave(dataset, tmp_path, monkeypatch):
    import vinterp.train as train_mod

    saved = []
    real = train_mod.save_checkpoint

    def spy(path, state):
        saved.append(state["step"])
        return real(path, state)

    monkeypatch.setattr(train_mod, "save_checkpoint", spy)
    model, cfg = preset_configs("default", TINY_MODEL, dict(
        TINY_TRAIN, data=str(dataset), out=str(tmp_path / "a"), max_steps=3,
        val_every_steps=0, autosave_minutes=1e-9))
    train(model, cfg, progress=False)
    assert saved == [1, 2, 3]  # every step is "10 minutes later" here, then the final save
    saved.clear()
    model, cfg = preset_configs("default", TINY_MODEL, dict(
        TINY_TRAIN, data=str(dataset), out=str(tmp_path / "b"), max_steps=3,
        val_every_steps=0))
    train(model, cfg, progress=False)
    assert saved == [3] and cfg.autosave_minutes == 10


# --- signals ---------------------------------------------------------------------------------

def _interrupt_mid_run(dataset: Path, out: Path, sig: int, extra: list[str]):
    """Start `vinterp train` (no step limit in reach) in its own process group, wait until it
    has saved once, send `sig`: SIGINT to the whole group, as a terminal's Ctrl-C reaches
    DataLoader workers too; SIGTERM to the process, as `kill` does. Returns (return code,
    stderr)."""
    cmd = [sys.executable, "-c", "from cli import main; main()", "train", "--data",
           str(dataset), "--out", str(out), *TINY_FLAGS, "--max-steps", "100000",
           "--val-every-steps", "2", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A background job of a non-interactive shell (as CI may be) inherits SIGINT ignored:
    # give the child a terminal's default so Ctrl-C is what it would be for a user.
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "latest.pt").exists():  # the marker: the step-2 checkpoint
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    if sig == signal.SIGINT:
        os.killpg(p.pid, sig)
    else:
        p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


@pytest.mark.parametrize(("sig", "code", "extra"), [
    (signal.SIGINT, 130, ["--num-workers", "1"]),  # a worker process gets the Ctrl-C too
    (signal.SIGTERM, 143, ["--lambda-gan", "1"]),  # with a discriminator to keep in step too
])
def test_signal_mid_training_saves_and_resume_matches_an_uninterrupted_run(
        dataset, tmp_path, sig, code, extra):
    out = tmp_path / "run"
    rc, err = _interrupt_mid_run(dataset, out, sig, extra)
    assert rc == code, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    name = signal.Signals(sig).name
    stopped = load_checkpoint(out / "latest.pt")["step"]
    assert stopped >= 2
    assert re.fullmatch(rf"interrupted \({name}\): saved step {stopped} \(epoch \d+\) to "
                        rf"{re.escape(str(out / 'latest.pt'))}; resume with: vinterp train "
                        rf"--out {re.escape(str(out))} --resume", last), last

    # Resume with exactly the printed command (plus where to stop), 3 steps on.
    resume = shlex.split(last.split("resume with: ")[1])[1:]
    r = CliRunner().invoke(main, [*resume, "--max-steps", str(stopped + 3)])
    assert r.exit_code == 0, r.output
    assert f"from step {stopped}" in r.stderr
    got = load_checkpoint(out / "latest.pt")

    given = {"--lambda-gan": ("lambda_gan", float), "--num-workers": ("num_workers", int)}
    fields = {given[k][0]: given[k][1](v) for k, v in zip(extra[::2], extra[1::2], strict=True)}
    model, cfg = preset_configs("default", TINY_MODEL, dict(
        TINY_TRAIN, data=str(dataset), out=str(tmp_path / "full"), val_every_steps=2,
        max_steps=stopped + 3, **fields))
    want = load_checkpoint(train(model, cfg, progress=False).checkpoint)
    assert got["step"] == want["step"] == stopped + 3
    assert _same(got["generator"], want["generator"])
    assert _same(got["discriminator"], want["discriminator"])
    if cfg.lambda_gan:  # D really trained: it moved off its initial weights
        from vinterp.networks import build_discriminator, build_generator

        torch.manual_seed(cfg.seed)  # train() builds G, then D, right after seeding
        build_generator(model)
        assert not _same(build_discriminator(model).state_dict(), got["discriminator"])


def test_interrupt_before_training_starts_saves_nothing(dataset, tmp_path, monkeypatch):
    """A Ctrl-C during setup: nothing to keep, and the line says so."""
    import vinterp.train as train_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_open_data", interrupted)
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out",
                                  str(tmp_path / "run"), *TINY_FLAGS])
    assert r.exit_code == 130
    assert r.stderr.strip() == ("interrupted (SIGINT): training had not started; nothing was "
                                "saved")


def test_the_stream_prior_sets_the_generator_inputs(dataset, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(out),
                                  *TINY_FLAGS, "--flow-prior", "stream", "--max-steps", "1",
                                  "--quiet"])
    assert r.exit_code == 0, r.output
    state = load_checkpoint(out / "latest.pt")
    assert (state["model_config"].flow_prior, state["model_config"].n_in) == ("stream", 4)


# --- fine-tuning -----------------------------------------------------------------------------

def test_init_from_fine_tunes_an_exported_model_with_its_own_config(dataset, tmp_path):
    """`--init-from` starts from another model's generator weights (here an exported float16
    file), takes its model config with no model options repeated, trains with a fresh
    schedule, and records where it started."""
    first, small = tmp_path / "first", tmp_path / "first.pt"
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(first),
                                  *TINY_FLAGS, "--max-steps", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(main, ["export", str(first / "latest.pt"), "-o", str(small)]
                              ).exit_code == 0
    source = load_checkpoint(small)
    assert source["preset"] == "default"  # export keeps the recipe's name
    # Learning rate so small that one step cannot move float32 weights off their start.
    tune = tmp_path / "tune"
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(tune),
                                  "--init-from", str(small), "--crop", "32", "--batch-size",
                                  "1", "--val-windows", "1", "--lambda-l1", "0",
                                  "--lambda-mse", "1000", "--lr", "1e-30", "--max-steps", "1"])
    assert r.exit_code == 0, r.output
    assert f"fine-tuning: the generator starts from {small}'s weights" in r.stderr
    assert "losses: 1000 x mse;" in r.stderr
    state = load_checkpoint(tune / "latest.pt")
    assert state["model_config"] == source["model_config"]
    assert state["step"] == 1 and state["train_config"].init_from == str(small)
    got, want = state["generator"], source["generator"]
    assert want.keys() == got.keys()
    assert all(torch.equal(got[k].to(want[k].dtype), want[k]) for k in want)


def test_init_from_refuses_a_model_option_that_changes_the_network(dataset, tmp_path):
    first = tmp_path / "first"
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(first),
                                  *TINY_FLAGS, "--max-steps", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(tmp_path / "x"),
                                  "--init-from", str(first / "latest.pt"), "--ngf", "16",
                                  "--crop", "32", "--quiet"])
    assert r.exit_code != 0
    line = r.output.strip().splitlines()[-1]
    assert "--init-from" in line and "ngf 8 -> 16" in line, r.output
    # A model option that keeps the weights' shapes is fine-tuned as given.
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(tmp_path / "z"),
                                  "--init-from", str(first / "latest.pt"), "--backward-flows",
                                  "inverted", "--crop", "32", "--max-steps", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "z" / "latest.pt")["model_config"].backward_flows == \
        "inverted"
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(tmp_path / "y"),
                                  "--init-from", str(tmp_path / "nothing.pt"), "--quiet"])
    assert r.exit_code != 0 and "no such file" in r.output, r.output


def test_the_default_preset_ends_by_naming_its_fine_tuning_stage(dataset, tmp_path):
    """The shipped model is two runs (`default`, then `finetune` from its checkpoint): the
    first says how to make the second, and the second fine-tunes that checkpoint."""
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--out", str(out),
                                  *TINY_FLAGS, "--max-steps", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    then = (f"next, the shipped model's fine-tuning stage: vinterp train --preset finetune "
            f"--init-from {out / 'latest.pt'}")
    assert then in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(dataset), "--preset", "finetune",
                                  "--init-from", str(out / "latest.pt"), "--out",
                                  str(tmp_path / "tuned"), "--crop", "32", "--batch-size", "1",
                                  "--val-windows", "1", "--max-steps", "1"])
    assert r.exit_code == 0, r.output
    assert "losses: 50 x l1, 1000 x mse;" in r.stderr and "next, the shipped" not in r.output
    state = load_checkpoint(tmp_path / "tuned" / "latest.pt")
    assert state["preset"] == "finetune" and state["model_config"].netG == "unet_32"
    # the stage's own change to the model it starts from (stage one: 2 reversal steps)
    assert load_checkpoint(out / "latest.pt")["model_config"].flow_reversal == 2
    assert state["model_config"].flow_reversal == 4
