"""mirzoo.nn.filters against librosa.filters and scipy.signal.firwin, its errors, and a model load without them."""

import json
import os
import subprocess
import sys

import librosa
import numpy as np
import pytest
from scipy.signal import firwin

import mirzoo
from mirzoo.nn import filters
from mirzoo.nn.frontend import ConstantQ, MelSpectrogram

C1 = 32.703195662574764


def _close(ours, ref, tol=1e-10):
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(ours - ref).max())
    assert err <= tol * scale, (err, scale)


# -- mel ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sr, n_fft, n_mels, fmin, fmax",
    [
        (16000, 512, 96, 0.0, 8000.0),  # cnn-tagging, crnn-tagging, random-cnn, random-cnn-musical
        (16000, 512, 128, 0.0, None),
        (22050, 2048, 128, 30.0, 8000.0),
        (44100, 1023, 40, 100.0, 15000.0),  # odd n_fft
        (8000, 256, 20, 0.0, 4000.0),
        (48000, 4096, 256, 20.0, 20000.0),
    ],
)
@pytest.mark.parametrize("htk, norm", [(True, None), (False, None), (False, "slaney"), (True, "slaney")])
def test_mel_matches_librosa(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    ours = filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, dtype=np.float64)
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, dtype=np.float64
    )
    assert ours.shape == (n_mels, 1 + n_fft // 2)
    _close(ours, ref)


def test_mel_scales_round_trip_and_match_librosa():
    hz = np.array([0.0, 55.0, 440.0, 999.9, 1000.0, 1000.1, 4000.0, 11025.0])
    for htk in (True, False):
        np.testing.assert_allclose(filters.hz_to_mel(hz, htk=htk), librosa.hz_to_mel(hz, htk=htk), rtol=1e-13)
        np.testing.assert_allclose(filters.mel_to_hz(filters.hz_to_mel(hz, htk=htk), htk=htk), hz, rtol=1e-12, atol=1e-9)


# -- chroma -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sr, n_fft, n_chroma, tuning",
    [
        (16000, 2048, 12, 0.0),  # the Chroma front-end's defaults
        (16000, 512, 12, 0.0),
        (22050, 2048, 12, -0.3),
        (44100, 4096, 24, 0.1),
        (16000, 1025, 7, 0.5),  # odd n_fft, odd n_chroma (half-way rounding of n_chroma / 2)
        (8000, 256, 5, 0.0),
        (16000, 2048, 36, 0.25),
    ],
)
def test_chroma_matches_librosa(sr, n_fft, n_chroma, tuning):
    ours = filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning, dtype=np.float64)
    ref = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning, dtype=np.float64)
    assert ours.shape == (n_chroma, 1 + n_fft // 2)
    _close(ours, ref)


@pytest.mark.parametrize("kwargs", [dict(ctroct=4.0, octwidth=1.0), dict(octwidth=None), dict(norm=None),
                                    dict(norm=np.inf), dict(norm=1), dict(base_c=False)])
def test_chroma_options_match_librosa(kwargs):
    ours = filters.chroma(sr=22050, n_fft=2048, dtype=np.float64, **kwargs)
    ref = librosa.filters.chroma(sr=22050, n_fft=2048, dtype=np.float64, **kwargs)
    _close(ours, ref)


# -- constant-Q wavelets ------------------------------------------------------------------------


def _geometric(fmin, n_bins, bins_per_octave):
    return fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)


@pytest.mark.parametrize(
    "sr, fmin, n_bins, bins_per_octave, filter_scale",
    [
        (16000, C1, 84, 12, 1.0),  # dense-frame
        (16000, 55.0, 216, 36, 1.0),  # tcn-music, whole bank
        (22050, 40.0, 60, 12, 0.7),
        (8000, 100.0, 30, 24, 2.0),
        (16000, 440.0, 2, 12, 1.0),  # two bins: both use the end-bin spacing
        (44100, 27.5, 88, 12, 1.3),
    ],
)
def test_wavelet_matches_librosa(sr, fmin, n_bins, bins_per_octave, filter_scale):
    freqs = _geometric(fmin, n_bins, bins_per_octave)
    ours, lengths = filters.wavelet(freqs, sr=sr, filter_scale=filter_scale, norm=1, dtype=np.complex128)
    ref, ref_lengths = librosa.filters.wavelet(
        freqs=freqs, sr=sr, window="hann", filter_scale=filter_scale, pad_fft=False, norm=1, dtype=np.complex128
    )
    np.testing.assert_allclose(lengths, ref_lengths, rtol=1e-13)
    np.testing.assert_allclose(filters.wavelet_lengths(freqs, sr=sr, filter_scale=filter_scale), ref_lengths, rtol=1e-13)
    _close(ours, ref)


def test_wavelet_octave_groups_of_tcn_music_match_librosa():
    """The per-octave banks ConstantQ(octave_kernels=True) builds: 36 bins each at sr / factor."""
    freqs = _geometric(55.0, 216, 36)
    for lo, factor in zip(range(0, 216, 36), (32, 16, 16, 8, 4, 2)):
        group = freqs[lo : lo + 36]
        ours, lengths = filters.wavelet(group, sr=16000 / factor, norm=1, dtype=np.complex128)
        ref, ref_lengths = librosa.filters.wavelet(
            freqs=group, sr=16000 / factor, window="hann", pad_fft=False, norm=1, dtype=np.complex128
        )
        np.testing.assert_allclose(lengths, ref_lengths, rtol=1e-13)
        _close(ours, ref)


