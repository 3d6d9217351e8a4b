"""The n:m pix2pix training loop: one machine or many (torchrun + DDP), resumable exactly.

One step (pix2pix order): G makes the in-betweens from the endpoints; D is updated on the real
clip and on the clip with generated in-betweens; G is updated with the GAN loss through D plus
lambda_l1 * L1 (and the optional census / Laplacian / time-reversal terms).

Outputs under `TrainConfig.out`: `latest.pt` (checkpoint), `metrics.jsonl` (one line per
validation), `strips/step_NNNNNN.png` (real row above generated row), all from rank 0 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from vinterp import devices, losses
from vinterp.checkpoint import CheckpointError, load_checkpoint, model_state, save_checkpoint
from vinterp.config import ModelConfig, TrainConfig
from vinterp.dataset import DatasetError, EpochSampler, WindowDataset
from vinterp.metrics import psnr, ssim
from vinterp.motion import PRIOR_INPUTS
from vinterp.networks import build_discriminator, build_generator, generator_multiple

CHECKPOINT_NAME = "latest.pt"


class TrainError(Exception):
    """A training run that cannot start; the message is one line."""


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


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w


def split_clip(clip: torch.Tensor, n_out: int, context: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset clip -> (generator input, in-betweens `(B, 3*n_out, H, W)`).

    context 0: clip `(B, 3*(n_out+2), H, W)` = I_0, in-betweens, I_1; input `(B, 6, H, W)`.
    context 2: clip `(B, 3*(n_out+4), H, W)` = I_-1, I_0, in-betweens, I_1, I_2 (see
    `WindowDataset`); input `(B, 12, H, W)` = I_-1, I_0, I_1, I_2.
    """
    c = 3 * (context // 2)
    inner = clip[:, c:clip.shape[1] - c]
    ends = torch.cat([clip[:, :c + 3], clip[:, clip.shape[1] - c - 3:]], 1)
    return ends, inner[:, 3:-3]


def join_clip(ends: torch.Tensor, mid: torch.Tensor, context: int = 0) -> torch.Tensor:
    """The window the discriminator sees, `(B, 3*(n_out+2), H, W)`: I_0, `mid`, I_1, with the
    endpoints taken from a `split_clip` input."""
    c = 3 * (context // 2)
    return torch.cat([ends[:, c:c + 3], mid, ends[:, c + 3:c + 6]], 1)


def lr_lambda(cfg: TrainConfig):
    """pix2pix 'linear' policy: constant for n_epochs, then linear decay to 0 over the rest."""
    def f(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - cfg.n_epochs) / float(cfg.n_epochs_decay + 1)
    return f


@torch.no_grad()
def validate(G: torch.nn.Module, ds: WindowDataset, model_cfg: ModelConfig, device: torch.device,
             limit: int) -> tuple[dict, torch.Tensor | None]:
    """PSNR/SSIM of the model and of the linear blend over up to `limit` val windows (evenly
    spaced, whole stored frames). Returns the metrics and a strip image `(3, 2h, T*w)` in
    [0, 1]: real clip above generated clip, for the first window."""
    n = len(ds)
    if n == 0:
        return {}, None
    idx = np.linspace(0, n - 1, min(n, limit) if limit else n).round().astype(int)
    was_training = G.training
    G.eval()
    mult = generator_multiple(model_cfg)
    sums = {"psnr": 0.0, "ssim": 0.0, "blend_psnr": 0.0, "blend_ssim": 0.0}
    count, strip = 0, None
    for i in dict.fromkeys(idx.tolist()):
        clip = ds[i][0].unsqueeze(0).to(device)
        ends, real = split_clip(clip, model_cfg.n_out, model_cfg.context)
        window = join_clip(ends, real, model_cfg.context)
        padded, h, w = _pad_to(ends, mult)
        fake = G(padded)[..., :h, :w].clamp(-1, 1)
        k = model_cfg.n_out
        ts = torch.arange(1, k + 1, device=device, dtype=torch.float32) / (k + 1)
        a, b = window[:, :3], window[:, -3:]
        blend = torch.cat([(1 - t) * a + t * b for t in ts], 1)
        sums["psnr"] += psnr(_to01(fake), _to01(real)).mean().item()
        sums["ssim"] += ssim(_to01(fake), _to01(real)).mean().item()
        sums["blend_psnr"] += psnr(_to01(blend), _to01(real)).mean().item()
        sums["blend_ssim"] += ssim(_to01(blend), _to01(real)).mean().item()
        count += 1
        if strip is None:
            real_row = torch.cat(list(_to01(window)), 2)
            fake_row = torch.cat(list(_to01(join_clip(ends, fake, model_cfg.context))), 2)
            strip = torch.cat([real_row, fake_row], 1).cpu()
    G.train(was_training)
    return {k: v / count for k, v in sums.items()}, strip


def _to01(x: torch.Tensor) -> torch.Tensor:
    """`(B, 3k, H, W)` in [-1, 1] -> `(B*k, 3, H, W)` in [0, 1]."""
    return (losses.as_images(x) + 1) / 2


def _save_strip(strip: torch.Tensor, path: Path, max_width: int = 1600) -> None:
    from PIL import Image

    img = (strip.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(img)
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    im.save(tmp)
    os.replace(tmp, path)


def drop_rows_after(metrics_path: Path, step: int) -> int:
    """On resume: drop metrics rows past the checkpoint's step (and a torn last line). A row
    is written before its checkpoint, so a run killed between the two has a row the resumed
    run writes again. Rewrites the file atomically; returns how many rows were dropped."""
    if not metrics_path.is_file():
        return 0
    keep, dropped = [], 0
    for line in metrics_path.read_text().splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            row_step = None
        if isinstance(row_step, int) and row_step <= step:
            keep.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        tmp = metrics_path.with_name(f".{metrics_path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, metrics_path)
    return dropped


def resolve_resume(path: str | Path, overrides: dict) -> tuple[ModelConfig, TrainConfig]:
    """Configs for `--resume`: the checkpoint's own, with the given TrainConfig fields replaced
    (for example a longer schedule). The model config always comes from the checkpoint."""
    state = load_checkpoint(path)
    tc = state.get("train_config")
    if tc is None:
        raise CheckpointError(f"{path} holds no training state (an inference-only model?)")
    return state["model_config"], replace(tc, **overrides)


def _dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def train(model_cfg: ModelConfig, cfg: TrainConfig, resume: str | Path | None = None,
          progress: bool = True) -> TrainResult:
    """Train G and D on `cfg.data`; see the module docstring for what is written.

    Under `torchrun` (WORLD_SIZE > 1) each process trains on its shard with DDP (gloo on CPU,
    NCCL on CUDA); only rank 0 logs and writes files.
    """
    rank, world, local_rank = _dist_env()
    distributed = world > 1
    device = pick_device(cfg.device)
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    out = Path(cfg.out)

    try:
        if cfg.lambda_flow and model_cfg.head != "flow":
            raise TrainError("--lambda-flow needs the flow head (--head flow)")
        train_ds = WindowDataset(cfg.data, "train", model_cfg.window, cfg.crop, cfg.flip,
                                 cfg.reverse, cfg.seed, teacher=cfg.lambda_flow > 0,
                                 context=model_cfg.context)
        val_ds = WindowDataset(cfg.data, "val", model_cfg.window, context=model_cfg.context)
    except DatasetError as e:
        raise TrainError(str(e)) from None
    if len(train_ds) < cfg.batch_size * world:
        raise TrainError(
            f"{cfg.data} has {len(train_ds)} training windows, fewer than one batch "
            f"({cfg.batch_size} x {world} processes); prepare more footage or lower --batch-size"
        )
    if cfg.crop % generator_multiple(model_cfg):
        raise TrainError(
            f"--crop {cfg.crop} must be a multiple of {generator_multiple(model_cfg)} for "
            f"{model_cfg.netG} (flow_downscale {model_cfg.flow_downscale})"
        )

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    G = build_generator(model_cfg).to(device)
    D = build_discriminator(model_cfg).to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, lr_lambda(cfg))
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, lr_lambda(cfg))

    epoch, step, step_in_epoch = 0, 0, 0
    ckpt_path = out / CHECKPOINT_NAME
    if resume is not None:
        state = load_checkpoint(resume, map_location=device)
        if state["model_config"] != model_cfg:
            raise TrainError(f"{resume} was trained with another model config; resume without "
                             "changing model options")
        if state.get("optim_G") is None:
            raise TrainError(f"{resume} holds no optimizer state and cannot be resumed")
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        opt_G.load_state_dict(state["optim_G"])
        opt_D.load_state_dict(state["optim_D"])
        epoch, step = state["epoch"], state["step"]
        step_in_epoch = state.get("extra", {}).get("step_in_epoch", 0)
        for s in (sched_G, sched_D):  # the optimizers' state already holds the current lr
            s.last_epoch = epoch
        if state.get("rng"):
            _set_rng_state(state["rng"])

    G_train, D_train = G, D
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        G_train = DDP(G, device_ids=ids)
        D_train = DDP(D, device_ids=ids)

    sampler = EpochSampler(len(train_ds), cfg.seed, rank, world)
    loader_kw = {"num_workers": cfg.num_workers, "pin_memory": device.type == "cuda",
                 "persistent_workers": False}
    gan = losses.GANLoss(cfg.gan_mode).to(device)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    total_epochs = cfg.n_epochs + cfg.n_epochs_decay
    metrics_path = out / "metrics.jsonl"
    last_metrics = None
    step_seconds: list[float] = []
    start_time = time.time()
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume is not None:
            drop_rows_after(metrics_path, step)

    def save(extra: dict) -> None:
        if not is_main:
            return
        save_checkpoint(ckpt_path, model_state(
            model_cfg, G.state_dict(), train_config=cfg, discriminator=D.state_dict(),
            optim_G=opt_G.state_dict(), optim_D=opt_D.state_dict(), epoch=epoch, step=step,
            rng=_rng_state(), extra=extra))

    def validate_and_log() -> dict | None:
        if not is_main:
            return None
        m, strip = validate(G, val_ds, model_cfg, device, cfg.val_windows)
        if not m:
            return None
        row = {"epoch": epoch, "step": step, "seconds": round(time.time() - start_time, 1),
               **m, "lr": opt_G.param_groups[0]["lr"]}
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if strip is not None:
            _save_strip(strip, out / "strips" / f"step_{step:06d}.png")
        if bar is not None:
            bar.write(f"epoch {epoch} step {step}: val PSNR {m['psnr']:.2f} dB "
                      f"(blend {m['blend_psnr']:.2f}), SSIM {m['ssim']:.4f} "
                      f"(blend {m['blend_ssim']:.4f})")
        return row

    def done() -> bool:
        return bool(cfg.max_steps) and step >= cfg.max_steps

    bar = None
    if is_main and progress:
        from tqdm import tqdm
        total = cfg.max_steps or total_epochs * sampler.per_rank() // cfg.batch_size
        bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True)

    while epoch < total_epochs and not done():
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch, skip=step_in_epoch * cfg.batch_size)
        # Its own generator: a DataLoader otherwise draws from the global RNG, which would
        # make a resumed run's dropout masks differ from an uninterrupted run's.
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                            drop_last=True, generator=torch.Generator().manual_seed(epoch),
                            **loader_kw)
        G.train()
        D.train()
        t_step = time.perf_counter()
        for batch in loader:
            clip, weight = batch[0].to(device, non_blocking=True), batch[1].to(device)
            ends, real = split_clip(clip, model_cfg.n_out, model_cfg.context)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                if cfg.lambda_flow:
                    fake, aux = G_train(ends, return_aux=True)
                else:
                    fake = G_train(ends)
            real_clip = join_clip(ends, real, model_cfg.context)
            fake_clip = join_clip(ends, fake, model_cfg.context)

            # With lambda_gan 0 (an L1-only model) D is neither trained nor run: it would only
            # cost time. It stays in the checkpoint, untouched, so configs stay comparable.
            use_gan = cfg.lambda_gan != 0
            parts: dict[str, float] = {}
            if use_gan:
                # D: real clip -> real, generated clip -> fake (two backward passes, synced
                # once).
                for p in D.parameters():
                    p.requires_grad_(True)
                opt_D.zero_grad(set_to_none=True)
                ctx = D_train.no_sync() if distributed else contextlib.nullcontext()
                with ctx, torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss_D_real = 0.5 * gan(D_train(real_clip), True)
                scaler.scale(loss_D_real).backward()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss_D_fake = 0.5 * gan(D_train(fake_clip.detach()), False)
                scaler.scale(loss_D_fake).backward()
                scaler.step(opt_D)
                parts["D"] = (loss_D_real + loss_D_fake).item()

            # G: fool D (through the unwrapped D: D is not updated here) and match the frames.
            opt_G.zero_grad(set_to_none=True)
            fake32 = fake.float()
            w = weight.view(-1, 1, 1, 1)
            loss_l1 = ((fake32 - real).abs() * w).mean()
            loss_G = cfg.lambda_l1 * loss_l1
            if use_gan:
                for p in D.parameters():
                    p.requires_grad_(False)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss_gan = gan(D(fake_clip), True)
                loss_G = loss_G + cfg.lambda_gan * loss_gan
                parts["G_gan"] = loss_gan.item()
            parts["G_l1"] = loss_l1.item()
            if cfg.lambda_census:
                lc = losses.census_loss(fake32, real)
                loss_G = loss_G + cfg.lambda_census * lc
                parts["census"] = lc.item()
            if cfg.lambda_lap:
                ll = losses.laplacian_loss(fake32, real)
                loss_G = loss_G + cfg.lambda_lap * ll
                parts["lap"] = ll.item()
            if cfg.lambda_flow:
                teacher = batch[2].to(device)  # (B, m, 2, 3, H, W): dx, dy, trust
                pred = torch.stack([aux["flow0"], aux["flow1"]], 2).float()  # (B, m, 2, 2, H, W)
                trust = teacher[:, :, :, 2:]
                lf = ((pred - teacher[:, :, :, :2]).abs() * trust).sum() / (
                    2 * trust.sum()).clamp(min=1)
                loss_G = loss_G + cfg.lambda_flow * lf
                parts["flow"] = lf.item()
            if cfg.lambda_reverse:
                # The same clip played backwards must give the same frames, reversed.
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    lr_ = losses.reverse_consistency(G, ends, fake32)
                loss_G = loss_G + cfg.lambda_reverse * lr_
                parts["reverse"] = lr_.item()
            scaler.scale(loss_G).backward()
            scaler.step(opt_G)
            scaler.update()

            step += 1
            step_in_epoch += 1
            step_seconds.append(time.perf_counter() - t_step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)
            if done():
                break
            if cfg.val_every_steps and step % cfg.val_every_steps == 0:
                last_metrics = validate_and_log() or last_metrics
                save({"step_in_epoch": step_in_epoch, "metrics": last_metrics})
            t_step = time.perf_counter()

        if step_in_epoch >= sampler.per_rank() // cfg.batch_size:
            epoch += 1
            step_in_epoch = 0
            sched_G.step()
            sched_D.step()

        at_end = epoch >= total_epochs or done()
        if at_end or epoch % cfg.val_every == 0:
            last_metrics = validate_and_log() or last_metrics
        if at_end or epoch % cfg.save_every == 0:
            save({"step_in_epoch": step_in_epoch, "metrics": last_metrics})
    if bar is not None:
        bar.close()
    if distributed:
        dist.barrier()
    return TrainResult(ckpt_path, epoch, step, time.time() - start_time, last_metrics,
                       step_seconds, G, D)


