"""The evaluate HTML report rendered in headless Chromium (Debian's `chromium` package)."""

import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from synth import moving_square, write_video

SQUARE = (250, 30, 30)


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the HTML report's "
                    "browser test needs it")
    return exe


def _screenshot(exe, page, png, profile):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
           "--window-size=1200,900", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.is_file(), f"chromium wrote no screenshot: {proc.stderr[-500:]}"


def test_report_renders_in_chromium(tmp_path, monkeypatch):
    import cv2

    exe = _chromium()
    monkeypatch.setattr("vinterp.inference.default_model_path", lambda: None)
    video = write_video(tmp_path / "sq.mp4",
                        moving_square(13, 64, 96, size=24, vx=1, color=SQUARE))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["evaluate", str(video), "--out", str(out), "--strips", "1",
                                    "--baselines", "blend,dis"])
    assert res.exit_code == 0, res.output
    png = tmp_path / "shot.png"
    _screenshot(exe, out / "report.html", png, tmp_path / "profile")

    img = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    assert img.shape == (900, 1200, 3)
    assert img.std() > 30  # not a blank page
    # The real strip's red square is on screen (the strips start within the first screenful).
    red = (np.abs(img.astype(int) - SQUARE) < 40).all(axis=2)
    assert red.sum() > 6 * 24 * 24 // 2, red.sum()
    # Heat maps are mostly black (inferno at zero error) on a white page.
    black = (img < 16).all(axis=2)
    assert black.sum() > 5 * 64 * 96 // 2, black.sum()
    # The table text is there: dark grey pixels in the top rows (title and table).
    assert (img[:300] < 100).all(axis=2).sum() > 2000
