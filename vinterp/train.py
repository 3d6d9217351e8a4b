"""The n:m pix2pix training loop: one machine or many (torchrun + DDP), resumable exactly.

Three parts: `setup` (devices, data, networks, optimizers, resume) builds a `Run`;
`train_step` makes one optimizer step of it; `train_loop` runs epochs of steps with validation
and checkpoints. `train` ties them together and turns Ctrl-C / SIGTERM into a saved checkpoint
and a `TrainInterrupted` that says how to resume.

One step (pix2pix order): G makes the in-betweens from the endpoints; D (when the GAN term is
on) is updated on the real clip and on the clip with generated in-betweens; G is updated on
the weighted sum of `losses.GENERATOR_LOSSES` (L1, GAN through D, census, Laplacian, flow
distillation, time reversal), each term with its `TrainConfig.lambda_*` weight.

Outputs under `TrainConfig.out`: `latest.pt` (checkpoint, written atomically at epoch ends,
every `val_every_steps` steps, every `autosave_minutes` and on interrupt), `metrics.jsonl`
(one line per validation), `strips/step_NNNNNN.png` (real row above generated row), all from
rank 0 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from vinterp import devices, losses
from vinterp.checkpoint import CheckpointError, load_checkpoint, model_state, save_checkpoint
from vinterp.config import (
    DEFAULT_PRESET,
    PRESETS,
    SHIPPED_PRESET,
    ConfigError,
    ModelConfig,
    TrainConfig,
    check_pair,
    preset_configs,
    to_dict,
)
from vinterp.dataset import DatasetError, EpochSampler, WindowDataset, join_clip, split_clip
from vinterp.interrupts import (
    Interrupted,
    as_interrupted,
    interrupts_deferred,
    latched_interrupts,
    signals_as_interrupts,
)
from vinterp.motion import PriorSpec
from vinterp.networks import build_discriminator, build_generator
from vinterp.validation import drop_rows_after, save_strip, validate

CHECKPOINT_NAME = "latest.pt"
ETA_AFTER_STEPS = 5  # steps of this call after which the start-up ETA is printed

Log = Callable[[str], None]


class TrainError(Exception):
    """A training run that cannot start; the message is one line."""


class TrainInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during training; `detail` says what was saved and how to resume."""

    def __init__(self, signum: int, detail: str) -> None:
        super().__init__(signum)
        self.detail = detail


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    epochs: int
    steps: int
    seconds: float
    last_metrics: dict | None
    # wall seconds of each optimizer step of this call (data loading included, validation and
    # checkpoint writing not), for benchmarks
    step_seconds: list = field(repr=False, compare=False, default_factory=list)
    generator: torch.nn.Module = field(repr=False, compare=False, default=None)
    discriminator: torch.nn.Module = field(repr=False, compare=False, default=None)
    preset: str | None = None  # the recipe's name, as stored in the checkpoint


@dataclass
class Run:
    """A training run between steps: configs, networks, optimizers, data and counters.
    Mutable on purpose: `train_step` and `train_loop` advance it."""

    model_cfg: ModelConfig
    cfg: TrainConfig
    preset: str | None
    device: torch.device
    rank: int
    world: int
    train_ds: WindowDataset
    val_ds: WindowDataset
    sampler: EpochSampler
    G: torch.nn.Module
    D: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: torch.optim.lr_scheduler.LambdaLR
    sched_D: torch.optim.lr_scheduler.LambdaLR
    # Set by `setup` once the networks hold their resumed weights:
    G_train: torch.nn.Module | None = None  # DDP-wrapped under torchrun, else G itself
    D_train: torch.nn.Module | None = None
    gan: losses.GANLoss | None = None
    scaler: torch.amp.GradScaler | None = None
    use_amp: bool = False
    amp_dtype: torch.dtype = torch.float16
    log: Log | None = None
    bar: Any = None  # a tqdm bar, when one is shown
    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    start_step: int = 0  # the step this call started from (resume)
    resumed_from: Path | None = None
    last_metrics: dict | None = None
    step_seconds: list = field(default_factory=list)
    start_time: float = field(default_factory=time.time)
    last_save: float = field(default_factory=time.monotonic)
    saved_step: int | None = None  # step of the last checkpoint this call wrote
    stepping: bool = False  # inside an optimizer step (a checkpoint now would be torn)
    latch: Any = None  # interrupts.latched_interrupts(): a signal waiting for a safe point

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def total_epochs(self) -> int:
        return self.cfg.n_epochs + self.cfg.n_epochs_decay

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.per_rank() // self.cfg.batch_size

    @property
    def total_steps(self) -> int:
        schedule = self.total_epochs * self.steps_per_epoch
        return min(schedule, self.cfg.max_steps) if self.cfg.max_steps else schedule

    def done(self) -> bool:
        return bool(self.cfg.max_steps) and self.step >= self.cfg.max_steps


