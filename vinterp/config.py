"""Typed, frozen configs that validate themselves, and the registry of named training presets.

A checkpoint stores `ModelConfig` (and `TrainConfig`) as plain dicts; inference rebuilds the
networks from the stored `ModelConfig` alone, never from command-line flags, so a checkpoint
always loads into the architecture it was trained with.

Every field carries its command-line group, help text and constraint in its metadata (see
`_opt`); `__post_init__` checks each value against its constraint, names against the builder
registries (`networks.GENERATORS`, `motion.PRIORS`, ...), and raises `ConfigError`, whose
message names the field (or, through `ConfigError.named`, the command-line option) and the
allowed values. `vinterp train` builds its options from these fields.

The dataclass defaults are what older checkpoints were saved against (a field missing from a
stored config takes its default), so they stay put; recipes live in `PRESETS`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config value that is out of range or not one of the registered names.

    `str()` names the field (`unknown netG 'x'; choose one of ...`, `crop 7: must be ...`);
    `named(flag)` puts a command-line option in its place (`--netG x: choose one of ...`).
    """

    _NO_VALUE = object()

    def __init__(self, field_name: str, problem: str, value: Any = _NO_VALUE,
                 unknown: bool = False) -> None:
        self.field, self.problem, self.value = field_name, problem, value
        if value is self._NO_VALUE:
            text = f"{field_name} {problem}"
        elif unknown:
            text = f"unknown {field_name} {value!r}; {problem}"
        else:
            text = f"{field_name} {value!r}: {problem}"
        super().__init__(text)

    def named(self, name: str) -> str:
        """The message for option `name` (for example `--batch-size`) instead of the field."""
        if self.value is self._NO_VALUE:
            return f"{name} {self.problem}"
        return f"{name} {self.value}: {self.problem}"


# ---------------------------------------------------------------------------------------------
# Constraints (frozen value objects, so field metadata stays data)

@dataclass(frozen=True)
class AtLeast:
    low: float

    def problem(self, value: Any) -> str | None:
        return None if value >= self.low else f"must be at least {self.low:g}"


@dataclass(frozen=True)
class Above:
    low: float

    def problem(self, value: Any) -> str | None:
        return None if value > self.low else f"must be greater than {self.low:g}"


@dataclass(frozen=True)
class Fraction:
    """0 <= value < 1 (Adam's beta1)."""

    def problem(self, value: Any) -> str | None:
        return None if 0 <= value < 1 else "must be in [0, 1)"


@dataclass(frozen=True)
class OneOf:
    """A name in a builder registry; `names` returns the registry's keys (called on use, so
    no registry module is imported when this module is)."""

    names: Callable[[], Sequence[str]]

    def problem(self, value: Any) -> str | None:
        names = tuple(self.names())
        return None if value in names else f"choose one of {', '.join(names)}"


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class DeviceName:
    def problem(self, value: Any) -> str | None:
        return None if _DEVICE.fullmatch(value) else "choose auto, cpu, cuda, cuda:N or mps"


# The registries: imported when a config is first checked, not when this module is imported,
# because networks/losses import this module for ModelConfig itself.

def generator_names() -> tuple[str, ...]:
    from vinterp.networks import GENERATORS
    return tuple(GENERATORS)


def discriminator_names() -> tuple[str, ...]:
    from vinterp.networks import DISCRIMINATORS
    return tuple(DISCRIMINATORS)


def head_names() -> tuple[str, ...]:
    from vinterp.networks import HEADS
    return tuple(HEADS)


def norm_names() -> tuple[str, ...]:
    from vinterp.networks import NORMS
    return tuple(NORMS)


def unet_padding_names() -> tuple[str, ...]:
    from vinterp.networks import UNET_PADDINGS
    return tuple(UNET_PADDINGS)


def flow_param_names() -> tuple[str, ...]:
    from vinterp.warp import FLOW_PARAMS
    return tuple(FLOW_PARAMS)


def flow_prior_names() -> tuple[str, ...]:
    from vinterp.motion import PRIORS
    return tuple(PRIORS)


