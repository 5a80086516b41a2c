"""The ``metrical`` layer: each frame's bar-model probabilities of (beats per bar, position) at its tracked
beat, then the meter head's probabilities; computed after the network (``mirzoo.spec.DERIVED_LAYERS``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mirzoo
from mirzoo.errors import ManifestError, ParameterError, UnknownLayerError
from mirzoo.inference.runner import Runner
from mirzoo.spec import ModelSpec
from mirzoo.tasks.analyze import (analyze_frames, bar_features, clip_beats, metrical_frames, metrical_inputs,
                                  metrical_width, tempo_centres)
from mirzoo.tasks.bar_model import bar_class_probabilities
from mirzoo.zoo.manifest import get_entry

EXAMPLE = "mirzoo/data/example.flac"


@pytest.fixture(scope="module")
def tcn():
    return mirzoo.load("tcn-music")


def with_metrical(entry: dict) -> dict:
    """A copy of ``entry`` whose layers name ``metrical`` (whatever the shipped manifest says)."""
    e = json.loads(json.dumps(entry))
    meter = next(a for a in e["aux_heads"] if a["output"] == "meter")
    e["layers"]["metrical"] = len(e["bar_model"]["classes"]) + len(meter["labels"])
    e["all_layers"] = [layer for layer in e["all_layers"] if layer != "metrical"] + ["metrical"]
    return e


@pytest.fixture(scope="module")
def tcn_metrical(tcn):
    return mirzoo.Extractor(tcn.model, dict(with_metrical(tcn.entry), name=tcn.name))


def synthetic_frames(tcn, n=400, period=25, first=7, seed=0):
    """Head outputs of a clip with a beat every ``period`` frames from frame ``first`` (120 BPM at 50 fps)."""
    rng = np.random.default_rng(seed)
    beats = np.full((n, 2), 0.02)
    beats[first::period, 0] = 0.95
    beats[first::4 * period, 1] = 0.9
    tempo = np.full((n, len(tcn.heads["tempo"])), 1e-3)
    centres = tempo_centres(tcn.heads["tempo"])
    tempo[:, int(np.argmin(np.abs(centres - 120.0)))] = 1.0
    tempo /= tempo.sum(axis=1, keepdims=True)
    meter = rng.dirichlet(np.ones(len(tcn.heads["meter"])), size=n)
    chord = rng.dirichlet(np.ones(len(tcn.heads["chord"])), size=n)
    frames = {"beats": beats, "tempo": tempo, "meter": meter, "chord": chord,
              "pitch_classes": rng.uniform(size=(n, 12)), "key": rng.dirichlet(np.ones(24), size=n)}
    for s in tcn.spec.bar_model["sources"]:
        if s not in frames and s != "beat_features":
            frames[s] = rng.normal(size=(n, tcn.layers[s])).astype(np.float32)
    return frames


def test_metrical_frames_hold_each_beats_bar_probabilities_then_the_meter_head(tcn):
    fps = tcn.sample_rate / tcn.hop_length
    record = tcn.spec.bar_model
    frames = synthetic_frames(tcn)
    got = metrical_frames(frames, tcn.heads, fps, record)
    n_classes = len(record["classes"])
    assert got.dtype == np.float32 and got.shape == (400, metrical_width(record, tcn.heads))
    assert got.shape[1] == n_classes + len(tcn.heads["meter"])
    # the same beats analyze() reports
    beat_frames, _, beatless = clip_beats(frames["beats"], frames["tempo"], tcn.heads["tempo"], fps)
    assert not beatless and beat_frames.size >= 10
    np.testing.assert_allclose(beat_frames / fps, analyze_frames(frames, tcn.heads, fps, bar_model=record).beats)
    probs = bar_class_probabilities(bar_features(beat_frames, frames, record["sources"]), record)
    expected = np.empty((400, n_classes))
    for t in range(400):  # the last beat at or before the frame; the first beat's before it
        before = [i for i, b in enumerate(beat_frames) if b <= t]
        expected[t] = probs[before[-1] if before else 0]
    np.testing.assert_allclose(got[:, :n_classes], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, :n_classes].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got[:, n_classes:], frames["meter"], rtol=1e-6, atol=1e-7)
    assert set(metrical_inputs(record)) <= set(frames) and "beat_features" not in metrical_inputs(record)


def test_metrical_frames_without_beats_give_every_class_the_same_probability(tcn):
    fps = tcn.sample_rate / tcn.hop_length
    frames = synthetic_frames(tcn)
    frames["beats"][:] = 0.01  # below the beat floor everywhere: no beats, as analyze() reads it
    got = metrical_frames(frames, tcn.heads, fps, tcn.spec.bar_model)
    n_classes = len(tcn.spec.bar_model["classes"])
    np.testing.assert_allclose(got[:, :n_classes], 1.0 / n_classes, rtol=1e-6)
    np.testing.assert_allclose(got[:, n_classes:], frames["meter"], rtol=1e-6, atol=1e-7)


def test_metrical_frames_refuse_what_they_cannot_read(tcn):
    fps = tcn.sample_rate / tcn.hop_length
    frames = synthetic_frames(tcn)
    with pytest.raises(ParameterError, match=r"frames lack \['tempo'\], which the metrical layer reads"):
        metrical_frames({k: v for k, v in frames.items() if k != "tempo"}, tcn.heads, fps, tcn.spec.bar_model)
    with pytest.raises(ParameterError, match="bar_model lacks"):
        metrical_frames(frames, tcn.heads, fps, {"sources": ["beats"]})
    with pytest.raises(ParameterError, match=r"must have the 400 frames"):
        metrical_frames(dict(frames, meter=frames["meter"][:-3]), tcn.heads, fps, tcn.spec.bar_model)


def test_extract_metrical_is_the_layer_of_the_networks_outputs(tcn, tcn_metrical):
    m = tcn_metrical
    y = mirzoo.audio.load_audio(EXAMPLE, m.sample_rate)
    e = m.extract(EXAMPLE, layer="metrical")
    assert e.layer == "metrical" and e.embeddings.shape == (e.timestamps.shape[0], m.layers["metrical"])
    out = tcn.forward([y], metrical_inputs(m.spec.bar_model), 16)[0]
    want = metrical_frames(out, m.heads, m.sample_rate / m.hop_length, m.spec.bar_model)
    np.testing.assert_array_equal(e.embeddings, want)
    # one of all_layers, last; the network's layers are what they were
    everything = m.extract(EXAMPLE, layer="all")
    np.testing.assert_array_equal(everything.embeddings[:, -m.layers["metrical"]:], e.embeddings)
    np.testing.assert_allclose(everything.embeddings[:, :128], tcn.extract(EXAMPLE, layer="frame").embeddings, atol=1e-6)
    # forward hands back exactly the keys asked for
    got = m.forward([y], ["metrical", "embedding"], 16)[0]
    assert sorted(got) == ["embedding", "metrical"]
    np.testing.assert_array_equal(got["metrical"], want)
    # the same clip alone or in a batch; pooled like any layer
    both = m.extract([EXAMPLE, EXAMPLE], layer="metrical")
    np.testing.assert_allclose(both[1].embeddings, e.embeddings, atol=1e-5)
    pooled = m.extract(EXAMPLE, layer="metrical", pool="mean+std")
    np.testing.assert_allclose(pooled, np.concatenate([e.embeddings.mean(0), e.embeddings.std(0)]), atol=1e-6)


def test_a_runner_that_cannot_compute_the_layer_says_so(tcn):
    runner = Runner(tcn.model, dict(with_metrical(tcn.entry), name=tcn.name))
    with pytest.raises(UnknownLayerError, match="'metrical' of model 'tcn-music' is computed after the network"):
        runner.network_keys(["embedding", "metrical"])
    assert runner.network_keys(["embedding", "beats"]) == ["embedding", "beats"]


def test_the_manifest_names_metrical_only_with_its_bar_model_and_width():
    entry = with_metrical(get_entry("tcn-music"))
    ModelSpec.from_entry("tcn-music", entry)  # valid
    wrong = json.loads(json.dumps(entry))
    wrong["layers"]["metrical"] = 20
    with pytest.raises(ManifestError, match=r"layers\['metrical'\]=20, but its bar_model has 9 classes and the "
                                            r"meter head 12 labels \(expected 21\)"):
        ModelSpec.from_entry("tcn-music", wrong)
    lacking = json.loads(json.dumps(entry))
    lacking.pop("bar_model")
    with pytest.raises(ManifestError, match="layers name 'metrical', which is computed from a bar_model record"):
        ModelSpec.from_entry("tcn-music", lacking)
    circular = json.loads(json.dumps(entry))
    circular["bar_model"]["sources"] = list(circular["bar_model"]["sources"]) + ["metrical"]
    with pytest.raises(ManifestError, match=r"bar_model reads \['metrical'\], which are computed from its own output"):
        ModelSpec.from_entry("tcn-music", circular)


def test_export_and_fine_tune_keep_to_the_networks_layers(tcn_metrical, tmp_path):
    from mirzoo.export import _output_layers

    assert "metrical" not in _output_layers(tcn_metrical, None)
    assert set(_output_layers(tcn_metrical, None)) == set(tcn_metrical.layers) - {"metrical"}
    with pytest.raises(ParameterError, match=r"\['metrical'\] of model 'tcn-music' are computed after the network"):
        _output_layers(tcn_metrical, ["embedding", "metrical"])
    with pytest.raises(ParameterError, match="layer='metrical' is computed after the network"):
        tcn_metrical.fine_tune([(EXAMPLE, "a"), (EXAMPLE, "b")], layer="metrical")


def test_training_keeps_the_layer_with_its_bar_model():
    from training.musical import anchor_settings, drop_bar_model, put_bar_model

    shipped = json.loads(json.dumps(get_entry("tcn-music")))
    record = shipped["bar_model"]
    entry = with_metrical(shipped)
    assert drop_bar_model(entry) and "bar_model" not in entry
    assert "metrical" not in entry["layers"] and "metrical" not in entry["all_layers"]
    ModelSpec.from_entry("tcn-music", entry)  # loads without it
    assert not drop_bar_model(entry)
    put_bar_model(entry, record)  # an entry without the layer does not gain it
    assert entry["bar_model"] is record and "metrical" not in entry["layers"]
    entry = with_metrical(shipped)
    entry["layers"]["metrical"] = 5
    put_bar_model(entry, record)  # one with it keeps it, sized for the record
    assert entry["layers"]["metrical"] == 21 and entry["all_layers"].count("metrical") == 1
    ModelSpec.from_entry("tcn-music", entry)
    with pytest.raises(SystemExit, match="anchor.layers"):
        anchor_settings({"anchor": {"layers": ["metrical"], "weight": 1.0}}, entry)
