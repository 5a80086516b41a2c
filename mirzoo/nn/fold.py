"""Batch-norm folding: an inference copy of a model with each BN merged into the conv before it.

At inference a batch normalisation is an affine map per channel,
``gamma * (x - mean) / sqrt(var + eps) + beta``; after a convolution it can be merged into
that convolution's kernel and bias, which saves a full pass over every feature map.
:func:`fold_batch_norm` builds a second functional model that shares every other layer with
the original (no weight copied, the front-end constants included) and has, for each
``Conv -> BatchNormalization`` pair on the channel axis, one convolution with a bias and no
BN.  The original model, its weights and the weight files are untouched.

A BN that does not follow a convolution on its channel axis (e.g. the per-band ``input_bn``
before the first convolution, whose zero padding makes a fold inexact at the borders) is kept.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["fold_batch_norm", "foldable_pairs", "single_input", "FoldedBatchNorm"]

_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


@keras.saving.register_keras_serializable(package="mirzoo")
class FoldedBatchNorm(keras.layers.Layer):
    """What stands in a folded model where a batch norm was: the identity (its work is in the conv)."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def single_input(layer):
    """The one input tensor of a layer called once on one input, or ``None`` (a shared layer, or one
    with several inputs, which an inference rewrite leaves as it is)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]


def _producer(layer):
    """The single layer whose output is ``layer``'s single input, or ``None``."""
    tensor = single_input(layer)
    history = None if tensor is None else getattr(tensor, "_keras_history", None)
    return None if history is None else history[0]


def foldable_pairs(model: keras.Model) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` of every convolution whose only consumer is a channel-axis BN."""
    pairs = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = _producer(layer)
        if not isinstance(conv, _CONVS) or conv.data_format != "channels_last":
            continue
        rank = len(conv.kernel.shape)  # spatial dims + 2
        axis = layer.axis if isinstance(layer.axis, int) else None
        if axis is None or axis not in (-1, rank - 1):
            continue
        if len(conv._inbound_nodes) != 1 or len(conv._outbound_nodes) != 1:
            continue  # a shared conv or one whose output is used elsewhere cannot change
        pairs.append((conv.name, layer.name))
    return pairs


def _folded_kernel(conv, bn) -> tuple[np.ndarray, np.ndarray]:
    # np.asarray on the variables themselves: keras.ops.convert_to_numpy(variable) calls np.array on a
    # TensorFlow variable whose __array__ takes no copy argument (a DeprecationWarning per weight on numpy 2)
    kernel = np.asarray(conv.kernel, np.float64)
    out = kernel.shape[-1]
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else np.zeros(out)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones(out)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros(out)
    mean = np.asarray(bn.moving_mean, np.float64)
    var = np.asarray(bn.moving_variance, np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return (kernel * scale).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def _conv_arguments(conv) -> dict:
    """Constructor arguments of a biased copy of ``conv``, read from its attributes.

    Not ``conv.get_config()``: Keras serialises the dtype policy there, and its serialiser checks
    whether TensorFlow is importable by importing it, which on the JAX, torch or NumPy backend adds
    TensorFlow's whole runtime (about 400 MB of resident memory) to a process that never runs it.
    The initialisers do not matter: the kernel and bias are assigned after the copy is built.
    """
    return {"filters": conv.filters, "kernel_size": conv.kernel_size, "strides": conv.strides,
            "padding": conv.padding, "data_format": conv.data_format, "dilation_rate": conv.dilation_rate,
            "groups": conv.groups, "activation": conv.activation, "use_bias": True, "name": conv.name,
            "dtype": conv.dtype_policy}


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """An inference copy of ``model`` with each ``Conv -> BN`` pair merged into one biased conv.

    Every other layer is shared with ``model``; outputs equal ``model``'s in inference mode
    (``training=False``) up to float32 rounding.  A model without such a pair is returned
    as it is.  The copy is for inference only: training it would not train ``model``.
    """
    pairs = foldable_pairs(model)
    if not pairs:
        return model
    convs = dict(pairs)
    bns = {bn: conv for conv, bn in pairs}
    new_convs = {}

    def clone(layer):
        if layer.name in convs:
            new = layer.__class__(**_conv_arguments(layer))
            new_convs[layer.name] = new
            return new
        if layer.name in bns:
            return FoldedBatchNorm(name=layer.name, dtype=layer.dtype_policy)  # no cast between conv and what follows
        return layer  # shared: same weights, nothing copied

    folded = keras.models.clone_model(model, clone_function=clone)
    for conv_name, bn_name in pairs:
        kernel, bias = _folded_kernel(model.get_layer(conv_name), model.get_layer(bn_name))
        new = new_convs[conv_name]
        new.kernel.assign(kernel)
        new.bias.assign(bias)
    return folded
