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

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from data_prep.staging import pid_alive
from vinterp.atomic import atomic_write
from vinterp.config import ModelConfig, TrainConfig, from_dict, to_dict

FORMAT = "vinterp-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, foreign or incompatible; the message is one line."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (see module docstring) to `path` atomically: temp file, fsync, rename.

    The temporary is `.NAME.PID-HEX.tmp`; temporaries of processes that no longer run (a
    kill -9 during a save) are removed first, so they never pile up beside the checkpoint."""
    path = Path(path)
    remove_stale_temporaries(path)
    full = {"format": FORMAT, "version": FORMAT_VERSION, **state}
    with atomic_write(path) as f:
        torch.save(full, f)
    return path


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete `.NAME.*.tmp` files beside `path` whose writer is gone: `.NAME.PID-HEX.tmp` of a
    dead PID, and the PID-less `.NAME.XXXXXXXX.tmp` names that older versions made with
    mkstemp. Returns what was removed."""
    path = Path(path)
    removed = []
    for p in path.parent.glob(f".{path.name}.*.tmp"):
        middle = p.name[len(path.name) + 2:-len(".tmp")]
        head = middle.split("-", 1)[0]
        if "-" in middle and head.isdigit() and pid_alive(int(head)):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; raise `CheckpointError` with a one-line reason.

    Only `weights_only` unpickling is used, so a file that would run code is refused; any
    other file (text, a raw pickle, a crafted dict) gives one line, never a traceback."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # torch warns (two lines on stderr) about legacy raw pickles before failing on them;
        # the error below says all there is to say.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - the weights-only unpickler raises many types
        raise CheckpointError(f"{path} is not a readable vinterp checkpoint (corrupt or foreign "
                              f"file: {_load_failure(e, path)}); use one written by "
                              "`vinterp train` or `vinterp export`") from None
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
        state["model_config"] = _config(ModelConfig, state.get("model_config"))
        if state.get("train_config") is not None:
            state["train_config"] = _config(TrainConfig, state["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid config: {e}") from None
    _check_weights(path, state)
    return state


def _load_failure(e: Exception, path: Path) -> str:
    """The useful part of torch's (many-line) unpickling error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if any("global" in ln.lower() for ln in lines):
        return "it holds Python objects, not only tensors; refused, loading it could run code"
    hits = [ln for ln in lines if ln.startswith("Unsupported")]
    detail = (hits or lines or [type(e).__name__])[0][:120]
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    return detail if zipped else f"not a torch.save zip archive; {detail}"


def _config(cls: type, data: Any) -> Any:
    """`from_dict` after checking that every stored value has its field's type (a crafted
    `ngf="abc"` would otherwise fail later, deep inside the network code)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} is {type(data).__name__}, not a dict")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        want, value = type(f.default), data[f.name]
        ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise TypeError(f"{f.name}={value!r:.40} is not {want.__name__}")
    return from_dict(cls, data)


def _check_weights(path: Path, state: dict[str, Any]) -> None:
    """The state dicts must map names to tensors (load_state_dict assumes it)."""
    if "generator" not in state:
        raise CheckpointError(f"{path} holds no generator weights")
    for key in ("generator", "discriminator"):
        sd = state.get(key)
        if sd is None and key == "discriminator":
            continue
        if not isinstance(sd, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
            raise CheckpointError(f"{path}: its '{key}' entry is not a set of named tensors "
                                  "(damaged or crafted checkpoint)")


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
        epoch=state.get("epoch"), step=state.get("step"), preset=state.get("preset"),
        extra=extra))