def pick_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu."""
    try:
        return devices.pick_device(name)
    except devices.DeviceError as e:
        raise TrainError(str(e)) from None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": np.random.get_state()[1].tolist()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), 0, 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class LinearDecay:
    """pix2pix 'linear' policy: lr factor 1 for n_epochs, then linear decay to 0 over the
    rest (a LambdaLR multiplier of the epoch)."""

    n_epochs: int
    n_epochs_decay: int

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - self.n_epochs) / float(self.n_epochs_decay + 1)


def lr_lambda(cfg: TrainConfig) -> LinearDecay:
    return LinearDecay(cfg.n_epochs, cfg.n_epochs_decay)


# ---------------------------------------------------------------------------------------------
# Messages

def _say(run: Run, message: str) -> None:
    """One line to the run's log (rank 0 only), above the progress bar if there is one."""
    if run.log is None or not run.is_main:
        return
    if run.bar is not None:
        with run.bar.external_write_mode(file=sys.stderr):
            run.log(message)
    else:
        run.log(message)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def resume_command(out: str | Path) -> str:
    """The command line that continues the run in `out` from its latest checkpoint."""
    if str(out) == TrainConfig.out:
        return "vinterp train --resume"
    return f"vinterp train --out {shlex.quote(str(out))} --resume"


def _model_line(run: Run) -> str:
    m = run.model_cfg
    desc = f"{m.netG} ngf {m.ngf}, {m.head} head"
    if m.head == "flow":
        extras = [f"backbone at 1/{m.flow_downscale}" if m.flow_downscale > 1 else "",
                  f"cost volume r{m.corr_radius}" if m.corr_radius else "",
                  f"{m.flow_prior} prior" if m.flow_prior != "none" else ""]
        desc += "".join(f", {e}" for e in extras if e)
    g = sum(p.numel() for p in run.G.parameters()) / 1e6
    d = sum(p.numel() for p in run.D.parameters()) / 1e6
    idle = "" if losses.needs(run.cfg, "discriminator") else " (not trained: lambda-gan 0)"
    return f"model: {desc}; G {g:.2f} M parameters, {m.netD} D {d:.2f} M{idle}"


