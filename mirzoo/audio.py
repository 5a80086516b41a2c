"""Audio input: decoding, channel mixing, PCM scaling, resampling and validation.

This is the one boundary where user audio is checked.  Everything after it
works on a finite, mono, ``float32`` waveform at the model's sample rate.

Files are decoded in blocks and resampled with a streaming resampler, so a
long file never needs its full-rate, multi-channel decoded form in memory:
only the mono signal at the target rate is kept.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import warnings
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import soundfile as sf
import soxr

from mirzoo.errors import AudioError, AudioFileError, MirzooError, ParameterError, SilentAudioWarning

__all__ = [
    "load_audio", "decode_or_reason", "FileStream", "prepare_audio", "validate_audio", "check_sr", "check_audio_path", "stream_file",
    "change_rate", "rate_changed_blocks", "check_rate", "MIN_RATE", "MAX_RATE",
    "AUDIO_EXTENSIONS", "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "MAX_AMPLITUDE",
    "SILENCE_PEAK", "peak_amplitude", "is_silent", "dbfs", "silence_message", "warn_silent",
]

AudioPath = Union[str, os.PathLike]

#: File extensions treated as audio when walking folders.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".m4a")

# Frames read per block when streaming a file (about 3 s at 44.1 kHz).
_BLOCK_FRAMES = 1 << 17

#: Sample rates accepted for arrays and files, in Hz (inclusive): 1 kHz to 768 kHz.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000

#: Largest accepted absolute sample value (float input; integer PCM is scaled to [-1, 1)).
#: 1e6 is 120 dB above full scale: larger values are a units bug, and squaring them in a
#: front end overflows float32.
MAX_AMPLITUDE = 1e6

#: below this peak amplitude (-80 dBFS: under one 14-bit step, so dithered 16-bit silence is under it)
#: an input counts as silent (:func:`is_silent`)
SILENCE_PEAK = 1e-4

# Output samples preallocated from a file header's frame count: trusted up to 64 output samples per byte
# of file (far above any real codec's ratio, even FLAC on near-silence, yet a small file whose header claims
# 2^36 frames gets a small buffer), and always up to 2^24 samples (64 MiB of float32).  Beyond that the
# buffer grows as samples really arrive.  A trusted count means one buffer of the signal's size: an hour
# at 16 kHz peaks at 230 MB, not at the 400 MB of doubling from 64 MiB.
_MAX_PREALLOC = 1 << 24
_PREALLOC_PER_BYTE = 64


def peak_amplitude(y: np.ndarray) -> float:
    """The largest absolute sample of ``y`` (0.0 for an empty array)."""
    return max(float(y.max()), -float(y.min())) if y.size else 0.0  # no |y| temporary


def is_silent(peak: float) -> bool:
    """Whether a signal whose largest absolute sample is ``peak`` counts as silent (below :data:`SILENCE_PEAK`)."""
    return peak < SILENCE_PEAK


def dbfs(peak: float) -> str:
    """``peak`` (full scale 1.0) in dBFS for a message: ``"-96.3 dBFS"``, or ``"-inf dBFS"`` for zero."""
    return f"{20 * np.log10(peak):.1f} dBFS" if peak > 0 else "-inf dBFS"


def silence_message(where: str, peak: float, what: str) -> str:
    """The text of a :class:`~mirzoo.SilentAudioWarning`: ``where`` (a path, ``audio`` or ``audio[i]``) is
    silent, at ``peak``, so ``what`` (e.g. "its 'tags' probabilities") describes the model, not the audio."""
    return f"{where} is silent (peak {dbfs(peak)}, below {dbfs(SILENCE_PEAK)}): {what} describe the model, not the audio"


def warn_silent(items: list, peaks: list, *, indexed: bool, what: str, stacklevel: int = 2) -> None:
    """A :class:`~mirzoo.SilentAudioWarning` (:func:`silence_message`) for each of ``items`` whose peak
    (``peaks``, in the same order) :func:`is_silent`; ``indexed``: arrays are named ``audio[i]`` (list
    input), else ``audio``.  ``stacklevel`` counts from the caller of this function."""
    for i, (item, peak) in enumerate(zip(items, peaks)):
        if is_silent(peak):
            where = os.fspath(item) if isinstance(item, (str, os.PathLike)) else (f"audio[{i}]" if indexed else "audio")
            warnings.warn(SilentAudioWarning(silence_message(where, peak, what), peak=peak, what=what),
                          stacklevel=stacklevel + 1)


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
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise ParameterError(
            f"{name}={sr!r} Hz is outside the supported range {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
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
    if y.shape[0] <= y.shape[1]:
        return y.mean(axis=0, dtype=np.float64).astype(np.float32)  # (channels, n): numpy adds whole rows
    return _downmix(y, np.float64)


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
    # two reductions instead of np.isfinite(y) and np.abs(y): no temporary the size of the signal (an hour
    # at 16 kHz is 230 MB); NaN and inf propagate through max/min, so they are still caught
    hi, lo = float(np.max(y)), float(np.min(y))
    if not (math.isfinite(hi) and math.isfinite(lo)):
        bad = int(np.size(y) - np.count_nonzero(np.isfinite(y)))
        raise AudioError(f"{name} contains {bad} non-finite sample(s) (NaN or inf): expected finite values")
    peak = max(hi, -lo)
    if peak > MAX_AMPLITUDE:
        raise AudioError(
            f"{name} has peak amplitude {peak:.3g}: expected at most {MAX_AMPLITUDE:g} (float audio is in [-1, 1])"
        )
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


#: Playback-rate factors :func:`change_rate` accepts (inclusive): an octave down to an octave up.
MIN_RATE = 0.5
MAX_RATE = 2.0


def check_rate(rate, *, name: str = "rate") -> float:
    """``rate`` as a float if it is a finite number in [:data:`MIN_RATE`, :data:`MAX_RATE`]."""
    ok = (not isinstance(rate, bool) and isinstance(rate, (int, float, np.integer, np.floating))
          and math.isfinite(float(rate)) and MIN_RATE <= float(rate) <= MAX_RATE)
    if not ok:
        raise ParameterError(f"{name}={rate!r}: expected a playback-rate factor between {MIN_RATE:g} and {MAX_RATE:g} "
                             "(1 leaves the audio as it is)")
    return float(rate)


def change_rate(y: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """``y`` (mono, at ``sr``) played ``rate`` times faster: tempo and pitch both scaled by ``rate``, as a
    tape played faster.  The signal is resampled from ``sr * rate`` to ``sr`` (soxr, high quality), so
    it has ``len(y) / rate`` samples (rounded) at ``sr``; what happened at ``t`` seconds happens at
    ``t / rate``.  ``rate == 1`` returns ``y`` itself."""
    rate = check_rate(rate)
    if rate == 1.0:
        return y
    return soxr.resample(y, sr * rate, sr, quality="HQ").astype(np.float32, copy=False)


def rate_changed_blocks(blocks, sr: int, rate: float) -> Iterator[np.ndarray]:
    """The consecutive mono float32 ``blocks`` of a signal at ``sr``, played ``rate`` times faster
    (:func:`change_rate`, block by block with soxr's streaming resampler: the same signal, never held
    whole).  Empty output blocks are skipped."""
    rate = check_rate(rate)
    if rate == 1.0:
        yield from blocks
        return
    resampler = soxr.ResampleStream(sr * rate, sr, 1, dtype="float32", quality="HQ")
    for block in blocks:
        out = resampler.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=False)
        if out.size:
            yield out
    tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if tail.size:
        yield tail


def _downmix(block: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Mean of the columns of a ``(frames, channels)`` array, summed in ``dtype``, as float32.

    Equal to ``block.mean(axis=1, dtype=dtype)`` (the same sums in the same order for fewer than 8
    channels; within rounding beyond).  That mean reduces every row of a few samples on its own:
    1.8 ms for a float32 stereo block of 2**17 frames against 0.1 ms for adding whole columns, about
    half of the decoding time of a stereo 44.1 kHz FLAC (and 6.5 -> 1.3 ms in float64 for a 10-s
    stereo array given to ``extract``).
    """
    acc = block[:, 0].astype(dtype)  # a copy
    for i in range(1, block.shape[1]):
        acc += block[:, i]
    acc /= dtype(block.shape[1])
    return acc.astype(np.float32, copy=False)


