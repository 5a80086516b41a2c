"""``cnn``: compact 2-D CNN for music tagging, after Choi, Fazekas & Sandler (2016).

Log-mel input, batch-normalised per mel band; blocks of 3x3 convolution, batch
normalisation, ELU and max-pooling; global average pooling of the last block
gives the clip embedding; a sigmoid layer gives multi-label tag probabilities.

Named outputs (used by ``Extractor.extract(layer=...)``):
``block1`` .. ``blockN`` (each block's feature map, averaged over time and
frequency: the "convnet feature" of Choi et al. 2017), ``embedding`` and ``tags``, and one
sigmoid output per entry of the optional ``extra_heads`` (a second tag vocabulary on the same
embedding, e.g. the real-music tags distilled by ``training/distill.py``).
"""

from __future__ import annotations

import keras

from mirzoo.nn.frontend import build_frontend
from mirzoo.nn.base import add_extra_heads, conv_block, global_pool, register_family


@register_family("cnn")
def build_cnn(config: dict, name: str = "cnn") -> keras.Model:
    """Build the tagging CNN.

    Config keys: ``frontend`` (dict), ``patch_samples`` (int), ``filters`` (list of int),
    ``pools`` (list of [time, freq]), ``n_tags`` (int), ``dropout`` (float), ``head_activation``
    (``"sigmoid"``, the default: multi-label tags; ``"softmax"``: one label per clip), and optionally
    ``extra_heads`` (``{output name: n_units}``: more sigmoid heads on the embedding).
    """
    frontend = build_frontend(config["frontend"])
    waveform = keras.Input(shape=(config["patch_samples"],), name="waveform")
    spec = frontend(waveform)  # (batch, frames, bins)
    x = keras.layers.Reshape((-1, frontend.n_bins, 1), name="add_channel")(spec)
    x = keras.layers.BatchNormalization(axis=2, name="input_bn")(x)  # per frequency band
    block_features = []
    for i, (filters, pool) in enumerate(zip(config["filters"], config["pools"]), start=1):
        x = conv_block(x, filters, pool, name=f"block{i}_body")
        block_features.append(global_pool(x, name=f"block{i}", mode="mean"))
    embedding = keras.layers.Identity(name="embedding")(block_features[-1])
    h = keras.layers.Dropout(config.get("dropout", 0.3), name="dropout")(embedding)
    tags = keras.layers.Dense(config["n_tags"], activation=config.get("head_activation", "sigmoid"), name="tags")(h)
    outputs = {f"block{i}": f for i, f in enumerate(block_features, start=1)}
    outputs.update(embedding=embedding, tags=tags)
    add_extra_heads(h, outputs, config)
    return keras.Model(waveform, outputs, name=name)
