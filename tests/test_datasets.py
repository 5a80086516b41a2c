"""Tests of mirzoo.datasets on tiny fixtures built in tmp_path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")

from mirzoo import datasets  # noqa: E402
from mirzoo.errors import AudioFileError, ParameterError  # noqa: E402

SR = 8000


def _sine(path, freq=440.0, seconds=0.25, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


@pytest.fixture
def gtzan(tmp_path):
    root = tmp_path / "gtzan"
    for i, genre in enumerate(("blues", "classical", "rock")):
        for j in range(2):
            _sine(root / "genres" / genre / f"{genre}.{j:05d}.wav", 220.0 * (i + 1) + j)
    return root


def test_gtzan_layout_with_genres_folder(gtzan):
    ds = datasets.load_gtzan(gtzan)
    assert len(ds) == 6
    assert ds.classes == ["blues", "classical", "rock"]
    assert not ds.multilabel
    paths, y = ds.to_arrays()
    assert len(paths) == 6 and y.shape == (6, 3) and y.dtype == np.float32
    assert np.all(y.sum(axis=1) == 1)
    assert ds.label_counts() == {"blues": 2, "classical": 2, "rock": 2}


def test_gtzan_without_genres_folder_and_auto_detection(gtzan, tmp_path):
    flat = gtzan / "genres"
    ds = datasets.load_dataset(flat)  # subfolders are GTZAN genres
    assert ds.name == "gtzan" and len(ds) == 6
    assert datasets.load_dataset(gtzan).name == "gtzan"


def test_to_arrays_decodes_at_target_rate(gtzan):
    ds = datasets.load_gtzan(gtzan)
    x, y = ds.to_arrays(sr=16000)
    assert len(x) == len(ds) == y.shape[0]
    assert all(w.dtype == np.float32 and w.ndim == 1 for w in x)
    assert abs(x[0].size - 0.25 * 16000) <= 2
    # iteration yields (path, labels) pairs in item order
    assert [labels for _, labels in ds][0] == ["blues"]


def test_folder_per_label_recursive(tmp_path):
    root = tmp_path / "data"
    _sine(root / "guitar" / "a.wav")
    _sine(root / "guitar" / "sub" / "b.flac")
    _sine(root / "piano" / "c.wav")
    (root / "piano" / "notes.txt").write_text("not audio")
    ds = datasets.load_dataset(root)
    assert ds.name == "folder"
    assert ds.classes == ["guitar", "piano"]
    assert sorted(labels[0] for _, labels in ds) == ["guitar", "guitar", "piano"]


def test_folder_errors(tmp_path):
    with pytest.raises(ParameterError, match="not found"):
        datasets.load_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "label").mkdir(parents=True)
    with pytest.raises(ParameterError, match="no audio files"):
        datasets.load_folder(empty)
    loose = tmp_path / "loose"
    _sine(loose / "a.wav")
    (loose / "x").mkdir()
    with pytest.raises(ParameterError, match="directly in it"):
        datasets.load_folder(loose)
    with pytest.raises(ParameterError, match="does not exist"):
        datasets.load_dataset(tmp_path / "nowhere")
    with pytest.raises(ParameterError, match="kind="):
        datasets.load_dataset(loose, kind="mp3s")


def _write_mtat(root, rows, tags=("guitar", "classical", "slow", "techno")):
    root.mkdir(parents=True, exist_ok=True)
    header = ["clip_id", *tags, "mp3_path"]
    with open(root / "annotations_final.csv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL)
        w.writerow(header)
        for i, (rel, flags) in enumerate(rows):
            w.writerow([i, *flags, rel])
            _sine(root / rel)
    return root / "annotations_final.csv"


def test_magnatagatune_top_k_and_split(tmp_path):
    csv_path = _write_mtat(tmp_path / "mtat", [
        ("0/a.mp3.wav", (1, 1, 0, 0)),
        ("1/b.mp3.wav", (1, 0, 1, 0)),
        ("c/c.mp3.wav", (1, 1, 0, 0)),
        ("f/d.mp3.wav", (0, 0, 0, 1)),
    ])
    ds = datasets.load_dataset(csv_path.parent)
    assert ds.name == "magnatagatune" and ds.multilabel and len(ds) == 4
    assert ds.classes == sorted(["classical", "guitar", "slow", "techno"])
    top2 = datasets.load_magnatagatune(csv_path, top_k=2)
    assert top2.classes == ["classical", "guitar"]  # counts 2 and 3
    _, y = top2.to_arrays()
    assert y.tolist() == [[1, 1], [0, 1], [1, 1], [0, 0]]
    assert len(datasets.load_magnatagatune(csv_path, top_k=2, drop_untagged=True)) == 3
    assert [p.split("/")[-2] for p in datasets.load_magnatagatune(csv_path, split="train").paths] == ["0", "1"]
    assert len(datasets.load_magnatagatune(csv_path, split="valid")) == 1
    assert len(datasets.load_magnatagatune(csv_path, split="test")) == 1


def test_magnatagatune_errors(tmp_path):
    with pytest.raises(ParameterError, match="annotations_final.csv"):
        datasets.load_magnatagatune(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "annotations_final.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ParameterError, match="does not look like"):
        datasets.load_magnatagatune(bad)
    csv_path = _write_mtat(tmp_path / "m2", [("0/a.wav", (1, 0, 0, 0))])
    with pytest.raises(ParameterError, match="top_k"):
        datasets.load_magnatagatune(csv_path, top_k=0)
    (tmp_path / "m2" / "0" / "a.wav").unlink()
    with pytest.raises(ParameterError, match="do not exist"):
        datasets.load_magnatagatune(csv_path)
    assert len(datasets.load_magnatagatune(csv_path, check_files=False)) == 1


def test_csv_label_column_single_and_multi(tmp_path):
    a, b = _sine(tmp_path / "audio" / "a.wav"), _sine(tmp_path / "audio" / "b.wav")
    single = tmp_path / "single.csv"
    single.write_text("path,label\naudio/a.wav,rock\naudio/b.wav,jazz\n")
    ds = datasets.load_dataset(single)
    assert ds.name == "csv" and not ds.multilabel and ds.classes == ["jazz", "rock"]
    assert ds.paths == [str(a), str(b)]
    multi = tmp_path / "multi.csv"
    multi.write_text(f"file,tags\n{a},rock;live\n{b},jazz\n")
    ds = datasets.load_csv(multi)
    assert ds.multilabel and ds.classes == ["jazz", "live", "rock"]
    assert ds.to_arrays()[1].tolist() == [[0, 1, 1], [1, 0, 0]]


def test_csv_one_hot_columns(tmp_path):
    _sine(tmp_path / "a.wav")
    _sine(tmp_path / "b.wav")
    path = tmp_path / "onehot.tsv"
    path.write_text("path\tpiano\tvoice\na.wav\t1\t0\nb.wav\t1\t1\n")
    ds = datasets.load_dataset(path)
    assert ds.multilabel and ds.classes == ["piano", "voice"]
    assert ds.to_arrays()[1].tolist() == [[1, 0], [1, 1]]


def test_csv_errors(tmp_path):
    _sine(tmp_path / "a.wav")
    with pytest.raises(ParameterError, match="not found"):
        datasets.load_csv(tmp_path / "none.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    with pytest.raises(ParameterError, match="no data rows"):
        datasets.load_csv(empty)
    onecol = tmp_path / "onecol.csv"
    onecol.write_text("path\na.wav\n")
    with pytest.raises(ParameterError, match="single column"):
        datasets.load_csv(onecol)
    bad_values = tmp_path / "bad.csv"
    bad_values.write_text("path,piano,voice\na.wav,1,maybe\n")
    with pytest.raises(ParameterError, match="not 0/1"):
        datasets.load_csv(bad_values)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("path,piano,voice\na.wav,1\n")
    with pytest.raises(ParameterError, match="fields"):
        datasets.load_csv(ragged)
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nnope.wav,x\n")
    with pytest.raises(ParameterError, match="nope.wav"):
        datasets.load_csv(missing)
    ds = datasets.load_csv(missing, check_files=False)
    with pytest.raises(AudioFileError, match="nope.wav"):
        ds.to_arrays(sr=SR)


def test_pairs_and_dataset_validation(tmp_path):
    a = _sine(tmp_path / "a.wav")
    ds = datasets.load_dataset([(a, "x"), (a, ["x", "y"])])
    assert ds.multilabel and ds.classes == ["x", "y"] and len(ds.subset([1])) == 1
    with pytest.raises(ParameterError, match="empty"):
        datasets.load_dataset([])
    with pytest.raises(ParameterError, match="not in classes"):
        datasets.Dataset([(a, "z")], classes=["x"])
    with pytest.raises(ParameterError, match="pair"):
        datasets.Dataset([a])
    with pytest.raises(ParameterError, match="path or a list"):
        datasets.load_dataset(42)


def test_corpus_loader_on_fake_metadata(tmp_path):
    root = tmp_path / "corpus"
    _sine(root / "audio" / "train" / "c" / "x.flac")
    _sine(root / "audio" / "test" / "c" / "y.flac")
    (root / "build_config.json").write_text(json.dumps({"seed": 0}))
    (root / "metadata.csv").write_text(
        "clip_id,path,split,tags\n"
        "x,audio/train/c/x.flac,train,instrument:piano;style:baroque\n"
        "y,audio/test/c/y.flac,test,instrument:organ;style:folk\n"
    )
    ds = datasets.load_dataset(root)
    assert ds.name == "corpus" and ds.multilabel and len(ds) == 2
    train = datasets.load_corpus(root, split="train", tag_prefixes=["instrument:"])
    assert len(train) == 1 and train.classes == ["instrument:organ", "instrument:piano"]
    assert train.to_arrays()[1].tolist() == [[0, 1]]
    with pytest.raises(ParameterError, match="split="):
        datasets.load_corpus(root, split="dev")
    with pytest.raises(ParameterError, match="not a built corpus"):
        datasets.load_corpus(tmp_path / "corpus" / "audio")
