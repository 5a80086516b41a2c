"""Standard MIR benchmarks on the data sets a user holds: frozen embeddings + a shallow probe.

    python benchmarks/standard.py --mtat /data/mtat --gtzan /data/gtzan \\
        --giantsteps /data/giantsteps-key-dataset --ballroom /data/ballroom --nsynth /data/nsynth \\
        [--models cnn-tagging crnn-tagging random-cnn] [--probes logreg mlp] [--folds 5] [--max-clips 2000]

Protocol (HEAR 2021 / MARBLE style): each zoo model's embeddings, mean+std pooled over the clip
(every embedding layer a candidate), feed a shallow probe trained on top of the frozen network.
Two probes, both on standardised features and both seeded:

* ``logreg``: logistic regression, ``C`` from ``--Cs`` (one-vs-rest per tag for multi-label data);
* ``mlp``: one hidden layer (``--mlp-hidden`` ReLU units, 512 as in MARBLE's MLP probe), Adam,
  L2 penalty ``alpha`` from ``--alphas`` (scikit-learn's ``MLPClassifier``; multi-label natively).

Tasks, splits and metrics:

* MagnaTagATune top-50 tagging (clips with none of the 50 tags left out): train on folders ``0``-``b``, choose the layer and the probe's
  hyper-parameter on ``c``, score on ``d``-``f`` (the split of Dieleman & Schrauwen 2014 used by
  Choi et al. 2016): macro ROC-AUC and PR-AUC over the tags present and absent in the test part.
* GTZAN genre: the fault-filtered split (Kereliuk et al. 2015; ``train/valid/test_filtered.txt``
  beside ``genres/``, as ``mirzoo.datasets.load_gtzan`` reads them): choose on valid, score
  accuracy on test.  Without the lists, grouped 5-fold CV is run instead and the table says
  so: that number is not comparable with published ones (random folds leak artists).
* GiantSteps key, Ballroom style, NSynth instrument family and pitch (one ``nsynth-<split>``
  folder): no train/test split is read, so grouped stratified CV.  ``logreg`` uses the nested
  CV of ``benchmarks/downstream.py`` (layer and ``C`` chosen inside each outer fold); ``mlp`` the
  default layer with the first ``--alphas`` value (an inner search per fold would multiply the
  MLP fits by the grid).  GiantSteps also gets the MIREX weighted key score of out-of-fold
  predictions.

* Ballroom beats (with ``BallroomAnnotations``): every model with a ``beats`` head (``tcn-music``)
  analyses each track; beat and downbeat F-measure (``mir_eval.beat.f_measure``, +-70 ms) after
  ``mir_eval.beat.trim_beats`` drops the first 5 s of reference and estimate alike, as MIREX does.
  Models without a beat head are skipped for this task with a line.  GTZAN's beat annotations are
  not part of its layout (they come from separate releases), so GTZAN has no beat task here.

* NSynth pitch keeps MIDI 21-108 (HEAR's restriction to the piano range; ``--nsynth-pitches``).

Not done: artist-grouped folds where a data set lacks a split.

Every data set not given (or not found) is skipped with a line saying where it is expected.
Results go to ``benchmarks/results/standard-<env>.{json,md}``; the markdown puts them beside the
published figures of :data:`PUBLISHED` (with their sources; ``n/r`` where no figure is recorded).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from downstream import env_name, layer_features, nested_probe  # noqa: E402

#: Where each data set is expected (printed when it is absent).
EXPECTED = {
    "mtat": "MagnaTagATune: annotations_final.csv beside the mp3 folders 0/ ... f/",
    "gtzan": "GTZAN: genres/<genre>/<genre>.000NN.wav (or .au), with train_filtered.txt, valid_filtered.txt and "
             "test_filtered.txt beside genres/ for the fault-filtered split (github.com/coreyker/dnn-mgr, gtzan/)",
    "giantsteps": "GiantSteps key: annotations/key/<id>.LOFI.key and audio/<id>.LOFI.mp3 "
                  "(github.com/GiantSteps/giantsteps-key-dataset, after audio_dl.sh)",
    "ballroom": "Ballroom: BallroomData/<Style>/*.wav (+ BallroomAnnotations/*.beats from "
                "github.com/CPJKU/BallroomAnnotations, for the beat task)",
    "nsynth": "NSynth: nsynth-test/examples.json and nsynth-test/audio/*.wav",
}

PROBES = ("logreg", "mlp")

#: Published figures to print beside ours: (task, metric, system, value or None, how it was obtained, source).
#: ``None`` is written ``n/r`` (not recorded): a figure is entered here only when checked against its
#: source.  MERT's (Li et al. 2023, arXiv:2306.00107, Table 2; the MARBLE leaderboard, Yuan et al.
#: 2023) could not be checked offline when this table was written, so they stay empty.
PUBLISHED = (
    ("mtat-tagging", "roc_auc_macro", "musicnn MTT_musicnn", 0.9067, "trained end to end on MTAT, 0-b/c/d-f split",
     "Pons & Serra 2019 (musicnn); github.com/jordipons/musicnn musicnn/MTT_musicnn/experiment.result"),
    ("mtat-tagging", "pr_auc_macro", "musicnn MTT_musicnn", 0.3831, "trained end to end on MTAT, 0-b/c/d-f split",
     "Pons & Serra 2019 (musicnn); github.com/jordipons/musicnn musicnn/MTT_musicnn/experiment.result"),
    ("mtat-tagging", "roc_auc_macro", "Choi et al. 2016 FCN-4", 0.894, "trained end to end on MTAT, 0-b/c/d-f split",
     "Choi, Fazekas & Sandler 2016, 'Automatic tagging using deep convolutional neural networks', ISMIR"),
    ("mtat-tagging", "roc_auc_macro", "MERT-95M", None, "probe (MARBLE protocol)", "Li et al. 2023, Table 2"),
    ("mtat-tagging", "pr_auc_macro", "MERT-95M", None, "probe (MARBLE protocol)", "Li et al. 2023, Table 2"),
    ("mtat-tagging", "roc_auc_macro", "MERT-330M", None, "probe (MARBLE protocol)", "Li et al. 2023, Table 2"),
    ("mtat-tagging", "pr_auc_macro", "MERT-330M", None, "probe (MARBLE protocol)", "Li et al. 2023, Table 2"),
    ("gtzan-genre", "accuracy", "MERT-95M", None, "probe, fault-filtered split", "Li et al. 2023, Table 2"),
    ("gtzan-genre", "accuracy", "MERT-330M", None, "probe, fault-filtered split", "Li et al. 2023, Table 2"),
    ("giantsteps-key", "mirex_weighted", "MERT-95M", None, "probe (MARBLE protocol)", "Li et al. 2023, Table 2"),
    ("giantsteps-key", "mirex_weighted", "MERT-330M", None, "probe (MARBLE protocol)", "Li et al. 2023, Table 2"),
)

#: The metric of each task that the table shows.
HEADLINE = {"mtat-tagging": ("roc_auc_macro", "pr_auc_macro"), "gtzan-genre": ("accuracy",),
            "giantsteps-key": ("mirex_weighted", "accuracy"), "ballroom-style": ("accuracy",),
            "nsynth-instrument": ("accuracy",), "nsynth-pitch": ("accuracy",),
            "ballroom-beats": ("beat_f", "downbeat_f")}


def mirex_key_score(reference: list[str], estimate: list[str]) -> float:
    """Mean MIREX weighted key score (``mir_eval.key.weighted_score``: 1 same key, 0.5 the fifth
    above in the same mode, 0.3 relative major/minor, 0.2 parallel, else 0)."""
    import mir_eval.key

    if not reference:
        return float("nan")
    return float(np.mean([mir_eval.key.weighted_score(r, e) for r, e in zip(reference, estimate)]))


def make_probe(kind: str, param: float, *, seed: int, hidden: int = 512, multilabel: bool = False):
    """A standardised shallow probe: ``logreg`` (``param`` = C) or ``mlp`` (one hidden ReLU layer of
    ``hidden`` units, ``param`` = the L2 penalty alpha), seeded."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        clf = LogisticRegression(max_iter=2000, C=param, tol=1e-3)
        if multilabel:
            clf = OneVsRestClassifier(clf)
    elif kind == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(int(hidden),), alpha=param, max_iter=300, random_state=seed)
    else:
        raise ValueError(f"probe {kind!r}: expected one of {PROBES}")
    return make_pipeline(StandardScaler(), clf)


