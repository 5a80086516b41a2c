"""Inference precision: a copy of a model that computes in bfloat16 or float16.

``mirzoo.load(name, precision="bfloat16")`` runs every layer after the front-end under Keras'
``mixed_bfloat16`` dtype policy (weights stay float32, products and activations are bfloat16);
``"float16"`` uses ``mixed_float16``.  The front-end keeps float32: the waveform cast to bfloat16
would keep 8 significant bits per sample, a noise floor about 48 dB below each sample that the
log compression would show in every quiet bin.

Where it pays: CPUs with AMX or AVX512-BF16 units run bfloat16 convolutions through oneDNN
(TensorFlow): on a 2-core Sapphire Rapids VM the clip models ran 1.4-1.5x faster than in float32
and the frame models 1.1-1.4x (much of their time is the float32 front-end); ``benchmarks/README.md``,
session 17.  Without those units TensorFlow emulates bfloat16 products, so expect it to be
slower there (not measured: the machine had them); on a GPU it bought
nothing in ``benchmarks/gpu.py``.  Embeddings stayed within 0.9997 in cosine of float32 and head
probabilities within 0.01 (16 clips of 30 s, every model), so ``float32`` stays the default and
what every published figure uses.

The copy is built with :func:`keras.models.clone_model` from the layers' configs, with the
weights assigned from the float32 model; the original model is untouched.
"""

from __future__ import annotations

import keras

from mirzoo._checks import PRECISIONS, valid_precision
from mirzoo.nn.frontend import SpectralFrontend

__all__ = ["with_precision", "precision_of"]


def precision_of(model: keras.Model) -> str:
    """The compute dtype of ``model``'s layers after the front-end: ``"float32"``, ``"bfloat16"`` or
    ``"float16"`` (the first such layer with weights decides)."""
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, SpectralFrontend)) or not layer.weights:
            continue
        return str(layer.dtype_policy.compute_dtype)
    return "float32"


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """A copy of ``model`` whose layers after the front-end compute in ``precision``
    (a key of :data:`mirzoo._checks.PRECISIONS`); ``model`` itself when it already does (or
    ``precision`` is ``None``)."""
    if valid_precision(precision) is None:
        return model
    if precision_of(model) == precision:
        return model
    policy = PRECISIONS[precision]

    def clone(layer):
        config = layer.get_config()
        if not isinstance(layer, (keras.layers.InputLayer, SpectralFrontend)):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
