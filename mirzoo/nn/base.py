"""Shared pieces of the model families: family registry, building blocks, seeded weights.

A *family* is a module in :mod:`mirzoo.nn` that registers a builder with
:func:`register_family`.  A builder takes the ``config`` of a manifest entry
and returns a functional :class:`keras.Model` whose input is a batch of
waveforms ``(batch, samples)`` and whose embedding layers carry the names
listed in the manifest.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Optional

import keras
import numpy as np

from mirzoo.errors import ManifestError, ParameterError, WeightsError

__all__ = [
    "register_family",
    "get_family",
    "derive_outputs",
    "FAMILIES",
    "conv_block",
    "FrequencyMax",
    "TemporalConv2D",
    "global_pool",
    "seeded_weights",
    "apply_seeded_weights",
    "weights_sha256",
]

FAMILIES: dict[str, Callable[..., keras.Model]] = {}
#: per family, ``derive(model, config) -> keras.Model``: weightless outputs added once the weights are set
DERIVED: dict[str, Callable[[keras.Model, dict], keras.Model]] = {}


def register_family(name: str, *, derive: Optional[Callable[[keras.Model, dict], keras.Model]] = None):
    """Decorator: register ``builder(config: dict, name: str) -> keras.Model`` under ``name``.

    ``derive(model, config)``, if given, returns the built model with outputs computed from its
    own (no weights of their own), which :func:`derive_outputs` adds after the weights are set so
    that weight files keep the builder's layout.
    """

    def wrap(builder):
        if name in FAMILIES and FAMILIES[name] is not builder:
            raise ManifestError(f"model family {name!r} is registered twice")
        FAMILIES[name] = builder
        if derive is not None:
            DERIVED[name] = derive
        return builder

    return wrap


def derive_outputs(name: str, model: keras.Model, config: dict) -> keras.Model:
    """``model`` with family ``name``'s derived outputs (see :func:`register_family`); unchanged if none."""
    derive = DERIVED.get(name)
    return model if derive is None else derive(model, dict(config))


def get_family(name: str) -> Callable[..., keras.Model]:
    if name not in FAMILIES:
        raise ManifestError(f"unknown model family {name!r}; registered families: {sorted(FAMILIES)}")
    return FAMILIES[name]


def conv_block(x, filters: int, pool, *, name: str, kernel=(3, 3), batch_norm: bool = True):
    """3x3 conv, batch norm, ELU, max-pool: the block of Choi et al. 2016/2017."""
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=not batch_norm, name=f"{name}_conv")(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(axis=-1, name=f"{name}_bn")(x)
    x = keras.layers.Activation("elu", name=f"{name}_elu")(x)
    if pool is not None and tuple(pool) != (1, 1):
        x = keras.layers.MaxPooling2D(pool_size=tuple(pool), padding="valid", name=f"{name}_pool")(x)
    return x


def add_extra_heads(h, outputs: dict, config: dict) -> None:
    """One sigmoid Dense output on ``h`` per entry of ``config["extra_heads"]`` (``{output name:
    n_units}``: a second tag vocabulary on the same embedding, e.g. the real-music tags distilled by
    ``training/distill.py``), added to ``outputs``; a name that is already an output is refused."""
    for head, units in (config.get("extra_heads") or {}).items():
        if head in outputs:
            raise ManifestError(
                f"extra_heads names {head!r}, which is already an output of the model {sorted(outputs)}")
        outputs[head] = keras.layers.Dense(int(units), activation="sigmoid", name=head)(h)


def global_pool(x, *, name: str, mode: str = "mean"):
    """Pool a (batch, time, freq, channels) or (batch, time, channels) map to (batch, channels[*2])."""
    rank = len(x.shape)
    mean_layer = keras.layers.GlobalAveragePooling2D if rank == 4 else keras.layers.GlobalAveragePooling1D
    max_layer = keras.layers.GlobalMaxPooling2D if rank == 4 else keras.layers.GlobalMaxPooling1D
    if mode == "mean":
        return mean_layer(name=name)(x)
    if mode == "max":
        return max_layer(name=name)(x)
    if mode == "mean+max":
        a = mean_layer(name=f"{name}_mean")(x)
        b = max_layer(name=f"{name}_max")(x)
        return keras.layers.Concatenate(name=name)([a, b])
    raise ParameterError(f"pool mode {mode!r} must be 'mean', 'max' or 'mean+max'")


@keras.saving.register_keras_serializable(package="mirzoo")
class FrequencyMax(keras.layers.Layer):
    """Max over the frequency axis: (batch, time, freq, channels) -> (batch, time, channels);
    with ``axis=1``, of a swapped map: (batch, freq, time, channels) -> (batch, time, channels)."""

    def __init__(self, axis: int = 2, **kwargs):
        super().__init__(**kwargs)
        if axis not in (1, 2):
            raise ParameterError(f"FrequencyMax axis={axis!r} must be 1 (a swapped map) or 2")
        self.axis = int(axis)

    def call(self, inputs):
        return keras.ops.max(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3 - self.axis], input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis)
        return config


