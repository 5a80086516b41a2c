"""Small-data transfer learning: a new head on a frozen backbone, then optional unfreezing.

:func:`fine_tune` (also ``Extractor.fine_tune``) takes labelled audio in any of the
forms users have -- a folder per label, a CSV of ``path,label[;label...]``, a list of
``(audio, label)`` pairs (paths or arrays with ``sr``), a :class:`mirzoo.datasets.Dataset`
or a ``tf.data.Dataset`` of ``(waveform, label)`` -- and returns an
:class:`~mirzoo.extractor.Extractor` whose head ``classes`` predicts the new labels.

Stage 1 (always): the backbone is frozen, so each patch's embedding is computed once and a
dense head (softmax for single-label, sigmoid for multi-label data) is trained on the
cached embeddings, every patch labelled with its clip's labels, with class weights
against imbalance, a validation split and early stopping.  This takes seconds.

Stage 2 (``unfreeze=N > 0``): the top ``N`` trainable blocks of the backbone and the head
are trained end to end on waveform patches with a learning rate ``unfreeze_lr``.

The pretrained model is never modified: fine-tuning works on a fresh copy, and weight
files on disk are only read.
"""

from __future__ import annotations

import logging
import os
from numbers import Integral
from typing import Any, Optional, Sequence

import keras
import numpy as np

from mirzoo._checks import valid_int
from mirzoo.datasets import Dataset, load_dataset
from mirzoo.errors import ParameterError
from mirzoo.inference.runner import Runner
from mirzoo.spec import DERIVED_LAYERS

__all__ = ["fine_tune", "evaluate", "resolve_dataset", "label_list"]

log = logging.getLogger("mirzoo.tasks.finetune")


def _is_tf_dataset(obj) -> bool:
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "as_numpy_iterator")


def label_list(y, index: int = 0) -> list[str]:
    """The labels of one example as strings: a label (str or int) or a sequence of them."""
    if isinstance(y, (str, Integral, np.integer)) and not isinstance(y, bool):
        return [str(y)]
    if isinstance(y, (list, tuple, np.ndarray)) and all(
        isinstance(v, (str, Integral, np.integer)) and not isinstance(v, bool) for v in y
    ):
        return [str(v) for v in y]
    raise ParameterError(
        f"label of data[{index}] is {y!r}: expected a label (str or int) or a list of labels"
    )


def resolve_dataset(data, sr: Optional[int] = None, classes: Optional[Sequence[str]] = None):
    """Normalise user data to ``(inputs, labels, classes, multilabel)``.

    ``inputs`` are paths or 1-D/2-D arrays; ``labels`` lists of str per input.
    """
    if _is_tf_dataset(data):
        inputs, labels = [], []
        for x, y in data.as_numpy_iterator():
            inputs.append(np.asarray(x))
            y = np.asarray(y)
            if y.ndim == 0:
                labels.append([y.item().decode() if isinstance(y.item(), bytes) else str(y.item())])
            elif classes is not None and y.shape[-1] == len(classes) and y.dtype.kind in "fiub":
                labels.append([c for c, v in zip(classes, y) if v > 0.5])
            else:
                labels.append([v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()])
        if not inputs:
            raise ParameterError("the tf.data.Dataset is empty: expected (waveform, label) elements")
        if sr is None:
            raise ParameterError("sr=None: a tf.data.Dataset of waveforms needs sr=<Hz>")
    elif isinstance(data, (list, tuple)) and data and isinstance(data[0], (list, tuple)) and len(data[0]) == 2 \
            and isinstance(data[0][0], np.ndarray):
        inputs = [np.asarray(x) for x, _ in data]
        labels = [label_list(y, i) for i, (_, y) in enumerate(data)]
        if sr is None:
            raise ParameterError("sr=None: a list of (array, label) pairs needs sr=<Hz>")
    else:
        if isinstance(data, (list, tuple)):
            for i, pair in enumerate(data):
                x = pair[0] if isinstance(pair, (list, tuple)) and len(pair) == 2 else None
                if not isinstance(x, (str, os.PathLike, np.ndarray)):
                    raise ParameterError(
                        f"data[{i}] = {type(pair).__name__} with audio of type {type(x).__name__}: expected an "
                        f"(audio, label) pair with a file path or a numpy array (np.asarray(...) for a list of numbers)"
                    )
        ds = data if isinstance(data, Dataset) else load_dataset(data)
        inputs = [p for p, _ in ds.items]
        labels = [list(l) for _, l in ds.items]
        if classes is None:
            classes = ds.classes
    numeric = all(l.lstrip("-").isdigit() for ls in labels for l in ls)  # integer labels: 2 before 10
    seen = sorted({l for ls in labels for l in ls}, key=(lambda l: int(l)) if numeric else None)
    classes = [str(c) for c in classes] if classes is not None else seen
    unknown = sorted(set(seen) - set(classes))
    if unknown:
        raise ParameterError(f"labels {unknown} are not among the classes {classes}")
    if len(classes) < 2:
        raise ParameterError(f"fine-tuning needs at least 2 classes, got {classes}")
    multilabel = any(len(l) != 1 for l in labels)
    return inputs, labels, classes, multilabel


