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


def test_console_script_help_and_exit_codes():
    run = subprocess.run([sys.executable, "-m", "mirzoo", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "extract" in run.stdout and "examples:" in run.stdout
    run = subprocess.run([sys.executable, "-m", "mirzoo", "extract", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "--pool" in run.stdout
    run = subprocess.run([sys.executable, "-m", "mirzoo", "info", "nope"], capture_output=True, text=True)
    assert run.returncode == 2 and "unknown model 'nope'" in run.stderr
