"""The `vinterp` command line: parses options and calls one library function per command.

Library errors that a user can fix (bad input, missing files) are raised as `UserError`
subclasses or the modules' own error types and printed as one line with a non-zero exit.
"""

from __future__ import annotations

import contextlib
import sys

import click

from vinterp.config import ModelConfig, TrainConfig


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def _interrupts(left: str):
    """SIGINT and SIGTERM inside the block unwind the command (its own clean-up removes partial
    output), then one line says so and the exit status is 128 + signal (130, 143). `left`
    says what is (not) on disk afterwards."""
    from vinterp.interrupts import as_interrupted, signals_as_interrupts

    try:
        with signals_as_interrupts():
            yield
    except KeyboardInterrupt as e:
        i = as_interrupted(e)
        click.echo(f"interrupted ({i.name}): {left}", err=True)
        sys.exit(i.exit_code)


def run() -> None:
    """The `vinterp` console script: `main`, then an exit without Python's teardown of the
    loaded libraries. That teardown took ~0.45 s after every command that imported torch
    (`python -c "import torch"`: 1.46 s, of which the import is 1.0-1.3 s), 6% of upsampling
    a 40-frame clip. The fast exit runs the atexit handlers and flushes stdout/stderr first;
    it is skipped, for Python's own exit, while a non-daemon thread still runs, so nothing a
    command started is cut short. Tests and `python -c "from cli import main"` keep `main`."""
    import atexit
    import os
    import threading

    try:
        main()  # standalone click: ends in SystemExit, also on success
        code = 0
    except SystemExit as done:
        code = done.code
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        click.echo(code, err=True)  # as Python prints a non-integer exit message
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`)
            stream.flush()
    os._exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vinterp")
def main() -> None:
    """vinterp: smooth slow motion and high-frame-rate video by frame interpolation."""


# --- prepare ---------------------------------------------------------------------------------
# (owned by the data_prep work: options parsed here, all logic in data_prep.prepare)

@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--out", default="data/prepared", show_default=True,
              help="output dataset folder (what `vinterp train` reads by default)")
@click.option("--inbetweens", default=5, show_default=True,
              help="in-between frames per window (windows hold M+2 frames)")
@click.option("--frame-step", default=1, show_default=True,
              help="a window takes every K-th source frame")
@click.option("--stride", default=1, show_default=True,
              help="source frames between the starts of consecutive windows")
@click.option("--size", default=288, show_default=True,
              help="short side of stored frames, at most (0: keep the source size)")
@click.option("--val-fraction", type=float, default=None,
              help="share of non-MOT sequences held out for validation, by name hash "
                   "[default: 0.2, or 0 when --val is given]")
@click.option("--val", "val_patterns", multiple=True, metavar="PATTERN",
              help="sequence name (shell pattern) to put in the validation split; repeatable")
@click.option("--static-threshold", default=0.002, show_default=True,
              help="drop windows where less than this share of pixels changes (0: keep all)")
@click.option("--format", "formats", type=click.Choice(["npy", "pix2pix"]), multiple=True,
              help="pix2pix: also write each window as one image of M+2 panels side by side")
@click.option("--overwrite", is_flag=True, help="replace an existing output folder")
@click.option("--quiet", is_flag=True, help="no progress bar")
def prepare(paths, out, inbetweens, frame_step, stride, size, val_fraction, val_patterns,
            static_threshold, formats, overwrite, quiet):
    """Turn MOTChallenge folders, videos and frame folders (PATHS, searched recursively) into
    training windows."""
    from data_prep.prepare import PrepareConfig, PrepareError
    from data_prep.prepare import prepare as run_prepare

    if val_fraction is None:
        val_fraction = 0.0 if val_patterns else 0.2
    cfg = PrepareConfig(
        inputs=tuple(paths), out=out, inbetweens=inbetweens, frame_step=frame_step,
        stride=stride, size=size, val_fraction=val_fraction, val_patterns=tuple(val_patterns),
        static_threshold=static_threshold, pix2pix="pix2pix" in formats, overwrite=overwrite,
        progress=not quiet,
    )
    try:
        with _interrupts(f"the partial dataset was removed, {out} is as it was; run the same "
                         "command again to prepare it"):
            summary = run_prepare(cfg)
    except PrepareError as e:
        _fail(str(e))
    for line in summary.lines():
        click.echo(line)


# --- train -----------------------------------------------------------------------------------
# Options are generated from the config dataclasses' fields (their metadata holds each option's
# group, help text and constraint), so defaults, help and validation live in vinterp/config.py.

_GROUPS = ("recipe", "data", "model", "losses", "schedule", "runtime")


class _Names(click.ParamType):
    """A name from a registry, shown as `[a|b|c]` in --help. The registry is read when help
    is shown (the builder registries import torch); values are checked by the configs, whose
    one-line errors name the option and the allowed names."""

    name = "name"

    def __init__(self, names) -> None:
        self.names = names

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(self.names()) + "]"

    def convert(self, value, param, ctx):
        return value


class _GroupedOption(click.Option):
    def __init__(self, *args, group: str = "runtime", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.group = group


class _OneLineUsageError(click.UsageError):
    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _TrainCommand(click.Command):
    """Options in sections (recipe, data, model, ...) and usage errors as one line."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise _OneLineUsageError(e.format_message(), e.ctx) from None

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list] = {}
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            if record:
                sections.setdefault(getattr(p, "group", "other"), []).append(record)
        for group in (*_GROUPS, "other"):
            if group in sections:
                with formatter.section(f"{group.capitalize()} options"):
                    formatter.write_dl(sections[group])


def _preset_defaults(name: str, section: str, fallback) -> str:
    """'[default: X]' from the default preset, plus where other presets differ."""
    from vinterp.config import DEFAULT_PRESET, PRESETS

    values = {p: getattr(preset, section).get(name, fallback) for p, preset in PRESETS.items()}
    default = values.pop(DEFAULT_PRESET)
    others = [f"{p}: {v}" for p, v in values.items() if v != default]
    return "[" + "; ".join([f"default: {default}", *others]) + "]"


def _flag(fld) -> str:
    return fld.metadata.get("flag") or "--" + fld.name.replace("_", "-")


def _option_for(fld, section: str):
    """The click option of one config field (default None: given options are the non-None)."""
    from vinterp.config import OneOf

    flag, check = _flag(fld), fld.metadata.get("check")
    kind = type(fld.default)
    if kind is bool:
        decls, kw = [f"{flag}/--no-{flag[2:]}", fld.name], {}
    else:
        kind = _Names(check.names) if isinstance(check, OneOf) else kind
        decls, kw = [flag, fld.name], {"type": kind}
    help_text = f"{fld.metadata['help']} {_preset_defaults(fld.name, section, fld.default)}"
    return click.option(*decls, cls=_GroupedOption, group=fld.metadata["group"], default=None,
                        help=help_text, **kw)


def _config_options(f):
    import dataclasses

    for cls, section in ((TrainConfig, "train"), (ModelConfig, "model")):
        for fld in reversed(dataclasses.fields(cls)):
            if fld.metadata.get("cli", True):
                f = _option_for(fld, section)(f)
    return f


def _option_name(field_name: str) -> str:
    """The flag of a config field (`n_out` -> `--inbetweens`), for error messages."""
    import dataclasses

    for cls in (ModelConfig, TrainConfig):
        for fld in dataclasses.fields(cls):
            if fld.name == field_name:
                return _flag(fld)
    return "--" + field_name.replace("_", "-")


def _preset_help() -> str:
    from vinterp.config import PRESETS

    return "recipe to start from; given options replace its values. " + "; ".join(
        f"{name}: {p.summary}" for name, p in PRESETS.items()) + " [default: default]"


def _preset_names():
    from vinterp.config import PRESETS

    return tuple(PRESETS)


def _exit_interrupted(exc: BaseException) -> None:
    """One line saying what a Ctrl-C / SIGTERM left, then exit 128 + signal number."""
    from vinterp.interrupts import as_interrupted

    sig = as_interrupted(exc)
    detail = getattr(exc, "detail", "stopped; nothing was saved")
    click.echo(f"interrupted ({sig.name}): {detail}", err=True)
    sys.exit(sig.exit_code)


@main.command(cls=_TrainCommand)
@click.option("--preset", type=_Names(_preset_names), default=None, cls=_GroupedOption,
              group="recipe", help=_preset_help())
@click.option("--resume", "resume", is_flag=False, flag_value="", default=None,
              cls=_GroupedOption, group="recipe", metavar="[PATH]",
              help="continue from a checkpoint [default PATH: OUT/latest.pt]; configs come from "
                   "it, given training options (a longer schedule) replace its stored ones")
@click.option("--overwrite", is_flag=True, cls=_GroupedOption, group="recipe",
              help="start over even if OUT holds a checkpoint")
@_config_options
@click.option("--n-out", "n_out_alias", type=int, default=None, hidden=True,
              help="deprecated name of --inbetweens")
@click.option("--quiet", is_flag=True, cls=_GroupedOption, group="runtime",
              help="no summary, progress bar or progress lines")
def train(preset, resume, overwrite, n_out_alias, quiet, **options):
    """Train the n:m generator on a prepared dataset (from `vinterp prepare`).

    With no options: the default preset, the recipe of the shipped model. Ctrl-C or SIGTERM
    finishes the current step, saves, and prints the command that resumes.
    """
    import functools

    from vinterp.checkpoint import CheckpointError
    from vinterp.config import ConfigError
    from vinterp.train_command import next_stage, run_from_options
    from vinterp.train_run import TrainError

    if n_out_alias is not None:
        if options["n_out"] is not None:
            _fail("--n-out is the old name of --inbetweens; give only --inbetweens")
        options["n_out"] = n_out_alias
    log = None if quiet else functools.partial(click.echo, err=True)
    try:
        result = run_from_options(options, resume=resume, overwrite=overwrite,
                                  progress=not quiet, preset=preset, log=log)
    except ConfigError as e:
        _fail(e.named(_option_name(e.field)))
    except (TrainError, CheckpointError) as e:
        _fail(str(e))
    except KeyboardInterrupt as e:
        _exit_interrupted(e)
    if result is None:  # a non-zero rank under torchrun
        return
    m = result.last_metrics or {}
    line = f"trained {result.epochs} epochs, {result.steps} steps in {result.seconds:.0f} s"
    if m:
        line += (f"; val PSNR {m['psnr']:.2f} dB (blend {m['blend_psnr']:.2f}), "
                 f"SSIM {m['ssim']:.4f} (blend {m['blend_ssim']:.4f})")
    click.echo(line)
    click.echo(f"checkpoint: {result.checkpoint}")
    then = next_stage(result.preset, result.checkpoint)
    if then:
        click.echo(f"next, the shipped model's fine-tuning stage: {then}")


@main.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="inference-only model file to write")
@click.option("--half/--full", default=True, help="store weights as float16 [default: half]")
@click.option("--overwrite", is_flag=True, help="replace an existing output")
def export(checkpoint, output, half, overwrite):
    """Strip a training checkpoint down to what `upsample` and `evaluate` need."""
    from vinterp.checkpoint import CheckpointError, export_model

    try:
        with _interrupts(f"nothing was written to {output}"):
            path = export_model(checkpoint, output, half=half, overwrite=overwrite)
    except CheckpointError as e:
        _fail(str(e))
    click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


# --- upsample --------------------------------------------------------------------------------
# (owned by the inference work: options parsed here, all logic in vinterp.upsample)


@main.command()
@click.argument("input", type=click.Path(path_type=str))
@click.option("-o", "--output", default=None,
              help="output video (.mp4 .mkv .mov .webm .avi) or image sequence such as "
                   "out/%06d.png [default: INPUT_smooth.mp4 beside the input]")
@click.option("--model", default=None,
              help="checkpoint to use [default: the model bundled with vinterp]")
@click.option("--fps", "fps", type=float, default=None,
              help="output frame rate, up to (m+1)x the input's; frames are the nearest ones "
                   "of the (m+1)x timeline")
@click.option("--factor", type=int, default=None,
              help="frame-rate multiplier; must divide m+1 (1, 2, 3, 6 for a 2:5 model) "
                   "[default: m+1]")
@click.option("--slowmo", is_flag=True,
              help="keep the input frame rate: the video plays (factor)x longer")
@click.option("--stretch-audio", is_flag=True,
              help="with --slowmo, slow the audio down too (pitch kept) instead of dropping it")
@click.option("--input-fps", type=float, default=None,
              help="rate of the input frames [default: the container's; 30 for a frame folder]")
@click.option("--codec", type=click.Choice(["auto", "h264", "h265", "vp9", "ffv1"]),
              default="auto", show_default=True, help="video codec (auto: h264, vp9 for .webm)")
@click.option("--crf", type=click.IntRange(0, 63), default=18, show_default=True,
              help="quality: lower is better and bigger")
@click.option("--preset", default="veryfast", show_default=True,
              help="x264/x265 speed preset (slower ones: smaller files, same --crf quality)")
@click.option("--lossless", is_flag=True,
              help="store the frames exactly (RGB; large files, limited player support)")
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
              default="auto", show_default=True, help="auto: fp16 on CUDA, fp32 on CPU")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for the model; on the CPU several frame pairs are "
                   "interpolated at once (one more than threads, at most 3), sharing them "
                   "[default: torch's, the number of cores]")
@click.option("--batch-size", type=click.IntRange(0), default=0,
              help="frame pairs per model call (0: 4 on GPU, 1 on CPU)")
@click.option("--tile", type=click.IntRange(0), default=0,
              help="process frames in overlapping tiles of this size (0: only frames over "
                   "4 megapixels, in 1024 tiles)")
@click.option("--no-scene-detect", is_flag=True,
              help="interpolate across scene cuts too (by default a cut repeats frames)")
@click.option("--quiet", is_flag=True, help="no progress bar or notices")
def upsample(input, output, model, fps, factor, slowmo, stretch_audio, input_fps, codec, crf,
             preset, lossless, overwrite, device, precision, threads, batch_size, tile,
             no_scene_detect, quiet):
    """Make INPUT (a video or a folder of frames) smoother: (m+1)x the frame rate by default."""
    from pathlib import Path

    from data_prep.decode import DecodeError
    from vinterp.checkpoint import CheckpointError
    from vinterp.inference import InferenceError
    from vinterp.upsample import upsample_file
    from vinterp.video_io import VideoIOError
    from vinterp.video_out import EncodeSettings

    if output is None:
        src = Path(input)
        output = str(src.with_name(f"{src.stem if src.is_file() else src.name}_smooth.mp4"))
    if stretch_audio and not slowmo:
        _fail("--stretch-audio only applies with --slowmo")
    encode = EncodeSettings(codec=codec, crf=crf, preset=preset, lossless=lossless)
    note = None if quiet else (lambda msg: click.echo(f"note: {msg}", err=True))
    try:
        with _interrupts(f"the partial output was removed, nothing was written to {output}; "
                         "run the same command again"):
            s = upsample_file(input, output, model, fps=fps, factor=factor, slowmo=slowmo,
                              stretch_audio=stretch_audio, input_fps=input_fps, encode=encode,
                              overwrite=overwrite, batch_size=batch_size,
                              scene_cuts=not no_scene_detect, device=device,
                              precision=precision, threads=threads, tile=tile,
                              progress=not quiet, notify=note)
    except (VideoIOError, DecodeError, CheckpointError, InferenceError) as e:
        _fail(str(e))
    rate = s.frames_out / s.seconds if s.seconds > 0 else 0.0
    click.echo(f"input: {s.frames_in} frames at {s.in_fps:.4g} fps ({s.in_fps_note})")
    click.echo(f"output: {s.frames_out} frames at {s.out_fps:.4g} fps, {s.width}x{s.height} "
               f"({s.timing}); audio {s.audio}; {s.scene_cuts} scene cut(s), "
               f"{s.static_pairs} static pair(s)")
    click.echo(f"done in {s.seconds:.1f} s ({rate:.1f} output frames/s): {s.output}")


# --- evaluate --------------------------------------------------------------------------------
# (owned by the evaluation work: options parsed here, all logic in vinterp.evaluate)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "models", multiple=True, type=click.Path(),
              help="checkpoint to evaluate (repeatable; default: the bundled model if installed)")
@click.option("--baselines", default="repeat,blend,dis,stream,fallback,minterpolate",
              show_default=True,
              help="comma-separated baselines to run beside the model(s) (repeat, blend, dis, "
                   "stream, fallback, minterpolate); '' for none")
@click.option("--inbetweens", "-m", type=int, default=None,
              help="in-betweens per window [default: a prepared dataset's, else the "
                   "model's, else 5]")
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
@click.option("-o", "--out", default="evaluation", show_default=True, type=click.Path(),
              help="folder for report.html (and evaluate.json)")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="JSON results path [default: OUT/evaluate.json]")
@click.option("--strips", type=int, default=2, show_default=True,
              help="windows per source shown as image strips in the report")
@click.option("--device", default="auto", show_default=True,
              help="model device: auto, cpu, cuda, cuda:N or mps")
@click.option("--overwrite", is_flag=True, help="replace an existing report/JSON")
@click.option("--quiet", is_flag=True, help="no progress bar")
def evaluate(inputs, models, baselines, inbetweens, frame_step, stride, max_windows, size,
             split, out, json_path, strips, device, overwrite, quiet):
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
        overwrite=overwrite, progress=not quiet)
    try:
        with _interrupts(f"nothing was written to {out}; run the same command again"):
            run_evaluate(cfg, log=click.echo)
    except (EvaluateError, DecodeError, CheckpointError, MinterpolateError) as e:
        _fail(str(e))


if __name__ == "__main__":
    main()
