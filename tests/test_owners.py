"""The single owners: the dataset manifest, the linear blend, the atomic write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep import manifest
from synth import moving_square, write_prepared
from vinterp.atomic import atomic_write, write_text_atomic
from vinterp.blend import blend_frames, blend_stack, times


def _prepared(tmp_path: Path) -> Path:
    seqs = {"a": (moving_square(9, 16, 16, seed=1), "train"),
            "b": (moving_square(8, 16, 16, seed=2), "val")}
    return write_prepared(tmp_path / "ds", seqs, inbetweens=3)


def test_manifest_reads_what_prepare_writes(tmp_path):
    root = _prepared(tmp_path)
    m = manifest.read_manifest(root)
    assert m.inbetweens == 3 and set(m.sequences) == {"a", "b"}
    assert m.sequences["a"].file == root / "frames" / "a.npy"
    assert [w.start for w in m.split("train")] == [0, 1, 2, 3, 4] and m.splits() == ["train", "val"]
    assert manifest.is_prepared(root) and manifest.stored_inbetweens(root) == 3
    assert not manifest.is_prepared(tmp_path) and manifest.stored_inbetweens(tmp_path) is None
    doc = json.loads((root / manifest.NAME).read_text())
    assert json.loads(manifest.manifest_text(doc)) == doc  # the writer's text reads back


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(format="other"), "not a vinterp dataset manifest"),
    (lambda d: d.update(version=99), "manifest version 99"),
    (lambda d: d["windows"][0].update(seq="ghost"), "unknown sequence 'ghost'"),
    (lambda d: d["sequences"][0].pop("file"), "malformed entry"),
])
def test_manifest_problems_are_one_line_with_what_to_do(tmp_path, change, words):
    root = _prepared(tmp_path)
    doc = json.loads((root / manifest.NAME).read_text())
    change(doc)
    (root / manifest.NAME).write_text(json.dumps(doc))
    with pytest.raises(manifest.ManifestError, match=words) as e:
        manifest.read_manifest(root)
    assert "\n" not in str(e.value) and "vinterp" in str(e.value)
    with pytest.raises(manifest.ManifestError, match="vinterp prepare PATH"):
        manifest.read_manifest(tmp_path / "nowhere")


def test_one_blend_for_frames_and_tensors():
    a = np.full((2, 2, 3), 10, np.uint8)
    b = np.full((2, 2, 3), 70, np.uint8)
    frames = blend_frames(a, b, 5)
    assert [int(f[0, 0, 0]) for f in frames] == [round(10 + 60 * t) for t in times(5)]
    ends = torch.cat([torch.from_numpy(a), torch.from_numpy(b)], -1).permute(2, 0, 1)[None]
    stack = blend_stack(ends.float(), 5)  # (1, 15, 2, 2)
    assert stack.shape == (1, 15, 2, 2)
    assert np.allclose(stack[0, ::3, 0, 0].numpy(), [10 + 60 * t for t in times(5)])


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    write_text_atomic(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "w") as f:
        f.write("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(target.parent) == ["f.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # as a plain open() would make it
