"""Issue 17's fast paths: a user-chosen patch hop, and batch norm folded into the convolutions.

The speed itself is measured in ``benchmarks/throughput.py`` and ``benchmarks/vs_musicnn.py``;
these tests check that the fast paths give the right numbers.
"""

import logging
import warnings

import numpy as np
import pytest

import mirzoo
from mirzoo.batch import extract_files, read_embeddings
from mirzoo.errors import ParameterError
from mirzoo.inference.runner import PredictRetracingFilter
from mirzoo.nn.fold import FoldedBatchNorm, fold_batch_norm, foldable_pairs

from conftest import SR, tone_mix

CLIP = "cnn-tagging"


def _patch_embedding(m, patch):
    """The embedding of one patch, straight from the unfolded Keras model."""
    return np.asarray(m.model.predict_on_batch(patch[None].astype(np.float32))["embedding"])[0]


def test_hop_equal_to_the_patch_gives_non_overlapping_patches_and_timestamps():
    m = mirzoo.load(CLIP)
    patch = m.spec.patch_seconds
    y = tone_mix(10.0, seed=3)  # 160000 samples: 3 whole patches and a zero-padded fourth
    e = m.extract(y, sr=SR, hop=patch)
    assert e.embeddings.shape[0] == 4
    np.testing.assert_allclose(e.timestamps, [1.5, 4.5, 7.5, 10.5])
    n = m.patch_samples
    for i in range(4):
        piece = np.zeros(n, np.float32)
        chunk = y[i * n : (i + 1) * n]
        piece[: chunk.shape[0]] = chunk
        want = _patch_embedding(m, piece)
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(e.embeddings[i] - want).max() <= 1e-5 * scale


def test_default_hop_is_unchanged_and_explicit_default_is_the_same():
    m = mirzoo.load(CLIP)
    y = tone_mix(7.0, seed=4)
    default = m.extract(y, sr=SR)
    explicit = m.extract(y, sr=SR, hop=m.spec.patch_hop_seconds)
    assert default.embeddings.shape[0] == 1 + int(np.ceil((7.0 - 3.0) / 1.5))  # half-patch hop, as before
    np.testing.assert_allclose(default.timestamps, 1.5 + 1.5 * np.arange(default.embeddings.shape[0]))
    np.testing.assert_array_equal(default.embeddings, explicit.embeddings)
    fine = m.extract(y, sr=SR, hop=0.5)
    assert fine.embeddings.shape[0] == 1 + int(np.ceil((7.0 - 3.0) / 0.5))
    np.testing.assert_allclose(np.diff(fine.timestamps), 0.5)
    # patch 3k of hop 0.5 starts where patch k of hop 1.5 does (0, 1.5, 3.0 s)
    coarse = fine.embeddings[::3]
    scale = max(1.0, float(np.abs(default.embeddings).max()))
    np.testing.assert_allclose(coarse, default.embeddings[: coarse.shape[0]], rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1", True])
def test_bad_hop_is_refused_with_its_value(bad):
    m = mirzoo.load(CLIP)
    with pytest.raises(ParameterError, match="hop="):
        m.extract(tone_mix(1.0), sr=SR, hop=bad)


def test_hop_shorter_than_a_sample_and_hop_on_a_frame_model_are_refused():
    with pytest.raises(ParameterError, match="shorter than one sample"):
        mirzoo.load(CLIP).extract(tone_mix(1.0), sr=SR, hop=1e-6)
    with pytest.raises(ParameterError, match="frame-level"):
        mirzoo.load("dense-frame").extract(tone_mix(1.0), sr=SR, hop=1.0)


def test_hop_in_the_folder_engine_sklearn_and_hear(tmp_path):
    import soundfile as sf

    m = mirzoo.load(CLIP)
    paths = []
    for i, seconds in enumerate((6.0, 4.0)):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, tone_mix(seconds, seed=20 + i), SR)
        paths.append(str(p))
    out = tmp_path / "emb.npz"
    extract_files(CLIP, paths, out, hop=3.0, workers=0)
    results, meta = read_embeddings(out)
    assert meta["hop"] == "3"
    for (path, emb, ts), p in zip(results, paths):
        want = m.extract(p, hop=3.0)
        np.testing.assert_allclose(emb, want.embeddings, atol=1e-5 * max(1.0, np.abs(want.embeddings).max()))
        np.testing.assert_allclose(ts, want.timestamps)
    with pytest.raises(ParameterError, match="cannot resume"):
        extract_files(CLIP, paths, out, resume=True, workers=0)  # default hop into a hop=3 file

    from mirzoo.sklearn import EmbeddingTransformer

    t = EmbeddingTransformer(model=CLIP, pool="mean", hop=3.0).fit(paths)
    np.testing.assert_allclose(t.transform(paths[:1])[0], m.extract(paths[0], hop=3.0, pool="mean"), atol=1e-5)
    with pytest.raises(ParameterError, match="hop=0"):
        EmbeddingTransformer(model=CLIP, hop=0).fit(paths)

    import mirzoo.hear as hear

    hm = hear.load_model(name=CLIP, scene_hop_ms=3000)
    y = tone_mix(6.0, seed=20)[None]
    scene = np.asarray(hear.get_scene_embeddings(y, hm))[0]
    np.testing.assert_allclose(scene, m.extract(y[0], sr=SR, hop=3.0, pool="mean"), atol=1e-5)
    with pytest.raises(ParameterError, match="frame-level"):
        hear.load_model(name="dense-frame", scene_hop_ms=1000)


