"""benchmarks/downstream.py: the score-based reference rows and the target check."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import downstream as ds


def _triads(root: int, third: int, frames: int = 50) -> np.ndarray:
    c = np.zeros((frames, 12))
    c[:, [root % 12, (root + third) % 12, (root + 7) % 12]] = 1
    return c


def test_score_key_is_transposition_invariant_and_separates_major_from_minor():
    major, minor = _triads(0, 4), _triads(9, 3)
    feats = ds.oracle_features([major, minor] + [np.roll(major, k, axis=1) for k in range(1, 12)] + [np.zeros((5, 12))])
    key = feats["score-key"]
    assert key.shape == (14, 2) and feats["score-chroma"].shape == (14, 24)
    np.testing.assert_allclose(key[2:13], np.repeat(key[:1], 11, axis=0), atol=1e-6)
    assert key[0, 0] > key[0, 1] and key[1, 1] > key[1, 0]
    np.testing.assert_array_equal(key[13], [0, 0])  # a silent clip
    # the pooled chroma is not invariant: its mean follows the transposition
    np.testing.assert_allclose(feats["score-chroma"][2, :12], np.roll(feats["score-chroma"][0, :12], 1))
    # against a direct Pearson correlation with the rotated profile (tonic A for the minor clip)
    hist = minor.sum(axis=0)
    assert key[1, 1] == pytest.approx(np.corrcoef(hist, np.roll(ds.KK_MINOR, 9))[0, 1], abs=1e-6)


def test_transfer_targets():
    summary = [{"method": "mfcc", "mean": 0.70}, {"method": "random-cnn", "mean": 0.80},
               {"method": "a", "mean": 0.86, "all_mean": 0.90}, {"method": "b", "mean": 0.84}]
    t = ds.transfer_targets(summary, {"a": True, "b": True, "random-cnn": False})
    assert set(t) == {"a", "b"}
    assert t["a"]["mean"] == 0.90 and t["a"]["vs_mfcc"] == pytest.approx(0.20) and t["a"]["met"]
    assert t["b"]["vs_random_cnn"] == pytest.approx(0.04) and not t["b"]["met"]
    text = ds.targets_text(t)
    assert "- a: 90.0, +20.0 vs MFCC, +10.0 vs random-cnn: met" in text
    assert "- b: 84.0, +14.0 vs MFCC, +4.0 vs random-cnn: not met" in text
