"""Transfer benchmark: linear probes on pooled embeddings of material kept out of training.

    python benchmarks/downstream.py [--data /work/data/heldout] [--folds 5]

Data: the TimGM6mb-rendered test split of the public corpus (``python -m training.corpus
build --out heldout/ --soundfont TimGM6mb --split test --hours 2``): pieces never in the
training split, rendered with a soundfont whose samples share nothing with FluidR3.

Tasks (one label per clip, built from the clip tags):
  * instrument -- the instrument family of clips with exactly one ``instrument:`` tag;
  * style      -- the ``style:`` tag (baroque, renaissance, folk, irish-folk, ...);
  * mode       -- ``mode:major`` vs ``mode:minor`` where the score states it.
Classes with fewer than ``--min-class`` clips are dropped.

Methods, all in one run on the same clips and folds:
  * ``mfcc``: 20 MFCCs + deltas + delta-deltas, mean and std over time (the classic pipeline);
  * each zoo model at each embedding layer and with ``layer="all"``, mean+std pooled.
Probe: ``StandardScaler`` + ``LogisticRegression`` (lbfgs, C=1), stratified k-fold CV with
a fixed seed; the score is mean accuracy over folds.  Results go to
``benchmarks/results/downstream-<env>.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def env_name() -> str:
    import keras

    return f"{sys.platform}-{platform.machine()}-{os.cpu_count()}cpu-py{sys.version_info.major}.{sys.version_info.minor}-{keras.backend.backend()}"


def load_tasks(data: Path, min_class: int) -> tuple[list[str], dict[str, dict[int, str]]]:
    with open(data / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = [str(data / r["path"]) for r in rows]
    tasks: dict[str, dict[int, str]] = {"instrument": {}, "style": {}, "mode": {}}
    for i, r in enumerate(rows):
        tags = r["tags"].split(";")
        inst = [t.split(":", 1)[1] for t in tags if t.startswith("instrument:")]
        if len(inst) == 1:
            tasks["instrument"][i] = inst[0]
        style = [t.split(":", 1)[1] for t in tags if t.startswith("style:")]
        if len(style) == 1:
            tasks["style"][i] = style[0]
        mode = [t.split(":", 1)[1] for t in tags if t in ("mode:major", "mode:minor")]
        if len(mode) == 1:
            tasks["mode"][i] = mode[0]
    for name, labels in tasks.items():
        counts: dict[str, int] = {}
        for v in labels.values():
            counts[v] = counts.get(v, 0) + 1
        tasks[name] = {i: v for i, v in labels.items() if counts[v] >= min_class}
    return paths, tasks


def mfcc_features(paths: list[str], sr: int = 16000) -> np.ndarray:
    import librosa

    from mirzoo.audio import load_audio

    feats = []
    for p in paths:
        y = load_audio(p, sr)
        m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
        full = np.concatenate([m, librosa.feature.delta(m), librosa.feature.delta(m, order=2)])
        feats.append(np.concatenate([full.mean(axis=1), full.std(axis=1)]))
    return np.stack(feats).astype(np.float32)


def probe(x: np.ndarray, y: list[str], folds: int, seed: int) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(clf, x, np.asarray(y), cv=cv)
    return float(scores.mean()), float(scores.std())


def main(argv=None) -> int:
    import mirzoo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/data/heldout", help="TimGM6mb corpus folder")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--min-class", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="*", default=None, help="zoo models (default: all)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    paths, tasks = load_tasks(data, args.min_class)
    print(f"{len(paths)} clips from {data}; tasks: " + ", ".join(
        f"{k} ({len(v)} clips, {len(set(v.values()))} classes)" for k, v in tasks.items()))

    features: dict[str, np.ndarray] = {}
    t0 = time.time()
    features["mfcc"] = mfcc_features(paths)
    timings = {"mfcc": time.time() - t0}
    for name in args.models or mirzoo.list_models():
        m = mirzoo.load(name)
        layers = [l for l in m.layers if l != (m.head_output or "")] + ["all"]
        t0 = time.time()
        for layer in layers:
            out = m.extract(paths, layer=layer, pool="mean+std")
            features[f"{name}:{layer}"] = np.stack(out)
        timings[name] = time.time() - t0
        print(f"  extracted {name} ({len(layers)} layers) in {timings[name]:.0f} s", flush=True)

    results: dict[str, dict[str, dict]] = {}
    for task, labels in tasks.items():
        idx = sorted(labels)
        y = [labels[i] for i in idx]
        if len(set(y)) < 2:
            continue
        results[task] = {}
        for key, x in features.items():
            mean, std = probe(x[idx], y, args.folds, args.seed)
            results[task][key] = {"accuracy": mean, "std": std}

    # summary per method: mfcc, and for each model its best single layer and 'all'
    methods = {"mfcc": ["mfcc"]}
    for key in features:
        if key != "mfcc":
            methods.setdefault(key.split(":")[0], []).append(key)
    summary = []
    for method, keys in methods.items():
        single = [k for k in keys if not k.endswith(":all")]
        best = max(single, key=lambda k: np.mean([results[t][k]["accuracy"] for t in results]))
        row = {"method": method, "best_layer": best.split(":", 1)[-1]}
        for t in results:
            row[t] = results[t][best]["accuracy"]
        row["mean"] = float(np.mean([row[t] for t in results]))
        if any(k.endswith(":all") for k in keys):
            row["all_mean"] = float(np.mean([results[t][f"{method}:all"]["accuracy"] for t in results]))
        summary.append(row)

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    env = env_name()
    pretrained = {n: mirzoo.model_info(n)["pretrained"] for n in methods if n != "mfcc"}
    payload = {
        "env": env, "data": str(data), "folds": args.folds, "seed": args.seed,
        "tasks": {t: {"clips": len(v), "classes": sorted(set(v.values()))} for t, v in tasks.items()},
        "pretrained": pretrained, "summary": summary, "results": results, "extract_seconds": timings,
    }
    (out / f"downstream-{env}.json").write_text(json.dumps(payload, indent=2))
    lines = ["| method | weights | best layer | " + " | ".join(results) + " | mean | mean (layer=all) |",
             "|---" * (5 + len(results)) + "|"]
    for row in summary:
        w = "-" if row["method"] == "mfcc" else ("pretrained" if pretrained[row["method"]] else "untrained/random")
        cells = " | ".join(f"{100 * row[t]:.1f}" for t in results)
        all_mean = f"{100 * row['all_mean']:.1f}" if "all_mean" in row else "-"
        lines.append(f"| {row['method']} | {w} | {row['best_layer']} | {cells} | {100 * row['mean']:.1f} | {all_mean} |")
    table = "\n".join(lines)
    (out / f"downstream-{env}.md").write_text(
        f"Linear-probe accuracy (%), {args.folds}-fold stratified CV, on {data.name} (TimGM6mb renders of "
        f"test-split pieces).\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
