"""Single-channel convolutions as one matmul: an inference copy of a model for the JAX backend.

XLA's CPU convolutions are slow for some single-channel 2D convolutions: the long temporal
filters of ``random-cnn-musical`` ((128, 1), (64, 1), (32, 1) kernels over the 188 x 96 mel map)
run at ~2 GFLOP/s there, while a float32 matmul reaches 100-200 GFLOP/s on the same cores.
:func:`convs_as_matmul` builds a second functional model in which each such convolution is a
:class:`MatmulConv2D`: the same convolution, computed as one matmul in one of two forms:

``banded``
    A Toeplitz (banded) matrix along one spatial axis whose size is fixed: row ``(j, a_in)``,
    column ``(a_out, f)`` holds ``kernel[a_in - a_out + pad, j, f]`` (zero outside the band), so
    the zero padding of ``'same'`` is part of the matrix.  The kernel's extent along the other axis
    is handled by concatenating that many shifted copies of the input.  It does ``n / k`` times the
    convolution's arithmetic (``n`` the axis length, ``k`` the kernel's extent along it), at
    matmul speed.
``patches``
    im2col: the ``kh * kw`` shifted copies of the (padded) input side by side, times the kernel as a
    ``(kh * kw, filters)`` matrix: the convolution's own arithmetic, with one small operand.

Which convolutions are replaced, and how, is a fixed rule (:func:`matmul_plan`), chosen from
per-layer timings on the JAX backend (benchmarks/README.md), never by timing at load:

* only ``Conv2D`` layers (and :class:`~mirzoo.nn.base.TemporalConv2D`, by the kernel it applies) with
  ``channels_last`` data, one input channel, one group, strides 1 and dilation 1, ``'same'`` or ``'valid'``
  padding (every other convolution is kept as it is: the
  multi-channel 3x3 convolutions, the ``Conv1D`` layers of ``dense-frame`` and ``tcn-music``);
* the kernel is a one-dimensional filter (one tap along one axis, ``k >= 2`` along the other,
  e.g. the ``(128, 1)`` temporal filters) and the input's length ``n`` along the filter's axis is
  fixed, with ``n / k`` at most :data:`BAND_MAX_OVERHEAD`: it becomes ``banded`` along that axis.

Measured at batch 16 on the JAX backend (``benchmarks/conv_as_matmul.py``, 2 cores shared with
two training jobs): the (128, 1), (64, 1) and (32, 1) filters of ``random-cnn-musical`` took 519,
283 and 148 ms as convolutions and 36-40 ms each in the banded form (14.5x, 7.2x, 3.8x).  Kept,
because no form paid: the 3x3 first blocks of the taggers (convolution 32-49 ms; im2col 50-70 ms;
banded, 32-63x the arithmetic, 110-264 ms), the 3x3 first block of ``tcn-music`` (whose time axis
has no fixed length; im2col 100 against 110 ms) and the timbral filters (7, 86) and (7, 38), which
XLA already runs at 50-60 GFLOP/s (banded 21 and 269 ms against 20 and 116 ms).  The ``patches``
form is there for a caller who builds :class:`MatmulConv2D` by hand; :func:`convs_as_matmul` never
picks it.  Cutting the banded axis into tiles that share one small Toeplitz block (about 1.5x the
convolution's arithmetic instead of ``n / k``) was faster in a raw-JAX experiment but not as a
Keras layer ((64, 1): 50 against 37 ms; (32, 1): 38 against 38 ms), so it is not here.

The original model, its weights and the weight files are untouched; every other layer is shared.
Nothing here is JAX-specific (the layer uses ``keras.ops`` only); the runner applies it on the
JAX backend only, because TensorFlow's oneDNN convolutions are 1.5-2.6x faster than these
matmuls (measured with ``TF_ENABLE_ONEDNN_OPTS=1``; TensorFlow turns oneDNN on by default only on
some CPUs, and without it its convolutions are as slow as XLA's here: benchmarks/README.md).
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from mirzoo.errors import ParameterError
from mirzoo.nn.base import TemporalConv2D
from mirzoo.nn.fold import single_input

__all__ = ["MatmulConv2D", "convs_as_matmul", "matmul_plan", "BAND_MAX_OVERHEAD", "banded_matrix"]

#: largest ``axis length / kernel extent`` (extra arithmetic of the banded form) still replaced
BAND_MAX_OVERHEAD = 8.0


def _pads(size: int, padding: str) -> tuple[int, int]:
    """Zeros before and after one axis for a stride-1, dilation-1 kernel of ``size`` taps."""
    if padding == "valid":
        return 0, 0
    total = size - 1
    return total // 2, total - total // 2  # as XLA and TensorFlow: the odd one at the end


def banded_matrix(kernel: np.ndarray, n_in: int, padding: str) -> np.ndarray:
    """The Toeplitz matrix of ``kernel [k_band, k_other, filters]`` along an axis of ``n_in``.

    Shape ``(k_other * n_in, n_out * filters)``; row ``j * n_in + a_in``, column
    ``a_out * filters + f`` holds ``kernel[a_in - a_out + pad_before, j, f]`` inside the band.
    """
    k_band, k_other, filters = kernel.shape
    before, after = _pads(k_band, padding)
    n_out = n_in + before + after - k_band + 1
    if n_out < 1:
        raise ParameterError(f"an axis of {n_in} is shorter than the kernel's {k_band} taps with padding={padding!r}")
    matrix = np.zeros((k_other, n_in, n_out, filters), dtype=np.float64)
    for a_out in range(n_out):
        lo = max(0, a_out - before)
        hi = min(n_in, a_out - before + k_band)
        taps = np.arange(lo, hi) - a_out + before
        matrix[:, lo:hi, a_out, :] = np.transpose(kernel[taps], (1, 0, 2))
    return matrix.reshape(k_other * n_in, n_out * filters)


@keras.saving.register_keras_serializable(package="mirzoo")
class MatmulConv2D(keras.layers.Layer):
    """A stride-1, one-input-channel ``Conv2D`` (``channels_last``) computed as one matmul.

    Parameters
    ----------
    filters : int > 0
    kernel_size : (int, int)
    padding : {'same', 'valid'}
    form : {'banded', 'patches'}
        See the module docstring.
    axis : {1, 2} or None
        The banded axis (1 rows, 2 columns); ``None`` for ``patches``.
    axis_length : int or None
        The banded axis' input length (the matrix is built for it).
    activation : callable or str
    """

    def __init__(self, filters, kernel_size, padding="valid", form="patches", axis=None, axis_length=None,
                 activation=None, **kwargs):
        super().__init__(**kwargs)
        if padding not in ("same", "valid"):
            raise ParameterError(f"padding={padding!r}: expected 'same' or 'valid'")
        if form not in ("banded", "patches"):
            raise ParameterError(f"form={form!r}: expected 'banded' or 'patches'")
        if form == "banded" and (axis not in (1, 2) or not axis_length):
            raise ParameterError(f"the banded form needs axis 1 or 2 and its length, got axis={axis!r}, "
                             f"axis_length={axis_length!r}")
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.padding = padding
        self.form = form
        self.axis = None if form == "patches" else int(axis)
        self.axis_length = None if form == "patches" else int(axis_length)
        self.activation = keras.activations.get(activation)
        kh, kw = self.kernel_size
        if form == "patches":
            self._matrix_shape = (kh * kw, self.filters)
        else:
            k_band, k_other = (kh, kw) if self.axis == 1 else (kw, kh)
            before, after = _pads(k_band, padding)
            n_out = self.axis_length + before + after - k_band + 1
            self._matrix_shape = (k_other * self.axis_length, n_out * self.filters)

    def build(self, input_shape):
        if input_shape[-1] != 1:
            raise ParameterError(f"MatmulConv2D takes one input channel, got input shape {tuple(input_shape)}")
        if self.form == "banded" and input_shape[self.axis] is not None and input_shape[self.axis] != self.axis_length:
            raise ParameterError(f"axis {self.axis} of the input is {input_shape[self.axis]}, the banded matrix "
                             f"was built for {self.axis_length}")
        self.matrix = self.add_weight(name="matrix", shape=self._matrix_shape, initializer="zeros", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros", trainable=False)

    def set_kernel(self, kernel, bias=None) -> None:
        """Fill the matrix from a ``Conv2D`` kernel ``(kh, kw, 1, filters)`` and bias."""
        kernel = np.asarray(kernel, dtype=np.float64)
        expected = self.kernel_size + (1, self.filters)
        if kernel.shape != expected:
            raise ParameterError(f"kernel of shape {kernel.shape}: expected {expected}")
        kernel = kernel[:, :, 0, :]
        if self.form == "patches":
            matrix = kernel.reshape(-1, self.filters)
        else:
            oriented = kernel if self.axis == 1 else np.transpose(kernel, (1, 0, 2))
            matrix = banded_matrix(oriented, self.axis_length, self.padding)
        self.matrix.assign(matrix.astype(np.float32))
        self.bias.assign(np.zeros(self.filters, np.float32) if bias is None else np.asarray(bias, np.float32))

    def call(self, inputs):
        kh, kw = self.kernel_size
        x = inputs[..., 0]  # (batch, rows, cols)
        shape = keras.ops.shape(x)
        if self.form == "patches":
            (t0, t1), (f0, f1) = _pads(kh, self.padding), _pads(kw, self.padding)
            if t0 or t1 or f0 or f1:
                x = keras.ops.pad(x, [[0, 0], [t0, t1], [f0, f1]])
            rows = shape[1] + t0 + t1 - kh + 1
            cols = shape[2] + f0 + f1 - kw + 1
            stacked = [x[:, i : i + rows, j : j + cols] for i in range(kh) for j in range(kw)]
            patches = keras.ops.stack(stacked, axis=-1)  # (batch, rows, cols, kh * kw)
            y = keras.ops.matmul(patches, self.matrix)
        else:
            if self.axis == 1:
                x = keras.ops.transpose(x, (0, 2, 1))  # banded axis last
            k_other = kw if self.axis == 1 else kh
            before, after = _pads(k_other, self.padding)
            if before or after:
                x = keras.ops.pad(x, [[0, 0], [before, after], [0, 0]])
            n_other = keras.ops.shape(x)[1] - k_other + 1
            if k_other > 1:
                # (batch, n_other, k_other * n_in): the shifted copies side by side, copy j first
                x = keras.ops.concatenate([x[:, j : j + n_other, :] for j in range(k_other)], axis=-1)
            y = keras.ops.matmul(x, self.matrix)  # (batch, n_other, n_out * filters)
            y = keras.ops.reshape(y, (keras.ops.shape(y)[0], n_other, -1, self.filters))
            if self.axis == 1:
                y = keras.ops.transpose(y, (0, 2, 1, 3))
        y = y + self.bias
        return self.activation(y) if self.activation is not None else y

    def compute_output_shape(self, input_shape):
        out = list(input_shape[:3]) + [self.filters]
        for axis, k in ((1, self.kernel_size[0]), (2, self.kernel_size[1])):
            if out[axis] is not None:
                before, after = _pads(k, self.padding)
                out[axis] = out[axis] + before + after - k + 1
        return tuple(out)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, padding=self.padding, form=self.form,
                      axis=self.axis, axis_length=self.axis_length,
                      activation=keras.activations.serialize(self.activation))
        return config


def matmul_plan(conv, input_shape) -> Optional[dict]:
    """How :func:`convs_as_matmul` replaces ``conv`` (input ``(batch, rows, cols, channels)``):
    ``{"form": "banded", "axis": 1 | 2, "axis_length": n}``, or ``None`` to keep it.  The rule is the module docstring's."""
    if type(conv) not in (keras.layers.Conv2D, TemporalConv2D) or conv.data_format != "channels_last":
        return None
    if conv.groups != 1 or tuple(conv.strides) != (1, 1) or tuple(conv.dilation_rate) != (1, 1):
        return None
    if conv.padding not in ("same", "valid") or len(input_shape) != 4 or input_shape[-1] != 1:
        return None
    kh, kw = conv.applied_kernel_size if isinstance(conv, TemporalConv2D) else conv.kernel_size
    if (kh == 1) == (kw == 1):
        return None  # a 2D kernel, or a single tap
    axis, k = (1, kh) if kw == 1 else (2, kw)
    n = input_shape[axis]
    if n is None or n < k or n / k > BAND_MAX_OVERHEAD:
        return None
    return {"form": "banded", "axis": axis, "axis_length": int(n)}


