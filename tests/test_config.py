"""Configs validate themselves; presets build; the default preset is the shipped recipe; the
loss table covers every loss weight."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vinterp import losses
from vinterp.config import (
    PRESETS,
    SHIPPED_PRESET,
    ConfigError,
    ModelConfig,
    TrainConfig,
    check_pair,
    from_dict,
    preset_configs,
)

SHIPPED = Path(__file__).resolve().parents[1] / "vinterp" / "models" / "default.pt"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_valid_configs(name):
    model, train = preset_configs(name)
    check_pair(model, train)
    assert set(PRESETS[name].model) <= {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(PRESETS[name].train) <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_default_preset_is_the_recipe_of_the_shipped_model():
    """`vinterp train`, then `vinterp train --preset finetune`, reproduce
    vinterp/models/default.pt's configs (it is the last checkpoint of the second schedule):
    every stored field but the folders and the file it started from; both stages build the
    same network (the second changes only how its prior is computed)."""
    import torch

    from vinterp.networks import build_generator

    state = torch.load(SHIPPED, weights_only=True)
    model, train = preset_configs(SHIPPED_PRESET)
    first = preset_configs("default")[0]
    changed = PRESETS[SHIPPED_PRESET].init_model  # what the second stage changes, no weights
    assert model == dataclasses.replace(first, **changed)
    shapes = [{k: v.shape for k, v in build_generator(c).state_dict().items()}
              for c in (first, model)]
    assert shapes[0] == shapes[1]
    assert train.init_from == preset_configs("default")[1].out + "/latest.pt"
    assert model == from_dict(ModelConfig, state["model_config"])
    stored = state["train_config"]
    assert stored["init_from"]  # a fine-tuned model: where it started is on record
    ours = dataclasses.asdict(train)
    differ = {k: (v, ours[k]) for k, v in stored.items() if ours[k] != v}
    assert set(differ) <= {"data", "out", "init_from"}, differ


def test_pix2pix_preset_is_the_published_reference():
    model, train = preset_configs("pix2pix")
    assert (model.netG, model.ngf, model.norm, model.dropout, model.head) == (
        "unet_256", 64, "batch", True, "pixels")
    assert (model.netD, model.n_layers_D, model.ndf) == ("patchgan", 3, 64)
    assert (train.lambda_gan, train.lambda_l1, train.gan_mode) == (1.0, 100.0, "vanilla")
    assert (train.lr, train.beta1, train.n_epochs, train.n_epochs_decay) == (2e-4, 0.5, 100, 100)
    assert train.batch_size == 1 and train.crop == 256


def test_overrides_replace_preset_fields():
    model, train = preset_configs("pix2pix", {"ngf": 16}, {"batch_size": 3})
    assert model.ngf == 16 and model.netG == "unet_256" and train.batch_size == 3


@pytest.mark.parametrize(("cls", "kw", "field", "words"), [
    (ModelConfig, {"netG": "nonsense"}, "netG", "unet_32, unet_64"),
    (ModelConfig, {"norm": "group"}, "norm", "batch, instance, none"),
    (ModelConfig, {"head": "optical"}, "head", "flow, pixels"),
    (ModelConfig, {"flow_prior": "raft"}, "flow_prior", "none, dis"),
    (ModelConfig, {"ngf": 0}, "ngf", "at least 1"),
    (ModelConfig, {"flow_gain": 0.0}, "flow_gain", "greater than 0"),
    (ModelConfig, {"dropout": 1}, "dropout", "expected bool"),
    (TrainConfig, {"batch_size": 0}, "batch_size", "at least 1"),
    (TrainConfig, {"lr": -1.0}, "lr", "greater than 0"),
    (TrainConfig, {"beta1": 1.0}, "beta1", "[0, 1)"),
    (TrainConfig, {"gan_mode": "wgan"}, "gan_mode", "vanilla, lsgan"),
    (TrainConfig, {"device": "gpu"}, "device", "cuda:N"),
    (TrainConfig, {"lambda_l1": -1.0}, "lambda_l1", "at least 0"),
    (TrainConfig, {"autosave_minutes": -1.0}, "autosave_minutes", "at least 0"),
    (TrainConfig, {"n_epochs": 0, "n_epochs_decay": 0}, "n_epochs", "at least 1"),
])
def test_bad_values_raise_config_error_naming_field_and_allowed_values(cls, kw, field, words):
    with pytest.raises(ConfigError, match=field) as e:
        cls(**kw)
    assert e.value.field == field and words in str(e.value)
    assert e.value.named("--x").startswith("--x ")


def test_cross_config_checks():
    with pytest.raises(ConfigError, match="multiple of 4") as e:
        preset_configs("default", train={"crop": 7})
    assert e.value.field == "crop" and e.value.named("--crop") .startswith("--crop 7:")
    with pytest.raises(ConfigError, match="flow head"):
        preset_configs("default", model={"head": "pixels"}, train={"lambda_flow": 1.0})
    with pytest.raises(ConfigError, match="default, finetune, pix2pix"):
        preset_configs("nope")


def test_ints_for_float_fields_are_stored_as_floats():
    assert ModelConfig(flow_gain=8).flow_gain == 8.0
    assert isinstance(dataclasses.asdict(TrainConfig(lr=1))["lr"], float)


def test_every_loss_weight_has_one_table_entry():
    weights = {f.name for f in dataclasses.fields(TrainConfig) if f.name.startswith("lambda_")}
    table = [t.weight for t in losses.GENERATOR_LOSSES.values()]
    assert sorted(table) == sorted(weights)
    cfg = TrainConfig(lambda_gan=0.0, lambda_census=0.5)
    assert list(losses.active_terms(cfg)) == ["l1", "census"]
    assert list(losses.active_terms(TrainConfig(lambda_gan=0.0, lambda_l1=0.0,
                                                lambda_mse=1e3))) == ["mse"]
    assert not losses.needs(cfg, "discriminator") and not losses.needs(cfg, "flows")
