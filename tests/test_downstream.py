"""benchmarks/downstream.py: the score-based reference rows, the target check, and the probe protocol
(grouped by split_key, layer chosen inside each outer fold, balanced accuracy first) on synthetic features."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from benchmarks import downstream as ds

pytest.importorskip("sklearn")  # the probes


def _triads(root: int, third: int, frames: int = 50) -> np.ndarray:
    c = np.zeros((frames, 12))
    c[:, [root % 12, (root + third) % 12, (root + 7) % 12]] = 1
    return c


def test_score_key_is_transposition_invariant_and_separates_major_from_minor():
    major, minor = _triads(0, 4), _triads(9, 3)
    feats = ds.oracle_features([major, minor] + [np.roll(major, k, axis=1) for k in range(1, 12)] + [np.zeros((5, 12))])
    key = feats["score-key"]
    assert key.shape == (14, 2) and feats["score-chroma"].shape == (14, 24)
    np.testing.assert_allclose(key[2:13], np.repeat(key[:1], 11, axis=0), atol=1e-6)
    assert key[0, 0] > key[0, 1] and key[1, 1] > key[1, 0]
    np.testing.assert_array_equal(key[13], [0, 0])  # a silent clip
    # the pooled chroma is not invariant: its mean follows the transposition
    np.testing.assert_allclose(feats["score-chroma"][2, :12], np.roll(feats["score-chroma"][0, :12], 1))
    # against a direct Pearson correlation with the rotated profile (tonic A for the minor clip)
    hist = minor.sum(axis=0)
    assert key[1, 1] == pytest.approx(np.corrcoef(hist, np.roll(ds.KK_MINOR, 9))[0, 1], abs=1e-6)


def test_transfer_targets():
    summary = [{"method": "mfcc", "mean_balanced": 0.70}, {"method": "random-cnn", "mean_balanced": 0.80},
               {"method": "a", "mean_balanced": 0.90}, {"method": "b", "mean_balanced": 0.84}]
    t = ds.transfer_targets(summary, {"a": True, "b": True, "random-cnn": False})
    assert set(t) == {"a", "b"}
    assert t["a"]["mean_balanced"] == 0.90 and t["a"]["vs_mfcc"] == pytest.approx(0.20) and t["a"]["met"]
    assert t["b"]["vs_random_cnn"] == pytest.approx(0.04) and not t["b"]["met"]
    text = ds.targets_text(t)
    assert "mean balanced accuracy" in text
    assert "- a: 90.0, +20.0 vs MFCC, +10.0 vs random-cnn: met" in text
    assert "- b: 84.0, +14.0 vs MFCC, +4.0 vs random-cnn: not met" in text


def _grouped_labels(rng, n_groups: int, per_group: int, classes=("a", "b")):
    """Labels drawn per group (every clip of a group shares its label), balanced over groups."""
    groups = np.repeat([f"piece{i}" for i in range(n_groups)], per_group)
    per = np.resize(np.asarray(classes), n_groups)
    return np.repeat(rng.permutation(per), per_group), groups


def test_layer_choice_inside_the_folds_is_not_biased_upwards():
    # 10 "layers" of pure noise: choosing the best one on the scored folds reports well above
    # chance; choosing it inside each outer fold on the inner CV reports chance
    rng = np.random.default_rng(0)
    y, groups = _grouped_labels(rng, 30, 2)
    layers = {f"layer{k}": rng.standard_normal((len(y), 3)) for k in range(10)}
    nested = ds.nested_probe(layers, y, groups, folds=3, seed=0, Cs=(1.0,))
    biased = max(ds.nested_probe({k: v}, y, groups, folds=3, seed=0, Cs=(1.0,))["balanced_accuracy"]
                 for k, v in layers.items())
    assert abs(nested["balanced_accuracy"] - 0.5) <= 0.1, nested
    assert biased >= nested["balanced_accuracy"] + 0.08, (biased, nested["balanced_accuracy"])
    assert len(nested["folds"]) == 3 and all(f["layer"] in layers and f["C"] == 1.0 for f in nested["folds"])


def test_the_informative_layer_and_a_C_are_chosen_in_every_fold():
    rng = np.random.default_rng(1)
    y, groups = _grouped_labels(rng, 24, 3)
    signal = np.where(y == "a", 1.5, -1.5)[:, None] + rng.standard_normal((len(y), 4))
    layers = {"block1": rng.standard_normal((len(y), 4)), "block2": signal, "all": rng.standard_normal((len(y), 8))}
    result = ds.nested_probe(layers, y, groups, folds=3, seed=0, Cs=(0.01, 1.0))
    assert [f["layer"] for f in result["folds"]] == ["block2"] * 3
    assert all(f["C"] in (0.01, 1.0) for f in result["folds"])
    assert result["balanced_accuracy"] >= 0.9
    assert result["balanced_accuracy"] == pytest.approx(np.mean([f["balanced_accuracy"] for f in result["folds"]]))
    assert ds.chosen_layers({"task": result}) == "block2 x3"


def test_folds_are_grouped_so_a_piece_cannot_be_recognised():
    # features identify the piece, labels are random per piece: grouped folds score chance, while
    # clip-wise folds would let the probe recognise pieces seen in training
    rng = np.random.default_rng(2)
    y, groups = _grouped_labels(rng, 20, 4)
    identity = rng.standard_normal((20, 40))
    x = identity[np.repeat(np.arange(20), 4)] + 0.05 * rng.standard_normal((80, 40))
    grouped = ds.nested_probe({"x": x}, y, groups, folds=4, seed=0, Cs=(1.0,))
    by_clip = ds.nested_probe({"x": x}, y, np.arange(len(y)).astype(str), folds=4, seed=0, Cs=(1.0,))
    assert by_clip["balanced_accuracy"] >= 0.9  # the leak the grouping prevents
    assert grouped["balanced_accuracy"] <= 0.7


def test_balanced_accuracy_exposes_a_majority_class_probe():
    rng = np.random.default_rng(3)
    y, groups = _grouped_labels(rng, 40, 2, classes=("major",) * 9 + ("minor",))
    result = ds.nested_probe({"x": rng.standard_normal((len(y), 3))}, y, groups, folds=4, seed=0, Cs=(1.0,))
    assert result["accuracy"] >= 0.85  # what always answering "major" gets
    assert result["balanced_accuracy"] <= 0.6  # chance, which is what it is


def test_nested_probe_refuses_empty_grids():
    with pytest.raises(ValueError, match="Cs=\\[\\]"):
        ds.nested_probe({"x": np.zeros((4, 1))}, ["a", "b"] * 2, ["g"] * 4, folds=2, seed=0, Cs=())


def _write_metadata(folder, rows):
    columns = list(rows[0])
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_tasks_are_grouped_by_split_key(tmp_path):
    rows = [{"path": f"audio/{i}.flac", "piece_id": f"book{i % 2}/tune", "split_key": "the-tune" if i < 2 else f"t{i}",
             "tags": "instrument:piano;style:folk;mode:major"} for i in range(4)]
    _write_metadata(tmp_path, rows)
    paths, groups, tasks = ds.load_tasks(tmp_path, min_class=1)
    assert paths == [str(tmp_path / r["path"]) for r in rows]
    assert groups == ["the-tune", "the-tune", "t2", "t3"]  # one tune from two books: one group
    assert tasks["instrument"] == {i: "piano" for i in range(4)} and tasks["mode"] == {i: "major" for i in range(4)}


@pytest.mark.parametrize("drop", ["column", "value"])
def test_metadata_without_split_key_is_refused(tmp_path, drop):
    rows = [{"path": f"audio/{i}.flac", "piece_id": f"p{i}", "split_key": f"p{i}", "tags": "mode:major"}
            for i in range(3)]
    if drop == "column":
        rows = [{k: v for k, v in r.items() if k != "split_key"} for r in rows]
    else:
        rows[1]["split_key"] = ""
    _write_metadata(tmp_path, rows)
    with pytest.raises(ValueError, match="no split_key") as info:
        ds.load_tasks(tmp_path, min_class=1)
    message = str(info.value)
    assert "metadata.csv" in message and "training.corpus" in message
    assert ("3 of 3" in message and "audio/0.flac" in message) if drop == "column" else "'audio/1.flac'" in message
