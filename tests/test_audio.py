"""Audio boundary: decoding, mixing, PCM scaling, resampling and the errors for bad input."""

import numpy as np
import pytest
import soundfile as sf

import mirzoo
from mirzoo.audio import load_audio, prepare_audio

from conftest import SR, tone_mix, traced_peak


def _peak_hz(y, sr):
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return np.fft.rfftfreq(y.size, 1 / sr)[np.argmax(spec)]


@pytest.mark.parametrize("fmt,subtype,sr", [("WAV", "PCM_16", 16000), ("FLAC", "PCM_24", 44100), ("OGG", "VORBIS", 22050)])
def test_load_formats_resample_to_target(tmp_path, fmt, subtype, sr):
    t = np.arange(sr) / sr
    y = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, np.stack([y, y], axis=1), sr, format=fmt, subtype=subtype)
    out = load_audio(path, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 16000) <= 2
    assert abs(_peak_hz(out, 16000) - 440.0) < 2.0
    assert 0.4 < np.abs(out).max() < 0.6


def test_load_streams_long_file_in_blocks(tmp_path, monkeypatch):
    import mirzoo.audio as audio

    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 1000)  # many blocks, including a short last one
    y = tone_mix(2.3, sr=44100, seed=3)
    sf.write(tmp_path / "x.wav", y, 44100, subtype="FLOAT")
    streamed = load_audio(tmp_path / "x.wav", SR)
    import soxr

    whole = soxr.resample(y, 44100, SR, quality="HQ")
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_int_pcm_scaled_like_float():
    y = tone_mix(1.0, seed=1)
    pcm16 = np.round(y * 32767).astype(np.int16)
    np.testing.assert_allclose(prepare_audio(pcm16, SR, SR), y, atol=1e-4)
    pcm32 = (y.astype(np.float64) * 2**31).astype(np.int32)
    np.testing.assert_allclose(prepare_audio(pcm32, SR, SR), y, atol=1e-6)
    u8 = np.round(y * 127 + 128).astype(np.uint8)
    np.testing.assert_allclose(prepare_audio(u8, SR, SR), y, atol=1e-2)


def test_multichannel_either_orientation_is_averaged():
    left, right = tone_mix(1.0, seed=1), tone_mix(1.0, seed=2)
    expected = (left + right) / 2
    np.testing.assert_allclose(prepare_audio(np.stack([left, right]), SR, SR), expected, atol=1e-7)
    np.testing.assert_allclose(prepare_audio(np.stack([left, right], axis=1), SR, SR), expected, atol=1e-7)
    # exactly numpy's float64 mean over the channel axis, for either orientation and channel count
    for channels in (2, 3, 6):
        y = np.random.default_rng(channels).uniform(-0.3, 0.3, (channels, 20_000)).astype(np.float32)
        want = y.mean(axis=0, dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(prepare_audio(y, SR, SR), want)
        np.testing.assert_array_equal(prepare_audio(np.ascontiguousarray(y.T), SR, SR), want)


@pytest.mark.parametrize("channels", [2, 6, 9])
def test_multichannel_file_is_the_float32_mean_of_its_channels(tmp_path, channels):
    """Files are downmixed block by block (longer than one block here) to the float32 mean of the
    channels: exactly for up to 7 channels, within float32 rounding beyond."""
    rng = np.random.default_rng(channels)
    y = (0.2 * rng.standard_normal((300_000, channels))).astype(np.float32)
    path = tmp_path / "multi.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    out = load_audio(path, SR)
    expected = y.mean(axis=1, dtype=np.float32)
    if channels < 8:
        np.testing.assert_array_equal(out, expected)
    else:
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_resampling_keeps_pitch():
    sr = 44100
    y = (0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(sr) / sr)).astype(np.float32)
    out = prepare_audio(y, sr, SR)
    assert out.size == SR
    assert abs(_peak_hz(out, SR) - 1000.0) < 2.0


@pytest.mark.parametrize(
    "y,sr,match",
    [
        (np.zeros(0, np.float32), SR, "empty"),
        (np.array([0.0, np.nan, 0.1], np.float32), SR, "non-finite"),
        (np.array([0.0, np.inf], np.float32), SR, "non-finite"),
        (np.ones(100, np.float32), None, "sr=None"),
        (np.ones(100, np.float32), 0, "sr=0"),
        (np.ones(100, np.float32), -8000, "sr=-8000"),
        (np.ones(100, np.float32), 16000.5, "whole number"),
        (np.ones(100, np.float32), "16k", "sr='16k'"),
        (np.ones(100, np.complex64), SR, "complex64"),
        (np.ones(100, bool), SR, "bool"),
        (np.ones((2, 3, 100), np.float32), SR, r"shape \(2, 3, 100\)"),
    ],
)
def test_bad_arrays_raise_parameter_errors(y, sr, match):
    with pytest.raises(mirzoo.ParameterError, match=match):
        prepare_audio(y, sr, SR)


