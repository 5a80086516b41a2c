"""The ``tonal`` layer: each frame's pitch classes and chords relative to its tonic (``TonicAligned``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mirzoo
from mirzoo.nn import get_family
from mirzoo.nn.base import derive_outputs
from mirzoo.nn.tcn import TonicAligned, add_tonal, tonal_feature_names

EXAMPLE = "mirzoo/data/example.flac"
Q = 9  # chord qualities of tcn-music's chord head


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def random_heads(rng, batch=2, frames=7, q=Q):
    key = softmax(rng.normal(size=(batch, frames, 24)) * 2).astype(np.float32)
    pcs = (1 / (1 + np.exp(-rng.normal(size=(batch, frames, 12)) * 2))).astype(np.float32)
    chord = softmax(rng.normal(size=(batch, frames, 12 * q + 1)) * 2).astype(np.float32)
    return key, pcs, chord


def reference(key, pcs, chord, q=Q):
    """The layer's definition, written out with explicit loops over tonics and degrees."""
    tonic = key[..., :12] + key[..., 12:]
    pc_out = np.zeros_like(pcs, dtype=np.float64)
    ch_out = np.zeros(chord.shape[:-1] + (12 * q,))
    for k in range(12):
        for j in range(12):
            pc_out[..., j] += tonic[..., k] * pcs[..., (k + j) % 12]
            for quality in range(q):
                ch_out[..., j * q + quality] += tonic[..., k] * chord[..., ((k + j) % 12) * q + quality]
    mode = np.stack([key[..., :12].sum(-1), key[..., 12:].sum(-1)], axis=-1)
    return np.concatenate([pc_out, ch_out, chord[..., -1:], mode], axis=-1)


def test_tonic_aligned_matches_its_definition():
    key, pcs, chord = random_heads(np.random.default_rng(0))
    out = np.asarray(TonicAligned(Q)([key, pcs, chord]))
    assert out.shape == (2, 7, 12 + 12 * Q + 3)
    np.testing.assert_allclose(out, reference(key, pcs, chord), atol=1e-6)


def test_transposing_all_three_inputs_leaves_the_output_unchanged():
    key, pcs, chord = random_heads(np.random.default_rng(1))
    layer = TonicAligned(Q)
    base = np.asarray(layer([key, pcs, chord]))
    for s in (1, 5, 11):
        shifted_key = np.concatenate([np.roll(key[..., :12], s, -1), np.roll(key[..., 12:], s, -1)], -1)
        shifted_chord = np.concatenate([np.roll(chord[..., :-1], s * Q, -1), chord[..., -1:]], -1)
        out = np.asarray(layer([shifted_key, np.roll(pcs, s, -1), shifted_chord]))
        np.testing.assert_allclose(out, base, atol=1e-6)
    # and it is not invariant to moving the pitch classes alone (it reads them against the tonic)
    moved = np.asarray(layer([key, np.roll(pcs, 1, -1), chord]))
    assert np.abs(moved - base).max() > 0.05


def test_a_sure_key_reads_scale_degrees_and_chord_functions():
    names = tonal_feature_names(mirzoo.load("tcn-music").heads["chord"])
    for tonic, minor in ((0, False), (2, False), (9, True)):  # C major, D major, A minor
        key = np.zeros((1, 1, 24), np.float32)
        key[..., tonic + 12 * minor] = 1.0
        third = 3 if minor else 4
        pcs = np.zeros((1, 1, 12), np.float32)
        pcs[..., [tonic, (tonic + third) % 12, (tonic + 7) % 12]] = 1.0  # the tonic triad sounds
        chord = np.zeros((1, 1, 12 * Q + 1), np.float32)
        chord[..., ((tonic + 7) % 12) * Q + 4] = 1.0  # the dominant seventh (quality 4, "7") is the chord
        out = dict(zip(names, np.asarray(TonicAligned(Q)([key, pcs, chord]))[0, 0].tolist()))
        assert {n for n, v in out.items() if n.startswith("pc:") and v > 0.5} == {
            "pc:1", "pc:b3" if minor else "pc:3", "pc:5"}
        assert {n for n, v in out.items() if n.startswith("chord:") and v > 0.5} == {"chord:5:7"}
        assert out["mode:minor"] == float(minor) and out["mode:major"] == float(not minor)


