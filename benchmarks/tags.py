"""Tag ROC-AUC of zoo models on a labelled corpus split, every model on the same clips in one run.

    python benchmarks/tags.py [--data /work/data/heldout-v2] [--split test] [--models cnn-tagging ...]

The check behind "tag ROC-AUC on TimGM6mb not below today's" (issues 15 and 16): a candidate trained
further (``training.distill``, ``training.musical``) is compared with the shipped model it would
replace on clips rendered with a soundfont never used in training.  Each model is scored on its
*own* tag vocabulary (its primary head, ``tags``): the clip's probability of a tag is the mean of the
head over the clip's patches (what ``tag()`` reports), and the score is the macro ROC-AUC (and PR-AUC)
over the vocabulary's tags that are present in some clips and absent in others
(``training.train.tag_metrics``, the same definition as the training runs' validation).  Models with
the same vocabulary are therefore scored on the same tags; the table says how many.

A corpus folder is ``python -m training.corpus build`` output: ``metadata.csv`` with ``path``,
``split`` and ``tags`` columns (``;``-separated).  Candidates are read through the usual
``MIRZOO_MANIFEST`` / ``MIRZOO_WEIGHTS_DIR`` (``tools/eval_candidate.sh``).  Writes
``results/tags-<env>.{json,md}`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(REPO), str(HERE)):  # run as a script: training/ and the sibling benchmarks importable
    if _p not in sys.path:
        sys.path.insert(0, _p)
import mirzoo  # noqa: E402  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)
from mirzoo.fileio import write_json_atomic  # noqa: E402
from training.data import read_metadata  # noqa: E402
from training.train import multi_hot, tag_metrics  # noqa: E402

from downstream import env_name  # noqa: E402  (the results files' environment name, as the other benchmarks)

DEFAULT_MODELS = ("cnn-tagging", "crnn-tagging")


def clip_probabilities(model, paths: list[Path], batch_size: int = 16) -> np.ndarray:
    """``[clips, labels]``: the primary head's mean over each clip's patches."""
    return np.stack([np.asarray(model.predict(str(p), pool="mean", batch_size=batch_size)) for p in paths])


def score_models(folder: Path, split: str, models: list[str], limit: int = 0) -> dict:
    """Per model: ``tag_metrics`` of its clip probabilities against the clips' tags, and the time taken."""
    rows = read_metadata(folder, split)
    if not rows:
        raise mirzoo.ParameterError(f"no clips of split {split!r} in {folder / 'metadata.csv'}")
    rows = rows[:limit] if limit else rows
    paths = [folder / r["path"] for r in rows]
    out = {}
    for name in models:
        t0 = time.time()
        m = mirzoo.load(name)
        vocab = list(m.labels)
        probs = clip_probabilities(m, paths)
        metrics = tag_metrics(multi_hot(rows, vocab), probs, vocab)
        metrics["seconds"] = round(time.time() - t0, 1)
        metrics["weights_sha256"] = m.entry.get("weights", {}).get("sha256")
        out[name] = metrics
    return {"clips": len(rows), "models": out}


def render(report: dict) -> str:
    lines = [f"Tag ROC-AUC on `{report['data']}` ({report['split']} split, {report['clips']} clips); "
             f"{report['env']}, {report['date']}.", "",
             "| model | ROC-AUC (macro) | PR-AUC (macro) | tags evaluated | seconds |", "|---|---|---|---|---|"]
    for name, m in report["models"].items():
        lines.append(f"| {name} | {m['roc_auc_macro']:.4f} | {m['pr_auc_macro']:.4f} | {m['n_tags_evaluated']} | "
                     f"{m['seconds']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/data/heldout-v2", help="corpus folder (metadata.csv)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--limit", type=int, default=0, help="the first N clips only")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    folder = Path(args.data)
    if not (folder / "metadata.csv").is_file():
        parser.error(f"--data {folder}: no metadata.csv there (a `python -m training.corpus build` folder)")
    if args.limit < 0:
        parser.error(f"--limit={args.limit}: expected 0 (all clips) or more")
    res = score_models(folder, args.split, args.models, args.limit)
    report = {"benchmark": "tags", "env": env_name(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "data": str(folder), "split": args.split, **res}
    table = render(report)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"tags-{report['env']}"  # not Path.with_suffix: the name holds dots ("py3.11")
    write_json_atomic(out / f"{stem}.json", report)
    tmp = out / f".{stem}.md.tmp"
    tmp.write_text(table + "\n", encoding="utf-8")
    os.replace(tmp, out / f"{stem}.md")
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
