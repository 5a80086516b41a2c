"""training.train end to end on a tiny corpus: train, evaluate, ship into a temporary manifest, load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("music21")

import mirzoo  # noqa: E402
from mirzoo.manifest import PACKAGE_MANIFEST  # noqa: E402
from training import corpus as tc  # noqa: E402
from training import train as tt  # noqa: E402


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("train-corpus") / "c"
    cfg = tc.BuildConfig(seed=1, clip_seconds=5.0, min_clip_seconds=3.0, max_clips_per_piece=2,
                         collections=("bach-chorales", "oneills-1850"))
    tc.build(str(out), cfg, hours=0.01, workers=1, cache_dir=str(tmp_path_factory.mktemp("scores")))
    return out


@pytest.mark.parametrize("model", ["cnn-tagging", "dense-frame"])
def test_train_evaluate_ship_and_load(model, tiny_corpus, tmp_path, monkeypatch):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "steps_per_epoch": 2, "epochs": 2, "batch_size": 4,
                                  "min_tag_count": 1, "train_seconds": 2.0}))
    manifest = tmp_path / "manifest.json"
    shutil.copy(PACKAGE_MANIFEST, manifest)
    weights = tmp_path / "weights"
    run = tmp_path / "run"
    argv = ["--model", model, "--config", str(config), "--corpus", str(tiny_corpus), "--heldout", str(tmp_path / "none"),
            "--cache", str(tmp_path / "cache"), "--out", str(run), "--ship", "--manifest", str(manifest),
            "--weights-dir", str(weights)]
    assert tt.main(argv) == 0
    report = json.loads((run / "report.json").read_text())
    assert len(report["history"]) == 2 and report["best_epoch"] in (0, 1)
    entry = json.loads(manifest.read_text())["models"][model]
    assert entry["pretrained"] is True and entry["weights"]["kind"] == "file"
    assert (weights / entry["weights"]["file"]).stat().st_size == entry["weights"]["size"]
    assert "--config" in entry["training"]["command"]
    if model == "cnn-tagging":
        assert entry["head"]["labels"] == report["vocabulary"]
        assert entry["layers"]["tags"] == len(report["vocabulary"])
    # the shipped weights load through the normal path, verified by sha256
    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights))
    m = mirzoo.load(model)
    assert m.pretrained
    probs = m.predict(mirzoo.example_audio())
    assert probs.shape == (len(m.labels),) and np.all((probs >= 0) & (probs <= 1))
    # shipping the same run again without training writes a consistent record
    assert tt.main(argv[:4] + ["--corpus", str(tiny_corpus), "--ship", "--from-run", str(run), "--manifest",
                               str(manifest), "--weights-dir", str(weights)]) == 0
    again = json.loads(manifest.read_text())["models"][model]["weights"]
    from mirzoo.manifest import file_sha256

    assert again["sha256"] == file_sha256(weights / again["file"])
    assert tt.multi_hot([{"tags": "a;b"}, {"tags": "c"}], ["a", "c"]).tolist() == [[1, 0], [0, 1]]
