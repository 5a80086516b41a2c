"""Audio front-ends as Keras layers: waveform in, time-frequency representation out.

Every front-end is a :class:`keras.layers.Layer` that sits inside the model,
so a saved or exported mirzoo model takes raw waveforms.  All of them are
built from plain ``keras.ops`` (a strided 1-D convolution with fixed Fourier
or constant-Q kernels, a matrix product with a filterbank, elementwise ops),
which means that they

* run on every Keras backend (tensorflow, jax, torch) with the same numbers,
* export to SavedModel, TFLite builtins and ONNX (no RFFT / complex ops), and
* are computed **per example**: nothing is reduced over the batch axis, so a
  clip's representation never depends on the other clips in its batch
  (``keras.layers.MelSpectrogram`` clips ``top_db`` against the batch max).

The fixed kernels are computed from the layer config with numpy
(:mod:`mirzoo.nn.filters`, equal to librosa's and scipy's to 1e-10) when the
layer is built, so loading a model imports neither librosa nor scipy; they are
constants, not weights, so they are neither trained nor stored in weight files.

Representations (``kind`` of :func:`build_frontend`):

``"mel"``
    Mel spectrogram, identical in definition to
    ``librosa.feature.melspectrogram(htk=True, norm=None, center=True, pad_mode="reflect")``.
``"stft"``
    Linear-frequency STFT magnitude (``power=1``) or power.
``"cqt"``
    Constant-Q transform by direct convolution with librosa's constant-Q
    wavelets (``librosa.filters.wavelet``), scaled like ``librosa.cqt(scale=True)``.
``"chroma"``
    Chroma from the STFT power, as ``librosa.feature.chroma_stft(tuning=0)``.

Compression (seed section 5.1): ``"db"`` (``librosa.power_to_db`` with
``ref=1``, per-example ``top_db``), ``"log1p"`` (``log(1 + gain * x)``) or
``None``.  Normalisation: ``"whiten"`` standardises each frequency band over
time, per example (spectral whitening); ``"standardize"`` standardises the whole
example; ``None`` leaves it.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import keras
import numpy as np
from keras import ops

from mirzoo.errors import ParameterError
from mirzoo.nn import filters

__all__ = [
    "SpectralFrontend",
    "blocked_kernel",
    "blocked_conv",
    "MelSpectrogram",
    "STFTMagnitude",
    "ConstantQ",
    "Chroma",
    "build_frontend",
    "FRONTENDS",
]

_COMPRESSIONS = (None, "db", "log1p")
_NORMALIZATIONS = (None, "whiten", "standardize")
_PAD_MODES = ("reflect", "constant")


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window, as ``scipy.signal.get_window('hann', n, fftbins=True)``."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float64)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ParameterError(f"{name}={value!r} must be a positive integer")
    return int(value)


class SpectralFrontend(keras.layers.Layer):
    """Base class: framing by strided convolution with fixed kernels, then a projection.

    Subclasses implement :meth:`_kernels` (returning the real/imaginary
    convolution kernels, a dense projection applied to the power or
    magnitude, and the kernel length) and may override :meth:`_post`.

    Parameters
    ----------
    sample_rate : int > 0
        Sample rate of the input waveform in Hz.
    hop_length : int > 0
        Samples between successive frames.
    power : float in {1, 2}
        Exponent of the magnitude before projection (2: power, 1: magnitude).
    center : bool
        Pad the signal by half the kernel length on both sides, so frame
        ``t`` is centred on sample ``t * hop_length`` (librosa's ``center=True``).
    pad_mode : {"reflect", "constant"}
        Padding used when ``center`` is true.
    compression : {"db", "log1p", None}
        Log compression of the output.
    top_db : float > 0 or None
        With ``compression="db"``: floor at ``max - top_db`` where ``max`` is
        taken over each example separately.
    amin : float > 0
        With ``compression="db"``: the floor applied before the logarithm.
    log_gain : float > 0
        With ``compression="log1p"``: ``log(1 + log_gain * x)``.
    normalization : {None, "whiten", "standardize"}
        ``"whiten"``: zero mean, unit variance per band over time, per example (removes
        the spectral envelope of stationary sounds); ``"standardize"``: zero mean, unit
        variance over the whole example (keeps the spectral shape).

    Input shape: ``(batch, samples)``; output shape: ``(batch, frames, bins)``
    with ``frames = 1 + samples // hop_length`` when ``center`` is true.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        hop_length: int = 256,
        power: float = 2.0,
        center: bool = True,
        pad_mode: str = "reflect",
        compression: Optional[str] = "db",
        top_db: Optional[float] = 80.0,
        amin: float = 1e-10,
        log_gain: float = 1.0,
        normalization: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sample_rate = _check_positive_int("sample_rate", sample_rate)
        self.hop_length = _check_positive_int("hop_length", hop_length)
        if power not in (1, 2, 1.0, 2.0):
            raise ParameterError(f"power={power!r} must be 1 (magnitude) or 2 (power)")
        self.power = float(power)
        self.center = bool(center)
        if pad_mode not in _PAD_MODES:
            raise ParameterError(f"pad_mode={pad_mode!r} must be one of {_PAD_MODES}")
        self.pad_mode = pad_mode
        if compression not in _COMPRESSIONS:
            raise ParameterError(f"compression={compression!r} must be one of {_COMPRESSIONS}")
        self.compression = compression
        if top_db is not None and not top_db > 0:
            raise ParameterError(f"top_db={top_db!r} must be positive or None")
        self.top_db = None if top_db is None else float(top_db)
        if not amin > 0:
            raise ParameterError(f"amin={amin!r} must be positive")
        self.amin = float(amin)
        if not log_gain > 0:
            raise ParameterError(f"log_gain={log_gain!r} must be positive")
        self.log_gain = float(log_gain)
        if normalization not in _NORMALIZATIONS:
            raise ParameterError(f"normalization={normalization!r} must be one of {_NORMALIZATIONS}")
        self.normalization = normalization
        self._real, self._imag, self._projection, self.kernel_length = self._kernels()
        # One convolution computes real and imaginary parts together.
        kernel = self._real if self._imag is None else np.concatenate([self._real, self._imag], axis=1)
        self._conv_kernel = kernel[:, None, :].astype(np.float32)  # (length, 1, channels)
        self._proj = None if self._projection is None else self._projection.astype(np.float32)

    # -- to implement -------------------------------------------------------------------------
    def _kernels(self):  # pragma: no cover - abstract
        """Return ``(real [L, B], imag [L, B] or None, projection [B, out] or None, L)``."""
        raise NotImplementedError

    @property
    def n_bins(self) -> int:
        """Number of output bins (frequency or pitch axis)."""
        if self._proj is not None:
            return int(self._proj.shape[1])
        return int(self._real.shape[1])

    def _post(self, x):
        """Representation-specific step after projection (before compression)."""
        return x

    # -- framing helpers ----------------------------------------------------------------------
    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` input samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return 1 + (n_samples - self.kernel_length) // self.hop_length

    def min_samples(self) -> int:
        """Shortest input the layer accepts (reflect padding needs more samples than it pads)."""
        if self.center:
            return self.kernel_length - self.kernel_length // 2 + 1 if self.pad_mode == "reflect" else 1
        return self.kernel_length

    # -- keras --------------------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        n = input_shape[-1]
        frames = None if n is None else self.n_frames(int(n))
        return (input_shape[0], frames, self.n_bins)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        x = ops.expand_dims(x, -1)  # (batch, samples, 1)
        if self.center:
            # left L//2 and right L - L//2: frame t is centred on sample t * hop for odd and even
            # kernel lengths, and there are always 1 + samples // hop frames
            left = self.kernel_length // 2
            x = ops.pad(x, [[0, 0], [left, self.kernel_length - left], [0, 0]], mode=self.pad_mode)
        y = self._frames(x)
        if self._imag is not None:
            half = self._real.shape[1]
            re, im = y[..., :half], y[..., half:]
            mag2 = re * re + im * im
            if self.power == 2.0:
                s = mag2
            else:
                s = ops.sqrt(mag2 + 1e-20)
        else:
            s = ops.square(y) if self.power == 2.0 else ops.abs(y)
        if self._proj is not None:
            s = ops.matmul(s, ops.convert_to_tensor(self._proj))
        s = self._post(s)
        s = self._compress(s)
        if self.normalization == "whiten":
            mean = ops.mean(s, axis=1, keepdims=True)
            std = ops.std(s, axis=1, keepdims=True)
            s = (s - mean) / (std + 1e-5)
        elif self.normalization == "standardize":
            mean = ops.mean(s, axis=(1, 2), keepdims=True)
            std = ops.std(s, axis=(1, 2), keepdims=True)
            s = (s - mean) / (std + 1e-5)
        return s

    def _frames(self, x):
        """``(batch, frames, channels)``: the framed inner products with the kernels (real then
        imaginary parts), from the centred and padded signal ``x`` ``(batch, samples + L, 1)``."""
        return ops.conv(x, ops.convert_to_tensor(self._conv_kernel), strides=self.hop_length, padding="valid")

    def flops_per_frame(self) -> int:
        """Floating-point operations (multiplies and adds counted apart) of the framing
        convolutions and the projection for one output frame, as :meth:`call` runs them."""
        length, _, channels = self._conv_kernel.shape
        flops = 2 * int(length) * int(channels)
        if self._proj is not None:
            flops += 2 * int(self._proj.shape[0]) * int(self._proj.shape[1])
        return flops

    def _compress(self, s):
        if self.compression == "db":
            # librosa.power_to_db(ref=1.0); amplitude (power=1) input uses 20 log10, i.e. amplitude_to_db
            factor = 10.0 if self.power == 2.0 else 20.0
            amin = self.amin if self.power == 2.0 else math.sqrt(self.amin)
            db = factor * ops.log(ops.maximum(s, amin)) / math.log(10.0)
            if self.top_db is not None:
                # per example: max over frames and bins only, never over the batch
                peak = ops.max(db, axis=(1, 2), keepdims=True)
                db = ops.maximum(db, peak - self.top_db)
            return db
        if self.compression == "log1p":
            return ops.log1p(self.log_gain * s)
        return s

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate,
            hop_length=self.hop_length,
            power=self.power,
            center=self.center,
            pad_mode=self.pad_mode,
            compression=self.compression,
            top_db=self.top_db,
            amin=self.amin,
            log_gain=self.log_gain,
            normalization=self.normalization,
        )
        return config


def _dft_kernels(n_fft: int, win_length: int, n_bins: int):
    """Windowed DFT kernels for bins ``0..n_bins-1`` (window centred in the frame, as librosa)."""
    window = np.zeros(n_fft)
    offset = (n_fft - win_length) // 2
    window[offset : offset + win_length] = _hann(win_length)
    n = np.arange(n_fft)[:, None]
    k = np.arange(n_bins)[None, :]
    phase = 2.0 * np.pi * ((n * k) % n_fft) / n_fft  # modulo keeps the phase exact in float64
    real = window[:, None] * np.cos(phase)
    imag = -window[:, None] * np.sin(phase)
    return real, imag


@keras.saving.register_keras_serializable(package="mirzoo")
class STFTMagnitude(SpectralFrontend):
    """Linear-frequency STFT magnitude (``power=1``) or power (``power=2``).

    Parameters
    ----------
    n_fft : int > 0
        FFT size; ``n_fft // 2 + 1`` bins unless ``fmax`` truncates them.
    win_length : int > 0 or None
        Hann window length (centred and zero-padded to ``n_fft``); default ``n_fft``.
    fmax : float or None
        Keep only bins up to this frequency (saves computation).
    """

    def __init__(self, n_fft: int = 2048, win_length: Optional[int] = None, fmax: Optional[float] = None, **kwargs):
        self.n_fft = _check_positive_int("n_fft", n_fft)
        self.win_length = self.n_fft if win_length is None else _check_positive_int("win_length", win_length)
        if self.win_length > self.n_fft:
            raise ParameterError(f"win_length={win_length} must not exceed n_fft={n_fft}")
        self.fmax = None if fmax is None else float(fmax)
        kwargs.setdefault("power", 1.0)
        super().__init__(**kwargs)

    def _kernels(self):
        n_bins = self.n_fft // 2 + 1
        if self.fmax is not None:
            n_bins = min(n_bins, int(math.floor(self.fmax * self.n_fft / self.sample_rate)) + 1)
        real, imag = _dft_kernels(self.n_fft, self.win_length, n_bins)
        return real, imag, None, self.n_fft

    def get_config(self):
        config = super().get_config()
        config.update(n_fft=self.n_fft, win_length=self.win_length, fmax=self.fmax)
        return config


@keras.saving.register_keras_serializable(package="mirzoo")
class MelSpectrogram(STFTMagnitude):
    """Log-mel spectrogram matching librosa, per example.

    Equivalent to::

        S = librosa.feature.melspectrogram(y=y, sr=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                           n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None,
                                           center=True, pad_mode="reflect", power=2.0)
        librosa.power_to_db(S, ref=1.0, amin=amin, top_db=top_db)

    but computed for each example of the batch separately, in-graph.
    Only the DFT bins that some mel filter touches are computed.

    Parameters
    ----------
    n_mels : int > 0
        Number of mel bands.
    fmin, fmax : float
        Band edges in Hz; ``fmax=None`` means ``sample_rate / 2``.
    """

    def __init__(self, n_mels: int = 96, fmin: float = 0.0, fmax: Optional[float] = None, **kwargs):
        self.n_mels = _check_positive_int("n_mels", n_mels)
        self.fmin = float(fmin)
        self.mel_fmax = None if fmax is None else float(fmax)
        kwargs.setdefault("power", 2.0)
        super().__init__(fmax=None, **kwargs)

    def _kernels(self):
        fmax = self.sample_rate / 2.0 if self.mel_fmax is None else self.mel_fmax
        if not 0 <= self.fmin < fmax <= self.sample_rate / 2.0:
            raise ParameterError(
                f"mel band edges fmin={self.fmin}, fmax={fmax} must satisfy 0 <= fmin < fmax <= "
                f"sample_rate/2 = {self.sample_rate / 2}"
            )
        mel = filters.mel(
            sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=fmax,
            htk=True, norm=None, dtype=np.float64,
        )  # (n_mels, 1 + n_fft // 2)
        used = np.nonzero(mel.any(axis=0))[0]
        last = int(used[-1]) + 1 if used.size else 1
        real, imag = _dft_kernels(self.n_fft, self.win_length, last)
        return real, imag, mel[:, :last].T, self.n_fft

    def get_config(self):
        config = super().get_config()
        config.pop("fmax", None)
        config.update(n_mels=self.n_mels, fmin=self.fmin, fmax=self.mel_fmax)
        return config


@keras.saving.register_keras_serializable(package="mirzoo")
class Chroma(STFTMagnitude):
    """Chroma from the STFT power, as ``librosa.feature.chroma_stft(tuning=0)``.

    Each frame is divided by its maximum over the ``n_chroma`` bins (librosa's
    ``norm=np.inf``); near-silent frames (max below ``1e-30``) are left as is.
    Defaults follow librosa: constant padding and no compression.
    """

    def __init__(self, n_chroma: int = 12, tuning: float = 0.0, normalize: bool = True, **kwargs):
        self.n_chroma = _check_positive_int("n_chroma", n_chroma)
        self.tuning = float(tuning)
        self.normalize_frames = bool(normalize)
        kwargs.setdefault("power", 2.0)
        kwargs.setdefault("pad_mode", "constant")
        kwargs.setdefault("compression", None)
        super().__init__(fmax=None, **kwargs)

    def _kernels(self):
        fb = filters.chroma(
            sr=self.sample_rate, n_fft=self.n_fft, n_chroma=self.n_chroma, tuning=self.tuning, dtype=np.float64
        )  # (n_chroma, 1 + n_fft // 2)
        real, imag = _dft_kernels(self.n_fft, self.win_length, self.n_fft // 2 + 1)
        return real, imag, fb.T, self.n_fft

    def _post(self, x):
        if not self.normalize_frames:
            return x
        peak = ops.max(ops.abs(x), axis=-1, keepdims=True)
        peak = ops.where(peak < 1e-30, ops.ones_like(peak), peak)
        return x / peak

    def get_config(self):
        config = super().get_config()
        config.pop("fmax", None)
        config.update(n_chroma=self.n_chroma, tuning=self.tuning, normalize=self.normalize_frames)
        return config


def blocked_kernel(kernel: np.ndarray, stride: int, start: int = 0) -> tuple[int, np.ndarray]:
    """A one-channel strided convolution rewritten over blocks of ``stride`` samples.

    ``kernel`` ``(L, 1, C)`` applied with ``stride`` from sample ``start`` of the signal computes
    ``y[t] = sum_j x[start + t * stride + j] * kernel[j]``.  With the signal cut into blocks of
    ``stride`` samples (a free reshape to ``(batch, n / stride, stride)``), the same sums are a
    stride-1 convolution with ``stride`` input channels over ``K = ceil((r + L) / stride)``
    blocks, starting at block ``q`` (``start = q * stride + r``): the kernel gets ``r`` zero rows in
    front and is zero-padded to ``K * stride`` rows.  Returns ``(q, (K, stride, C) kernel)``.
    """
    length, _, channels = kernel.shape
    q, r = divmod(int(start), int(stride))
    k = -(-(r + int(length)) // int(stride))
    padded = np.zeros((k * int(stride), channels), np.float32)
    padded[r : r + length] = kernel[:, 0, :]
    return q, padded.reshape(k, int(stride), channels)


def blocked_conv(x, kernel: np.ndarray, q: int, stride: int, n_out):
    """Apply a :func:`blocked_kernel` to ``x`` ``(batch, samples, 1)``: outputs ``0 .. n_out - 1``,
    equal to the strided one-channel convolution's up to float rounding.  The caller gives
    ``n_out`` (at most the strided convolution's own count over ``x``); samples that only the
    kernel's zero rows reach past the end of ``x`` are zero-padded, so they change nothing.
    """
    k = int(kernel.shape[0])
    need = (q + k - 1 + n_out) * stride
    short = need - ops.shape(x)[1]
    short = max(short, 0) if isinstance(short, int) else ops.maximum(short, 0)
    signal = ops.pad(x[..., 0], [[0, 0], [0, short]])[:, :need]
    blocks = ops.reshape(signal, (ops.shape(signal)[0], -1, stride))
    return ops.conv(blocks[:, q:], ops.convert_to_tensor(kernel), strides=1, padding="valid")


@keras.saving.register_keras_serializable(package="mirzoo")
class ConstantQ(SpectralFrontend):
    """Constant-Q transform by direct convolution with constant-Q wavelets.

    The kernels are :func:`mirzoo.nn.filters.wavelet` (equal to ``librosa.filters.wavelet``:
    Hann-windowed complex exponentials, L1-normalised) centred in a common length; each bin is then
    multiplied by the square root of its filter length as ``librosa.cqt(scale=True)`` does,
    so the result approximates ``librosa.cqt`` (which computes the same
    transform by recursive downsampling and sparsified FFT kernels).

    Parameters
    ----------
    fmin : float > 0
        Centre frequency of the lowest bin in Hz (default C1, 32.70 Hz).
    n_bins : int > 0
        Number of bins.
    bins_per_octave : int > 0
        Bins per octave.
    filter_scale : float > 0
        Scales the filter lengths (and hence the Q factor).
    octave_kernels : bool
        Convolve each octave of bins with a kernel only as long as that octave's longest
        filter instead of one kernel of the longest filter's length: the same output
        (to float rounding) for about ``2 / bins_per_octave`` of the multiply-adds per
        octave below the top one.
    """

    def __init__(
        self,
        fmin: float = 32.703195662574764,
        n_bins: int = 84,
        bins_per_octave: int = 12,
        filter_scale: float = 1.0,
        octave_kernels: bool = False,
        **kwargs,
    ):
        self.octave_kernels = bool(octave_kernels)
        self.fmin = float(fmin)
        self.n_cq_bins = _check_positive_int("n_bins", n_bins)
        self.bins_per_octave = _check_positive_int("bins_per_octave", bins_per_octave)
        self.filter_scale = float(filter_scale)
        kwargs.setdefault("power", 1.0)
        kwargs.setdefault("pad_mode", "constant")
        super().__init__(**kwargs)
        self._trimmed = [] if self._groups else self._support_groups()
        # From here on the per-octave kernels are all `_frames` convolves with.  The full-rate
        # kernel (tcn-music: ~25 000 taps x 432 columns, 43 MB in float32, and twice that in
        # the float64 real and imaginary parts it came from) was only the source of the trimmed
        # ones: keep the bin count of the real part, drop the arrays (`full_kernel()` rebuilds it).
        n_bins = int(self._real.shape[1])
        self._real = np.zeros((0, n_bins))
        self._imag = np.zeros((0, n_bins))
        self._conv_kernel = None
        # How the strided one-channel convolutions run (the same sums either way): on TensorFlow
        # over blocks of `stride` samples (`blocked_kernel`), which oneDNN runs as a dense
        # convolution with `stride` input channels: `dense-frame` 2.0x and `tcn-music` 1.45x
        # faster end to end than with its one-channel strided convolution (a Sapphire Rapids
        # CPU, benchmarks/README.md); on JAX and torch as they are (blocked was level on JAX
        # and up to 13% slower on torch).  Not part of the config: it never changes the
        # numbers beyond float rounding.
        self.blocked_frames = keras.backend.backend() == "tensorflow"
        self._blocked = {}

    def _blocked_kernel(self, key, kernel, stride: int, start: int = 0):
        if key not in self._blocked:
            self._blocked[key] = blocked_kernel(kernel, stride, start)
        return self._blocked[key]

    def _strided(self, key, x, kernel, stride: int, n_out, start: int = 0):
        """``x`` ``(batch, samples, 1)`` convolved with the one-channel ``kernel`` every ``stride``
        samples from ``start``, ``n_out`` outputs, in the form :attr:`blocked_frames` picks."""
        if self.blocked_frames:
            q, blocked = self._blocked_kernel(key, kernel, stride, start)
            return blocked_conv(x, blocked, q, stride, n_out)
        if start:
            x = x[:, start:, :]
        return ops.conv(x, ops.convert_to_tensor(kernel), strides=stride, padding="valid")[:, :n_out]

    def flops_per_frame(self) -> int:
        if self._groups:  # per octave: a decimating low-pass (one output per `factor` samples), then short kernels
            flops = 0
            for factor, lowpass, kernel, _ in self._groups:
                if lowpass is not None:
                    flops += 2 * int(lowpass.shape[0]) * (self.hop_length // factor)
                flops += 2 * int(kernel.shape[0]) * int(kernel.shape[-1])
            return flops
        return sum(2 * int(kernel.shape[0]) * int(kernel.shape[-1]) for _, kernel, _ in self._trimmed)

    def _kernels(self):
        freqs = self.fmin * 2.0 ** (np.arange(self.n_cq_bins) / self.bins_per_octave)
        if freqs[-1] >= self.sample_rate / 2:
            raise ParameterError(
                f"the top CQT bin ({freqs[-1]:.1f} Hz, from fmin={self.fmin}, n_bins={self.n_cq_bins}, "
                f"bins_per_octave={self.bins_per_octave}) must be below Nyquist ({self.sample_rate / 2} Hz)"
            )
        if self.octave_kernels:
            # the full-rate bank is never convolved with: only its common length (the padding
            # and framing of `call`) is needed, which is what `filters.wavelet` would make it
            lengths = filters.wavelet_lengths(freqs, sr=self.sample_rate, filter_scale=self.filter_scale)
            length = int(math.ceil(float(np.max(lengths))))
            real = imag = np.zeros((0, self.n_cq_bins))
        else:
            real, imag, length = self._full_rate(freqs)
        # octave_kernels: one convolution per octave of bins, each run on the signal decimated
        # by the largest power of two that still carries the octave (a centred low-pass FIR
        # applied with that stride), with the octave's own filters at the lower rate.  Filter
        # lengths halve with every octave and so does the rate, so each octave costs about
        # the same, instead of the lowest octave's length for every bin.
        self._groups = []
        if self.octave_kernels:
            for lo in range(0, self.n_cq_bins, self.bins_per_octave):
                hi = min(lo + self.bins_per_octave, self.n_cq_bins)
                top = freqs[hi - 1] * 2.0 ** (1.0 / self.bins_per_octave)
                factor = 1
                # keep the octave (and its filters' bandwidth) below 0.7 of the decimated Nyquist
                while (factor < 32 and self.hop_length % (2 * factor) == 0
                       and top * 1.1 < 0.7 * self.sample_rate / (4 * factor)):
                    factor *= 2
                sr_g = self.sample_rate / factor
                g, glens = filters.wavelet(
                    freqs[lo:hi], sr=sr_g, filter_scale=self.filter_scale, norm=1, dtype=np.complex128
                )
                if g.shape[1] % 2 == 0:  # odd length: centred on a sample of the decimated signal
                    g = np.pad(g, [(0, 0), (0, 1)])
                gk = g.T * (np.sqrt(glens) * np.sqrt(factor))[None, :]
                kernel = np.concatenate([np.real(gk), np.imag(gk)], axis=1)[:, None, :].astype(np.float32)
                if factor > 1:
                    taps = 16 * factor + 1
                    lowpass = filters.kaiser_lowpass(taps, 0.8 / factor, beta=8.0).astype(np.float32)
                    lowpass = lowpass[:, None, None]
                else:
                    lowpass = None
                self._groups.append((factor, lowpass, kernel, hi - lo))
        return real, imag, None, length

    def _full_rate(self, freqs):
        """``(real, imag, length)``: the full-rate kernels ``[length, n_bins]`` (float64)."""
        bank, lengths = filters.wavelet(
            freqs, sr=self.sample_rate, filter_scale=self.filter_scale, norm=1, dtype=np.complex128
        )
        # keras' conv is a cross-correlation, which is what the CQT inner product is; for a real
        # input only the magnitude is kept, so conjugation does not matter.  librosa.cqt scales its
        # L1-normalised filters by their length and then (scale=True) divides by the square root
        # of the length: sqrt(length) in all.
        scale = np.sqrt(lengths)[None, :]
        kernel = bank.T  # (length, n_bins)
        return np.real(kernel) * scale, np.imag(kernel) * scale, bank.shape[1]

    def full_kernel(self) -> np.ndarray:
        """The one-convolution kernel ``(length, 1, 2 * n_bins)`` float32 (real then imaginary
        columns) whose framed inner products the per-octave convolutions compute; rebuilt on
        each call (the layer does not keep it).  A reference for tests and experiments."""
        freqs = self.fmin * 2.0 ** (np.arange(self.n_cq_bins) / self.bins_per_octave)
        real, imag, _ = self._full_rate(freqs)
        return np.concatenate([real, imag], axis=1)[:, None, :].astype(np.float32)

    def _support_groups(self):
        """Full rate (``octave_kernels=False``): per octave of bins, ``(offset, kernel, width)``:
        ``kernel`` ``(rows, 1, 2 * width)`` holds the real then imaginary columns of the octave's
        ``width`` bins, over the rows of :attr:`_conv_kernel` where any of them is non-zero,
        starting at row ``offset``.

        Every constant-Q filter is zero outside its own length around the common centre, and
        the lowest octave's filters are ``2^(octaves - 1)`` times longer than the top one's, so
        one convolution with the longest length multiplies mostly zeros for the upper octaves.
        A convolution per octave over only its non-zero rows leaves out exactly those products:
        the same sums, in another order.
        """
        kernel = self._conv_kernel[:, 0, :]
        n = self.n_cq_bins
        groups = []
        for lo in range(0, n, self.bins_per_octave):
            hi = min(lo + self.bins_per_octave, n)
            cols = np.r_[lo:hi, n + lo : n + hi]
            rows = np.nonzero(np.any(kernel[:, cols] != 0, axis=1))[0]
            first, last = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 1)
            groups.append((first, kernel[first:last, cols][:, None, :].astype(np.float32), hi - lo))
        return groups

    def _frames(self, x):
        n_frames = (ops.shape(x)[1] - self.kernel_length) // self.hop_length + 1
        if not self._groups:  # full rate: one convolution per octave over its kernels' support
            reals, imags = [], []
            for i, (offset, kernel, width) in enumerate(self._trimmed):
                y = self._strided(("trimmed", i), x, kernel, self.hop_length, n_frames, start=offset)
                reals.append(y[..., :width])
                imags.append(y[..., width:])
            return ops.concatenate(reals + imags, axis=-1)
        # x holds the signal's sample n at index n + L // 2 (centred padding); frame t is
        # centred on sample t * hop.  Every group is computed from a zero-padded copy.
        reals, imags = [], []
        for i, (factor, lowpass, kernel, width) in enumerate(self._groups):
            glen = kernel.shape[0]
            taps = 1 if lowpass is None else lowpass.shape[0]
            # decimated sample j is centred on padded index j * factor + shift + (taps - 1) / 2;
            # choose the extra left padding so that it is the original sample j * factor - c
            # with c = factor * (glen - 1) / 2: then output frame t is centred on t * hop.
            c = factor * (glen - 1) // 2
            extra = c + (taps - 1) // 2 - self.kernel_length // 2
            extra_right = max(0, extra + glen * factor + taps)
            xg = ops.pad(x, [[0, 0], [max(extra, 0), extra_right], [0, 0]])
            if extra < 0:
                xg = xg[:, -extra:, :]
            if lowpass is not None:
                n_low = (ops.shape(xg)[1] - taps) // factor + 1
                xg = self._strided(("lowpass", i), xg, lowpass, factor, n_low)
            y = self._strided(("octave", i), xg, kernel, self.hop_length // factor, n_frames)
            reals.append(y[..., :width])
            imags.append(y[..., width:])
        return ops.concatenate(reals + imags, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            fmin=self.fmin, n_bins=self.n_cq_bins, bins_per_octave=self.bins_per_octave,
            filter_scale=self.filter_scale, octave_kernels=self.octave_kernels,
        )
        return config


FRONTENDS = {"mel": MelSpectrogram, "stft": STFTMagnitude, "cqt": ConstantQ, "chroma": Chroma}


def build_frontend(config: dict[str, Any], name: str = "frontend") -> SpectralFrontend:
    """Build a front-end layer from a manifest-style config ``{"kind": "mel", ...}``."""
    if not isinstance(config, dict) or "kind" not in config:
        raise ParameterError(f"front-end config must be a dict with a 'kind' key, got {config!r}")
    kwargs = dict(config)
    kind = kwargs.pop("kind")
    if kind not in FRONTENDS:
        raise ParameterError(f"front-end kind={kind!r} is not one of {sorted(FRONTENDS)}")
    try:
        return FRONTENDS[kind](name=name, **kwargs)
    except ParameterError:
        raise
    except (TypeError, ValueError) as exc:  # unknown keyword arguments
        raise ParameterError(f"bad front-end option for kind={kind!r}: {exc}") from exc