def flow_method_names() -> tuple[str, ...]:
    from vinterp.flows import FLOW_METHODS
    return tuple(FLOW_METHODS)


def backward_flow_names() -> tuple[str, ...]:
    from vinterp.flows import BACKWARD_FLOWS
    return tuple(BACKWARD_FLOWS)


def fallback_names() -> tuple[str, ...]:
    from vinterp.motion import FALLBACKS
    return tuple(FALLBACKS)


def gan_mode_names() -> tuple[str, ...]:
    from vinterp.losses import GAN_MODES
    return tuple(GAN_MODES)


def _opt(default: Any, group: str, help: str, check: Any = None, *, flag: str | None = None,
         cli: bool = True) -> Any:
    """A dataclass field with its CLI group, help text, constraint and (if not the field name
    with dashes) its option flag in the metadata."""
    return field(default=default, metadata={"group": group, "help": help, "check": check,
                                            "flag": flag, "cli": cli})


def _type_ok(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int to Python, never a count or a weight here
        return False
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def _validate(cfg: Any) -> None:
    """Type and constraint of every field of a config dataclass (ints given for float fields
    become floats, so stored configs compare and print the same); raises `ConfigError`."""
    for f in dataclasses.fields(cfg):
        value, kind = getattr(cfg, f.name), type(f.default)
        if not _type_ok(value, kind):
            raise ConfigError(f.name, f"expected {kind.__name__}", value)
        if kind is float and isinstance(value, int):
            object.__setattr__(cfg, f.name, float(value))
        check = f.metadata.get("check")
        problem = check.problem(value) if check is not None else None
        if problem:
            raise ConfigError(f.name, problem, value, unknown=isinstance(check, OneOf))


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator architecture.

    The generator maps `n_in` stacked frames (3*n_in channels, default 6) to `n_out` frames
    (3*n_out channels, default 15). The discriminator sees the whole clip in temporal order:
    3*(n_in + n_out) channels, default 21.
    """

    n_in: int = _opt(2, "model", "inputs given to the generator (the endpoints; 4 frames with "
                     "the stream prior)", AtLeast(1), cli=False)
    n_out: int = _opt(5, "model", "in-betweens per window (the m of n:m); the dataset must be "
                      "prepared with the same --inbetweens", AtLeast(1), flag="--inbetweens")
    netG: str = _opt("unet_256", "model", "generator backbone", OneOf(generator_names))
    ngf: int = _opt(64, "model", "generator width (filters of its first layer)", AtLeast(1))
    # "input" is what every checkpoint from before the option was made with.
    unet_padding: str = _opt("input", "model", "U-Net backbones, sizes that are not a "
                             "multiple of 2**depth: input (padded once to the next multiple) "
                             "or levels (each level pads an odd size by one pixel; any size "
                             "runs at its own cost)", OneOf(unet_padding_names))
    norm: str = _opt("batch", "model", "normalisation layers of G and D", OneOf(norm_names))
    dropout: bool = _opt(True, "model", "dropout in the inner decoder blocks (pix2pix)")
    head: str = _opt("flow", "model", "flow: warp the endpoints; pixels: write pixels directly",
                     OneOf(head_names))
    # Flow head only: the backbone runs on the endpoints downscaled by this factor; flows,
    # masks and residuals are upsampled and the warp happens at full resolution.
    flow_downscale: int = _opt(1, "model", "flow head: run the backbone at 1/k resolution "
                               "(the warp stays at full resolution)", AtLeast(1))
    # Flow head only: "shared" = one window motion V plus per-t corrections
    # (F_t->0 = -t V + d0_t, F_t->1 = (1-t) V + d1_t); "free" = independent flows per t.
    flow_param: str = _opt("shared", "model", "flow head: shared (one window motion plus "
                           "per-t corrections) or free (independent flows per t)",
                           OneOf(flow_param_names))
    # Flow head only: multiplier on the backbone's flow channels (an effective learning-rate
    # boost for flows; see warp.FlowHead). 1.0 reproduces checkpoints made before it existed.
    flow_gain: float = _opt(1.0, "model", "flow head: multiplier on the predicted flows (a "
                            "learning-rate boost for large motions)", Above(0))
    # Flow head only: radius (backbone pixels) of the cost volume fed to the backbone, whose
    # soft-argmax also seeds the motion (vinterp/motion.py); 0 = off (plain pix2pix input).
    corr_radius: int = _opt(0, "model", "flow head: cost-volume radius in backbone pixels "
                            "(0: off)", AtLeast(0))
    # Flow head only: "dis" seeds the flows with OpenCV DIS flow between the endpoints (a
    # non-trainable input computed in the forward pass; see warp.FlowHead); "stream" also
    # takes the inputs before and after the pair (n_in = 4) for quadratic motion; "none" = off.
    flow_prior: str = _opt("none", "model", "flow head: classical flow the learned flows start "
                           "from (dis: OpenCV DIS between the endpoints; stream: also the "
                           "inputs before and after the pair, for quadratic motion)",
                           OneOf(flow_prior_names))
    # Flow head with a prior only: the optical flow it is computed with (flows.FLOW_METHODS);
    # "dis" (luma only) is what checkpoints from before the option were made with.
    flow_method: str = _opt("dis", "model", "flow head with a prior: its optical flow (dis: "
                            "OpenCV DIS on luma; dis_colour: also DIS on the chroma planes, "
                            "taken where luma cannot see the motion)", OneOf(flow_method_names))
    # Stream prior only: the neighbouring pair's constant-velocity motion as a second motion
    # candidate per endpoint (motion.velocity_candidate); False for checkpoints from before it.
    velocity_candidate: bool = _opt(False, "model", "stream prior: take the constant "
                                    "velocity from the neighbouring flow where it explains "
                                    "the pair better than the pair's own flow")
    # Flow head with a prior only: how the flows against time order are made
    # (flows.BACKWARD_FLOWS); "dis" (their own DIS calls) for checkpoints from before it.
    backward_flows: str = _opt("dis", "model", "flow head with a prior: the flows against time "
                               "order (dis: their own flow call; inverted: the forward flow "
                               "inverted, one flow call per input pair in a stream)",
                               OneOf(backward_flow_names))
    # Flow head with a prior only: fixed-point steps that read the prior's motion where each
    # in-between pixel came from instead of in place (warp.reverse_flows); 0 for checkpoints
    # from before it.
    flow_reversal: int = _opt(0, "model", "flow head with a prior: fixed-point steps of flow "
                              "reversal at the backbone's resolution (0: the prior's flows "
                              "read in place)", AtLeast(0))
    # Flow head with flow reversal only: where the motion is uncertain the squared error's
    # optimum is the mean of the plausible frames. The flows read in place are a second motion
    # hypothesis beside the reversed ones; the frames they warp are averaged in with this
    # weight (warp.FlowHead). 0 for checkpoints from before it.
    reversal_mix: float = _opt(0.0, "model", "flow head with flow reversal: weight of the "
                               "frames warped by the flows read in place, averaged with the "
                               "reversed flows' frames (0: off)", Fraction())
    # Flow head with a prior only: scale the learned corrections, masks and residuals by a gate
    # that is 0 where the prior's flows explain the endpoints (see warp.prior_gate), so the
    # learned part cannot degrade static or well-estimated regions.
    prior_gate: bool = _opt(False, "model", "flow head with a prior: the learned part acts "
                            "only where the prior's flows fail to explain the endpoints")
    # Flow head with a prior only: "blend" mixes in the cross-fade where the prior's two warps
    # disagree more than the endpoints do (warp.FlowHead); "none" reproduces older checkpoints.
    fallback: str = _opt("none", "model", "flow head with a prior: blend = lean to the "
                         "cross-fade where the prior's warps disagree more than the endpoints "
                         "(its motion is wrong there); none = warps only",
                         OneOf(fallback_names))
    netD: str = _opt("patchgan", "model", "discriminator (patchgan: n-layers-D stride-2 convs)",
                     OneOf(discriminator_names))
    ndf: int = _opt(64, "model", "discriminator width (filters of its first layer)", AtLeast(1))
    n_layers_D: int = _opt(3, "model", "PatchGAN stride-2 layers (3: 70x70 receptive field)",
                           AtLeast(1))

    def __post_init__(self) -> None:
        _validate(self)
        # Like the other flow-head options, ignored by the pixels head.
        if self.fallback != "none" and self.head == "flow" and self.flow_prior == "none":
            raise ConfigError("fallback", "compares a flow prior's warps with the endpoints; "
                              "give a --flow-prior, or --fallback none", self.fallback)

    @property
    def context(self) -> int:
        """Inputs from outside the window: the frames before and after it for the "stream"
        flow prior (its n_in = 4: I_-1, I_0, I_1, I_2), else none."""
        from vinterp.motion import PRIOR_INPUTS

        return PRIOR_INPUTS.get(self.flow_prior, 2) - 2 if self.head == "flow" else 0

    @property
    def window(self) -> int:
        """Frames in one window, the clip the discriminator sees: the inputs that lie in it
        (both endpoints for the flow head) plus the in-betweens (default 7)."""
        return self.n_in - self.context + self.n_out


@dataclass(frozen=True)
class TrainConfig:
    """Training loop settings; pix2pix defaults (Isola et al. 2017) unless stated."""

    data: str = _opt("data/prepared", "data", "prepared dataset folder (from `vinterp prepare`)")
    out: str = _opt("runs/default", "runtime", "run folder: latest.pt, metrics.jsonl, strips/")
    init_from: str = _opt("", "recipe", "start the generator from this checkpoint's weights "
                          "(a run's latest.pt or an exported model; fine-tuning): fresh "
                          "optimizer and schedule, its model config unless model options are "
                          "given")
    crop: int = _opt(256, "data", "square training crop, the same for every frame of a window; "
                     "a multiple of the generator's input multiple", AtLeast(1))
    batch_size: int = _opt(1, "schedule", "windows per optimizer step (per process)", AtLeast(1))
    lr: float = _opt(2e-4, "schedule", "Adam learning rate of G and D", Above(0))
    beta1: float = _opt(0.5, "schedule", "Adam beta1", Fraction())
    n_epochs: int = _opt(100, "schedule", "epochs at the initial learning rate", AtLeast(0))
    n_epochs_decay: int = _opt(100, "schedule", "epochs of linear learning-rate decay to zero",
                               AtLeast(0))
    max_steps: int = _opt(0, "schedule", "stop after this many optimizer steps in all (0: run "
                          "the whole schedule)", AtLeast(0))
    gan_mode: str = _opt("vanilla", "losses", "GAN loss: vanilla (BCE with logits) or lsgan",
                         OneOf(gan_mode_names))
    lambda_gan: float = _opt(1.0, "losses", "weight of the GAN term (0: no discriminator)",
                             AtLeast(0))
    lambda_l1: float = _opt(100.0, "losses", "weight of the L1 term (pix2pix: 100)", AtLeast(0))
    lambda_mse: float = _opt(0.0, "losses", "weight of the mean squared error term (frames in "
                             "[-1, 1]; the loss PSNR measures)", AtLeast(0))
    lambda_census: float = _opt(0.0, "losses", "weight of the census (ternary) loss", AtLeast(0))
    lambda_lap: float = _opt(0.0, "losses", "weight of the Laplacian-pyramid L1 loss",
                             AtLeast(0))
    lambda_reverse: float = _opt(0.0, "losses", "weight of the time-reversal consistency loss",
                                 AtLeast(0))
    # Flow head only: L1 (pixels) to privileged DIS flows measured from the real in-betweens
    # (see dataset.teacher_flows); a teacher signal that needs no downloaded weights.
    lambda_flow: float = _opt(0.0, "losses", "flow head: weight of the L1 to DIS flows of the "
                              "real in-betweens (privileged teacher)", AtLeast(0))
    flip: bool = _opt(True, "data", "random horizontal flips of windows (augmentation)")
    reverse: bool = _opt(True, "data", "random temporal reversal of windows (augmentation)")
    seed: int = _opt(0, "runtime", "seed of weights, crops and batch order")
    num_workers: int = _opt(0, "runtime", "DataLoader worker processes", AtLeast(0))
    device: str = _opt("auto", "runtime", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N "
                       "or mps", DeviceName())
    amp: bool = _opt(True, "runtime", "mixed precision (CUDA only)")
    val_windows: int = _opt(64, "schedule", "validation windows scored each time (0: all)",
                            AtLeast(0))
    val_every: int = _opt(1, "schedule", "epochs between validations", AtLeast(1))
    save_every: int = _opt(1, "schedule", "epochs between checkpoints", AtLeast(1))
    val_every_steps: int = _opt(0, "schedule", "also validate and checkpoint every N steps "
                                "(0: at epoch ends only)", AtLeast(0))
    # So that a kill -9 or a power cut loses at most this much work.
    autosave_minutes: float = _opt(10.0, "schedule", "also checkpoint every this many minutes "
                                   "of training (0: off)", AtLeast(0))
    log_every: int = _opt(20, "runtime", "steps between progress lines when there is no "
                          "progress bar (output not a terminal)", AtLeast(1))

    def __post_init__(self) -> None:
        _validate(self)
        if self.n_epochs + self.n_epochs_decay < 1:
            raise ConfigError("n_epochs", "plus n_epochs_decay must be at least 1")


def check_pair(model: ModelConfig, train: TrainConfig) -> None:
    """Constraints that span both configs (the crop must suit the generator; the flow teacher
    needs the flow head); raises `ConfigError` naming the TrainConfig field."""
    from vinterp.networks import generator_multiple

    mult = generator_multiple(model)
    if train.crop % mult:
        what = (f"{model.netG} with flow_downscale {model.flow_downscale}" if model.head == "flow"
                else f"{model.netG} with the pixels head")
        raise ConfigError("crop", f"must be a multiple of {mult} for {what}", train.crop)
    if train.lambda_flow and model.head != "flow":
        raise ConfigError("lambda_flow", f"the flow teacher needs the flow head; give 0 with "
                          f"the {model.head} head", train.lambda_flow)


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


# ---------------------------------------------------------------------------------------------
# Presets: named recipes, one entry each. Values replace the dataclass defaults; options given
# on the command line replace the preset's values. Keep `default` equal to what produced
# vinterp/models/default.pt (tests/test_config.py compares it with the shipped file).

@dataclass(frozen=True)
class Preset:
    summary: str  # one line for --help and the start-up summary
    model: dict[str, Any]  # ModelConfig fields
    train: dict[str, Any]  # TrainConfig fields
    # ModelConfig fields a fine-tuning preset changes in the model it starts from (its
    # `init_from` checkpoint's config, which otherwise decides the model): shape-compatible
    # ones only, such as the flow reversal's step count.
    init_model: dict[str, Any] = field(default_factory=dict)


_DEFAULT_MODEL = dict(n_out=5, netG="unet_64", ngf=32, norm="none", dropout=False, head="flow",
                      flow_downscale=4, flow_param="shared", flow_gain=8.0, corr_radius=0,
                      flow_prior="stream", flow_method="dis_colour", velocity_candidate=True,
                      flow_reversal=2, prior_gate=True,
                      fallback="blend", netD="patchgan", ndf=32, n_layers_D=3)
_DEFAULT_TRAIN = dict(crop=256, batch_size=4, lr=1e-4, beta1=0.9, n_epochs=2, n_epochs_decay=2,
                      gan_mode="vanilla", lambda_gan=0.0, lambda_l1=100.0, lambda_flow=0.0,
                      flip=True, reverse=True, val_windows=32, val_every_steps=250,
                      num_workers=0, log_every=50)

# The shipped model is made in two stages: `default` (L1 from scratch), then `finetune`
# (the same model fine-tuned mostly on the squared error, which PSNR measures; L1 from
# scratch learns motion more steadily, the squared error then adds PSNR where motion is
# uncertain, and a little L1 keeps the SSIM it costs: docs/training.md, runs Y, YM and YR).
# The second stage also runs the prior's flow reversal for 4 steps instead of 2: the same
# weights, closer reversed flows (+0.009 dB classically), which it learns to use; mixes the
# flows read in place into the middle in-betweens (+0.017 dB held-out, docs/networks.md); and
# pads each U-Net level itself, which on 256 px crops is the same network and at 640x360
# pays for most of the mix's extra warps.
_FINETUNE_MODEL = dict(flow_reversal=4, reversal_mix=1 / 3, unet_padding="levels")
PRESETS: dict[str, Preset] = {
    "default": Preset(
        summary="the shipped model's first stage (then --preset finetune): 4:5 flow head "
                "seeded by the stream prior (DIS on luma and chroma + quadratic motion from "
                "the neighbouring inputs, reversed to each in-between) with the cross-fade "
                "fallback and gated learned corrections, unet_64 ngf 32 at 1/4 resolution "
                "without normalisation, L1, Adam lr 1e-4 beta1 0.9, 2+2 epochs at batch 4",
        model=_DEFAULT_MODEL,
        train=_DEFAULT_TRAIN,
    ),
    "finetune": Preset(
        summary="the shipped model's second stage: the default preset's run "
                "(runs/default/latest.pt) fine-tuned on the mean squared error x1000 with L1 "
                "x50, 4 flow-reversal steps with the in-place reading mixed in at 1/3, U-Net "
                "padding per level, Adam lr 5e-5, 1+1 epochs; writes runs/finetune",
        model={**_DEFAULT_MODEL, **_FINETUNE_MODEL},
        train={**_DEFAULT_TRAIN, "init_from": "runs/default/latest.pt", "out": "runs/finetune",
               "lr": 5e-5, "n_epochs": 1, "n_epochs_decay": 1, "lambda_l1": 50.0,
               "lambda_mse": 1000.0},
        init_model=_FINETUNE_MODEL,
    ),
    "pix2pix": Preset(
        summary="the published pix2pix reference: unet_256 ngf 64 writing pixels, GAN + 100 x "
                "L1, batch norm, dropout, 70x70 PatchGAN, Adam 2e-4 beta1 0.5, 100+100 epochs",
        model=dict(n_out=5, netG="unet_256", ngf=64, norm="batch", dropout=True, head="pixels",
                   netD="patchgan", ndf=64, n_layers_D=3),
        train=dict(crop=256, batch_size=1, lr=2e-4, beta1=0.5, n_epochs=100,
                   n_epochs_decay=100, gan_mode="vanilla", lambda_gan=1.0, lambda_l1=100.0,
                   lambda_flow=0.0, val_windows=64, val_every_steps=0),
    ),
}
DEFAULT_PRESET = "default"
# The preset whose last checkpoint is vinterp/models/default.pt (tests/test_config.py).
SHIPPED_PRESET = "finetune"


def preset_configs(name: str = DEFAULT_PRESET, model: dict[str, Any] | None = None,
                   train: dict[str, Any] | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The configs of preset `name` with the given fields replaced; both are validated, also
    against each other (`check_pair`). Raises `ConfigError`."""
    if name not in PRESETS:
        raise ConfigError("preset", f"choose one of {', '.join(PRESETS)}", name, unknown=True)
    from vinterp.motion import PRIOR_INPUTS

    p = PRESETS[name]
    merged = {**p.model, **(model or {})}
    if merged.get("head", "flow") == "flow" and "n_in" not in (model or {}):
        # The flow prior decides how many inputs the generator takes ("stream": 4).
        merged["n_in"] = PRIOR_INPUTS.get(merged.get("flow_prior", "none"), 2)
    model_cfg = ModelConfig(**merged)
    train_cfg = TrainConfig(**{**p.train, **(train or {})})
    check_pair(model_cfg, train_cfg)
    return model_cfg, train_cfg


__all__ = ["ConfigError", "DEFAULT_PRESET", "ModelConfig", "PRESETS", "Preset", "SHIPPED_PRESET",
           "TrainConfig", "check_pair", "from_dict", "preset_configs", "to_dict"]
