"""Shared fixtures: seeded synthetic audio and temporary audio files.  Everything offline.

Under ``CI=true`` a test may not skip for lack of something CI installs: a skip raised by
``pytest.importorskip`` (a missing Python package) or by :func:`skip_unless_installed` (a missing
system package) fails the run instead, so a broken install cannot pass as a green run.
"""

from __future__ import annotations

import os
import re
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import soundfile as sf

import mirzoo  # noqa: F401, E402  (before any test imports Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow)

SR = 16000

#: What ``pytest.importorskip`` says when the import fails (pytest's own wording).
_IMPORT_SKIP = re.compile(r"^could not import '([^']+)'")


def in_ci() -> bool:
    """True when the run is CI's (``CI=true``, as set by CI services and ``.ci/run``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_unless_installed(present: bool, reason: str) -> None:
    """Skip (fail under CI) when something CI installs, a system package say, is missing.

    ``reason`` names what is missing and how to install it.  Usable at module level.
    """
    if present:
        return
    if in_ci():
        pytest.fail(f"CI=true and a test dependency is missing: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def fluidsynth_present() -> bool:
    """pyfluidsynth with its library, or the ``fluidsynth`` program: what the corpus renderer can use."""
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError):  # OSError: pyfluidsynth installed, libfluidsynth not
        return shutil.which("fluidsynth") is not None
    return True


def _missing_dependency(excinfo) -> str | None:
    """The module named by an ``importorskip`` skip, or None for any other outcome."""
    if excinfo is None or not excinfo.errisinstance(pytest.skip.Exception):
        return None
    match = _IMPORT_SKIP.match(str(excinfo.value.msg or ""))
    return match.group(1) if match else None


def _ci_failure(module: str, reason: str) -> str:
    return (f"CI=true and the test dependency '{module}' cannot be imported ({reason}); "
            "every test dependency is installed by .ci/run (pip install -e \".[test]\", then hearvalidator)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    module = _missing_dependency(call.excinfo)
    if module is not None and in_ci():
        report = outcome.get_result()
        report.outcome = "failed"
        report.longrepr = _ci_failure(module, call.excinfo.value.msg)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        reason = reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
        match = _IMPORT_SKIP.match(reason)
        if match:
            report.outcome = "failed"
            report.longrepr = _ci_failure(match.group(1), reason)


def tone_mix(seconds: float, sr: int = SR, seed: int = 0, freqs=(220.0, 330.0, 440.0)) -> np.ndarray:
    """A seeded, music-like test signal: decaying harmonic tones plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    y = np.zeros_like(t)
    for i, f in enumerate(freqs):
        onset = (i * 0.37) % max(seconds, 1e-3)
        env = np.where(t >= onset, np.exp(-1.5 * (t - onset)), 0.0)
        for h in range(1, 4):
            y += env * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 2 * np.pi)) / h
    y += 0.01 * rng.standard_normal(t.size)
    return (0.3 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


@pytest.fixture
def audio_dir(tmp_path):
    """A folder with a few short clips in several formats and rates."""
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "a.wav", tone_mix(4.0, seed=1), SR, subtype="PCM_16")
    sf.write(d / "b.flac", tone_mix(2.5, sr=22050, seed=2, freqs=(196.0, 294.0)), 22050)
    sub = d / "sub"
    sub.mkdir()
    sf.write(sub / "c.ogg", tone_mix(3.0, sr=44100, seed=3, freqs=(523.0,)), 44100, format="OGG")
    return d


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A few seconds of the public corpus (two collections, seed 1), built once per session.

    Read-only for the tests that use it (training end to end, shards, data-parallel runs).
    """
    pytest.importorskip("music21")
    from training import corpus as tc

    out = tmp_path_factory.mktemp("train-corpus") / "c"
    cfg = tc.BuildConfig(seed=1, clip_seconds=5.0, min_clip_seconds=3.0, max_clips_per_piece=2,
                         collections=("bach-chorales", "oneills-1850"))
    tc.build(str(out), cfg, hours=0.01, workers=1, cache_dir=str(tmp_path_factory.mktemp("scores")))
    return out


def write_clip(path, y: np.ndarray, sr: int):
    """Write ``y`` to ``path`` (folders made); the format follows the suffix (.wav, .flac, .mp3, .au)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    formats = {".mp3": "MP3", ".au": "AU", ".flac": "FLAC", ".ogg": "OGG"}
    sf.write(path, y, sr, format=formats.get(path.suffix.lower(), "WAV"))
    return path


def write_mtat(root, rows, tags=("guitar", "classical", "slow", "techno"), *, seconds: float = 0.25, sr: int = 8000):
    """MagnaTagATune's layout: ``annotations_final.csv`` (tab-separated, every field quoted, header
    ``clip_id``, one 0/1 column per tag, ``mp3_path``) and the audio at each ``mp3_path`` under ``root``.

    ``rows``: ``[(mp3_path, (0/1 per tag)), ...]``; audio is :func:`tone_mix`, seeded by row."""
    import csv

    root.mkdir(parents=True, exist_ok=True)
    with open(root / "annotations_final.csv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL)
        w.writerow(["clip_id", *tags, "mp3_path"])
        for i, (rel, flags) in enumerate(rows):
            w.writerow([i, *flags, rel])
            write_clip(root / rel, tone_mix(seconds, sr, seed=i, freqs=(110.0 * (1 + i % 5),)), sr)
    return root / "annotations_final.csv"


def write_gtzan(root, genres=("blues", "classical", "rock"), per_genre: int = 2, *, seconds: float = 0.25,
                sr: int = 8000, suffix: str = ".wav", split=None):
    """GTZAN's layout: ``genres/<genre>/<genre>.000NN<suffix>`` (the original archive holds ``.au``).

    ``split``: ``{"train": [names], "valid": [...], "test": [...]}`` written as the fault-filtered lists
    ``<part>_filtered.txt`` beside ``genres`` (one ``<genre>/<genre>.000NN.wav`` per line, as published)."""
    for g, genre in enumerate(genres):
        for j in range(per_genre):
            y = tone_mix(seconds, sr, seed=10 * g + j, freqs=(110.0 * (g + 1), 165.0 * (g + 1)))
            write_clip(root / "genres" / genre / f"{genre}.{j:05d}{suffix}", y, sr)
    for part, names in (split or {}).items():
        (root / f"{part}_filtered.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def traced_peak(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), peak bytes allocated while it ran)`` as tracemalloc sees them (numpy included)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own (``HF_HOME``, ``HF_HUB_CACHE``), offline: the hub folder."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MIRZOO_OFFLINE", raising=False)
    return home / "hub"