def summary_lines(run: Run) -> list[str]:
    """The start-up summary: recipe, device, data, model, schedule, saving, validation."""
    c, m = run.cfg, run.model_cfg
    preset = run.preset or "none (configs given directly)"
    lines = [f"preset: {preset}" + (f" ({PRESETS[run.preset].summary})"
                                    if run.preset in PRESETS else "")]
    if run.resumed_from is not None:
        lines.append(f"resuming {run.resumed_from} from step {run.step} (epoch {run.epoch}, "
                     f"{run.step_in_epoch} of {run.steps_per_epoch} steps into it)")
    elif c.init_from:
        lines.append(f"fine-tuning: the generator starts from {c.init_from}'s weights")
    dev = str(run.device)
    if run.device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(run.device)})"
    procs = f", {run.world} processes" if run.world > 1 else ""
    lines.append(f"device: {dev}, {torch.get_num_threads()} CPU threads{procs}"
                 + (", mixed precision" if run.use_amp else ""))
    lines.append(f"data: {c.data}: {len(run.train_ds)} train / {len(run.val_ds)} val windows "
                 f"of {m.window} frames; crop {c.crop}, batch {c.batch_size}")
    lines.append(_model_line(run))
    terms = ", ".join(f"{w:g} x {name}" for name, (w, _) in losses.active_terms(c).items())
    lines.append(f"losses: {terms}; Adam lr {c.lr:g} beta1 {c.beta1:g}")
    stop = f", stopping at step {c.max_steps}" if c.max_steps else ""
    lines.append(f"schedule: {run.steps_per_epoch} steps/epoch x {run.total_epochs} epochs "
                 f"({c.n_epochs} + {c.n_epochs_decay} decaying) = "
                 f"{run.total_epochs * run.steps_per_epoch} steps{stop}; ETA after "
                 f"{ETA_AFTER_STEPS} steps")
    when = ["every epoch" if c.save_every == 1 else f"every {c.save_every} epochs"]
    if c.val_every_steps:
        when.append(f"every {c.val_every_steps} steps")
    if c.autosave_minutes:
        when.append(f"every {c.autosave_minutes:g} min")
    lines.append(f"saves: {run.checkpoint} {', '.join(when)} and on Ctrl-C / SIGTERM "
                 f"(resume: {resume_command(c.out)})")
    if len(run.val_ds):
        vwhen = "every epoch" if c.val_every == 1 else f"every {c.val_every} epochs"
        vwhen += f" and every {c.val_every_steps} steps" if c.val_every_steps else ""
        n = min(c.val_windows or len(run.val_ds), len(run.val_ds))
        lines.append(f"validates: {n} val windows {vwhen} -> "
                     f"{run.out / 'metrics.jsonl'}, {run.out / 'strips'}/")
    else:
        lines.append("validates: no val windows in the dataset; validation skipped")
    return lines


# ---------------------------------------------------------------------------------------------
# Setup

def _dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _init_device(cfg: TrainConfig) -> tuple[torch.device, int, int]:
    """The device, rank and world size; joins the process group under torchrun."""
    rank, world, local_rank = _dist_env()
    device = pick_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def _open_data(model_cfg: ModelConfig, cfg: TrainConfig, world: int,
               prior: PriorSpec | None = None) -> tuple[WindowDataset, WindowDataset]:
    # With `prior` the training data computes the generator's classical prior (in the
    # DataLoader's worker processes when there are any), so a fast device is not held up by
    # DIS calls.
    try:
        train_ds = WindowDataset(cfg.data, "train", model_cfg.window, cfg.crop, cfg.flip,
                                 cfg.reverse, cfg.seed, teacher=losses.needs(cfg, "flows"),
                                 context=model_cfg.context, prior=prior)
        val_ds = WindowDataset(cfg.data, "val", model_cfg.window, context=model_cfg.context)
    except DatasetError as e:
        raise TrainError(str(e)) from None
    if len(train_ds) < cfg.batch_size * world:
        raise TrainError(
            f"{cfg.data} has {len(train_ds)} training windows, fewer than one batch "
            f"({cfg.batch_size} x {world} processes); prepare more footage or lower --batch-size"
        )
    return train_ds, val_ds


