"""A scikit-learn probe with cross-validation on exported embeddings.

    python examples/sklearn_probe.py my_clips/ [--model cnn-tagging] [--folds 5]

Step 1 exports one pooled embedding per file, as ``mirzoo extract MODEL my_clips/ -o
embeddings.npz --pool mean+std`` would; step 2 fits a logistic regression on them with
stratified k-fold cross-validation.  Labels are the names of the clips' folders.
"""

import argparse
import os
import tempfile

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mirzoo
from mirzoo.batch import extract_files, read_embeddings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="folder with one subfolder of audio files per label")
    parser.add_argument("--model", default="cnn-tagging", help="embedding model (see 'mirzoo list')")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--embeddings", default=None, help="where to write the .npz (default: a temporary file)")
    args = parser.parse_args(argv)

    # 1. Export: mean and standard deviation of the patch embeddings, one row per file.
    with tempfile.TemporaryDirectory() as tmp:
        out = args.embeddings or os.path.join(tmp, "embeddings.npz")
        report = extract_files(args.model, [args.data], out, pool="mean+std")
        print(f"exported {report.written} files to {out} ({len(report.failed)} failed)")
        results, meta = read_embeddings(out)

    # 2. Features and labels: the label of each file is its folder (mirzoo.datasets reads the layout).
    labels = {os.path.abspath(path): names[0] for path, names in mirzoo.datasets.load_folder(args.data)}
    x = np.stack([embeddings[0] for _, embeddings, _ in results])
    y = np.array([labels[os.path.abspath(path)] for path, _, _ in results])
    print(f"{x.shape[0]} clips, {x.shape[1]} features ({meta['model']}, layer {meta['layer']}, pool {meta['pool']})")

    # 3. A linear probe: standardise, then logistic regression; folds keep the class balance.
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=0)
    scores = cross_val_score(probe, x, y, cv=folds, scoring="accuracy")
    print(f"accuracy over {args.folds} folds: {scores.mean():.3f} +/- {scores.std():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
