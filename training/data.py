"""Training data shared by the training scripts: the corpus metadata, the decoded-audio cache
and the augmentation constants that the numpy (``training.train``) and TF
(``training.shards``) versions of the random equaliser share.

Owns nothing that needs Keras or TensorFlow, so every training module can import it at
the top; ``train`` and ``shards`` both build on it (neither imports the other for these).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from mirzoo.audio import load_audio

__all__ = ["read_metadata", "audio_cache", "EQ_LOWEST", "EQ_DEFAULTS"]

EQ_LOWEST = 1 / 200  # the lowest control frequency of random_eq, as a fraction of Nyquist
EQ_DEFAULTS = {"eq_db": 9.0, "eq_points": 6}  # random_eq and shards.augment_tf


def read_metadata(corpus: Path, split: str) -> list[dict]:
    with open(corpus / "metadata.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def audio_cache(corpus: Path, rows: list[dict], cache_dir: Path, name: str, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """All clips of ``rows`` decoded into one int16 array (memory-mapped) with offsets [n + 1]."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_path, index_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.index.json"
    ids = [r["clip_id"] for r in rows]
    if data_path.exists() and index_path.exists():
        index = json.loads(index_path.read_text())
        if index["ids"] == ids and index["sr"] == sr:
            return np.load(data_path, mmap_mode="r"), np.asarray(index["offsets"], dtype=np.int64)
    pieces, offsets = [], [0]
    for r in rows:
        y = load_audio(corpus / r["path"], sr)
        pieces.append(np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16))
        offsets.append(offsets[-1] + y.size)
    tmp = data_path.with_suffix(".tmp.npy")
    np.save(tmp, np.concatenate(pieces))
    os.replace(tmp, data_path)
    index_path.write_text(json.dumps({"ids": ids, "sr": sr, "offsets": offsets}))
    return np.load(data_path, mmap_mode="r"), np.asarray(offsets, dtype=np.int64)
