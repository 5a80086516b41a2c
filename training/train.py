"""Train a zoo model on the public corpus and (optionally) ship its weights.

    python -m training.train --model cnn-tagging --config training/configs/cnn-tagging.json
    python -m training.train --model dense-frame --config training/configs/dense-frame.json --ship

The corpus is the one built by ``python -m training.corpus build`` (``metadata.csv``,
``vocabulary.json``, FLAC audio and frame-target ``.npz`` files).  Audio is decoded once
into an int16 cache (``<cache>/<split>.npy``); training draws random patches from it,
so the front-end runs inside the model exactly as at inference time.

* Tagging models (``cnn-tagging``, ``crnn-tagging``): random ``patch_seconds`` crops of
  training clips with their clip tags; binary cross-entropy; Adam.
* ``dense-frame``: random crops with their frame-level pitch-class targets ("deep chroma");
  with ``tag_weight > 0`` in the config also a frame-wise tag head trained on the clip tags
  (multi-task), so that the embedding carries timbre and style next to pitch content.

Augmentation on the waveform (seeded): random gain, additive noise at a random SNR, random
polarity and (``eq_prob > 0``) a random smooth equaliser.  The corpus itself already varies
tempo, transposition, orchestration, reverb and noise.  Validation after each epoch; early
stopping on the validation metric (macro ROC-AUC for tags, frame F1 for pitch classes); with
``lr_decay`` in the config the learning rate is scaled down on a plateau; the best weights are
checkpointed and restored.  ``--ship`` writes the weights into ``mirzoo/weights/`` and the
manifest (both copies) with sha256, size, vocabulary, training record and metrics.

``--distribute {mirrored,data-parallel,auto}`` trains data-parallel over the local devices
(``tf.distribute.MirroredStrategy`` on tensorflow, ``keras.distribution.DataParallel`` on jax) and
``--data shards`` streams the training split from TFRecord shards with ``tf.data``
(``training/scale.py``, ``training/shards.py``; "Training at scale" in ``training/README.md``).
Without them the single-device loop above runs unchanged.

Data sets on disk (``--data KIND:PATH``; clip models only, read with :mod:`mirzoo.datasets`)::

    python -m training.train --model cnn-tagging --data mtat:/data/mtat --config training/configs/cnn-tagging-mtat.json
    python -m training.train --model crnn-tagging --data folder:/data/my_labelled_music
    python -m training.train --model cnn-tagging --data gtzan:/data/gtzan --data shards

``--data`` answers two questions, and each value says which it answers: *where the clips come
from* (``KIND:PATH``; default: the corpus of ``--corpus``/the config) and *how the training split
is streamed* (``memory`` or ``shards``, as before).  A value holding a colon is a data set, a bare
word is a streaming mode; give the option twice for both.  One option keeps the issue's command
lines short and every existing ``--data memory|shards`` invocation valid; a second option
(``--dataset``) would have been the only alternative, and it would still have to be told apart
from the corpus, which has no ``KIND:`` form.

* ``mtat:PATH``: MagnaTagATune (``annotations_final.csv`` beside the mp3 folders ``0`` .. ``f``),
  the 50 most frequent tags (config ``top_k``), multi-label (sigmoid head, binary
  cross-entropy).  Split by folder, 12:1:3: ``0``-``b`` train, ``c`` validation, ``d``-``f`` test,
  the split of Dieleman & Schrauwen 2014 used by Choi, Fazekas & Sandler 2016 ("Automatic tagging
  using deep convolutional neural networks", ISMIR; about 0.89 test ROC-AUC) and described by
  Won et al. 2020 ("Evaluation of CNN-based automatic music tagging models", SMC) as the common
  one.  Untagged clips are kept (config ``drop_untagged: true`` drops them); clips whose mp3
  cannot be decoded (the archive holds a few empty files) are skipped with a warning.
* ``gtzan:PATH``: GTZAN with the fault-filtered split of Kereliuk, Sturm & Larsen 2015
  (443 / 197 / 290 tracks).  mirzoo ships no copy of the split lists: ``PATH`` must hold
  ``train_filtered.txt``, ``valid_filtered.txt`` and ``test_filtered.txt`` as published with
  github.com/coreyker/dnn-mgr (``gtzan/``), beside the ``genres`` folder; without them the run
  stops and says so (no random split is substituted).  Single-label (softmax head,
  categorical cross-entropy); validation metric accuracy.
* ``folder:PATH`` (a folder per label) and ``csv:PATH`` (``path,label[;label]`` or one 0/1 column
  per class): no standard split exists, so a seeded split per label set holds out
  ``valid_fraction`` and ``test_fraction`` (config, 0.1 each) of the clips of every label set
  with at least 3 clips.  Single- or multi-label follows the data (one label per clip: softmax).

The vocabulary is the data set's classes; the run writes ``best.weights.h5``, ``report.json``
(vocabulary, split sizes, metrics) and ``model/``, a folder that ``mirzoo.load`` reads with the
head labelled by the data set's classes.  Augmentation, ``--max-minutes``, ``--resume``,
``--distribute`` and ``--data shards`` work as with the corpus; ``--ship`` (the zoo's own weights)
does not apply.

``--resume`` continues the run in ``--out`` after its last finished epoch: every epoch writes
``last.weights.h5`` and ``state.json`` (best score and epoch, history, learning rate, vocabulary).
The optimizer's moments restart and the data stream is reseeded from ``(seed, epoch)``; a run
whose vocabulary differs (another data set or tag threshold) is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from mirzoo import datasets
from mirzoo.errors import MirzooError
from mirzoo.inference.windows import clip_patches
from mirzoo.spec import ModelSpec
from mirzoo.zoo.manifest import PACKAGE_DIR, PACKAGE_MANIFEST, get_spec
from mirzoo.fileio import file_sha256, write_json_atomic
from training import scale as ts
from training import shards as tsh
from training.data import EQ_DEFAULTS, EQ_LOWEST, audio_cache, read_metadata  # noqa: F401  (also used by callers of train)

log = logging.getLogger("mirzoo.training")

ROOT = Path(__file__).resolve().parents[1]


# -- data ---------------------------------------------------------------------------------------


def choose_vocabulary(train_rows: list[dict], min_count: int, exclude_groups: list[str]) -> list[str]:
    """Tags on at least ``min_count`` training clips of the main corpus, minus excluded groups.

    Rows from ``extra_corpora`` (marked by ``_root``) are more renders of the same clips, not more
    examples of a tag, so they do not count: the vocabulary does not grow with the soundfonts.
    """
    counts: dict[str, int] = {}
    for r in train_rows:
        if r.get("_root"):
            continue
        for t in filter(None, r["tags"].split(";")):
            counts[t] = counts.get(t, 0) + 1
    keep = [t for t, c in counts.items() if c >= min_count and t.split(":", 1)[0] not in exclude_groups]
    return sorted(keep)


def multi_hot(rows: list[dict], vocab: list[str]) -> np.ndarray:
    pos = {t: i for i, t in enumerate(vocab)}
    y = np.zeros((len(rows), len(vocab)), np.float32)
    for i, r in enumerate(rows):
        for t in r["tags"].split(";"):
            if t in pos:
                y[i, pos[t]] = 1.0
    return y


def load_chroma(corpus: Path, rows: list[dict]) -> list[np.ndarray]:
    # rows of an extra corpus carry their own folder in "_root"
    return [np.load(Path(r.get("_root") or corpus) / r["targets"])["chroma"].astype(np.float32) for r in rows]


#: ``--data`` values that say how the training split is streamed (the others name a data set)
DATA_MODES = ("memory", "shards")
#: ``--data KIND:PATH``: the data sets on disk and the :mod:`mirzoo.datasets` layout of each
DISK_KINDS = {"mtat": "magnatagatune", "gtzan": "gtzan", "folder": "folder", "csv": "csv"}
SPLITS = ("train", "valid", "test")


def data_option(value: str) -> str:
    """``--data`` value check (argparse ``type``): a streaming mode or ``KIND:PATH`` with an existing path."""
    if value in DATA_MODES:
        return value
    kind, colon, path = value.partition(":")
    expected = (f"expected {' or '.join(repr(m) for m in DATA_MODES)}, or KIND:PATH with KIND one of "
                f"{', '.join(DISK_KINDS)} (e.g. mtat:/data/mtat)")
    if not colon or kind not in DISK_KINDS:
        raise argparse.ArgumentTypeError(f"{value!r}: {expected}")
    if not path:
        raise argparse.ArgumentTypeError(f"{value!r}: no path after '{kind}:'; {expected}")
    if not Path(path).expanduser().exists():
        raise argparse.ArgumentTypeError(f"{value!r}: '{path}' does not exist")
    return value


def split_data_options(values, cfg: dict) -> tuple[str, tuple[str, str] | None]:
    """``(streaming mode, (kind, path) or None)`` from the ``--data`` values (a str, a list or None)
    and the config's ``data`` (a streaming mode) and ``dataset`` (``KIND:PATH``) keys.

    Raises SystemExit naming the value when two values answer the same question or one is bad."""
    if values is None:
        values = []
    elif isinstance(values, str):
        values = [values]
    modes, sources = [], []
    for value in values:
        try:
            value = data_option(value)
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"--data {exc}") from None
        (modes if value in DATA_MODES else sources).append(value)
    if len(modes) > 1 or len(sources) > 1:
        raise SystemExit(f"--data given {values}: at most one streaming mode ({', '.join(DATA_MODES)}) and one "
                         f"data set (KIND:PATH)")
    mode = modes[0] if modes else cfg.get("data", "memory")
    if mode not in DATA_MODES:
        raise SystemExit(f"--data {mode!r} must be 'memory' or 'shards'")
    source = sources[0] if sources else cfg.get("dataset")
    if source is None:
        return mode, None
    if not sources:
        try:
            data_option(source)
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"config dataset {exc}") from None
    kind, _, path = source.partition(":")
    return mode, (kind, path)


def random_split(ds, valid_fraction: float, test_fraction: float, seed: int) -> dict:
    """A seeded split of a data set without a standard one: of every label set (the sorted labels of a
    clip) with at least 3 clips, ``round(n * fraction)`` (at least 1) clips go to validation and to test."""
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 0.5:
            raise SystemExit(f"{name}={value!r}: expected a number in [0, 0.5)")
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[int]] = {}
    for i, (_, labels) in enumerate(ds.items):
        groups.setdefault(tuple(sorted(labels)), []).append(i)
    parts = {s: [] for s in SPLITS}
    for key in sorted(groups):
        idx = [groups[key][j] for j in rng.permutation(len(groups[key]))]
        n = len(idx)
        n_valid = max(1, round(n * valid_fraction)) if n >= 3 and valid_fraction > 0 else 0
        n_test = max(1, round(n * test_fraction)) if n >= 3 and test_fraction > 0 else 0
        n_test = min(n_test, n - 1 - n_valid)  # at least one clip of every label set is trained on
        parts["valid"] += idx[:n_valid]
        parts["test"] += idx[n_valid : n_valid + n_test]
        parts["train"] += idx[n_valid + n_test :]
    return {s: ds.subset(sorted(parts[s])) for s in SPLITS}


def disk_splits(kind: str, path: str, cfg: dict, seed: int) -> tuple[dict, str]:
    """``({split: mirzoo.datasets.Dataset}, description of the split)`` of a data set on disk.

    The loaders of :mod:`mirzoo.datasets` parse every layout; this only chooses the split (see the
    module docstring: folders for MagnaTagATune, the fault-filtered lists for GTZAN, seeded for the
    rest).  Raises SystemExit naming ``KIND:PATH`` when the loader refuses the data."""
    try:
        if kind == "mtat":
            top_k = int(cfg.get("top_k", 50))
            parts = {s: datasets.load_magnatagatune(path, split=s, top_k=top_k,
                                                    drop_untagged=bool(cfg.get("drop_untagged", False)))
                     for s in SPLITS}
            about = (f"MagnaTagATune, top {top_k} tags, split by folder 0-b train / c valid / d-f test "
                     f"(Dieleman & Schrauwen 2014; Choi et al. 2016)")
        elif kind == "gtzan":
            parts = {s: datasets.load_gtzan(path, split=s) for s in SPLITS}
            about = "GTZAN, fault-filtered split (Kereliuk et al. 2015): train/valid/test_filtered.txt"
        else:
            ds = datasets.load_dataset(path, kind=DISK_KINDS[kind])
            parts = random_split(ds, float(cfg.get("valid_fraction", 0.1)), float(cfg.get("test_fraction", 0.1)), seed)
            about = (f"{kind} data set, seeded split per label set (valid {cfg.get('valid_fraction', 0.1)}, "
                     f"test {cfg.get('test_fraction', 0.1)}, seed {seed})")
    except MirzooError as exc:
        raise SystemExit(f"--data {kind}:{path}: {exc}") from None
    classes = parts["train"].classes
    odd = [c for c in classes if ";" in c]
    if odd:
        raise SystemExit(f"--data {kind}:{path}: class names {odd[:5]} hold ';', which training rows use to join labels")
    return parts, about


def disk_rows(ds) -> list[dict]:
    """The rows of a :class:`mirzoo.datasets.Dataset` in the corpus form the training loop reads
    (``clip_id``, absolute ``path``, ``tags`` joined by ';')."""
    return [{"clip_id": os.path.abspath(p), "path": os.path.abspath(p), "tags": ";".join(labels)}
            for p, labels in ds.items]


def drop_unreadable(rows: list[dict], audio: tuple) -> tuple[list[dict], tuple]:
    """Rows and cached audio without the clips the cache could not decode (zero samples)."""
    data, offsets = audio
    keep = [i for i in range(len(rows)) if offsets[i + 1] > offsets[i]]
    if len(keep) == len(rows):
        return rows, audio
    log.warning("dropped %d unreadable clip(s) of %d", len(rows) - len(keep), len(rows))
    return [rows[i] for i in keep], (data, np.concatenate([offsets[:1], offsets[1:][keep]]))


def class_metrics(y_true: np.ndarray, y_prob: np.ndarray, vocab: list[str]) -> dict:
    """Single-label metrics: accuracy, macro F1 of the arg-max, and the ROC-AUC/PR-AUC of :func:`tag_metrics`."""
    from sklearn.metrics import f1_score  # deferred: optional dependency (scikit-learn)

    truth, guess = y_true.argmax(axis=1), y_prob.argmax(axis=1)
    out = {"accuracy": float(np.mean(truth == guess)),
           "macro_f1": float(f1_score(truth, guess, labels=list(range(len(vocab))), average="macro", zero_division=0))}
    out.update(tag_metrics(y_true, y_prob, vocab))
    return out


#: soundfonts kept out of training for generalisation tests (matched in the ``soundfont`` column)
HELD_OUT_SOUNDFONTS = ("timgm6mb", "freepats")


def add_extra_corpora(rows: dict, audio: dict, extra: list, cache_root: Path, sr: int) -> dict:
    """Append the train and valid clips of further corpora (e.g. the same scores rendered with
    another soundfont) to ``rows``/``audio``; returns hours per corpus and split.

    Test splits of extra corpora are never used; a corpus rendered with a held-out
    soundfont (TimGM6mb, freepats) is refused.
    """
    hours = {}
    for folder in map(Path, extra):
        for split in ("train", "valid"):
            extra_rows = read_metadata(folder, split)
            if not extra_rows:
                continue
            fonts = {r.get("soundfont", "").lower() for r in extra_rows}
            bad = [f for f in fonts if any(h in f for h in HELD_OUT_SOUNDFONTS)]
            if bad:
                raise SystemExit(f"{folder} was rendered with {bad}: held-out soundfonts never go into training")
            for r in extra_rows:
                r["_root"] = str(folder)
            a2, o2 = audio_cache(folder, extra_rows, cache_root / folder.name, split, sr)
            a1, o1 = audio[split]
            audio[split] = (np.concatenate([np.asarray(a1), np.asarray(a2)]), np.concatenate([o1, o2[1:] + o1[-1]]))
            rows[split] = rows[split] + extra_rows
            hours[f"{folder.name}/{split}"] = round(sum(float(r["duration"]) for r in extra_rows) / 3600, 2)
            log.info("added %d %s clips (%.2f h) from %s (%s)", len(extra_rows), split,
                     hours[f"{folder.name}/{split}"], folder, ", ".join(sorted(fonts)))
    return hours


AUGMENT_KEYS = {"gain_db", "noise_prob", "snr_db", "polarity", "eq_prob", "eq_db", "eq_points"}


def eq_curve_db(n_bins: int, gains_db: np.ndarray) -> np.ndarray:
    """Gains in dB ``[B, n_bins]`` for the ``n_bins`` rfft bins from ``gains_db`` ``[B, P]`` at ``P >= 2``
    control points spaced evenly in log frequency from 1/200 of Nyquist to Nyquist (about 40 Hz to
    8 kHz at 16 kHz): linear between the points in log frequency, flat below the first (DC included)."""
    p = gains_db.shape[1]
    f = np.maximum(np.arange(n_bins) / max(n_bins - 1, 1), EQ_LOWEST)
    pos = np.log(f / EQ_LOWEST) / np.log(1 / EQ_LOWEST) * (p - 1)
    lo = np.minimum(np.floor(pos).astype(int), p - 2)
    w = pos - lo
    return gains_db[:, lo] * (1 - w) + gains_db[:, lo + 1] * w


def random_eq(x: np.ndarray, rng: np.random.Generator, cfg: dict) -> np.ndarray:
    """A random smooth equaliser on an ``eq_prob`` share of the rows of ``x`` ``[B, L]``: gains drawn
    uniformly in ±``eq_db`` at ``eq_points`` log-spaced control frequencies, applied in the rfft domain
    (zero phase).  Imitates what differs between two renders of the same instrument: the spectral
    envelope of the samples, the room and the playback chain."""
    on = rng.random(x.shape[0]) < float(cfg["eq_prob"])
    db = float(cfg.get("eq_db", EQ_DEFAULTS["eq_db"]))
    gains = rng.uniform(-db, db, (x.shape[0], int(cfg.get("eq_points", EQ_DEFAULTS["eq_points"]))))
    if on.any():
        spec = np.fft.rfft(x[on], axis=1)
        spec *= 10 ** (eq_curve_db(spec.shape[1], gains[on]) / 20)
        x[on] = np.fft.irfft(spec, n=x.shape[1], axis=1)
    return x


def augment(x: np.ndarray, rng: np.random.Generator, cfg: dict) -> np.ndarray:
    """Seeded waveform augmentation: gain, additive noise at a random SNR, polarity, and with
    ``eq_prob > 0`` a random equaliser (:func:`random_eq`; off by default, so configs without it
    draw the same random numbers as before it existed)."""
    x = x * 10 ** (rng.uniform(-cfg.get("gain_db", 6.0), cfg.get("gain_db", 6.0), (x.shape[0], 1)) / 20)
    noisy = rng.random(x.shape[0]) < cfg.get("noise_prob", 0.3)
    if noisy.any():
        snr = rng.uniform(*cfg.get("snr_db", [10.0, 40.0]), noisy.sum())
        power = np.mean(x[noisy] ** 2, axis=1) + 1e-10
        noise = rng.standard_normal((noisy.sum(), x.shape[1])) * np.sqrt(power / 10 ** (snr / 10))[:, None]
        x[noisy] += noise
    if cfg.get("polarity", True):
        x *= np.where(rng.random((x.shape[0], 1)) < 0.5, -1.0, 1.0)
    if float(cfg.get("eq_prob", 0.0)) > 0:
        x = random_eq(x, rng, cfg)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


class PatchSampler:
    """Random crops of the cached audio with their labels (clip tags or frame targets)."""

    def __init__(self, audio, offsets, labels, length, hop, rng, frame_targets=None):
        self.audio, self.offsets, self.labels = audio, offsets, labels
        self.length, self.hop, self.rng = length, hop, rng
        self.frame_targets = frame_targets
        self.durations = np.diff(offsets)
        # clips are drawn in proportion to their length (every second of audio equally likely)
        self.p = self.durations / self.durations.sum()

    def batch(self, size: int):
        clips = self.rng.choice(len(self.durations), size=size, p=self.p)
        x = np.zeros((size, self.length), np.float32)
        frames = 1 + self.length // self.hop
        y = [] if self.frame_targets is None else np.zeros((size, frames, 12), np.float32)
        for i, c in enumerate(clips):
            n = int(self.durations[c])
            start = 0 if n <= self.length else int(self.rng.integers(0, (n - self.length) // self.hop + 1)) * self.hop
            piece = self.audio[self.offsets[c] + start : self.offsets[c] + min(n, start + self.length)]
            x[i, : piece.size] = piece.astype(np.float32) / 32768.0
            if self.frame_targets is None:
                y.append(self.labels[c])
            else:
                t = self.frame_targets[c][start // self.hop : start // self.hop + frames]
                y[i, : t.shape[0]] = t
        if self.frame_targets is None:
            return x, np.stack(y)
        if self.labels is None:
            return x, y
        # frame model with a tag head: clip tags hold for every frame of the crop
        tags = np.repeat(self.labels[clips][:, None, :], frames, axis=1)
        return x, {"pitch_classes": y, "tags": tags}


# -- evaluation ---------------------------------------------------------------------------------


def predict_clips(model, audio, offsets, length, hop, batch=32) -> np.ndarray:
    """Clip-level probabilities: mean over each clip's patches."""
    probs = []
    for c in range(len(offsets) - 1):
        y = np.asarray(audio[offsets[c] : offsets[c + 1]], dtype=np.float32) / 32768.0
        p = clip_patches(y, length, hop)
        out = np.concatenate([np.asarray(model.predict_on_batch(p[i : i + batch])) for i in range(0, len(p), batch)])
        probs.append(out.mean(axis=0))
    return np.stack(probs)


