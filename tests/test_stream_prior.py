"""The neighbouring inputs reach a "stream" prior model on every path: evaluation windows,
training windows and `vinterp upsample`, with none at clip ends and across scene cuts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from synth import background, write_frames, write_prepared
from vinterp.baselines import stream_interpolate
from vinterp.checkpoint import model_state, save_checkpoint
from vinterp.config import ModelConfig
from vinterp.dataset import WindowDataset, join_clip, split_clip
from vinterp.eval_sources import Source, WindowPlan, stream_windows
from vinterp.networks import build_generator

STREAM = ModelConfig(n_in=4, netG="unet_32", ngf=8, flow_downscale=4, flow_prior="stream",
                     flow_method="dis_colour", velocity_candidate=True)


def numbered(n: int, h: int = 8, w: int = 8) -> list[np.ndarray]:
    return [np.full((h, w, 3), i, np.uint8) for i in range(n)]


def accelerating(n: int, h: int = 64, w: int = 200) -> list[np.ndarray]:
    """A textured patch at x = 20 + 2k + 0.25k^2 in frame k, on a still textured background."""
    bg, patch = background(h, w, seed=5), background(h, w, seed=9)[:24, :24]
    out = []
    for k in range(n):
        f, x0 = bg.copy(), int(round(20 + 2 * k + 0.25 * k * k))
        f[20:44, x0:x0 + 24] = patch
        out.append(f)
    return out


def test_evaluation_windows_carry_their_neighbours():
    plan = WindowPlan(m=2, step=1, stride=3)  # span 3: windows 0-3, 3-6, 6-9, 9-12
    src = Source("s", "s", "video", windows=lambda: iter(()))
    wins = list(stream_windows(iter(numbered(13)), plan, src, cut=None))
    assert [w.start for w in wins] == [0, 3, 6, 9]
    assert [int(w.frames[0][0, 0, 0]) for w in wins] == [0, 3, 6, 9]
    prev = [None if w.prev is None else int(w.prev[0, 0, 0]) for w in wins]
    nxt = [None if w.next is None else int(w.next[0, 0, 0]) for w in wins]
    assert prev == [None, 0, 3, 6] and nxt == [6, 9, 12, None]


def test_evaluation_neighbours_stop_at_a_scene_cut():
    plan = WindowPlan(m=2, step=1, stride=3)
    src = Source("s", "s", "video", windows=lambda: iter(()))
    # A cut between frames 7 and 8: window 6-9 is skipped, 3-6 loses its next neighbour (9)
    # and 9-12 its previous one (6).
    cut = lambda a, b: int(a[0, 0, 0]) == 7  # noqa: E731
    wins = list(stream_windows(iter(numbered(16)), plan, src, cut=cut))
    assert [w.start for w in wins] == [0, 3, 9, 12] and src.skipped == 1
    assert wins[1].next is None and wins[2].prev is None
    assert int(wins[0].next[0, 0, 0]) == 6 and int(wins[3].prev[0, 0, 0]) == 9


def test_training_windows_carry_neighbours_or_endpoint_copies(tmp_path):
    root = write_prepared(tmp_path / "p", {"a": (numbered(20), "train")}, inbetweens=2,
                          stride=3)
    ds = WindowDataset(root, "train", window=4, context=2)
    idx = {w.start: i for i, w in enumerate(ds.windows)}
    assert [int(f[0, 0, 0]) for f in ds.frames(idx[3])] == [0, 3, 4, 5, 6, 9]
    assert [int(f[0, 0, 0]) for f in ds.frames(idx[0])] == [0, 0, 1, 2, 3, 6]  # none before
    assert [int(f[0, 0, 0]) for f in ds.frames(idx[15])] == [12, 15, 16, 17, 18, 18]
    # The generator input is I_-1, I_0, I_1, I_2; the discriminator's window I_0 .. I_1.
    clip = ds[idx[3]][0][None]
    ends, real = split_clip(clip, 2, context=2)
    level = lambda x: [round((float(v) + 1) * 127.5) for v in x[0, ::3, 0, 0]]  # noqa: E731
    assert level(ends) == [0, 3, 6, 9] and level(real) == [4, 5]
    assert level(join_clip(ends, real, context=2)) == [3, 4, 5, 6]


def test_training_neighbours_stop_at_a_stored_scene_cut(tmp_path):
    import json

    root = write_prepared(tmp_path / "p", {"a": (numbered(20), "train")}, inbetweens=2,
                          stride=3)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["sequences"][0]["cuts"] = [8]  # between frames 7 and 8
    (root / "manifest.json").write_text(json.dumps(manifest))
    ds = WindowDataset(root, "train", window=4, context=2)
    idx = {w.start: i for i, w in enumerate(ds.windows)}
    assert [int(f[0, 0, 0]) for f in ds.frames(idx[3])] == [0, 3, 4, 5, 6, 6]
    assert [int(f[0, 0, 0]) for f in ds.frames(idx[9])] == [9, 9, 10, 11, 12, 15]


def test_training_data_computes_the_generators_prior_as_the_generator_would(tmp_path):
    # The training data's workers compute the prior; the generator given it must produce
    # exactly what it produces computing the prior itself, augmentation included.
    root = write_prepared(tmp_path / "p", {"a": (accelerating(24, w=256), "train")}, stride=4)
    torch.manual_seed(0)
    G = build_generator(STREAM).eval()
    with torch.no_grad():
        for p in G.parameters():  # a trained-looking head: the learned part acts on the prior
            p.add_(torch.randn_like(p) * 0.05)
    ds = WindowDataset(root, "train", window=7, crop=64, flip=True, reverse=True, seed=3,
                       context=2, prior=G.prior_spec())
    assert len(ds) >= 3
    moved = 0.0
    for i in range(3):
        clip, _, pair, coef = ds[i]
        assert pair.shape == (2, 2, 64, 64) and coef.shape == (2, 2, 2, 64, 64)
        ends = split_clip(clip[None], 5, context=2)[0]
        with torch.no_grad():
            given = G(ends, prior=(pair[None], coef[None]))
            own = G(ends)
        assert torch.equal(given, own)
        moved = max(moved, float(pair.abs().max()))
    assert moved > 1  # the patch moves: the flows are not all zero


def test_interpolator_computes_the_prior_from_the_uint8_frames_as_the_generator_would(
        monkeypatch):
    # The Interpolator hands the generator a prior made from the decoded uint8 frames (no
    # requantisation); the in-betweens must be those of the generator computing it itself.
    from vinterp.inference import Interpolator

    torch.manual_seed(1)
    G = build_generator(STREAM).eval()
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    interp = Interpolator.from_generator(G, STREAM, device="cpu")
    f = accelerating(4)
    with monkeypatch.context() as mp:  # the generator's own (float-input) path is not taken
        mp.setattr("vinterp.motion.prior_flows", lambda *a, **k: pytest.fail("requantised"))
        got = np.stack(interp.interpolate_pair(f[1], f[2], f[0], f[3]))
    x = torch.from_numpy(np.concatenate(f, -1)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        own = G(x)
    want = ((own + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    want = want.view(5, 3, *own.shape[-2:]).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def stream_model(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "stream.pt"
    return str(save_checkpoint(path, model_state(STREAM, build_generator(STREAM).state_dict())))


def test_upsample_gives_a_stream_model_the_neighbours_of_every_pair(tmp_path, stream_model):
    """Through the CLI, with real files: the untrained stream model's in-betweens are the
    `stream` baseline's with each pair's true neighbours (none for the first and last pair)."""
    frames = accelerating(6)
    src = write_frames(tmp_path / "in", frames)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["upsample", str(src), "-o", str(out / "%04d.png"),
                                    "--model", stream_model, "--no-scene-detect", "--quiet"])
    assert res.exit_code == 0, res.output
    from data_prep.decode import list_frame_files, read_image

    got = [read_image(p) for p in list_frame_files(out)]
    assert len(got) == 6 * 5 + 1
    for i in range(5):
        prev = frames[i - 1] if i > 0 else None
        nxt = frames[i + 2] if i + 2 < 6 else None
        want = stream_interpolate(frames[i], frames[i + 1], 5, prev, nxt)
        for k in range(5):
            diff = np.abs(got[6 * i + 1 + k].astype(int) - want[k].astype(int))
            assert diff.max() <= 1, (i, k, diff.max())


def test_evaluate_scores_the_stream_model_as_its_baseline(tmp_path, stream_model):
    import json

    src = write_frames(tmp_path / "in", accelerating(20))
    res = CliRunner().invoke(main, ["evaluate", str(src), "--model", stream_model,
                                    "--baselines", "dis,stream", "--size", "0",
                                    "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "ev" / "evaluate.json").read_text())
    psnr = {k: v["psnr"] for k, v in doc["methods"].items()}
    assert abs(psnr[Path(stream_model).stem] - psnr["stream"]) < 0.1
    assert abs(psnr["stream"] - psnr["dis"]) > 0.01  # the neighbours were used


def test_flow_cache_computes_each_flow_once(monkeypatch):
    from vinterp import flows

    calls = []
    real = flows.dis_flow
    monkeypatch.setitem(flows.FLOW_METHODS, "dis", lambda a, b: calls.append(1) or real(a, b))
    f = accelerating(4)
    cache = flows.FlowCache(size=4)
    first = cache.flows([(f[0], f[1]), (f[1], f[0]), (f[1], f[2])])
    again = cache.flows([(f[1], f[2]), (f[0], f[1])])
    assert len(calls) == 3
    assert np.array_equal(again[0], first[2]) and np.array_equal(again[1], first[0])
    assert np.array_equal(first[0], real(f[0], f[1]))


def test_prefetched_flows_are_used_not_recomputed(monkeypatch):
    from vinterp import flows

    calls = []
    real = flows.dis_flow
    monkeypatch.setitem(flows.FLOW_METHODS, "dis", lambda a, b: calls.append(1) or real(a, b))
    f = accelerating(3)
    cache = flows.FlowCache()
    cache.prefetch([(f[0], f[1]), (f[1], f[0])])
    got = cache.flows([(f[0], f[1]), (f[1], f[0])])
    assert len(calls) == 2 and np.array_equal(got[1], real(f[1], f[0]))


def test_a_batch_larger_than_the_flow_cache():
    from vinterp import flows

    f = accelerating(6)
    pairs = [(f[i], f[i + 1]) for i in range(5)] * 2
    got = flows.FlowCache(size=2).flows(pairs)
    assert len(got) == 10 and np.array_equal(got[7], flows.dis_flow(f[2], f[3]))


@pytest.mark.parametrize(("backward", "per_pair"), [("dis", 2), ("inverted", 1)])
def test_a_stream_costs_one_flow_call_per_input_pair_with_inverted_backward_flows(
        monkeypatch, tmp_path, backward, per_pair):
    """Through `vinterp upsample` with real files: a stream model whose backward flows are
    inverted forward ones makes one flow-method call per input pair, and its in-betweens are
    the generator's own on each pair (the Interpolator's prefetch and cache change nothing)."""
    from vinterp import flows

    calls = []
    real = flows.FLOW_METHODS["dis_colour"]
    monkeypatch.setitem(flows.FLOW_METHODS, "dis_colour",
                        lambda a, b: calls.append(1) or real(a, b))
    cfg = ModelConfig(**{**STREAM.__dict__, "backward_flows": backward})
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "m.pt", model_state(cfg, build_generator(cfg).state_dict()))
    frames = accelerating(7)
    src = write_frames(tmp_path / "in", frames)
    res = CliRunner().invoke(main, ["upsample", str(src), "-o", str(tmp_path / "o" / "%04d.png"),
                                    "--model", str(model), "--no-scene-detect", "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(calls) == per_pair * (len(frames) - 1)


def test_inverted_flows_undo_the_forward_motion():
    from vinterp.flows import invert_flow

    shift = np.zeros((40, 60, 2), np.float32)
    shift[...] = (3.0, -2.0)
    np.testing.assert_allclose(invert_flow(shift), -shift)
    # A zoom about the centre, F(p) = k (p - c): the inverse is -k / (1 + k) (q - c). One
    # fixed-point step is closer to it than the flow read in place (-F).
    k = 0.1
    ys, xs = np.mgrid[0:40, 0:60].astype(np.float32)
    zoom = np.dstack([k * (xs - 30), k * (ys - 20)]).astype(np.float32)
    exact = -k / (1 + k) * np.dstack([xs - 30, ys - 20])
    inner = (slice(8, -8), slice(8, -8))
    err_inverted = np.abs(invert_flow(zoom) - exact)[inner].max()
    err_in_place = np.abs(-zoom - exact)[inner].max()
    assert err_inverted < 0.5 * err_in_place


def test_threads_sharing_a_flow_cache_wait_for_a_flow_instead_of_recomputing(monkeypatch):
    """Pairs interpolated on two threads at once share the generator's cache: a flow that one
    thread is computing is waited for by the other, not computed twice."""
    import threading
    from concurrent.futures import Future

    from vinterp import flows

    calls, started, waiting, release = [], *(threading.Event() for _ in range(3))
    real = flows.dis_flow

    def slow(a, b):
        calls.append(1)
        started.set()
        release.wait(10)
        return real(a, b)

    class Marked(Future):  # says when a thread waits for a flow being computed
        def result(self, timeout=None):
            if not self.done():
                waiting.set()
            return super().result(timeout)

    monkeypatch.setitem(flows.FLOW_METHODS, "dis", slow)
    monkeypatch.setattr(flows, "Future", Marked)
    f = accelerating(3)
    cache, got = flows.FlowCache(), {}
    first = threading.Thread(target=lambda: got.update(a=cache.flows([(f[0], f[1])])))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: got.update(b=cache.flows([(f[0], f[1])])))
    second.start()
    assert waiting.wait(10), "the second thread did not wait for the first one's flow"
    release.set()
    first.join(10)
    second.join(10)
    assert len(calls) == 1 and np.array_equal(got["a"][0], got["b"][0])
    copy = pickle.loads(pickle.dumps(cache))  # DataLoader workers get a copy of the cache
    assert copy.flows([(f[1], f[2])])[0].shape == (*f[1].shape[:2], 2)


def test_closing_a_flow_cache_ends_its_threads_and_it_still_works():
    import threading

    from vinterp import flows

    f = accelerating(3)
    cache = flows.FlowCache(workers=2)
    want = cache.flows([(f[0], f[1]), (f[1], f[2])])  # two flows: on the pool's threads
    pool = [t for t in threading.enumerate() if t.name.startswith("dis")]
    assert pool
    cache.close()
    assert not any(t.is_alive() for t in pool)
    again = cache.flows([(f[0], f[1]), (f[1], f[2])])  # recomputed, on new threads
    assert all(np.array_equal(x, y) for x, y in zip(want, again, strict=True))
    cache.close()


def test_upsample_closes_the_model_it_loaded_and_not_a_callers(tmp_path, stream_model,
                                                               monkeypatch):
    """The flow threads of a model `upsample_file` loads end with it (so `vinterp` can exit
    at once, `cli.run`); a model the caller passes in is left running for its next video."""
    from vinterp.inference import Interpolator
    from vinterp.upsample import upsample_file

    closed = []
    real = Interpolator.close
    monkeypatch.setattr(Interpolator, "close", lambda self: closed.append(self) or real(self))
    src = write_frames(tmp_path / "in", accelerating(4))
    upsample_file(src, tmp_path / "a" / "%04d.png", stream_model)
    assert len(closed) == 1 and closed[0].source == stream_model
    mine = Interpolator(stream_model, device="cpu")
    upsample_file(src, tmp_path / "b" / "%04d.png", mine)
    assert len(closed) == 1
    assert mine.generator.flow_cache._pool is not None  # still running, not shut down
    mine.close()
