"""Extractor behaviour: windows, timestamps, batching, determinism, pooling, tags and errors."""

import re

import numpy as np
import pytest
import soundfile as sf

import mirzoo
from mirzoo.embeddings import Embeddings
from mirzoo.zoo.manifest import get_spec

from conftest import SR, tone_mix

MODELS = mirzoo.list_models()


def _close(a, b, tol):
    """|a - b| <= tol, relative to the embedding scale when that exceeds 1 (untrained nets run hot)."""
    scale = max(1.0, float(np.abs(a).max()))
    assert np.abs(a - b).max() <= tol * scale, (np.abs(a - b).max(), scale)


@pytest.mark.parametrize("name", MODELS)
def test_same_clip_alone_or_in_a_batch(name):
    m = mirzoo.load(name)
    clip = tone_mix(5.0, seed=11)
    others = [tone_mix(s, seed=i, freqs=(110.0 * i,)) for i, s in enumerate((2.0, 9.5, 0.7), start=2)]
    alone = m.extract(clip, sr=SR, layer="all").embeddings
    batch = m.extract(others[:2] + [clip] + others[2:], sr=SR, layer="all")
    assert isinstance(batch, list) and len(batch) == 4
    _close(alone, batch[2].embeddings, 1e-5)
    assert alone.shape == batch[2].embeddings.shape


