"""benchmarks/throughput.py's long-file memory child: the interpreter it runs under, what it
reports, and the core-dependencies venv it reuses (never built here: that needs the package index)."""

import hashlib
import os
import sys

import numpy as np
import pytest
import soundfile as sf

from benchmarks import throughput as tp


def test_memory_child_reports_peak_and_its_interpreter(tmp_path):
    path = tmp_path / "tone.wav"
    t = np.arange(12 * 16000) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    res = tp.run_child("random-cnn", path, timeout=300, python=sys.executable)
    assert "error" not in res, res
    # the peak is read just before the end RSS, which may have grown a page since
    assert res["peak_rss_mb"] >= res["baseline_rss_mb"] > 100  # a process that imported TensorFlow
    assert res["end_rss_mb"] > 100
    assert res["duration_s"] == pytest.approx(12.0)
    assert res["python"] == sys.executable
    assert set(res["optional_installed"]) <= set(tp.OPTIONAL_IMPORTS)


def test_memory_child_error_names_the_exit(tmp_path):
    res = tp.run_child("random-cnn", tmp_path / "missing.wav", timeout=300, python=sys.executable)
    assert res["error"].startswith("exit 1:") and "missing.wav" in res["error"]


def _stamp():
    return hashlib.sha256((tp.REPO / "pyproject.toml").read_bytes()).hexdigest()


def test_core_venv_is_reused_while_the_dependencies_are_unchanged(tmp_path, monkeypatch):
    venv = tmp_path / "core-venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    (venv / "mirzoo-deps.sha256").write_text(_stamp() + "\n")
    calls = []
    monkeypatch.setattr(tp.subprocess, "run", lambda *a, **k: calls.append(a))
    assert tp.core_venv(venv) == venv / "bin" / "python"
    assert calls == []  # nothing rebuilt


def test_core_venv_rebuilds_after_a_dependency_change_and_reports_pip_errors(tmp_path, monkeypatch):
    venv = tmp_path / "core-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "mirzoo-deps.sha256").write_text("stale\n")
    calls = []

    class Done:
        def __init__(self, code, err=""):
            self.returncode, self.stderr = code, err

    def fake_run(cmd, **kw):
        calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            (tmp_path / "core-venv.tmp" / "bin").mkdir(parents=True)
            return Done(0)
        return Done(1, "ERROR: No matching distribution found for keras>=3.5")

    monkeypatch.setattr(tp.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="pip install -q .*failed: ERROR: No matching distribution"):
        tp.core_venv(venv)
    assert [c[1:3] for c in calls] == [["-m", "venv"], ["-m", "pip"]]
    assert calls[1][-1] == str(tp.REPO)  # the checkout, no extras
    assert not venv.exists()  # the stale venv is gone, and no half-built one took its place

    def ok_run(cmd, **kw):
        if cmd[1:3] == ["-m", "venv"]:
            (tmp_path / "core-venv.tmp" / "bin").mkdir(parents=True, exist_ok=True)
        return Done(0)

    monkeypatch.setattr(tp.subprocess, "run", ok_run)
    assert tp.core_venv(venv) == venv / "bin" / "python"
    assert (venv / "mirzoo-deps.sha256").read_text().strip() == _stamp()
    assert not (tmp_path / "core-venv.tmp").exists()
