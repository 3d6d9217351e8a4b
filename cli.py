"""The `vinterp` command line: parses options and calls one library function per command.

Library errors that a user can fix (bad input, missing files) are raised as `UserError`
subclasses or the modules' own error types and printed as one line with a non-zero exit.
"""

from __future__ import annotations

import sys

import click

from vinterp.config import ModelConfig, TrainConfig


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vinterp")
def main() -> None:
    """vinterp: smooth slow motion and high-frame-rate video by frame interpolation."""


# --- prepare ---------------------------------------------------------------------------------
# (owned by the data_prep work: options parsed here, all logic in data_prep.prepare)


# --- train -----------------------------------------------------------------------------------
# Options are generated from the config dataclasses so defaults live in one place.

_TRAIN_HELP = {
    "data": "prepared dataset folder (from `vinterp prepare`)",
    "out": "run folder: latest.pt, metrics.jsonl, strips/",
    "crop": "square training crop, same for every frame of a window",
    "n_epochs": "epochs at the initial learning rate",
    "n_epochs_decay": "epochs of linear learning-rate decay to zero",
    "max_steps": "stop after this many optimizer steps in all (0: run the whole schedule)",
    "gan_mode": "vanilla (BCE with logits) or lsgan",
    "lambda_l1": "weight of the L1 term (pix2pix: 100)",
    "lambda_census": "weight of the census (ternary) loss",
    "lambda_lap": "weight of the Laplacian-pyramid L1 loss",
    "lambda_reverse": "weight of the time-reversal consistency loss",
    "reverse": "random temporal reversal of windows (augmentation)",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "amp": "mixed precision (CUDA only)",
    "num_workers": "DataLoader worker processes",
    "val_windows": "validation windows scored per epoch (0: all)",
    "n_out": "in-betweens per window (the m of n:m)",
    "netG": "unet_32|unet_64|unet_128|unet_256|resnet_6blocks|resnet_9blocks",
    "head": "flow (warp the endpoints) or pixels (write pixels directly)",
    "flow_downscale": "flow head: run the backbone at 1/k resolution",
}


def _config_options(cls, skip=()):
    import dataclasses

    def decorate(f):
        for fld in reversed(dataclasses.fields(cls)):
            if fld.name in skip:
                continue
            flag = "--" + fld.name.replace("_", "-")
            kw = {"default": None, "help": _TRAIN_HELP.get(fld.name)}
            if isinstance(fld.default, bool):
                flag = f"{flag}/--no-{fld.name.replace('_', '-')}"
            else:
                kw["type"] = type(fld.default)
            kw["help"] = f"{kw['help'] or ''} [default: {fld.default}]".strip()
            f = click.option(flag, fld.name, **kw)(f)
        return f

    return decorate


@main.command()
@_config_options(TrainConfig)
@_config_options(ModelConfig, skip=("n_in",))
@click.option("--resume", "resume", is_flag=False, flag_value="", default=None,
              help="continue from a checkpoint (default: OUT/latest.pt); the model config comes "
                   "from it, given training options replace its stored ones")
@click.option("--overwrite", is_flag=True, help="start over even if OUT holds a checkpoint")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train(resume, overwrite, quiet, **options):
    """Train the n:m pix2pix generator on a prepared dataset."""
    from vinterp.checkpoint import CheckpointError
    from vinterp.train import TrainError, run_from_options

    try:
        result = run_from_options(options, resume=resume, overwrite=overwrite,
                                  progress=not quiet)
    except (TrainError, CheckpointError) as e:
        _fail(str(e))
    if result is None:  # a non-zero rank under torchrun
        return
    m = result.last_metrics or {}
    line = f"trained {result.epochs} epochs, {result.steps} steps in {result.seconds:.0f} s"
    if m:
        line += (f"; val PSNR {m['psnr']:.2f} dB (blend {m['blend_psnr']:.2f}), "
                 f"SSIM {m['ssim']:.4f} (blend {m['blend_ssim']:.4f})")
    click.echo(line)
    click.echo(f"checkpoint: {result.checkpoint}")


# --- upsample --------------------------------------------------------------------------------
# (owned by the inference work: options parsed here, all logic in vinterp.inference)


# --- evaluate --------------------------------------------------------------------------------
# (owned by the evaluation work: options parsed here, all logic in vinterp.evaluate)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "models", multiple=True, type=click.Path(),
              help="checkpoint to evaluate (repeatable; default: the bundled model if installed)")
@click.option("--baselines", default="repeat,blend,dis,minterpolate", show_default=True,
              help="comma-separated baselines to run beside the model(s); '' for none")
@click.option("--inbetweens", "-m", type=int, default=None,
              help="in-betweens per window [default: a prepared dataset's, else 5]")
@click.option("--frame-step", type=int, default=1, show_default=True,
              help="source frames between consecutive window frames (videos, frame folders)")
@click.option("--stride", type=int, default=None,
              help="source frames between window starts [default: windows side by side, "
                   "spread over each clip when --max-windows is given]")
@click.option("--max-windows", type=int, default=0, show_default=True,
              help="at most this many windows per source (0: all)")
@click.option("--size", type=int, default=288, show_default=True,
              help="downscale frames to this short side (0: native)")
@click.option("--split", default="val", show_default=True, help="prepared dataset split")
@click.option("--out", default="evaluation", show_default=True, type=click.Path(),
              help="folder for report.html (and evaluate.json)")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="JSON results path [default: OUT/evaluate.json]")
@click.option("--strips", type=int, default=2, show_default=True,
              help="windows per source shown as image strips in the report")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
@click.option("--overwrite", is_flag=True, help="replace an existing report/JSON")
def evaluate(inputs, models, baselines, inbetweens, frame_step, stride, max_windows, size,
             split, out, json_path, strips, device, overwrite):
    """Score models and baselines on real in-between frames (PSNR, SSIM, frames/s).

    INPUTS are video files, folders of numbered frames, or a prepared dataset (its --split
    windows). Writes a terminal table, OUT/report.html and a JSON file.
    """
    from data_prep.decode import DecodeError
    from vinterp.baselines import MinterpolateError
    from vinterp.checkpoint import CheckpointError
    from vinterp.evaluate import EvaluateConfig, EvaluateError
    from vinterp.evaluate import evaluate as run_evaluate

    cfg = EvaluateConfig(
        inputs=tuple(inputs), out=out, models=tuple(models),
        baselines=tuple(b.strip() for b in baselines.split(",") if b.strip()),
        inbetweens=inbetweens, frame_step=frame_step, stride=stride, max_windows=max_windows,
        size=size, split=split, device=device, strips=strips, json_path=json_path,
        overwrite=overwrite)
    try:
        run_evaluate(cfg, log=click.echo)
    except (EvaluateError, DecodeError, CheckpointError, MinterpolateError) as e:
        _fail(str(e))


if __name__ == "__main__":
    main()
