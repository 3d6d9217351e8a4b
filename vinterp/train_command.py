"""The `vinterp train` command: options and presets -> configs (a new run, a resumed one, or
a fine-tuning stage that starts from another run's model) -> `vinterp.train.train`."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from vinterp.checkpoint import CheckpointError, load_checkpoint
from vinterp.config import (
    DEFAULT_PRESET,
    PRESETS,
    SHIPPED_PRESET,
    ConfigError,
    ModelConfig,
    TrainConfig,
    preset_configs,
    to_dict,
)
from vinterp.train import dist_env, train
from vinterp.train_run import CHECKPOINT_NAME, Log, TrainError, TrainResult


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
        if dist_env()[0] == 0:
            (Path(cfg.out) / "metrics.jsonl").unlink(missing_ok=True)
    result = train(model_cfg, cfg, resume=path, progress=progress, preset=preset, log=log)
    return result if dist_env()[0] == 0 else None