def _fit(probe, x, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # OneVsRest: a tag absent from the training part
        return probe.fit(x, y)


def tag_scores(y_true: np.ndarray, prob: np.ndarray) -> dict:
    """Macro ROC-AUC / PR-AUC over the tags with both classes in ``y_true``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    cols = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    roc = [roc_auc_score(y_true[:, j], prob[:, j]) for j in cols]
    pr = [average_precision_score(y_true[:, j], prob[:, j]) for j in cols]
    return {"roc_auc_macro": float(np.mean(roc)) if roc else float("nan"),
            "pr_auc_macro": float(np.mean(pr)) if pr else float("nan"), "tags_scored": len(cols)}


def split_probe(kind: str, feats: dict, y: dict, grid, *, seed: int, hidden: int = 512,
                multilabel: bool = False) -> dict:
    """Train / choose on valid / score on test: the layer and the hyper-parameter with the best
    validation score (ROC-AUC for multi-label ``y``, else accuracy; ties: earlier layer, earlier
    value) are fitted on train and scored on test.

    Parameters
    ----------
    feats : dict of layer to {"train", "valid", "test"} feature arrays [n_part, d]
    y : {"train", "valid", "test"} labels [n_part] or multi-hot [n_part, n_tags]
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    def score(model, x, truth):
        if multilabel:
            return tag_scores(truth, model.predict_proba(x))
        pred = model.predict(x)
        return {"accuracy": float(accuracy_score(truth, pred)),
                "balanced_accuracy": float(balanced_accuracy_score(truth, pred))}

    key = "roc_auc_macro" if multilabel else "accuracy"
    best = None
    for layer, parts in feats.items():
        for param in grid:
            model = _fit(make_probe(kind, param, seed=seed, hidden=hidden, multilabel=multilabel), parts["train"],
                         y["train"])
            valid = score(model, parts["valid"], y["valid"])[key]
            if best is None or valid > best[0] or (np.isnan(best[0]) and not np.isnan(valid)):
                best = (valid, layer, param, model)
    valid, layer, param, model = best
    out = score(model, feats[layer]["test"], y["test"])
    out.update({"layer": layer, "param": float(param), f"valid_{key}": float(valid), "protocol": "split"})
    return out


def cv_probe(kind: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int, seed: int, param: float,
             hidden: int = 512) -> tuple[dict, np.ndarray]:
    """Grouped stratified CV of one probe on one feature set: mean accuracies and out-of-fold predictions."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold

    pred = np.empty(len(y), dtype=y.dtype)
    for train, test in StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y, groups):
        pred[test] = _fit(make_probe(kind, param, seed=seed, hidden=hidden), x[train], y[train]).predict(x[test])
    return ({"accuracy": float(accuracy_score(y, pred)), "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
             "protocol": f"{folds}-fold CV"}, pred)


def key_predictions(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold key predictions of a standardised logistic regression (C=0.1), grouped folds."""
    return cv_probe("logreg", x, y, groups, folds=folds, seed=seed, param=0.1)[1]


def load_tasks(args) -> dict:
    """``{task: dataset or {"train", "valid", "test"} datasets}`` for every data set present; prints a
    line for each absent one (and for a GTZAN without its split lists)."""
    from mirzoo import datasets
    from mirzoo.errors import ParameterError

    present = {}

    def gtzan(path):
        lists = [Path(path) / name for name in datasets.GTZAN_SPLIT_FILES.values()]
        if all(f.is_file() for f in lists):
            return {"gtzan-genre": {s: datasets.load_gtzan(path, split=s) for s in datasets.GTZAN_SPLIT_FILES}}
        print(f"gtzan: the fault-filtered split lists ({', '.join(f.name for f in lists if not f.is_file())}) are not "
              f"in '{path}': running grouped {args.folds}-fold CV instead, not comparable with published figures")
        return {"gtzan-genre": datasets.load_gtzan(path)}

    def ballroom(path):
        tasks = {"ballroom-style": datasets.load_ballroom(path, beats=False)}
        try:
            tasks["ballroom-beats"] = datasets.load_ballroom(path, beats=True)
        except ParameterError as exc:  # no BallroomAnnotations: the style task still runs
            print(f"skipped ballroom-beats: {exc}")
        return tasks

    sources = {
        "gtzan": gtzan,
        "giantsteps": lambda p: {"giantsteps-key": datasets.load_giantsteps_key(p)},
        "ballroom": ballroom,
        "nsynth": lambda p: {"nsynth-instrument": datasets.load_nsynth(p, split=args.nsynth_split),
                             "nsynth-pitch": pitch_range(datasets.load_nsynth(p, split=args.nsynth_split,
                                                                              target="pitch"), *args.nsynth_pitches)},
        "mtat": lambda p: {"mtat-tagging": {s: datasets.load_magnatagatune(p, split=s, drop_untagged=True)
                                            for s in ("train", "valid", "test")}},
    }
    for name, load in sources.items():
        path = getattr(args, name)
        if path is None or not Path(path).exists():
            where = "not given" if path is None else f"'{path}' not found"
            print(f"skipped {name} ({where}): pass --{name} PATH; expected {EXPECTED[name]}")
            continue
        present.update(load(path))
    return present


def pitch_range(ds, lowest: int, highest: int):
    """The NSynth notes whose MIDI pitch is in ``[lowest, highest]`` (HEAR's nsynth-pitch task keeps the 88
    piano keys, 21-108)."""
    keep = [i for i, (_, labels) in enumerate(ds.items) if lowest <= int(labels[0]) <= highest]
    return ds.subset(keep)


def beat_scores(m, ds, *, trim: float = 5.0) -> dict:
    """Mean beat and downbeat F-measure of ``m``'s beat head over a beat-annotated data set."""
    import mir_eval.beat

    beat_f, downbeat_f = [], []
    for (path, _), ann in zip(ds.items, ds.annotations):
        a = m.analyze(path)
        ref_beats = mir_eval.beat.trim_beats(np.asarray(ann["beats"])[:, 0], min_beat_time=trim)
        ref_down = mir_eval.beat.trim_beats(np.asarray(ann["downbeats"]), min_beat_time=trim)
        beat_f.append(mir_eval.beat.f_measure(ref_beats, mir_eval.beat.trim_beats(a.beats, min_beat_time=trim)))
        downbeat_f.append(mir_eval.beat.f_measure(ref_down, mir_eval.beat.trim_beats(a.downbeats, min_beat_time=trim)))
    return {"beat_f": float(np.mean(beat_f)), "downbeat_f": float(np.mean(downbeat_f)), "n_clips": len(ds),
            "protocol": f"mir_eval F-measure +-70 ms, first {trim:g} s trimmed"}


def _subsample(ds, limit: int, seed: int):
    if limit and len(ds) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(ds), limit, replace=False))
        return ds.subset(keep)
    return ds