@keras.saving.register_keras_serializable(package="mirzoo")
class TemporalConv2D(keras.layers.Conv2D):
    """``(length, 1)`` filters along time, applied to the *swapped* map (batch, freq, time, channels).

    The weights are those of ``Conv2D(filters, (length, 1))`` on a (batch, time, freq, channels)
    map (same kernel shape, name and seeded values); the layer convolves the map with time and
    frequency swapped, its kernel seen as ``(1, length)``, and returns the swapped output.  The
    swap is done once for all the temporal filters of a model, and what follows (a max over
    frequency) reads the swapped output directly.  Why: TensorFlow's oneDNN held ~300 MB after the
    first call of a ``(128, 1)`` kernel over a 16 x 188 x 96 batch, and the three temporal filters of
    ``random-cnn-musical`` as ``(1, length)`` kernels over the swapped map ~50 MB together, at the same
    speed (benchmarks/README.md, session 22).

    Only ``'same'`` padding, stride 1 and dilation 1 (what the output shape logic assumes).
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if (self.padding != "same" or tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1)
                or self.kernel_size[1] != 1 or self.data_format != "channels_last" or self.groups != 1):
            raise ParameterError(
                f"TemporalConv2D takes a (length, 1) kernel with padding='same', stride 1, dilation 1, "
                f"one group and channels_last data; got kernel_size={self.kernel_size}, padding={self.padding!r}, "
                f"strides={self.strides}, dilation_rate={self.dilation_rate}, groups={self.groups}, "
                f"data_format={self.data_format!r}"
            )

    @property
    def applied_kernel_size(self) -> tuple[int, int]:
        """The kernel as it runs over the swapped map: ``(1, length)``."""
        return (1, int(self.kernel_size[0]))

    def convolution_op(self, inputs, kernel):
        kernel = keras.ops.reshape(kernel, self.applied_kernel_size + tuple(kernel.shape[2:]))
        return keras.ops.conv(inputs, kernel, strides=1, padding="same")


# -- deterministic weights -------------------------------------------------------------------


def _relative_path(path: str) -> str:
    """Weight path without the model's own name, so it does not depend on what the model is called."""
    return path.split("/", 1)[1] if "/" in path else path


def _draw(rng: np.random.Generator, path: str, shape: tuple[int, ...], init: str) -> np.ndarray:
    leaf = path.rsplit("/", 1)[-1]
    if leaf in ("bias", "beta", "moving_mean"):
        return np.zeros(shape)
    if leaf in ("gamma", "moving_variance"):
        return np.ones(shape)
    if leaf == "recurrent_kernel":
        # one orthogonal matrix per gate, as keras' default "orthogonal" initialiser
        units, total = shape
        blocks = []
        for _ in range(total // units):
            q, r = np.linalg.qr(rng.standard_normal((units, units)))
            blocks.append(q * np.sign(np.diag(r))[None, :])
        return np.concatenate(blocks, axis=1)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[:-1]))
        fan_out = int(shape[-1]) * (int(np.prod(shape[:-2])) if len(shape) > 2 else 1)
        if init == "he_normal":
            return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        if init == "glorot_uniform":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, shape)
        limit = np.sqrt(6.0 / fan_in)  # he_uniform
        return rng.uniform(-limit, limit, shape)
    raise WeightsError(f"no seeded initialiser for weight {path!r} of shape {shape}")


def seeded_weights(model: keras.Model, seed: int, init: str = "he_uniform") -> list[np.ndarray]:
    """Weights for ``model`` drawn with ``numpy.random.default_rng(seed)``, in ``model.weights`` order.

    The draw depends only on the seed and the weights' shapes and names, never on the
    Keras backend or the machine, so every backend gets bit-identical networks.
    Kernels: He (uniform or normal) or Glorot; recurrent kernels: orthogonal per gate;
    biases and batch-norm shifts/means: 0; batch-norm scales/variances: 1.
    """
    if init not in ("he_uniform", "he_normal", "glorot_uniform"):
        raise ParameterError(f"init={init!r} must be 'he_uniform', 'he_normal' or 'glorot_uniform'")
    rng = np.random.default_rng(seed)
    out = []
    for w in model.weights:
        shape = tuple(int(d) for d in w.shape)
        out.append(np.asarray(_draw(rng, _relative_path(w.path), shape, init), dtype=np.float32))
    return out


def apply_seeded_weights(model: keras.Model, seed: int, init: str = "he_uniform") -> None:
    """Set every weight of ``model`` from :func:`seeded_weights`."""
    for w, value in zip(model.weights, seeded_weights(model, seed, init)):
        w.assign(value)


def weights_sha256(model: keras.Model) -> str:
    """sha256 over the model's weights: names, shapes and little-endian float32 bytes, in order."""
    h = hashlib.sha256()
    for w in model.weights:
        value = np.ascontiguousarray(w, dtype="<f4")  # not convert_to_numpy: see nn.fold._folded_kernel
        h.update(_relative_path(w.path).encode())
        h.update(repr(tuple(value.shape)).encode())
        h.update(value.tobytes())
    return h.hexdigest()
