"""A training run's state between steps (`Run`), its results and errors, the learning-rate
schedule, and what it says: the start-up summary and the resume command (`vinterp.train`
advances a `Run`)."""

from __future__ import annotations

import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vinterp import devices, losses
from vinterp.config import PRESETS, ModelConfig, TrainConfig
from vinterp.dataset import EpochSampler, WindowDataset
from vinterp.interrupts import Interrupted

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


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": np.random.get_state()[1].tolist()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
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

def say(run: Run, message: str) -> None:
    """One line to the run's log (rank 0 only), above the progress bar if there is one."""
    if run.log is None or not run.is_main:
        return
    if run.bar is not None:
        with run.bar.external_write_mode(file=sys.stderr):
            run.log(message)
    else:
        run.log(message)


def duration(seconds: float) -> str:
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