def convs_as_matmul(model: keras.Model) -> keras.Model:
    """An inference copy of ``model`` with each convolution :func:`matmul_plan` accepts as a
    :class:`MatmulConv2D` built from its kernel and bias; ``model`` itself if there is none.

    Every other layer is shared with ``model``.  Outputs equal ``model``'s up to float32 rounding
    (the sums run in another order).  For inference only: training the copy would not train ``model``.
    """
    plans = {}
    for layer in model.layers:
        tensor = single_input(layer)  # a shared layer (or one with several inputs) is kept
        plan = None if tensor is None else matmul_plan(layer, tuple(tensor.shape))
        if plan is not None:
            plans[layer.name] = plan
    if not plans:
        return model
    built = {}

    def clone(layer):
        plan = plans.get(layer.name)
        if plan is None:
            return layer
        # from the attributes, not get_config(): see mirzoo.nn.fold (it would import TensorFlow)
        size = layer.applied_kernel_size if isinstance(layer, TemporalConv2D) else layer.kernel_size
        new = MatmulConv2D(layer.filters, size, padding=layer.padding, activation=layer.activation,
                           name=layer.name, dtype=layer.dtype_policy, **plan)
        built[layer.name] = new
        return new

    copy = keras.models.clone_model(model, clone_function=clone)
    for name, new in built.items():
        old = model.get_layer(name)
        kernel = np.asarray(old.kernel).reshape(tuple(new.kernel_size) + (1, new.filters))
        bias = np.asarray(old.bias) if old.use_bias else None
        new.set_kernel(kernel, bias)
    return copy
