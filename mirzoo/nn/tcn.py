"""``tcn``: a frame-level network for musical structure (key, chords, beats, meter, tempo).

A pitch-resolving constant-Q input (3 bins per semitone) goes through a small 2-D
convolutional stack that pools frequency to semitones and then to a compact vector per
frame (after the chord and key CNNs of Korzeniowski & Widmer 2016-2018), then through a
temporal convolutional network: residual 1-D convolutions with dilations doubling per
layer (after the beat-tracking TCNs of Davies & Böck 2019), so that every frame sees about
``±(kernel - 1) * (2**layers - 1) / 2`` frames of context (about ±5 s with the shipped
config) without recurrence: the network runs on audio of any length, exports to TFLite
builtins, and a long file cut in chunks with that margin gives the same frames as the whole
file in one piece.

Every head is frame-wise (one vector per frame, at the front-end hop):

* ``beats``: sigmoid ``[beat, downbeat]`` activations;
* ``key``: softmax over 24 keys (tonic x major/minor);
* ``chord``: softmax over root x quality chords and ``N``;
* ``meter``: softmax over time signatures; ``tempo``: softmax over log-spaced BPM classes;
* ``tags``: sigmoid clip tags (broadcast to frames in training);
* ``frame_heads`` (config, optional): sigmoid heads on the ``frame`` vector, before the TCN, for
  what sounds in the frame itself; ``tcn-music``'s ``pitch_classes`` (12 pitch-class activities, a
  learned chroma after Korzeniowski & Widmer's 2016 deep chroma extractor) is one.

Clip-level answers (the key of a piece, its meter, tempo, beat times, chord segments) are
read from these frame outputs by :mod:`mirzoo.tasks.analyze`.

Named outputs: ``conv1`` .. ``conv3`` (frequency-pooled feature maps, flattened per frame),
``frame`` (the per-frame vector before the TCN), ``tcn1`` .. ``tcnN``, ``embedding`` (the last
TCN layer) and the heads above.
"""

from __future__ import annotations

import keras

from mirzoo.nn.base import register_family
from mirzoo.nn.frontend import build_frontend

__all__ = ["build_tcn", "tcn_context_frames"]


def tcn_context_frames(kernel: int, layers: int) -> int:
    """Frames each side that one output frame of the TCN depends on (front-end reach excluded).

    The 2-D stack adds one frame each side per 3x3 convolution; the TCN's layer ``i`` reaches
    ``(kernel - 1) // 2 * 2**i`` frames further.
    """
    return 3 + (int(kernel) - 1) // 2 * (2 ** int(layers) - 1)


@register_family("tcn")
def build_tcn(config: dict, name: str = "tcn") -> keras.Model:
    """Build the network.

    Config keys: ``frontend`` (a ``cqt`` front-end), ``conv_filters`` (3 ints), ``freq_pools``
    (3 ints; their product divides the number of bins), ``frame_units``, ``tcn_units``,
    ``tcn_kernel`` (odd), ``tcn_layers``, ``dropout``, ``heads`` (``{output: n_units}`` for the
    softmax heads ``key``, ``chord``, ``meter``, ``tempo``), ``frame_heads`` (optional, ``{output:
    n_units}`` for sigmoid heads on the ``frame`` vector), ``n_tags``, and ``context``
    (must equal :func:`tcn_context_frames`: the manifest's promise of how far a frame reaches).
    """
    kernel, n_layers = int(config["tcn_kernel"]), int(config["tcn_layers"])
    if kernel % 2 != 1:
        raise ValueError(f"tcn_kernel={kernel} must be odd (centred dilated convolutions)")
    if int(config.get("context", -1)) != tcn_context_frames(kernel, n_layers):
        raise ValueError(
            f"context={config.get('context')!r} must be {tcn_context_frames(kernel, n_layers)} frames for "
            f"tcn_kernel={kernel}, tcn_layers={n_layers} (the frames each side an output depends on)"
        )
    frontend = build_frontend(config["frontend"])
    waveform = keras.Input(shape=(None,), name="waveform")
    spec = frontend(waveform)  # (batch, frames, bins)
    x = keras.layers.BatchNormalization(axis=-1, name="input_bn")(spec)
    x = keras.layers.Reshape((-1, frontend.n_bins, 1), name="add_channel")(x)
    outputs = {}
    bins = frontend.n_bins
    for i, (filters, pool) in enumerate(zip(config["conv_filters"], config["freq_pools"]), start=1):
        x = keras.layers.Conv2D(filters, (3, 3), padding="same", use_bias=False, name=f"conv{i}_conv")(x)
        x = keras.layers.BatchNormalization(axis=-1, name=f"conv{i}_bn")(x)
        x = keras.layers.Activation("elu", name=f"conv{i}_elu")(x)
        if pool > 1:
            x = keras.layers.MaxPooling2D((1, pool), name=f"conv{i}_pool")(x)
            bins //= pool
        outputs[f"conv{i}"] = keras.layers.Reshape((-1, bins * filters), name=f"conv{i}")(x)
    h = outputs[f"conv{len(config['conv_filters'])}"]
    h = keras.layers.Dropout(config.get("dropout", 0.1), name="frame_dropout")(h)
    h = keras.layers.Dense(int(config["frame_units"]), activation="elu", name="frame")(h)
    outputs["frame"] = h
    units = int(config["tcn_units"])
    if units != int(config["frame_units"]):
        h = keras.layers.Dense(units, name="tcn_in")(h)
    for i in range(n_layers):
        y = keras.layers.Conv1D(units, kernel, padding="same", dilation_rate=2**i, activation="elu",
                                name=f"tcn{i + 1}_conv")(h)
        y = keras.layers.Dropout(config.get("dropout", 0.1), name=f"tcn{i + 1}_dropout")(y)
        h = keras.layers.Add(name=f"tcn{i + 1}")([h, y])
        outputs[f"tcn{i + 1}"] = h
    embedding = keras.layers.Identity(name="embedding")(h)
    outputs["embedding"] = embedding
    outputs["beats"] = keras.layers.Dense(2, activation="sigmoid", name="beats")(embedding)
    for head, n in config["heads"].items():
        outputs[head] = keras.layers.Dense(int(n), activation="softmax", name=head)(embedding)
    if int(config.get("n_tags", 0)) > 0:
        outputs["tags"] = keras.layers.Dense(int(config["n_tags"]), activation="sigmoid", name="tags")(embedding)
    for head, n in config.get("frame_heads", {}).items():
        # read from the frame vector before the TCN: what sounds now, not the context
        outputs[head] = keras.layers.Dense(int(n), activation="sigmoid", name=head)(outputs["frame"])
    return keras.Model(waveform, outputs, name=name)