def tag_metrics(y_true: np.ndarray, y_prob: np.ndarray, vocab: list[str]) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score  # deferred: optional dependency (scikit-learn)

    valid = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < y_true.shape[0]]
    aucs = {vocab[j]: float(roc_auc_score(y_true[:, j], y_prob[:, j])) for j in valid}
    aps = {vocab[j]: float(average_precision_score(y_true[:, j], y_prob[:, j])) for j in valid}
    return {
        "roc_auc_macro": float(np.mean(list(aucs.values()))) if aucs else float("nan"),
        "pr_auc_macro": float(np.mean(list(aps.values()))) if aps else float("nan"),
        "n_clips": int(y_true.shape[0]),
        "n_tags_evaluated": len(valid),
        "roc_auc_per_tag": aucs,
    }


def frame_metrics(targets: list[np.ndarray], preds: list[np.ndarray], threshold: float = 0.5) -> dict:
    t = np.concatenate(targets)
    p = np.concatenate(preds)
    b = p >= threshold
    tp = float((b & (t > 0.5)).sum())
    fp = float((b & (t <= 0.5)).sum())
    fn = float((~b & (t > 0.5)).sum())
    f1 = 2 * tp / max(2 * tp + fp + fn, 1.0)
    num = (t * p).sum(axis=1)
    den = np.linalg.norm(t, axis=1) * np.linalg.norm(p, axis=1)
    active = den > 0
    cosine = float(np.mean(num[active] / den[active])) if active.any() else float("nan")
    return {"frame_f1": f1, "frame_cosine": cosine, "n_frames": int(t.shape[0])}


