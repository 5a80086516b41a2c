"""Audio input: decoding, channel mixing, PCM scaling, resampling and validation.

This is the one boundary where user audio is checked.  Everything after it
works on a finite, mono, ``float32`` waveform at the model's sample rate.

Files are decoded in blocks and resampled with a streaming resampler, so a
long file never needs its full-rate, multi-channel decoded form in memory:
only the mono signal at the target rate is kept.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import soxr

from mirzoo.errors import AudioError, AudioFileError, ParameterError

__all__ = ["load_audio", "prepare_audio", "validate_audio", "AUDIO_EXTENSIONS"]

AudioPath = Union[str, os.PathLike]

#: File extensions treated as audio when walking folders.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".m4a")

# Frames read per block when streaming a file (about 3 s at 44.1 kHz).
_BLOCK_FRAMES = 1 << 17


def check_sr(sr, *, name: str = "sr") -> int:
    if sr is None:
        raise ParameterError(
            f"{name}=None: a sample rate is required for array input "
            f"(pass sr=<int Hz>, e.g. sr=44100)"
        )
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float, np.floating)):
        raise ParameterError(f"{name}={sr!r} must be a positive number of Hz, got type {type(sr).__name__}")
    if not np.isfinite(sr) or sr <= 0:
        raise ParameterError(f"{name}={sr!r} must be a positive number of Hz")
    if float(sr) != int(sr):
        raise ParameterError(f"{name}={sr!r} must be a whole number of Hz")
    return int(sr)


def _pcm_to_float(y: np.ndarray) -> np.ndarray:
    """Scale integer PCM to float32 in [-1, 1); pass floating input through as float32."""
    if y.dtype.kind == "f":
        return y.astype(np.float32, copy=False)
    if y.dtype.kind == "i":
        scale = float(2 ** (8 * y.dtype.itemsize - 1))
        return (y.astype(np.float32) / scale).astype(np.float32)
    if y.dtype.kind == "u":
        # unsigned PCM (e.g. 8-bit WAV) is offset binary
        half = float(2 ** (8 * y.dtype.itemsize - 1))
        return ((y.astype(np.float64) - half) / half).astype(np.float32)
    raise AudioError(
        f"audio dtype {y.dtype} is not supported: expected floating point or integer PCM samples"
    )


def _to_mono(y: np.ndarray) -> np.ndarray:
    """Average channels.  Accepts (n,), (channels, n) or (n, channels)."""
    if y.ndim == 1:
        return y
    if y.ndim != 2:
        raise AudioError(
            f"audio has shape {y.shape}: expected (samples,) for mono or a 2-D "
            f"(channels, samples) / (samples, channels) array"
        )
    # The channel axis is the short one: no real clip has more channels than samples.
    axis = 0 if y.shape[0] <= y.shape[1] else 1
    return y.mean(axis=axis, dtype=np.float64).astype(np.float32)


def validate_audio(y: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """Check that ``y`` is a non-empty, finite, 1-D float waveform; return it as float32.

    Raises
    ------
    AudioError
        If ``y`` is empty, not 1-D, or holds NaN or infinite values.
    """
    if not isinstance(y, np.ndarray):
        raise AudioError(f"{name} must be a numpy array, got {type(y).__name__}")
    if y.ndim != 1:
        raise AudioError(f"{name} must be 1-D after mixing to mono, got shape {y.shape}")
    if y.size == 0:
        raise AudioError(f"{name} is empty (0 samples): expected at least one sample")
    if not np.all(np.isfinite(y)):
        bad = int(np.size(y) - np.count_nonzero(np.isfinite(y)))
        raise AudioError(f"{name} contains {bad} non-finite sample(s) (NaN or inf): expected finite values")
    return y.astype(np.float32, copy=False)


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return y
    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def prepare_audio(y, sr, target_sr: int, *, name: str = "audio") -> np.ndarray:
    """Turn a user array into a validated mono float32 waveform at ``target_sr``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n) or (n, channels)]
        Float samples in [-1, 1] or integer PCM (int16, int32, uint8, ...).
    sr : int > 0
        Sample rate of ``y`` in Hz.
    target_sr : int > 0
        Sample rate the model expects.
    """
    sr = check_sr(sr)
    if isinstance(y, (list, tuple)):
        raise ParameterError(f"{name} must be a numpy array, got {type(y).__name__}")
    if not isinstance(y, np.ndarray):
        raise AudioError(f"{name} must be a numpy array or a path, got {type(y).__name__}")
    if y.dtype.kind not in "fiu":
        raise AudioError(
            f"{name} has dtype {y.dtype}: expected floating point or integer PCM samples"
        )
    if y.size == 0:
        raise AudioError(f"{name} is empty (shape {y.shape}): expected at least one sample")
    y = _to_mono(_pcm_to_float(y))
    validate_audio(y, name=name)
    return validate_audio(_resample(y, sr, target_sr), name=name)


def stream_file(path: str, target_sr: int) -> np.ndarray:
    """Decode ``path`` with libsndfile block by block into mono float32 at ``target_sr``."""
    with sf.SoundFile(path) as f:
        sr_in = int(f.samplerate)
        resampler = None if sr_in == target_sr else soxr.ResampleStream(sr_in, target_sr, 1, dtype="float32", quality="HQ")
        # preallocate the mono output (a little slack for the resampler) instead of keeping a list of
        # blocks and their concatenation: the peak is one copy of the signal, not two
        expected = int(np.ceil(max(f.frames, 0) * target_sr / sr_in)) + 64 if f.frames > 0 else _BLOCK_FRAMES
        out = np.empty(expected, dtype=np.float32)
        filled = 0
        while True:
            block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            last = block.shape[0] < _BLOCK_FRAMES
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
            if mono.size:
                if filled + mono.size > out.size:  # frame count unknown or underestimated
                    out = np.resize(out, max(2 * out.size, filled + mono.size))
                out[filled : filled + mono.size] = mono
                filled += mono.size
            if last:
                break
    return out[:filled].copy() if filled < out.size // 2 else out[:filled]


def load_audio(path: AudioPath, target_sr: int) -> np.ndarray:
    """Decode an audio file to a validated mono float32 waveform at ``target_sr``.

    WAV, FLAC, OGG/Vorbis, Opus and MP3 are read with libsndfile (streamed in
    blocks); other formats fall back to ``librosa.load`` (audioread/ffmpeg).

    Raises
    ------
    AudioFileError
        If the file does not exist or cannot be decoded; the message names the path.
    AudioError
        If the decoded audio is empty or not finite.
    """
    target_sr = check_sr(target_sr, name="target_sr")
    p = Path(os.fspath(path))
    if not p.exists():
        raise AudioFileError(f"audio file not found: '{p}'")
    if p.is_dir():
        raise AudioFileError(f"'{p}' is a directory, expected an audio file")
    try:
        y = stream_file(str(p), target_sr)
    except AudioFileError:
        raise
    except Exception as sf_error:  # libsndfile cannot read it: try audioread/ffmpeg
        try:
            import librosa  # deferred: librosa is slow to import (numba) and only needed here

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, _ = librosa.load(str(p), sr=target_sr, mono=True, res_type="soxr_hq")
            y = y.astype(np.float32, copy=False)
        except Exception as fallback_error:
            raise AudioFileError(
                f"cannot decode audio file '{p}': {sf_error} (fallback decoder: "
                f"{type(fallback_error).__name__}: {fallback_error})"
            ) from fallback_error
    return validate_audio(y, name=f"audio file '{p}'")
