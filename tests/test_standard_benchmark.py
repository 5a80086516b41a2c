"""benchmarks/standard.py: absent data sets are named with where they are expected; the key score."""

import sys
from pathlib import Path

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
