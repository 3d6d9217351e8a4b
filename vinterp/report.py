"""Rendering an `EvaluateResult`: terminal table, JSON and a self-contained HTML report.

The HTML report needs nothing but a browser: images are embedded as base64 data URIs (JPEG for
frames, PNG for heat maps).
Image strips show, for the windows kept as samples, the real frames (endpoints and
in-betweens), each method's in-betweens, and a heat map of each method's error: the absolute
difference to the real frame averaged over RGB, times `HEAT_GAIN` (so 256 / HEAT_GAIN grey
levels of error or more is the top colour), through OpenCV's inferno colour map (black: no
error, then purple, orange, pale yellow).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from datetime import UTC, datetime

import numpy as np

HEAT_GAIN = 3.0
THUMB_WIDTH = 192  # strip frames are downscaled to at most this width
GAP = 4  # pixels between frames in a strip


def _t_labels(m: int) -> list[str]:
    return [f"{k}/{m + 1}" for k in range(1, m + 1)]


def format_table(result) -> str:
    """Plain-text tables: per method (PSNR, SSIM, per-t PSNR, frames/s), then per source."""
    m = result.inbetweens
    name_w = max([len("method")] + [len(x.name) for x in result.methods])
    head = (f"{'method':<{name_w}}  {'PSNR':>6}  {'SSIM':>6}  "
            + "  ".join(f"{'t=' + t:>6}" for t in _t_labels(m)) + f"  {'frames/s':>9}")
    lines = [f"{result.windows} windows, {m} in-betweens each; PSNR dB (mean over frames), "
             "SSIM, PSNR at each t:", head, "-" * len(head)]
    for x in result.methods:
        lines.append(f"{x.name:<{name_w}}  {x.psnr:6.2f}  {x.ssim:6.4f}  "
                     + "  ".join(f"{v:6.2f}" for v in x.psnr_t) + f"  {x.fps:9.1f}")
    srcs = [s for s in result.sources if s.windows]
    if srcs:
        src_w = max(len("source"), *(len(s.name) for s in srcs))
        cols = [x.name for x in result.methods]
        cw = max(13, *(len(c) for c in cols))
        head = f"{'source':<{src_w}}  {'windows':>7}  " + "  ".join(f"{c:>{cw}}" for c in cols)
        lines += ["", "per source, PSNR / SSIM:", head, "-" * len(head)]
        for s in srcs:
            cells = "  ".join(f"{f'{s.psnr[c]:.2f} / {s.ssim[c]:.3f}':>{cw}}" for c in cols)
            lines.append(f"{s.name:<{src_w}}  {s.windows:>7}  {cells}")
    return "\n".join(lines)


def to_json(result, cfg) -> str:
    """The result as JSON (format "vinterp-evaluate", version 1); samples are left out."""
    doc = {
        "format": "vinterp-evaluate",
        "version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(cfg),
        "inbetweens": result.inbetweens,
        "t": list(result.t),
        "windows": result.windows,
        "skipped_scene_cuts": result.skipped_cuts,
        "notes": list(result.notes),
        "methods": {
            x.name: {"kind": x.kind, "psnr": x.psnr, "ssim": x.ssim, "psnr_t": list(x.psnr_t),
                     "ssim_t": list(x.ssim_t), "frames": x.frames, "seconds": x.seconds,
                     "fps": x.fps}
            for x in result.methods
        },
        "sources": [
            {"name": s.name, "path": s.path, "kind": s.kind, "windows": s.windows,
             "skipped_scene_cuts": s.skipped_cuts, "psnr": s.psnr, "ssim": s.ssim}
            for s in result.sources
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def heat_map(pred: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Error heat map `(H, W, 3)` uint8 RGB of two `(H, W, 3)` uint8 frames (see module doc)."""
    import cv2

    diff = np.abs(pred.astype(np.int16) - real.astype(np.int16)).mean(axis=2)
    v = np.clip(diff * HEAT_GAIN, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(v, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def _thumb(frame: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    if w <= THUMB_WIDTH:
        return frame
    tw, th = THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))
    return cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)


