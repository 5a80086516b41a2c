#!/usr/bin/env python
"""Small-data fine-tuning benchmark: 50 clips of 10 s to a classifier, on the user path.

    python benchmarks/finetune.py                      # 3 split seeds, all methods (~15 min on 2 cores)
    python benchmarks/finetune.py --seeds 0 --no-unfreeze
    python benchmarks/finetune.py --models cnn-tagging --train-clips 100
    python benchmarks/finetune.py --epochs 50 --validation 0 --out /tmp/ft   # longer head training, all 50 clips
    python benchmarks/finetune.py --real /work/data/real       # real recordings: which soundtrack (issue 16)

Data: the TimGM6mb renders of test-split pieces in ``--data`` (see ``downstream.py``),
task *instrument family* (clips with exactly one ``instrument:`` tag), restricted to the
``--classes`` (5) most frequent families.  For each split seed:

* pieces (``piece_id``) are shuffled and split into a training and an evaluation side, so
  no piece is on both sides (clips of one piece rendered with different instruments
  included);
* training set: ``--train-clips`` (50) clips of ``--clip-seconds`` (10 s), stratified
  (10 per class), one random 10 s crop from each of 10 different training-side clips per
  class;
* evaluation set: non-overlapping 10 s segments of every evaluation-side clip of those
  classes, balanced by taking the same number per class (the smallest class's count,
  at most ``--test-per-class``), segments spread over clips first;
* both are written as folder-per-label FLAC datasets in a temporary directory, so the
  benchmark runs exactly ``m.fine_tune("train/", epochs=10, seed=s)`` and
  ``clf.evaluate("test/")``.

Methods, each on the same split:

* ``<model> head``: ``fine_tune`` with the backbone frozen (defaults otherwise: 20 %
  of the 50 clips held out for early stopping, patience 5);
* ``<model> unfreeze=1``: the same plus ``unfreeze=1`` (top block trained end to end for
  ``unfreeze_epochs`` = 5 epochs); the blocks it actually trained are recorded;
* ``<model> probe``: mean+std pooled embeddings -> ``StandardScaler`` +
  ``LogisticRegression`` on all 50 clips (as in ``downstream.py``), a reference for the head;
* ``mfcc``: 20 MFCCs + deltas, mean+std over time -> the same logistic regression.

With ``--real`` (a ``python -m training.real build`` folder) the task is instead *which game
soundtrack* (Debian package) a 10-s clip of real music comes from, on its **test** split (the
tracks no model trained on), the ``--classes`` packages with the most clips; the unit kept on one
side of the split is the track group instead of the piece.  Results go to
``finetune-real-<env>.{json,md}``.

Models: ``cnn-tagging``, ``crnn-tagging`` (pretrained) and ``random-cnn`` (untrained: the
no-pretraining baseline).  Times are wall-clock seconds of the whole call on the shared
machine: ``fine_tune`` includes copying the backbone, decoding, embedding extraction, head
training and the validation metrics; model loading is timed separately.  Chance level is
1/classes (the evaluation set is balanced).  Results go to
``benchmarks/results/finetune-<env>.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(REPO), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)

from downstream import env_name, mfcc_features  # noqa: E402

SR = 16000


def instrument_clips(data: Path) -> list[dict]:
    """Rows of ``metadata.csv`` with exactly one ``instrument:`` tag, with ``label`` and ``abspath``."""
    with open(data / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        inst = [t.split(":", 1)[1] for t in r["tags"].split(";") if t.startswith("instrument:")]
        if len(inst) == 1:
            out.append(dict(r, label=inst[0], abspath=str(data / r["path"])))
    return out


def real_clips(data: Path, split: str = "test") -> list[dict]:
    """The ``split`` clips of a ``training.real`` build, labelled by package, grouped by track group."""
    with open(data / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    return [dict(r, label=r["package"], piece_id=f"{r['package']}/{r['group']}", clip_id=r["sha256"][:16],
                 abspath=str(data / r["path"])) for r in rows]


def make_split(clips: list[dict], classes: list[str], train_clips: int, seed: int):
    """Piece-disjoint training/evaluation clips: ``(train_rows, test_rows)``.

    Pieces are visited in a seeded random order; a piece goes to the training side while
    one of its clips' classes still needs training clips, otherwise to the evaluation side.
    """
    rng = np.random.default_rng(seed)
    per_class = train_clips // len(classes)
    by_piece: dict[str, list[dict]] = {}
    for c in clips:
        if c["label"] in classes:
            by_piece.setdefault(c["piece_id"], []).append(c)
    pieces = sorted(by_piece)
    order = rng.permutation(len(pieces))
    have = {c: 0 for c in classes}
    train, test = [], []
    for k in order:
        rows = by_piece[pieces[k]]
        if any(have[r["label"]] < per_class for r in rows):
            for r in rows:
                if have[r["label"]] < per_class:
                    train.append(r)
                    have[r["label"]] += 1
            # the piece's other clips are used nowhere (no piece on both sides)
        else:
            test.extend(rows)
    short = {c: n for c, n in have.items() if n < per_class}
    if short:
        raise SystemExit(f"not enough clips for {per_class} training clips per class: {short}")
    return train, test


def write_sets(train, test, classes, root: Path, clip_seconds: float, test_per_class: int, seed: int):
    """Write ``root/train/<label>/*.flac`` and ``root/test/<label>/*.flac``; returns a description."""
    import soundfile as sf

    from mirzoo.audio import load_audio

    rng = np.random.default_rng(seed + 1000)
    n = int(round(clip_seconds * SR))
    info = {"train": {c: 0 for c in classes}, "test": {c: 0 for c in classes}, "train_pieces": set(), "test_pieces": set()}
    for r in train:
        y = load_audio(r["abspath"], SR)
        start = int(rng.integers(0, max(1, y.shape[0] - n + 1)))
        seg = y[start : start + n]
        if seg.shape[0] < n:
            seg = np.pad(seg, (0, n - seg.shape[0]))
        d = root / "train" / r["label"]
        d.mkdir(parents=True, exist_ok=True)
        sf.write(d / f"{r['clip_id']}-{start}.flac", seg, SR, subtype="PCM_16")
        info["train"][r["label"]] += 1
        info["train_pieces"].add(r["piece_id"])
    # evaluation: non-overlapping full-length segments; round-robin over clips per class
    segments: dict[str, list[list]] = {c: [] for c in classes}
    for r in test:
        y = load_audio(r["abspath"], SR)
        segs = [(r, y[s : s + n], s) for s in range(0, y.shape[0] - n + 1, n)]
        if segs:
            segments[r["label"]].append(segs)
    available = {c: sum(len(s) for s in v) for c, v in segments.items()}
    count = min(test_per_class, min(available.values()))
    for c in classes:
        lists = [segments[c][i] for i in rng.permutation(len(segments[c]))]
        chosen = []
        depth = 0
        while len(chosen) < count:
            chosen.extend(l[depth] for l in lists if len(l) > depth and len(chosen) < count)
            depth += 1
        d = root / "test" / c
        d.mkdir(parents=True, exist_ok=True)
        for r, seg, s in chosen:
            sf.write(d / f"{r['clip_id']}-{s}.flac", seg, SR, subtype="PCM_16")
            info["test_pieces"].add(r["piece_id"])
        info["test"][c] = len(chosen)
    assert not info["train_pieces"] & info["test_pieces"]
    info["test_clips"] = len({r["clip_id"] for r in test if r["label"] in classes})
    info["train_pieces"], info["test_pieces"] = len(info["train_pieces"]), len(info["test_pieces"])
    return info


def folder_files(folder: Path) -> tuple[list[str], list[str]]:
    paths, labels = [], []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(d.glob("*.flac")):
            paths.append(str(f))
            labels.append(d.name)
    return paths, labels


def logreg_scores(x_train, y_train, x_test, y_test) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    clf.fit(x_train, y_train)
    pred = clf.predict(x_test)
    return {"accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0))}


def run_seed(seed: int, args, clips, classes, models: dict, records: list, splits: dict):
    tmp = Path(tempfile.mkdtemp(prefix=f"mirzoo-finetune-s{seed}-"))
    try:
        train, test = make_split(clips, classes, args.train_clips, seed)
        t0 = time.perf_counter()
        info = write_sets(train, test, classes, tmp, args.clip_seconds, args.test_per_class, seed)
        info["write_seconds"] = time.perf_counter() - t0
        splits[seed] = info
        print(f"seed {seed}: train {sum(info['train'].values())} clips from {info['train_pieces']} pieces, "
              f"test {sum(info['test'].values())} segments ({info['test']}) from {info['test_pieces']} pieces",
              flush=True)
        train_dir, test_dir = str(tmp / "train"), str(tmp / "test")
        train_paths, train_labels = folder_files(tmp / "train")
        test_paths, test_labels = folder_files(tmp / "test")

        def record(method, variant, model, metrics, fit_s, eval_s, extra=None):
            rec = {"seed": seed, "method": method, "variant": variant, "model": model,
                   "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                   "fit_seconds": fit_s, "eval_seconds": eval_s, **(extra or {})}
            records.append(rec)
            print(f"  {method:28s} acc {100 * rec['accuracy']:5.1f}  macro-F1 {100 * rec['macro_f1']:5.1f}  "
                  f"fit {fit_s:6.1f} s  eval {eval_s:5.1f} s", flush=True)

        # MFCC + logistic regression on the same files
        t0 = time.perf_counter()
        x_tr = mfcc_features(train_paths)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        x_te = mfcc_features(test_paths)
        feat_te = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = logreg_scores(x_tr, train_labels, x_te, test_labels)
        lr_s = time.perf_counter() - t0
        record("mfcc + logreg", "mfcc", "-", scores, fit_s + lr_s, feat_te)

        for name, m in models.items():
            variants = [("head", {}, False)]
            if args.unfreeze:
                variants.append((f"unfreeze={args.unfreeze}", {"unfreeze": args.unfreeze,
                                                               "unfreeze_epochs": args.unfreeze_epochs}, False))
            while variants:
                variant, kwargs, retry = variants.pop(0)
                t0 = time.perf_counter()
                if args.validation is not None:
                    kwargs = dict(kwargs, validation=args.validation)
                clf = m.fine_tune(train_dir, epochs=args.epochs, seed=seed, **kwargs)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                ev = clf.evaluate(test_dir)
                eval_s = time.perf_counter() - t0
                hist = clf.history
                extra = {
                    "head_epochs": len(hist["head"]["loss"]),
                    "validation": clf.entry["metrics"].get("validation"),
                    "n_eval": ev["n_clips"],
                }
                if "unfreeze" in hist:
                    extra["unfrozen_blocks"] = hist["unfreeze"]["blocks"]
                    extra["unfreeze_epochs_run"] = len(hist["unfreeze"]["loss"])
                record(f"{name} {variant}", variant, name, ev, fit_s, eval_s, extra)
                if "unfreeze" in hist:
                    blocks = hist["unfreeze"]["blocks"]
                    print(f"    unfrozen: {blocks}", flush=True)
                    # fine_tune counts the base model's own head (e.g. 'tags') as the top "block", so
                    # unfreeze=N trains only N-1 backbone blocks; also measure N+1 (the top backbone block)
                    if m.head_output and m.head_output.split("_")[0] in blocks and not retry:
                        n = kwargs["unfreeze"] + 1
                        variants.append((f"unfreeze={n}", dict(kwargs, unfreeze=n), True))
                del clf
                gc.collect()
            if args.probe:
                t0 = time.perf_counter()
                e_tr = np.stack(m.extract(train_paths, pool="mean+std"))
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                e_te = np.stack(m.extract(test_paths, pool="mean+std"))
                eval_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                scores = logreg_scores(e_tr, train_labels, e_te, test_labels)
                record(f"{name} probe", "probe", name, scores, fit_s + time.perf_counter() - t0, eval_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarise(records: list) -> list[dict]:
    rows = []
    for method in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == method]
        row = {"method": method, "model": rs[0]["model"], "variant": rs[0]["variant"], "seeds": len(rs)}
        for k in ("accuracy", "macro_f1", "fit_seconds", "eval_seconds"):
            v = np.array([r[k] for r in rs], dtype=float)
            row[k] = float(v.mean())
            row[k + "_std"] = float(v.std())
        if "unfrozen_blocks" in rs[0]:
            row["unfrozen_blocks"] = rs[0]["unfrozen_blocks"]
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/data/heldout", help="TimGM6mb corpus folder")
    parser.add_argument("--real", default=None,
                        help="training.real build folder: the soundtrack task on its test split instead")
    parser.add_argument("--models", nargs="*", default=["cnn-tagging", "crnn-tagging", "random-cnn"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="split (and training) seeds")
    parser.add_argument("--classes", type=int, default=5, help="most frequent instrument families kept")
    parser.add_argument("--train-clips", type=int, default=50)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--test-per-class", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--validation", type=float, default=None,
                        help="fine_tune's validation fraction (default: not passed, i.e. 0.2)")
    parser.add_argument("--unfreeze", type=int, default=1, help="top blocks to unfreeze (0: skip that variant)")
    parser.add_argument("--no-unfreeze", dest="unfreeze", action="store_const", const=0)
    parser.add_argument("--unfreeze-epochs", type=int, default=5)
    parser.add_argument("--no-probe", dest="probe", action="store_false", help="skip the logistic-regression probes")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for finetune-<env>.{json,md}")
    args = parser.parse_args(argv)

    import keras

    from mirzoo.fileio import atomic_file, write_json_atomic

    data = Path(args.real or args.data)
    task = "soundtrack" if args.real else "instrument"
    clips = real_clips(data) if args.real else instrument_clips(data)
    counts: dict[str, int] = {}
    for c in clips:
        counts[c["label"]] = counts.get(c["label"], 0) + 1
    classes = sorted(sorted(counts, key=lambda c: (-counts[c], c))[: args.classes])
    print(f"{task} task: {len(clips)} clips; classes {classes} "
          f"({', '.join(str(counts[c]) for c in classes)} clips); backend {keras.backend.backend()}", flush=True)

    t_start = time.perf_counter()
    models, load_seconds = {}, {}
    for name in args.models:
        t0 = time.perf_counter()
        models[name] = mirzoo.load(name)
        load_seconds[name] = time.perf_counter() - t0
    records: list = []
    splits: dict = {}
    for seed in args.seeds:
        run_seed(seed, args, clips, classes, models, records, splits)
    total = time.perf_counter() - t_start

    summary = summarise(records)
    chance = 1.0 / len(classes)
    env = env_name()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "env": env, "data": str(data), "task": task, "classes": classes,
        "train_clips": args.train_clips, "clip_seconds": args.clip_seconds, "epochs": args.epochs,
        "validation": args.validation,
        "unfreeze": args.unfreeze, "unfreeze_epochs": args.unfreeze_epochs, "seeds": args.seeds,
        "chance_accuracy": chance, "load_seconds": load_seconds, "total_seconds": total,
        "pretrained": {n: m.pretrained for n, m in models.items()},
        "splits": {str(k): v for k, v in splits.items()}, "summary": summary, "runs": records,
        "loadavg": list(os.getloadavg()),
    }
    stem = f"finetune-real-{env}" if args.real else f"finetune-{env}"
    write_json_atomic(out / f"{stem}.json", payload)

    def pm(row, key, scale=100.0, fmt="{:.1f}"):
        return f"{fmt.format(scale * row[key])} ± {fmt.format(scale * row[key + '_std'])}"

    lines = ["| method | weights | trained | fit_s | eval_s | accuracy % | macro-F1 % |", "|---|---|---|---|---|---|---|"]
    for row in summary:
        w = "-" if row["model"] == "-" else ("pretrained" if models[row["model"]].pretrained else "random")
        trained = {"mfcc": "logreg on MFCC stats", "probe": "logreg on mean+std embeddings",
                   "head": "head (frozen backbone)"}.get(row["variant"], row["variant"])
        if row.get("unfrozen_blocks"):
            trained += " (" + ", ".join(row["unfrozen_blocks"]) + ")"
        lines.append(f"| {row['method']} | {w} | {trained} | {pm(row, 'fit_seconds', 1.0)} | "
                     f"{pm(row, 'eval_seconds', 1.0)} | {pm(row, 'accuracy')} | {pm(row, 'macro_f1')} |")
    lines.append(f"| chance | - | - | - | - | {100 * chance:.1f} | {100 * chance:.1f} |")
    table = "\n".join(lines)
    val = "" if args.validation is None else f", validation={args.validation:g}"
    n_test = sorted({sum(s["test"].values()) for s in splits.values()})
    header = (
        (f"Fine-tuning on {args.train_clips} clips of {args.clip_seconds:g} s ({len(classes)} game soundtracks: "
         f"{', '.join(classes)}; real recordings of the test split of {data}), evaluated on "
         f"{'/'.join(map(str, n_test))} balanced 10 s segments of other track groups. "
         if args.real else
         f"Fine-tuning on {args.train_clips} clips of {args.clip_seconds:g} s ({len(classes)} instrument families: "
         f"{', '.join(classes)}; TimGM6mb renders of test-split pieces), evaluated on {'/'.join(map(str, n_test))} "
         f"balanced 10 s segments of other pieces. ") +
        f"Mean ± std over split seeds {args.seeds}; "
        f"`fine_tune(folder, epochs={args.epochs}{val})`, wall-clock seconds on {env} "
        f"(model load: {', '.join(f'{k} {v:.1f} s' for k, v in load_seconds.items())}; whole run {total / 60:.1f} min)."
    )
    with atomic_file(out / f"{stem}.md") as tmp:
        Path(tmp).write_text(header + "\n\n" + table + "\n", encoding="utf-8")
    print()
    print(header)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
