"""benchmarks/tags.py: clip tag ROC-AUC of zoo models on a corpus split, checked against sklearn by hand."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from benchmarks import tags as bt

SR = 16000


def _corpus(root):
    t = np.arange(int(4.0 * SR)) / SR
    rows = []
    for i, (split, tags, f) in enumerate([("test", "instrument:piano;mode:major", 220.0),
                                          ("test", "instrument:organ;mode:minor", 660.0),
                                          ("test", "instrument:piano;mode:minor", 330.0),
                                          ("test", "instrument:organ;mode:major", 990.0),
                                          ("train", "instrument:piano", 440.0)]):
        rel = f"audio/{split}/c{i}.flac"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        y = 0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * (i + 1) * t))
        sf.write(root / rel, y.astype(np.float32), SR, subtype="PCM_16")
        rows.append({"clip_id": f"c{i}", "path": rel, "split": split, "tags": tags})
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_tag_auc_matches_sklearn_on_the_models_own_vocabulary(tmp_path):
    import mirzoo
    from sklearn.metrics import roc_auc_score

    data = _corpus(tmp_path / "corpus")
    out = tmp_path / "results"
    assert bt.main(["--data", str(data), "--models", "cnn-tagging", "--out", str(out)]) == 0
    files = sorted(out.glob("tags-*.json"))
    assert [f.name for f in files] == [f"tags-{bt.env_name()}.json"]  # the whole environment, "py3.11" included
    assert (out / f"tags-{bt.env_name()}.md").exists() and len(list(out.iterdir())) == 2
    report = json.loads(files[0].read_text())
    assert report["clips"] == 4 and report["split"] == "test"  # the train clip is not scored
    got = report["models"]["cnn-tagging"]
    m = mirzoo.load("cnn-tagging")
    vocab = list(m.labels)
    probs = [np.asarray(m.predict(str(data / f"audio/test/c{i}.flac"))) for i in range(4)]
    expected = {}
    for tag, truth in (("instrument:piano", [1, 0, 1, 0]), ("instrument:organ", [0, 1, 0, 1]),
                       ("mode:major", [1, 0, 0, 1]), ("mode:minor", [0, 1, 1, 0])):
        j = vocab.index(tag)
        expected[tag] = roc_auc_score(truth, [p[j] for p in probs])
    assert got["n_tags_evaluated"] == 4 and set(got["roc_auc_per_tag"]) == set(expected)
    for tag, v in expected.items():
        assert got["roc_auc_per_tag"][tag] == pytest.approx(v, abs=1e-6), tag
    assert got["roc_auc_macro"] == pytest.approx(np.mean(list(expected.values())), abs=1e-6)
    assert "| cnn-tagging |" in (out / f"tags-{bt.env_name()}.md").read_text()


def test_bad_data_folder_and_split_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bt.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert exc.value.code == 2 and "no metadata.csv there" in capsys.readouterr().err
    data = _corpus(tmp_path / "corpus")
    with pytest.raises(bt.mirzoo.ParameterError, match="no clips of split 'valid'"):
        bt.main(["--data", str(data), "--split", "valid", "--out", str(tmp_path)])
