"""Frame-level pitch-class activity: dense-frame ("deep chroma") against librosa chroma.

    python benchmarks/chroma.py [--corpus /work/data/corpus] [--heldout /work/data/heldout]

On the FluidR3 test split and the TimGM6mb generalisation split, every method predicts
12 pitch-class activities per 20 ms frame (hop 320 at 16 kHz, the grid of the corpus's
frame targets).  Scores: frame F1 of the activities thresholded at ``--threshold`` and the
mean cosine similarity between prediction and target on frames with any active note.
librosa's chroma is max-normalised per frame (``norm=inf``), so its threshold plays the
role of "within x of the strongest pitch class"; it is reported at 0.5 and at the best
threshold on a grid (an optimistic baseline, tuned on the test data itself).
Results: ``benchmarks/results/chroma-<env>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)

HERE = Path(__file__).resolve().parent
SR, HOP = 16000, 320


def scores(targets: list[np.ndarray], preds: list[np.ndarray], threshold: float) -> dict:
    t = np.concatenate(targets) > 0.5
    p = np.concatenate(preds)
    b = p >= threshold
    tp, fp, fn = (b & t).sum(), (b & ~t).sum(), (~b & t).sum()
    num = (t * p).sum(axis=1)
    den = np.linalg.norm(t, axis=1) * np.linalg.norm(p, axis=1)
    ok = den > 0
    return {"f1": float(2 * tp / max(2 * tp + fp + fn, 1)), "cosine": float(np.mean(num[ok] / den[ok])), "threshold": threshold}


def main(argv=None) -> int:
    import keras
    import librosa

    import mirzoo
    from mirzoo.audio import load_audio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="/work/data/corpus")
    parser.add_argument("--heldout", default="/work/data/heldout")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--max-clips", type=int, default=80, help="clips per split (seeded sample)")
    args = parser.parse_args(argv)
    model = mirzoo.load("dense-frame")
    results = {"pretrained": model.pretrained}
    for name, root in (("test_fluidr3", Path(args.corpus)), ("test_timgm6mb", Path(args.heldout))):
        with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
        rng = np.random.default_rng(0)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), min(len(rows), args.max_clips), replace=False))]
        preds = {"dense-frame": [], "chroma_stft": [], "chroma_cqt": []}
        targets = []
        for r in rows:
            y = load_audio(root / r["path"], SR)
            target = np.load(root / r["targets"])["chroma"].astype(np.float32)
            n = target.shape[0]
            targets.append(target)
            preds["dense-frame"].append(model.predict(y, SR, pool=None)[:n])
            preds["chroma_stft"].append(librosa.feature.chroma_stft(y=y, sr=SR, n_fft=2048, hop_length=HOP, tuning=0.0).T[:n])
            preds["chroma_cqt"].append(librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=HOP, tuning=0.0).T[:n])
        results[name] = {"clips": len(rows)}
        for method, p in preds.items():
            fixed = scores(targets, p, args.threshold)
            best = max((scores(targets, p, th) for th in np.arange(0.1, 0.95, 0.05)), key=lambda s: s["f1"])
            results[name][method] = {"at_threshold": fixed, "best_threshold": best}
            print(f"{name:14s} {method:12s} F1 {fixed['f1']:.3f} (best {best['f1']:.3f} at {best['threshold']:.2f})  "
                  f"cosine {fixed['cosine']:.3f}", flush=True)
    env = f"{sys.platform}-{platform.machine()}-{os.cpu_count()}cpu-py{sys.version_info.major}.{sys.version_info.minor}-{keras.backend.backend()}"
    out = HERE / "results" / f"chroma-{env}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
