"""The mirzoo command line, run in-process through cli.main and once as a real subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest

import mirzoo
from mirzoo.cli import main


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in mirzoo.list_models():
        assert name in out
    assert "16000 Hz" in out and "random (seeded)" in out
    for name in mirzoo.list_models(pretrained=True):
        assert any(line.startswith(name + " ") and "pretrained" in line for line in out.splitlines())
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(mirzoo.list_models())


def test_info(capsys):
    assert main(["info", "crnn-tagging"]) == 0
    out = capsys.readouterr().out
    assert "16000 Hz" in out and "gru1" in out
    state = "weights       pretrained" if mirzoo.model_info("crnn-tagging")["pretrained"] else "NOT pretrained"
    assert state in out
    assert main(["info", "crnn-tagging", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"]["embedding"] == 64
    assert main(["info", "crnn-taging"]) == 2
    assert "crnn-tagging" in capsys.readouterr().err


def test_info_names_the_clip_tags_record(capsys):
    """A model whose entry has a clip_tags record says what tag() reads; one without says nothing of it."""
    assert main(["info", "tcn-music"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("clip tags")]
    record = mirzoo.model_info("tcn-music").get("clip_tags")
    if record is None:
        assert not line
    else:
        assert line == [f"  clip tags     tag(head='tags') reads a logistic regression on the {record['pool']} over the clip "
                        f"of {' + '.join(record['sources'])} (the head's frames: predict)"]
    assert main(["info", "crnn-tagging"]) == 0
    assert "clip tags" not in capsys.readouterr().out


def test_info_names_the_bar_model_record(capsys):
    assert main(["info", "tcn-music"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("bars ")]
    record = mirzoo.model_info("tcn-music").get("bar_model")
    if record is None:
        assert not line
    else:
        assert line == ["  bars          analyze() reads the bar length and downbeat phase with a bidirectional GRU over "
                        f"the tracked beats (bar_model, reading {' + '.join(record['sources'])})"]
    assert main(["info", "crnn-tagging"]) == 0
    assert "bar_model" not in capsys.readouterr().out


def test_extract_many_files_skips_bad_ones(audio_dir, tmp_path, capsys):
    bad = audio_dir / "broken.wav"
    bad.write_bytes(b"not audio")
    out = tmp_path / "emb.npz"
    code = main(["extract", "random-cnn", str(audio_dir), str(tmp_path / "missing.wav"), "-o", str(out), "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "missing.wav" in err
    data = np.load(out)
    assert len(data["paths"]) == 3 and not any("broken" in p for p in data["paths"])
    assert data["embeddings"].shape[1] == 960
    assert data["offsets"][-1] == data["embeddings"].shape[0] == data["timestamps"].shape[0]
    direct = mirzoo.load("random-cnn").extract(str(data["paths"][0])).embeddings
    np.testing.assert_allclose(data["embeddings"][data["offsets"][0]:data["offsets"][1]], direct, rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["emb.npz"]  # no temporaries


def test_extract_pooled_parquet(audio_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "emb.parquet"
    assert main(["extract", "random-cnn-musical", str(audio_dir), "-o", str(out), "--pool", "mean+std", "-q"]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 3
    assert len(table.column("embedding")[0]) == 2 * 288
    assert table.schema.metadata[b"mirzoo.pool"] == b"mean+std"


def test_extract_usage_errors(audio_dir, tmp_path, capsys):
    assert main(["extract", "random-cnn", str(audio_dir), "-o", str(tmp_path / "x.csv")]) == 2
    assert "x.csv' must end in .npz or .parquet" in capsys.readouterr().err
    assert main(["extract", "random-cnn", str(audio_dir), "-o", str(tmp_path / "x.npz"), "--layer", "nope"]) == 2
    assert "valid layers" in capsys.readouterr().err
    assert main(["extract", "random-cnn", str(tmp_path / "none.wav"), "-o", str(tmp_path / "y.npz")]) == 2
    err = capsys.readouterr().err
    assert "none.wav" in err and "every input failed; nothing written" in err
    assert not (tmp_path / "y.npz").exists() and not (tmp_path / "x.npz").exists()


def test_tag_command(capsys):
    assert main(["tag", "cnn-tagging", mirzoo.example_audio(), "--top-k", "3", "--json"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out.strip())
    assert len(row["tags"]) == 3
    assert ("not pretrained" in captured.err) == (not mirzoo.load("cnn-tagging").pretrained)
    # the example clip is a Bach chorale on piano: a trained tagger says so
    if mirzoo.load("cnn-tagging").pretrained:
        assert main(["tag", "cnn-tagging", mirzoo.example_audio(), "--top-k", "8", "--json"]) == 0
        tags = {t["tag"] for t in json.loads(capsys.readouterr().out.strip())["tags"]}
        assert "instrument:piano" in tags


def test_tag_command_head_choice(capsys):
    # dense-frame's primary head is its pitch classes; --head picks another head, a wrong one is a usage error
    assert main(["tag", "dense-frame", mirzoo.example_audio(), "--top-k", "12", "--json"]) == 0
    labels = {t["tag"] for t in json.loads(capsys.readouterr().out.strip())["tags"]}
    assert labels == {"C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"}
    assert main(["tag", "dense-frame", mirzoo.example_audio(), "--head", "chords"]) == 2
    assert "head='chords' is not one of model 'dense-frame'" in capsys.readouterr().err
    assert main(["tag", "random-cnn", mirzoo.example_audio()]) == 2
    assert "has no output head" in capsys.readouterr().err
    heads = mirzoo.load("dense-frame").heads
    if "tags" in heads:
        assert main(["tag", "dense-frame", mirzoo.example_audio(), "--head", "tags", "--json"]) == 0
        tags = [t["tag"] for t in json.loads(capsys.readouterr().out.strip())["tags"]]
        assert len(tags) == 5 and set(tags) <= set(heads["tags"])


def test_tag_and_analyze_refuse_bad_options_before_loading_a_model(monkeypatch, tmp_path, capsys):
    import mirzoo.loader

    def no_load(*args, **kwargs):
        raise AssertionError("a usage error must stop the command before the model is loaded")

    monkeypatch.setattr(mirzoo.loader, "load", no_load)
    clip = mirzoo.example_audio()
    for argv, message in (
        (["tag", "cnn-tagging", clip, "--top-k", "0"], "top_k=0 must be a positive integer or None"),
        (["tag", "cnn-tagging", clip, "--threshold", "1.5"], "threshold=1.5 must be a number in [0, 1] or None"),
        (["tag", "cnn-tagging", clip, "--plot", str(tmp_path / "t.jpg")], "t.jpg' must end in .png, .pdf or .svg"),
        (["analyze", clip, "-o", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.gif")],
         "a.gif' must end in .png, .pdf or .svg"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and f"mirzoo {argv[0]}: error:" in err
    assert not (tmp_path / "a.json").exists()


def test_console_script_help_and_exit_codes():
    run = subprocess.run([sys.executable, "-m", "mirzoo", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "extract" in run.stdout and "examples:" in run.stdout
    run = subprocess.run([sys.executable, "-m", "mirzoo", "extract", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "--pool" in run.stdout
    run = subprocess.run([sys.executable, "-m", "mirzoo", "info", "nope"], capture_output=True, text=True)
    assert run.returncode == 2 and "unknown model 'nope'" in run.stderr


# -- fine-tune and evaluate ----------------------------------------------------------------------------


def _labelled(root, per_class, offset, seconds=3.0):
    """Folder per label: 'low' (80-200 Hz tones) and 'high' (1.5-3 kHz tones), seeded."""
    import soundfile as sf
    from conftest import SR, tone_mix

    for kind, band in (("low", (80, 200)), ("high", (1500, 3000))):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng(offset + 17 * i + len(kind))
            sf.write(root / kind / f"{kind}{i}.wav", tone_mix(seconds, seed=offset + i, freqs=tuple(rng.uniform(*band, 2))), SR)
    return root


def test_fine_tune_then_evaluate(tmp_path, capsys):
    train = _labelled(tmp_path / "train", 6, 0)
    test = _labelled(tmp_path / "test", 3, 500)
    out = tmp_path / "model"
    assert main(["fine-tune", "random-cnn", str(train), "-o", str(out), "--epochs", "15", "--validation", "0.34", "-q"]) == 0
    text = capsys.readouterr().out
    assert "on 8 clips (4 for validation); 2 classes, single-label (softmax): high, low" in text
    line = next(l for l in text.splitlines() if l.startswith("validation: "))
    assert "accuracy" in line and "macro_f1" in line and "n_clips 4" in line
    assert float(line.split("accuracy ")[1].split(",")[0]) >= 0.75  # chance 0.5
    again = mirzoo.load(str(out))
    assert again.labels == ["high", "low"] and not again.entry["head"]["multilabel"]

    assert main(["evaluate", str(out), str(test)]) == 0
    text = capsys.readouterr().out
    acc = float(next(l for l in text.splitlines() if l.startswith("accuracy")).split()[1])
    assert acc >= 5 / 6
    assert "macro-F1" in text and "confusion matrix (rows: true, columns: predicted" in text
    rows = [l.split() for l in text.splitlines() if l.startswith(("high ", "low "))]
    assert [r[0] for r in rows] == ["high", "low"] and sum(int(v) for r in rows for v in r[1:3]) == 6
    assert main(["evaluate", str(out), str(test), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["labels"] == ["high", "low"] and np.trace(scores["confusion_matrix"]) == round(acc * 6)
    assert scores["accuracy"] == pytest.approx(acc, abs=1e-4)

    # an existing output is refused before any training; unknown test labels are an error naming them
    assert main(["fine-tune", "random-cnn", str(train), "-o", str(out)]) == 2
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    (test / "mid").mkdir()
    (test / "high" / "high0.wav").rename(test / "mid" / "mid0.wav")
    assert main(["evaluate", str(out), str(test)]) == 2
    assert "labels ['mid'] are not among the classes ['high', 'low']" in capsys.readouterr().err


def test_fine_tune_multi_label_flag(tmp_path, capsys):
    train = _labelled(tmp_path / "train", 4, 40)
    out = tmp_path / "model"
    assert main(["fine-tune", "random-cnn", str(train), "-o", str(out), "--epochs", "10", "--multi-label", "-q"]) == 0
    text = capsys.readouterr().out
    assert "2 classes, multi-label (sigmoid)" in text and "validation: none" in text
    assert mirzoo.load(str(out)).entry["head"]["activation"] == "sigmoid"
    assert main(["evaluate", str(out), str(_labelled(tmp_path / "test", 3, 700))]) == 0
    text = capsys.readouterr().out
    auc = float(next(l for l in text.splitlines() if l.startswith("ROC-AUC")).split()[-1])
    assert auc > 0.8 and "PR-AUC (macro)" in text and "confusion" not in text
    assert main(["fine-tune", "random-cnn", str(train), "-o", str(tmp_path / "m2"), "--epochs", "0"]) == 2
    assert "epochs=0" in capsys.readouterr().err
