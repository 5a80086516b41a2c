"""Real-audio benchmark: which game soundtrack a clip of produced music comes from, by linear probe.

    python -m training.real build --out /work/data/real          # the clips (see training/README.md)
    python -m training.teacher --real /work/data/real --split test --cache /work/data/teacher   # optional
    python benchmarks/real_audio.py [--data /work/data/real] [--teacher-cache /work/data/teacher]

Data: the *test* tracks of the real-audio build (``split == "test"`` in ``metadata.csv``): 10-s
clips of the music of six Debian game packages, tracks the training split never contains.  The task
is the package (soundtrack) of a clip -- six classes that differ in composers, production and style.
Classes with fewer than ``--min-groups`` test track groups are dropped.

Methods, all in one run on the same clips and folds:
  * ``mfcc``: 20 MFCCs + deltas + delta-deltas, mean and std over time;
  * every zoo model of ``mirzoo.list_models()``: every non-head layer, mean+std pooled
    (``Extractor.extract(..., pool="mean+std")``), and ``layer="all"``;
  * ``musicnn-MTT`` / ``musicnn-MSD`` (musicnn 0.1.0, trained on real songs): its cached per-patch
    tag probabilities, penultimate, mean-pool and max-pool features (``training/teacher.py``),
    mean+std pooled over the 3-s patches like everything else, and all four concatenated as
    ``layer="all"``.  Computed on the fly if its venv exists; otherwise the rows are skipped and the
    reason printed and recorded.

Probe: ``StandardScaler`` + ``LogisticRegression`` (lbfgs, ``class_weight="balanced"``).  Outer
folds are stratified and *grouped by track group* (:func:`group_folds`), so excerpts of one
track -- or of its fast/remix variants -- never sit on both sides.  Inside each outer fold, the
layer *and* C (``--Cs``) are chosen together by an inner grouped 3-fold CV on the training part only
(scored by balanced accuracy); the chosen pair is refit on the whole training part and scored on the
held-out tracks.  ``layer="all"`` is probed the same way with only C chosen.  Headline: balanced
accuracy (mean per-class recall; the packages have unequal amounts of test audio) of the
out-of-fold predictions of all clips, mean over ``--repeats`` reshufflings of the outer folds
(pooling is steadier than a mean over folds, some of which lack a class); plain accuracy and the
per-fold mean and spread are reported too.  With ~25 test track groups the figures move by
several points from one fold assignment to the next: compare methods on the same run only.

``--fit-split train`` measures the same task another way, beside the headline and not in its place:
each probe is fitted on the clips of the *fit* split's tracks (the train split: 123 track groups of the
same six packages, 2707 clips, against ~20 groups in a training fold above), its layer (``all``
included) and C chosen by grouped 3-fold CV there, and scored once on every test clip.  The spread of
that score is a bootstrap over the test track groups (resampled within each package, 2000 times),
and every pretrained model's difference to the best musicnn and to ``random-cnn`` is bootstrapped on
the same resamples (paired).  The zoo models saw the train split's audio without its labels (the
distillation and contrastive runs of training/README), so the probe's training features come from
audio some models were fitted to; the score is on tracks none of them saw.  Results go to
``real_audio-<env>-fit-<split>.{json,md}``.

Features are cached under ``--cache`` keyed by model, weights sha256, layer and clip list.  Results
go to ``benchmarks/results/real_audio-<env>.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from downstream import env_name, mfcc_features  # noqa: E402  (sibling benchmark script)

MUSICNN_OUTPUTS = ("tags", "penultimate", "mean_pool", "max_pool")


def load_task(data: Path, split: str, min_groups: int) -> tuple[list[dict], list[str]]:
    """Test-split rows of classes with at least ``min_groups`` track groups, and the dropped classes."""
    with open(data / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    groups: dict[str, set] = {}
    for r in rows:
        groups.setdefault(r["package"], set()).add(r["group"])
    dropped = sorted(p for p, g in groups.items() if len(g) < min_groups)
    return [r for r in rows if r["package"] not in dropped], dropped


def zoo_features(name: str, paths: list[str], cache: Path) -> dict[str, np.ndarray]:
    """Mean+std pooled features of every non-head layer of zoo model ``name`` (public API only).

    One ``layer="all"`` pass gives the layers of ``all_layers`` (pooling is per column, so the pooled
    concatenation splits into the pooled layers); the other layers get one pass each.
    """
    import mirzoo

    info = mirzoo.model_info(name)
    key = hashlib.sha256(json.dumps([name, info.get("weights", {}).get("sha256"), paths]).encode()).hexdigest()[:20]
    file = cache / f"{name}-{key}.npz"
    if file.exists():
        with np.load(file) as z:
            return {k: z[k] for k in z.files}
    m = mirzoo.load(name)
    heads = set(m.heads)
    layers = [l for l in m.layers if l not in heads]
    out: dict[str, np.ndarray] = {}
    allx = np.stack(m.extract(paths, layer="all", pool="mean+std"))
    dims = [m.layers[l] for l in m.all_layers]
    if allx.shape[1] == 2 * sum(dims):
        half = allx.shape[1] // 2
        start = 0
        for l, d in zip(m.all_layers, dims):
            out[l] = np.concatenate([allx[:, start : start + d], allx[:, half + start : half + start + d]], axis=1)
            start += d
    out["all"] = allx
    for l in layers:
        if l not in out:
            out[l] = np.stack(m.extract(paths, layer=l, pool="mean+std"))
    tmp = file.with_name(file.name + ".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, file)
    return out


def cached_mfcc(paths: list[str], cache: Path) -> np.ndarray:
    """The MFCC baseline's features of ``paths``, cached under ``cache`` by the clip list."""
    file = cache / f"mfcc-{hashlib.sha256(json.dumps(paths).encode()).hexdigest()[:20]}.npy"
    if not file.exists():
        np.save(file, mfcc_features(paths))
    return np.load(file)


