"""Training windows from a dataset written by `vinterp prepare`.

A window is `n_in + n_out` frames (default 7) of one stored sequence at indices
`start + k * step`. Frames are uint8 `.npy` arrays read through a memory map, so a window costs
a crop-sized copy, not a decode. Augmentation is identical for every frame of a window (same
crop, same flip) and deterministic given (seed, epoch, index), which makes resumed runs replay
the exact same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from data_prep.manifest import Manifest, ManifestError, Window, read_manifest
from vinterp.flows import FlowCache
from vinterp.motion import PriorSpec


class DatasetError(Exception):
    """A prepared dataset that is missing or unusable; the message is one line."""


def check_frames(manifest: Manifest, windows: list[Window], window: int) -> None:
    """Open every frames file the windows use (the `.npy` header only: cheap) and check its
    shape against the manifest, so a missing or truncated file is one clear error before any
    training starts rather than a traceback from a DataLoader worker mid-epoch."""
    where = manifest.root / "manifest.json"
    lengths: dict[str, int] = {}
    fix = "rerun `vinterp prepare` to rebuild the dataset"
    for name in dict.fromkeys(w.seq for w in windows):
        seq = manifest.sequences[name]
        if not seq.file.is_file():
            raise DatasetError(f"{seq.file} is missing from the prepared dataset; {fix}")
        try:
            arr = np.load(seq.file, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{seq.file} is damaged or truncated ({str(e)[:80]}); "
                               f"{fix}") from None
        want = (seq.height, seq.width, 3)
        if arr.ndim != 4 or tuple(arr.shape[1:]) != want or arr.dtype != np.uint8:
            raise DatasetError(f"{seq.file} holds {arr.dtype} frames of shape {arr.shape[1:]}, "
                               f"the manifest says uint8 {want}; {fix}")
        lengths[name] = arr.shape[0]
        del arr
    for w in windows:
        if w.start < 0 or w.step < 1 or w.start + w.step * (window - 1) >= lengths[w.seq]:
            raise DatasetError(f"{where}: a window of {w.seq} starts at frame {w.start} but "
                               f"the file holds {lengths[w.seq]} frames; {fix}")


class WindowDataset(Dataset):
    """Windows of one split of a prepared dataset.

    Item: `(clip, weight)`: clip `(T*3, H, W)` float32 in [-1, 1], frames in temporal order
    (endpoint 0, in-betweens, endpoint 1) stacked on channels; weight a float32 scalar.
    With `teacher=True` a third element holds `teacher_flows` of the (augmented) window.
    With `crop=None` frames keep their stored size and no augmentation is applied.
    With `context=2` the clip also holds the neighbouring inputs, first and last: the frames
    one window span before and after it (`(T+2)*3` channels: I_-1, window, I_2), as the
    "stream" flow prior takes them; where the sequence ends or a scene cut lies between, the
    neighbour is a copy of its endpoint, which the prior reads as "none". Teacher flows are
    always of the window alone.
    With `prior` (a generator's `PriorSpec`) two more elements follow: the classical prior
    flows of the augmented window's inputs, pair `(2, 2, h, w)` and coef `(2, 2, 2, h, w)`
    float32 pixels (`motion.prior_flows`), which the generator then takes instead of computing
    them. DataLoader workers compute them in parallel processes, so a GPU's training step is
    not held up by one process's DIS calls; the values are those the generator would compute.
    """

    def __init__(self, root: str | Path, split: str, window: int, crop: int | None = None,
                 flip: bool = False, reverse: bool = False, seed: int = 0,
                 teacher: bool = False, context: int = 0, prior: PriorSpec | None = None):
        self.root = Path(root)
        try:
            manifest = read_manifest(self.root)
        except ManifestError as e:
            raise DatasetError(str(e)) from None
        stored = manifest.inbetweens + 2
        if stored != window:
            raise DatasetError(
                f"{self.root} holds {stored}-frame windows but the model needs {window}; "
                f"prepare with --inbetweens {window - 2}"
            )
        seqs = manifest.sequences.values()
        self.files = {s.name: s.file for s in seqs}
        self.sizes = {s.name: (s.height, s.width) for s in seqs}
        self.lengths = {s.name: s.frames for s in seqs}
        self.cuts = {s.name: s.cuts for s in seqs}
        self.context = context
        self.windows: list[Window] = manifest.split(split)
        check_frames(manifest, self.windows, window)
        self.window, self.crop, self.flip, self.reverse = window, crop, flip, reverse
        self.seed, self.epoch, self.teacher = seed, 0, teacher
        self.prior = prior
        self._flow_cache = None if prior is None else FlowCache(size=0, method=prior.method)
        self._arrays: dict[str, np.ndarray] = {}
        if crop is not None:
            small = [n for n, (h, w) in self.sizes.items() if min(h, w) < crop]
            if small:
                raise DatasetError(
                    f"sequence {small[0]} is smaller than the {crop}px crop; use a smaller "
                    "--crop or prepare with a larger --size"
                )

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames(self, index: int) -> np.ndarray:
        """The raw window, `(T, H, W, 3)` uint8 RGB (T + 2 frames with context), copied from
        the memory map."""
        w = self.windows[index]
        arr = self._arrays.get(w.seq)
        if arr is None:  # opened lazily so DataLoader workers each map their own file
            arr = self._arrays[w.seq] = np.load(self.files[w.seq], mmap_mode="r")
        idx = [w.start + k * w.step for k in range(self.window)]
        if self.context:
            span = idx[-1] - idx[0]
            idx = [self._neighbour(w.seq, idx[0], -span), *idx,
                   self._neighbour(w.seq, idx[-1], span)]
        return arr[idx]

    def _neighbour(self, seq: str, end: int, offset: int) -> int:
        """`end + offset`, the input one window span beyond an endpoint, or `end` itself
        where the sequence stops or a scene cut lies between (cut c: between frames c - 1
        and c)."""
        other = end + offset
        lo, hi = min(end, other), max(end, other)
        if other < 0 or other >= self.lengths[seq] or any(lo < c <= hi for c in self.cuts[seq]):
            return end
        return other

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        clip = self.frames(index)
        if self.crop is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            _, h, w, _ = clip.shape
            y = int(rng.integers(0, h - self.crop + 1))
            x = int(rng.integers(0, w - self.crop + 1))
            clip = clip[:, y : y + self.crop, x : x + self.crop]
            if self.flip and rng.random() < 0.5:
                clip = clip[:, :, ::-1]
            if self.reverse and rng.random() < 0.5:
                clip = clip[::-1]
        clip = np.array(clip)  # (T, h, w, 3) uint8, a copy off the memory map
        t = torch.from_numpy(clip)
        t = t.permute(0, 3, 1, 2).reshape(-1, t.shape[1], t.shape[2]).float() / 127.5 - 1.0
        item = (t, torch.tensor(self.windows[index].weight, dtype=torch.float32))
        if self.teacher:
            item += (teacher_flows(clip[1:-1] if self.context else clip),)
        if self.prior is not None:
            ends = split_clip(t[None], len(clip) - 2 - self.context, self.context)[0]
            pair, coef = self.prior.flows(ends, self._flow_cache)
            item += (pair[0], coef[0])
        return item


def _dis():
    import cv2

    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def teacher_flows(clip: np.ndarray, max_error: float = 20.0) -> torch.Tensor:
    """Privileged flow targets for distillation, from the real in-between frames.

    clip: `(T, H, W, 3)` uint8 RGB window. For each in-between I_k (k = 1..T-2) and each
    endpoint E, OpenCV DIS flow from I_k to E gives the backward flow F_k->E with
    `I_k(p) ~ E(p + F(p))` — exactly what the flow head predicts, but measured with the
    in-between in hand, which the generator never sees. A target pixel is trusted (weight 1)
    where E warped by it matches I_k within `max_error` grey levels (mean over RGB).

    Returns `(T-2, 2, 3, H, W)` float32: [k, endpoint (0 = first, 1 = last), (dx, dy, weight)].
    """
    import cv2

    dis = _dis()
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]
    h, w = gray[0].shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = np.zeros((len(clip) - 2, 2, 3, h, w), np.float32)
    for k in range(1, len(clip) - 1):
        for e, end in enumerate((0, len(clip) - 1)):
            flow = dis.calc(gray[k], gray[end], None)
            warped = cv2.remap(clip[end], gx + flow[..., 0], gy + flow[..., 1],
                               cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            err = np.abs(warped.astype(np.float32) - clip[k]).mean(-1)
            out[k - 1, e, 0], out[k - 1, e, 1] = flow[..., 0], flow[..., 1]
            out[k - 1, e, 2] = err < max_error
    return torch.from_numpy(out)


class EpochSampler(Sampler[int]):
    """A shuffled order fixed by (seed, epoch), sharded by rank, resumable mid-epoch.

    Every rank draws the same permutation and keeps `perm[rank::world]` (padded by wrapping so
    ranks see equal counts, as DistributedSampler does); `skip` drops the first items of this
    rank's share, for resuming inside an epoch.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def per_rank(self) -> int:
        return -(-self.n // self.world)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        total = self.per_rank() * self.world
        perm = (perm * (total // max(1, self.n) + 1))[:total]
        return iter(perm[self.rank :: self.world][self.skip :])

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.skip)


# ---------------------------------------------------------------------------------------------
# A clip's layout: generator input and targets

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