def predict_frames(model, audio, offsets, batch_seconds_samples: int) -> list[np.ndarray]:
    """Frame-wise outputs per clip: an array, or a dict of arrays for a multi-head model."""
    out = []
    for c in range(len(offsets) - 1):
        y = np.asarray(audio[offsets[c] : offsets[c + 1]], dtype=np.float32)[None] / 32768.0
        pred = model.predict_on_batch(y)
        out.append({k: np.asarray(v)[0] for k, v in pred.items()} if isinstance(pred, dict) else np.asarray(pred)[0])
    return out


def frame_model_metrics(model, aud, targets, length, tag_labels=None, vocab_tags=None) -> dict:
    """Pitch-class metrics of a frame model and, with a tag head, clip-level tag metrics
    (frame probabilities averaged over each clip)."""
    preds = predict_frames(model, *aud, length)
    if not isinstance(preds[0], dict):
        return frame_metrics(targets, preds)
    metric = frame_metrics(targets, [p["pitch_classes"] for p in preds])
    if tag_labels is not None:
        probs = np.stack([p["tags"].mean(axis=0) for p in preds])
        tm = tag_metrics(tag_labels, probs, vocab_tags)
        metric.update({f"tags_{k}": v for k, v in tm.items()})
    return metric


# -- main ---------------------------------------------------------------------------------------