def musicnn_features(shas: list[str], paths: list[str], teacher_cache: Path, venv) -> tuple[dict, str]:
    """``{"musicnn-MTT": {layer: X}, "musicnn-MSD": {...}}`` from the teacher cache, or ``({}, reason)``."""
    from training import teacher

    clips = list(zip(shas, paths))
    try:
        if teacher.pending(clips, teacher_cache):
            teacher.compute(clips, teacher_cache, venv=venv)
    except teacher.TeacherError as e:
        return {}, str(e)
    out = {}
    for model in teacher.MODELS:
        name = "musicnn-" + model.split("_")[0]
        feats = {}
        for o in MUSICNN_OUTPUTS:
            per_clip = [teacher.load_targets(teacher_cache, s)[f"{model}/{o}"] for s in shas]
            feats[o] = np.stack([np.concatenate([p.mean(axis=0), p.std(axis=0)]) for p in per_clip]).astype(np.float32)
        feats["all"] = np.concatenate([feats[o] for o in MUSICNN_OUTPUTS], axis=1)
        out[name] = feats
    return out, ""


def _fit(x, y, C):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=C, tol=1e-3, class_weight="balanced"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


def nested_probe(feats: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, folds: int, seed: int,
                 Cs: tuple, repeats: int = 1) -> dict:
    """Outer grouped CV; in each outer fold the (layer, C) pair is chosen by inner grouped 3-fold CV.

    ``repeats`` > 1 repeats the outer CV with seeds ``seed .. seed + repeats - 1`` (other track
    groupings into folds) and averages over all outer folds.
    """
    import warnings

    with warnings.catch_warnings():
        # a class with one training track cannot be on both sides of every inner split: sklearn warns, the
        # scores stay well defined
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="The least populated class in y has only")
        return _nested_probe(feats, y, groups, folds, seed, Cs, repeats)


