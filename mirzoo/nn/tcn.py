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
* ``tags``: sigmoid clip tags (broadcast to frames in training), on the embedding or, with
  ``tags_from``, on several layers (``tcn-music``: ``conv3``, ``frame`` and ``embedding``);
* ``frame_heads`` (config, optional): sigmoid heads on the ``frame`` vector, before the TCN, for
  what sounds in the frame itself; ``tcn-music``'s ``pitch_classes`` (12 pitch-class activities, a
  learned chroma after Korzeniowski & Widmer's 2016 deep chroma extractor) is one.

Clip-level answers (the key of a piece, its meter, tempo, beat times, chord segments) are
read from these frame outputs by :mod:`mirzoo.tasks.analyze`.

Named outputs: ``conv1`` .. ``conv3`` (frequency-pooled feature maps, flattened per frame),
``frame`` (the per-frame vector before the TCN), ``tcn1`` .. ``tcnN``, ``embedding`` (the last
TCN layer) and the heads above, and with ``"tonal": true`` in the config, ``tonal``: each frame's
pitch classes and chords relative to its tonic (:class:`TonicAligned`, added by :func:`add_tonal`
once the weights are set).
"""

from __future__ import annotations

import keras

from mirzoo.errors import ParameterError
from mirzoo.nn.base import register_family
from mirzoo.nn.frontend import build_frontend

__all__ = ["build_tcn", "add_tonal", "tcn_context_frames", "is_trunk_layer", "TonicAligned", "tonal_feature_names"]

#: scale degrees of the ``tonal`` layer's pitch classes and chord roots: semitones above the tonic
DEGREES = ("1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7")


def tonal_feature_names(chord_labels) -> list:
    """Names of the ``tonal`` layer's features, for a ``chord`` head whose labels are 12 roots
    (C .. B) x qualities, root by root, then ``N``: ``pc:<degree>`` (12), ``chord:<degree>:<quality>``,
    ``chord:N``, ``mode:major``, ``mode:minor``."""
    labels = list(chord_labels)
    if not labels or labels[-1] != "N" or (len(labels) - 1) % 12:
        raise ParameterError(f"chord labels {labels[:3]}..{labels[-2:]}: expected 12 roots x qualities, then 'N'")
    q = (len(labels) - 1) // 12
    qualities = [lab.split(":", 1)[1] for lab in labels[:q]]
    return ([f"pc:{d}" for d in DEGREES] + [f"chord:{d}:{qual}" for d in DEGREES for qual in qualities]
            + ["chord:N", "mode:major", "mode:minor"])


def _rotate(x, shift: int):
    """``x[..., (i + shift) % n]`` along the last axis (slices and a concatenation: TFLite builtins)."""
    if shift == 0:
        return x
    return keras.ops.concatenate([x[..., shift:], x[..., :shift]], axis=-1)


@keras.saving.register_keras_serializable(package="mirzoo")
class TonicAligned(keras.layers.Layer):
    """Each frame's pitch classes and chords relative to its tonic: ``[key, pitch_classes, chord]`` ->
    ``tonal`` ``(batch, frames, 12 + 12 * qualities + 3)``.

    With ``p(k)`` the frame's tonic distribution (the ``key`` softmax summed over major and minor),
    feature ``j`` of the pitch classes is ``sum_k p(k) * pitch_classes[(k + j) % 12]``: the activity
    of the pitch class ``j`` semitones above the tonic, in expectation over the tonic.  The chord
    posterior is rotated the same way, root by root (``chord:5:maj`` is the dominant major chord),
    and ``N`` is kept; the last two features are the key's mode, ``p(major)`` and ``p(minor)``.
    Transposing a frame's three inputs together leaves its output unchanged, so the layer carries
    scale degrees and harmonic function (what mode and tonality are made of) rather than absolute
    pitch.  It has no weights: it reads the heads the model learnt, frame by frame, and so adds no
    context to a frame.

    ``key`` must be 24 keys, 12 major tonics (C .. B) then 12 minor; ``chord`` 12 roots (C .. B) x
    ``chord_qualities``, root by root, then ``N``.
    """

    def __init__(self, chord_qualities: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(chord_qualities, bool) or not isinstance(chord_qualities, int) or chord_qualities < 1:
            raise ParameterError(f"TonicAligned chord_qualities={chord_qualities!r}: expected a positive integer")
        self.chord_qualities = int(chord_qualities)

    def build(self, input_shape):
        key, pcs, chord = (tuple(s) for s in input_shape)
        expected = (24, 12, 12 * self.chord_qualities + 1)
        if (key[-1], pcs[-1], chord[-1]) != expected:
            raise ParameterError(
                f"TonicAligned inputs of sizes {(key[-1], pcs[-1], chord[-1])}: expected (key, pitch_classes, "
                f"chord) = {expected} for {self.chord_qualities} chord qualities")
        super().build(input_shape)

    def call(self, inputs):
        key, pcs, chord = inputs
        q = self.chord_qualities
        tonic = key[..., :12] + key[..., 12:]
        roots, none = chord[..., : 12 * q], chord[..., 12 * q:]
        pc_out, chord_out = 0.0, 0.0
        for k in range(12):
            w = tonic[..., k: k + 1]
            pc_out = pc_out + w * _rotate(pcs, k)
            chord_out = chord_out + w * _rotate(roots, k * q)
        mode = keras.ops.stack([keras.ops.sum(key[..., :12], axis=-1), keras.ops.sum(key[..., 12:], axis=-1)], axis=-1)
        return keras.ops.concatenate([pc_out, chord_out, none, mode], axis=-1)

    def compute_output_shape(self, input_shape):
        key = tuple(input_shape[0])
        return key[:-1] + (12 + 12 * self.chord_qualities + 3,)

    def get_config(self):
        config = super().get_config()
        config.update(chord_qualities=self.chord_qualities)
        return config


def is_trunk_layer(name: str) -> bool:
    """Whether ``name`` is one of the network's own layers (``conv1`` .. ``conv3``, ``frame``, ``tcn1`` ..
    ``tcnN``, ``embedding``), which a head may read (``tags_from``), rather than a head or derived output."""
    return name.startswith(("conv", "frame", "tcn")) or name == "embedding"


def tcn_context_frames(kernel: int, layers: int) -> int:
    """Frames each side that one output frame of the TCN depends on (front-end reach excluded).

    The 2-D stack adds one frame each side per 3x3 convolution; the TCN's layer ``i`` reaches
    ``(kernel - 1) // 2 * 2**i`` frames further.
    """
    return 3 + (int(kernel) - 1) // 2 * (2 ** int(layers) - 1)


def add_tonal(model: keras.Model, config: dict) -> keras.Model:
    """``model`` with the ``tonal`` output (:class:`TonicAligned`) when ``config["tonal"]`` is true.

    Applied by the registry after the weights are set (``register_family(..., derive=...)``): the
    layer has no weights, but a new output changes the order in which Keras walks a functional
    model's layers, and that order names the groups of a ``.weights.h5`` file.  Adding it after
    loading keeps every weight file (the shipped one, training checkpoints) in the trained network's
    layout.  The returned model shares ``model``'s layers.
    """
    if not config.get("tonal"):
        return model
    outputs = dict(model.output)
    missing = [h for h in ("key", "pitch_classes", "chord") if h not in outputs]
    if missing:
        raise ValueError(f"tonal=true needs the heads key, pitch_classes and chord; the model lacks {missing}")
    n_chords = int(outputs["chord"].shape[-1])
    if (n_chords - 1) % 12:
        raise ValueError(f"tonal=true needs a chord head of 12 roots x qualities + N; it has {n_chords} units")
    outputs["tonal"] = TonicAligned((n_chords - 1) // 12, name="tonal")(
        [outputs["key"], outputs["pitch_classes"], outputs["chord"]])
    return keras.Model(model.input, outputs, name=model.name)


@register_family("tcn", derive=add_tonal)
def build_tcn(config: dict, name: str = "tcn") -> keras.Model:
    """Build the network.

    Config keys: ``frontend`` (a ``cqt`` front-end), ``conv_filters`` (3 ints), ``freq_pools``
    (3 ints; their product divides the number of bins), ``frame_units``, ``tcn_units``,
    ``tcn_kernel`` (odd), ``tcn_layers``, ``dropout``, ``heads`` (``{output: n_units}`` for the
    softmax heads ``key``, ``chord``, ``meter``, ``tempo``), ``frame_heads`` (optional, ``{output:
    n_units}`` for sigmoid heads on the ``frame`` vector), ``n_tags``, ``tags_from`` (optional, the layers
    the ``tags`` head reads, concatenated; default ``["embedding"]``), ``tonal`` (optional; read by
    :func:`add_tonal` once the weights are set, not here), and ``context``
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
        sources = list(config.get("tags_from") or ["embedding"])
        allowed = [k for k in outputs if is_trunk_layer(k)]
        if any(src not in allowed for src in sources) or len(set(sources)) != len(sources):
            raise ValueError(f"tags_from={sources!r}: expected distinct layers among {allowed}")
        # clip tags are timbre as much as structure: the head may also read the 2-D stack and the frame vector
        tag_input = embedding if sources == ["embedding"] else keras.layers.Concatenate(name="tags_input")(
            [outputs[src] for src in sources])
        outputs["tags"] = keras.layers.Dense(int(config["n_tags"]), activation="sigmoid", name="tags")(tag_input)
    for head, n in config.get("frame_heads", {}).items():
        # read from the frame vector before the TCN: what sounds now, not the context
        outputs[head] = keras.layers.Dense(int(n), activation="sigmoid", name=head)(outputs["frame"])
    return keras.Model(waveform, outputs, name=name)
