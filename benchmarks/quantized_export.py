#!/usr/bin/env python
"""Quantised TFLite exports (``mirzoo export --format tflite --quantize {float16,int8}``): speed and parity.

Usage::

    python benchmarks/quantized_export.py --data /tmp/s17corpus      # a corpus folder with metadata.csv
    python benchmarks/quantized_export.py                            # no labelled data: cosine and speed only

For each model (``--models``, default the two taggers) it exports float32, float16 and int8
TFLite files (int8 calibrated on the shipped example clip, as ``mirzoo.export`` does) and runs
them with the TFLite interpreter on every 3 s patch (the model's default hop) of the clips of
``--data`` (test split of a corpus built by ``python -m training.corpus build``; no clip of it
is used for calibration), and compares with the Keras model:

* **cosine** between the Keras and the TFLite ``embedding`` of each patch (mean and minimum);
* **tag ROC-AUC** (macro over the model's tags present with both classes in the set), clip
  probabilities = mean over patches, for Keras and for each export: the change in points;
* **probe accuracy**: a logistic regression on the clip embeddings (mean+std over patches),
  5-fold cross-validated accuracy on each single-label task of the corpus's tags
  (``instrument:``, ``style:``), Keras features against each export's features;
* **speed**: patches per second through the interpreter at batch 1 (2 threads), and size.

Results: ``benchmarks/results/quantized_export-<os>-<arch>-<N>cpu-py<X.Y>-tensorflow.json``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)

from benchmarks.throughput import environment, synth, write_run  # noqa: E402


def load_clips(data: Path | None, limit: int):
    """``(paths or arrays, tag lists)``: the corpus's test clips, or seeded synthetic clips without tags."""
    if data is not None and (data / "metadata.csv").is_file():
        with open(data / "metadata.csv", newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("split", "test") == "test"]
        rows = rows[:limit]
        return [str(data / r["path"]) for r in rows], [[t for t in r["tags"].split(";") if t] for r in rows]
    return [synth(20.0, seed=100 + i) for i in range(min(limit, 12))], None


def interpreter(path: Path, threads: int = 2):
    import tensorflow as tf

    it = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    return it.get_signature_runner("serving_default")


def run_tflite(runner, patches: np.ndarray) -> tuple[dict, float]:
    outs: dict = {}
    t0 = time.perf_counter()
    for p in patches:
        res = runner(waveform=p[None].astype(np.float32))
        for k, v in res.items():
            outs.setdefault(k, []).append(np.asarray(v)[0])
    return {k: np.stack(v) for k, v in outs.items()}, time.perf_counter() - t0


def macro_auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    cols = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < labels.shape[0]]
    if not cols:
        return None
    return float(np.mean([roc_auc_score(labels[:, j], probs[:, j]) for j in cols]))


def probe(features: np.ndarray, tags: list, prefix: str) -> float | None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    idx, y = [], []
    for i, t in enumerate(tags):
        found = [x for x in t if x.startswith(prefix)]
        if len(found) == 1:
            idx.append(i)
            y.append(found[0])
    if not idx:
        return None
    y = np.asarray(y)
    keep = [i for i, v in zip(idx, y) if (y == v).sum() >= 5]
    y = np.asarray([v for v in y if (y == v).sum() >= 5])
    if len(set(y)) < 2:
        return None
    folds = StratifiedKFold(n_splits=min(5, min(np.unique(y, return_counts=True)[1])), shuffle=True, random_state=0)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    return float(cross_val_score(clf, features[keep], y, cv=folds).mean())


