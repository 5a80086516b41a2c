"""Transfer benchmark: linear probes on pooled embeddings of material kept out of training.

    python benchmarks/downstream.py [--data /work/data/heldout6] [--folds 5] [--record]

Data: the TimGM6mb-rendered test split of the public corpus (``python -m training.corpus
build --out heldout6/ --soundfont TimGM6mb --split test --hours 6 --max-clips-per-piece 4``:
881 clips of 528 pieces): pieces never in the training split, rendered with a soundfont
whose samples share nothing with FluidR3 or the other training soundfonts.

Tasks (one label per clip, built from the clip tags):
  * instrument -- the instrument family of clips with exactly one ``instrument:`` tag;
  * style      -- the ``style:`` tag (baroque, renaissance, folk, irish-folk, ...);
  * mode       -- ``mode:major`` vs ``mode:minor`` where the score states it.
Classes with fewer than ``--min-class`` clips are dropped.

Methods, all in one run on the same clips and folds:
  * ``mfcc``: 20 MFCCs + deltas + delta-deltas, mean and std over time (the classic pipeline);
  * each zoo model at each embedding layer and with ``layer="all"``, mean+std pooled;
  * two reference rows built from the *score*, not the audio (``--no-oracles`` drops them):
    ``score-chroma`` (the true pitch classes, mean+std pooled like everything else) and
    ``score-key`` (a transposition-invariant key-profile summary of them).  They show what the
    protocol allows: with mean+std pooling even a perfect chroma is at chance on mode.

The printout and the markdown end with each pretrained model's margin over MFCC and
random-cnn against the targets (+15 and +5 points of mean balanced accuracy).

Probe: ``StandardScaler`` + ``LogisticRegression`` (lbfgs).  Folds are stratified and
*grouped by the corpus's* ``split_key`` (``StratifiedGroupKFold``): the normalised title that
also keeps one tune printed in two books on one side, so excerpts of one piece never sit on
both sides of a split -- otherwise the style task degenerates into recognising the piece.  A
``metadata.csv`` without ``split_key`` is refused (rebuild it with ``training/corpus.py``).

Everything chosen is chosen inside each outer fold, on its training part only, by an inner
grouped 3-fold CV: the layer of a zoo model (each embedding layer and ``layer="all"``) and the
inverse regularisation ``C`` from ``--Cs``, jointly, for every method alike (MFCC and the score
rows have one "layer").  Each method then has one number per task, the outer-fold mean, with no
choice made on the folds it is scored on.  The headline score is balanced accuracy (mean
per-class recall: the tasks are unbalanced, mode heavily), which is also what the inner CV
maximises; plain accuracy is reported beside it.

Features are cached under ``--cache`` keyed by model, weights sha256, layer and the clip
list, so re-running after retraining one model only re-extracts that model.  Results go to
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
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)
from mirzoo.tasks.analyze import (  # noqa: E402  (numpy only; the key finding the models' clip key uses)
    KRUMHANSL_KESSLER_MAJOR,
    KRUMHANSL_KESSLER_MINOR,
    key_profile_correlations,
)

HERE = Path(__file__).resolve().parent


def env_name() -> str:
    import keras

    return f"{sys.platform}-{platform.machine()}-{os.cpu_count()}cpu-py{sys.version_info.major}.{sys.version_info.minor}-{keras.backend.backend()}"


def load_tasks(data: Path, min_class: int) -> tuple[list[str], list[str], dict[str, dict[int, str]]]:
    if not (data / "metadata.csv").exists():
        raise SystemExit(f"--data {data}: no metadata.csv there; expected a TimGM6mb corpus render "
                         "(python -m training.corpus build)")
    with open(data / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = [str(data / r["path"]) for r in rows]
    pieces = [r.get("split_key") for r in rows]  # CV groups: what the corpus splits by
    missing = [r["path"] for r, key in zip(rows, pieces) if not key]
    if missing:
        raise ValueError(
            f"{data / 'metadata.csv'}: {len(missing)} of {len(rows)} clips have no split_key (first: "
            f"{missing[0]!r}); expected the column training/corpus.py writes, which groups the folds -- "
            f"rebuild the folder with python -m training.corpus build")
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
    return paths, pieces, tasks


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


ORACLES = ("score-chroma", "score-key")  # the methods oracle_features returns

# Krumhansl & Kessler (1982) major and minor key profiles, tonic first
KK_MAJOR = np.array(KRUMHANSL_KESSLER_MAJOR)
KK_MINOR = np.array(KRUMHANSL_KESSLER_MINOR)


def score_chroma(data: Path) -> list[np.ndarray]:
    """The score's frame-level pitch-class targets of every clip (``targets`` column), [frames, 12] each."""
    with open(data / "metadata.csv", newline="", encoding="utf-8") as f:
        return [np.load(data / r["targets"])["chroma"].astype(np.float64) for r in csv.DictReader(f)]


