"""Shared fixtures: seeded synthetic audio and temporary audio files.  Everything offline."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import soundfile as sf

SR = 16000


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