def bench(name: str, clips, tags, workdir: Path) -> dict:
    import mirzoo
    from mirzoo.export import export

    m = mirzoo.load(name)
    signals = [m.load_input(c, None if isinstance(c, str) else 16000)[0] for c in clips]
    patches = [m.plan.patches(y) for y in signals]
    allp = np.concatenate(patches)
    counts = [p.shape[0] for p in patches]
    ref = {"embedding": [], "tags": []}
    for lo in range(0, allp.shape[0], 16):
        out = m.model.predict_on_batch(allp[lo : lo + 16])
        for k in ref:
            ref[k].append(np.asarray(out[k]))
    ref = {k: np.concatenate(v) for k, v in ref.items()}
    bounds = np.cumsum([0] + counts)

    def clip_level(emb, tg):
        feats = np.stack([np.concatenate([emb[a:b].mean(0), emb[a:b].std(0)]) for a, b in zip(bounds[:-1], bounds[1:])])
        probs = np.stack([tg[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])])
        return feats, probs

    ref_feats, ref_probs = clip_level(ref["embedding"], ref["tags"])
    labels = None
    if tags is not None:
        vocab = list(m.labels)
        labels = np.asarray([[1.0 if v in t else 0.0 for v in vocab] for t in tags])
    row = {"model": name, "clips": len(signals), "patches": int(allp.shape[0])}
    if labels is not None:
        row["keras_tag_auc"] = macro_auc(ref_probs, labels)
        row["keras_probe"] = {p: probe(ref_feats, tags, p) for p in ("instrument:", "style:")}
    for q in (None, "float16", "int8"):
        key = q or "float32"
        path = workdir / f"{name}-{key}.tflite"
        t0 = time.perf_counter()
        export(m, "tflite", path, layers=["embedding", "tags"], quantize=q, overwrite=True)
        export_s = time.perf_counter() - t0
        runner = interpreter(path)
        run_tflite(runner, allp[:2])  # warm-up
        outs, secs = run_tflite(runner, allp)
        emb = outs["embedding"]
        cos = np.sum(emb * ref["embedding"], 1) / (
            np.linalg.norm(emb, axis=1) * np.linalg.norm(ref["embedding"], axis=1) + 1e-12)
        feats, probs = clip_level(emb, outs["tags"])
        r = {"size_kb": round(path.stat().st_size / 1024, 1), "export_s": round(export_s, 1),
             "patches_per_s_b1": round(allp.shape[0] / secs, 1),
             "audio_x_realtime_b1": round(allp.shape[0] * m.spec.patch_hop_seconds / secs, 1),
             "cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5),
             "tag_prob_max_abs_diff": round(float(np.abs(outs["tags"] - ref["tags"]).max()), 4)}
        if labels is not None:
            auc = macro_auc(probs, labels)
            r["tag_auc"] = auc
            r["tag_auc_change_points"] = None if auc is None else round(100 * (auc - row["keras_tag_auc"]), 2)
            pr = {p: probe(feats, tags, p) for p in ("instrument:", "style:")}
            r["probe"] = pr
            r["probe_change_points"] = {
                p: None if pr[p] is None or row["keras_probe"][p] is None else round(100 * (pr[p] - row["keras_probe"][p]), 2)
                for p in pr}
        row[key] = r
        print(f"  {name:14s} {key:8s} {r['size_kb']:8.0f} KB  {r['patches_per_s_b1']:7.1f} patches/s  "
              f"cos {r['cosine_mean']:.4f} (min {r['cosine_min']:.4f})"
              + (f"  tag AUC {r['tag_auc_change_points']:+.2f} pt  probe {r['probe_change_points']}" if labels is not None
                 and r.get("tag_auc_change_points") is not None else ""), flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["cnn-tagging", "crnn-tagging"])
    p.add_argument("--data", type=Path, default=None, help="corpus folder (metadata.csv with path,tags,split)")
    p.add_argument("--limit", type=int, default=200, help="at most this many clips")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)

    import keras

    env = environment(keras.backend.backend())
    load0 = os.getloadavg()
    clips, tags = load_clips(args.data, args.limit)
    print(f"{len(clips)} clips ({'labelled: ' + str(args.data) if tags else 'synthetic, no labels'}); "
          f"loadavg {load0[0]:.2f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(bench(name, clips, tags, Path(tmp)))
    out = write_run(args.out_dir, "quantized_export", env, load0, os.getloadavg(), {
        "data": str(args.data) if tags else "synthetic (benchmarks.throughput.synth, 20 s, seeds 100+)",
        "calibration": "mirzoo/data/example.flac, patches every half patch, gains 1, 0.5, 0.125",
        "results": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