def oracle_features(chroma: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Reference rows built from the score instead of the audio (upper references, not methods).

    ``score-chroma``: mean+std over frames of the true pitch classes -- what a perfect chroma
    gives under the same pooling and probe as every audio method.  ``score-key``: a
    transposition-invariant summary of the same pitch classes, the best correlation of the
    clip's pitch-class histogram with the 12 rotations of the Krumhansl-Kessler major and
    minor profiles (2 numbers) -- what a key-invariant descriptor adds for the mode task.
    """
    pooled, key = [], []
    for c in chroma:
        pooled.append(np.concatenate([c.mean(axis=0), c.std(axis=0)]))
        # the best major and the best minor correlation (0 and 0 for a silent clip)
        key.append(key_profile_correlations(c.sum(axis=0)).reshape(2, 12).max(axis=1))
    return dict(zip(ORACLES, (np.asarray(pooled, np.float32), np.asarray(key, np.float32))))


def nested_probe(candidates: dict[str, np.ndarray], y, groups, *, folds: int, seed: int, Cs: tuple,
                 inner_folds: int = 3) -> dict:
    """Grouped nested CV of a standardised logistic regression over candidate feature sets.

    Inside each outer fold, the candidate (a layer) and ``C`` are chosen together by an inner
    grouped CV on the training part alone, maximising balanced accuracy; the choice is then fit on
    the whole training part and scored on the held-out part.  Nothing is chosen on the folds that
    are scored, so having more candidates (layers) is no advantage in itself.

    Parameters
    ----------
    candidates : dict of str to np.ndarray [shape=(n, d_k)]
        Feature sets of the same ``n`` clips, in order of preference on ties.
    y, groups : sequence [shape=(n,)]
        Labels, and the groups (``split_key``) that never straddle a split.

    Returns
    -------
    dict
        ``balanced_accuracy`` and ``accuracy`` (means over outer folds), their ``*_std``, and
        ``folds``: per outer fold the chosen ``layer``, ``C`` and its two scores.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not candidates or not Cs:
        raise ValueError(f"candidates={list(candidates)}, Cs={list(Cs)}: expected at least one of each")
    y, groups = np.asarray(y), np.asarray(groups)
    names = list(candidates)

    def fit_predict(x_train, y_train, x_test, C):
        if len(set(y_train)) < 2:  # a tiny fold with one class: the probe can only answer that class
            return np.full(len(x_test), y_train[0])
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=C, tol=1e-3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clf.fit(x_train, y_train).predict(x_test)

    def choose(train):
        if len(names) == 1 and len(Cs) == 1:
            return names[0], Cs[0]
        inner = StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
        splits = list(inner.split(train, y[train], groups[train]))
        scores = np.zeros((len(names), len(Cs)))
        for i, name in enumerate(names):
            x = candidates[name][train]
            for itr, ite in splits:
                for j, C in enumerate(Cs):
                    pred = fit_predict(x[itr], y[train][itr], x[ite], C)
                    scores[i, j] += balanced_accuracy_score(y[train][ite], pred)
        i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)  # first best: earlier name, smaller C
        return names[i], Cs[j]

    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold = []
    for train, test in outer.split(np.zeros(len(y)), y, groups):
        name, C = choose(train)
        pred = fit_predict(candidates[name][train], y[train], candidates[name][test], C)
        per_fold.append({"layer": name, "C": float(C), "balanced_accuracy": float(balanced_accuracy_score(y[test], pred)),
                         "accuracy": float(accuracy_score(y[test], pred))})
    bal = [f["balanced_accuracy"] for f in per_fold]
    acc = [f["accuracy"] for f in per_fold]
    return {"balanced_accuracy": float(np.mean(bal)), "balanced_accuracy_std": float(np.std(bal)),
            "accuracy": float(np.mean(acc)), "accuracy_std": float(np.std(acc)), "folds": per_fold}


