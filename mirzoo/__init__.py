"""mirzoo: a Keras 3 model zoo for music information retrieval.

>>> import mirzoo
>>> mirzoo.list_models()                                 # doctest: +SKIP
>>> m = mirzoo.load("crnn-tagging")                      # doctest: +SKIP
>>> e = m.extract("song.wav")                            # doctest: +SKIP
>>> e.embeddings.shape, e.timestamps[:3]                 # doctest: +SKIP

Nothing heavy happens at import: Keras and the backend are imported when a
model is first built or loaded.

One process-wide default is set here, before TensorFlow can be imported:
``TF_ENABLE_ONEDNN_OPTS=1`` unless the variable is already set.  TensorFlow 2.21 turns its
oneDNN kernels on by default only on some CPUs (not, for example, on an AMD EPYC with AVX2),
and without them its convolutions ran 1.7x slower end to end for ``cnn-tagging`` and up to 20x
slower for one-channel filters (``benchmarks/README.md``).  Set the variable to ``0`` before
importing mirzoo to keep TensorFlow's own choice; it has no effect once TensorFlow is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mirzoo import errors as _errors
from mirzoo._version import __version__
from mirzoo.errors import (  # noqa: F401  (the error tree is part of the top-level API)
    AudioError,
    AudioFileError,
    ManifestError,
    MirzooError,
    MissingDependencyError,
    OutputError,
    ParameterError,
    PublishError,
    SilentAudioWarning,
    UnknownLayerError,
    UnknownModelError,
    WeightsError,
)

__all__ = ["__version__", "load", "list_models", "model_info", "example_audio", "Embeddings", "Extractor",
           *_errors.__all__]


def example_audio() -> str:
    """Path of the example clip shipped with mirzoo (12 s, 16 kHz mono FLAC).

    Bach, chorale BWV 7.7 (music21 corpus ``bach/bwv7.7``, public-domain score), pickup and
    first four measures, all parts on piano, rendered with FluidSynth and the FluidR3_GM
    soundfont; see ``tools/make_example.py``.
    """
    return str(Path(__file__).resolve().parent / "data" / "example.flac")


def __getattr__(name):
    # Lazy attributes: importing mirzoo stays cheap and free of backend side effects.
    # (function-level imports: deferred so that `import mirzoo` and `mirzoo list` never import Keras/TensorFlow)
    if name == "load":
        from mirzoo.loader import load

        return load
    if name in ("list_models", "model_info"):
        from mirzoo.zoo import manifest

        return getattr(manifest, name)
    if name == "Embeddings":
        from mirzoo.embeddings import Embeddings

        return Embeddings
    if name == "Extractor":
        from mirzoo.extractor import Extractor

        return Extractor
    raise AttributeError(f"module 'mirzoo' has no attribute {name!r}")