def scaled_train_data(args, cfg, sc, data_mode, corpus, cache, train_rows, train_audio, sr, length, hop, frame_model,
                      head, vocab, vocab_tags, sampler, rng, batch, seed):
    """The training stream of a distributed or sharded run: ``(tf.data.Dataset or None, global batch)``.

    ``batch`` (config ``batch_size``) is per replica; the global batch is ``batch * replicas``.
    ``None``: keep the train_on_batch loop over the in-memory sampler (``--data memory`` without a
    MirroredStrategy: jax's DataParallel splits each global batch over the devices itself)."""
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    if sc.backend != "tensorflow":
        # tf.data only feeds the pipeline here: keep tensorflow off the accelerators jax uses
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
    global_batch = batch * sc.replicas
    log.info("distribution: %s; data: %s; global batch %d = %d per replica x %d", sc.describe(), data_mode,
             global_batch, batch, sc.replicas)
    aug = cfg.get("augment", {})
    if data_mode == "shards":

        folder = Path(getattr(args, "shards", None) or cfg.get("shards") or cache / "shards-train")
        if (folder / tsh.INDEX).exists():
            tsh.check_index(tsh.read_index(folder), folder, clip_ids=[r["clip_id"] for r in train_rows], sr=sr)
        else:
            log.info("writing the training split as shards into %s", folder)
            tsh.write_shards(folder, train_rows, *train_audio, sr, corpus=corpus)
        ds = tsh.read_shards(
            folder, length=length, hop=hop, batch_size=global_batch, kind="frames" if frame_model else "tags",
            vocab=vocab_tags if frame_model else vocab, frame_head=head, seed=seed, augment=aug,
            shuffle_buffer=int(cfg.get("shuffle_buffer", 1024)), clip_buffer=int(cfg.get("clip_buffer", 64)),
            crop_rate=float(cfg.get("crop_rate", 1.0)))
        return ds, global_batch
    if sc.kind != "mirrored":
        return None, global_batch

    # in-memory crops for the MirroredStrategy: the sampler as a generator (seeded, not bit-identical
    # to the plain loop because the input pipeline may read ahead)
    def batches():
        while True:
            x, y = sampler.batch(global_batch)
            yield augment(x, rng, aug), y

    frames = 1 + length // hop
    if not frame_model:
        y_spec = tf.TensorSpec((None, len(vocab)), tf.float32)
    elif vocab_tags:
        y_spec = {head: tf.TensorSpec((None, frames, 12), tf.float32),
                  "tags": tf.TensorSpec((None, frames, len(vocab_tags)), tf.float32)}
    else:
        y_spec = tf.TensorSpec((None, frames, 12), tf.float32)
    spec = (tf.TensorSpec((None, length), tf.float32), y_spec)
    return tf.data.Dataset.from_generator(batches, output_signature=spec), global_batch