def chosen_layers(results: dict) -> str:
    """How often each layer was chosen over the outer folds of all tasks: ``"block5 x9, all x6"``."""
    import collections

    counts = collections.Counter(f["layer"] for r in results.values() for f in r["folds"])
    return ", ".join(f"{layer} x{n}" for layer, n in counts.most_common())


def layer_features(m, paths: list[str], layers: list[str], chunk: int = 16) -> dict[str, np.ndarray]:
    """Mean+std pooled features of several layers from one forward pass per file chunk.

    Same numbers as ``m.extract(paths, layer=l, pool="mean+std")`` for each layer ``l``,
    without running the network once per layer.
    """
    from mirzoo.embeddings import pool_embeddings

    out: dict[str, list] = {l: [] for l in layers}
    for i in range(0, len(paths), chunk):
        signals = [m.load_input(p, None)[0] for p in paths[i : i + chunk]]
        for res in m.forward(signals, layers, 16, False):
            for l in layers:
                out[l].append(pool_embeddings(res[l].reshape(res[l].shape[0], -1).astype(np.float32), "mean+std"))
    return {l: np.stack(v) for l, v in out.items()}


def feature_cache_key(model, layer: str, paths: list[str]) -> str:
    import hashlib

    w = model.entry.get("weights", {})
    h = hashlib.sha256()
    h.update(json.dumps([model.name, w.get("sha256"), w.get("seed"), layer, "mean+std", paths]).encode())
    return h.hexdigest()[:20]


def transfer_targets(summary: list[dict], pretrained: dict[str, bool],
                     over_mfcc: float = 0.15, over_random: float = 0.05) -> dict[str, dict]:
    """Each pretrained model's margin over MFCC and ``random-cnn`` (mean balanced accuracy of the
    nested probe, layer chosen inside each fold) against the issue's targets (+15 and +5 points)."""
    by = {r["method"]: r for r in summary}
    out = {}
    for name, is_pretrained in pretrained.items():
        if not is_pretrained or name not in by:
            continue
        mean = by[name]["mean_balanced"]
        row = {"mean_balanced": mean, "vs_mfcc": mean - by["mfcc"]["mean_balanced"], "target_vs_mfcc": over_mfcc}
        if "random-cnn" in by:
            row.update(vs_random_cnn=mean - by["random-cnn"]["mean_balanced"], target_vs_random_cnn=over_random)
        row["met"] = row["vs_mfcc"] >= over_mfcc and row.get("vs_random_cnn", over_random) >= over_random
        out[name] = row
    return out


