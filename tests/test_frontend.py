"""Front-end layers against librosa references, per-example behaviour, options and errors."""

import keras
import librosa
import numpy as np
import pytest

import mirzoo
from mirzoo.nn.frontend import Chroma, ConstantQ, MelSpectrogram, STFTMagnitude, build_frontend

from conftest import tone_mix

SR = 16000


def _librosa_logmel(y, sr, n_fft, hop, n_mels, fmin=0.0, fmax=None, top_db=80.0):
    S = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=fmin, fmax=fmax,
        htk=True, norm=None, center=True, pad_mode="reflect", power=2.0,
    )
    return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=top_db).T


@pytest.mark.parametrize(
    "sr,n_fft,hop,n_mels,fmin,fmax",
    [(16000, 512, 256, 96, 0.0, None), (22050, 1024, 512, 128, 30.0, 8000.0), (16000, 2048, 320, 64, 50.0, 7600.0)],
)
def test_logmel_matches_librosa_within_0p1_db(sr, n_fft, hop, n_mels, fmin, fmax):
    rng = np.random.default_rng(0)
    signals = [tone_mix(2.0, sr=sr, seed=1), (0.2 * rng.standard_normal(sr * 2)).astype(np.float32)]
    layer = MelSpectrogram(sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=fmin, fmax=fmax)
    for y in signals:
        ours = np.asarray(layer(y[None]))[0]
        ref = _librosa_logmel(y, sr, n_fft, hop, n_mels, fmin, fmax)
        assert ours.shape == ref.shape == (layer.n_frames(y.size), n_mels)
        assert np.max(np.abs(ours - ref)) < 0.1


def test_logmel_top_db_is_per_example_not_per_batch():
    loud = tone_mix(1.0, seed=1)
    quiet = 1e-3 * tone_mix(1.0, seed=2)
    layer = MelSpectrogram(sample_rate=SR, n_fft=512, hop_length=256, n_mels=64, top_db=60.0)
    alone = np.asarray(layer(quiet[None]))[0]
    batched = np.asarray(layer(np.stack([loud, quiet])))[1]
    # 1e-3 dB: float32 rounding of a batched convolution differs from a single one by ~1e-4 dB near
    # -90 dB on some oneDNN builds; clipping against the batch max would move bins by tens of dB
    np.testing.assert_allclose(batched, alone, atol=1e-3)
    # and the clipping really happened relative to the quiet clip's own max
    assert alone.min() == pytest.approx(alone.max() - 60.0, abs=1e-3)
    # a batch-max clip (keras.layers.MelSpectrogram's behaviour) would have clipped far higher
    assert alone.max() < np.asarray(layer(loud[None])).max() - 40


def test_stft_magnitude_matches_librosa():
    y = tone_mix(1.5, seed=4)
    layer = STFTMagnitude(sample_rate=SR, n_fft=1024, hop_length=256, pad_mode="reflect", compression=None)
    ours = np.asarray(layer(y[None]))[0]
    ref = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, center=True, pad_mode="reflect")).T
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-4 * ref.max())


def test_stft_fmax_truncates_bins():
    layer = STFTMagnitude(sample_rate=SR, n_fft=1024, hop_length=256, fmax=2000.0)
    assert layer.n_bins == int(2000 * 1024 / SR) + 1


def test_chroma_matches_librosa_chroma_stft():
    y = tone_mix(2.0, seed=5, freqs=(261.63, 329.63, 392.0))
    layer = Chroma(sample_rate=SR, n_fft=2048, hop_length=512)
    ours = np.asarray(layer(y[None]))[0]
    ref = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=2048, hop_length=512, tuning=0.0).T
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    # C, E and G dominate a C-major triad
    assert set(np.argsort(ours.mean(axis=0))[-3:]) == {0, 4, 7}


def test_cqt_approximates_librosa_cqt():
    y = tone_mix(3.0, seed=6)
    layer = ConstantQ(sample_rate=SR, hop_length=320, compression=None)
    ours = np.asarray(layer(y[None]))[0]
    ref = np.abs(librosa.cqt(y, sr=SR, hop_length=320, n_bins=84, fmin=librosa.note_to_hz("C1"))).T
    assert ours.shape == ref.shape
    # librosa computes the CQT by recursive downsampling: agreement is close, not exact
    mask = ref > ref.max() * 1e-3
    db = 20 * np.log10(ours[mask] / ref[mask])
    assert np.median(np.abs(db)) < 0.5
    assert np.corrcoef(ours[mask], ref[mask])[0, 1] > 0.99
    # a pure A4 (MIDI 69) peaks in the A4 bin: C1 is MIDI 24, so bin 45
    a4 = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(SR) / SR)).astype(np.float32)
    assert int(np.argmax(np.asarray(layer(a4[None]))[0].mean(axis=0))) == 45


