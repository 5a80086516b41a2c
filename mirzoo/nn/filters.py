"""Fixed front-end kernels in plain numpy: mel and chroma filterbanks, constant-Q wavelets, a low-pass FIR.

The front-end layers (:mod:`mirzoo.nn.frontend`) build their constant kernels from
these when a model is built.  Each function computes the same array as the
librosa / scipy function named in its docstring (tested against them to 1e-10),
so a model's outputs do not depend on which one made its kernels; computing
them here keeps librosa, numba, llvmlite and scipy (about 200 MB of memory and
a few seconds of import) out of a process that only loads a model and runs it.

Only numpy is imported.  Parameter names follow librosa (``sr``, ``n_fft``,
``n_mels``, ``fmin``, ``fmax``).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from mirzoo.errors import ParameterError

__all__ = ["hz_to_mel", "mel_to_hz", "mel", "chroma", "wavelet_lengths", "wavelet", "kaiser_lowpass"]

# Slaney's Auditory Toolbox mel scale: linear (3 bands per 200 Hz) below 1 kHz, logarithmic above,
# with 27 bands per factor 6.4 in frequency.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ParameterError(f"{name}={value!r} must be a positive integer")
    return int(value)


def _positive_float(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={value!r} must be a positive number") from None
    if not (v > 0 and math.isfinite(v)):
        raise ParameterError(f"{name}={value!r} must be a positive finite number")
    return v


def _bank_sizes(sr, n_fft, count_name: str, count) -> tuple[float, int, int]:
    """``(sr, n_fft, count)`` of a DFT-bin filterbank, checked."""
    return _positive_float("sr", sr), _positive_int("n_fft", n_fft), _positive_int(count_name, count)


def hz_to_mel(frequencies, *, htk: bool = False) -> np.ndarray:
    """Hz to mels: HTK's ``2595 log10(1 + f / 700)`` or (``htk=False``) Slaney's piecewise scale."""
    f = np.asarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    m = f / _SLANEY_HZ_PER_MEL
    high = f >= _SLANEY_BREAK_HZ
    # np.where evaluates both branches: keep the log's argument positive where it is not used
    safe = np.where(high, f, _SLANEY_BREAK_HZ)
    return np.where(high, _SLANEY_BREAK_MEL + np.log(safe / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP, m)


def mel_to_hz(mels, *, htk: bool = False) -> np.ndarray:
    """Mels to Hz, the inverse of :func:`hz_to_mel` with the same ``htk``."""
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f = _SLANEY_HZ_PER_MEL * m
    high = m >= _SLANEY_BREAK_MEL
    return np.where(high, _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (m - _SLANEY_BREAK_MEL)), f)


def mel(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: Optional[float] = None,
    htk: bool = False,
    norm: Optional[str] = "slaney",
    dtype=np.float32,
) -> np.ndarray:
    """Triangular mel filterbank, as ``librosa.filters.mel`` with the same arguments.

    ``n_mels + 2`` edge frequencies are spaced evenly on the mel scale from ``fmin`` to
    ``fmax``; filter ``i`` rises linearly (in Hz) from edge ``i`` to 1 at edge ``i + 1`` and
    falls to 0 at edge ``i + 2``, sampled at the DFT bin frequencies ``k * sr / n_fft``.

    Parameters
    ----------
    sr : float > 0
        Sample rate in Hz.
    n_fft : int > 0
        FFT size; the filterbank has ``1 + n_fft // 2`` columns.
    n_mels : int > 0
        Number of filters.
    fmin, fmax : float
        Lowest and highest edge in Hz; ``fmax=None`` means ``sr / 2``.
    htk : bool
        HTK mel scale (``True``) or Slaney's (``False``).
    norm : None or "slaney"
        ``"slaney"`` divides each filter by its width in Hz / 2 (constant energy per band).

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)]
    """
    sr, n_fft, n_mels = _bank_sizes(sr, n_fft, "n_mels", n_mels)
    if norm not in (None, "slaney"):
        raise ParameterError(f"norm={norm!r} must be None or 'slaney'")
    fmax = sr / 2.0 if fmax is None else float(fmax)
    fmin = float(fmin)
    if not 0 <= fmin < fmax:
        raise ParameterError(f"mel band edges fmin={fmin}, fmax={fmax} must satisfy 0 <= fmin < fmax")

    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)  # (1 + n_fft // 2,)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2), htk=htk
    )  # (n_mels + 2,)
    widths = np.diff(edges)  # (n_mels + 1,)
    # offset[j, k]: how far edge j lies above bin k, in Hz
    offset = edges[:, None] - bin_hz[None, :]
    rising = -offset[:n_mels] / widths[:n_mels, None]  # 0 at edge i, 1 at edge i + 1
    falling = offset[2:] / widths[1:, None]  # 1 at edge i + 1, 0 at edge i + 2
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:n_mels]))[:, None]
    return weights.astype(dtype)


def chroma(
    *,
    sr: float,
    n_fft: int,
    n_chroma: int = 12,
    tuning: float = 0.0,
    ctroct: float = 5.0,
    octwidth: Optional[float] = 2.0,
    norm: Optional[float] = 2,
    base_c: bool = True,
    dtype=np.float32,
) -> np.ndarray:
    """Chroma filterbank mapping DFT bins to pitch classes, as ``librosa.filters.chroma``.

    Every DFT bin ``k > 0`` is placed on a pitch axis counted in chroma bins (``n_chroma``
    per octave, A440 shifted by ``tuning`` bins); each chroma bin ``c`` weighs it by a
    Gaussian in its circular pitch-class distance from ``c``, with a standard deviation of
    half the bin's own width in chroma bins (at least one).  Each DFT bin's column is then
    normalised (``norm``: 2, 1, ``np.inf`` or None), weighted by a Gaussian over octaves
    centred on octave ``ctroct`` with standard deviation ``octwidth`` (None: no weighting),
    and the rows are rotated so that row 0 is C (``base_c``) instead of A.

    Returns
    -------
    np.ndarray [shape=(n_chroma, 1 + n_fft // 2)]
    """
    sr, n_fft, n_chroma = _bank_sizes(sr, n_fft, "n_chroma", n_chroma)
    if n_fft < 2:
        raise ParameterError(f"n_fft={n_fft} must be at least 2 for a chroma filterbank")
    if norm not in (None, 1, 2, np.inf):
        raise ParameterError(f"norm={norm!r} must be one of None, 1, 2, np.inf")

    # DFT bins 1 .. n_fft - 1 (the full spectrum; only the first half is returned)
    hz = np.arange(1, n_fft, dtype=np.float64) * (sr / n_fft)
    a440 = 440.0 * 2.0 ** (float(tuning) / n_chroma)
    # pitch in chroma bins above A0 = A440 / 16 (four octaves below the tuned A4)
    pitch = n_chroma * np.log2(hz / (a440 / 16.0))
    # the DC bin is put 1.5 octaves below bin 1 so that it gets (almost) no weight
    pitch = np.concatenate(([pitch[0] - 1.5 * n_chroma], pitch))  # (n_fft,)
    width = np.concatenate((np.maximum(np.diff(pitch), 1.0), [1.0]))  # (n_fft,)

    half = round(n_chroma / 2.0)  # Python's round, half to even
    # signed circular distance (in chroma bins) from each chroma bin c to each DFT bin's pitch,
    # wrapped into [-half, n_chroma - half); the 10 octaves keep the dividend positive
    dist = pitch[None, :] - np.arange(n_chroma, dtype=np.float64)[:, None]
    dist = np.remainder(dist + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2.0 * dist / width[None, :]) ** 2)  # (n_chroma, n_fft)

    if norm is not None:
        if norm == np.inf:
            size = np.max(np.abs(weights), axis=0)
        elif norm == 1:
            size = np.sum(np.abs(weights), axis=0)
        else:
            size = np.sqrt(np.sum(weights**2, axis=0))
        tiny = np.finfo(weights.dtype).tiny
        weights = weights / np.where(size < tiny, 1.0, size)[None, :]
    if octwidth is not None:
        octave = pitch / n_chroma
        weights = weights * np.exp(-0.5 * ((octave - float(ctroct)) / float(octwidth)) ** 2)[None, :]
    if base_c:
        weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(weights[:, : 1 + n_fft // 2], dtype=dtype)


def _relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    """Each bin's relative bandwidth ``alpha``, from the local spacing of ``freqs`` on a log axis.

    ``d`` is a bin's distance in octaves to its neighbours (half the span across both for
    inner bins, the one gap for the end bins).  The band from ``f 2^-d`` to ``f 2^d`` has
    ``(upper - lower) / (upper + lower) = (4^d - 1) / (4^d + 1)``: its width over twice
    its arithmetic centre, the ``alpha`` of ``Q = filter_scale / alpha``.
    """
    logf = np.log2(freqs)
    octaves = np.empty_like(freqs)
    octaves[0] = logf[1] - logf[0]
    octaves[-1] = logf[-1] - logf[-2]
    octaves[1:-1] = (logf[2:] - logf[:-2]) / 2.0
    # via bins per octave (1 / d) rather than 2 ** (2 d) directly: the same value, rounded as librosa rounds it
    bins_per_octave = 1.0 / octaves
    ratio = 2.0 ** (2.0 / bins_per_octave)
    return (ratio - 1.0) / (ratio + 1.0)


def wavelet_lengths(freqs, *, sr: float, filter_scale: float = 1.0) -> np.ndarray:
    """Length in samples (not rounded) of each Hann constant-Q wavelet, as ``librosa.filters.wavelet_lengths``.

    With relative bandwidth ``alpha`` (from the spacing of ``freqs``) the quality factor is
    ``Q = filter_scale / alpha`` and a filter at ``f`` Hz spans ``Q * sr / f`` samples
    (librosa's ``gamma=0``).  As in librosa, nothing here checks that the top filter's band stays
    below Nyquist; :class:`mirzoo.nn.frontend.ConstantQ` checks its top bin.
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    sr = _positive_float("sr", sr)
    filter_scale = _positive_float("filter_scale", filter_scale)
    if freqs.ndim != 1 or freqs.size < 2:
        raise ParameterError(f"freqs must be a 1-d array of at least two frequencies, got shape {freqs.shape}")
    if not np.all(freqs > 0) or not np.all(np.isfinite(freqs)):
        raise ParameterError(f"freqs must be positive and finite, got min {freqs.min()!r}")
    if not np.all(np.diff(freqs) > 0):
        raise ParameterError("freqs must be strictly increasing")
    alpha = _relative_bandwidth(freqs)
    q = filter_scale / alpha
    return q * sr / freqs


def wavelet(freqs, *, sr: float, filter_scale: float = 1.0, norm: Optional[float] = 1, dtype=np.complex64):
    """Hann-windowed complex exponentials for a constant-Q transform, as ``librosa.filters.wavelet``.

    Matches ``librosa.filters.wavelet(freqs=freqs, sr=sr, window="hann",
    filter_scale=filter_scale, pad_fft=False, norm=norm, gamma=0)``: filter ``i`` has
    ``ceil(L_i)`` samples (``L_i`` from :func:`wavelet_lengths`) at times
    ``floor(-L_i / 2) .. floor(L_i / 2) - 1``, times a periodic Hann window of that many
    samples, normalised to unit ``norm`` (1, 2, ``np.inf`` or None) and centred (extra sample
    on the right) in a common length ``ceil(max L_i)``.

    Returns
    -------
    filters : np.ndarray [shape=(len(freqs), ceil(max(lengths)))]
    lengths : np.ndarray [shape=(len(freqs),)]
        The unrounded lengths.
    """
    if norm not in (None, 1, 2, np.inf):
        raise ParameterError(f"norm={norm!r} must be one of None, 1, 2, np.inf")
    freqs = np.asarray(freqs, dtype=np.float64)
    lengths = wavelet_lengths(freqs, sr=sr, filter_scale=filter_scale)
    sr = float(sr)
    width = int(math.ceil(float(np.max(lengths))))
    out = np.zeros((freqs.size, width), dtype=np.complex128)
    for i, (length, f) in enumerate(zip(lengths, freqs)):
        start, stop = math.floor(-length / 2.0), math.floor(length / 2.0)
        n = stop - start
        t = np.arange(start, stop, dtype=np.float64)
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic Hann
        sig = np.exp(t * 1j * 2.0 * np.pi * f / sr) * w
        if norm is not None:
            mag = np.abs(sig)
            size = {1: np.sum(mag), 2: np.sqrt(np.sum(mag**2)), np.inf: np.max(mag)}[norm]
            if size >= np.finfo(np.float64).tiny:
                sig = sig / size
        left = (width - n) // 2
        out[i, left : left + n] = sig
    return out.astype(dtype), lengths


def kaiser_lowpass(n_taps: int, cutoff: float, *, beta: float = 8.0) -> np.ndarray:
    """Linear-phase low-pass FIR by the window method, as ``scipy.signal.firwin`` with a Kaiser window.

    Equal to ``scipy.signal.firwin(n_taps, cutoff, window=("kaiser", beta))``.

    The ideal low-pass impulse response ``cutoff * sinc(cutoff * (n - (n_taps - 1) / 2))``
    (``cutoff`` as a fraction of Nyquist) times a symmetric Kaiser window, scaled to unit
    gain at DC.

    Returns
    -------
    np.ndarray [shape=(n_taps,)], float64
    """
    n_taps = _positive_int("n_taps", n_taps)
    cutoff = float(cutoff)
    if not 0.0 < cutoff < 1.0:
        raise ParameterError(f"cutoff={cutoff} must be strictly between 0 and 1 (a fraction of Nyquist)")
    m = np.arange(n_taps, dtype=np.float64) - (n_taps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(n_taps, float(beta))
    return h / np.sum(h)
