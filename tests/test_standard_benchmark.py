"""benchmarks/standard.py: absent data sets named with where they are expected; the key score; both probes on a
standard split; the GTZAN fault-filtered split and its CV fallback; the table beside published figures."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytest.importorskip("sklearn")
standard = pytest.importorskip("standard")


def test_absent_data_sets_are_skipped_with_where_expected(tmp_path, capsys):
    assert standard.main(["--gtzan", str(tmp_path / "nope"), "--models", "random-cnn"]) == 0
    out = capsys.readouterr().out
    assert f"skipped gtzan ('{tmp_path / 'nope'}' not found): pass --gtzan PATH; expected GTZAN: genres/<genre>/" in out
    for name in ("giantsteps", "ballroom", "nsynth", "mtat"):
        assert f"skipped {name} (not given): pass --{name} PATH; expected " in out
    assert "annotations/key/<id>.LOFI.key" in out and "nothing to run" in out


def test_mirex_key_score():
    pytest.importorskip("mir_eval")
    ref = ["A minor", "A minor", "A minor", "A minor", "C major"]
    est = ["A minor", "E minor", "C major", "A major", "Db major"]  # same, fifth above, relative, parallel, wrong
    assert standard.mirex_key_score(ref, est) == pytest.approx((1 + 0.5 + 0.3 + 0.2 + 0) / 5)


def _gtzan_with_split(root, per_genre=5):
    from conftest import write_gtzan

    genres = ("blues", "classical", "rock")
    names = {g: [f"{g}/{g}.{j:05d}.wav" for j in range(per_genre)] for g in genres}
    split = {"train": [n for g in genres for n in names[g][:3]], "valid": [names[g][3] for g in genres],
             "test": [names[g][4] for g in genres]}
    return write_gtzan(root, genres, per_genre, seconds=1.0, sr=16000, split=split)


def test_split_probe_chooses_on_valid_and_scores_on_test():
    rng = np.random.default_rng(0)
    y = {s: np.repeat(["a", "b", "c"], n) for s, n in (("train", 20), ("valid", 6), ("test", 6))}
    def part(s, signal):
        base = rng.standard_normal((len(y[s]), 8))
        if signal:  # class k: feature k shifted by 6 standard deviations
            base[np.arange(len(y[s])), ["abc".index(v) for v in y[s]]] += 6.0
        return base

    feats = {"noise": {s: part(s, False) for s in y}, "signal": {s: part(s, True) for s in y}}
    for probe in standard.PROBES:
        out = standard.split_probe(probe, feats, y, (0.01, 1.0), seed=0, hidden=16)
        assert out["layer"] == "signal" and out["accuracy"] >= 0.9 and out["protocol"] == "split"
        assert out == standard.split_probe(probe, feats, y, (0.01, 1.0), seed=0, hidden=16)  # seeded
    # multi-label: tag j is on when feature j is high
    x = {s: rng.standard_normal((n, 4)) for s, n in (("train", 60), ("valid", 20), ("test", 20))}
    tags = {s: (x[s][:, :2] > 0).astype(np.float32) for s in x}
    for probe in standard.PROBES:
        out = standard.split_probe(probe, {"emb": x}, tags, (1.0,), seed=0, hidden=16, multilabel=True)
        assert out["roc_auc_macro"] > 0.9 and out["tags_scored"] == 2 and 0 < out["pr_auc_macro"] <= 1


def test_results_table_puts_published_figures_beside_ours_and_n_r_where_none():
    results = {"mtat-tagging": {"cnn-tagging": {"logreg": {"roc_auc_macro": 0.81234, "pr_auc_macro": 0.2, "protocol": "split"}}}}
    table = standard.results_table(results)
    assert "| mtat-tagging | roc_auc_macro | mirzoo cnn-tagging | logreg | 0.812 | split |" in table
    assert "| mtat-tagging | roc_auc_macro | musicnn MTT_musicnn | trained end to end on MTAT, 0-b/c/d-f split | 0.907 |" in table
    assert "| mtat-tagging | pr_auc_macro | musicnn MTT_musicnn |" in table and "| 0.383 |" in table
    assert "| gtzan-genre | accuracy | MERT-330M | probe, fault-filtered split | n/r | Li et al. 2023, Table 2 |" in table
    # every published figure names a source
    assert all(source for *_, source in standard.PUBLISHED)


def test_benchmark_on_gtzan_split_and_mtat_fixtures(tmp_path, capsys):
    import json

    from conftest import write_mtat

    gtzan = _gtzan_with_split(tmp_path / "gtzan")
    rows = [(f"{folder}/clip_{i}-x-0-29.mp3", [int(i % 2 == 0), int(i % 2 == 1), int(i % 3 == 0)])
            for i, folder in enumerate("0123456789abcdef" * 2)]
    mtat = write_mtat(tmp_path / "mtat", rows, ("guitar", "classical", "slow"), seconds=1.0, sr=16000).parent
    out = tmp_path / "out"
    assert standard.main(["--gtzan", str(gtzan), "--mtat", str(mtat), "--models", "random-cnn", "--out", str(out),
                          "--mlp-hidden", "16", "--alphas", "0.01"]) == 0
    printed = capsys.readouterr().out
    assert "skipped giantsteps (not given)" in printed and "fault-filtered" not in printed.split("random-cnn")[0]
    doc = json.loads(next(out.glob("standard-*.json")).read_text())
    genre = doc["results"]["gtzan-genre"]["random-cnn"]
    assert set(genre) == {"logreg", "mlp"}
    for scores in genre.values():
        assert scores["protocol"] == "split" and scores["n_clips"] == {"train": 9, "valid": 3, "test": 3}
        assert scores["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)
    tagging = doc["results"]["mtat-tagging"]["random-cnn"]
    assert tagging["mlp"]["n_clips"] == {"train": 24, "valid": 2, "test": 6}
    assert 0 <= tagging["logreg"]["roc_auc_macro"] <= 1 and tagging["logreg"]["tags_scored"] == 3
    table = next(out.glob("standard-*.md")).read_text()
    assert "| gtzan-genre | accuracy | mirzoo random-cnn | mlp |" in table and "musicnn MTT_musicnn" in table


def test_gtzan_without_split_lists_runs_cv_and_says_so(tmp_path, capsys):
    from conftest import write_gtzan

    gtzan = write_gtzan(tmp_path / "gtzan", ("blues", "rock"), 4, seconds=1.0, sr=16000)
    assert standard.main(["--gtzan", str(gtzan), "--models", "random-cnn", "--out", str(tmp_path / "o"),
                          "--probes", "mlp", "--folds", "2", "--mlp-hidden", "8"]) == 0
    printed = capsys.readouterr().out
    assert "train_filtered.txt, valid_filtered.txt, test_filtered.txt) are not in" in printed
    assert "running grouped 2-fold CV instead, not comparable with published figures" in printed
    assert "| gtzan-genre | accuracy | mirzoo random-cnn | mlp |" in printed and "| 2-fold CV |" in printed


def _ballroom_clicks(root, bpm=120.0, seconds=12.0, sr=16000):
    """Ballroom layout: click tracks (accented downbeats, 4/4) and their .beats files."""
    import soundfile as sf

    period = 60.0 / bpm
    stems = {"ChaChaCha": ["Media-100001", "Media-100002"], "Waltz": ["Media-100003"]}
    truth = {}
    for k, (style, names) in enumerate(stems.items()):
        for j, stem in enumerate(names):
            offset = 0.25 + 0.1 * (k + j)
            beats = np.arange(offset, seconds - 0.2, period)
            y = np.zeros(int(seconds * sr), np.float32)
            t = np.arange(int(0.03 * sr)) / sr
            for i, b in enumerate(beats):
                click = (0.9 if i % 4 == 0 else 0.4) * np.sin(2 * np.pi * (1500 if i % 4 == 0 else 1000) * t)
                s = int(b * sr)
                y[s : s + click.size] += (click * np.exp(-t * 60)).astype(np.float32)
            path = root / "BallroomData" / style / f"{stem}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, y, sr)
            ann = root / "BallroomAnnotations"
            ann.mkdir(parents=True, exist_ok=True)
            (ann / f"{stem}.beats").write_text("".join(f"{b:.4f} {i % 4 + 1}\n" for i, b in enumerate(beats)))
            truth[str(path)] = beats
    return truth


def test_beat_scores_follow_mir_eval(tmp_path):
    pytest.importorskip("mir_eval")
    from types import SimpleNamespace

    from mirzoo import datasets

    truth = _ballroom_clicks(tmp_path / "ballroom")
    ds = datasets.load_ballroom(tmp_path / "ballroom")

    class Fake:  # the beat head's answer, shifted by `shift` seconds
        def __init__(self, shift):
            self.shift = shift

        def analyze(self, path):
            b = truth[str(path)] + self.shift
            return SimpleNamespace(beats=b, downbeats=b[::4])

    exact = standard.beat_scores(Fake(0.0), ds)
    assert exact["beat_f"] == pytest.approx(1.0) and exact["downbeat_f"] == pytest.approx(1.0) and exact["n_clips"] == 3
    assert standard.beat_scores(Fake(0.05), ds)["beat_f"] == pytest.approx(1.0)  # inside +-70 ms
    off = standard.beat_scores(Fake(0.2), ds)
    assert off["beat_f"] == 0.0 and off["downbeat_f"] == 0.0


def test_ballroom_beat_task_runs_the_beat_head_and_skips_other_models(tmp_path, capsys):
    pytest.importorskip("mir_eval")
    import json

    _ballroom_clicks(tmp_path / "ballroom")
    out = tmp_path / "res"
    assert standard.main(["--ballroom", str(tmp_path / "ballroom"), "--models", "random-cnn", "tcn-music",
                          "--probes", "logreg", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "random-cnn ballroom-beats: skipped, the model has no beat head" in text
    result = json.loads(next(out.glob("standard-*.json")).read_text())["results"]["ballroom-beats"]
    scores = result["tcn-music"]["beat head"]
    assert set(result) == {"tcn-music"} and scores["n_clips"] == 3
    assert 0.0 <= scores["beat_f"] <= 1.0 and 0.0 <= scores["downbeat_f"] <= 1.0
    assert "| ballroom-beats | beat_f | mirzoo tcn-music | beat head |" in next(out.glob("standard-*.md")).read_text()


def test_nsynth_pitch_keeps_the_piano_range():
    from mirzoo.datasets import Dataset

    ds = Dataset([(f"n{p}.wav", [str(p)]) for p in (9, 21, 60, 108, 120)], name="nsynth")
    kept = standard.pitch_range(ds, 21, 108)
    assert [labels[0] for _, labels in kept.items] == ["21", "60", "108"] and kept.classes == ds.classes