def setup(model_cfg: ModelConfig, cfg: TrainConfig, resume: str | Path | None = None,
          preset: str | None = None, log: Log | None = None) -> Run:
    """Everything a run needs, seeded, with `resume`'s state loaded if given."""
    check_pair(model_cfg, cfg)
    device, rank, world = _init_device(cfg)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    G = build_generator(model_cfg).to(device)
    prior_spec = getattr(G, "prior_spec", None)  # flow heads only
    train_ds, val_ds = _open_data(model_cfg, cfg, world, prior_spec() if prior_spec else None)
    D = build_discriminator(model_cfg).to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    run = Run(model_cfg, cfg, preset, device, rank, world, train_ds, val_ds,
              EpochSampler(len(train_ds), cfg.seed, rank, world), G, D, opt_G, opt_D,
              torch.optim.lr_scheduler.LambdaLR(opt_G, lr_lambda(cfg)),
              torch.optim.lr_scheduler.LambdaLR(opt_D, lr_lambda(cfg)), log=log)
    if resume is not None:
        _load_resume(run, Path(resume))
    elif cfg.init_from:
        _load_init(run, Path(cfg.init_from))
    run.G_train, run.D_train = G, D
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        run.G_train, run.D_train = DDP(G, device_ids=ids), DDP(D, device_ids=ids)
    run.gan = losses.GANLoss(cfg.gan_mode).to(device)
    run.use_amp = cfg.amp and device.type == "cuda"
    if run.use_amp and torch.cuda.is_bf16_supported():
        run.amp_dtype = torch.bfloat16
    run.scaler = torch.amp.GradScaler(
        "cuda", enabled=run.use_amp and run.amp_dtype == torch.float16)
    if run.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
    return run


def _load_init(run: Run, path: Path) -> None:
    """Fine-tuning: the generator's weights from `path`, nothing else (a fresh optimizer,
    schedule and discriminator). Model options that keep the weights' shapes (the prior's
    flow method, its backward flows) may differ from the checkpoint's."""
    state = load_checkpoint(path, map_location=run.device)
    weights = {k: v.float() if v.is_floating_point() else v
               for k, v in state["generator"].items()}
    try:
        run.G.load_state_dict(weights)
    except RuntimeError:
        theirs, ours = to_dict(state["model_config"]), to_dict(run.model_cfg)
        differ = ", ".join(f"{k} {theirs.get(k)!r} -> {ours[k]!r}" for k in ours
                           if theirs.get(k) != ours[k])
        raise TrainError(f"--init-from {path}: its weights do not fit this model ({differ}); "
                         "drop the model options that change the network") from None


def _load_resume(run: Run, path: Path) -> None:
    state = load_checkpoint(path, map_location=run.device)
    if state["model_config"] != run.model_cfg:
        raise TrainError(f"{path} was trained with another model config; resume without "
                         "changing model options")
    if state.get("optim_G") is None:
        raise TrainError(f"{path} holds no optimizer state and cannot be resumed")
    run.G.load_state_dict(state["generator"])
    run.D.load_state_dict(state["discriminator"])
    run.opt_G.load_state_dict(state["optim_G"])
    run.opt_D.load_state_dict(state["optim_D"])
    run.epoch, run.step = state["epoch"], state["step"]
    run.step_in_epoch = state.get("extra", {}).get("step_in_epoch", 0)
    run.start_step = run.saved_step = run.step
    run.last_metrics = state.get("extra", {}).get("metrics")
    run.resumed_from = path
    if run.is_main:  # rows past the checkpoint were written by a run killed before its save
        drop_rows_after(run.out / "metrics.jsonl", run.step)
    for s in (run.sched_G, run.sched_D):  # the optimizers' state already holds the current lr
        s.last_epoch = run.epoch
    if state.get("rng"):
        _set_rng_state(state["rng"])


# ---------------------------------------------------------------------------------------------
# One step

def _autocast(run: Run, enabled: bool = True):
    return torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.use_amp and enabled)


def _discriminator_step(run: Run, real_clip: torch.Tensor, fake_clip: torch.Tensor) -> float:
    """One D update: real clip -> real, generated clip -> fake (two backward passes, synced
    once under DDP). Clips `(B, 3T, H, W)`. Returns the D loss."""
    for p in run.D.parameters():
        p.requires_grad_(True)
    run.opt_D.zero_grad(set_to_none=True)
    no_sync = run.D_train.no_sync() if run.world > 1 else contextlib.nullcontext()
    with no_sync, _autocast(run):
        loss_real = 0.5 * run.gan(run.D_train(real_clip), True)
    run.scaler.scale(loss_real).backward()
    with _autocast(run):
        loss_fake = 0.5 * run.gan(run.D_train(fake_clip.detach()), False)
    run.scaler.scale(loss_fake).backward()
    run.scaler.step(run.opt_D)
    return (loss_real + loss_fake).item()


