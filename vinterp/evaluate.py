"""`vinterp evaluate`: score interpolation methods side by side on real in-between frames.

Every method gets the two endpoints of each window and makes its m in-betweens (times
t = k/(m+1)); those are scored against the real frames with PSNR and SSIM
(`vinterp.metrics`, frames as `(m, 3, H, W)` float32 in [0, 1]). Figures are means over frames:
per position t, overall, and per source (clip, frame folder or prepared sequence). Speed is
in-between frames made per second of the method's own wall time (decoding and scoring
excluded). Methods: the models given (or the bundled default) and the baselines of
`vinterp.baselines`.

Outputs: a terminal table (through `log`), a JSON file, a self-contained HTML report with
image strips (`vinterp.report`) and the same windows as PNGs in `strips/` beside it
(`vinterp.figures`), all written under temporary names and renamed at the end.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.scenes import StreamCutDetector
from vinterp import figures
from vinterp.atomic import write_text_atomic
from vinterp.baselines import BASELINES
from vinterp.blend import times
from vinterp.eval_sources import (
    EvaluateError,
    WindowPlan,
    is_prepared,
    open_sources,
    prepared_inbetweens,
)

JSON_FORMAT = "vinterp-evaluate"


@dataclass(frozen=True)
class EvaluateConfig:
    """What `evaluate` runs on and writes.

    `inputs`: video files, frame folders and prepared datasets (their `split` windows).
    `models`: checkpoint paths; empty means the bundled default if installed. `baselines`:
    names in `vinterp.baselines.BASELINES`. `inbetweens`: m (None: a prepared dataset's, else
    the models', else 5). `frame_step`, `stride`, `max_windows`, `size`: see
    `eval_sources.WindowPlan`.
    `strips`: windows per source shown as image strips in the report (the ones with the most
    change between endpoints). `out`: folder for `report.html` and (unless `json_path`)
    `evaluate.json`.
    """

    inputs: tuple[str, ...]
    out: str = "evaluation"
    models: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ("repeat", "blend", "dis", "stream", "fallback", "minterpolate")
    inbetweens: int | None = None
    frame_step: int = 1
    stride: int | None = None
    max_windows: int = 0
    size: int = 288
    split: str = "val"
    device: str = "auto"
    strips: int = 2
    json_path: str | None = None
    scene_cuts: bool = True
    overwrite: bool = False
    progress: bool = False  # a tqdm bar of scored windows on stderr


@dataclass(frozen=True)
class MethodScore:
    """One method's figures: means over every scored in-between frame."""

    name: str
    kind: str  # model | baseline
    psnr: float
    ssim: float
    psnr_t: tuple[float, ...]  # per position t = 1/(m+1) .. m/(m+1)
    ssim_t: tuple[float, ...]
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class SourceScore:
    """Per-source figures: `psnr`/`ssim` map method name -> mean over the source's frames."""

    name: str
    path: str
    kind: str
    windows: int
    skipped_cuts: int
    psnr: dict[str, float]
    ssim: dict[str, float]


@dataclass(frozen=True)
class Sample:
    """A window kept for the report's image strips: `frames` (m + 2 real frames),
    `preds` method -> m frames, `psnr` method -> m per-frame PSNRs; all uint8 RGB frames."""

    source: str
    start: int
    step: int
    motion: float  # mean |last - first| endpoint difference, grey levels
    frames: list[np.ndarray]
    preds: dict[str, list[np.ndarray]]
    psnr: dict[str, list[float]]


@dataclass(frozen=True)
class EvaluateResult:
    inbetweens: int
    t: tuple[float, ...]
    windows: int
    skipped_cuts: int
    methods: tuple[MethodScore, ...]
    sources: tuple[SourceScore, ...]
    notes: tuple[str, ...]
    json_path: str
    html_path: str
    samples: tuple[Sample, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class _Method:
    name: str
    kind: str
    run: Callable[..., list[np.ndarray]]  # (a, b, m, prev, nxt) as in vinterp.baselines
    m: int | None = None  # in-betweens a model makes per pair (baselines make any number)


def _model_methods(cfg: EvaluateConfig, notes: list[str]) -> list[_Method]:
    from vinterp.inference import InferenceError, Interpolator, default_model_path

    paths = [Path(p) for p in cfg.models]
    if not paths:
        default = default_model_path()
        if default is None:
            notes.append("no --model given and no bundled default model installed: "
                         "baselines only")
            return []
        paths = [default]
    for p in paths:
        if not p.is_file():
            raise EvaluateError(f"{p}: model checkpoint not found")
    from vinterp.checkpoint import CheckpointError

    methods, used = [], set(cfg.baselines)
    for p in paths:
        name = p.stem if p.stem not in used else str(p)
        used.add(name)
        try:
            interp = Interpolator(str(p), device=cfg.device)
        except (CheckpointError, InferenceError, OSError, ValueError, RuntimeError) as e:
            raise EvaluateError(f"{p}: cannot load model ({str(e).splitlines()[0][:200]})") \
                from None
        methods.append(_Method(name, "model", _model_call(name, interp), interp.m))
    return methods


def _model_call(name: str, interp):
    def run(a: np.ndarray, b: np.ndarray, m: int, prev: np.ndarray | None = None,
            nxt: np.ndarray | None = None) -> list[np.ndarray]:
        out = list(interp.interpolate_pair(a, b, prev, nxt))
        if len(out) != m:
            raise EvaluateError(f"model {name} makes {len(out)} in-betweens per pair but the "
                                f"windows have {m}; pass --inbetweens {len(out)}")
        return out

    return run


def _methods(cfg: EvaluateConfig, notes: list[str]) -> list[_Method]:
    unknown = [b for b in cfg.baselines if b not in BASELINES]
    if unknown:
        raise EvaluateError(f"unknown baseline(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(BASELINES)}")
    methods = _model_methods(cfg, notes)
    methods += [_Method(b, "baseline", BASELINES[b]) for b in cfg.baselines]
    if not methods:
        raise EvaluateError("nothing to evaluate: no model and no baselines")
    return methods


def _inbetweens(cfg: EvaluateConfig, methods: list[_Method]) -> int:
    """m: --inbetweens, else a prepared dataset's, else the models', else 5; models must
    make exactly m."""
    models = {x.m for x in methods if x.m is not None}
    if cfg.inbetweens is not None:
        if cfg.inbetweens < 1:
            raise EvaluateError(f"--inbetweens must be at least 1, got {cfg.inbetweens}")
        m = cfg.inbetweens
    else:
        ms = {prepared_inbetweens(Path(p)) for p in cfg.inputs if is_prepared(Path(p))}
        ms.discard(None)
        if len(ms) > 1:
            raise EvaluateError(f"the prepared datasets given have different in-betweens "
                                f"({sorted(ms)}); evaluate them separately")
        m = ms.pop() if ms else (models.pop() if len(models) == 1 else 5)
    for x in methods:
        if x.m is not None and x.m != m:
            raise EvaluateError(f"model {x.name} makes {x.m} in-betweens per pair but the "
                                f"windows have {m}; evaluate it with --inbetweens {x.m} (on "
                                "videos or frame folders)")
    return m


def _outputs(cfg: EvaluateConfig) -> tuple[Path, Path]:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise EvaluateError(f"{out} exists and is not a folder; choose another --out")
    html = out / "report.html"
    js = Path(cfg.json_path) if cfg.json_path else out / "evaluate.json"
    inputs = {Path(p).resolve() for p in cfg.inputs}
    for p in (html, js):
        if p.resolve() in inputs:
            raise EvaluateError(f"{p} is one of the inputs; choose another output path")
        if p.exists() and not cfg.overwrite:
            raise EvaluateError(f"{p} already exists; pass --overwrite or choose another --out")
    return html, js


def _check_options(cfg: EvaluateConfig) -> None:
    for opt, v, lo in (("--frame-step", cfg.frame_step, 1), ("--max-windows", cfg.max_windows, 0),
                       ("--size", cfg.size, 0), ("--strips", cfg.strips, 0)):
        if v < lo:
            raise EvaluateError(f"{opt} must be at least {lo}, got {v}")
    if cfg.stride is not None and cfg.stride < 1:
        raise EvaluateError(f"--stride must be at least 1, got {cfg.stride}")
    if cfg.size and cfg.size < 32:
        raise EvaluateError(f"--size {cfg.size} is too small (SSIM and motion search need "
                            "frames of at least 32 pixels); use 0 for native size")
    if not cfg.inputs:
        raise EvaluateError("no inputs: give video files, frame folders or a prepared dataset")
    for p in cfg.inputs:  # before any model is loaded
        if not Path(p).exists():
            raise EvaluateError(f"{p}: no such file or folder")


class _Tally:
    """Running sums of per-frame PSNR and SSIM, per position."""

    def __init__(self, m: int) -> None:
        self.psnr, self.ssim, self.n = np.zeros(m), np.zeros(m), 0

    def add(self, p: np.ndarray, s: np.ndarray) -> None:
        self.psnr += p
        self.ssim += s
        self.n += 1

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        return self.psnr / max(self.n, 1), self.ssim / max(self.n, 1)


def _score(pred: list[np.ndarray], real: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from vinterp.metrics import psnr, ssim, to_unit_tensor

    p, r = to_unit_tensor(pred), to_unit_tensor(real)
    return psnr(p, r).numpy().astype(np.float64), ssim(p, r).numpy().astype(np.float64)


def _check_pred(name: str, pred: list[np.ndarray], real: np.ndarray, m: int) -> None:
    if len(pred) != m:
        raise EvaluateError(f"{name} returned {len(pred)} frames, expected {m}")
    for f in pred:
        if f.shape != real.shape or f.dtype != np.uint8:
            raise EvaluateError(f"{name} returned a {f.shape} {f.dtype} frame, expected "
                                f"{real.shape} uint8")


def _score_source(src, methods: list[_Method], m: int, cfg: EvaluateConfig,
                  totals: dict[str, _Tally], seconds: dict[str, float],
                  bar) -> tuple[SourceScore, list[Sample]]:
    """Run every method on every window of one source; adds to `totals` and `seconds`.
    Returns the source's scores and its samples for the report's strips."""
    tallies = {x.name: _Tally(m) for x in methods}
    kept: list = []  # min-heap of (motion, order, Sample), the most motion kept
    count = 0
    for win in src.windows():
        a, b, real = win.frames[0], win.frames[-1], win.frames[1:-1]
        preds, psnrs = {}, {}
        for x in methods:
            t0 = time.perf_counter()
            pred = x.run(a, b, m, win.prev, win.next)
            seconds[x.name] += time.perf_counter() - t0
            _check_pred(x.name, pred, a, m)
            p, s = _score(pred, real)
            tallies[x.name].add(p, s)
            totals[x.name].add(p, s)
            preds[x.name], psnrs[x.name] = pred, p.tolist()
        count += 1
        bar.update(1)
        if cfg.strips:
            motion = float(np.abs(b.astype(np.int16) - a.astype(np.int16)).mean())
            item = (motion, count, Sample(src.name, win.start, win.step, motion,
                                          list(win.frames), preds, psnrs))
            if len(kept) < cfg.strips:
                heapq.heappush(kept, item)
            elif motion > kept[0][0]:
                heapq.heapreplace(kept, item)
    means = {k: t.means() for k, t in tallies.items()}
    score = SourceScore(
        name=src.name, path=src.path, kind=src.kind, windows=count, skipped_cuts=src.skipped,
        psnr={k: float(v[0].mean()) for k, v in means.items()} if count else {},
        ssim={k: float(v[1].mean()) for k, v in means.items()} if count else {})
    return score, [s for _, _, s in sorted(kept, key=lambda k: k[1])]


def evaluate(cfg: EvaluateConfig, log: Callable[[str], None] = print) -> EvaluateResult:
    """Run every method on every window, print the table, write the JSON and HTML report."""
    from vinterp import report

    _check_options(cfg)
    html_path, json_path = _outputs(cfg)
    notes: list[str] = []
    methods = _methods(cfg, notes)
    m = _inbetweens(cfg, methods)
    cut = StreamCutDetector() if cfg.scene_cuts else None
    plan = WindowPlan(m=m, step=cfg.frame_step, stride=cfg.stride,
                      max_windows=cfg.max_windows, size=cfg.size)
    sources = open_sources(list(cfg.inputs), plan, cfg.split, cut)
    for n in notes:
        log(n)
    log(f"evaluating {', '.join(x.name for x in methods)} on {len(sources)} source(s), "
        f"{m} in-betweens per window")

    totals = {x.name: _Tally(m) for x in methods}
    seconds = dict.fromkeys(totals, 0.0)
    src_scores, samples = [], []
    with _progress_bar(cfg, len(sources)) as bar:  # closed (and cleared) on errors too
        for src in sources:
            bar.set_postfix_str(src.name[:30], refresh=False)
            score, kept = _score_source(src, methods, m, cfg, totals, seconds, bar)
            src_scores.append(score)
            samples += kept
            line = f"{src.name}: {score.windows} window(s)"
            if src.skipped:
                line += f", {src.skipped} skipped at scene cuts"
            log(line)

    n_windows = sum(s.windows for s in src_scores)
    if not n_windows:
        span = plan.span + 1
        raise EvaluateError(f"no windows to evaluate: every source is shorter than one window "
                            f"({span} frames with --inbetweens {m} --frame-step {cfg.frame_step})"
                            " or all windows cross scene cuts")
    for s in src_scores:
        if not s.windows:
            notes.append(f"{s.name}: no windows (too short, or all cross scene cuts)")
    scores = []
    for x in methods:
        p, s = totals[x.name].means()
        scores.append(MethodScore(
            name=x.name, kind=x.kind, psnr=float(p.mean()), ssim=float(s.mean()),
            psnr_t=tuple(float(v) for v in p), ssim_t=tuple(float(v) for v in s),
            frames=totals[x.name].n * m, seconds=seconds[x.name]))
    result = EvaluateResult(
        inbetweens=m, t=tuple(times(m)), windows=n_windows,
        skipped_cuts=sum(s.skipped_cuts for s in src_scores), methods=tuple(scores),
        sources=tuple(src_scores), notes=tuple(notes), json_path=str(json_path),
        html_path=str(html_path), samples=tuple(samples))

    js, html = report.to_json(result, cfg), report.render_html(result, cfg)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json_path, js)
    write_text_atomic(html_path, html)
    strips = [figures.write_strip(html_path.parent / "strips" / f"{s.source}-{s.start:06d}.png",
                                  s, [x.name for x in methods]) for s in samples]
    log(report.format_table(result))
    log(f"report: {html_path}\njson: {json_path}")
    if strips:
        log(f"strips: {len(strips)} PNG(s) in {strips[0].parent}")
    return result


def _progress_bar(cfg: EvaluateConfig, n_sources: int):
    """Windows scored so far (the total is known only with --max-windows, as an upper bound:
    the windows a clip holds are found while decoding it)."""
    from tqdm import tqdm

    total = cfg.max_windows * n_sources if cfg.max_windows else None
    return tqdm(total=total, unit="window", desc="evaluate", disable=not cfg.progress,
                file=sys.stderr, dynamic_ncols=True, leave=False)