@pytest.mark.parametrize("norm", [2, np.inf, None])
def test_wavelet_norms_match_librosa(norm):
    freqs = _geometric(100.0, 24, 12)
    ours, _ = filters.wavelet(freqs, sr=16000, norm=norm, dtype=np.complex128)
    ref, _ = librosa.filters.wavelet(freqs=freqs, sr=16000, window="hann", pad_fft=False, norm=norm, dtype=np.complex128)
    _close(ours, ref)


# -- Kaiser low-pass ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_taps, cutoff, beta",
    # ConstantQ's decimators: 16 * factor + 1 taps, cutoff 0.8 / factor, beta 8
    [(16 * f + 1, 0.8 / f, 8.0) for f in (2, 4, 8, 16, 32)]
    + [(32, 0.3, 5.0), (1, 0.5, 8.0), (2, 0.9, 0.0), (101, 0.05, 14.0)],
)
def test_kaiser_lowpass_matches_scipy_firwin(n_taps, cutoff, beta):
    ours = filters.kaiser_lowpass(n_taps, cutoff, beta=beta)
    ref = firwin(n_taps, cutoff, window=("kaiser", beta))
    _close(ours, ref)
    assert np.sum(ours) == pytest.approx(1.0, abs=1e-12)  # unit gain at DC


# -- errors -------------------------------------------------------------------------------------


def test_bad_parameters_name_the_value():
    with pytest.raises(mirzoo.ParameterError, match="n_mels=0"):
        filters.mel(sr=16000, n_fft=512, n_mels=0)
    with pytest.raises(mirzoo.ParameterError, match="fmin=900.0, fmax=800.0"):
        filters.mel(sr=16000, n_fft=512, fmin=900.0, fmax=800.0)
    with pytest.raises(mirzoo.ParameterError, match="norm='l2'"):
        filters.mel(sr=16000, n_fft=512, norm="l2")
    with pytest.raises(mirzoo.ParameterError, match="n_fft=1"):
        filters.chroma(sr=16000, n_fft=1)
    with pytest.raises(mirzoo.ParameterError, match="sr=-1"):
        filters.chroma(sr=-1, n_fft=512)
    with pytest.raises(mirzoo.ParameterError, match="strictly increasing"):
        filters.wavelet([200.0, 100.0], sr=16000)
    with pytest.raises(mirzoo.ParameterError, match="at least two"):
        filters.wavelet([200.0], sr=16000)
    with pytest.raises(mirzoo.ParameterError, match="filter_scale=0"):
        filters.wavelet([100.0, 200.0], sr=16000, filter_scale=0)
    with pytest.raises(mirzoo.ParameterError, match="cutoff=1.5"):
        filters.kaiser_lowpass(33, 1.5)
    with pytest.raises(mirzoo.ParameterError, match="n_taps=0"):
        filters.kaiser_lowpass(0, 0.5)


def test_frontend_keeps_its_messages():
    # the front-end's own checks run before any kernel is computed, with their messages
    with pytest.raises(mirzoo.ParameterError, match=r"fmin=0.0, fmax=6000.0 must satisfy .* sample_rate/2 = 4000"):
        MelSpectrogram(sample_rate=8000, fmax=6000.0)
    with pytest.raises(mirzoo.ParameterError, match=r"top CQT bin \(3951.1 Hz.* below Nyquist \(3000.0 Hz\)"):
        ConstantQ(sample_rate=6000, n_bins=84)
    with pytest.raises(mirzoo.ParameterError, match="n_mels=0"):
        MelSpectrogram(n_mels=0)


# -- a model runs without librosa, numba or scipy -----------------------------------------------

_NO_LIBROSA = """
import json, sys
import numpy as np
import mirzoo
from mirzoo.nn.frontend import build_frontend
y = (0.1 * np.sin(2 * np.pi * 440.0 * np.arange(16000 * 4) / 16000)).astype(np.float32)
shapes = {}
for name in ("cnn-tagging", "tcn-music"):  # a mel model and a CQT model (octave kernels)
    shapes[name] = list(mirzoo.load(name).extract(y, sr=16000).embeddings.shape)
# no zoo model has a chroma front-end: build one as a model would
shapes["chroma"] = list(np.asarray(build_frontend({"kind": "chroma", "sample_rate": 16000})(y[None])).shape)
loaded = sorted(m for m in ("librosa", "numba", "llvmlite", "scipy", "scipy.signal") if m in sys.modules)
print("RESULT" + json.dumps({"shapes": shapes, "loaded": loaded, "tensorflow": "tensorflow" in sys.modules}))
"""


def test_load_and_extract_import_neither_librosa_nor_scipy_signal():
    """Loading and running mel, CQT and chroma front-ends needs no librosa (numba, llvmlite) nor scipy.signal.

    ``import tensorflow`` itself imports parts of scipy (``scipy.sparse``, ``scipy.stats``, ...) when
    scipy is installed, so under the TensorFlow backend only ``scipy.signal`` (what the CQT's
    decimation filters used to come from) can be asserted absent.
    """
    run = subprocess.run([sys.executable, "-c", _NO_LIBROSA], capture_output=True, text=True,
                         env=dict(os.environ), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.split("RESULT", 1)[1])
    expected = ["scipy"] if out["tensorflow"] and "scipy" in out["loaded"] else []
    assert out["loaded"] == expected, out["loaded"]
    assert out["shapes"]["cnn-tagging"][0] >= 1 and out["shapes"]["tcn-music"][0] == 1 + 16000 * 4 // 320
    assert out["shapes"]["chroma"][2] == 12