def _generator_step(run: Run, x: losses.LossInputs) -> dict[str, float]:
    """One G update on the weighted sum of the active loss terms; returns each term."""
    run.opt_G.zero_grad(set_to_none=True)
    if x.discriminator is not None:  # D is not updated here: keep its gradients off
        for p in x.discriminator.parameters():
            p.requires_grad_(False)
    total, parts = 0.0, {}
    for name, (weight, term) in losses.active_terms(run.cfg).items():
        with _autocast(run, term.autocast):
            value = term.fn(x)
        total = total + weight * value
        parts[name] = value.item()
    run.scaler.scale(total).backward()
    run.scaler.step(run.opt_G)
    run.scaler.update()
    return parts


def train_step(run: Run, batch: list[torch.Tensor]) -> dict[str, float]:
    """One optimizer step on `batch` = (clips `(B, 3T, H, W)` (T + 2 frames with the stream
    prior's context), weights `(B,)`[, teacher flows `(B, m, 2, 3, H, W)`][, the generator's
    prior: pair `(B, 2, 2, H, W)`, coef `(B, 2, 2, 2, H, W)`]); advances the step counters.
    Returns the loss terms."""
    dev = run.device
    clip, weight = batch[0].to(dev, non_blocking=True), batch[1].to(dev)
    teacher = batch[2].to(dev) if run.train_ds.teacher else None
    prior = None
    if run.train_ds.prior is not None:
        prior = batch[-2].to(dev, non_blocking=True), batch[-1].to(dev, non_blocking=True)
    context = run.model_cfg.context
    ends, real = split_clip(clip, run.model_cfg.n_out, context)
    use_flows, use_gan = losses.needs(run.cfg, "flows"), losses.needs(run.cfg, "discriminator")
    kwargs = {} if prior is None else {"prior": prior}
    with _autocast(run):
        fake, aux = (run.G_train(ends, return_aux=True, **kwargs) if use_flows
                     else (run.G_train(ends, **kwargs), None))
    fake_clip = join_clip(ends, fake, context)
    # With lambda_gan 0 (an L1-only model) D is neither trained nor run: it would only cost
    # time. It stays in the checkpoint, untouched, so configs stay comparable.
    parts = {}
    if use_gan:
        parts["D"] = _discriminator_step(run, join_clip(ends, real, context), fake_clip)
    inputs = losses.LossInputs(fake=fake.float(), real=real, ends=ends, weight=weight,
                               fake_clip=fake_clip, generator=run.G,
                               discriminator=run.D if use_gan else None, gan=run.gan, aux=aux,
                               teacher=teacher)
    parts.update(_generator_step(run, inputs))
    run.step += 1
    run.step_in_epoch += 1
    return parts


# ---------------------------------------------------------------------------------------------
# Saving and validating

def save(run: Run) -> None:
    """Write the run's checkpoint atomically (rank 0); says its size the first time."""
    if not run.is_main:
        return
    first = run.saved_step is None
    save_checkpoint(run.checkpoint, model_state(
        run.model_cfg, run.G.state_dict(), train_config=run.cfg,
        discriminator=run.D.state_dict(), optim_G=run.opt_G.state_dict(),
        optim_D=run.opt_D.state_dict(), epoch=run.epoch, step=run.step, rng=_rng_state(),
        preset=run.preset,
        extra={"step_in_epoch": run.step_in_epoch, "metrics": run.last_metrics}))
    run.last_save, run.saved_step = time.monotonic(), run.step
    if first:
        mib = run.checkpoint.stat().st_size / 2**20
        shipped = sum(v.numel() * (2 if v.is_floating_point() else v.element_size())
                      for v in run.G.state_dict().values()) / 2**20
        _say(run, f"checkpoint: {run.checkpoint}, {mib:.1f} MiB (weights, optimizer and RNG "
                  f"states), rewritten at each save; `vinterp export` makes a ~{shipped:.1f} MiB "
                  "model for upsample and evaluate")


