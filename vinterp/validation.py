"""Validation during training: PSNR/SSIM of the generator and of the blend on held-back
windows, the image strips written beside them, and the metrics file's resume rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vinterp import losses
from vinterp.atomic import atomic_write, write_text_atomic
from vinterp.blend import blend_stack
from vinterp.config import ModelConfig
from vinterp.dataset import WindowDataset, join_clip, split_clip
from vinterp.metrics import psnr, ssim
from vinterp.networks import generator_multiple


def pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """`(B, C, h, w)` replicate-padded on the right and bottom to multiples of `multiple`, and
    the original h, w."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w



def _to01(x: torch.Tensor) -> torch.Tensor:
    """`(B, 3k, H, W)` in [-1, 1] -> `(B*k, 3, H, W)` in [0, 1]."""
    return (losses.as_images(x) + 1) / 2


@torch.no_grad()
def validate(G: torch.nn.Module, ds: WindowDataset, model_cfg: ModelConfig, device: torch.device,
             limit: int, progress: bool = False, check: Callable[[], None] | None = None
             ) -> tuple[dict, torch.Tensor | None]:
    """PSNR/SSIM of the model and of the linear blend over up to `limit` val windows (evenly
    spaced, whole stored frames; `progress` shows a bar; `check` is called before each window,
    so an interrupt latched meanwhile stops it). Returns the metrics and a strip
    image `(3, 2h, T*w)` in [0, 1]: real clip above generated clip, for the first window."""
    n = len(ds)
    if n == 0:
        return {}, None
    idx = np.linspace(0, n - 1, min(n, limit) if limit else n).round().astype(int)
    was_training = G.training
    G.eval()
    mult = generator_multiple(model_cfg)
    sums = {"psnr": 0.0, "ssim": 0.0, "blend_psnr": 0.0, "blend_ssim": 0.0}
    count, strip = 0, None
    from tqdm import tqdm

    for i in tqdm(list(dict.fromkeys(idx.tolist())), desc="validate", unit="window",
                  leave=False, disable=not progress, dynamic_ncols=True):
        if check is not None:
            check()
        clip = ds[i][0].unsqueeze(0).to(device)
        ends, real = split_clip(clip, model_cfg.n_out, model_cfg.context)
        window = join_clip(ends, real, model_cfg.context)
        padded, h, w = pad_to(ends, mult)
        fake = G(padded)[..., :h, :w].clamp(-1, 1)
        # The blend of the window's own endpoints (with context, `ends` holds 4 inputs).
        blend = blend_stack(torch.cat([window[:, :3], window[:, -3:]], 1), model_cfg.n_out)
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


def save_strip(strip: torch.Tensor, path: Path, max_width: int = 1600) -> None:
    """A `(3, H, W)` image in [0, 1] as a PNG, at most `max_width` wide."""
    from PIL import Image

    img = (strip.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(img)
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.BILINEAR)
    with atomic_write(path) as f:
        im.save(f, format="PNG")


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
        write_text_atomic(metrics_path, "".join(keep))
    return dropped
