"""The n:m pix2pix training loop: one machine or many (torchrun + DDP), resumable exactly.

Three parts: `setup` (devices, data, networks, optimizers, resume) builds a `Run`
(`vinterp.train_run`); `train_step` makes one optimizer step of it; `train_loop` runs epochs
of steps with validation and checkpoints. `train` ties them together and turns Ctrl-C /
SIGTERM into a saved checkpoint and a `TrainInterrupted` that says how to resume. The
`vinterp train` command (options, presets, resuming, fine-tuning stages) is
`vinterp.train_command`.

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
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from vinterp import losses
from vinterp.checkpoint import load_checkpoint, model_state, save_checkpoint
from vinterp.config import ModelConfig, TrainConfig, check_pair, to_dict
from vinterp.dataset import DatasetError, EpochSampler, WindowDataset, join_clip, split_clip
from vinterp.interrupts import (
    as_interrupted,
    interrupts_deferred,
    latched_interrupts,
    signals_as_interrupts,
)
from vinterp.motion import PriorSpec
from vinterp.networks import build_discriminator, build_generator
from vinterp.train_run import (
    ETA_AFTER_STEPS,
    Log,
    Run,
    TrainError,
    TrainInterrupted,
    TrainResult,
    duration,
    lr_lambda,
    pick_device,
    resume_command,
    rng_state,
    say,
    set_rng_state,
    summary_lines,
)
from vinterp.validation import drop_rows_after, save_strip, validate

# ---------------------------------------------------------------------------------------------
# Setup

def dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _init_device(cfg: TrainConfig) -> tuple[torch.device, int, int]:
    """The device, rank and world size; joins the process group under torchrun."""
    rank, world, local_rank = dist_env()
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
        set_rng_state(state["rng"])


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
        optim_D=run.opt_D.state_dict(), epoch=run.epoch, step=run.step, rng=rng_state(),
        preset=run.preset,
        extra={"step_in_epoch": run.step_in_epoch, "metrics": run.last_metrics}))
    run.last_save, run.saved_step = time.monotonic(), run.step
    if first:
        mib = run.checkpoint.stat().st_size / 2**20
        shipped = sum(v.numel() * (2 if v.is_floating_point() else v.element_size())
                      for v in run.G.state_dict().values()) / 2**20
        say(run, f"checkpoint: {run.checkpoint}, {mib:.1f} MiB (weights, optimizer and RNG "
                  f"states), rewritten at each save; `vinterp export` makes a ~{shipped:.1f} MiB "
                  "model for upsample and evaluate")


def validate_and_log(run: Run) -> None:
    """Validate (rank 0), append to metrics.jsonl, write the strip, print one line."""
    if not run.is_main or not len(run.val_ds):
        return
    if run.bar is None:
        n = min(run.cfg.val_windows or len(run.val_ds), len(run.val_ds))
        say(run, f"validating {n} windows at step {run.step}")
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
    say(run, f"step {run.step} ({run.epoch} of {run.total_epochs} epochs done): val PSNR "
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
        say(run, f"step {run.step}/{run.total_steps} ({run.epoch} of {run.total_epochs} epochs "
                  f"done): {1 / pace:.2f} steps/s, ETA {duration(left * pace)}; {terms}")
    if done_here == min(ETA_AFTER_STEPS, run.total_steps - run.start_step):
        say(run, f"pace: {pace:.2f} s/step; ETA {duration(left * pace)} for the remaining "
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
                say(run, line)
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
