"""Checkpoints: written atomically, loaded with `weights_only=True`, carrying their own config.

Layout (a plain dict, every value a tensor, primitive, list or dict of those):
    format: "vinterp-checkpoint"        version: FORMAT_VERSION
    model_config: dict (ModelConfig)   train_config: dict (TrainConfig) or None
    generator: state_dict               discriminator: state_dict or None
    optim_G, optim_D: optimizer state_dicts or None
    epoch: int (epochs completed)      step: int (optimizer steps completed)
    rng: dict of RNG states or None    extra: dict (free-form metadata, e.g. metrics)
    preset: str or None (the `config.PRESETS` name the run started from; absent in older files)
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from vinterp.atomic import atomic_write
from vinterp.config import ModelConfig, TrainConfig, from_dict, to_dict

FORMAT = "vinterp-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, foreign or incompatible; the message is one line."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (see module docstring) to `path` atomically: temp file, fsync, rename."""
    path = Path(path)
    full = {"format": FORMAT, "version": FORMAT_VERSION, **state}
    with atomic_write(path) as f:
        torch.save(full, f)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; raise `CheckpointError` with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is not a readable vinterp checkpoint (corrupt or foreign file: {first[:120]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a vinterp checkpoint (no '{FORMAT}' marker); "
            "train one with `vinterp train`"
        )
    version = state.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this vinterp reads up to "
            f"{FORMAT_VERSION}: upgrade vinterp"
        )
    try:
        state["model_config"] = from_dict(ModelConfig, state["model_config"])
        if state.get("train_config") is not None:
            state["train_config"] = from_dict(TrainConfig, state["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid config: {e}") from None
    if "generator" not in state:
        raise CheckpointError(f"{path} holds no generator weights")
    return state


def model_state(model_config: ModelConfig, generator: dict, **rest: Any) -> dict[str, Any]:
    """A checkpoint dict for `save_checkpoint` with the config stored as a plain dict."""
    out: dict[str, Any] = {"model_config": to_dict(model_config), "generator": generator}
    tc = rest.pop("train_config", None)
    out["train_config"] = to_dict(tc) if isinstance(tc, TrainConfig) else tc
    out.update(rest)
    return out


def export_model(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True,
                 overwrite: bool = False) -> Path:
    """Write an inference-only copy of a training checkpoint: generator weights (float16 if
    `half`, which inference casts back to float32) and configs, no discriminator, optimizer or
    RNG state. Returns the output path; refuses to overwrite unless `overwrite`."""
    dst = Path(dst)
    if Path(src).resolve() == dst.resolve():
        raise CheckpointError(f"{dst} is the input checkpoint; choose another output")
    if dst.exists() and not overwrite:
        raise CheckpointError(f"{dst} exists; pass --overwrite to replace it")
    state = load_checkpoint(src)
    gen = {k: (v.half() if half and v.is_floating_point() else v)
           for k, v in state["generator"].items()}
    extra = {k: v for k, v in (state.get("extra") or {}).items() if k == "metrics"}
    extra.update({"exported_from_step": state.get("step"), "half": half})
    return save_checkpoint(dst, model_state(
        state["model_config"], gen, train_config=state.get("train_config"),
        epoch=state.get("epoch"), step=state.get("step"), extra=extra))
