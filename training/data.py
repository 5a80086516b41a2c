"""Training data shared by the training scripts: the corpus metadata, the decoded-audio cache
and the augmentation constants that the numpy (``training.train``) and TF
(``training.shards``) versions of the random equaliser share.

Owns nothing that needs Keras or TensorFlow, so every training module can import it at
the top; ``train`` and ``shards`` both build on it (neither imports the other for these).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np

from mirzoo.audio import load_audio
from mirzoo.errors import AudioFileError

log = logging.getLogger("mirzoo.training")

__all__ = ["read_metadata", "audio_cache", "EQ_LOWEST", "EQ_DEFAULTS"]

EQ_LOWEST = 1 / 200  # the lowest control frequency of random_eq, as a fraction of Nyquist
EQ_DEFAULTS = {"eq_db": 9.0, "eq_points": 6}  # random_eq and shards.augment_tf


def read_metadata(corpus: Path, split: str) -> list[dict]:
    with open(corpus / "metadata.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def audio_cache(corpus: Path, rows: list[dict], cache_dir: Path, name: str, sr: int, *,
                skip_unreadable: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All clips of ``rows`` decoded into one int16 array (memory-mapped) with offsets [n + 1].

    Clips are appended to a temporary raw file as they are decoded and copied into the
    ``.npy`` at the end, so memory stays bounded by one clip however large the split
    (MagnaTagATune at 16 kHz is about 24 GB of int16).  With ``skip_unreadable`` a clip that
    cannot be decoded (``mirzoo.AudioFileError``: MagnaTagATune holds a few empty mp3 files)
    is logged and kept with zero samples, so its offsets are equal; the caller drops it.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_path, index_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.index.json"
    ids = [r["clip_id"] for r in rows]
    if data_path.exists() and index_path.exists():
        index = json.loads(index_path.read_text())
        if index["ids"] == ids and index["sr"] == sr:
            return np.load(data_path, mmap_mode="r"), np.asarray(index["offsets"], dtype=np.int64)
    offsets, unreadable = [0], []
    raw = data_path.with_suffix(".tmp.raw")
    with open(raw, "wb") as f:
        for i, r in enumerate(rows):
            try:
                y = load_audio(Path(corpus) / r["path"], sr)
            except AudioFileError as exc:
                if not skip_unreadable:
                    raise
                log.warning("skipped unreadable clip %s: %s", r["path"], exc)
                unreadable.append(r["clip_id"])
                y = np.zeros(0, np.float32)
            f.write(np.clip(np.round(y * 32767), -32768, 32767).astype("<i2").tobytes())
            offsets.append(offsets[-1] + y.size)
            if (i + 1) % 1000 == 0:
                log.info("decoded %d of %d %s clips", i + 1, len(rows), name)
    tmp = data_path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype="<i2", shape=(offsets[-1],))
    if offsets[-1]:
        src = np.memmap(raw, dtype="<i2", mode="r", shape=(offsets[-1],))
        step = 1 << 24
        for start in range(0, offsets[-1], step):
            out[start : start + step] = src[start : start + step]
        del src
    out.flush()
    del out
    os.replace(tmp, data_path)
    raw.unlink()
    index_path.write_text(json.dumps({"ids": ids, "sr": sr, "offsets": offsets, "unreadable": unreadable}))
    return np.load(data_path, mmap_mode="r"), np.asarray(offsets, dtype=np.int64)
