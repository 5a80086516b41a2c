"""Fine-tune a pretrained model on your own labelled clips, one folder per label.

    python examples/finetune_folder.py my_clips/ -o my-model/ [--model cnn-tagging] [--epochs 20]

``my_clips/`` holds ``<label>/<file>`` (any audio format mirzoo reads; subfolders are
searched).  The same thing from the shell: ``mirzoo fine-tune cnn-tagging my_clips/ -o my-model/``.
"""

import argparse

import mirzoo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="folder with one subfolder of audio files per label")
    parser.add_argument("-o", "--output", default="finetuned-model", help="where to save the model")
    parser.add_argument("--model", default="cnn-tagging", help="base model (see 'mirzoo list')")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs of head training")
    args = parser.parse_args(argv)

    # 1. Load the pretrained backbone (weights are sha256-checked; nothing is downloaded here).
    base = mirzoo.load(args.model)

    # 2. Train a new head on the frozen backbone.  Labels come from the folder names; a clip
    #    with one label gives a softmax head.  With 25+ clips per class a fifth is held out
    #    for early stopping and the validation metrics; pass unfreeze=1 to also train the
    #    top backbone block end to end.
    clf = base.fine_tune(args.data, epochs=args.epochs, seed=0)
    print(f"labels: {clf.labels}")
    print(f"training: {clf.entry['training']['data']}")
    print(f"validation: {clf.entry['metrics'].get('validation', 'none (too few clips per class)')}")

    # 3. Save it as a folder; mirzoo.load() reads it back like any zoo model.
    clf.save(args.output, overwrite=True)
    model = mirzoo.load(args.output)

    # 4. Use it: the most probable label of the first clip of each class.
    dataset = mirzoo.datasets.load_folder(args.data)
    for label in dataset.classes:
        path = next(p for p, labels in dataset if labels == [label])
        best, probability = model.tag(path, top_k=1)[0]
        print(f"{path}: {best} ({probability:.2f}), folder says {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