def _decoded_blocks(f: sf.SoundFile, sr_in: int, target_sr: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks of an open file at ``target_sr`` (streaming resampler; none empty)."""
    resampler = None if sr_in == target_sr else soxr.ResampleStream(sr_in, target_sr, 1, dtype="float32", quality="HQ")
    while True:
        block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        last = block.shape[0] < _BLOCK_FRAMES
        mono = _downmix(block) if block.shape[1] > 1 else block[:, 0]
        if resampler is not None:
            mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
        if mono.size:
            yield mono
        if last:
            return


def stream_file(path: str, target_sr: int) -> np.ndarray:
    """Decode ``path`` with libsndfile block by block into mono float32 at ``target_sr``."""
    with sf.SoundFile(path) as f:
        sr_in = check_sr(int(f.samplerate), name=f"sample rate of '{path}'")
        # preallocate the mono output (a little slack for the resampler) instead of keeping a list of
        # blocks and their concatenation: the peak is one copy of the signal, not two
        expected = int(np.ceil(max(f.frames, 0) * target_sr / sr_in)) + 64 if f.frames > 0 else _BLOCK_FRAMES
        # the header's frame count may lie: trust it only as far as the file's size makes plausible
        expected = min(expected, max(_MAX_PREALLOC, _PREALLOC_PER_BYTE * os.path.getsize(path)))
        out = np.empty(expected, dtype=np.float32)
        filled = 0
        for mono in _decoded_blocks(f, sr_in, target_sr):
            if filled + mono.size > out.size:  # frame count unknown or underestimated
                out = np.resize(out, max(2 * out.size, filled + mono.size))
            out[filled : filled + mono.size] = mono
            filled += mono.size
    return out[:filled].copy() if filled < out.size // 2 else out[:filled]


class FileStream:
    """A file decoded block by block into checked mono float32 at ``target_sr``, never whole.

    For audio too long to hold decoded: :meth:`mirzoo.inference.runner.Runner.run_inputs` cuts
    windows from the blocks as they arrive.  The blocks are exactly those :func:`load_audio`
    concatenates for a file libsndfile reads.  Opening reads only the header
    (:class:`~mirzoo.errors.AudioFileError` for a missing file; any libsndfile error as is, so
    the caller can fall back to :func:`load_audio`).

    Attributes
    ----------
    expected_samples : int
        Decoded length the header announces (0 if unknown); the real length may differ by the
        resampler's rounding, or more for a damaged header.
    """

    def __init__(self, path: AudioPath, target_sr: int):
        self.path = check_audio_path(path)
        self.target_sr = check_sr(target_sr, name="target_sr")
        with _quiet_stderr(_is_mpeg(self.path)), sf.SoundFile(str(self.path)) as f:
            self.sr_in = check_sr(int(f.samplerate), name=f"sample rate of '{self.path}'")
            frames = max(int(f.frames), 0)
        self.expected_samples = int(np.ceil(frames * self.target_sr / self.sr_in))

    def __iter__(self) -> Iterator[np.ndarray]:
        name = f"audio file '{self.path}'"
        total = 0
        try:
            with _quiet_stderr(_is_mpeg(self.path)), sf.SoundFile(str(self.path)) as f:
                for block in _decoded_blocks(f, self.sr_in, self.target_sr):
                    yield validate_audio(block, name=f"{name} (the block at {total / self.target_sr:.1f} s)")
                    total += block.size
        except MirzooError:
            raise
        except Exception as exc:  # a decoding error after the header was read
            raise AudioFileError(f"cannot decode {name} after {total / self.target_sr:.1f} s: {exc}") from exc
        if total == 0:
            raise AudioError(f"{name} is empty (0 samples): expected at least one sample")


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
    p = check_audio_path(path)
    try:
        with _quiet_stderr(_is_mpeg(p)):
            y = stream_file(str(p), target_sr)
    except AudioFileError:
        raise
    except ParameterError as exc:  # a header value out of range (the message names the file)
        raise AudioFileError(str(exc)) from exc
    except Exception as sf_error:  # libsndfile cannot read it: try audioread/ffmpeg
        try:
            import librosa  # deferred: librosa is slow to import (numba) and only needed here

            import audioread  # deferred: with librosa

            # audioread (ffmpeg) only: librosa's own soundfile path would repeat what just failed, and it
            # allocates whatever frame count the header claims (a FLAC claiming 2^36 samples: 256 GiB)
            with warnings.catch_warnings(), _quiet_stderr(True), audioread.audio_open(str(p)) as source:
                warnings.simplefilter("ignore")
                y, _ = librosa.load(source, sr=target_sr, mono=True, res_type="soxr_hq")
            y = y.astype(np.float32, copy=False)
        except Exception as fallback_error:
            why = str(fallback_error).strip() or "no installed decoder (ffmpeg, audioread) recognises the format"
            raise AudioFileError(
                f"cannot decode audio file '{p}': {sf_error} (fallback decoder: "
                f"{type(fallback_error).__name__}: {why})"
            ) from fallback_error
    return validate_audio(y, name=f"audio file '{p}'")


def decode_or_reason(path: str, sr: int) -> tuple[Optional[np.ndarray], Optional[str]]:
    """:func:`load_audio` that never raises for a bad file: ``(waveform, None)`` or ``(None, reason)``.

    This is what the folder engine's decoder processes run (:mod:`mirzoo.batch`); it lives here,
    in a module that does not import Keras, so that a worker process unpickling it stays light.
    """
    try:
        return load_audio(path, sr), None
    except MirzooError as exc:
        return None, str(exc)
    except Exception as exc:  # a decoder bug must not stop the whole run
        return None, f"{type(exc).__name__}: {exc}"


def check_audio_path(path: AudioPath) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names a regular file (symlinks followed).

    Raises :class:`AudioFileError` naming the path for a missing file, a broken symlink, a
    symlink loop, a directory, or anything that is not a regular file (a FIFO, socket or
    device would block or never end).
    """
    p = Path(os.fspath(path))
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        if os.path.islink(p):
            raise AudioFileError(f"'{p}' is a broken symbolic link (to '{os.readlink(p)}')") from None
        raise AudioFileError(f"audio file not found: '{p}'") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioFileError(f"'{p}' is a symbolic link loop: it never reaches a file") from None
        raise AudioFileError(f"cannot open audio file '{p}': {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise AudioFileError(f"'{p}' is a directory, expected an audio file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise AudioFileError(f"'{p}' is {kind}, not a regular file: expected an audio file")
    return p


def _is_mpeg(p: Path) -> bool:
    """True for an MP3 file (by suffix, ID3 tag or MPEG frame sync): its decoder writes notes to stderr."""
    if p.suffix.lower() in (".mp3", ".mp2", ".mpga"):
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


@contextlib.contextmanager
def _quiet_stderr(enabled: bool):
    """Send file descriptor 2 to /dev/null for the block (C decoders such as mpg123 print there)."""
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable fd 2: nothing to silence
        yield
        return
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
