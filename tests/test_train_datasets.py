"""training.train on data sets on disk (``--data KIND:PATH``), on tiny fixtures in each data set's layout.

MagnaTagATune: ``annotations_final.csv`` + mp3 folders ``0``..``f`` (split by folder); GTZAN: ``genres/``
with the fault-filtered split lists; folder-per-label and CSV: seeded split.  Each run trains 1-2 short
epochs and checks the checkpoint, the report and the saved model folder (its head = the data's labels).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

import mirzoo  # noqa: E402
from conftest import tone_mix, write_clip, write_gtzan, write_mtat  # noqa: E402
from mirzoo import datasets  # noqa: E402
from training import train as tt  # noqa: E402

SR = 16000
#: six of MagnaTagATune's real tag columns, in the header's order
MTAT_TAGS = ("no voice", "singer", "duet", "plucking", "hard rock", "world")


def _config(tmp_path, **extra):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"seed": 0, "steps_per_epoch": 2, "epochs": 2, "batch_size": 4, "patience": 5,
                                "augment": {"gain_db": 3.0, "noise_prob": 0.5}, **extra}))
    return str(path)


def _run(tmp_path, data, **cfg):
    out = tmp_path / "run"
    argv = ["--model", "cnn-tagging", "--config", _config(tmp_path, **cfg), "--cache", str(tmp_path / "cache"),
            "--out", str(out)] + [a for d in data for a in ("--data", d)]
    assert tt.main(argv) == 0
    return out, json.loads((out / "report.json").read_text())


@pytest.fixture
def mtat(tmp_path):
    # one clip per folder 0..f (two in folders 3 and c), mp3 as in the archive, real-style names
    rows = []
    for i, folder in enumerate("0123456789abcdef"):
        flags = [int((i + j) % 3 == 0) for j in range(len(MTAT_TAGS))]
        rows.append((f"{folder}/artist_{i}-album-{i:02d}-title-0-29.mp3", flags))
    rows.append(("3/artist_x-album-01-other-30-59.mp3", [1, 1, 0, 0, 0, 0]))
    rows.append(("c/artist_y-album-02-other-0-29.mp3", [0, 0, 1, 1, 0, 0]))  # validation: tags present and absent
    write_mtat(tmp_path / "mtat", rows, MTAT_TAGS, seconds=3.2, sr=SR)
    return tmp_path / "mtat"


def test_mtat_run_trains_a_multilabel_head_on_the_top_tags_split_by_folder(mtat, tmp_path):
    out, report = _run(tmp_path, [f"mtat:{mtat}"], top_k=4)
    # tag counts: no voice 7, plucking 7, duet 6, singer 6, hard rock / world 5 (ties go by name)
    assert report["vocabulary"] == ["duet", "no voice", "plucking", "singer"]
    data = report["data_set"]
    assert data["data"] == f"mtat:{mtat}" and data["multilabel"] is True
    # folders 0-b (12 folders, 13 clips) / c / d-f
    assert data["clips"] == {"train": 13, "valid": 2, "test": 3}
    assert "Dieleman & Schrauwen 2014" in data["split"]
    assert len(report["history"]) == 2 and 0 <= report["history"][0]["roc_auc_macro"] <= 1
    assert set(report["metrics"]) == {"test_mtat"} and report["metrics"]["test_mtat"]["n_clips"] == 3
    assert (out / "best.weights.h5").is_file()
    m = mirzoo.load(str(out / "model"))
    assert m.labels == report["vocabulary"] and m.spec.head.activation == "sigmoid" and m.spec.head.multilabel
    probs = m.predict(tone_mix(3.0, SR), sr=SR)
    assert probs.shape == (4,) and np.all((probs >= 0) & (probs <= 1))
    assert "mtat" in m.spec.training["data"] and m.spec.hub_repo_id is None


def test_gtzan_run_trains_a_softmax_head_on_the_fault_filtered_split(tmp_path):
    split = {"train": [f"{g}/{g}.0000{j}.wav" for g in ("blues", "classical", "rock") for j in (0, 1)],
             "valid": ["blues/blues.00002.wav", "rock/rock.00002.wav"], "test": ["classical/classical.00002.wav"]}
    root = write_gtzan(tmp_path / "gtzan", per_genre=4, seconds=3.0, sr=SR, suffix=".au", split=split)
    out, report = _run(tmp_path, [f"gtzan:{root}"], epochs=1)
    assert report["vocabulary"] == ["blues", "classical", "rock"]
    assert report["data_set"]["clips"] == {"train": 6, "valid": 2, "test": 1}  # the 3 unlisted tracks: in none
    assert report["data_set"]["multilabel"] is False and "fault-filtered" in report["data_set"]["split"]
    assert {"accuracy", "macro_f1"} <= set(report["history"][0]) and len(report["history"]) == 1
    assert report["metrics"]["test_gtzan"]["accuracy"] in (0.0, 1.0)
    m = mirzoo.load(str(out / "model"))
    assert m.labels == ["blues", "classical", "rock"] and m.spec.head.activation == "softmax"
    assert m.spec.task == "classification" and m.spec.head.multilabel is False
    probs = m.predict(tone_mix(3.0, SR), sr=SR)
    assert probs.shape == (3,) and probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_gtzan_without_the_split_lists_stops_and_says_which_files(tmp_path, capsys):
    root = write_gtzan(tmp_path / "gtzan", per_genre=1, sr=SR)
    with pytest.raises(SystemExit, match=r"--data gtzan:.*'train_filtered.txt' not found .*coreyker/dnn-mgr"):
        tt.main(["--model", "cnn-tagging", "--config", _config(tmp_path), "--data", f"gtzan:{root}",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run")])


@pytest.mark.parametrize("value,message", [
    ("nope:x", "'nope:x': expected 'memory' or 'shards', or KIND:PATH with KIND one of mtat, gtzan, folder, csv"),
    ("mtat:", "'mtat:': no path after 'mtat:'"),
    ("mtat:/no/such/mtat", "'mtat:/no/such/mtat': '/no/such/mtat' does not exist"),
    ("disk", "'disk': expected 'memory' or 'shards'"),
])
def test_bad_data_values_are_named(value, message, capsys):
    with pytest.raises(SystemExit) as exc:
        tt.main(["--model", "cnn-tagging", "--data", value])
    assert exc.value.code == 2
    assert f"argument --data: {message}" in capsys.readouterr().err


def test_data_options_combine_a_data_set_with_a_streaming_mode(tmp_path):
    assert tt.split_data_options(None, {}) == ("memory", None)
    assert tt.split_data_options("shards", {}) == ("shards", None)
    assert tt.split_data_options([f"folder:{tmp_path}", "shards"], {}) == ("shards", ("folder", str(tmp_path)))
    assert tt.split_data_options(None, {"data": "shards", "dataset": f"csv:{tmp_path}"}) == ("shards", ("csv", str(tmp_path)))
    with pytest.raises(SystemExit, match="at most one streaming mode"):
        tt.split_data_options(["memory", "shards"], {})
    with pytest.raises(SystemExit, match=r"config dataset 'gtzan:/nowhere': '/nowhere' does not exist"):
        tt.split_data_options(None, {"dataset": "gtzan:/nowhere"})
    with pytest.raises(SystemExit, match=r"--data 'x:y'"):
        tt.split_data_options(["x:y"], {})


def test_frame_models_and_ship_are_refused_with_a_data_set(mtat, tmp_path):
    with pytest.raises(SystemExit, match="dense-frame is a frame model"):
        tt.main(["--model", "dense-frame", "--data", f"mtat:{mtat}", "--config", _config(tmp_path)])
    with pytest.raises(SystemExit, match="--ship replaces the zoo's weights"):
        tt.main(["--model", "cnn-tagging", "--data", f"mtat:{mtat}", "--ship", "--config", _config(tmp_path)])


def test_random_split_is_seeded_and_holds_out_every_label_set():
    items = [(f"/x/{label}/{i}.wav", [label]) for label in ("a", "b") for i in range(10)] + [("/x/c/0.wav", ["c"])]
    ds = datasets.Dataset(items)
    parts = tt.random_split(ds, 0.2, 0.1, seed=3)
    assert {s: len(p) for s, p in parts.items()} == {"train": 15, "valid": 4, "test": 2}
    assert [labels for _, labels in parts["valid"]].count(["a"]) == 2 and ["c"] in [l for _, l in parts["train"]]
    assert all(p.classes == ["a", "b", "c"] for p in parts.values())
    assert set(parts["train"].paths).isdisjoint(parts["valid"].paths + parts["test"].paths)
    assert tt.random_split(ds, 0.2, 0.1, seed=3)["valid"].paths == parts["valid"].paths
    assert tt.random_split(ds, 0.2, 0.1, seed=4)["valid"].paths != parts["valid"].paths
    small = datasets.Dataset([(f"/x/{i}.wav", ["a"]) for i in range(4)])
    assert [len(p) for p in tt.random_split(small, 0.49, 0.49, seed=0).values()] == [1, 2, 1]  # train, valid, test
    with pytest.raises(SystemExit, match="valid_fraction=0.6"):
        tt.random_split(ds, 0.6, 0.1, seed=0)


def test_csv_multilabel_run_with_shards_and_an_unreadable_clip(tmp_path):
    root = tmp_path / "clips"
    lines = ["path,labels"]
    for i in range(9):
        labels = ["jig", "reel", "jig;fiddle"][i % 3]
        write_clip(root / f"c{i}.flac", tone_mix(3.0, SR, seed=i), SR)
        lines.append(f"c{i}.flac,{labels}")
    (root / "c9.flac").write_bytes(b"not audio at all")  # decoded at caching: skipped, not fatal
    lines.append("c9.flac,jig")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    out, report = _run(tmp_path, [f"csv:{root / 'labels.csv'}", "shards"], epochs=1, valid_fraction=0.34,
                       test_fraction=0.0)
    assert report["vocabulary"] == ["fiddle", "jig", "reel"] and report["data_set"]["multilabel"] is True
    assert report["data"] == "shards" and (tmp_path / "cache" / "csv-labels.csv" / "shards-train" / "index.json").exists()
    used = report["data_set"]["clips_used"]
    assert sum(used.values()) == 9 and report["data_set"]["clips"]["train"] + report["data_set"]["clips"]["valid"] == 10
    m = mirzoo.load(str(out / "model"))
    assert m.labels == ["fiddle", "jig", "reel"] and m.spec.head.activation == "sigmoid"


def test_resume_continues_after_the_last_finished_epoch(mtat, tmp_path):
    """A run stopped after 2 epochs continues at epoch 2 with --resume and ends where one 3-epoch run does."""
    out, first = _run(tmp_path, [f"mtat:{mtat}"], top_k=4, epochs=2)
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 1 and state["vocabulary"] == first["vocabulary"] and (out / "last.weights.h5").is_file()
    argv = ["--model", "cnn-tagging", "--config", _config(tmp_path, top_k=4, epochs=3), "--cache",
            str(tmp_path / "cache"), "--out", str(out), "--data", f"mtat:{mtat}", "--resume"]
    assert tt.main(argv) == 0
    resumed = json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2]
    assert resumed["history"][:2] == first["history"]  # the first stint's record is kept, not redone
    assert resumed["train_minutes"] >= first["train_minutes"]
    # another vocabulary cannot resume this run
    argv[argv.index("--config") + 1] = _config(tmp_path, top_k=3, epochs=4)
    with pytest.raises(SystemExit, match="another vocabulary"):
        tt.main(argv)