def test_cli_hop(tmp_path):
    import soundfile as sf

    from mirzoo.cli import main

    p = tmp_path / "a.wav"
    sf.write(p, tone_mix(6.0, seed=5), SR)
    out = tmp_path / "a.npz"
    assert main(["extract", CLIP, str(p), "-o", str(out), "--hop", "3", "-q"]) == 0
    data = np.load(out)
    np.testing.assert_allclose(data["timestamps"], [1.5, 4.5])
    assert str(data["hop"]) == "3"


@pytest.mark.parametrize("name", ["cnn-tagging", "crnn-tagging"])
def test_folded_model_equals_the_model_and_leaves_weights_alone(name):
    m = mirzoo.load(name)
    before = [np.array(w) for w in m.model.get_weights()]
    pairs = foldable_pairs(m.model)
    assert len(pairs) == len(m.entry["config"]["filters"])  # one per conv block; input_bn stays
    with warnings.catch_warnings():
        # reading the weights must not go through np.array(variable) (numpy 2: a DeprecationWarning per weight)
        warnings.simplefilter("error", DeprecationWarning)
        folded = fold_batch_norm(m.model)
    assert sum(isinstance(l, FoldedBatchNorm) for l in folded.layers) == len(pairs)
    assert not any(
        type(l).__name__ == "BatchNormalization" and l.name != "input_bn" for l in folded.layers
    )
    x = np.stack([m.plan.window(tone_mix(8.0, seed=s), 0) for s in range(3)])
    a = m.model.predict_on_batch(x)
    b = folded.predict_on_batch(x)
    assert sorted(a) == sorted(b)
    for k in a:
        a_k, b_k = np.asarray(a[k]), np.asarray(b[k])
        assert np.abs(a_k - b_k).max() <= 1e-5 * np.abs(a_k).max(), k
    for w0, w1 in zip(before, m.model.get_weights()):
        np.testing.assert_array_equal(w0, w1)  # the loaded model is not changed
    assert m.inference_model is not m.model


def test_fold_uses_the_batch_norm_statistics():
    import keras

    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="c")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, {"out": x})
    bn = model.get_layer("bn")
    for w, v in zip(bn.weights, (rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3))):
        w.assign(v.astype(np.float32))  # gamma, beta, moving mean, moving variance
    folded = fold_batch_norm(model)
    data = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    want = np.asarray(model.predict_on_batch(data)["out"])
    got = np.asarray(folded.predict_on_batch(data)["out"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert folded.get_layer("c").use_bias and not model.get_layer("c").use_bias
    model_nobn = keras.Model(inp, {"out": keras.layers.Conv2D(3, 3)(inp)})
    assert fold_batch_norm(model_nobn) is model_nobn


def test_split_batch_computes_no_padding_and_few_shapes():
    from mirzoo.inference.runner import split_batch

    assert split_batch(10, 16) == [(0, 8), (8, 2)]
    assert split_batch(35, 16) == [(0, 16), (16, 16), (32, 2), (34, 1)]
    assert split_batch(12, 12) == [(0, 12)]
    for n in range(1, 70):
        parts = split_batch(n, 16)
        assert sum(size for _, size in parts) == n
        assert [lo for lo, _ in parts] == list(np.cumsum([0] + [s for _, s in parts])[:-1])
        assert {size for _, size in parts} <= {1, 2, 4, 8, 16}


def test_ten_patches_run_as_eight_and_two(monkeypatch):
    m = mirzoo.load(CLIP)
    shapes = []
    model = m.network_for(m.resolve_layers(None)[1])  # the network extract() runs for the default layer
    original = model.predict_on_batch
    monkeypatch.setattr(model, "predict_on_batch", lambda x: shapes.append(x.shape[0]) or original(x))
    m.extract(tone_mix(30.0, seed=8), sr=SR, hop=3.0)
    assert shapes == [8, 2]


def test_only_the_requested_outputs_are_computed_and_they_equal_the_full_network():
    m = mirzoo.load("tcn-music")
    full = m.inference_model
    emb = m.network_for(["embedding"])
    assert list(emb.output) == ["embedding"]
    assert m.network_for(["embedding"]) is emb  # cached per key set
    pair = m.network_for(["tcn2", "key"])
    assert list(pair.output) == ["tcn2", "key"]
    # the 1152-wide conv1 and every head are outside the embedding network
    heads_in_full = {l.name for l in full.layers} & set(m.heads)
    assert "conv1" in full.output and len(heads_in_full) >= 3
    assert not heads_in_full & {l.name for l in emb.layers}
    x = np.stack([tone_mix(5.0, seed=s) for s in range(2)])
    want = full.predict_on_batch(x)
    for net in (emb, pair):
        got = net.predict_on_batch(x)
        for k in got:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))
    e = m.extract(tone_mix(5.0, seed=0), sr=SR, layer="all")
    assert e.embeddings.shape[1] == sum(m.layers[k] for k in m.all_layers)
    with pytest.raises(mirzoo.UnknownLayerError, match="no output 'nope'"):
        m.network_for(["nope"])
    m.refresh()
    assert m.network_for(["embedding"]) is not emb


