"""Typed, frozen configs.

A checkpoint stores `ModelConfig` (and `TrainConfig`) as plain dicts; inference rebuilds the
networks from the stored `ModelConfig` alone, never from command-line flags, so a checkpoint
always loads into the architecture it was trained with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator architecture.

    The generator maps `n_in` stacked frames (3*n_in channels, default 6) to `n_out` frames
    (3*n_out channels, default 15). The discriminator sees the whole clip in temporal order:
    3*(n_in + n_out) channels, default 21.
    """

    n_in: int = 2  # endpoints given to the generator
    n_out: int = 5  # in-betweens produced in one pass
    netG: str = "unet_256"  # unet_{32,64,128,256} | resnet_6blocks | resnet_9blocks
    ngf: int = 64
    norm: str = "batch"  # batch | instance | none
    dropout: bool = True  # dropout in the inner decoder blocks (pix2pix)
    head: str = "flow"  # flow (warp endpoints) | pixels (write pixels directly)
    # Flow head only: the backbone runs on the endpoints downscaled by this factor; flows,
    # masks and residuals are upsampled and the warp happens at full resolution.
    flow_downscale: int = 1
    # Flow head only: "shared" = one window motion V plus per-t corrections
    # (F_t->0 = -t V + d0_t, F_t->1 = (1-t) V + d1_t); "free" = independent flows per t.
    flow_param: str = "shared"
    # Flow head only: multiplier on the backbone's flow channels (an effective learning-rate
    # boost for flows; see warp.FlowHead). 1.0 reproduces checkpoints made before it existed.
    flow_gain: float = 1.0
    # Flow head only: radius (backbone pixels) of the cost volume fed to the backbone, whose
    # soft-argmax also seeds the motion (vinterp/motion.py); 0 = off (plain pix2pix input).
    corr_radius: int = 0
    # Flow head only: "dis" seeds the flows with OpenCV DIS flow between the endpoints (a
    # non-trainable input computed in the forward pass; see warp.FlowHead); "stream" also
    # takes the inputs before and after the pair (n_in = 4) for quadratic motion; "none" = off.
    flow_prior: str = "none"
    # Flow head with a prior only: scale the learned corrections, masks and residuals by a gate
    # that is 0 where the prior's flows explain the endpoints (see warp.prior_gate), so the
    # learned part cannot degrade static or well-estimated regions.
    prior_gate: bool = False
    netD: str = "patchgan"  # patchgan (n_layers_D conv layers; 3 gives 70x70 receptive field)
    ndf: int = 64
    n_layers_D: int = 3

    @property
    def context(self) -> int:
        """Inputs from outside the window: the frames before and after it for the "stream"
        flow prior (its n_in = 4: I_-1, I_0, I_1, I_2), else none."""
        return 2 if self.head == "flow" and self.flow_prior == "stream" else 0

    @property
    def window(self) -> int:
        """Frames in one window, the clip the discriminator sees: the inputs that lie in it
        (both endpoints for the flow head) plus the in-betweens (default 7)."""
        return self.n_in - self.context + self.n_out


@dataclass(frozen=True)
class TrainConfig:
    """Training loop settings; pix2pix defaults (Isola et al. 2017) unless stated."""

    data: str = "data/prepared"
    out: str = "runs/default"
    crop: int = 256
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    n_epochs: int = 100  # epochs at the initial learning rate
    n_epochs_decay: int = 100  # epochs of linear decay to zero
    max_steps: int = 0  # stop after this many optimizer steps in total (0 = no limit)
    gan_mode: str = "vanilla"  # vanilla (BCE with logits) | lsgan
    lambda_gan: float = 1.0
    lambda_l1: float = 100.0
    lambda_census: float = 0.0
    lambda_lap: float = 0.0
    lambda_reverse: float = 0.0  # time-reversal consistency
    # Flow head only: L1 (pixels) to privileged DIS flows measured from the real in-betweens
    # (see dataset.teacher_flows); a teacher signal that needs no downloaded weights.
    lambda_flow: float = 0.0
    flip: bool = True
    reverse: bool = True  # temporal reversal augmentation
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # mixed precision on CUDA only
    val_windows: int = 64  # validation windows scored per epoch (0 = all)
    val_every: int = 1  # epochs between validations
    save_every: int = 1  # epochs between checkpoints
    val_every_steps: int = 0  # also validate and checkpoint every N steps (0 = epoch ends only)
    log_every: int = 20  # steps between metric log lines


def to_dict(cfg: Any) -> dict[str, Any]:
    """A frozen dataclass as a plain dict of primitives (safe for `weights_only` loading)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config; unknown keys are an error so a foreign config never loads silently."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    return cls(**data)


__all__ = ["ModelConfig", "TrainConfig", "to_dict", "from_dict", "field"]