def group_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified group k-fold for labels that are constant within a group (a track has one package).

    Each class's groups are shuffled with ``seed`` and dealt round-robin over the folds, continuing
    where the previous class stopped, so every fold gets about the same number of tracks of each
    class.  (sklearn's ``StratifiedGroupKFold(shuffle=True)`` barely depends on the seed here: it
    assigns groups greedily and the seed only breaks ties, so repeats gave the same folds.)
    """
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    start = 0
    for c in sorted(set(y.tolist())):
        gs = sorted(set(groups[y == c].tolist()))
        for i, g in enumerate(rng.permutation(gs)):
            fold_of[str(g)] = (start + i) % folds
        start += len(gs)
    f = np.array([fold_of[str(g)] for g in groups])
    return [(np.flatnonzero(f != k), np.flatnonzero(f == k)) for k in range(folds) if (f == k).any()]


def choose_layer_and_c(feats: dict[str, np.ndarray], y: np.ndarray, folds: list, Cs: tuple) -> tuple:
    """``(layer, C, summed balanced accuracy)`` of the (layer, C) pair that scores best over ``folds``
    (``(train rows, test rows)`` pairs); the first pair wins a tie."""
    from sklearn.metrics import balanced_accuracy_score

    best, best_score = None, -1.0
    for layer, x in feats.items():
        for C in Cs:
            score = 0.0
            for tr, te in folds:
                score += balanced_accuracy_score(y[te], _fit(x[tr], y[tr], C).predict(x[te]))
            if score > best_score + 1e-12:
                best, best_score = (layer, C), score
    return best[0], best[1], best_score


def _nested_probe(feats, y, groups, folds, seed, Cs, repeats) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    n = len(y)
    bal, acc, chosen, pooled, pooled_acc = [], [], [], [], []
    for r in range(repeats):
        oof = np.empty(n, dtype=y.dtype)
        for train, test in group_folds(y, groups, folds, seed + r):
            inner = [(train[itr], train[ite]) for itr, ite in group_folds(y[train], groups[train], 3, seed + r)]
            layer, C, _ = choose_layer_and_c(feats, y, inner, Cs)
            pred = _fit(feats[layer][train], y[train], C).predict(feats[layer][test])
            oof[test] = pred
            bal.append(balanced_accuracy_score(y[test], pred))
            acc.append(accuracy_score(y[test], pred))
            chosen.append({"repeat": r, "layer": layer, "C": C})
        pooled.append(balanced_accuracy_score(y, oof))
        pooled_acc.append(accuracy_score(y, oof))
    return {"pooled_balanced_accuracy": float(np.mean(pooled)), "pooled_per_repeat": [float(p) for p in pooled],
            "pooled_accuracy": float(np.mean(pooled_acc)),
            "balanced_accuracy": float(np.mean(bal)), "balanced_std": float(np.std(bal)),
            "accuracy": float(np.mean(acc)), "folds_balanced": [float(b) for b in bal], "chosen": chosen}


def split_probe(fit: dict[str, np.ndarray], y_fit: np.ndarray, groups_fit: np.ndarray,
                test: dict[str, np.ndarray], Cs: tuple, seed: int) -> dict:
    """A probe fitted on one split and applied to another: ``(layer, C)`` chosen by grouped 3-fold CV
    on the fit split (balanced accuracy), refitted on all of it; returns the test predictions."""
    import warnings

    folds = group_folds(y_fit, groups_fit, 3, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        layer, C, total = choose_layer_and_c(fit, y_fit, folds, Cs)
    pred = _fit(fit[layer], y_fit, C).predict(test[layer])
    return {"layer": layer, "C": C, "cv_balanced_accuracy": total / len(folds), "pred": pred}


def group_bootstrap(y: np.ndarray, groups: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """``n`` resamples of the clips by track group, within each class (a class keeps its number of
    groups): row indices, a group drawn twice counted twice."""
    rng = np.random.default_rng(seed)
    by_class = {c: sorted(set(groups[y == c].tolist())) for c in sorted(set(y.tolist()))}
    rows = {g: np.flatnonzero(groups == g) for g in set(groups.tolist())}
    out = []
    for _ in range(n):
        idx = [rows[g] for gs in by_class.values() for g in rng.choice(gs, size=len(gs), replace=True)]
        out.append(np.concatenate(idx))
    return out


def bootstrap_scores(y: np.ndarray, preds: dict[str, np.ndarray], resamples: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Balanced accuracy of every method's predictions on every resample (the same resamples for all)."""
    from sklearn.metrics import balanced_accuracy_score

    return {m: np.array([balanced_accuracy_score(y[i], p[i]) for i in resamples]) for m, p in preds.items()}


def interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def fit_split_report(rows_fit: list[dict], rows_test: list[dict], methods_fit: dict, methods_test: dict,
                     pretrained: dict[str, bool], Cs: tuple, seed: int, boot: int) -> dict:
    """The ``--fit-split`` protocol: every method's probe fitted on ``rows_fit``, scored on ``rows_test``,
    with group-bootstrap intervals and paired differences of the pretrained models to the best musicnn
    and to ``random-cnn``."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    y_fit = np.array([r["package"] for r in rows_fit])
    g_fit = np.array([f"{r['package']}/{r['group']}" for r in rows_fit])
    y = np.array([r["package"] for r in rows_test])
    groups = np.array([f"{r['package']}/{r['group']}" for r in rows_test])
    rows, preds = {}, {}
    for method, fit in methods_fit.items():
        res = split_probe(fit, y_fit, g_fit, methods_test[method], Cs, seed)
        preds[method] = res.pop("pred")
        rows[method] = dict(res, balanced_accuracy=float(balanced_accuracy_score(y, preds[method])),
                            accuracy=float(accuracy_score(y, preds[method])))
    resamples = group_bootstrap(y, groups, boot, seed)
    scores = bootstrap_scores(y, preds, resamples)
    for method, r in rows.items():
        r["interval"] = interval(scores[method])
        r["kind"] = ("baseline" if method == "mfcc" else "reference (real-music model)" if method.startswith("musicnn")
                     else "pretrained" if pretrained.get(method) else "untrained/random")
    musicnn = [m for m in rows if m.startswith("musicnn")]
    best_musicnn = max(musicnn, key=lambda m: rows[m]["balanced_accuracy"]) if musicnn else None
    targets = {}
    for name, is_pre in pretrained.items():
        if not is_pre or name not in rows:
            continue
        t = {"score": rows[name]["balanced_accuracy"]}
        for other, key in ((best_musicnn, "vs_musicnn"), ("random-cnn" if "random-cnn" in rows else None, "vs_random_cnn")):
            if other is None:
                continue
            diff = scores[name] - scores[other]
            t[key] = {"than": other, "difference": rows[name]["balanced_accuracy"] - rows[other]["balanced_accuracy"],
                      "interval": interval(diff)}
        targets[name] = t
    classes = sorted(set(y.tolist()))
    return {"fit": {"clips": len(rows_fit), "track_groups": len(set(g_fit.tolist()))},
            "test": {"clips": len(rows_test), "track_groups": len(set(groups.tolist())),
                     "classes": {c: {"clips": int((y == c).sum()), "track_groups": len(set(groups[y == c].tolist()))}
                                 for c in classes}},
            "bootstrap": boot, "methods": rows, "targets": targets}


def fit_split_table(report: dict, fit_split: str, split: str) -> str:
    f, t = report["fit"], report["test"]
    lines = [f"Which soundtrack a 10-s clip is from, probes fitted on the {fit_split} split ({f['clips']} clips of "
             f"{f['track_groups']} track groups) and scored on the {split} split ({t['clips']} clips of "
             f"{t['track_groups']} track groups; chance {100 / len(t['classes']):.1f}). Layer (`all` included) and C chosen by "
             f"grouped 3-fold CV on the {fit_split} split; 95 % intervals from {report['bootstrap']} resamples of the "
             f"{split} track groups within each package.", "",
             "| method | kind | balanced acc. [95 % interval] | accuracy | layer, C (chosen on the fit split) |",
             "|---|---|---|---|---|"]
    for m, r in report["methods"].items():
        lo, hi = r["interval"]
        lines.append(f"| {m} | {r['kind']} | {100 * r['balanced_accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | "
                     f"{100 * r['accuracy']:.1f} | {r['layer']}, {r['C']:g} |")
    lines += ["", "Paired differences (issue 16's targets: at or above musicnn, at least 5 points above random-cnn):"]
    for name, tg in report["targets"].items():
        parts = []
        for key, need in (("vs_musicnn", 0.0), ("vs_random_cnn", 0.05)):
            if key in tg:
                d, (lo, hi) = tg[key]["difference"], tg[key]["interval"]
                verdict = "met" if lo >= need else "not met" if hi < need else "not shown either way"
                parts.append(f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] vs {tg[key]['than']} ({verdict})")
        lines.append(f"- {name}: {100 * tg['score']:.1f}; " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def issue_targets(summary: list[dict], pretrained: dict[str, bool]) -> dict[str, dict]:
    """Issue 16's targets for each pretrained zoo model of ``summary`` (rows with ``method``,
    ``balanced_accuracy`` and, where probed, ``all_balanced_accuracy``): every method, musicnn and
    ``random-cnn`` included, scores the better of its chosen layer and ``layer="all"``; a model meets
    them at or above the best musicnn and at least 5 points above ``random-cnn``."""
    def score(row):
        return max(row["balanced_accuracy"], row.get("all_balanced_accuracy", -1.0))

    by = {r["method"]: r for r in summary}
    best_musicnn = max((score(r) for m, r in by.items() if m.startswith("musicnn")), default=None)
    targets = {}
    for name, is_pre in pretrained.items():
        if not is_pre or name not in by:
            continue
        t = {"score": score(by[name])}
        if "random-cnn" in by:
            rnd = score(by["random-cnn"])
            t.update(vs_random_cnn=t["score"] - rnd, met_random=t["score"] - rnd >= 0.05)
        if best_musicnn is not None:
            t.update(vs_musicnn=t["score"] - best_musicnn, met_musicnn=t["score"] >= best_musicnn)
        targets[name] = t
    return targets


def run_fit_split(args, data: Path, cache: Path, rows_test: list[dict], classes: list, names: list,
                  methods_test: dict, skipped: dict) -> int:
    """``--fit-split``: features of the fit split's clips (same classes), the probes, the report files."""
    import mirzoo
    from mirzoo.fileio import atomic_file, write_json_atomic
    from threadpoolctl import threadpool_limits

    rows_fit = [r for r in load_task(data, args.fit_split, 1)[0] if r["package"] in set(classes)]
    if not rows_fit:
        raise SystemExit(f"no {args.fit_split} clips of the classes {classes} in {data / 'metadata.csv'}")
    paths = [str((data / r["path"]).resolve()) for r in rows_fit]
    print(f"{len(rows_fit)} {args.fit_split} clips to fit the probes on", flush=True)
    methods_fit: dict[str, dict[str, np.ndarray]] = {"mfcc": {"mfcc": cached_mfcc(paths, cache)}}
    for name in names:
        t0 = time.time()
        methods_fit[name] = zoo_features(name, paths, cache)
        print(f"  {args.fit_split} features of {name} in {time.time() - t0:.0f} s", flush=True)
    if not skipped.get("musicnn"):
        mus, reason = musicnn_features([r["sha256"] for r in rows_fit], paths, Path(args.teacher_cache), args.venv)
        if reason:  # no musicnn on the fit split: its rows go from both
            skipped["musicnn"] = reason
            methods_test = {m: f for m, f in methods_test.items() if not m.startswith("musicnn")}
        methods_fit.update(mus)
    pretrained = {n: bool(mirzoo.model_info(n)["pretrained"]) for n in names}
    with threadpool_limits(1):
        report = fit_split_report(rows_fit, rows_test, {m: methods_fit[m] for m in methods_test}, methods_test,
                                  pretrained, tuple(args.Cs), args.seed, args.boot)
    report.update(env=env_name(), data=str(data), fit_split=args.fit_split, split=args.split, Cs=args.Cs,
                  seed=args.seed, skipped=skipped)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"real_audio-{report['env']}-fit-{args.fit_split}"
    write_json_atomic(Path(f"{stem}.json"), report)
    table = fit_split_table(report, args.fit_split, args.split)
    with atomic_file(Path(f"{stem}.md")) as tmp:
        Path(tmp).write_text(table, encoding="utf-8")
    print(table)
    return 0