def validate_and_log(run: Run) -> None:
    """Validate (rank 0), append to metrics.jsonl, write the strip, print one line."""
    if not run.is_main or not len(run.val_ds):
        return
    if run.bar is None:
        n = min(run.cfg.val_windows or len(run.val_ds), len(run.val_ds))
        _say(run, f"validating {n} windows at step {run.step}")
    m, strip = validate(run.G, run.val_ds, run.model_cfg, run.device, run.cfg.val_windows,
                        progress=run.bar is not None,
                        check=None if run.latch is None else run.latch.check)
    row = {"epoch": run.epoch, "step": run.step,
           "seconds": round(time.time() - run.start_time, 1), **m,
           "lr": run.opt_G.param_groups[0]["lr"]}
    with (run.out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    if strip is not None:
        save_strip(strip, run.out / "strips" / f"step_{run.step:06d}.png")
    run.last_metrics = row
    _say(run, f"step {run.step} ({run.epoch} of {run.total_epochs} epochs done): val PSNR "
              f"{m['psnr']:.2f} dB "
              f"(blend {m['blend_psnr']:.2f}), SSIM {m['ssim']:.4f} "
              f"(blend {m['blend_ssim']:.4f})")


# ---------------------------------------------------------------------------------------------
# The loop

def _report_step(run: Run, parts: dict[str, float]) -> None:
    """Progress after a step: the bar, or a line every `log_every` steps; the ETA once."""
    done_here = run.step - run.start_step
    recent = run.step_seconds[1:] or run.step_seconds  # the first step warms up
    pace = sum(recent) / len(recent)
    left = max(0, run.total_steps - run.step)
    if run.bar is not None:
        run.bar.update(1)
        run.bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)
    elif run.step % run.cfg.log_every == 0:
        terms = " ".join(f"{k} {v:.3f}" for k, v in parts.items())
        _say(run, f"step {run.step}/{run.total_steps} ({run.epoch} of {run.total_epochs} epochs "
                  f"done): {1 / pace:.2f} steps/s, ETA {_duration(left * pace)}; {terms}")
    if done_here == min(ETA_AFTER_STEPS, run.total_steps - run.start_step):
        _say(run, f"pace: {pace:.2f} s/step; ETA {_duration(left * pace)} for the remaining "
                  f"{left} steps (validation and saving extra)")


def _worker_init(worker_id: int) -> None:
    # A terminal's Ctrl-C reaches the whole process group. The main process handles it (it
    # saves, then shuts the workers down in order); a worker that died of it mid-batch would
    # only add tracebacks from its feeder threads.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # (Not cv2.setNumThreads(1) here, against oversubscription: in a forked worker it hangs.
    # OPENCV_FOR_THREADS_NUM=1 in the environment does the same safely.)


def _loader(run: Run) -> DataLoader:
    run.train_ds.set_epoch(run.epoch)
    run.sampler.set_epoch(run.epoch, skip=run.step_in_epoch * run.cfg.batch_size)
    # Its own generator: a DataLoader otherwise draws from the global RNG, which would make a
    # resumed run's dropout masks differ from an uninterrupted run's.
    return DataLoader(run.train_ds, batch_size=run.cfg.batch_size, sampler=run.sampler,
                      drop_last=True, generator=torch.Generator().manual_seed(run.epoch),
                      num_workers=run.cfg.num_workers, pin_memory=run.device.type == "cuda",
                      persistent_workers=False, worker_init_fn=_worker_init)


def _run_epoch(run: Run) -> None:
    """Steps until the epoch's batches run out or `max_steps` is reached, validating and
    saving on the step and time schedules."""
    cfg = run.cfg
    run.G.train()
    run.D.train()
    t = time.perf_counter()
    for batch in _loader(run):
        # A signal during the step is held until the step is complete, so the checkpoint
        # written on interrupt is a state an uninterrupted run also passes through.
        with interrupts_deferred():
            run.stepping = True
            parts = train_step(run, batch)
            run.stepping = False
        run.step_seconds.append(time.perf_counter() - t)
        _report_step(run, parts)
        run.latch.check()  # a signal that came while the batch was loading
        if run.done():
            break
        if cfg.val_every_steps and run.step % cfg.val_every_steps == 0:
            validate_and_log(run)
            save(run)
        elif cfg.autosave_minutes and time.monotonic() - run.last_save >= cfg.autosave_minutes * 60:
            save(run)
        t = time.perf_counter()


