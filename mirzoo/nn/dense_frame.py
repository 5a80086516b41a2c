"""``dense_frame``: frame-level dense network over a context of +-k frames.

After the frame-wise networks of the tutorial's sections 4.1-4.2 and the
"deep chroma" extractor of Korzeniowski & Widmer (2016): each output frame is
computed by a multi-layer perceptron from the ``2k + 1`` input frames around it.
The first layer is written as a 1-D convolution of width ``2k + 1`` over the
time axis, which is exactly a dense layer on the stacked context and lets the
network run on audio of any length.

Input: waveforms of any length; every output has one vector per frame
(``frames = 1 + samples // hop_length``).

Named outputs: ``dense1`` .. ``denseN`` (hidden layers), ``embedding`` (the last
hidden layer) and ``pitch_classes`` (12 sigmoid activities per frame).  With
``n_tags > 0`` a second head, ``tags``, gives frame-wise tag probabilities: the shipped
model is trained on both (pitch classes from the score, clip tags broadcast to the clip's
frames), so its embedding carries timbre and style as well as pitch content.
"""

from __future__ import annotations

import keras

from mirzoo.nn.frontend import build_frontend
from mirzoo.nn.base import register_family


@register_family("dense_frame")
def build_dense_frame(config: dict, name: str = "dense_frame") -> keras.Model:
    """Build the frame-level dense network.

    Config keys: ``frontend``, ``context`` (k, frames on each side), ``units``
    (list of int, one per hidden layer), ``n_outputs`` (int), ``output_name`` (str),
    ``dropout``, and optionally ``n_tags`` (int; adds the frame-wise ``tags`` head).
    """
    frontend = build_frontend(config["frontend"])
    waveform = keras.Input(shape=(None,), name="waveform")
    x = frontend(waveform)  # (batch, frames, bins)
    x = keras.layers.BatchNormalization(axis=-1, name="input_bn")(x)
    k = int(config["context"])
    outputs = {}
    for i, units in enumerate(config["units"], start=1):
        if i == 1:
            layer = keras.layers.Conv1D(units, 2 * k + 1, padding="same", activation="elu", name="dense1")
        else:
            layer = keras.layers.Dense(units, activation="elu", name=f"dense{i}")
        x = layer(x)
        outputs[f"dense{i}"] = x
    embedding = keras.layers.Identity(name="embedding")(x)
    h = keras.layers.Dropout(config.get("dropout", 0.3), name="dropout")(embedding)
    head_name = config.get("output_name", "pitch_classes")
    head = keras.layers.Dense(config["n_outputs"], activation="sigmoid", name=head_name)(h)
    outputs.update(embedding=embedding)
    outputs[head_name] = head
    if int(config.get("n_tags", 0)) > 0:
        outputs["tags"] = keras.layers.Dense(int(config["n_tags"]), activation="sigmoid", name="tags")(h)
    return keras.Model(waveform, outputs, name=name)