def run_task(m, task: str, data, args, layers: list[str]) -> dict:
    """``{probe: scores}`` of one model on one task."""
    if task == "ballroom-beats":  # not a probe: the model's own beat head
        if "beats" not in m.heads:
            print(f"{m.name} {task}: skipped, the model has no beat head (only {', '.join(m.heads) or 'embeddings'})")
            return {}
        return {"beat head": beat_scores(m, _subsample(data, args.max_clips, args.seed))}
    grids = {"logreg": tuple(args.Cs), "mlp": tuple(args.alphas)}
    out = {}
    if isinstance(data, dict):  # a standard split
        parts = {s: _subsample(d, args.max_clips, args.seed) for s, d in data.items()}
        multilabel = parts["train"].multilabel
        use = [m.spec.default_layer] if multilabel else layers  # MTAT: one layer keeps the 50-tag fits affordable
        per_part = {s: layer_features(m, parts[s].paths, use) for s in parts}
        feats = {l: {s: per_part[s][l] for s in parts} for l in use}
        if multilabel:
            y = {s: parts[s].label_matrix() for s in parts}
        else:
            y = {s: np.array([labels[0] for _, labels in parts[s]]) for s in parts}
        for probe in args.probes:
            out[probe] = split_probe(probe, feats, y, grids[probe], seed=args.seed, hidden=args.mlp_hidden,
                                     multilabel=multilabel)
            out[probe]["n_clips"] = {s: len(parts[s]) for s in parts}
        return out
    ds = _subsample(data, args.max_clips, args.seed)
    feats = layer_features(m, ds.paths, layers)
    y = np.array([labels[0] for _, labels in ds])
    groups = np.arange(len(ds))
    smallest = int(min(np.unique(y, return_counts=True)[1]))
    folds = min(args.folds, smallest)
    inner = min(3, smallest * (folds - 1) // max(folds, 1))  # the inner CV runs on a training part
    if folds < 2 or inner < 2:
        print(f"{m.name} {task}: skipped, the smallest class has {smallest} clip(s): too few for cross-validation")
        return out
    x = feats[m.spec.default_layer]
    for probe in args.probes:
        if probe == "logreg":
            scores = nested_probe(feats, y, groups, folds=folds, seed=args.seed, Cs=tuple(args.Cs), inner_folds=inner)
            scores.pop("folds")
            scores["protocol"] = f"nested {folds}-fold CV"
            pred = key_predictions(x, y, groups, folds, args.seed) if task == "giantsteps-key" else None
        else:
            scores, pred = cv_probe("mlp", x, y, groups, folds=folds, seed=args.seed, param=args.alphas[0],
                                    hidden=args.mlp_hidden)
        if task == "giantsteps-key":
            # out-of-fold predictions from the model's default layer
            scores["mirex_weighted"] = mirex_key_score(list(y), list(pred))
        scores["n_clips"] = len(ds)
        out[probe] = scores
    return out


def _cell(value) -> str:
    return "n/r" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def results_table(results: dict, published=PUBLISHED) -> str:
    """Markdown: for each task and headline metric, our models (one row per probe) and the published
    figures of the same task and metric, with how each was obtained and its source."""
    lines = ["| task | metric | system | probe / how | value | protocol / source |", "|---|---|---|---|---|---|"]
    tasks = list(results) + [t for t, *_ in published if t not in results]
    for task in dict.fromkeys(tasks):
        for metric in HEADLINE.get(task, ()):
            for model_name, by_probe in results.get(task, {}).items():
                for probe, scores in by_probe.items():
                    if metric in scores:
                        lines.append(f"| {task} | {metric} | mirzoo {model_name} | {probe} | {_cell(scores[metric])} | "
                                     f"{scores.get('protocol', '')} |")
            for p_task, p_metric, system, value, how, source in published:
                if (p_task, p_metric) == (task, metric):
                    lines.append(f"| {task} | {metric} | {system} | {how} | {_cell(value)} | {source} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import mirzoo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("mtat", "gtzan", "giantsteps", "ballroom", "nsynth"):
        parser.add_argument(f"--{name}", default=None, help=EXPECTED[name])
    parser.add_argument("--nsynth-split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--nsynth-pitches", type=int, nargs=2, default=[21, 108], metavar=("LOW", "HIGH"),
                        help="MIDI pitches kept for nsynth-pitch (default 21 108, the piano range, as HEAR)")
    parser.add_argument("--models", nargs="+", default=["cnn-tagging", "crnn-tagging", "tcn-music", "random-cnn"])
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=PROBES)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--Cs", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="logistic regression C grid")
    parser.add_argument("--alphas", type=float, nargs="+", default=[1e-3, 1e-1],
                        help="MLP L2 penalty grid (the first value for cross-validated tasks)")
    parser.add_argument("--mlp-hidden", type=int, default=512, help="units of the MLP probe's hidden layer")
    parser.add_argument("--max-clips", type=int, default=0, help="subsample each task (each part) to this many clips "
                        "(0: all)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder of the json/md results")
    args = parser.parse_args(argv)

    tasks = load_tasks(args)
    if not tasks:
        print("no data set present: nothing to run")
        return 0
    results: dict[str, dict] = {}
    for model_name in args.models:
        m = mirzoo.load(model_name)
        layers = [l for l in m.layers if l not in m.heads]  # every embedding layer, as downstream.py
        for task, data in tasks.items():
            by_probe = run_task(m, task, data, args, layers)
            if not by_probe:
                continue
            results.setdefault(task, {})[model_name] = by_probe
            for probe, scores in by_probe.items():
                print(f"{model_name:<16} {task:<18} {probe:<6} " + ", ".join(
                    f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, float)))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = env_name()
    from mirzoo.fileio import write_json_atomic

    write_json_atomic(out / f"standard-{env}.json", {"args": vars(args), "results": results,
                                                     "published": [list(p) for p in PUBLISHED]})
    table = results_table(results)
    (out / f"standard-{env}.md").write_text(table)
    print(table)
    print(f"wrote {out / f'standard-{env}.json'} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
