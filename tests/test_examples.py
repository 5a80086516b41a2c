"""The scripts in examples/ run end to end on tiny generated fixtures (small --epochs)."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, tone_mix

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script, args, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    return out


def _write(path, band, seed, seconds=3.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, tone_mix(seconds, seed=seed, freqs=tuple(rng.uniform(*band, 2))), SR)


BANDS = {"low": (80, 200), "high": (1500, 3000), "blues": (80, 200), "classical": (500, 900), "rock": (2000, 3500)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    for k, label in enumerate(("low", "high")):
        for i in range(5):
            _write(root / label / f"{label}{i}.wav", BANDS[label], 100 * k + i)
    return root


def test_finetune_folder(folder, tmp_path, monkeypatch, capsys):
    out = _run("finetune_folder.py", [folder, "-o", tmp_path / "m", "--epochs", "10"], monkeypatch, capsys)
    assert "labels: ['high', 'low']" in out and "on 10 clips (0 for validation)" in out
    assert (tmp_path / "m" / "mirzoo.json").is_file()
    lines = [l for l in out.splitlines() if "folder says" in l]
    assert len(lines) == 2  # one clip per class tagged by the reloaded model
    for line in lines:  # clips it was trained on: the head must have learnt them
        assert line.split(": ")[1].split()[0] == line.split()[-1], line


def test_sklearn_probe(folder, monkeypatch, capsys):
    out = _run("sklearn_probe.py", [folder, "--folds", "2"], monkeypatch, capsys)
    assert "exported 10 files" in out and "10 clips, 512 features (cnn-tagging, layer embedding, pool mean+std)" in out
    accuracy = float(out.split("accuracy over 2 folds: ")[1].split()[0])
    assert accuracy >= 0.8  # low vs high tones, chance 0.5


def test_gtzan_genre(tmp_path, monkeypatch, capsys):
    root = tmp_path / "gtzan"
    for k, genre in enumerate(("blues", "classical", "rock")):
        for i in range(5):  # GTZAN's own file names
            _write(root / "genres" / genre / f"{genre}.{i:05d}.wav", BANDS[genre], 10 * k + i)
    out = _run("gtzan_genre.py", [root, "--epochs", "10", "--test", "0.4"], monkeypatch, capsys)
    assert "Dataset(name='gtzan', items=15, classes=3, single-label)" in out
    accuracy = float(out.split("test accuracy ")[1].split(",")[0])
    assert "on 6 clips" in out and accuracy >= 0.5  # chance 1/3
    matrix = [l.split()[1:] for l in out.splitlines() if l.split()[:1] in (["blues"], ["classical"], ["rock"])]
    assert len(matrix) == 3 and sum(int(v) for row in matrix for v in row) == 6