def targets_text(targets: dict[str, dict]) -> str:
    lines = ["Targets (mean balanced accuracy, layer chosen inside each fold): +15 points over MFCC, "
             "+5 over random-cnn."]
    for name, t in targets.items():
        vs_random = f", {100 * t['vs_random_cnn']:+.1f} vs random-cnn" if "vs_random_cnn" in t else ""
        lines.append(f"- {name}: {100 * t['mean_balanced']:.1f}, {100 * t['vs_mfcc']:+.1f} vs MFCC{vs_random}: "
                     f"{'met' if t['met'] else 'not met'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from mirzoo.fileio import atomic_file, write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/data/heldout6", help="TimGM6mb corpus folder")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "results"),
                        help="folder of the result files (default benchmarks/results; another folder for a candidate)")
    parser.add_argument("--min-class", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="*", default=None, help="zoo models (default: all)")
    parser.add_argument("--Cs", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="grid of the inverse regularisation C, chosen by inner CV (default 0.01 0.1 1)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/mirzoo-bench/downstream"),
                        help="feature cache folder")
    parser.add_argument("--no-oracles", dest="oracles", action="store_false",
                        help="leave out the score-chroma / score-key reference rows built from the score")
    parser.add_argument("--record", action="store_true",
                        help="write each pretrained model's figures into its manifest entry (both copies)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    paths, pieces, tasks = load_tasks(data, args.min_class)
    print(f"{len(paths)} clips from {data}; tasks: " + ", ".join(
        f"{k} ({len(v)} clips, {len(set(v.values()))} classes)" for k, v in tasks.items()))

    import hashlib

    features: dict[str, np.ndarray] = {}
    t0 = time.time()
    mfcc_file = cache / f"mfcc-{hashlib.sha256(json.dumps(paths).encode()).hexdigest()[:20]}.npy"
    if mfcc_file.exists():
        features["mfcc"] = np.load(mfcc_file)
    else:
        features["mfcc"] = mfcc_features(paths)
        np.save(mfcc_file, features["mfcc"])
    timings = {"mfcc": time.time() - t0}
    if args.oracles:
        try:
            features.update(oracle_features(score_chroma(data)))
        except (KeyError, OSError) as e:  # a folder without the corpus's frame targets
            print(f"  no score oracles: frame targets unavailable ({e})")
    for name in args.models or mirzoo.list_models():
        m = mirzoo.load(name)
        layers = [l for l in m.layers if l not in m.heads]
        t0 = time.time()
        files = {layer: cache / f"{name}-{layer}-{feature_cache_key(m, layer, paths)}.npy" for layer in layers}
        if not all(f.exists() for f in files.values()):
            for layer, x in layer_features(m, paths, layers).items():
                tmp = files[layer].with_name(files[layer].name + ".tmp.npy")
                np.save(tmp, x)
                os.replace(tmp, files[layer])
        for layer in layers:
            features[f"{name}:{layer}"] = np.load(files[layer])
        # layer="all": every layer of all_layers; mean+std pooling is per dimension, so pooling the
        # concatenation equals concatenating the pooled layers (up to a column order)
        features[f"{name}:all"] = np.concatenate([features[f"{name}:{l}"] for l in m.all_layers], axis=1)
        timings[name] = time.time() - t0
        print(f"  extracted {name} ({len(layers)} layers) in {timings[name]:.0f} s", flush=True)

    from threadpoolctl import threadpool_limits

    # one BLAS thread per fit: these are small problems, and threads only fight each other
    methods = {"mfcc": ["mfcc"]}
    for key in features:
        if key != "mfcc":
            methods.setdefault(key.split(":")[0], []).append(key)
    oracles = [m for m in methods if m in ORACLES]
    task_data = {}
    for task, labels in tasks.items():
        idx = sorted(labels)
        y = [labels[i] for i in idx]
        if len(set(y)) >= 2:
            task_data[task] = (idx, y, [pieces[i] for i in idx])

    # one nested probe per method and task: layer and C chosen inside each outer fold
    results: dict[str, dict[str, dict]] = {t: {} for t in task_data}
    with threadpool_limits(1):
        for method, keys in methods.items():
            candidates = {key.split(":", 1)[-1]: features[key] for key in keys}
            for t, (idx, y, g) in task_data.items():
                results[t][method] = nested_probe({k: v[idx] for k, v in candidates.items()}, y, g,
                                                  folds=args.folds, seed=args.seed, Cs=tuple(args.Cs))
            print(f"  probed {method}", flush=True)

    summary = []
    for method in methods:
        row = {"method": method, "layers": chosen_layers({t: results[t][method] for t in results})}
        for t in results:
            row[f"{t}_balanced"] = results[t][method]["balanced_accuracy"]
            row[t] = results[t][method]["accuracy"]
        row["mean_balanced"] = float(np.mean([row[f"{t}_balanced"] for t in results]))
        row["mean"] = float(np.mean([row[t] for t in results]))
        summary.append(row)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = env_name()
    pretrained = {n: mirzoo.model_info(n)["pretrained"] for n in methods if n != "mfcc" and n not in oracles}
    targets = transfer_targets(summary, pretrained)
    payload = {
        "env": env, "data": str(data), "clips": len(paths), "groups": len(set(pieces)),
        "folds": args.folds, "seed": args.seed, "Cs": args.Cs,
        "cv": "StratifiedGroupKFold by split_key; layer and C chosen per outer fold by inner grouped 3-fold CV "
              "on balanced accuracy",
        "tasks": {t: {"clips": len(v), "classes": sorted(set(v.values()))} for t, v in tasks.items()},
        "pretrained": pretrained, "oracles": oracles, "summary": summary, "results": results,
        "targets": targets, "extract_seconds": timings,
    }
    write_json_atomic(out / f"downstream-{env}.json", payload)
    lines = ["| method | weights | " + " | ".join(f"{t} (balanced)" for t in results)
             + " | mean balanced | mean accuracy | layers chosen (outer folds, all tasks) |",
             "|---" * (5 + len(results)) + "|"]
    for row in summary:
        if row["method"] in oracles:
            w = "oracle (score, not audio)"
        else:
            w = "-" if row["method"] == "mfcc" else ("pretrained" if pretrained[row["method"]] else "untrained/random")
        cells = " | ".join(f"{100 * row[f'{t}_balanced']:.1f}" for t in results)
        layers = "-" if row["method"] == "mfcc" or row["method"] in oracles else row["layers"]
        lines.append(f"| {row['method']} | {w} | {cells} | {100 * row['mean_balanced']:.1f} | "
                     f"{100 * row['mean']:.1f} | {layers} |")
    table = "\n".join(lines)
    task_text = "; ".join(f"{t}: {len(v)} clips, {len(set(v.values()))} classes" for t, v in tasks.items())
    text = (
        f"Linear-probe balanced accuracy (%) on {data.name}: {len(paths)} TimGM6mb renders of test-split "
        f"pieces, {len(set(pieces))} split_key groups ({task_text}).\n{args.folds}-fold stratified CV grouped by "
        f"split_key; in each outer fold the layer and C (from {args.Cs}) are chosen by an inner grouped 3-fold CV "
        f"on its training part; *mean accuracy* is plain accuracy beside the balanced headline.\n\n"
        f"{table}\n\n{targets_text(targets)}\n")
    with atomic_file(out / f"downstream-{env}.md") as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    print(table)
    print(targets_text(targets))
    if args.record:
        from _record import record

        by_method = {row["method"]: row for row in summary}
        for row in summary:
            if not pretrained.get(row["method"]):
                continue
            figures = {t: round(row[f"{t}_balanced"], 4) for t in results}
            figures.update(mean_balanced_accuracy=round(row["mean_balanced"], 4), mean_accuracy=round(row["mean"], 4),
                           layers_chosen=row["layers"])
            figures["mfcc_mean_balanced_accuracy"] = round(by_method["mfcc"]["mean_balanced"], 4)
            if "random-cnn" in by_method:
                figures["random_cnn_mean_balanced_accuracy"] = round(by_method["random-cnn"]["mean_balanced"], 4)
            figures["n_clips"] = len(paths)
            figures["how"] = (f"benchmarks/downstream.py on {data.name} (TimGM6mb renders of test-split pieces): "
                              f"logistic-regression probes on mean+std pooled embeddings, {args.folds}-fold CV "
                              "grouped by split_key, layer and C chosen inside each fold by inner CV; "
                              "per-task figures are balanced accuracy")
            record(row["method"], "transfer_linear_probe", figures)
        print("recorded transfer_linear_probe in the pretrained models' manifest entries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