def test_file_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(mirzoo.AudioFileError, match="nope.wav"):
        load_audio(missing, SR)
    with pytest.raises(FileNotFoundError.__mro__[1]):  # AudioFileError is an OSError
        load_audio(missing, SR)
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(mirzoo.AudioFileError, match="garbage.wav"):
        load_audio(bad, SR)
    with pytest.raises(mirzoo.AudioFileError, match="directory"):
        load_audio(tmp_path, SR)
    silent_empty = tmp_path / "empty.wav"
    sf.write(silent_empty, np.zeros(0, np.float32), SR)
    with pytest.raises(mirzoo.AudioError, match="empty"):
        load_audio(silent_empty, SR)


def test_long_file_decodes_into_one_buffer_of_its_size(tmp_path, monkeypatch):
    """A header's frame count is trusted as far as the file size makes plausible: one buffer, no doubling."""
    import mirzoo.audio as ma

    monkeypatch.setattr(ma, "_MAX_PREALLOC", 4096)  # as if the file were far longer than the fixed bound
    y0 = tone_mix(120.0, seed=5)
    p = tmp_path / "long.flac"
    sf.write(p, y0, SR, format="FLAC")
    y, peak = traced_peak(ma.load_audio, p, SR)
    assert y.size == y0.size
    np.testing.assert_allclose(y, y0, atol=2.0 / 32768)  # 16-bit FLAC
    assert peak < 1.3 * y.nbytes, f"decoding peaked at {peak / y.nbytes:.2f}x the signal"


def test_validation_makes_no_signal_sized_temporary():
    from mirzoo.audio import validate_audio
    from mirzoo.errors import AudioError

    y = np.random.default_rng(0).uniform(-1, 1, 4_000_000).astype(np.float32)
    checked, peak = traced_peak(validate_audio, y)
    assert checked is y and peak < 0.05 * y.nbytes
    for bad, count in ((np.nan, 1), (np.inf, 1), (-np.inf, 1)):
        z = y.copy()
        z[123] = bad
        with pytest.raises(AudioError, match=f"contains {count} non-finite sample"):
            validate_audio(z)
    z = y.copy()
    z[5] = -3e6
    with pytest.raises(AudioError, match="peak amplitude 3e\\+06"):
        validate_audio(z)


@pytest.mark.parametrize("rate", [2 ** (2 / 36), 2 ** (-1 / 36), 1.5, 0.75])
def test_change_rate_plays_faster_like_a_tape_and_streams_the_same(rate):
    from mirzoo.audio import change_rate, rate_changed_blocks

    t = np.arange(2 * SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    y[SR // 2] += 0.4  # a click half a second in
    fast = change_rate(y, SR, rate)
    assert fast.dtype == np.float32 and abs(fast.size - y.size / rate) <= 1
    assert abs(_peak_hz(fast, SR) - 440.0 * rate) < 2.0  # pitch scaled by the rate ...
    click = np.argmax(np.abs(np.convolve(fast, [1.0, -2.0, 1.0], mode="same")))
    assert abs(click / SR - 0.5 / rate) < 0.003
    blocks = [y[i:i + 7919] for i in range(0, y.size, 7919)]
    streamed = np.concatenate(list(rate_changed_blocks(iter(blocks), SR, rate)))
    np.testing.assert_allclose(streamed, fast, atol=1e-6)


def test_change_rate_leaves_rate_one_alone_and_names_bad_rates():
    from mirzoo.audio import change_rate, rate_changed_blocks

    y = tone_mix(0.5)
    assert change_rate(y, SR, 1.0) is y
    blocks = [y[:100], y[100:]]
    assert [b is o for b, o in zip(rate_changed_blocks(blocks, SR, 1), blocks)] == [True, True]
    for bad in (0.0, -1.0, 3.0, float("nan"), True, "2"):
        with pytest.raises(mirzoo.ParameterError, match=r"rate=.*: expected a playback-rate factor between 0.5 and 2"):
            change_rate(y, SR, bad)
