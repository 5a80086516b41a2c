"""Standard MIR benchmarks on the data sets a user holds: frozen embeddings + a shallow probe.

    python benchmarks/standard.py --mtat /data/mtat --gtzan /data/gtzan \\
        --giantsteps /data/giantsteps-key-dataset --ballroom /data/ballroom --nsynth /data/nsynth \\
        [--models cnn-tagging crnn-tagging random-cnn] [--folds 5] [--max-clips 2000]

SKELETON (issue 18 part 2, first cut).  What it does now:
  * every data set not given (or not found) is skipped with a line saying where it is expected;
  * each zoo model's mean+std pooled embeddings (every embedding layer) feed the nested,
    grouped logistic-regression probe of ``benchmarks/downstream.py`` (``nested_probe``:
    layer and ``C`` chosen by an inner CV on the training part of each outer fold);
  * tasks: GTZAN genre, GiantSteps key (accuracy, balanced accuracy and the MIREX weighted key
    score of out-of-fold predictions), Ballroom style, NSynth instrument family and pitch,
    MagnaTagATune top-50 tagging (ROC-AUC / PR-AUC macro, one logistic regression per tag,
    trained on the 0-b folders and scored on d-f: the split of Dieleman & Schrauwen 2014).
What it does NOT do yet (see the report of issue 18): the MLP probe, the GTZAN fault-filtered
split (folds here are random, grouped by file), beat tracking F-measure on Ballroom/GTZAN, the
NSynth pitch range restriction used by HEAR, and the table of published musicnn / MERT figures.

Results go to ``benchmarks/results/standard-<env>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from downstream import env_name, layer_features, nested_probe  # noqa: E402

#: Where each data set is expected (printed when it is absent).
EXPECTED = {
    "mtat": "MagnaTagATune: annotations_final.csv beside the mp3 folders 0/ ... f/",
    "gtzan": "GTZAN: genres/<genre>/<genre>.000NN.wav (or .au)",
    "giantsteps": "GiantSteps key: annotations/key/<id>.LOFI.key and audio/<id>.LOFI.mp3 "
                  "(github.com/GiantSteps/giantsteps-key-dataset, after audio_dl.sh)",
    "ballroom": "Ballroom: BallroomData/<Style>/*.wav (+ BallroomAnnotations/*.beats from "
                "github.com/CPJKU/BallroomAnnotations, for the beat task)",
    "nsynth": "NSynth: nsynth-test/examples.json and nsynth-test/audio/*.wav",
}


def mirex_key_score(reference: list[str], estimate: list[str]) -> float:
    """Mean MIREX weighted key score (``mir_eval.key.weighted_score``: 1 same key, 0.5 the fifth
    above in the same mode, 0.3 relative major/minor, 0.2 parallel, else 0)."""
    import mir_eval.key

    if not reference:
        return float("nan")
    return float(np.mean([mir_eval.key.weighted_score(r, e) for r, e in zip(reference, estimate)]))


def key_predictions(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold key predictions of a standardised logistic regression (C=0.1), grouped folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    return cross_val_predict(probe, x, y, groups=groups, cv=cv)


def tagging_scores(x_train, y_train, x_test, y_test) -> dict:
    """Macro ROC-AUC / PR-AUC of one logistic regression per tag (tags with both classes in both parts)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    a, b = scaler.transform(x_train), scaler.transform(x_test)
    roc, pr = [], []
    for j in range(y_train.shape[1]):
        if len(set(y_train[:, j])) < 2 or len(set(y_test[:, j])) < 2:
            continue
        p = LogisticRegression(max_iter=2000, C=0.1).fit(a, y_train[:, j]).predict_proba(b)[:, 1]
        roc.append(roc_auc_score(y_test[:, j], p))
        pr.append(average_precision_score(y_test[:, j], p))
    return {"roc_auc_macro": float(np.mean(roc)) if roc else float("nan"),
            "pr_auc_macro": float(np.mean(pr)) if pr else float("nan"), "tags_scored": len(roc)}


