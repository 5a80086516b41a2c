"""mirzoo.hear: the HEAR 2021 API, checked the way the HEAR validator checks a submission
(and by the real validator, `hearvalidator`, when it is installed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mirzoo
from conftest import SR, tone_mix
from mirzoo import hear
from mirzoo.errors import AudioError, ParameterError

MODEL = "random-cnn-musical"


@pytest.fixture(scope="module")
def model():
    return hear.load_model(name=MODEL)


def _noise(n, seconds, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (n, int(seconds * SR))).astype(np.float32)


def _check_timestamp_output(emb, ts, n, model):
    """The validator's checks: batch size, shapes, dtypes, embedding size, regular spacing in ms."""
    assert emb.dtype == np.float32 and ts.dtype == np.float32
    assert emb.shape[0] == n and emb.shape[:2] == ts.shape
    assert emb.shape[2] == model.timestamp_embedding_size
    if ts.shape[1] > 1:
        diff = np.diff(ts, axis=1)
        assert np.all(diff > 0)
        assert np.all(np.abs(diff - diff.mean()) < 1e-3)  # regular: the validator allows 1e-3 ms


def test_attributes(model):
    assert isinstance(model.sample_rate, int) and model.sample_rate in (16000, 22050, 44100, 48000)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    assert model.scene_embedding_size == model.timestamp_embedding_size == mirzoo.load(MODEL).layers["embedding"]
    tf = pytest.importorskip("tensorflow")
    assert isinstance(model, tf.Module)  # what the validator and hear-eval-kit look for


@pytest.mark.parametrize("n,seconds", [(4, 2.0), (1, 0.3), (3, 3.74)])
def test_timestamp_embeddings_numpy(model, n, seconds):
    audio = _noise(n, seconds)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    _check_timestamp_output(emb, ts, n, model)
    assert emb.shape == (n, ts.shape[1], model.timestamp_embedding_size)
    # clip models: one patch centred every 250 ms from 0 to the end of the clip, in milliseconds
    expected = np.arange(0.0, seconds * 1000.0 - 1e-6, hear.CLIP_HOP_MS)
    np.testing.assert_allclose(ts[0], expected[: ts.shape[1]], atol=0.1)
    assert ts.shape[1] == len(expected)


def test_timestamp_embedding_is_the_centred_patch(model):
    y = tone_mix(4.0, seed=3)
    emb, ts = hear.get_timestamp_embeddings(y[None, :], model)
    k = 8  # 2000 ms: the patch [0.5 s, 3.5 s)
    assert ts[0, k] == pytest.approx(2000.0)
    ref = model.extractor.extract(y[SR // 2 : SR // 2 + 3 * SR], sr=SR).embeddings[0]
    np.testing.assert_allclose(emb[0, k], ref, rtol=1e-5, atol=1e-5)


def test_scene_embeddings_match_extract(model):
    audio = np.stack([tone_mix(3.74, seed=s) for s in range(3)])
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (3, model.scene_embedding_size) and scene.dtype == np.float32
    ref = model.extractor.extract(list(audio), sr=SR, pool="mean")
    np.testing.assert_allclose(scene, np.stack(ref), rtol=1e-5, atol=1e-5)
    # the same sound alone or in a batch
    np.testing.assert_allclose(hear.get_scene_embeddings(audio[1:2], model)[0], scene[1], rtol=1e-5, atol=1e-5)


def test_tf_tensors_in_and_out(model):
    tf = pytest.importorskip("tensorflow")
    audio = _noise(2, 1.0, seed=5)
    scene_tf = hear.get_scene_embeddings(tf.constant(audio), model)
    assert isinstance(scene_tf, tf.Tensor) and scene_tf.dtype == tf.float32
    np.testing.assert_allclose(scene_tf.numpy(), hear.get_scene_embeddings(audio, model), rtol=1e-6, atol=1e-6)
    emb, ts = hear.get_timestamp_embeddings(tf.constant(audio), model)
    assert isinstance(emb, tf.Tensor) and isinstance(ts, tf.Tensor) and ts.dtype == tf.float32


def test_torch_tensors_in_and_out(model):
    torch = pytest.importorskip("torch")  # in the test extras (torch==2.13.0, a CPU wheel)
    audio = _noise(2, 1.0, seed=5)
    emb_np, ts_np = hear.get_timestamp_embeddings(audio, model)
    emb_t, ts_t = hear.get_timestamp_embeddings(torch.from_numpy(audio), model)
    assert isinstance(emb_t, torch.Tensor) and emb_t.dtype == torch.float32 and ts_t.dtype == torch.float32
    np.testing.assert_allclose(emb_t.numpy(), emb_np, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ts_t.numpy(), ts_np)
    scene = hear.get_scene_embeddings(torch.from_numpy(audio), model)
    assert isinstance(scene, torch.Tensor) and tuple(scene.shape) == (2, model.scene_embedding_size)


def test_frame_model_timestamps_are_frames():
    model = hear.load_model(name="dense-frame")
    assert model.hop_ms == pytest.approx(20.0)
    emb, ts = hear.get_timestamp_embeddings(_noise(2, 1.0), model)
    _check_timestamp_output(emb, ts, 2, model)
    assert ts.shape == (2, 51) and ts[0, 1] == pytest.approx(20.0)
    assert hear.get_scene_embeddings(_noise(2, 1.0), model).shape == (2, model.scene_embedding_size)
    with pytest.raises(ParameterError, match="frame-level"):
        hear.load_model(name="dense-frame", hop_ms=50)


def test_load_saved_directory_and_options(tmp_path):
    saved = mirzoo.load(MODEL).save(tmp_path / "saved")
    model = hear.load_model(str(saved), pool="mean+std", hop_ms=500)
    assert model.scene_embedding_size == 2 * model.timestamp_embedding_size
    emb, ts = hear.get_timestamp_embeddings(_noise(1, 2.0), model)
    assert ts[0].tolist() == [0.0, 500.0, 1000.0, 1500.0]
    with pytest.raises(ParameterError, match="not a directory"):
        hear.load_model(str(tmp_path / "nope.h5"))
    with pytest.raises(ParameterError, match="hop_ms"):
        hear.load_model(name=MODEL, hop_ms=0)


def test_bad_audio(model):
    with pytest.raises(AudioError, match=r"\[n_sounds, n_samples\]"):
        hear.get_scene_embeddings(np.zeros(SR, np.float32), model)
    with pytest.raises(AudioError, match="NaN"):
        hear.get_scene_embeddings(np.full((1, SR), np.nan, np.float32), model)
    with pytest.raises(AudioError, match="dtype"):
        hear.get_scene_embeddings(np.zeros((1, SR), np.int16), model)
    with pytest.raises(ParameterError, match="load_model"):
        hear.get_scene_embeddings(np.zeros((1, SR), np.float32), object())
    with pytest.raises(ParameterError, match="list"):
        hear.get_scene_embeddings([[0.0] * 10], model)
    empty = hear.get_scene_embeddings(np.zeros((0, SR), np.float32), model)
    assert empty.shape == (0, model.scene_embedding_size)


def test_real_hear_validator(tmp_path, capsys):
    """hearvalidator 2021.0.2 on a saved model (.ci/run: pip install --no-deps hearvalidator==2021.0.2)."""
    validate = pytest.importorskip("hearvalidator.validate")
    saved = mirzoo.load(MODEL).save(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="We suggest a interval")  # 250 ms hop: the default
        validate.ValidateModel("mirzoo.hear", str(saved))()  # raises ModelError on any failure
    out = capsys.readouterr().out
    assert "Checking get_scene_embeddings" in out and "Received embedding of shape: (8," in out