def augment_config(cfg: dict) -> dict:
    """The config's ``augment`` dict checked: known keys only, values in range (SystemExit otherwise)."""
    spec = cfg.get("augment", {}) or {}
    unknown = set(spec) - AUGMENT_KEYS
    if unknown:
        raise SystemExit(f"augment: unknown keys {sorted(unknown)}; expected some of {sorted(AUGMENT_KEYS)}")
    checks = {"gain_db": (lambda v: v >= 0, "a number >= 0"),
              "noise_prob": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
              "eq_prob": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
              "eq_db": (lambda v: v >= 0, "a number >= 0"),
              "eq_points": (lambda v: v >= 2 and float(v).is_integer(), "an integer >= 2")}
    for key, (ok, wanted) in checks.items():
        value = spec.get(key)
        if key in spec and (isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value)):
            raise SystemExit(f"augment.{key}={value!r}: expected {wanted}")
    snr = spec.get("snr_db", [10.0, 40.0])
    if not (isinstance(snr, (list, tuple)) and len(snr) == 2 and snr[0] <= snr[1]):
        raise SystemExit(f"augment.snr_db={snr!r}: expected [low, high] with low <= high")
    return spec


def lr_decay_config(cfg: dict) -> dict | None:
    """The config's ``lr_decay`` ({"factor", "patience", "min_learning_rate"}) checked, or None.

    On a plateau of ``patience`` epochs without a better validation score (counted from the best
    epoch or the last decay, whichever is later) the learning rate is multiplied by ``factor``.
    """
    spec = cfg.get("lr_decay")
    if not spec:
        return None
    unknown = set(spec) - {"factor", "patience", "min_learning_rate"}
    if unknown:
        raise SystemExit(f"lr_decay: unknown keys {sorted(unknown)}; expected factor, patience, min_learning_rate")
    out = {"factor": float(spec.get("factor", 0.3)), "patience": int(spec.get("patience", 2)),
           "min_learning_rate": float(spec.get("min_learning_rate", 1e-5))}
    if not 0 < out["factor"] < 1:
        raise SystemExit(f"lr_decay.factor={out['factor']}: expected a number in (0, 1)")
    if out["patience"] < 1:
        raise SystemExit(f"lr_decay.patience={out['patience']}: expected >= 1")
    if out["min_learning_rate"] < 0:
        raise SystemExit(f"lr_decay.min_learning_rate={out['min_learning_rate']}: expected >= 0")
    return out


