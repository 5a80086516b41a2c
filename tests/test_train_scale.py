"""Training at scale: TFRecord shards and their tf.data stream, data-parallel training on CPU devices.

The distributed runs happen in subprocesses, so the device configuration (two logical CPU
devices; jax's forced host device count) does not leak into the other tests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("music21")

from training import scale as ts  # noqa: E402
from training import shards as tsh  # noqa: E402
from training import train as tt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


@pytest.fixture(scope="module")
def written(tiny_corpus, tmp_path_factory):
    """The training split as 3 shards, with the rows and the int16 cache they came from."""
    rows = tt.read_metadata(tiny_corpus, "train")
    audio, offsets = tt.audio_cache(tiny_corpus, rows, tmp_path_factory.mktemp("cache"), "train", SR)
    folder = tmp_path_factory.mktemp("shards") / "train"
    index = tsh.write_shards(folder, rows, audio, offsets, SR, corpus=tiny_corpus, num_shards=3)
    return folder, index, rows, audio, offsets


def _find_crop(crop: np.ndarray, audio, offsets, hop: int):
    """(clip, start) of an unaugmented crop in the int16 cache: hop-aligned, zero-padded at the end."""
    q = np.round(crop * 32768).astype(np.int64)
    for c in range(len(offsets) - 1):
        clip = np.asarray(audio[offsets[c] : offsets[c + 1]], dtype=np.int64)
        for start in range(0, max(clip.size - crop.size, 0) + 1, hop):
            piece = clip[start : start + crop.size]
            if np.array_equal(q[: piece.size], piece) and not q[piece.size :].any():
                return c, start
    raise AssertionError("crop not found in the audio cache")


def test_shards_round_trip(written, tiny_corpus):
    folder, index, rows, audio, offsets = written
    assert tsh.read_index(folder) == index
    assert index["clips"] == len(rows) == sum(s["clips"] for s in index["shards"]) and len(index["shards"]) == 3
    assert index["samples"] == int(offsets[-1]) == sum(s["samples"] for s in index["shards"])
    assert index["sample_rate"] == SR and index["hop"] == 320 and index["frame_targets"]
    assert index["clip_ids"] == [r["clip_id"] for r in rows]
    assert index["vocabulary"] == sorted({t for r in rows for t in r["tags"].split(";") if t})
    assert sorted(p.name for p in folder.iterdir()) == sorted([tsh.INDEX] + [s["file"] for s in index["shards"]])
    seen = {}
    for clip in tsh.iterate_clips(folder):
        seen[clip["clip_id"]] = clip
    assert sorted(seen) == sorted(index["clip_ids"])
    for c, r in enumerate(rows):
        clip = seen[r["clip_id"]]
        assert clip["audio"].dtype == np.int16
        np.testing.assert_array_equal(clip["audio"], audio[offsets[c] : offsets[c + 1]])
        np.testing.assert_array_equal(clip["chroma"], np.load(tiny_corpus / r["targets"])["chroma"])
        assert clip["tags"] == [t for t in r["tags"].split(";") if t]


def test_stream_tags_matches_the_sampler(written):
    folder, _, rows, audio, offsets = written
    vocab = tt.choose_vocabulary(rows, 1, [])
    labels = tt.multi_hot(rows, vocab)
    length, hop = 48000, 24000  # cnn-tagging: 3 s patches on the 1.5 s patch grid
    ds = tsh.read_shards(folder, length=length, hop=hop, batch_size=4, vocab=vocab, seed=3, augment=None)
    ref_x, ref_y = tt.PatchSampler(audio, offsets, labels, length, hop, np.random.default_rng(0)).batch(4)
    for x, y in ds.take(3).as_numpy_iterator():
        assert x.shape == ref_x.shape and x.dtype == ref_x.dtype == np.float32
        assert y.shape == ref_y.shape and y.dtype == ref_y.dtype
        for i in range(len(x)):
            c, _ = _find_crop(x[i], audio, offsets, hop)
            np.testing.assert_array_equal(y[i], labels[c])
    # seeded: the same seed gives the same stream, another seed another one; a second pass over the
    # same dataset (the next model.fit call) draws afresh
    def first(seed):
        ds = tsh.read_shards(folder, length=length, hop=hop, batch_size=4, vocab=vocab, seed=seed, augment=None)
        return np.concatenate([x for x, _ in ds.take(2).as_numpy_iterator()]), ds

    a, ds = first(3)
    np.testing.assert_array_equal(a, first(3)[0])
    assert not np.array_equal(a, first(4)[0])
    assert not np.array_equal(a, np.concatenate([x for x, _ in ds.take(2).as_numpy_iterator()]))


@pytest.mark.parametrize("tag_head", [False, True])
def test_stream_frames_matches_the_sampler(written, tiny_corpus, tag_head):
    folder, _, rows, audio, offsets = written
    length, hop = 32000, 320
    chroma = tt.load_chroma(tiny_corpus, rows)
    vocab = tt.choose_vocabulary(rows, 1, []) if tag_head else None
    labels = tt.multi_hot(rows, vocab) if tag_head else None
    ds = tsh.read_shards(folder, length=length, hop=hop, batch_size=3, kind="frames", vocab=vocab, seed=0, augment=None)
    ref_x, ref_y = tt.PatchSampler(audio, offsets, labels, length, hop, np.random.default_rng(0),
                                   frame_targets=chroma).batch(3)
    for x, y in ds.take(2).as_numpy_iterator():
        assert x.shape == ref_x.shape and x.dtype == np.float32
        assert type(y) is type(ref_y)
        pcs = y["pitch_classes"] if tag_head else y
        assert pcs.shape == (3, 1 + length // hop, 12) and pcs.dtype == np.float32
        if tag_head:
            assert set(y) == set(ref_y) and y["tags"].shape == ref_y["tags"].shape == (3, pcs.shape[1], len(vocab))
        for i in range(len(x)):
            c, start = _find_crop(x[i], audio, offsets, hop)
            want = chroma[c][start // hop : start // hop + pcs.shape[1]]
            np.testing.assert_array_equal(pcs[i, : len(want)], want)
            assert not pcs[i, len(want) :].any()
            if tag_head:
                np.testing.assert_array_equal(y["tags"][i], np.repeat(labels[c][None], pcs.shape[1], axis=0))


def test_augment_tf():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal((16, 4000))).astype(np.float32)
    off = {"gain_db": 0.0, "noise_prob": 0.0, "polarity": False}
    np.testing.assert_allclose(tsh.augment_tf(tf.constant(x), 1, off).numpy(), np.clip(x, -1, 1))
    flipped = tsh.augment_tf(tf.constant(x), 1, dict(off, polarity=True)).numpy()
    signs = np.sign(flipped[:, 0] / np.clip(x, -1, 1)[:, 0])
    np.testing.assert_allclose(flipped, np.clip(x, -1, 1) * signs[:, None])
    assert {-1.0, 1.0} == set(signs)
    gained = tsh.augment_tf(tf.constant(x), 2, dict(off, gain_db=6.0)).numpy()
    ratio = np.abs(gained).max(axis=1) / np.abs(x).max(axis=1)
    assert np.all((ratio > 10 ** (-6 / 20) - 1e-4) & (ratio < 10 ** (6 / 20) + 1e-4)) and ratio.std() > 0
    noisy = tsh.augment_tf(tf.constant(x), 3, {"gain_db": 0.0, "noise_prob": 1.0, "snr_db": [20.0, 20.0],
                                               "polarity": False}).numpy()
    snr = 10 * np.log10(np.mean(x**2, axis=1) / np.mean((noisy - x) ** 2, axis=1))
    assert np.all(np.abs(snr - 20) < 1.0)
    full = {"gain_db": 6.0, "noise_prob": 0.5, "snr_db": [10.0, 40.0], "polarity": True}
    a, b = (tsh.augment_tf(tf.constant(x), 7, full).numpy() for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1.0


def test_random_eq_tf_matches_numpy():
    import tensorflow as tf

    from training import train as tt

    rng = np.random.default_rng(5)
    x = (0.1 * rng.standard_normal((4, 3001))).astype(np.float32)  # odd length: irfft must keep it
    gains = rng.uniform(-9, 9, (4, 6))
    on = np.array([True, False, True, True])
    got = tsh._random_eq_tf(tf.constant(x), tf.constant(on), tf.constant(gains, tf.float32)).numpy()
    want = x.astype(np.float64).copy()
    spec = np.fft.rfft(want[on], axis=1) * 10 ** (tt.eq_curve_db(1501, gains[on]) / 20)
    want[on] = np.fft.irfft(spec, n=3001, axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(got[1], x[1])
    cfg = {"gain_db": 0.0, "noise_prob": 0.0, "polarity": False, "eq_prob": 1.0, "eq_db": 9.0}
    a, b = (tsh.augment_tf(tf.constant(x), 3, cfg).numpy() for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, np.clip(x, -1, 1), atol=1e-3)


def test_mismatches_are_refused(written):
    folder, index, rows, _, _ = written
    with pytest.raises(SystemExit, match="other clips"):
        tsh.check_index(index, folder, clip_ids=[r["clip_id"] for r in rows[:-1]])
    with pytest.raises(SystemExit, match="22050 Hz"):
        tsh.check_index(index, folder, sr=22050)
    with pytest.raises(SystemExit, match="hop of 320"):
        tsh.check_index(index, folder, hop=256)
    with pytest.raises(SystemExit, match="not in the shards' vocabulary"):
        tsh.read_shards(folder, length=48000, hop=24000, batch_size=2, vocab=["instrument:kazoo"])
    with pytest.raises(SystemExit, match="needs the tensorflow backend.*use --distribute data-parallel"):
        ts.setup("mirrored", backend="jax")
    with pytest.raises(SystemExit, match="needs the jax backend.*use --distribute mirrored"):
        ts.setup("data-parallel", backend="tensorflow")
    with pytest.raises(SystemExit, match="needs the jax backend"):
        ts.setup("data-parallel", backend="torch")
    assert ts.setup("none", backend="torch").replicas == 1


def test_single_device_shards_multitask(tiny_corpus, tmp_path):
    """--data shards without a distribution, on the dense-frame model with its tag head (dict targets)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "steps_per_epoch": 1, "epochs": 1, "batch_size": 2, "min_tag_count": 1,
                                  "train_seconds": 2.0, "tag_weight": 0.5}))
    run = tmp_path / "run"
    assert tt.main(["--model", "dense-frame", "--config", str(config), "--corpus", str(tiny_corpus), "--heldout",
                    str(tmp_path / "none"), "--cache", str(tmp_path / "cache"), "--out", str(run),
                    "--data", "shards"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["data"] == "shards" and report["distribute"] == "none" and report["replicas"] == 1
    assert (tmp_path / "cache" / tiny_corpus.name / "shards-train" / tsh.INDEX).exists()  # written on first use
    assert math.isfinite(report["history"][0]["loss"]) and "tags_roc_auc_macro" in report["history"][0]
    assert tt.scale_flags(None, report) == " --data shards"


def _run_distributed(tiny_corpus, tmp_path, extra, env=None):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "steps_per_epoch": 2, "epochs": 2, "batch_size": 2, "min_tag_count": 1}))
    run, shards = tmp_path / "run", tmp_path / "shards"
    cmd = [sys.executable, "-m", "training.train", "--model", "cnn-tagging", "--config", str(config), "--corpus",
           str(tiny_corpus), "--heldout", str(tmp_path / "none"), "--cache", str(tmp_path / "cache"), "--out", str(run),
           "--data", "shards", "--shards", str(shards)] + extra
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert (shards / tsh.INDEX).exists() and tsh.read_index(shards)["clips"] == 8
    assert len(report["history"]) == 2 and all(math.isfinite(h["loss"]) for h in report["history"])
    assert report["replicas"] == 2 and len(report["devices"]) == 2
    assert report["per_replica_batch"] == 2 and report["global_batch"] == 4
    return report, proc.stdout + proc.stderr


@pytest.mark.slow  # training runs of a minute on 2 cores: CI's second step, `pytest -m slow`
def test_mirrored_on_two_cpu_devices(tiny_corpus, tmp_path):
    report, log = _run_distributed(tiny_corpus, tmp_path, ["--distribute", "mirrored", "--cpu-devices", "2"],
                                   env={"KERAS_BACKEND": "tensorflow"})
    assert report["distribute"] == "mirrored" and report["backend"] == "tensorflow"
    assert "mirrored over 2 replicas" in log


@pytest.mark.slow
def test_jax_data_parallel_on_two_cpu_devices(tiny_corpus, tmp_path):
    pytest.importorskip("jax")
    report, log = _run_distributed(tiny_corpus, tmp_path, ["--distribute", "data-parallel"],
                                   env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
                                        "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert report["distribute"] == "data-parallel" and report["backend"] == "jax"
    assert report["devices"] == ["cpu:0", "cpu:1"] and "data-parallel over 2 replicas" in log