def run_from_options(options: dict, resume: str | None = None, overwrite: bool = False,
                     progress: bool = True) -> TrainResult | None:
    """The `vinterp train` command: options are ModelConfig/TrainConfig field names (None means
    the default). `resume` "" means OUT/latest.pt. Returns None on ranks other than 0."""
    given = {k: v for k, v in options.items() if v is not None}
    model_fields = {f for f in ModelConfig.__dataclass_fields__}
    model_opts = {k: v for k, v in given.items() if k in model_fields}
    if model_opts.get("head", "flow") == "flow" and "flow_prior" in model_opts:
        # The prior decides how many frames the generator takes (the "stream" prior: 4).
        model_opts.setdefault("n_in", PRIOR_INPUTS.get(model_opts["flow_prior"], 2))
    train_opts = {k: v for k, v in given.items() if k not in model_fields}
    if resume is not None:
        out = Path(train_opts.get("out", TrainConfig.out))
        path = Path(resume) if resume else out / CHECKPOINT_NAME
        if model_opts:
            raise TrainError(f"--resume takes the model config from {path}; drop "
                             f"--{next(iter(model_opts)).replace('_', '-')}")
        model_cfg, cfg = resolve_resume(path, train_opts)
    else:
        model_cfg, cfg = ModelConfig(**model_opts), TrainConfig(**train_opts)
        path = None
        existing = Path(cfg.out) / CHECKPOINT_NAME
        if existing.exists() and not overwrite:
            raise TrainError(f"{cfg.out} already holds a checkpoint; pass --resume to continue "
                             "it or --overwrite to start over")
        if _dist_env()[0] == 0:
            (Path(cfg.out) / "metrics.jsonl").unlink(missing_ok=True)
    result = train(model_cfg, cfg, resume=path, progress=progress)
    return result if _dist_env()[0] == 0 else None