def _targets(labels, classes) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(labels), len(classes)), np.float32)
    for i, ls in enumerate(labels):
        for l in ls:
            y[i, index[l]] = 1.0
    return y


def _split(n: int, labels: list, validation: float, rng: np.random.Generator):
    """Stratified (by first label) train/validation indices."""
    if validation <= 0 or n < 4:
        return np.arange(n), np.zeros(0, dtype=int)
    groups: dict[str, list[int]] = {}
    for i, ls in enumerate(labels):
        groups.setdefault(ls[0] if ls else "", []).append(i)
    val = []
    for members in groups.values():
        members = list(rng.permutation(members))
        k = int(round(len(members) * validation))
        if len(members) >= 2:
            val.extend(members[: max(1, k)])
    val = np.array(sorted(val), dtype=int)
    train = np.array(sorted(set(range(n)) - set(val.tolist())), dtype=int)
    return train, val


def fine_tune(
    base,
    data,
    *,
    sr: Optional[int] = None,
    epochs: int = 20,
    layer: Optional[str] = None,
    validation: Optional[float] = None,
    patience: int = 5,
    learning_rate: float = 1e-2,
    batch_size: int = 32,
    class_weight: bool = True,
    unfreeze: int = 0,
    unfreeze_epochs: int = 5,
    unfreeze_lr: float = 1e-4,
    dropout: float = 0.2,
    seed: int = 0,
    progress: bool = False,
    classes: Optional[Sequence[str]] = None,
    multilabel: Optional[bool] = None,
):
    """Train a classifier on top of ``base`` (an Extractor or a model name).

    Parameters
    ----------
    data : folder, CSV path, Dataset, list of (audio, label) pairs, or tf.data.Dataset
        Labelled audio.  Single-label when every clip has exactly one label.
    sr : int, optional
        Sample rate of array inputs.
    epochs : int > 0
        Maximum epochs of head training (early stopping on the validation loss).
    layer : str, optional
        Backbone layer whose patch embeddings feed the head (default: the model's
        embedding layer).
    validation : float in [0, 0.5], optional
        Fraction of clips held out (stratified) for early stopping and metrics.  Default
        (None): 0.2 when every class has at least 25 clips, else 0 -- on a few clips per
        class a validation fold is too small to stop on and costs a fifth of the data
        (50 clips: 74 % with 0.2 vs 80 % with 0, ``benchmarks/finetune.py``).
    learning_rate : float
        Adam step size of the head (a linear layer on standardised embeddings).  The
        default 1e-2 converges within ~10 epochs even on 50 clips (a few steps per epoch);
        1e-3 left that head underfitted (65 % vs 80 % on ``benchmarks/finetune.py``).
    unfreeze_lr : float
        Step size while the top blocks train end to end (kept small: pretrained weights).
    unfreeze : int >= 0
        Number of top backbone blocks to train end to end after the head (0: none).
    class_weight : bool
        Weight classes inversely to their frequency (single-label data).
    multilabel : bool, optional
        True: a sigmoid head (independent labels) even when every clip has one label;
        False: a softmax head, and an error if a clip has other than one label.  Default
        (None): follow the data.

    Returns
    -------
    Extractor
        With ``predict``, ``tag``, ``extract`` and ``evaluate``; ``.save(dir)`` writes a
        folder that ``mirzoo.load(dir)`` reads back.  ``.history`` holds the training log.
    """
    if not isinstance(base, Runner):
        raise ParameterError(f"base must be a mirzoo Extractor (from mirzoo.load), got {type(base).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        valid_int(name, value)
    if validation is not None and (isinstance(validation, bool) or not 0.0 <= validation <= 0.5):
        raise ParameterError(f"validation={validation!r} must lie in [0, 0.5] (or None for automatic)")
    valid_int("unfreeze", unfreeze, minimum=0)
    layer_name, keys = base.resolve_layers(layer)
    if layer_name == "all" or len(keys) != 1:
        raise ParameterError("fine_tune needs a single embedding layer, not layer='all'")
    feature = keys[0]
    if feature in DERIVED_LAYERS:
        raise ParameterError(f"layer={feature!r} is computed after the network from its outputs (beat tracking, not "
                             f"a network layer), so no classifier can be trained through it; pick a network "
                             f"layer such as {base.default_layer!r}")

    if multilabel is not None and not isinstance(multilabel, bool):
        raise ParameterError(f"multilabel={multilabel!r}: expected True, False or None")
    inputs, labels, classes, seen_multilabel = resolve_dataset(data, sr=sr, classes=classes)
    if multilabel is False and seen_multilabel:
        odd = next(i for i, l in enumerate(labels) if len(l) != 1)
        where = repr(inputs[odd]) if isinstance(inputs[odd], str) else f"#{odd}"
        raise ParameterError(f"multilabel=False but clip {where} has labels {labels[odd]}: a single-label "
                             f"head needs exactly one label per clip")
    multilabel = seen_multilabel if multilabel is None else multilabel
    y_clip = _targets(labels, classes)
    if validation is None:
        validation = 0.2 if y_clip.sum(axis=0).min() >= 25 else 0.0
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    train_idx, val_idx = _split(len(inputs), labels, validation, rng)

    # a fresh copy of the backbone: the (cached) pretrained model is never touched
    model = keras.models.clone_model(base.model)
    model.set_weights(base.model.get_weights())
    # the same class as ``base`` (an Extractor): built by its type, so this layer needs no upward import
    work = type(base)(model, dict(base.entry, name=base.name), source=base.source)

    # stage 1: cache patch embeddings once, train the head on them
    embeddings = work.extract(inputs, sr, layer=feature, progress=progress)
    if not isinstance(embeddings, list):
        embeddings = [embeddings]
    dim = embeddings[0].embeddings.shape[1]

    def patches(indices):
        if len(indices) == 0:
            return np.zeros((0, dim), np.float32), np.zeros((0, len(classes)), np.float32)
        x = np.concatenate([embeddings[i].embeddings for i in indices])
        y = np.concatenate([np.repeat(y_clip[i : i + 1], len(embeddings[i]), axis=0) for i in indices])
        return x, y

    x_train, y_train = patches(train_idx)
    x_val, y_val = patches(val_idx)
    activation = "sigmoid" if multilabel else "softmax"
    head = keras.layers.Dense(len(classes), activation=activation, name="classes")
    # standardise the embedding dimensions with training statistics (part of the saved graph)
    norm = keras.layers.Normalization(axis=-1, name="classes_norm")
    norm.adapt(x_train)
    head_model = keras.Sequential(
        [keras.Input((dim,)), norm, keras.layers.Dropout(dropout, name="head_dropout"), head], name="head"
    )
    loss = "binary_crossentropy" if multilabel else "categorical_crossentropy"
    head_model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    weights = None
    if class_weight and not multilabel:
        counts = y_train.sum(axis=0)
        present = counts > 0
        w = np.where(present, counts.sum() / np.maximum(counts, 1) / max(present.sum(), 1), 0.0)
        weights = {i: float(v) for i, v in enumerate(w)}
    callbacks = []
    fit_kwargs: dict[str, Any] = {}
    if len(x_val):
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True))
        fit_kwargs["validation_data"] = (x_val, y_val)
    history = head_model.fit(
        x_train, y_train, epochs=epochs, batch_size=batch_size, class_weight=weights, shuffle=True,
        callbacks=callbacks, verbose=1 if progress else 0, **fit_kwargs,
    )

    # the classifier: the backbone with the head on the chosen layer
    outputs = dict(model.output)
    outputs["classes"] = head(norm(outputs[feature]))  # per patch, or per frame for frame models
    classifier = keras.Model(model.input, outputs, name=f"{model.name}_classifier")

    log_history = {"head": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    if unfreeze:
        log_history["unfreeze"] = _unfreeze(
            classifier, work, inputs, sr, y_clip, train_idx, val_idx, multilabel, unfreeze, unfreeze_epochs,
            unfreeze_lr, batch_size, rng, loss, progress, exclude=tuple(base.heads),
        )

    entry = dict(base.entry)
    entry.pop("name", None)
    entry["task"] = "classification"
    entry["layers"] = dict(entry["layers"], classes=len(classes))
    entry["head"] = {"output": "classes", "labels": list(classes), "activation": activation, "multilabel": multilabel}
    entry["pretrained"] = True
    entry["training"] = {
        "data": f"fine-tuned from {base.name!r} on {len(train_idx)} clips ({len(val_idx)} for validation)",
        "base_model": base.name,
        "feature_layer": feature,
        "unfreeze": unfreeze,
        "notes": "Created by mirzoo fine_tune; the base model's weights were not modified.",
    }
    entry["metrics"] = {}
    clf = type(base)(classifier, dict(entry, name=f"{base.name}-finetuned"), source="fine_tune")
    clf.history = log_history
    if len(val_idx):
        val_inputs = [inputs[i] for i in val_idx]
        clf.update_entry(metrics={"validation": evaluate(clf, list(zip(val_inputs, [labels[i] for i in val_idx])), sr=sr)})
    return clf


def _unfreeze(classifier, work, inputs, sr, y_clip, train_idx, val_idx, multilabel, blocks, epochs, lr, batch_size,
              rng, loss, progress, exclude=()):
    """Train the top ``blocks`` backbone blocks and the head end to end on waveform patches."""
    # backbone blocks in order, without the front-end and without the base model's own heads (e.g. the
    # pretrained "tags" layer), which do not feed the new classifier and would waste the unfrozen budget
    skip = {"frontend", "classes", *exclude}
    trainable = [l for l in classifier.layers if l.weights and l.name not in skip]
    names = []
    for l in trainable:
        stem = l.name.split("_")[0]
        if stem not in names and stem not in skip:
            names.append(stem)
    top = set(names[-blocks:]) | {"classes"}
    for l in classifier.layers:
        l.trainable = l.name.split("_")[0] in top
        if isinstance(l, keras.layers.BatchNormalization):
            l.trainable = False  # keep the pretrained statistics on small data
    train_model = keras.Model(classifier.input, classifier.output["classes"])
    train_model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)

    def windows(indices):
        xs, ys = [], []
        for i in indices:
            y = work.load_input(inputs[i], sr)[0]
            if work.spec.is_clip:
                patches = work.plan.patches(y)
                xs.extend(patches)
                ys.extend([y_clip[i]] * len(patches))
            else:
                xs.append(y)
                ys.append(y_clip[i])
        return xs, np.stack(ys) if ys else np.zeros((0, y_clip.shape[1]), np.float32)

    if not work.spec.is_clip:
        raise ParameterError("unfreeze > 0 is supported for clip-level models only")
    x_train, y_train = windows(train_idx)
    x_train = np.stack(x_train)
    kwargs = {}
    if len(val_idx):
        x_val, y_val = windows(val_idx)
        kwargs["validation_data"] = (np.stack(x_val), y_val)
        kwargs["callbacks"] = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)]
    hist = train_model.fit(x_train, y_train, epochs=epochs, batch_size=min(batch_size, 16), shuffle=True,
                           verbose=1 if progress else 0, **kwargs)
    for l in classifier.layers:
        l.trainable = True
    return {"blocks": sorted(top), **{k: [float(v) for v in vs] for k, vs in hist.history.items()}}