def train(args) -> dict:
    import keras  # deferred: Keras/TensorFlow only after main() has set the thread variables

    from mirzoo.nn import get_family  # deferred: imports Keras (see above)
    from mirzoo.nn.base import apply_seeded_weights  # deferred: imports Keras (see above)

    cfg = json.loads(Path(args.config).read_text()) if args.config else {}
    augment_config(cfg)  # a bad key fails here, not after the audio cache is loaded
    seed = int(cfg.get("seed", 0))
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    corpus = Path(args.corpus or cfg.get("corpus", "corpus"))
    heldout = Path(args.heldout or cfg.get("heldout", "heldout"))
    cache = Path(args.cache or cfg.get("cache", "cache")) / corpus.name
    spec = get_spec(args.model)
    sr = spec.sample_rate
    frame_model = spec.is_frame
    # training at scale (training/scale.py, training/shards.py); without these options the
    # single-device train_on_batch loop below runs exactly as before
    distribute = getattr(args, "distribute", None) or cfg.get("distribute", "none")
    data_mode, source = split_data_options(getattr(args, "data", None), cfg)
    disk = None
    if source is not None:
        # a data set on disk (--data KIND:PATH) instead of the corpus: its split, its classes
        kind, disk_path = source
        if frame_model:
            raise SystemExit(f"--data {kind}:{disk_path}: {args.model} is a frame model trained on frame targets that "
                             f"only the corpus has; data sets on disk train clip models (cnn-tagging, crnn-tagging)")
        if getattr(args, "ship", False) or getattr(args, "from_run", None):
            raise SystemExit(f"--data {kind}:{disk_path} with --ship: --ship replaces the zoo's weights trained on the "
                             f"public corpus; the run saves a loadable model folder (<out>/model) instead")
        parts, about = disk_splits(kind, disk_path, cfg, seed)
        disk = {"data": f"{kind}:{disk_path}", "split": about, "classes": list(parts["train"].classes),
                "multilabel": bool(parts["train"].multilabel)}
        corpus = Path(disk_path).expanduser()
        cache = Path(args.cache or cfg.get("cache", "cache")) / f"{kind}-{corpus.resolve().name}"
    scaled = distribute != "none" or data_mode != "memory"
    if scaled:
        sc = ts.setup(distribute)

    if disk:
        rows = {s: disk_rows(parts[s]) for s in SPLITS}
        disk["clips"] = {s: len(rows[s]) for s in SPLITS}
    else:
        rows = {s: read_metadata(corpus, s) for s in ("train", "valid", "test")}
    if not rows["train"]:
        raise SystemExit(f"no training clips in {disk['data'] if disk else f'{corpus}/metadata.csv'}")
    log.info("clips: %s", {k: len(v) for k, v in rows.items()})
    if not rows["valid"]:
        log.warning("no validation clips: validating on the training clips (only sensible for smoke tests)")
        rows["valid"] = rows["train"]
    t0 = time.time()
    audio = {s: audio_cache(corpus, rows[s], cache, s, sr, skip_unreadable=bool(disk)) for s in rows if rows[s]}
    if disk:
        for s in audio:
            rows[s], audio[s] = drop_unreadable(rows[s], audio[s])
        disk["clips_used"] = {s: len(rows[s]) for s in audio}
        if not rows["train"]:
            raise SystemExit(f"--data {disk['data']}: none of the training clips could be decoded")
    # more renders of the training pieces (other soundfonts); the test split stays the main corpus's
    extra_hours = {} if disk else add_extra_corpora(rows, audio, cfg.get("extra_corpora", []), cache.parent, sr)
    log.info("audio cache ready in %.0f s", time.time() - t0)

    config = json.loads(json.dumps(dict(spec.config)))
    vocab_tags, labels = None, {}
    if frame_model:
        vocab = list(spec.head.labels)
        head = spec.head_output
        length = int(cfg.get("train_seconds", 4.0) * sr)
        hop = spec.hop_length
        length -= length % hop
        targets = {s: load_chroma(corpus, rows[s]) for s in rows if rows[s]}
        tag_weight = float(cfg.get("tag_weight", 0.0))
        if tag_weight > 0:
            # multi-task: a frame-wise tag head next to the pitch classes (clip tags on every frame)
            vocab_tags = choose_vocabulary(rows["train"], cfg.get("min_tag_count", 20), cfg.get("exclude_tag_groups", []))
            config["n_tags"] = len(vocab_tags)
            labels = {s: multi_hot(rows[s], vocab_tags) for s in rows if rows[s]}
            log.info("tag head (%d tags, loss weight %.2f): %s", len(vocab_tags), tag_weight, vocab_tags)
        else:
            config.pop("n_tags", None)
        sampler = PatchSampler(*audio["train"], labels.get("train"), length, hop, rng, frame_targets=targets["train"])
    else:
        if disk:
            vocab = disk["classes"]
            # one label per clip: a softmax head (categorical cross-entropy); else sigmoid tags
            config["head_activation"] = "sigmoid" if disk["multilabel"] else "softmax"
        else:
            vocab = choose_vocabulary(rows["train"], cfg.get("min_tag_count", 20), cfg.get("exclude_tag_groups", []))
        config["n_tags"] = len(vocab)
        head = "tags"
        length = spec.patch_samples
        hop = spec.patch_hop_samples
        labels = {s: multi_hot(rows[s], vocab) for s in rows if rows[s]}
        sampler = PatchSampler(*audio["train"], labels["train"], length, hop, rng)
    log.info("vocabulary (%d): %s", len(vocab), vocab)

    single_label = bool(disk) and not disk["multilabel"]
    clip_metrics = class_metrics if single_label else tag_metrics
    # under a MirroredStrategy the model and its optimizer are built in the strategy's scope
    with sc.scope() if scaled else contextlib.nullcontext():
        full = get_family(spec.family)(config, name=args.model.replace("-", "_"))
        init_seed = spec.weights.seed if spec.weights.seed is not None else seed
        apply_seeded_weights(full, init_seed, spec.weights.init)
        if vocab_tags:
            outputs = {head: full.output[head], "tags": full.output["tags"]}
            model = keras.Model(full.input, outputs, name=f"{full.name}_train")
            model.compile(
                optimizer=keras.optimizers.Adam(cfg.get("learning_rate", 1e-3)),
                loss={head: "binary_crossentropy", "tags": "binary_crossentropy"},
                loss_weights={head: 1.0, "tags": tag_weight},
            )
        else:
            outputs = full.output[head]
            model = keras.Model(full.input, outputs, name=f"{full.name}_train")
            model.compile(
                optimizer=keras.optimizers.Adam(cfg.get("learning_rate", 1e-3)),
                loss="categorical_crossentropy" if single_label else "binary_crossentropy",
            )
    evaluator = model
    if scaled:
        sc.check(model)
        if sc.kind == "mirrored":
            # predict_on_batch under the strategy runs every replica on the whole batch: evaluate
            # with a model built outside the scope on the same (mirrored) variables
            evaluator = keras.Model(full.input, outputs, name=f"{full.name}_eval")
    ckpt = Path(args.out or cfg.get("out", f"runs/{args.model}"))
    ckpt.mkdir(parents=True, exist_ok=True)
    best, best_epoch, history, patience = -np.inf, -1, [], cfg.get("patience", 4)
    decay = lr_decay_config(cfg)
    last_decay = -1
    deadline = time.time() + 60 * float(args.max_minutes or cfg.get("max_minutes", 60))
    batch = int(cfg.get("batch_size", 32))
    steps = int(cfg.get("steps_per_epoch", 200))
    aug = cfg.get("augment", {})
    train_ds = None
    if scaled:
        train_ds, batch = scaled_train_data(args, cfg, sc, data_mode, corpus, cache, rows["train"], audio["train"], sr,
                                            length, hop, frame_model, head, vocab, vocab_tags, sampler, rng, batch, seed)
    start = time.time()
    first_epoch, done_minutes = 0, 0.0
    state_path = ckpt / "state.json"
    if getattr(args, "resume", False) and state_path.exists():
        # continue after the last finished epoch: weights, best score, history, learning rate; the
        # optimizer's moments restart, and the data stream is reseeded from (seed, epoch)
        state = json.loads(state_path.read_text())
        if state["vocabulary"] != vocab:
            raise SystemExit(f"--resume: the run in '{ckpt}' was trained with another vocabulary "
                             f"({len(state['vocabulary'])} labels, now {len(vocab)}): use a new --out")
        full.load_weights(ckpt / "last.weights.h5")
        first_epoch, best_epoch = state["epoch"] + 1, state["best_epoch"]
        best = -np.inf if state["best"] is None else state["best"]
        history, last_decay, done_minutes = state["history"], state["last_decay"], state["minutes"]
        if state.get("learning_rate") is not None:
            model.optimizer.learning_rate.assign(state["learning_rate"])
        rng = np.random.default_rng([seed, first_epoch])
        if sampler is not None:
            sampler.rng = rng
        log.info("resumed after epoch %d (best %.4f at epoch %d)", state["epoch"], best, best_epoch)
    for epoch in range(first_epoch, int(cfg.get("epochs", 30))):
        te = time.time()
        losses = []
        if train_ds is not None:
            # one epoch of model.fit on the tf.data stream (distributed over the replicas)
            fit = model.fit(train_ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
            losses.append(float(fit.history["loss"][-1]))
        else:
            for _ in range(steps):
                x, y = sampler.batch(batch)
                x = augment(x, rng, aug)
                loss = model.train_on_batch(x, y)
                losses.append(float(loss[0] if isinstance(loss, (list, tuple)) else loss))
        if frame_model:
            metric = frame_model_metrics(evaluator, audio["valid"], targets["valid"], length, labels.get("valid"), vocab_tags)
            metric.pop("tags_roc_auc_per_tag", None)
            # with a tag head, both tasks count: mean of pitch-class F1 and tag ROC-AUC
            score = metric["frame_f1"] if not vocab_tags else (metric["frame_f1"] + metric["tags_roc_auc_macro"]) / 2
        else:
            probs = predict_clips(evaluator, *audio["valid"], length, hop)
            metric = clip_metrics(labels["valid"], probs, vocab)
            metric.pop("roc_auc_per_tag")
            score = metric["accuracy"] if single_label else metric["roc_auc_macro"]
        record = {"epoch": epoch, "loss": float(np.mean(losses)), **metric, "seconds": time.time() - te}
        if decay:
            record["learning_rate"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        history.append(record)
        log.info("epoch %d loss %.4f valid %s (%.0f s)", epoch, np.mean(losses), metric, time.time() - te)
        if not np.isfinite(score):
            # e.g. a validation split where no tag is both present and absent: ROC-AUC is undefined
            log.warning("epoch %d: the validation score is %s; the first epoch's weights are kept until a finite "
                        "score beats them", epoch, score)
        if score > best or best_epoch < 0:
            best, best_epoch = score, epoch
            save_weights_atomic(full, ckpt / "best.weights.h5")
        elif decay and epoch - max(best_epoch, last_decay) >= decay["patience"]:
            # plateau: scale the learning rate down (not below min_learning_rate)
            lr = record["learning_rate"]
            new_lr = max(lr * decay["factor"], decay["min_learning_rate"])
            if new_lr < lr:
                model.optimizer.learning_rate.assign(new_lr)
                last_decay = epoch
                log.info("no improvement for %d epochs: learning rate %.2g -> %.2g", decay["patience"], lr, new_lr)
        (ckpt / "history.json").write_text(json.dumps(history, indent=2))
        save_weights_atomic(full, ckpt / "last.weights.h5")
        write_json_atomic(state_path, {
            "epoch": epoch, "best": float(best) if np.isfinite(best) else None, "best_epoch": best_epoch,
            "history": history, "last_decay": last_decay, "vocabulary": vocab,
            "minutes": done_minutes + (time.time() - start) / 60,
            "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        })
        if epoch - best_epoch >= patience:
            log.info("early stop: no improvement for %d epochs", patience)
            break
        if time.time() > deadline:
            log.info("time budget reached")
            break
    train_minutes = done_minutes + (time.time() - start) / 60
    full.load_weights(ckpt / "best.weights.h5")

    # final evaluation: FluidR3 test split and the TimGM6mb generalisation split
    metrics = {}
    splits = {f"test_{kind}" if disk else "test_fluidr3": (corpus, rows["test"], audio.get("test"))}
    if not disk and (heldout / "metadata.csv").exists():
        h_rows = read_metadata(heldout, "test")
        splits["test_timgm6mb"] = (heldout, h_rows, audio_cache(heldout, h_rows, Path(str(cache) + "-heldout"), "test", sr))
    for key, (root, srows, aud) in splits.items():
        if not srows:
            continue
        if frame_model:
            metrics[key] = frame_model_metrics(evaluator, aud, load_chroma(root, srows), length,
                                               multi_hot(srows, vocab_tags) if vocab_tags else None, vocab_tags)
        else:
            m = clip_metrics(multi_hot(srows, vocab), predict_clips(evaluator, *aud, length, hop), vocab)
            metrics[key] = m
        log.info("%s: %s", key, {k: v for k, v in metrics[key].items() if not k.endswith("roc_auc_per_tag")})

    report = {
        "model": args.model,
        "vocabulary": vocab,
        "tag_vocabulary": vocab_tags,
        "extra_corpora_hours": extra_hours,
        "best_epoch": best_epoch,
        "best_valid": best,
        "history": history,
        "metrics": metrics,
        "train_minutes": train_minutes,
        "hardware": hardware_text(),
        "threads": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    }
    if disk:
        report["data_set"] = {k: v for k, v in disk.items() if k != "classes"}
        report["model_folder"] = str(save_disk_model(full, spec, config, vocab, disk, report, ckpt / "model"))
    if scaled:
        report.update({"distribute": sc.kind, "backend": sc.backend, "replicas": sc.replicas, "devices": sc.devices,
                       "data": data_mode, "per_replica_batch": batch // sc.replicas, "global_batch": batch})
        ts.release(sc)
    (ckpt / "report.json").write_text(json.dumps(report, indent=2))
    if args.ship:
        ship(args, spec, config, full, vocab, report, cfg, corpus, rows)
    return report


THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def save_weights_atomic(model, path: Path) -> None:
    """``model.save_weights`` through a temporary name beside ``path`` (Keras wants the ``.weights.h5``
    suffix), renamed into place: an interrupted write never leaves a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name[:-len('.weights.h5')]}.tmp.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def hardware_text() -> str:
    """CPU cores this process may use (its affinity) out of the machine's, and whether a GPU was seen."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    cores = f"{usable} CPU core{'s' if usable != 1 else ''}"
    if usable != os.cpu_count():
        cores += f" (of {os.cpu_count()}, pinned)"
    try:
        import tensorflow as tf  # deferred: thread settings of training.train.main() come first

        gpus = len(tf.config.list_physical_devices("GPU"))
    except Exception:
        gpus = 0
    return f"{platform.processor() or platform.machine()}, {cores}, " + (f"{gpus} GPU" if gpus else "no GPU")


def freeze_batchnorm(model) -> list:
    """Make every batch-norm layer of ``model`` non-trainable, which in Keras 3 also runs it in
    inference mode (its moving statistics, not the batch's, and no update of them): a fine-tune
    then cannot change the layers through batch statistics no loss sees. Returns their names."""
    import keras  # deferred: Keras/TensorFlow only after main() has set the thread variables

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.trainable = False
    return [layer.name for layer in layers]


def scale_flags(args, report) -> str:
    """The distribution/data options of a run for its recorded command ('' for the default path)."""
    flags = ""
    if report.get("distribute", "none") != "none":
        flags += f" --distribute {report['distribute']}"
    if report.get("data", "memory") != "memory":
        flags += f" --data {report['data']}"
    return flags


def ship(args, spec: ModelSpec, config, full, vocab, report, cfg, corpus, rows) -> None:
    """Write the weights into the package and the manifest (both copies)."""
    weights_dir = Path(getattr(args, "weights_dir", None) or PACKAGE_DIR / "weights")
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / f"{args.model}.weights.h5"
    save_weights_atomic(full, target)
    size = target.stat().st_size
    if size > 10 * 1024 * 1024:
        raise SystemExit(f"{target} is {size} bytes: the package limit is 10 MB per file")
    targets = [Path(p) for p in (getattr(args, "manifest", None) or [ROOT / "weights_manifest.json", PACKAGE_MANIFEST])]
    data = json.loads(targets[0].read_text())
    e = data["models"][args.model]
    e["config"] = config
    if e.get("head"):
        e["head"]["labels"] = list(vocab)
        e["layers"][e["head"]["output"]] = len(vocab)
    tag_vocab = report.get("tag_vocabulary")
    if spec.is_frame:
        if tag_vocab:
            e["aux_heads"] = [{"output": "tags", "labels": list(tag_vocab), "activation": "sigmoid"}]
            e["layers"]["tags"] = len(tag_vocab)
        else:
            e.pop("aux_heads", None)
            e["layers"].pop("tags", None)
    e["weights"] = {"kind": "file", "file": target.name, "sha256": file_sha256(target), "size": size}
    e["pretrained"] = True
    hours = {s: round(sum(float(r["duration"]) for r in rows[s] if not r.get("_root")) / 3600, 2) for s in rows}
    extra = report.get("extra_corpora_hours") or {}
    extra_text = ""
    if extra:
        fonts = sorted({r.get("soundfont", "?") for s in rows for r in rows[s] if r.get("_root")})
        extra_text = f"; plus the same scores rendered with {', '.join(fonts)} (hours {extra})"
    e["training"] = {
        "data": f"mirzoo public corpus: music21 scores rendered with FluidSynth + FluidR3_GM (seed {cfg.get('corpus_seed', 0)}); "
        f"hours per split {hours}{extra_text}; generalisation split rendered with TimGM6mb",
        "command": "".join(f"{k}={v} " for k, v in (report.get("threads") or {}).items())
        + f"python -m training.train --model {args.model} --config {args.config}{scale_flags(args, report)} --ship",
        "config": cfg,
        "best_epoch": report["best_epoch"],
        "train_minutes": round(report["train_minutes"], 1),
        "hardware": report["hardware"],
        "notes": "Trained from the seeded initialisation; best epoch chosen on the validation split.",
    }
    e["metrics"] = {
        k: {kk: vv for kk, vv in v.items() if not kk.endswith("roc_auc_per_tag")} for k, v in report["metrics"].items()
    }
    e["metrics"]["how"] = (
        "clip-level: mean of patch probabilities over each clip; macro ROC-AUC / PR-AUC over tags present "
        "and absent in the split" if spec.is_clip else
        "frame-level pitch-class activity thresholded at 0.5 (F1) and cosine similarity per active frame"
        + ("; tags_*: clip-level tag metrics of the frame-wise tag head averaged over each clip" if tag_vocab else "")
    )
    for path in targets:
        write_json_atomic(path, data)
    log.info("shipped %s (%d bytes) and updated the manifest", target, size)


def save_disk_model(full, spec: ModelSpec, config: dict, vocab: list[str], disk: dict, report: dict,
                    target: Path) -> Path:
    """Save a model trained on a data set on disk as a folder ``mirzoo.load`` reads (``Extractor.save``:
    Keras layout + ``mirzoo.json`` with sha256), its head labelled with the data set's classes."""
    from mirzoo.extractor import Extractor  # deferred: imports Keras (thread settings of main() first)

    entry = json.loads(json.dumps(dict(spec.entry)))
    entry.pop("name", None)
    entry.pop("hub", None)  # not the zoo model's hub repo: these weights are not there
    entry["config"] = config
    entry["layers"] = dict(entry["layers"], tags=len(vocab))
    activation = config.get("head_activation", "sigmoid")
    entry["head"] = {"output": "tags", "labels": list(vocab), "activation": activation,
                     "multilabel": disk["multilabel"]}
    if not disk["multilabel"]:
        entry["task"] = "classification"
    entry["pretrained"] = True
    kind = disk["data"].split(":", 1)[0]
    entry["description"] = f"{spec.name} trained on {disk['data']} ({len(vocab)} {'tags' if disk['multilabel'] else 'classes'})"
    entry["training"] = {
        "data": f"{disk['data']}: {disk['split']}; clips per split {disk.get('clips_used')}",
        "best_epoch": report["best_epoch"],
        "train_minutes": round(report["train_minutes"], 1),
        "hardware": report["hardware"],
        "notes": "Trained by training.train from the seeded initialisation; best epoch chosen on the validation split.",
    }
    entry["metrics"] = {k: {kk: vv for kk, vv in v.items() if not kk.endswith("roc_auc_per_tag")}
                        for k, v in report["metrics"].items()}
    model = Extractor(full, dict(entry, name=f"{spec.name}-{kind}"), source="training.train")
    return model.save(target, overwrite=True)


def ship_run(args) -> None:
    """Ship the best checkpoint of an earlier run (``--from-run``) without training again."""
    from mirzoo.nn import get_family  # deferred: imports Keras (thread settings first)

    run = Path(args.from_run)
    report = json.loads((run / "report.json").read_text())
    if report["model"] != args.model:
        raise SystemExit(f"{run} holds a run of {report['model']!r}, not {args.model!r}")
    cfg = json.loads(Path(args.config).read_text()) if args.config else {}
    spec = get_spec(args.model)
    config = json.loads(json.dumps(dict(spec.config)))
    if spec.is_clip:
        config["n_tags"] = len(report["vocabulary"])
    elif report.get("tag_vocabulary"):
        config["n_tags"] = len(report["tag_vocabulary"])
    else:
        config.pop("n_tags", None)
    full = get_family(spec.family)(config, name=args.model.replace("-", "_"))
    full.load_weights(run / "best.weights.h5")
    corpus = Path(args.corpus or cfg.get("corpus", "corpus"))
    rows = {s: read_metadata(corpus, s) for s in ("train", "valid", "test")}
    for folder in cfg.get("extra_corpora", []):  # only for the training record (no audio needed)
        for split in ("train", "valid"):
            rows[split] += [dict(r, _root=str(folder)) for r in read_metadata(Path(folder), split)]
    ship(args, spec, config, full, report["vocabulary"], report, cfg, corpus, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="zoo model name (cnn-tagging, crnn-tagging, dense-frame)")
    parser.add_argument("--config", help="JSON training config (training/configs/<model>.json)")
    parser.add_argument("--corpus", help="corpus folder (overrides the config)")
    parser.add_argument("--heldout", help="TimGM6mb test corpus folder (overrides the config)")
    parser.add_argument("--cache", help="audio cache folder (overrides the config)")
    parser.add_argument("--out", help="checkpoint/report folder (overrides the config)")
    parser.add_argument("--max-minutes", type=float, help="training time budget")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out after its last finished epoch (weights, best score, history, "
                        "learning rate; the optimizer's moments restart)")
    parser.add_argument("--ship", action="store_true", help="write weights into mirzoo/weights and the manifest")
    parser.add_argument("--manifest", action="append", help="manifest file(s) to update with --ship "
                        "(default: weights_manifest.json and mirzoo/weights_manifest.json)")
    parser.add_argument("--weights-dir", help="where --ship writes the weight file (default: mirzoo/weights)")
    parser.add_argument("--from-run", help="with --ship: ship the best checkpoint and report of this run folder "
                        "instead of training")
    parser.add_argument("--distribute", choices=["none", "auto", "mirrored", "data-parallel"],
                        help="data-parallel training over the local devices: 'mirrored' (tf.distribute.MirroredStrategy, "
                        "tensorflow backend), 'data-parallel' (keras.distribution.DataParallel, jax backend), 'auto' "
                        "(the one of the backend when there are several devices); default: config 'distribute' or none")
    parser.add_argument("--data", action="append", type=data_option, metavar="{memory,shards,KIND:PATH}",
                        help="where the clips come from and how they stream (give it twice for both): KIND:PATH trains "
                        "on a data set on disk, KIND one of mtat, gtzan, folder, csv (default: the corpus); 'memory': "
                        "random crops of the int16 audio cache (default); 'shards': a tf.data stream of TFRecord "
                        "shards (training/shards.py), written first when --shards holds none")
    parser.add_argument("--shards", help="shard folder for --data shards (default: config 'shards' or "
                        "<cache>/<corpus name>/shards-train)")
    parser.add_argument("--cpu-devices", type=int, help="split the host CPU into N logical devices before the "
                        "backend starts (runs the distributed path without accelerators; for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.cpu_devices:

        ts.split_host_cpu(args.cpu_devices)
    if args.from_run:
        ship_run(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