def test_feature_names_follow_the_chord_vocabulary():
    labels = mirzoo.load("tcn-music").heads["chord"]
    names = tonal_feature_names(labels)
    assert len(names) == 12 + 12 * Q + 3
    assert names[:4] == ["pc:1", "pc:b2", "pc:2", "pc:b3"]
    assert names[12:14] == ["chord:1:maj", "chord:1:min"] and names[12 + 7 * Q] == "chord:5:maj"
    assert names[-3:] == ["chord:N", "mode:major", "mode:minor"]
    with pytest.raises(mirzoo.ParameterError, match="12 roots x qualities, then 'N'"):
        tonal_feature_names(["C:maj", "C:min"])


def test_bad_inputs_are_refused():
    with pytest.raises(mirzoo.ParameterError, match="chord_qualities=0"):
        TonicAligned(0)
    key, pcs, chord = random_heads(np.random.default_rng(2))
    with pytest.raises(mirzoo.ParameterError, match=r"expected \(key, pitch_classes, chord\) = \(24, 12, 109\)"):
        TonicAligned(Q)([key, pcs, chord[..., :100]])


def test_tcn_music_serves_the_layer_from_its_own_heads():
    m = mirzoo.load("tcn-music")
    assert m.spec.layers["tonal"] == 123 and "tonal" in m.spec.all_layers
    y, _ = m.load_input(EXAMPLE, None)
    out = m.forward([y], ["key", "pitch_classes", "chord", "tonal"], 16)[0]
    np.testing.assert_allclose(out["tonal"], reference(out["key"], out["pitch_classes"], out["chord"]), atol=1e-5)
    e = m.extract(EXAMPLE, layer="tonal")
    assert e.embeddings.shape == (out["tonal"].shape[0], 123)
    np.testing.assert_allclose(e.embeddings, out["tonal"], atol=1e-5)


def test_the_layer_is_added_after_the_weights_so_weight_files_keep_their_layout(tmp_path):
    m = mirzoo.load("tcn-music")
    config = dict(m.spec.config)
    core = get_family("tcn")(dict(config), name="tcn_music")
    assert "tonal" not in core.output  # the builder alone: the layout the weight files have
    core.load_weights(str(Path(mirzoo.__file__).parent / "weights" / m.entry["weights"]["file"]))
    full = derive_outputs("tcn", core, config)
    assert set(full.output) == set(core.output) | {"tonal"}
    assert add_tonal(core, dict(config, tonal=False)) is core
    # a checkpoint written from the derived model's layers loads into a plain build
    path = tmp_path / "w.weights.h5"
    core.save_weights(str(path))
    again = get_family("tcn")(dict(config), name="tcn_music")
    again.load_weights(str(path))
    x = np.random.default_rng(3).normal(size=(1, 16000 * 3)).astype(np.float32) * 0.1
    a, b = full(x), derive_outputs("tcn", again, config)(x)
    np.testing.assert_allclose(np.asarray(a["tonal"]), np.asarray(b["tonal"]), atol=1e-6)


def test_a_saved_model_keeps_the_layer(tmp_path):
    m = mirzoo.load("tcn-music")
    m.save(tmp_path / "saved")
    again = mirzoo.load(str(tmp_path / "saved"))
    y, _ = m.load_input(EXAMPLE, None)
    y = y[: 16000 * 8]
    np.testing.assert_allclose(again.forward([y], ["tonal"], 4)[0]["tonal"], m.forward([y], ["tonal"], 4)[0]["tonal"],
                               atol=1e-5)