def test_one_network_per_output_set_does_not_warn_of_retracing():
    """Each set of outputs asked for has its own network, traced once: TensorFlow's warning that
    predict functions keep retracing (advice for a tf.function made in a loop) is dropped, and only it."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's warning")
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("tensorflow")
    handler = Collect(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        m = mirzoo.load("tcn-music")
        y = tone_mix(3.0, seed=4)
        for head in ("key", "meter", "chord", "tempo", "mode", "tags"):
            assert m.tag(y, sr=SR, head=head, top_k=1)
        m.extract(y, sr=SR, layer="tcn2")
    finally:
        logger.removeHandler(handler)
    # TensorFlow gives that warning at most twice per process, so in a worker where earlier tests spent
    # them this first check has nothing to catch; the filter's installation is checked whatever ran before
    assert not [s for s in seen if "retracing" in s]
    assert sum(isinstance(f, PredictRetracingFilter) for f in logger.filters) == 1  # installed once

    def record(message):
        return logging.LogRecord("tensorflow", logging.WARNING, "x.py", 1, message, None, None)

    quiet = PredictRetracingFilter()
    assert not quiet.filter(record("5 out of the last 5 calls to <function TensorFlowTrainer.make_predict_function."
                                   "<locals>.one_step_on_data_distributed at 0x1> triggered tf.function retracing."))
    assert quiet.filter(record("5 out of the last 5 calls to <function my_step at 0x1> triggered tf.function retracing."))
    assert quiet.filter(record("make_predict_function: something else"))


def test_gpu_benchmark_helpers_and_refusal_without_an_accelerator(capsys, monkeypatch):
    """benchmarks/gpu.py: parity figures against numpy, the device matmul probe, and a clear refusal
    (exit 2, nothing written) on a machine whose backend sees no accelerator."""
    import keras

    from benchmarks import gpu

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((5, 8)).astype(np.float32)
    p = gpu.parity(ref, ref * 1.001)
    assert p["finite"] and p["min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert p["max_rel_diff"] == pytest.approx(0.001, rel=1e-2)
    flipped = ref.copy()
    flipped[2] *= -1.0
    p = gpu.parity(ref, flipped)
    assert p["min_cosine"] == pytest.approx(-1.0, abs=1e-6)
    assert p["max_rel_diff"] == pytest.approx(2 * np.abs(ref[2]).max() / np.abs(ref).max(), rel=1e-2)  # 3 significant digits
    flipped[4, 0] = np.nan
    assert not gpu.parity(ref, flipped)["finite"]
    assert gpu.device_matmul_tflops("float32", n=64, chain=2, tries=1) > 0
    monkeypatch.setattr(gpu.tp, "_gpus", lambda backend: [])
    assert gpu.main(["--models", "cnn-tagging", "--out-dir", "/nonexistent/never-written"]) == 2
    assert f"no accelerator visible to the {keras.backend.backend()} backend" in capsys.readouterr().out


def test_frame_models_give_the_same_frames_with_shared_window_lengths():
    """The plan that keeps window lengths few (the last window ends-aligned and as long as the first,
    windows zero-padded to whole frames) against the earlier per-length plan: the same frames."""
    import dataclasses

    rng = np.random.default_rng(3)
    for name, seconds in (("tcn-music", 75.3), ("dense-frame", 23.71)):
        m = mirzoo.load(name)
        y = rng.standard_normal(int(m.sample_rate * seconds)).astype(np.float32) * 0.1
        assert m.plan.share_lengths and m.plan.pad_constant  # constant-padded constant-Q front-ends
        assert m.plan.count(len(y)) >= 2
        keys = [m.default_layer, m.head_output]
        shared = m.forward([y], keys, 16)[0]
        m.plan = dataclasses.replace(m.plan, share_lengths=False)
        old = m.forward([y], keys, 16)[0]
        for k in keys:
            assert shared[k].shape == old[k].shape
            np.testing.assert_allclose(shared[k], old[k], rtol=1e-5, atol=1e-5 * float(np.abs(old[k]).max()))


def test_frame_lengths_benchmark_child_reports_its_figures():
    from benchmarks import frame_lengths

    r = frame_lengths.one_run("dense-frame", True, 2, 11.0, 12.0, 0)
    assert r["files"] == 2 and 22.0 <= r["audio_seconds"] <= 24.0 and r["wall_s"] > 0
    assert r["window_lengths"] <= 2 and r["peak_rss_gb"] >= r["rss_end_gb"] * 0.9 > 0
    with pytest.raises(SystemExit):
        frame_lengths.main(["--min-seconds", "5", "--max-seconds", "2"])