def train_loop(run: Run) -> None:
    """Epochs of `_run_epoch` to the end of the schedule (or `max_steps`), with the epoch-end
    learning-rate step, validation and checkpoint."""
    cfg = run.cfg
    while run.epoch < run.total_epochs and not run.done():
        _run_epoch(run)
        if run.step_in_epoch >= run.steps_per_epoch:
            run.epoch += 1
            run.step_in_epoch = 0
            run.sched_G.step()
            with warnings.catch_warnings():
                # With lambda_gan 0 opt_D never steps, and torch warns that its scheduler
                # steps first; D's lr still follows the schedule, in case GAN is turned on.
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step",
                                        UserWarning)
                run.sched_D.step()
        at_end = run.epoch >= run.total_epochs or run.done()
        if at_end or run.epoch % cfg.val_every == 0:
            validate_and_log(run)
        if at_end or run.epoch % cfg.save_every == 0:
            save(run)


def _interrupted(run: Run | None, signum: int) -> TrainInterrupted:
    """Save what a Ctrl-C / SIGTERM left (unless mid-step or nothing new) and say so."""
    if run is None:
        return TrainInterrupted(signum, "training had not started; nothing was saved")
    resume = resume_command(run.cfg.out)
    if run.is_main and not run.stepping and run.step > run.start_step:
        with signals_as_interrupts():  # a second signal now cancels the save cleanly
            save(run)
        return TrainInterrupted(signum, f"saved step {run.step} (epoch {run.epoch}) to "
                                        f"{run.checkpoint}; resume with: {resume}")
    why = "in the middle of a step" if run.stepping else "before a step finished"
    if run.saved_step is None:
        return TrainInterrupted(signum, f"stopped {why}; nothing was saved")
    return TrainInterrupted(signum, f"stopped {why}; {run.checkpoint} holds step "
                                    f"{run.saved_step}; resume with: {resume}")


def train(model_cfg: ModelConfig, cfg: TrainConfig, resume: str | Path | None = None,
          progress: bool = True, preset: str | None = None, log: Log | None = None
          ) -> TrainResult:
    """Train G and D on `cfg.data`; see the module docstring for what is written.

    `log` gets the start-up summary and progress lines (None: silent); `progress` shows a
    tqdm bar when stderr is a terminal, else a line every `log_every` steps. `preset` is the
    name stored with the checkpoint. Under `torchrun` (WORLD_SIZE > 1) each process trains on
    its shard with DDP (gloo on CPU, NCCL on CUDA); only rank 0 logs and writes files.

    SIGINT and SIGTERM finish the current step, save, and raise `TrainInterrupted`.
    """
    run = None
    try:
        with latched_interrupts() as latch:
            run = setup(model_cfg, cfg, resume, preset, log if progress else None)
            run.latch = latch
            latch.check()
            for line in summary_lines(run):
                _say(run, line)
            if progress and run.is_main and sys.stderr.isatty():
                from tqdm import tqdm
                run.bar = tqdm(total=run.total_steps, initial=run.step, unit="step",
                               dynamic_ncols=True)
            train_loop(run)
    except KeyboardInterrupt as e:
        raise _interrupted(run, as_interrupted(e).signum) from None
    finally:
        if run is not None and run.bar is not None:
            run.bar.close()
    if run.world > 1:
        dist.barrier()
    return TrainResult(run.checkpoint, run.epoch, run.step, time.time() - run.start_time,
                       run.last_metrics, run.step_seconds, run.G, run.D, run.preset)


# ---------------------------------------------------------------------------------------------
# The command