def main(argv=None) -> int:
    import mirzoo  # mirzoo itself imports no Keras: --help stays fast
    from mirzoo.fileio import atomic_file, write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/data/real", help="training.real build folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--min-groups", type=int, default=2, help="drop classes with fewer test track groups")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="outer CV repeats with seeds seed, seed+1, ...")
    parser.add_argument("--models", nargs="*", default=None, help="zoo models (default: all)")
    parser.add_argument("--Cs", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/mirzoo-bench/real_audio"))
    parser.add_argument("--out", default=str(HERE / "results"),
                        help="folder of the result files (default benchmarks/results; another folder for a candidate)")
    parser.add_argument("--teacher-cache", default=os.path.expanduser("~/.cache/mirzoo/teacher"))
    parser.add_argument("--venv", default=None, help="musicnn venv (default: training.teacher's)")
    parser.add_argument("--fit-split", default=None,
                        help="fit the probes on this split's clips and score them on --split (see above), instead of CV")
    parser.add_argument("--boot", type=int, default=2000, help="group-bootstrap resamples of --fit-split's intervals")
    args = parser.parse_args(argv)
    data, cache = Path(args.data), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows, dropped = load_task(data, args.split, args.min_groups)
    if not rows:
        raise SystemExit(f"no {args.split} clips in {data / 'metadata.csv'}")
    paths = [str((data / r["path"]).resolve()) for r in rows]
    shas = [r["sha256"] for r in rows]
    y = np.array([r["package"] for r in rows])
    groups = np.array([f"{r['package']}/{r['group']}" for r in rows])
    classes = sorted(set(y))
    print(f"{len(rows)} {args.split} clips, {len(set(groups))} track groups, {len(classes)} classes"
          + (f" (dropped, too few groups: {dropped})" if dropped else ""), flush=True)

    methods: dict[str, dict[str, np.ndarray]] = {}
    timings, skipped = {}, {}
    t0 = time.time()
    methods["mfcc"] = {"mfcc": cached_mfcc(paths, cache)}
    timings["mfcc"] = time.time() - t0
    names = args.models if args.models is not None else mirzoo.list_models()
    for name in names:
        t0 = time.time()
        methods[name] = zoo_features(name, paths, cache)
        timings[name] = time.time() - t0
        print(f"  features of {name} ({len(methods[name]) - 1} layers + all) in {timings[name]:.0f} s", flush=True)
    t0 = time.time()
    mus, reason = musicnn_features(shas, paths, Path(args.teacher_cache), args.venv)
    if reason:
        skipped["musicnn"] = reason
        print(f"  musicnn rows skipped: {reason}", flush=True)
    else:
        methods.update(mus)
        timings["musicnn"] = time.time() - t0

    from threadpoolctl import threadpool_limits

    if args.fit_split:
        return run_fit_split(args, data, cache, rows, classes, names, methods, skipped)
    results = {}
    with threadpool_limits(1):
        for method, feats in methods.items():
            single = {k: v for k, v in feats.items() if k != "all"}
            res = {"chosen_in_folds": nested_probe(single, y, groups, args.folds, args.seed, tuple(args.Cs), args.repeats)}
            if "all" in feats:
                res["all"] = nested_probe({"all": feats["all"]}, y, groups, args.folds, args.seed, tuple(args.Cs), args.repeats)
            results[method] = res
            print(f"  probed {method}: {100 * res['chosen_in_folds']['pooled_balanced_accuracy']:.1f}", flush=True)

    pretrained = {n: bool(mirzoo.model_info(n)["pretrained"]) for n in names}
    summary = []
    for method, res in results.items():
        c = res["chosen_in_folds"]
        layers = sorted({ch["layer"] for ch in c["chosen"]})
        row = {"method": method, "balanced_accuracy": c["pooled_balanced_accuracy"],
               "per_repeat": c["pooled_per_repeat"], "accuracy": c["pooled_accuracy"],
               "fold_mean_balanced_accuracy": c["balanced_accuracy"], "fold_std": c["balanced_std"],
               "layers_chosen": layers}
        if "all" in res:
            row["all_balanced_accuracy"] = res["all"]["pooled_balanced_accuracy"]
            row["all_accuracy"] = res["all"]["pooled_accuracy"]
        row["kind"] = ("baseline" if method == "mfcc" else "reference (real-music model)" if method.startswith("musicnn")
                       else "pretrained" if pretrained.get(method) else "untrained/random")
        summary.append(row)

    targets = issue_targets(summary, pretrained)

    env = env_name()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_groups = {c: len({g for g, yy in zip(groups, y) if yy == c}) for c in classes}
    n_clips = {c: int((y == c).sum()) for c in classes}
    payload = {
        "env": env, "data": str(data), "split": args.split, "clips": len(rows), "track_groups": len(set(groups)),
        "classes": {c: {"clips": n_clips[c], "track_groups": n_groups[c]} for c in classes}, "dropped": dropped,
        "folds": args.folds, "repeats": args.repeats, "seed": args.seed, "Cs": args.Cs,
        "cv": "stratified group k-fold by track group (group_folds, reshuffled per repeat); layer and C chosen together by inner grouped 3-fold CV "
              "(balanced accuracy) on the training folds; class_weight=balanced",
        "summary": summary, "results": results, "targets": targets, "skipped": skipped,
        "feature_seconds": timings,
    }
    write_json_atomic(out / f"real_audio-{env}.json", payload)
    lines = ["| method | kind | balanced acc. (layer chosen in folds) | per repeat | accuracy | "
             "balanced acc. (layer=\"all\") | fold mean ± std | layers chosen |", "|---|---|---|---|---|---|---|---|"]
    for r in summary:
        all_b = f"{100 * r['all_balanced_accuracy']:.1f}" if "all_balanced_accuracy" in r else "-"
        reps = " / ".join(f"{100 * p:.1f}" for p in r["per_repeat"])
        lines.append(f"| {r['method']} | {r['kind']} | {100 * r['balanced_accuracy']:.1f} | {reps} | "
                     f"{100 * r['accuracy']:.1f} | {all_b} | {100 * r['fold_mean_balanced_accuracy']:.1f} ± "
                     f"{100 * r['fold_std']:.1f} | {', '.join(r['layers_chosen'])} |")
    for m, why in skipped.items():
        lines.append(f"| {m} | skipped | - | - | - | - | - | {why} |")
    table = "\n".join(lines)
    tlines = ["Targets (issue 16; the better of chosen layer and layer=\"all\", balanced accuracy): at or above "
              "musicnn, and at least 5 points above random-cnn."]
    for name, t in targets.items():
        parts = [f"{100 * t['score']:.1f}"]
        if "vs_musicnn" in t:
            parts.append(f"{100 * t['vs_musicnn']:+.1f} vs best musicnn ({'met' if t['met_musicnn'] else 'not met'})")
        if "vs_random_cnn" in t:
            parts.append(f"{100 * t['vs_random_cnn']:+.1f} vs random-cnn ({'met' if t['met_random'] else 'not met'})")
        tlines.append(f"- {name}: " + ", ".join(parts))
    class_text = ", ".join(f"{c} {n_clips[c]} clips / {n_groups[c]} tracks" for c in classes)
    text = (
        f"Which soundtrack (Debian package) a 10-s clip of real game music is from: {len(rows)} clips of "
        f"{len(set(groups))} test-split track groups ({class_text}). Linear probes on mean+std pooled embeddings; "
        f"{args.folds}-fold stratified CV grouped by track, {args.repeats} repeat(s); layer and C ({args.Cs}) chosen "
        f"by inner grouped 3-fold CV on the training folds. Headline: balanced accuracy of the out-of-fold predictions "
        f"of all clips, mean over repeats (chance {100 / len(classes):.1f}); *fold mean ± std* is the mean and "
        f"spread of the per-fold balanced accuracies.\n\n{table}\n\n"
        + "\n".join(tlines) + "\n")
    with atomic_file(out / f"real_audio-{env}.md") as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    print(table)
    print("\n".join(tlines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
