"""Write a benchmark's figures into a model's manifest entry (both copies, atomically).

Benchmarks call :func:`record` when run with ``--record``.  Each record carries the sha256
of the weights it was measured with, so a figure left over from earlier weights is easy to
spot; ``training/train.py --ship`` rewrites the metrics from scratch, so retrained weights
start without benchmark figures until the benchmarks are run again.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def record(model: str, key: str, figures: dict) -> None:
    from mirzoo.fileio import write_json_atomic
    from mirzoo.zoo.manifest import PACKAGE_MANIFEST

    targets = [ROOT / "weights_manifest.json", PACKAGE_MANIFEST]
    data = json.loads(targets[0].read_text(encoding="utf-8"))
    entry = data["models"][model]
    entry.setdefault("metrics", {})[key] = dict(figures, weights_sha256=entry["weights"].get("sha256"))
    for path in targets:
        write_json_atomic(path, data, ensure_ascii=False)  # the manifests keep their UTF-8 (Böck, not B\u00f6ck)