def _split_options(options: dict) -> tuple[dict, dict]:
    """Given options (field name -> value) -> (ModelConfig fields, TrainConfig fields)."""
    model_fields = set(ModelConfig.__dataclass_fields__)
    model = {k: v for k, v in options.items() if k in model_fields}
    return model, {k: v for k, v in options.items() if k not in model_fields}


def resolve_resume(path: str | Path, overrides: dict) -> tuple[ModelConfig, TrainConfig, str]:
    """Configs for `--resume`: the checkpoint's own, with the given TrainConfig fields replaced
    (for example a longer schedule), and its preset name. The model config always comes from
    the checkpoint."""
    state = load_checkpoint(path)
    tc = state.get("train_config")
    if tc is None:
        raise CheckpointError(f"{path} holds no training state (an inference-only model?)")
    return state["model_config"], replace(tc, **overrides), state.get("preset")


def next_stage(preset: str | None, checkpoint: Path) -> str | None:
    """The command that continues a run of `preset` to the shipped model (its fine-tuning
    stage), or None when there is none."""
    if (preset or DEFAULT_PRESET) != DEFAULT_PRESET:
        return None
    cmd = f"vinterp train --preset {SHIPPED_PRESET}"
    if Path(PRESETS[SHIPPED_PRESET].train["init_from"]) != Path(checkpoint):
        cmd += f" --init-from {shlex.quote(str(checkpoint))}"
    return cmd


def _init_model_config(path: str) -> ModelConfig:
    if not Path(path).is_file():
        raise TrainError(f"--init-from {path}: no such file (train the model to start from "
                         "first, e.g. `vinterp train`, or give --init-from with a run's "
                         "latest.pt or an exported model)")
    return load_checkpoint(path)["model_config"]


def run_from_options(options: dict, resume: str | None = None, overwrite: bool = False,
                     progress: bool = True, preset: str | None = None,
                     log: Log | None = None) -> TrainResult | None:
    """The `vinterp train` command. `options` holds the ModelConfig/TrainConfig fields the user
    gave (None values are ignored); they replace the fields of `preset` (default: the
    `default` preset). `resume` "" means OUT/latest.pt. Raises `ConfigError` for bad values,
    `TrainError`/`CheckpointError` for runs that cannot start. Returns None on ranks other
    than 0."""
    model_opts, train_opts = _split_options({k: v for k, v in options.items() if v is not None})
    if resume is not None:
        out = Path(train_opts.get("out", TrainConfig.out))
        path = Path(resume) if resume else out / CHECKPOINT_NAME
        if model_opts or preset is not None:  # (n_in is never given: it follows the prior)
            drop, value = (("preset", preset) if preset is not None
                           else next(iter(model_opts.items())))
            raise ConfigError(drop, f"--resume takes the model config from {path}; drop this "
                              "option", value)
        if not path.is_file() and not resume:
            raise TrainError(f"no checkpoint to resume at {path}: no run has saved there yet "
                             "(start one with `vinterp train`, or pass --out or --resume PATH)")
        model_cfg, cfg, preset = resolve_resume(path, train_opts)
    else:
        preset = preset or DEFAULT_PRESET
        model_cfg, cfg = preset_configs(preset, model_opts, train_opts)
        if cfg.init_from:  # fine-tuning: the model is the checkpoint's, with the preset's
            # changes for its stage and then the given options
            start = to_dict(_init_model_config(cfg.init_from))
            model_cfg, cfg = preset_configs(
                preset, {**start, **PRESETS[preset].init_model, **model_opts}, train_opts)
        path = None
        existing = Path(cfg.out) / CHECKPOINT_NAME
        if existing.exists() and not overwrite:
            raise TrainError(f"{cfg.out} already holds a checkpoint; pass --resume to continue "
                             "it or --overwrite to start over")
        if _dist_env()[0] == 0:
            (Path(cfg.out) / "metrics.jsonl").unlink(missing_ok=True)
    result = train(model_cfg, cfg, resume=path, progress=progress, preset=preset, log=log)
    return result if _dist_env()[0] == 0 else None
