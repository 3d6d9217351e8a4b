"""Inference: an `Interpolator` that loads a generator once and makes the m in-between frames of
a pair. `upsample_file`, which streams a whole video through it, lives in `vinterp.upsample`
and is importable from here too (see docs/upsample.md).

Frames are (H, W, 3) uint8 RGB numpy arrays; the network sees `(B, 3*n_in, H, W)` float32 in
[-1, 1] (the two endpoints; with the "stream" flow prior also the inputs before and after
them) and returns `(B, 3*m, H, W)` in [-1, 1] (m = `ModelConfig.n_out`).
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vinterp import devices
from vinterp.checkpoint import CheckpointError, load_checkpoint
from vinterp.config import ModelConfig
from vinterp.flows import flow_requests

AUTO_MAX_PIXELS = 2048 * 2048  # padded frames above this are processed in tiles
AUTO_TILE = 1024
TILE_OVERLAP = 64


class InferenceError(Exception):
    """A request the model or the input cannot serve; the message is one line."""


def default_model_path() -> Path | None:
    """The model bundled with the package (`vinterp/models/default.pt`), or None if absent."""
    path = Path(str(resources.files("vinterp") / "models" / "default.pt"))
    return path if path.is_file() else None


NO_DEFAULT_MODEL = ("no default model is installed; pass --model PATH "
                    "(train one with `vinterp train`)")


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else must be available."""
    try:
        return devices.pick_device(name)
    except devices.DeviceError as e:
        raise InferenceError(str(e)) from None


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def _pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise InferenceError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise InferenceError("fp16 is for GPUs; on CPU use --precision fp32 or bf16")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def check_upsampling_model(cfg: ModelConfig, source: str = "the model") -> None:
    """Refuse a model that cannot make in-betweens of a frame pair: two endpoints in, plus
    the neighbouring inputs for a "stream" prior model (n_in = 2 + `context`)."""
    if cfg.n_in - cfg.context != 2:
        raise CheckpointError(f"{source} is a {cfg.n_in}:{cfg.n_out} model; upsampling needs a "
                              f"2:m model (two endpoint frames in)")
    if cfg.n_out < 1:
        raise CheckpointError(f"{source} makes {cfg.n_out} in-betweens; it needs at least one")


