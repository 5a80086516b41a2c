"""``random_cnn``: random-weight CNN feature extractors, after Pons & Serra (2019).

Pons & Serra showed that CNNs with *random* weights, whose features are pooled
and fed to a simple classifier, are strong baselines for music audio
classification: the architecture alone carries much of the inductive bias.
Weights come from ``numpy.random.default_rng(seed)`` (see
:func:`mirzoo.nn.base.seeded_weights`), so every backend and machine gets the
same network.  The input log-mel patch is standardised per example (zero mean,
unit variance over all frames and bands) instead of batch norm, because there are
no learned statistics; per-band whitening was tried and rejected because it erases
the spectral envelope of sustained sounds (a low and a high tone look alike).

Variants (``config["variant"]``):

``"vgg"``
    Five blocks of 3x3 convolution, ELU and 2x2 max-pooling.  Named outputs
    ``block1`` .. ``block5``: each block's map pooled over time and frequency by
    mean and max (concatenated); ``embedding``: all blocks concatenated.
``"musical"``
    Musically motivated filters (Pons et al. 2016): *timbral* filters that are
    tall in frequency and short in time, and *temporal* filters that are long in
    time and one band high; each filter map is max-pooled over frequency, then
    over time by mean and max.  Named outputs ``timbral``, ``temporal``,
    ``embedding`` (both concatenated).
"""

from __future__ import annotations

import keras

from mirzoo.errors import ParameterError
from mirzoo.nn.frontend import build_frontend
from mirzoo.nn.base import FrequencyMax, TemporalConv2D, conv_block, global_pool, register_family


def _vgg(x, config):
    outputs = {}
    for i, filters in enumerate(config["filters"], start=1):
        x = conv_block(x, filters, (2, 2), name=f"block{i}_body", batch_norm=False)
        outputs[f"block{i}"] = global_pool(x, name=f"block{i}", mode="mean+max")
    outputs["embedding"] = keras.layers.Concatenate(name="embedding")(list(outputs.values()))
    return outputs


def _musical(x, config, n_bins):
    timbral, temporal = [], []
    for j, (height, filters) in enumerate(config["timbral"]):
        rows = max(1, int(round(height * n_bins)))
        h = keras.layers.Conv2D(filters, (7, rows), padding="valid", activation="elu", name=f"timbral{j}_conv")(
            keras.layers.ZeroPadding2D(((3, 3), (0, 0)), name=f"timbral{j}_pad")(x)
        )
        h = FrequencyMax(name=f"timbral{j}_freqmax")(h)
        timbral.append(h)
    # the temporal filters run over the map with time and frequency swapped (TemporalConv2D: same
    # weights and sums as Conv2D (length, 1) on the map; oneDNN held ~270 MB for that form)
    swapped = keras.layers.Permute((2, 1, 3), name="temporal_swap")(x) if config["temporal"] else None
    for j, (length, filters) in enumerate(config["temporal"]):
        h = TemporalConv2D(filters, (length, 1), padding="same", activation="elu", name=f"temporal{j}_conv")(swapped)
        h = FrequencyMax(axis=1, name=f"temporal{j}_freqmax")(h)
        temporal.append(h)
    t = timbral[0] if len(timbral) == 1 else keras.layers.Concatenate(name="timbral_maps")(timbral)
    m = temporal[0] if len(temporal) == 1 else keras.layers.Concatenate(name="temporal_maps")(temporal)
    outputs = {
        "timbral": global_pool(t, name="timbral", mode="mean+max"),
        "temporal": global_pool(m, name="temporal", mode="mean+max"),
    }
    outputs["embedding"] = keras.layers.Concatenate(name="embedding")([outputs["timbral"], outputs["temporal"]])
    return outputs


@register_family("random_cnn")
def build_random_cnn(config: dict, name: str = "random_cnn") -> keras.Model:
    """Build a random-weight CNN extractor (weights are set by the loader from the seed).

    Config keys: ``frontend``, ``patch_samples``, ``variant`` ("vgg" or "musical");
    for "vgg": ``filters`` (list of int); for "musical": ``timbral`` (list of
    [height as a fraction of the bands, filters]) and ``temporal`` (list of
    [length in frames, filters]).
    """
    frontend = build_frontend(config["frontend"])
    waveform = keras.Input(shape=(config["patch_samples"],), name="waveform")
    spec = frontend(waveform)
    x = keras.layers.Reshape((-1, frontend.n_bins, 1), name="add_channel")(spec)
    variant = config.get("variant", "vgg")
    if variant == "vgg":
        outputs = _vgg(x, config)
    elif variant == "musical":
        outputs = _musical(x, config, frontend.n_bins)
    else:
        raise ParameterError(f"random_cnn variant={variant!r} must be 'vgg' or 'musical'")
    return keras.Model(waveform, outputs, name=name)