def evaluate(model, data, *, sr: Optional[int] = None, confusion: bool = False) -> dict:
    """Clip-level metrics of a model with a head on labelled data.

    Single-label: ``accuracy`` and ``macro_f1``; multi-label: ``roc_auc_macro`` and
    ``pr_auc_macro`` (over labels with positives and negatives).  Probabilities are the
    head's outputs averaged over each clip's patches.  With ``confusion=True`` a
    single-label result also holds ``confusion_matrix`` (rows: true class, columns:
    predicted class, both in the order of ``labels``) and ``labels``.
    """
    from sklearn.metrics import accuracy_score, average_precision_score, confusion_matrix, f1_score, roc_auc_score  # deferred: optional dependency (scikit-learn)

    if model.labels is None:
        raise ParameterError(f"model {model.name!r} has no head to evaluate")
    inputs, labels, _, _ = resolve_dataset(data, sr=sr, classes=model.labels)
    probs = model.predict(inputs, sr, pool="mean")
    probs = np.stack(probs if isinstance(probs, list) else [probs])
    y = _targets(labels, model.labels)
    flag = model.spec.head.multilabel if model.spec.head is not None else None
    multilabel = bool(y.sum(axis=1).max() != 1) if flag is None else flag
    if multilabel:
        cols = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < y.shape[0]]
        return {
            "roc_auc_macro": float(np.mean([roc_auc_score(y[:, j], probs[:, j]) for j in cols])) if cols else float("nan"),
            "pr_auc_macro": float(np.mean([average_precision_score(y[:, j], probs[:, j]) for j in cols])) if cols else float("nan"),
            "n_clips": int(len(y)),
        }
    truth, pred = y.argmax(axis=1), probs.argmax(axis=1)
    scores = {
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(f1_score(truth, pred, average="macro", labels=np.unique(truth), zero_division=0)),
        "n_clips": int(len(y)),
    }
    if confusion:
        scores["labels"] = list(model.labels)
        scores["confusion_matrix"] = confusion_matrix(truth, pred, labels=np.arange(len(model.labels))).tolist()
    return scores