class Interpolator:
    """A generator loaded once, making the `m` in-betweens of frame pairs.

    `Interpolator(path, device="auto")` loads a checkpoint (its stored `ModelConfig` decides the
    architecture and m); `Interpolator.from_generator(G, cfg)` wraps a model in memory.
    `precision`: auto (fp16 on CUDA, fp32 elsewhere) | fp32 | fp16 | bf16 (autocast).
    `threads`: torch CPU threads (process-wide; None leaves torch's default).
    On the CPU it also makes the C allocator reuse freed blocks (`devices.reuse_freed_memory`,
    process-wide): per-pair full-resolution tensors otherwise page-fault in anew each time;
    and a flow head loaded from a checkpoint runs its backbone channels-last
    (`FlowHead.backbone_channels_last`).
    `tile`: tile side in pixels (0: only tile padded frames over `max_pixels`, at 1024).
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str = "auto",
                 precision: str = "auto", threads: int | None = None, tile: int = 0,
                 tile_overlap: int = TILE_OVERLAP, max_pixels: int = AUTO_MAX_PIXELS,
                 _generator: torch.nn.Module | None = None, _config: ModelConfig | None = None):
        from vinterp.networks import build_generator, generator_multiple

        if threads:
            torch.set_num_threads(int(threads))
        self.device = pick_device(device)
        self.dtype = _pick_dtype(precision, self.device)
        if self.device.type == "cpu":
            devices.reuse_freed_memory()
        if _generator is not None:
            cfg, G, self.source = _config, _generator, "in-memory model"
            check_upsampling_model(cfg)
        else:
            if checkpoint is None:
                checkpoint = default_model_path()
                if checkpoint is None:
                    raise InferenceError(NO_DEFAULT_MODEL)
            self.source = str(checkpoint)
            state = load_checkpoint(checkpoint, map_location="cpu")
            cfg = state["model_config"]
            check_upsampling_model(cfg, f"checkpoint {checkpoint}")
            try:
                G = build_generator(cfg)
                G.load_state_dict(state["generator"])
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{checkpoint}: its model config cannot be built ({e})") \
                    from None
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0][:120]
                raise CheckpointError(f"{checkpoint}: generator weights do not match its model "
                                      f"config ({first})") from None
        self.config: ModelConfig = cfg
        self.context: int = cfg.context  # 2: the model also reads the inputs around a pair
        self.m: int = cfg.n_out
        self.factor: int = cfg.n_out + 1
        self.multiple: int = generator_multiple(cfg)
        self.generator = G.to(self.device).eval()
        if (_generator is None and self.device.type == "cpu"
                and hasattr(G, "backbone_channels_last")):
            G.backbone_channels_last()  # not for a caller's model: it changes its weights' layout
        spec_of = getattr(G, "prior_spec", None)  # flow heads: their classical prior
        self.prior_spec = spec_of() if spec_of is not None else None
        self.tile = _round_up(tile, self.multiple) if tile else 0
        self.tile_overlap = tile_overlap
        self.max_pixels = max_pixels

    def close(self) -> None:
        """Stop the background threads of the model's classical flows (their cache is
        emptied); the Interpolator still works afterwards, starting new ones."""
        cache = getattr(self.generator, "flow_cache", None)
        if cache is not None:
            cache.close()

    @classmethod
    def from_generator(cls, generator: torch.nn.Module, config: ModelConfig,
                       **kw) -> Interpolator:
        """Wrap a generator already in memory (e.g. straight after training)."""
        return cls(None, _generator=generator, _config=config, **kw)

    def interpolate_pair(self, a: np.ndarray, b: np.ndarray, prev: np.ndarray | None = None,
                         nxt: np.ndarray | None = None) -> list[np.ndarray]:
        """The m in-betweens of (H, W, 3) uint8 RGB frames `a` -> `b`, in time order, each
        (H, W, 3) uint8 RGB (frame k at time k/(m+1) between them). `prev` and `nxt` are the
        input frames before `a` and after `b` (None: none, or a scene cut between); a model
        with the "stream" prior uses them for quadratic motion, others ignore them."""
        p = None if prev is None else prev[None]
        n = None if nxt is None else nxt[None]
        return list(self.interpolate_batch(a[None], b[None], p, n)[0])

    def interpolate_batch(self, a: np.ndarray, b: np.ndarray, prev: np.ndarray | None = None,
                          nxt: np.ndarray | None = None) -> np.ndarray:
        """In-betweens of a batch of pairs: `a`, `b` (B, H, W, 3) uint8 -> (B, m, H, W, 3)
        uint8. `prev`, `nxt`: (B, H, W, 3) uint8 neighbours or None; a pair without one is
        given its endpoint in that slot (see `motion.prior_flows`)."""
        if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"expected two (B, H, W, 3) uint8 batches, got {a.shape}, {b.shape}")
        frames = [a, b]
        if self.context:
            frames = [a if prev is None else prev, a, b, b if nxt is None else nxt]
            if frames[0].shape != a.shape or frames[3].shape != a.shape:
                raise ValueError("neighbouring frames must have the endpoints' shape")
        with torch.inference_mode():
            x = torch.from_numpy(np.concatenate(frames, axis=-1)).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # (B, 3n, H, W) in [-1, 1]
            y = self._run(x, frames)  # (B, 3m, H, W) in [-1, 1]
            bsz, _, h, w = y.shape
            # Quantised in the network's contiguous layout, then reordered as uint8: a quarter
            # of the bytes a float permute would move (6.4 -> 3.9 ms per 640x360 pair).
            y = y.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
            y = y.view(bsz, self.m, 3, h, w).permute(0, 1, 3, 4, 2).contiguous()
            return y.cpu().numpy()

    def prefetch(self, a: np.ndarray, b: np.ndarray) -> None:
        """Start the classical flows of the pair `a` -> `b` ((H, W, 3) uint8) in the background,
        for a model with a flow prior, so they are ready when the pair is interpolated (a
        stream calls this for the next pair while the network works on this one). Does
        nothing for other models, or where frames are padded or tiled (the cache would miss)."""
        h, w = a.shape[:2]
        if (self.prior_spec is None or h % self.multiple or w % self.multiple or self.tile
                or h * w > self.max_pixels):
            return
        # The pair's own flows, as the prior will ask for them (one or both directions).
        pairs = flow_requests(a, b, None, None, self.prior_spec.backward)
        self.generator.flow_cache.prefetch([p for p in pairs if p is not None])

    def _forward(self, x: torch.Tensor, prior: tuple | None = None) -> torch.Tensor:
        kwargs = {} if prior is None else {"prior": prior}
        if self.dtype == torch.float32:
            return self.generator(x, **kwargs).float()
        with torch.autocast(self.device.type, dtype=self.dtype):
            return self.generator(x, **kwargs).float()

    def _prior(self, frames: list[np.ndarray]) -> tuple | None:
        """The generator's classical prior from the uint8 frames themselves (the generator
        would requantise x to get them back: ~4 ms per 640x360 pair), with its flow cache,
        so prefetched flows are used; None for a model without a prior."""
        if self.prior_spec is None:
            return None
        stacked = np.stack(frames, axis=1)  # (B, n_in, H, W, 3), each frame contiguous
        pair, coef = self.prior_spec.flows_of_frames(stacked, self.generator.flow_cache)
        return pair.to(self.device), coef.to(self.device)

    def _run(self, x: torch.Tensor, frames: list[np.ndarray] | None = None) -> torch.Tensor:
        """(B, 3n, H, W) -> (B, 3m, H, W): pad to the network's multiple (replicated edges, as in
        training), whole or in overlapping tiles, and crop back. `frames`: x's n uint8 frames
        `(B, H, W, 3)` each, when there are, for the prior of a whole, unpadded input."""
        _, _, h, w = x.shape
        hp, wp = _round_up(h, self.multiple), _round_up(w, self.multiple)
        tiled = self.tile > 0 or hp * wp > self.max_pixels
        side = self.tile or _round_up(AUTO_TILE, self.multiple)
        if tiled:
            hp, wp = max(hp, min(side, hp)), max(wp, min(side, wp))
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        if not tiled or (side >= hp and side >= wp):
            whole = frames is not None and (hp, wp) == (h, w)
            return self._forward(x, self._prior(frames) if whole else None)[..., :h, :w]
        return self._run_tiled(x, side)[..., :h, :w]

    def _run_tiled(self, x: torch.Tensor, side: int) -> torch.Tensor:
        """Overlapping `side`-square tiles (side a multiple of the network's), blended with
        weights that ramp linearly over the overlap so seams do not show."""
        b, _, hp, wp = x.shape
        th, tw = min(side, hp), min(side, wp)
        ov = max(1, min(self.tile_overlap, th // 2, tw // 2))
        out = torch.zeros(b, 3 * self.m, hp, wp, device=x.device)
        wsum = torch.zeros(1, 1, hp, wp, device=x.device)
        for y0 in _starts(hp, th, ov):
            for x0 in _starts(wp, tw, ov):
                wy = _ramp(th, ov, y0 > 0, y0 + th < hp, x.device)
                wx = _ramp(tw, ov, x0 > 0, x0 + tw < wp, x.device)
                wt = (wy[:, None] * wx[None, :])[None, None]
                out[..., y0:y0 + th, x0:x0 + tw] += self._forward(
                    x[..., y0:y0 + th, x0:x0 + tw]) * wt
                wsum[..., y0:y0 + th, x0:x0 + tw] += wt
        return out / wsum


def _round_up(v: int, mult: int) -> int:
    return int(math.ceil(v / mult) * mult)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length) with consecutive tiles overlapping by >= `overlap`."""
    if tile >= length:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return sorted({round(i * (length - tile) / (n - 1)) for i in range(n)})


def _ramp(n: int, ov: int, lo: bool, hi: bool, device) -> torch.Tensor:
    """1-D tile weight: rises over `ov` pixels on sides that overlap another tile."""
    r = torch.ones(n, device=device)
    edge = (torch.arange(ov, device=device, dtype=torch.float32) + 0.5) / ov
    if lo:
        r[:ov] = torch.minimum(r[:ov], edge)
    if hi:
        r[n - ov:] = torch.minimum(r[n - ov:], edge.flip(0))
    return r


_UPSAMPLE_NAMES = ("upsample_file", "UpsampleSummary", "Timing", "plan_timing")


def __getattr__(name: str):
    # vinterp.upsample imports this module, so its names are re-exported lazily.
    if name in _UPSAMPLE_NAMES:
        from vinterp import upsample

        return getattr(upsample, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
