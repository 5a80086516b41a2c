"""Long files are never decoded whole: windows are cut from the decoded blocks as they arrive
(Runner.run_inputs / forward_stream), with the same outputs as decoding the file first."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import mirzoo
import mirzoo.audio
import mirzoo.inference.runner as runner
from conftest import SR, tone_mix


def _write(tmp_path, name, seconds, sr, stereo=False, seed=0):
    y = tone_mix(seconds, sr=sr, seed=seed)
    if stereo:
        y = np.stack([y, 0.5 * tone_mix(seconds, sr=sr, seed=seed + 1)], axis=1)
    path = tmp_path / name
    sf.write(path, y, sr)
    return str(path)


def _streamed(monkeypatch, block_frames=7919):
    """Stream every file (threshold 1 sample), in small odd-sized blocks, and fail if a file is decoded whole."""
    monkeypatch.setattr(runner, "STREAM_MIN_SAMPLES", 1)
    monkeypatch.setattr(mirzoo.audio, "_BLOCK_FRAMES", block_frames)

    def refuse(*args, **kwargs):
        raise AssertionError("a long file was decoded whole")

    monkeypatch.setattr(runner, "load_audio", refuse)


@pytest.mark.parametrize("name, hops", [("random-cnn-musical", [None, 3.0, 4.1, 0.7]), ("dense-frame", [None])])
@pytest.mark.parametrize("rate, stereo", [(SR, False), (22050, True)])
def test_streamed_file_equals_the_file_decoded_whole(tmp_path, monkeypatch, name, hops, rate, stereo):
    m = mirzoo.load(name)
    path = _write(tmp_path, "long.flac" if stereo else "long.wav", 23.37, rate, stereo)
    want = {hop: m.extract(path, hop=hop) for hop in hops}
    want_all = m.extract(path, layer="all", pool="mean+std")
    _streamed(monkeypatch)
    for hop in hops:
        got = m.extract(path, hop=hop, batch_size=4)
        assert got.embeddings.shape == want[hop].embeddings.shape, hop
        np.testing.assert_allclose(got.embeddings, want[hop].embeddings, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got.timestamps, want[hop].timestamps)
        assert got.duration == want[hop].duration and got.source == path
    np.testing.assert_allclose(m.extract(path, layer="all", pool="mean+std"), want_all, rtol=1e-5, atol=1e-5)


def test_frame_model_long_chunks_and_analysis_stream(tmp_path, monkeypatch):
    """tcn-music: 60-s chunks with a 283-frame margin; a 75-s file has a full chunk and a tail."""
    m = mirzoo.load("tcn-music")
    path = _write(tmp_path, "long.wav", 75.3, SR, seed=4)
    want = m.extract(path, layer="key")
    want_analysis = m.analyze(path).to_dict()
    _streamed(monkeypatch, block_frames=1 << 15)
    got = m.extract(path, layer="key")
    assert got.embeddings.shape == want.embeddings.shape == (1 + int(75.3 * SR) // m.hop_length, 24)
    np.testing.assert_allclose(got.embeddings, want.embeddings, rtol=1e-5, atol=1e-5)
    assert m.analyze(path).to_dict() == want_analysis


def test_list_with_long_and_short_inputs_keeps_order_and_names_the_bad_item(tmp_path, monkeypatch):
    m = mirzoo.load("random-cnn-musical")
    long_path = _write(tmp_path, "long.wav", 12.0, SR, seed=1)
    short = tone_mix(2.0, seed=2)
    want = m.extract([short, long_path], sr=SR)
    monkeypatch.setattr(runner, "STREAM_MIN_SAMPLES", 10 * SR)  # the 12-s file streams, the array does not
    got = m.extract([short, long_path], sr=SR)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.embeddings, w.embeddings, rtol=1e-5, atol=1e-5)
    assert got[1].source == long_path and got[0].source is None
    bad = tone_mix(12.0, seed=3)
    bad[int(7.5 * SR)] = np.nan
    bad_path = tmp_path / "bad.wav"
    sf.write(bad_path, bad, SR, subtype="FLOAT")
    with pytest.raises(mirzoo.AudioError, match=r"audio\[1\]: audio file '.*bad.wav' \(the block at .* s\) contains 1 non-finite"):
        m.extract([short, str(bad_path)], sr=SR)


def test_file_stream_blocks_concatenate_to_load_audio(tmp_path, monkeypatch):
    path = _write(tmp_path, "a.flac", 9.1, 44100, stereo=True, seed=5)
    whole = mirzoo.audio.load_audio(path, SR)
    monkeypatch.setattr(mirzoo.audio, "_BLOCK_FRAMES", 4099)
    stream = mirzoo.audio.FileStream(path, SR)
    assert abs(stream.expected_samples - whole.shape[0]) <= 1
    blocks = list(stream)
    assert len(blocks) > 10 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    with pytest.raises(mirzoo.AudioFileError, match="not found"):
        mirzoo.audio.FileStream(tmp_path / "missing.wav", SR)


def test_streamed_frame_model_with_an_end_window_reaching_back_past_a_full_chunk(tmp_path, monkeypatch):
    """dense-frame (500-frame chunks, 22-frame margin): 3009 frames, so the sixth chunk's margin passes
    the end and its window, ending at the end, spans as many frames as the windows between (starting
    before that chunk's own margin); the stream must still hold the audio it reaches back to."""
    m = mirzoo.load("dense-frame")
    plan = m.plan
    n = 3008 * m.hop_length + 5
    chunks = plan.chunks(n)
    assert len(chunks) == 7 and chunks[-2].right == chunks[-1].right == n
    assert plan.n_frames(chunks[-2].right - chunks[-2].left) == plan.chunk_frames + 2 * plan.margin_frames + 1
    assert 0 < chunks[-2].left < (2500 - plan.margin_frames) * m.hop_length
    path = _write(tmp_path, "edge.wav", (n + 0.5) / m.sample_rate, m.sample_rate, seed=5)
    want = m.extract(path)
    _streamed(monkeypatch, block_frames=4099)
    got = m.extract(path)
    assert got.embeddings.shape == want.embeddings.shape == (3009, m.layers[m.default_layer])
    np.testing.assert_allclose(got.embeddings, want.embeddings, rtol=1e-5, atol=1e-5)