def test_frame_model_windowed_equals_whole_file():
    m = mirzoo.load("dense-frame")
    y = tone_mix(9.0, seed=12)
    chunked = m.extract(y, sr=SR).embeddings
    original = m.chunk_frames
    try:
        m.chunk_frames = 10**6  # the whole file in one piece
        whole = m.extract(y, sr=SR).embeddings
        m.chunk_frames = 37  # many odd-sized chunks
        small = m.extract(y, sr=SR).embeddings
    finally:
        m.chunk_frames = original
    assert chunked.shape == whole.shape == small.shape == (1 + len(y) // 320, 256)
    _close(chunked, whole, 1e-5)
    _close(small, whole, 1e-5)


def test_clip_windows_and_padding():
    m = mirzoo.load("random-cnn")
    short = m.extract(tone_mix(0.5, seed=1), sr=SR)
    assert short.embeddings.shape == (1, 960)
    np.testing.assert_allclose(short.timestamps, [1.5])
    exact = m.extract(tone_mix(3.0, seed=1), sr=SR)
    assert exact.embeddings.shape[0] == 1
    longer = m.extract(tone_mix(3.01, seed=1), sr=SR)
    assert longer.embeddings.shape[0] == 2
    # a window's embedding depends only on its samples: the first patch is shared
    _close(exact.embeddings[0], longer.embeddings[0], 1e-5)


def test_pooling_and_result_type():
    m = mirzoo.load("random-cnn-musical")
    y = tone_mix(8.0, seed=2)
    e = m.extract(y, sr=SR)
    assert isinstance(e, Embeddings) and e.layer == "embedding" and e.model == "random-cnn-musical"
    assert e.duration == pytest.approx(8.0)
    np.testing.assert_allclose(m.extract(y, sr=SR, pool="mean"), e.embeddings.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(m.extract(y, sr=SR, pool="max"), e.embeddings.max(axis=0), rtol=1e-6)
    ms = m.extract(y, sr=SR, pool="mean+std")
    assert ms.shape == (2 * e.embeddings.shape[1],)
    np.testing.assert_allclose(ms[e.embeddings.shape[1]:], e.embeddings.std(axis=0), rtol=1e-5, atol=1e-6)
    pooled_list = m.extract([y, y[: SR * 4]], sr=SR, pool="mean")
    assert isinstance(pooled_list, list) and pooled_list[0].shape == (288,)


def test_paths_arrays_and_formats_agree(audio_dir):
    m = mirzoo.load("random-cnn")
    path = audio_dir / "a.wav"
    from_path = m.extract(str(path))
    assert from_path.source == str(path)
    y, sr = sf.read(path, dtype="int16")
    from_pcm = m.extract(y, sr=sr)
    _close(from_path.embeddings, from_pcm.embeddings, 1e-5)
    stereo = np.stack([y, y], axis=1)
    _close(from_path.embeddings, m.extract(stereo, sr=sr).embeddings, 1e-5)
    files = sorted(str(p) for p in audio_dir.rglob("*") if p.is_file())
    results = m.extract(files)
    assert [r.source for r in results] == files
    assert all(r.embeddings.shape[1] == 960 for r in results)


def test_resampled_input_is_close_to_native_rate():
    # random-cnn's clip vectors of unrelated sounds already correlate > 0.95, so the check is relative:
    # each clip at 44.1 kHz must land nearer its own 16 kHz version than any other clip does
    m = mirzoo.load("random-cnn")
    chords = [(220.0, 330.0, 440.0), (262.0, 392.0, 523.0), (196.0, 294.0), (147.0, 370.0),
              (330.0, 415.0, 494.0), (110.0, 587.0)]
    native = np.stack(m.extract([tone_mix(4.0, sr=16000, seed=5, freqs=f) for f in chords], sr=16000, pool="mean"))
    resampled = np.stack(m.extract([tone_mix(4.0, sr=44100, seed=5, freqs=f) for f in chords], sr=44100, pool="mean"))
    # distance[i, j]: 44.1 kHz clip j against 16 kHz clip i, relative to the size of clip i's vector
    distance = np.linalg.norm(native[:, None] - resampled[None], axis=2) / np.linalg.norm(native, axis=1)[:, None]
    same = np.diag(distance)
    other = np.where(np.eye(len(chords), dtype=bool), np.inf, distance).min(axis=1)
    assert np.all(same < 0.1), same  # measured 0.052-0.056
    assert np.all(same < 0.5 * other), (same, other)  # nearest other clip: 0.12-0.15


def test_tag_and_predict():
    m = mirzoo.load("cnn-tagging")
    clip = mirzoo.example_audio()
    probs = m.predict(clip)
    assert probs.shape == (len(m.labels),) and np.all((probs >= 0) & (probs <= 1))
    tags = m.tag(clip, top_k=3)
    assert len(tags) == 3 and all(t in m.labels for t, _ in tags)
    assert [p for _, p in tags] == sorted((p for _, p in tags), reverse=True)
    assert tags[0][1] == pytest.approx(float(probs.max()), abs=1e-6)
    assert all(p >= 0.5 for _, p in m.tag(clip, top_k=None, threshold=0.5))
    per_patch = m.predict(clip, pool=None)
    assert per_patch.shape[1] == len(m.labels) and per_patch.shape[0] > 1
    with pytest.raises(mirzoo.ParameterError, match="no output head"):
        mirzoo.load("random-cnn").tag(clip)
    with pytest.raises(mirzoo.ParameterError, match="top_k=0"):
        m.tag(clip, top_k=0)
    # a head another model of the zoo has is named with that model; an unknown head with none
    with_key = [n for n in mirzoo.list_models() if "key" in get_spec(n).heads]
    assert with_key == ["tcn-music"]
    heads = re.escape(str(list(m.heads)))
    with pytest.raises(mirzoo.ParameterError, match=rf"head='key' is not one of model 'cnn-tagging''s heads {heads}; "
                                                    r"the zoo's models with a 'key' head: \['tcn-music'\]$"):
        m.tag(clip, head="key")
    with pytest.raises(mirzoo.ParameterError, match=rf"head='nope' is not one of model 'cnn-tagging''s heads {heads}$"):
        m.predict(clip, head="nope")


def test_extract_errors():
    m = mirzoo.load("random-cnn")
    with pytest.raises(mirzoo.UnknownLayerError, match=r"layer='block9'.*block1.*embedding.*all"):
        m.extract(tone_mix(1.0), sr=SR, layer="block9")
    with pytest.raises(mirzoo.ParameterError, match="pool='median'"):
        m.extract(tone_mix(1.0), sr=SR, pool="median")
    with pytest.raises(mirzoo.ParameterError, match="sr=None"):
        m.extract(tone_mix(1.0))
    with pytest.raises(mirzoo.ParameterError, match="empty list"):
        m.extract([])
    with pytest.raises(mirzoo.ParameterError, match="batch_size=0"):
        m.extract(tone_mix(1.0), sr=SR, batch_size=0)
    with pytest.raises(mirzoo.ParameterError, match="type int"):
        m.extract(42)
    with pytest.raises(mirzoo.AudioFileError, match="missing.flac"):
        m.extract("missing.flac")
    with pytest.raises(mirzoo.AudioError, match="non-finite"):
        m.extract(np.full(SR, np.nan, np.float32), sr=SR)


def test_long_audio_is_windowed_in_bounded_batches(monkeypatch):
    m = mirzoo.load("cnn-tagging")
    seen = []
    network = m.network_for(m.resolve_layers(None)[1])  # the network that runs (BN folded, default layer)
    original = network.predict_on_batch

    def spy(x):
        seen.append(x.shape)
        return original(x)

    monkeypatch.setattr(network, "predict_on_batch", spy)
    y = tone_mix(60.0, seed=3)
    e = m.extract(y, sr=SR, batch_size=8)
    assert e.embeddings.shape[0] == 1 + int(np.ceil((60.0 - 3.0) / 1.5))
    assert max(s[0] for s in seen) == 8 and all(s[1] == 48000 for s in seen)
