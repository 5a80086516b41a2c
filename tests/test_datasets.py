"""Tests of mirzoo.datasets on tiny fixtures built in tmp_path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")

from conftest import write_gtzan, write_mtat  # noqa: E402
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
    return write_mtat(root, rows, tags)


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


# --------------------------------------------------------------------------- GiantSteps key, Ballroom, NSynth
# Fixtures copy each data set's layout and annotation format; the audio is generated.


@pytest.fixture
def giantsteps(tmp_path):
    # github.com/GiantSteps/giantsteps-key-dataset: annotations/key/<id>.LOFI.key, audio/<id>.LOFI.mp3
    root = tmp_path / "giantsteps-key-dataset"
    keys = {"10089.LOFI": "Eb minor", "1011271.LOFI": "A major", "102282.LOFI": "C# minor\n", "1030011.LOFI": "F minor"}
    for i, (stem, key) in enumerate(keys.items()):
        (root / "annotations" / "key").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "key" / f"{stem}.key").write_text(key)
        _sine(root / "audio" / f"{stem}.wav", 200.0 + 50 * i)
    return root


def test_giantsteps_key_labels_and_auto_detection(giantsteps):
    ds = datasets.load_giantsteps_key(giantsteps)
    assert len(ds) == 4 and not ds.multilabel and ds.name == "giantsteps"
    by_id = {p.split("/")[-1]: labels[0] for p, labels in ds}
    assert by_id == {"10089.LOFI.wav": "Eb minor", "1011271.LOFI.wav": "A major",
                     "102282.LOFI.wav": "Db minor", "1030011.LOFI.wav": "F minor"}  # C# spelled Db
    assert set(ds.classes) <= set(datasets.KEY_NAMES) and len(datasets.KEY_NAMES) == 24
    assert ds.annotations[0]["annotation"].endswith("annotations/key/10089.LOFI.key")
    assert datasets.load_dataset(giantsteps).name == "giantsteps"


@pytest.mark.parametrize("text, canonical", [("Eb minor", "Eb minor"), ("d# MINOR", "Eb minor"), ("B maj", "B major"),
                                             ("Cb major", "B major"), ("E# minor", "F minor")])
def test_parse_key_spellings(text, canonical):
    assert datasets.parse_key(text) == canonical


@pytest.mark.parametrize("text, message", [("H minor", "line 1: 'H minor' is not a key"),
                                           ("Eb dorian", "line 1: 'Eb dorian' is not a key"),
                                           ("Eb", "line 1: 'Eb' is not a key; expected '<tonic> <mode>'"),
                                           ("", "line 1: the file is empty"),
                                           ("Eb minor\nA major", "line 2: expected a single key line")])
def test_giantsteps_bad_key_file_names_file_and_line(giantsteps, text, message):
    bad = giantsteps / "annotations" / "key" / "10089.LOFI.key"
    bad.write_text(text)
    with pytest.raises(ParameterError, match="10089.LOFI.key' " + message.replace("(", r"\(").replace(")", r"\)")):
        datasets.load_giantsteps_key(giantsteps)


def test_giantsteps_missing_audio_and_folder(giantsteps, tmp_path):
    (giantsteps / "audio" / "10089.LOFI.wav").unlink()
    with pytest.raises(ParameterError, match=r"1 audio file\(s\) listed .* do not exist: '.*10089.LOFI.mp3'"):
        datasets.load_giantsteps_key(giantsteps)
    assert len(datasets.load_giantsteps_key(giantsteps, check_files=False)) == 4
    with pytest.raises(ParameterError, match="annotations/key' not found"):
        datasets.load_giantsteps_key(tmp_path)


# Krebs et al. 2013 (github.com/CPJKU/BallroomAnnotations): "<time> <beat position>" per line
_BEATS = "0.0299 3\n0.4399 4\n0.8399 1\n1.2399 2\n1.6299 3\n2.0299 4\n2.4199 1\n"


@pytest.fixture
def ballroom(tmp_path):
    root = tmp_path / "ballroom"
    names = {"ChaChaCha": ["Albums-Cafe_Paradiso-05", "Media-103402"], "Waltz": ["Albums-Ballroom_Classics4-01"],
             "Samba": ["Albums-Latin_Jam-08"]}
    for i, (genre, stems) in enumerate(names.items()):
        for j, stem in enumerate(stems):
            _sine(root / "BallroomData" / genre / f"{stem}.wav", 300.0 + 40 * i + j)
            (root / "BallroomAnnotations").mkdir(parents=True, exist_ok=True)
            (root / "BallroomAnnotations" / f"{stem}.beats").write_text(_BEATS if i != 1 else "0.5 1\n1.1 2\n1.7 3\n")
    return root


def test_ballroom_genres_and_beats(ballroom):
    ds = datasets.load_ballroom(ballroom)
    assert ds.classes == ["ChaChaCha", "Samba", "Waltz"] and len(ds) == 4 and ds.name == "ballroom"
    index = {p.split("/")[-1]: i for i, p in enumerate(ds.paths)}
    cafe = ds.annotations[index["Albums-Cafe_Paradiso-05.wav"]]
    np.testing.assert_allclose(cafe["beats"][:, 0], [0.0299, 0.4399, 0.8399, 1.2399, 1.6299, 2.0299, 2.4199])
    np.testing.assert_array_equal(cafe["beats"][:, 1], [3, 4, 1, 2, 3, 4, 1])
    np.testing.assert_allclose(cafe["downbeats"], [0.8399, 2.4199])
    waltz = ds.annotations[index["Albums-Ballroom_Classics4-01.wav"]]
    assert waltz["beats"].shape == (3, 2) and waltz["downbeats"].tolist() == [0.5]
    assert datasets.load_dataset(ballroom).name == "ballroom"
    assert datasets.load_dataset(ballroom / "BallroomData").name == "ballroom"  # annotations found beside it
    sub = ds.subset([index["Albums-Ballroom_Classics4-01.wav"]])
    assert sub.annotations[0]["beats"].shape == (3, 2)


@pytest.mark.parametrize("text, message", [
    ("0.1 1\n0.5\n", "line 2: '0.5' has 1 field"),
    ("0.1 1\n\n0.5 x\n", "line 3: '0.5 x' is not '<time in seconds> <beat position in bar>'"),
    ("0.1 1\n0.05 2\n", "line 2: time 0.05 does not follow"),
    ("0.1 0\n", "line 1: time 0.1 must be >= 0 and position 0 >= 1"),
    ("\n", "line 1: the file holds no beats"),
])
def test_ballroom_bad_beats_file_names_file_and_line(ballroom, text, message):
    (ballroom / "BallroomAnnotations" / "Media-103402.beats").write_text(text)
    with pytest.raises(ParameterError, match="Media-103402.beats' " + message):
        datasets.load_ballroom(ballroom)


def test_ballroom_missing_beats(ballroom):
    (ballroom / "BallroomAnnotations" / "Albums-Latin_Jam-08.beats").unlink()
    with pytest.raises(ParameterError, match=r"beat annotation file '.*Albums-Latin_Jam-08.beats' for "
                                             r"'.*Samba/Albums-Latin_Jam-08.wav' not found"):
        datasets.load_ballroom(ballroom)
    assert datasets.load_ballroom(ballroom, beats=False).annotations is None
    import shutil
    shutil.rmtree(ballroom / "BallroomAnnotations")
    with pytest.raises(ParameterError, match="'BallroomAnnotations' folder"):
        datasets.load_ballroom(ballroom)


def _nsynth_note(family, source, pitch, velocity=100, instrument=0):
    name = f"{family}_{source}_{instrument:03d}"
    return f"{name}-{pitch:03d}-{velocity:03d}", {
        "note": 1000 + pitch, "sample_rate": 16000, "pitch": pitch, "instrument_source": ["acoustic", "electronic", "synthetic"].index(source),
        "instrument_family_str": family, "instrument_str": name, "note_str": f"{name}-{pitch:03d}-{velocity:03d}",
        "qualities_str": ["bright"], "instrument_source_str": source, "velocity": velocity,
        "instrument_family": ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                              "string", "synth_lead", "vocal"].index(family),
        "instrument": instrument, "qualities": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }


@pytest.fixture
def nsynth(tmp_path):
    root = tmp_path / "nsynth"
    split = root / "nsynth-valid"
    notes = dict(_nsynth_note(f, s, p) for f, s, p in
                 [("bass", "synthetic", 40), ("guitar", "acoustic", 60), ("guitar", "electronic", 64), ("organ", "electronic", 60)])
    for note, fields in notes.items():
        _sine(split / "audio" / f"{note}.wav", 440.0 * 2 ** ((fields["pitch"] - 69) / 12), seconds=0.2, sr=16000)
    (split / "examples.json").write_text(json.dumps(notes, indent=4))
    return root


def test_nsynth_targets_and_annotations(nsynth):
    ds = datasets.load_nsynth(nsynth, split="valid")
    assert ds.classes == ["bass", "guitar", "organ"] and len(ds) == 4 and ds.name == "nsynth"
    assert ds.items[0][0].endswith("nsynth-valid/audio/bass_synthetic_000-040-100.wav")
    assert ds.annotations[0]["pitch"] == 40 and ds.annotations[0]["velocity"] == 100
    pitch = datasets.load_nsynth(nsynth / "nsynth-valid", target="pitch")
    assert pitch.classes == ["40", "60", "64"]
    assert datasets.load_nsynth(nsynth / "nsynth-valid", target="instrument_source").classes == [
        "acoustic", "electronic", "synthetic"]
    assert datasets.load_dataset(nsynth / "nsynth-valid").name == "nsynth"
    with pytest.raises(ParameterError, match=r"pass an nsynth-<split> folder or split= \(found \['nsynth-valid'\]\)"):
        datasets.load_nsynth(nsynth)
    with pytest.raises(ParameterError, match="target='velocity'"):
        datasets.load_nsynth(nsynth, split="valid", target="velocity")


def test_nsynth_bad_examples_json_names_file_and_line(nsynth):
    meta = nsynth / "nsynth-valid" / "examples.json"
    notes = json.loads(meta.read_text())
    del notes["guitar_acoustic_000-060-100"]["instrument_family_str"]
    meta.write_text(json.dumps(notes, indent=4))
    line = meta.read_text().splitlines().index('    "guitar_acoustic_000-060-100": {') + 1
    with pytest.raises(ParameterError, match=f"examples.json' line {line}: note 'guitar_acoustic_000-060-100' has no "
                                             "'instrument_family_str' field"):
        datasets.load_nsynth(nsynth, split="valid")
    meta.write_text('{\n  "a": {"pitch": 60,}\n}\n')
    with pytest.raises(ParameterError, match="examples.json' line 2: invalid JSON"):
        datasets.load_nsynth(nsynth, split="valid")
    meta.write_text('{"bass_synthetic_000-040-100": {"pitch": 300}}')
    with pytest.raises(ParameterError, match="line 1: note 'bass_synthetic_000-040-100' has pitch 300"):
        datasets.load_nsynth(nsynth, split="valid", target="pitch")
    meta.unlink()
    with pytest.raises(ParameterError, match="holds no examples.json"):
        datasets.load_nsynth(nsynth / "nsynth-valid")


def test_gtzan_fault_filtered_split_lists(tmp_path):
    # the original archive holds .au files; the published lists name .wav: matched by genre and stem
    root = write_gtzan(tmp_path / "gtzan", per_genre=3, suffix=".au", split={
        "train": ["blues/blues.00000.wav", "classical/classical.00000.wav", "rock/rock.00001.wav"],
        "valid": ["blues/blues.00001.wav", "rock/rock.00000.wav"],
        "test": ["classical/classical.00002.wav", ""],  # blank lines are ignored
    })
    train = datasets.load_gtzan(root, split="train")
    assert [p.rsplit("/", 2)[-2:] for p in train.paths] == [
        ["blues", "blues.00000.au"], ["classical", "classical.00000.au"], ["rock", "rock.00001.au"]]
    assert train.classes == ["blues", "classical", "rock"] and not train.multilabel
    valid, test = datasets.load_gtzan(root, split="valid"), datasets.load_gtzan(root, split="test")
    assert [labels for _, labels in valid] == [["blues"], ["rock"]] and len(test) == 1
    # every split keeps all genres as classes (same columns), though the test list holds one genre
    assert test.classes == train.classes and test.label_matrix().tolist() == [[0, 1, 0]]
    # files not on any list (faulty excerpts) are in no split
    listed = set(train.paths) | set(valid.paths) | set(test.paths)
    assert len(listed) == 6 and len(datasets.load_gtzan(root)) == 9


def test_gtzan_split_errors_name_the_file_and_line(tmp_path):
    root = write_gtzan(tmp_path / "g", per_genre=1)
    with pytest.raises(ParameterError, match=r"'train_filtered.txt' not found in .*coreyker/dnn-mgr"):
        datasets.load_gtzan(root, split="train")
    with pytest.raises(ParameterError, match="split='dev'"):
        datasets.load_gtzan(root, split="dev")
    (root / "train_filtered.txt").write_text("blues/blues.00000.wav\nblues.00001.wav\n")
    with pytest.raises(ParameterError, match=r"train_filtered.txt' line 2: 'blues.00001.wav' is not '<genre>/<file>'"):
        datasets.load_gtzan(root, split="train")
    (root / "train_filtered.txt").write_text("blues/blues.00000.wav\nrock/rock.00007.wav\n")
    with pytest.raises(ParameterError, match=r"1 track\(s\) listed in .*train_filtered.txt' are not under .*'rock/rock.00007.wav'"):
        datasets.load_gtzan(root, split="train")
    # the lists may live elsewhere
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "valid_filtered.txt").write_text("rock/rock.00000.wav\n")
    assert datasets.load_gtzan(root, split="valid", split_dir=lists).paths[0].endswith("rock/rock.00000.wav")
