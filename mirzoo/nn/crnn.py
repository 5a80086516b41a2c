"""``crnn``: convolutional recurrent network for music tagging, after Choi et al. (2017).

Four blocks of 3x3 convolution, batch normalisation, ELU and max-pooling reduce the
log-mel patch to a sequence of feature vectors (frequency pooled to 1); two GRU
layers summarise the sequence; the last GRU state is the clip embedding; a
sigmoid layer gives tag probabilities.

The GRUs are unrolled over the (fixed) number of time steps of a patch, so the
network has no loop or tensor-list ops and exports to TFLite builtins and ONNX.

Named outputs: ``block1`` .. ``block4`` (time-frequency averaged feature maps),
``gru1`` (time-averaged first GRU sequence), ``embedding`` (last GRU state), ``tags``, and one
sigmoid output per entry of the optional ``extra_heads`` (as the ``cnn`` family).
"""

from __future__ import annotations

import keras

from mirzoo.nn.frontend import build_frontend
from mirzoo.nn.base import add_extra_heads, conv_block, global_pool, register_family


@register_family("crnn")
def build_crnn(config: dict, name: str = "crnn") -> keras.Model:
    """Build the CRNN.

    Config keys: ``frontend``, ``patch_samples``, ``filters`` (4 ints), ``pools``
    (4 [time, freq] pairs whose frequency factors reduce the bands to 1), ``gru_units``
    (2 ints), ``n_tags``, ``dropout``, ``head_activation`` (``"sigmoid"`` by default; ``"softmax"``
    for single-label data), and optionally ``extra_heads`` (``{output name: n_units}``: more sigmoid
    heads on the embedding).
    """
    frontend = build_frontend(config["frontend"])
    waveform = keras.Input(shape=(config["patch_samples"],), name="waveform")
    spec = frontend(waveform)
    x = keras.layers.Reshape((-1, frontend.n_bins, 1), name="add_channel")(spec)
    x = keras.layers.BatchNormalization(axis=2, name="input_bn")(x)
    outputs = {}
    for i, (filters, pool) in enumerate(zip(config["filters"], config["pools"]), start=1):
        x = conv_block(x, filters, pool, name=f"block{i}_body")
        outputs[f"block{i}"] = global_pool(x, name=f"block{i}", mode="mean")
    steps, bands, channels = x.shape[1], x.shape[2], x.shape[3]
    x = keras.layers.Reshape((steps, bands * channels), name="to_sequence")(x)
    units1, units2 = config["gru_units"]
    seq = keras.layers.GRU(units1, return_sequences=True, unroll=True, name="gru1_body")(x)
    outputs["gru1"] = global_pool(seq, name="gru1", mode="mean")
    last = keras.layers.GRU(units2, unroll=True, name="gru2_body")(seq)
    embedding = keras.layers.Identity(name="embedding")(last)
    h = keras.layers.Dropout(config.get("dropout", 0.3), name="dropout")(embedding)
    tags = keras.layers.Dense(config["n_tags"], activation=config.get("head_activation", "sigmoid"), name="tags")(h)
    outputs.update(embedding=embedding, tags=tags)
    add_extra_heads(h, outputs, config)
    return keras.Model(waveform, outputs, name=name)