@pytest.mark.parametrize("n_bins, bins_per_octave, filter_scale, max_share",
                         [(84, 12, 1.0, 0.3), (50, 12, 0.8, 0.5), (72, 24, 1.0, 0.6)])
def test_full_rate_cqt_skips_only_zero_kernel_rows(n_bins, bins_per_octave, filter_scale, max_share):
    """Each octave's convolution covers exactly its filters' non-zero rows, and the result equals the
    one convolution with the full-length kernel (the same sums without the zero products)."""
    from keras import ops

    layer = ConstantQ(sample_rate=SR, hop_length=320, n_bins=n_bins, bins_per_octave=bins_per_octave,
                      filter_scale=filter_scale, compression=None)
    full = layer.full_kernel()[:, 0, :]
    covered = np.zeros(full.shape, bool)
    for (offset, kernel, width), lo in zip(layer._trimmed, range(0, n_bins, bins_per_octave)):
        cols = np.r_[lo : lo + width, n_bins + lo : n_bins + lo + width]
        np.testing.assert_array_equal(kernel[:, 0, :], full[offset : offset + kernel.shape[0], cols])
        covered[offset : offset + kernel.shape[0], cols] = True
    assert not np.any(full[~covered])  # nothing left out is non-zero
    assert sum(width for _, _, width in layer._trimmed) == n_bins
    # 7 octaves (dense-frame's front-end): 3.5x fewer multiply-adds; fewer octaves save less
    assert layer.flops_per_frame() < max_share * 2 * full.size
    y = tone_mix(4.0, seed=9)[None]
    pad = layer.kernel_length // 2
    x = ops.pad(ops.expand_dims(ops.convert_to_tensor(y), -1), [[0, 0], [pad, layer.kernel_length - pad], [0, 0]])
    want = np.asarray(ops.conv(x, ops.convert_to_tensor(layer.full_kernel()), strides=layer.hop_length, padding="valid"))
    got = np.asarray(layer._frames(x))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def _held_arrays(obj) -> int:
    """Bytes of the numpy arrays an object's attributes hold (through lists, tuples and dicts)."""
    def size(v):
        if isinstance(v, np.ndarray):
            return v.nbytes
        if isinstance(v, (list, tuple)):
            return sum(size(x) for x in v)
        if isinstance(v, dict):
            return sum(size(x) for x in v.values())
        return 0
    return sum(size(v) for v in vars(obj).values())


@pytest.mark.parametrize("octave_kernels", [False, True])
def test_cqt_keeps_only_the_kernels_it_convolves_with(octave_kernels):
    """The full-rate kernel is the source of the per-octave ones, not kept beside them (tcn-music's
    front-end held 72 MB of it), and its length still sets the padding and framing."""
    from mirzoo.nn import filters

    kw = dict(sample_rate=SR, hop_length=320, fmin=55.0, n_bins=216, bins_per_octave=36)
    layer = ConstantQ(octave_kernels=octave_kernels, compression=None, **kw)
    freqs = 55.0 * 2.0 ** (np.arange(216) / 36)
    bank, _ = filters.wavelet(freqs, sr=SR, norm=1)
    assert layer.kernel_length == bank.shape[1]
    full = layer.full_kernel()
    assert full.shape == (bank.shape[1], 1, 2 * 216) and layer.n_bins == 216
    assert _held_arrays(layer) < 0.5 * full.nbytes  # the trimmed octaves: ~1/3 of it; before: 3x
    y = layer(tone_mix(3.0, seed=4)[None])
    assert tuple(y.shape) == (1, layer.n_frames(3 * SR), 216)


@pytest.mark.parametrize("length, stride, start, channels",
                         [(8478, 320, 0, 24), (132, 320, 4173, 24), (530, 320, 319, 6), (33, 8, 5, 1), (512, 256, 0, 3)])
