"""A genre classifier on a GTZAN layout: fine-tune on one part, score on the rest.

    python examples/gtzan_genre.py /data/gtzan [--model cnn-tagging] [--epochs 20] [--test 0.3]

``/data/gtzan`` holds ``genres/<genre>/<genre>.000NN.wav`` (or ``.au``), as the GTZAN
archive unpacks.  This example draws a stratified random split; published GTZAN figures
use the fault-filtered split of Kereliuk, Sturm & Larsen (2015), which avoids the same
artist on both sides -- random splits score higher than it.
"""

import argparse

import numpy as np
from sklearn.model_selection import train_test_split

import mirzoo
from mirzoo.tasks.finetune import evaluate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="GTZAN folder (with genres/<genre>/ folders)")
    parser.add_argument("--model", default="cnn-tagging", help="base model (see 'mirzoo list')")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs of head training")
    parser.add_argument("--test", type=float, default=0.3, help="fraction of clips held out for the test")
    args = parser.parse_args(argv)

    # 1. Read the layout: one label (the genre) per clip.
    gtzan = mirzoo.datasets.load_gtzan(args.root)
    print(gtzan, gtzan.label_counts())

    # 2. A stratified split, seeded so that reruns give the same clips.
    genres = [labels[0] for _, labels in gtzan]
    train_idx, test_idx = train_test_split(np.arange(len(gtzan)), test_size=args.test, stratify=genres, random_state=0)
    train, test = gtzan.subset(train_idx), gtzan.subset(test_idx)

    # 3. Fine-tune a softmax head on the frozen backbone, then score the held-out clips.
    clf = mirzoo.load(args.model).fine_tune(train, epochs=args.epochs, seed=0)
    scores = evaluate(clf, test, confusion=True)
    print(f"test accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f} on {scores['n_clips']} clips")

    # 4. The confusion matrix: rows are the true genres, columns the predicted ones.
    width = max(len("true/pred"), *(len(g) for g in scores["labels"]))
    print(f"{'true/pred':<{width}}" + "".join(f"{g[:5]:>6}" for g in scores["labels"]))
    for genre, row in zip(scores["labels"], scores["confusion_matrix"]):
        print(f"{genre:<{width}}" + "".join(f"{v:>6d}" for v in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