def _strip(frames: list[np.ndarray | None], shape: tuple[int, int]) -> np.ndarray:
    """Frames side by side (None: an empty slot), `GAP` white pixels apart."""
    th, tw = shape
    n = len(frames)
    out = np.full((th, n * tw + (n - 1) * GAP, 3), 255, np.uint8)
    for i, f in enumerate(frames):
        if f is not None:
            out[:, i * (tw + GAP): i * (tw + GAP) + tw] = f
    return out


def _data_uri(img: np.ndarray, photo: bool) -> str:
    """PNG, or JPEG (quality 92) for photographic strips, which PNG barely compresses."""
    import cv2

    ext, mime, params = ((".jpg", "jpeg", [cv2.IMWRITE_JPEG_QUALITY, 92]) if photo
                         else (".png", "png", []))
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"{ext} encoding failed")
    return f"data:image/{mime};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _img(img: np.ndarray, alt: str, photo: bool = False) -> str:
    return f'<img src="{_data_uri(img, photo)}" alt="{html.escape(alt)}">'


def _colorbar() -> np.ndarray:
    import cv2

    ramp = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (12, 1))
    return cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def _sample_html(s, methods, key: str = "s") -> str:
    """One sample's strips; each thumbnail strip links to the same strip at full size, shown
    in an overlay (CSS :target, no script; a data: URI cannot be opened as a page)."""
    shape = s.frames[0].shape[:2]
    m = len(s.frames) - 2
    last = s.start + (m + 1) * s.step
    rows = [("real", "first, real in-betweens, last", list(s.frames), True)]
    for x in methods:
        preds = s.preds[x.name]
        heats = [heat_map(p, r) for p, r in zip(preds, s.frames[1:-1], strict=True)]
        psnrs = " ".join(f"{v:.1f}" for v in s.psnr[x.name])
        rows.append((x.name, f"PSNR {psnrs} dB", [None, *preds, None], True))
        rows.append((f"|{x.name} − real|", "error heat map", [None, *heats, None], False))
    thumb_shape = _thumb(s.frames[0]).shape[:2]
    body, overlays = [], []
    for i, (a, b, frames, photo) in enumerate(rows):
        small = _strip([None if f is None else _thumb(f) for f in frames], thumb_shape)
        full = _strip(frames, shape)
        ref = f"{key}-{i}"
        body.append(f'<tr><th><div>{html.escape(a)}</div><div class="sub">{html.escape(b)}'
                    f'</div></th><td><a href="#{ref}" title="full size">'
                    f"{_img(small, a, photo)}</a></td></tr>")
        # Full-size strips as JPEG even for heat maps: PNG would make the report much larger.
        overlays.append(f'<div class="full" id="{ref}"><a href="#{key}" title="close">'
                        f"{_img(full, a + ' (full size)', True)}</a></div>")
    title = (f"{s.source}: frames {s.start}–{last} (step {s.step}), mean endpoint change "
             f"{s.motion:.1f} grey levels")
    return (f'<section class="sample" id="{key}"><h3>{html.escape(title)}</h3>'
            f'<table class="strip">{"".join(body)}</table>{"".join(overlays)}</section>')


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:16px 24px;color:#222;
background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px}h3{font-size:14px;
margin:16px 0 6px;font-weight:600}
.meta{color:#555;font-size:13px}
table.scores{border-collapse:collapse;font-size:13px}
table.scores th,table.scores td{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.scores th:first-child,table.scores td:first-child{text-align:left}
table.scores thead th{background:#f0f0f0}
td.best{font-weight:700;background:#e8f4e8}
table.strip{border-collapse:collapse}
table.strip th{text-align:right;font-size:12px;padding:0 8px 0 0;vertical-align:middle;
white-space:nowrap;width:190px}
table.strip td{padding:1px 0}
table.strip img{display:block;max-width:calc(100vw - 260px);height:auto}
.sub{color:#777;font-weight:400;font-size:11px}
.full{display:none}
.full:target{display:flex;position:fixed;inset:0;z-index:9;background:rgba(0,0,0,.88);
align-items:center;justify-content:center;overflow:auto}
.full img{max-width:none;display:block;cursor:zoom-out}
table.strip a img{cursor:zoom-in}
ul.notes{color:#a33;font-size:13px}
"""


def _best(values: list[float]) -> int:
    return int(np.argmax(values)) if values else -1


def _method_table(result) -> str:
    m = result.inbetweens
    head = ("<tr><th>method</th><th>kind</th><th>PSNR dB</th><th>SSIM</th>"
            + "".join(f"<th>PSNR t={t}</th>" for t in _t_labels(m)) + "<th>frames/s</th></tr>")
    cols = [[x.psnr for x in result.methods], [x.ssim for x in result.methods]]
    cols += [[x.psnr_t[k] for x in result.methods] for k in range(m)]
    best = [_best(c) for c in cols]
    rows = []
    for i, x in enumerate(result.methods):
        vals = [f"{x.psnr:.2f}", f"{x.ssim:.4f}"] + [f"{v:.2f}" for v in x.psnr_t]
        cells = "".join(f'<td{" class=best" if best[j] == i else ""}>{v}</td>'
                        for j, v in enumerate(vals))
        rows.append(f"<tr><td>{html.escape(x.name)}</td><td>{x.kind}</td>{cells}"
                    f"<td>{x.fps:.1f}</td></tr>")
    return f'<table class="scores"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _source_table(result) -> str:
    names = [x.name for x in result.methods]
    head = ("<tr><th>source</th><th>windows</th><th>skipped (cuts)</th>"
            + "".join(f"<th>{html.escape(n)}<br>PSNR / SSIM</th>" for n in names) + "</tr>")
    rows = []
    for s in result.sources:
        best = _best([s.psnr[n] for n in names]) if s.windows else -1
        cells = "".join(
            f'<td{" class=best" if best == j else ""}>{s.psnr[n]:.2f} / {s.ssim[n]:.4f}</td>'
            if s.windows else "<td>–</td>" for j, n in enumerate(names))
        rows.append(f'<tr><td title="{html.escape(s.path)}">{html.escape(s.name)}</td>'
                    f"<td>{s.windows}</td><td>{s.skipped_cuts}</td>{cells}</tr>")
    return f'<table class="scores"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def render_html(result, cfg) -> str:
    """The whole report as one HTML document (images embedded)."""
    size = "native" if not cfg.size else f"short side at most {cfg.size} px"
    sample_frames = result.samples[0].frames[0].shape if result.samples else None
    dims = f", frames {sample_frames[1]}x{sample_frames[0]}" if sample_frames else ""
    meta = (f"{result.windows} windows from {len(result.sources)} source(s), "
            f"{result.inbetweens} in-betweens per window (t = k/{result.inbetweens + 1}), "
            f"{size}{dims}; {result.skipped_cuts} window(s) skipped at scene cuts. "
            "PSNR and SSIM are means over in-between frames; frames/s counts in-betweens made "
            "per second of each method's own time.")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    samples = "".join(_sample_html(s, result.methods, f"s{i}")
                      for i, s in enumerate(result.samples))
    legend = (f'<p class="meta">Heat maps: |method − real| averaged over RGB, ×{HEAT_GAIN:g}, '
              f"colour map inferno: {_img(_colorbar(), 'colour bar')} 0 to "
              f"{256 / HEAT_GAIN:.0f}+ grey levels.</p>")
    inputs = ", ".join(html.escape(p) for p in cfg.inputs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vinterp evaluate</title>
<style>{_CSS}</style></head><body>
<h1>vinterp evaluate</h1>
<p class="meta">{meta}</p>
<p class="meta">Inputs: {inputs}</p>
{f'<ul class="notes">{notes}</ul>' if notes else ''}
{_method_table(result)}
<h2>Image strips</h2>
{legend if samples else '<p class="meta">No strips (--strips 0).</p>'}
{samples}
<h2>Per source</h2>
{_source_table(result)}
</body></html>
"""