def test_blocked_conv_equals_the_strided_one_channel_conv(length, stride, start, channels):
    """Blocks of `stride` samples as channels: the same sums as the strided convolution from
    `start`, for kernels longer and shorter than the stride and starts between blocks."""
    from keras import ops

    from mirzoo.nn.frontend import blocked_conv, blocked_kernel

    rng = np.random.default_rng(length + start)
    kernel = rng.standard_normal((length, 1, channels)).astype(np.float32)
    x = rng.standard_normal((2, start + length + 37 * stride + 11, 1)).astype(np.float32)
    want = np.asarray(ops.conv(x[:, start:], kernel, strides=stride, padding="valid"))
    q, blocked = blocked_kernel(kernel, stride, start)
    assert blocked.shape[1:] == (stride, channels) and q == start // stride
    assert blocked.shape[0] * stride >= length + start % stride
    got = np.asarray(blocked_conv(x, blocked, q, stride, want.shape[1]))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    fewer = np.asarray(blocked_conv(x, blocked, q, stride, 5))
    assert fewer.shape == (2, 5, channels)
    assert np.abs(fewer - got[:, :5]).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("octave_kernels", [False, True])
def test_cqt_blocked_and_strided_framing_agree(octave_kernels):
    """`ConstantQ.blocked_frames` (on by default on TensorFlow only) changes how the
    convolutions run, never what they compute; signals of odd lengths included."""
    layer = ConstantQ(sample_rate=SR, hop_length=320, fmin=55.0, n_bins=72, bins_per_octave=12,
                      octave_kernels=octave_kernels, compression=None)
    assert layer.blocked_frames == (keras.backend.backend() == "tensorflow")
    for seconds, seed in ((4.0, 2), (2.7131, 3)):
        y = tone_mix(seconds, seed=seed)[None]
        layer.blocked_frames = False
        want = np.asarray(layer(y))
        layer.blocked_frames = True
        got = np.asarray(layer(y))
        assert got.shape == want.shape == (1, layer.n_frames(y.shape[1]), 72)
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_whitening_standardises_each_band():
    y = tone_mix(2.0, seed=7)
    layer = MelSpectrogram(sample_rate=SR, n_fft=512, hop_length=256, n_mels=40, normalization="whiten")
    out = np.asarray(layer(y[None]))[0]
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-3)
    active = out.std(axis=0) > 0.5  # constant (fully clipped) bands stay at zero
    np.testing.assert_allclose(out.std(axis=0)[active], 1.0, atol=1e-2)


def test_log1p_compression():
    y = tone_mix(1.0, seed=8)
    raw = MelSpectrogram(sample_rate=SR, n_fft=512, hop_length=256, n_mels=32, compression=None)
    comp = MelSpectrogram(sample_rate=SR, n_fft=512, hop_length=256, n_mels=32, compression="log1p", log_gain=10.0)
    np.testing.assert_allclose(np.asarray(comp(y[None])), np.log1p(10.0 * np.asarray(raw(y[None]))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [MelSpectrogram, STFTMagnitude, Chroma, ConstantQ])
def test_frontend_config_round_trip(cls):
    layer = cls(sample_rate=SR, hop_length=320, name="frontend")
    clone = cls.from_config(layer.get_config())
    y = tone_mix(1.0, seed=9)[None]
    np.testing.assert_array_equal(np.asarray(layer(y)), np.asarray(clone(y)))
    assert layer.compute_output_shape((None, y.shape[1])) == (None, layer.n_frames(y.shape[1]), layer.n_bins)


def test_frontend_errors_name_the_bad_value():
    with pytest.raises(mirzoo.ParameterError, match="kind='wavelet'"):
        build_frontend({"kind": "wavelet"})
    with pytest.raises(mirzoo.ParameterError, match="power=3"):
        MelSpectrogram(power=3)
    with pytest.raises(mirzoo.ParameterError, match="hop_length=0"):
        MelSpectrogram(hop_length=0)
    with pytest.raises(mirzoo.ParameterError, match="compression='log10'"):
        MelSpectrogram(compression="log10")
    with pytest.raises(mirzoo.ParameterError, match="Nyquist"):
        ConstantQ(sample_rate=6000, n_bins=84)
    with pytest.raises(mirzoo.ParameterError, match="fmax"):
        MelSpectrogram(sample_rate=8000, fmax=6000.0)
    with pytest.raises(mirzoo.ParameterError, match="bogus"):
        build_frontend({"kind": "mel", "bogus": 1})
