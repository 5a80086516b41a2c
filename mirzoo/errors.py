"""Exception hierarchy of mirzoo.

Every error raised on purpose by mirzoo derives from :class:`MirzooError`, so
``except mirzoo.MirzooError`` catches them all.  Errors about a bad argument
also derive from :class:`ValueError` (or :class:`FileNotFoundError` for
missing files) so that generic code keeps working.
"""

from __future__ import annotations

__all__ = [
    "MirzooError",
    "ParameterError",
    "AudioError",
    "AudioFileError",
    "UnknownModelError",
    "UnknownLayerError",
    "WeightsError",
    "ManifestError",
    "PublishError",
    "MissingDependencyError",
    "OutputError",
    "SilentAudioWarning",
]


class MirzooError(Exception):
    """Base class of every error raised by mirzoo."""


class ParameterError(MirzooError, ValueError):
    """A parameter has a bad value, type or shape."""


class AudioError(ParameterError):
    """Audio content is unusable (empty, not finite, wrong shape or dtype)."""


class AudioFileError(MirzooError, OSError):
    """An audio file is missing, unreadable or cannot be decoded."""


class UnknownModelError(MirzooError, KeyError):
    """A model name is not in the registry.

    ``str()`` of a plain :class:`KeyError` adds quotes around the message;
    this class keeps the message readable.
    """

    def __str__(self) -> str:  # pragma: no cover - trivial
        return str(self.args[0]) if self.args else ""


class UnknownLayerError(ParameterError):
    """A layer name is not one of the model's embedding layers."""


class WeightsError(MirzooError):
    """Weights are missing, do not match their sha256, or do not fit the model."""


class ManifestError(MirzooError):
    """The weights manifest is malformed or inconsistent."""


class PublishError(MirzooError):
    """Building or uploading a hub repository failed."""


class MissingDependencyError(MirzooError, ImportError):
    """An optional dependency of mirzoo is not installed; the message names the install command."""


class OutputError(MirzooError, OSError):
    """An output cannot be written: its folder is not writable, it is a directory, or another
    process is writing it (the message names the path, and the process)."""


class SilentAudioWarning(UserWarning):
    """An input is digitally silent (every sample below :data:`mirzoo.audio.SILENCE_PEAK`): what a
    model says of it (``tag()``'s probabilities) describes the model, not the audio.  A warning,
    not an error: silence is valid input, and the caller decides what to do with its results.

    ``peak`` (the input's largest absolute sample) and ``what`` (the results it concerns, e.g. "its 'tags'
    probabilities") let a caller word the warning for its own name of the input
    (:func:`mirzoo.audio.silence_message`)."""

    def __init__(self, message: str = "", *, peak: float | None = None, what: str | None = None):
        super().__init__(message)
        self.peak, self.what = peak, what