def load_tasks(args) -> dict:
    """``{task: (dataset, groups)}`` for every data set present; prints a line for each absent one."""
    from mirzoo import datasets

    present = {}
    sources = {
        "gtzan": lambda p: {"gtzan-genre": datasets.load_gtzan(p)},
        "giantsteps": lambda p: {"giantsteps-key": datasets.load_giantsteps_key(p)},
        "ballroom": lambda p: {"ballroom-style": datasets.load_ballroom(p, beats=False)},
        "nsynth": lambda p: {"nsynth-instrument": datasets.load_nsynth(p, split=args.nsynth_split),
                             "nsynth-pitch": datasets.load_nsynth(p, split=args.nsynth_split, target="pitch")},
    }
    for name, load in sources.items():
        path = getattr(args, name)
        if path is None or not Path(path).exists():
            where = "not given" if path is None else f"'{path}' not found"
            print(f"skipped {name} ({where}): pass --{name} PATH; expected {EXPECTED[name]}")
            continue
        for task, ds in load(path).items():
            present[task] = ds
    if args.mtat is None or not Path(args.mtat).exists():
        where = "not given" if args.mtat is None else f"'{args.mtat}' not found"
        print(f"skipped mtat ({where}): pass --mtat PATH; expected {EXPECTED['mtat']}")
    else:
        present["mtat-tagging"] = (datasets.load_magnatagatune(args.mtat, split="train", drop_untagged=True),
                                   datasets.load_magnatagatune(args.mtat, split="test", drop_untagged=True))
    print("skipped beats (Ballroom/GTZAN F-measure): not implemented in this skeleton")
    return present


def _subsample(ds, limit: int, seed: int):
    if limit and len(ds) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(ds), limit, replace=False))
        return ds.subset(keep)
    return ds


def main(argv=None) -> int:
    import mirzoo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("mtat", "gtzan", "giantsteps", "ballroom", "nsynth"):
        parser.add_argument(f"--{name}", default=None, help=EXPECTED[name])
    parser.add_argument("--nsynth-split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--models", nargs="+", default=["cnn-tagging", "crnn-tagging", "random-cnn"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--Cs", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--max-clips", type=int, default=0, help="subsample each task to this many clips (0: all)")
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
            if task == "mtat-tagging":
                train, test = (_subsample(d, args.max_clips, args.seed) for d in data)
                layer = m.spec.default_layer
                xa = layer_features(m, train.paths, [layer])[layer]
                xb = layer_features(m, test.paths, [layer])[layer]
                scores = tagging_scores(xa, train.label_matrix(), xb, test.label_matrix())
            else:
                ds = _subsample(data, args.max_clips, args.seed)
                feats = layer_features(m, ds.paths, layers)
                y = np.array([labels[0] for _, labels in ds])
                groups = np.arange(len(ds))  # TODO: artist / fault-filtered groups where the data set has them
                smallest = int(min(np.unique(y, return_counts=True)[1]))
                folds = min(args.folds, smallest)
                inner = min(3, smallest * (folds - 1) // max(folds, 1))  # the inner CV runs on a training part
                if folds < 2 or inner < 2:
                    print(f"{model_name} {task}: skipped, the smallest class has {smallest} clip(s): too few for "
                          f"nested cross-validation")
                    continue
                scores = nested_probe(feats, y, groups, folds=folds, seed=args.seed, Cs=tuple(args.Cs),
                                      inner_folds=inner)
                scores.pop("folds")
                if task == "giantsteps-key":
                    # out-of-fold predictions from the model's default layer (no layer choice here)
                    pred = key_predictions(feats[m.spec.default_layer], y, groups, folds, args.seed)
                    scores["mirex_weighted"] = mirex_key_score(list(y), list(pred))
            scores["n_clips"] = len(data[1]) if isinstance(data, tuple) else len(data)
            results.setdefault(task, {})[model_name] = scores
            print(f"{model_name:<16} {task:<18} " + ", ".join(
                f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, float)))

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    env = env_name()
    (out / f"standard-{env}.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    lines = ["| task | model | scores |", "|---|---|---|"]
    for task, by_model in results.items():
        for model_name, scores in by_model.items():
            cells = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, float))
            lines.append(f"| {task} | {model_name} | {cells} |")
    (out / f"standard-{env}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / f'standard-{env}.json'} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
