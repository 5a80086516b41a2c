"""Train a zoo model further on real recordings, keeping its corpus tag head (issue 16, part 2):
musicnn's real-music tags distilled into it (2b), a contrastive self-supervised objective (2a), or both.

    python -m training.distill train --config training/configs/distill-cnn-tagging.json [--max-minutes M] [--resume]
    python -m training.distill train --config training/configs/ssl-cnn-tagging.json   # no teacher: contrastive
    python -m training.distill ship --run runs/distill-cnn-tagging [--name NAME] [--manifest PATH ...]

Self-supervised (config ``loss_weights.contrastive`` > 0, ``contrastive`` for its settings): the real
rows of each batch are pairs, an anchor patch and another 3-s segment of the same track group
(:meth:`RealData.positives`), each augmented on its own; a projection MLP (``ssl``, training only)
on the student's embedding is trained with NT-Xent (:func:`nt_xent`; SimCLR, Chen et al. 2020),
the other real rows of *other* track groups as negatives.  With ``head: null`` the run needs no
teacher at all.

Anchor (config ``loss_weights.anchor`` > 0, ``anchor`` for its settings): a frozen copy of the
pretrained student sees every batch too, and on the *corpus* rows (``anchor.rows``: ``"corpus"``, or
``"all"``) each of the named layers of the student (``anchor.layers``, default every ``extract()``
layer but the head; these are the pooled vectors a user probes) is pulled towards the frozen copy's
with a cosine loss: what the scores taught the embedding is kept (learning without forgetting; Li &
Hoiem 2017) while the real rows are free to move it.  Use it with ``freeze_batchnorm: true``: otherwise
the student's batch-norm layers normalise with the statistics of each mixed batch (and their moving
statistics drift towards the real audio, which no loss sees), so even a perfectly anchored student would
differ from the frozen copy at inference.  ``freeze_batchnorm`` keeps every batch norm in inference mode
with its pretrained statistics and scale.  Every run also reports, each epoch, a package probe on the real valid clips
(:func:`group_probe`), which the config's ``selection.probe`` can weigh in model selection.

The student is a zoo model (default ``cnn-tagging``) with its pretrained weights and one more sigmoid
head on its embedding, for the teacher's vocabulary (``MTT_musicnn``: the 50 MagnaTagATune tags that
``training/teacher.py`` records in ``<cache>/musicnn-0.1.0/meta.json``, which are musicnn's
``configuration.MTT_LABELS``).  Every batch mixes two sources:

* **real clips** (``python -m training.real build``) whose teacher outputs are cached
  (``python -m training.teacher``): one 3-s patch per example, *aligned* with a musicnn patch
  (:func:`teacher_patch_starts`), with the teacher's tag probabilities of that patch as soft
  binary cross-entropy targets and, optionally, its 200-d penultimate features (standardised per
  dimension) as targets of a small linear projection of the student's embedding (cosine or MSE);
* **corpus clips** (``python -m training.corpus build``) with their tags on the student's own
  (shipped) vocabulary, so that what the student learnt from the scores is kept.

Each output's loss only counts the examples of its source (per-example weights scaled so that each
loss is the mean over its own rows).  Validation after each epoch, and once before training
(epoch ``-1``: the pretrained student with its new, untrained head): agreement with the teacher on
the aligned patches of the real *valid* split (soft-label ROC-AUC, ROC-AUC against the teacher
thresholded at 0.5, and the distillation BCE; see :func:`teacher_agreement`; ``clip_*``: the same
AUCs on each clip's mean over its patches) and the corpus tag
ROC-AUC (clip means of the patch probabilities, as ``training.train``) on the corpus valid split.
The best epoch has the highest :func:`selection_score` among the epochs whose corpus ROC-AUC is
within ``max_corpus_auc_drop`` (default 0.01) of the pretrained student's (:func:`corpus_auc_kept`).

Deterministic (the seed of the config; each epoch draws from ``default_rng([seed, epoch])``) and
resumable: every epoch writes ``last.weights.h5`` (student and projection), the optimizer state and
``state.json``; ``--resume`` continues after the last finished epoch.  ``best.weights.h5`` is the
student at the best validation score.  ``ship`` writes that student as a manifest entry whose
``aux_heads`` holds the teacher's head.

Patch alignment.  musicnn (``musicnn/extractor.py`` ``batch_data``) computes a librosa mel
spectrogram (16 kHz, n_fft 512, hop 256, ``center=True``) of the whole clip and cuts it into
non-overlapping patches of ``n_frames = librosa.time_to_frames(3, sr=16000, n_fft=512,
hop_length=256) + 1 = 187`` frames (``range(0, frames - 187 + 1, 187)``), so patch ``k`` holds the
frames centred on samples ``47872 k + 256 i`` for ``i = 0 .. 186`` (a patch is 2.992 s, not 3 s).
mirzoo's ``cnn-tagging`` front-end (same n_fft and hop, ``center=True``) gives ``1 + 48000 // 256 =
188`` frames for a 48000-sample patch, centred on ``start + 256 i``; a student patch starting at
sample ``47872 k`` therefore has exactly the teacher's 187 frame centres, plus one frame 16 ms
later.  What differs: the edge frames (the student pads its patch by reflection where musicnn sees
the neighbouring audio) and the front-end itself (mirzoo's dB log-mel vs musicnn's log10(10000 x + 1)).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mirzoo.errors import ParameterError
from mirzoo.fileio import atomic_file, file_sha256, write_json_atomic
from mirzoo.spec import ModelSpec
from mirzoo.zoo.manifest import PACKAGE_DIR, PACKAGE_MANIFEST, get_spec
from training import teacher as tt
from training.data import audio_cache, read_metadata
from training.train import PatchSampler, augment, augment_config, hardware_text, multi_hot, predict_clips, tag_metrics
from training.train import freeze_batchnorm as freeze_bn
from training.train import save_weights_atomic

log = logging.getLogger("training.distill")

ROOT = Path(__file__).resolve().parents[1]

#: musicnn's signal settings (``musicnn/configuration.py``: SR, FFT_SIZE, FFT_HOP) and its 3-s input
MUSICNN_SR, MUSICNN_FFT_SIZE, MUSICNN_FFT_HOP, MUSICNN_SECONDS = 16000, 512, 256, 3.0
#: frames per musicnn patch: ``librosa.time_to_frames(3.0, sr, n_fft, hop) + 1``
#: (``floor((48000 - 512 // 2) / 256) + 1 = 187``)
MUSICNN_PATCH_FRAMES = (int(MUSICNN_SECONDS * MUSICNN_SR) - MUSICNN_FFT_SIZE // 2) // MUSICNN_FFT_HOP + 1
#: samples between the starts of two musicnn patches (187 x 256 = 47872)
MUSICNN_PATCH_HOP = MUSICNN_PATCH_FRAMES * MUSICNN_FFT_HOP

FEATURE_LOSSES = ("cosine", "mse", "none")
CONFIG_KEYS = {
    "seed", "student", "teacher_model", "head", "real", "teacher_cache", "corpus", "cache", "out",
    "batch_size", "real_fraction", "steps_per_epoch", "epochs", "patience", "learning_rate", "loss_weights",
    "feature_loss", "augment", "corpus_train_clips", "corpus_valid_clips", "min_real_valid_clips",
    "max_minutes", "selection", "max_corpus_auc_drop", "contrastive", "anchor", "freeze_batchnorm",
}
#: the contrastive objective's defaults (config ``contrastive``): NT-Xent temperature, projection MLP
CONTRASTIVE_DEFAULTS = {"temperature": 0.1, "hidden": 256, "dim": 128}
#: the anchor objective's defaults (config ``anchor``): layers (None: every extract() layer but the
#: tag head) and which rows of a batch it counts
ANCHOR_DEFAULTS = {"layers": None, "rows": "corpus"}
ANCHOR_ROWS = ("corpus", "all")


class DistillError(RuntimeError):
    """The distillation data or run folder is not what the command needs."""


# -- patch alignment -------------------------------------------------------------------------------


def teacher_patch_count(n_samples: int) -> int:
    """How many patches musicnn's ``batch_data`` cuts from ``n_samples`` samples at 16 kHz."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 0:
        raise ParameterError(f"n_samples={n_samples!r} must be a non-negative integer")
    frames = 1 + int(n_samples) // MUSICNN_FFT_HOP  # librosa center=True
    if frames < MUSICNN_PATCH_FRAMES:
        return 0
    return (frames - MUSICNN_PATCH_FRAMES) // MUSICNN_PATCH_FRAMES + 1


def teacher_patch_starts(n_samples: int) -> np.ndarray:
    """Start samples of the student patches aligned with musicnn's patches of an ``n_samples`` clip."""
    return np.arange(teacher_patch_count(n_samples), dtype=np.int64) * MUSICNN_PATCH_HOP


def aligned_patches(y: np.ndarray, length: int) -> np.ndarray:
    """``[P, length]`` float32 patches of ``y`` starting at :func:`teacher_patch_starts` (zero-padded at the end)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ParameterError(f"y must be a mono signal [samples], got shape {y.shape}")
    starts = teacher_patch_starts(y.shape[0])
    out = np.zeros((len(starts), int(length)), np.float32)
    for i, s in enumerate(starts):
        piece = y[s : s + length]
        out[i, : piece.shape[0]] = piece
    return out


# -- data ------------------------------------------------------------------------------------------


def real_rows(real: Path, split: str, teacher_cache: Optional[Path]) -> tuple[list[dict], int]:
    """Rows of ``split`` in ``<real>/metadata.csv`` whose teacher outputs are cached, and how many lack them
    (every row, none missing, when ``teacher_cache`` is None: a run without a teacher).

    Each row gets ``clip_id`` = its file's sha256 (the key of the teacher cache and of the audio cache).
    """
    if not (real / "metadata.csv").exists():
        raise DistillError(f"no metadata.csv in '{real}': expected a `python -m training.real build` folder")
    rows, missing = [], 0
    for r in read_metadata(real, split):
        if teacher_cache is None or tt.cache_file(teacher_cache, r["sha256"]).exists():
            rows.append(dict(r, clip_id=r["sha256"]))
        else:
            missing += 1
    return rows, missing


class RealData:
    """The real clips of one split: int16 audio cache, offsets, and per aligned patch the teacher's
    tags ``[P, n_tags]`` and penultimate features ``[P, D]`` (all patches of all clips stacked).

    Without a teacher (``teacher_cache=None``) every clip of the split is read, cut on the same
    patch grid, and ``tags``/``feats`` have no columns.  ``group_of_clip`` / ``group_of_patch`` number
    each clip's / patch's track group (the ``group`` column of ``training.real``: the unit of the
    split; ``package_of_group`` its package), for the contrastive objective's positives and negatives
    and the validation probe.
    """

    def __init__(self, real: Path, split: str, teacher_cache: Optional[Path], cache_dir: Path, sr: int,
                 model: Optional[str]):
        if sr != MUSICNN_SR:
            raise DistillError(f"the student runs at {sr} Hz; the teacher's patches are aligned at {MUSICNN_SR} Hz")
        self.rows, self.missing = real_rows(real, split, teacher_cache)
        self.split = split
        groups = sorted({(r["package"], r["group"]) for r in self.rows})
        self.groups = [f"{p}/{g}" for p, g in groups]
        self.package_of_group = [p for p, _ in groups]
        group_id = {k: i for i, k in enumerate(groups)}
        self.group_of_clip = np.asarray([group_id[(r["package"], r["group"])] for r in self.rows], np.int64)
        if not self.rows:
            self.audio, self.offsets = np.zeros(0, np.int16), np.zeros(1, np.int64)
            self.tags = self.feats = np.zeros((0, 0), np.float32)
            self.clip_of_patch = self.start_of_patch = self.group_of_patch = np.zeros(0, np.int64)
            self._patches_by_group = (np.zeros(0, np.int64), np.zeros(1, np.int64))
            return
        self.audio, self.offsets = audio_cache(real, self.rows, cache_dir, f"real-{split}", sr)
        tags, feats, clip_of, start_of = [], [], [], []
        for c, r in enumerate(self.rows):
            n = int(self.offsets[c + 1] - self.offsets[c])
            starts = teacher_patch_starts(n)
            if teacher_cache is not None:
                t = tt.load_targets(teacher_cache, r["sha256"])
                got = t[f"{model}/tags"].shape[0]
                if got != len(starts):
                    raise DistillError(
                        f"teacher cache of clip {r['path']} (sha256 {r['sha256']}) has {got} patches, but musicnn "
                        f"cuts {len(starts)} from its {n} samples: the cache was made from other audio")
                tags.append(t[f"{model}/tags"])
                feats.append(t[f"{model}/penultimate"])
            clip_of += [c] * len(starts)
            start_of += list(starts)
        self.tags = np.concatenate(tags).astype(np.float32) if tags else np.zeros((len(clip_of), 0), np.float32)
        self.feats = np.concatenate(feats).astype(np.float32) if feats else np.zeros((len(clip_of), 0), np.float32)
        self.clip_of_patch = np.asarray(clip_of, np.int64)
        self.start_of_patch = np.asarray(start_of, np.int64)
        self.group_of_patch = self.group_of_clip[self.clip_of_patch]
        # the patches of group g are order[bounds[g]:bounds[g + 1]]
        order = np.argsort(self.group_of_patch, kind="stable")
        self._patches_by_group = (order, np.searchsorted(self.group_of_patch[order], np.arange(len(groups) + 1)))

    def positives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each anchor patch, another patch of the same track group drawn by ``rng`` (another
        segment of the same music: the contrastive objective's positive); the anchor itself only
        where its group has a single patch."""
        order, bounds = self._patches_by_group
        out = np.empty_like(anchors)
        for i, a in enumerate(anchors):
            g = self.group_of_patch[a]
            lo, hi = bounds[g], bounds[g + 1]
            if hi - lo < 2:
                out[i] = a
                continue
            k = lo + rng.integers(0, hi - lo - 1)
            # skip the anchor itself: draw among the others
            out[i] = order[k] if order[k] != a else order[hi - 1]
        return out

    @property
    def n_patches(self) -> int:
        return int(self.clip_of_patch.size)

    def patches(self, index: np.ndarray, length: int) -> np.ndarray:
        """Waveforms ``[len(index), length]`` of the aligned patches ``index`` (zero-padded at a clip's end)."""
        x = np.zeros((len(index), length), np.float32)
        for i, p in enumerate(index):
            c, s = self.clip_of_patch[p], self.start_of_patch[p]
            end = self.offsets[c + 1]
            piece = self.audio[self.offsets[c] + s : min(end, self.offsets[c] + s + length)]
            x[i, : piece.size] = piece.astype(np.float32) / 32768.0
        return x

    def hours(self) -> float:
        return float(sum(float(r["duration_s"]) for r in self.rows) / 3600)


def data_record(real_train: RealData, real_valid: RealData, corpus: Path, corpus_rows: dict,
                teacher: bool = True) -> dict:
    """What the run learns from, for the model card: hours per source, licences, commercial use."""
    packages: dict = {}
    licences: dict = {}
    commercial: dict = {}
    for r in real_train.rows:
        h = float(r["duration_s"]) / 3600
        p = packages.setdefault(r["package"], {"version": r["version"], "hours": 0.0, "clips": 0, "licences": {}})
        p["hours"] += h
        p["clips"] += 1
        p["licences"][r["licence"]] = p["licences"].get(r["licence"], 0.0) + h
        licences[r["licence"]] = licences.get(r["licence"], 0.0) + h
        commercial[r["commercial"]] = commercial.get(r["commercial"], 0.0) + h

    def rounded(d):
        return {k: (rounded(v) if isinstance(v, dict) else round(v, 3) if isinstance(v, float) else v)
                for k, v in d.items()}

    corpus_hours = {s: round(sum(float(r["duration"]) for r in rows) / 3600, 3) for s, rows in corpus_rows.items()}
    fonts = sorted({r.get("soundfont", "?") for rows in corpus_rows.values() for r in rows})
    return {
        "real": {
            "hours_train": round(real_train.hours(), 3), "clips_train": len(real_train.rows),
            "train_clips_without_teacher_targets": real_train.missing,
            "hours_valid": round(real_valid.hours(), 3),
            "clips_valid": len(real_valid.rows),
            "packages": rounded(packages), "licences_hours": rounded(licences),
            "commercial_hours": rounded(commercial),
            "commercial_use": "yes" if real_train.rows and set(commercial) == {"yes"} else
            ("no" if "no" in commercial else "unknown"),
        },
        "corpus": {"folder": str(corpus), "hours": corpus_hours, "soundfonts": fonts},
        "teacher": {"name": tt.TEACHER, "licence": tt.LICENCE, "attribution": tt.ATTRIBUTION} if teacher else None,
    }


def teacher_labels(teacher_cache: Path, model: str) -> list[str]:
    """The teacher's tag vocabulary as ``training.teacher`` recorded it (``meta.json``)."""
    meta = Path(teacher_cache) / tt.TEACHER / "meta.json"
    if not meta.exists():
        raise DistillError(f"no {meta}: run `python -m training.teacher` first (it records the tag vocabularies)")
    labels = json.loads(meta.read_text(encoding="utf-8")).get("labels", {}).get(model)
    if not labels:
        raise DistillError(f"{meta} records no labels for teacher model {model!r}")
    return list(labels)


# -- metrics ---------------------------------------------------------------------------------------


def soft_roc_auc(teacher: np.ndarray, student: np.ndarray) -> float:
    """ROC-AUC of ``student`` scores against the soft labels ``teacher`` in [0, 1].

    Each example counts as a positive with weight ``p`` and as a negative with weight ``1 - p``;
    the result is the weighted share of (positive, negative) pairs the student orders like that,
    ties counting half: ``sum_ij p_i (1 - p_j) [s_i > s_j] / (sum_i p_i * sum_j (1 - p_j))``.  With
    0/1 labels it is the ordinary ROC-AUC.  An example paired with itself is a tie (a bias
    towards 0.5 of ``sum_i p_i (1 - p_i) / (sum p * sum (1 - p))``, about ``1 / n``).
    NaN when all weight is on one side.
    """
    from sklearn.metrics import roc_auc_score  # deferred: optional dependency (scikit-learn)

    p = np.clip(np.asarray(teacher, np.float64), 0, 1)
    if p.sum() <= 1e-9 or (1 - p).sum() <= 1e-9:
        return float("nan")
    s = np.asarray(student, np.float64)
    y = np.r_[np.ones_like(p), np.zeros_like(p)]
    return float(roc_auc_score(y, np.r_[s, s], sample_weight=np.r_[p, 1 - p]))


def teacher_agreement(teacher: np.ndarray, student: np.ndarray, labels: Sequence[str]) -> dict:
    """Agreement of student and teacher tag probabilities ``[patches, tags]`` on aligned patches.

    ``auc_soft_macro``: :func:`soft_roc_auc` per tag, mean over tags; ``auc_hard_macro``: ROC-AUC
    against the teacher thresholded at 0.5, mean over the tags with both classes
    (``n_tags_hard``); ``bce``: mean binary cross-entropy of the student against the teacher (the
    distillation loss, without augmentation); ``kl``: ``bce`` minus the teacher's own entropy
    (0 when the student copies the teacher).
    """
    from sklearn.metrics import roc_auc_score  # deferred: optional dependency (scikit-learn)

    t = np.asarray(teacher, np.float64)
    s = np.clip(np.asarray(student, np.float64), 1e-7, 1 - 1e-7)
    soft = {labels[j]: soft_roc_auc(t[:, j], s[:, j]) for j in range(t.shape[1])}
    soft = {k: v for k, v in soft.items() if np.isfinite(v)}
    hard = {}
    for j in range(t.shape[1]):
        y = t[:, j] >= 0.5
        if 0 < y.sum() < y.size:
            hard[labels[j]] = float(roc_auc_score(y, s[:, j]))
    bce = -(t * np.log(s) + (1 - t) * np.log(1 - s)).mean()
    tc = np.clip(t, 1e-7, 1 - 1e-7)
    entropy = -(tc * np.log(tc) + (1 - tc) * np.log(1 - tc)).mean()
    return {
        "auc_soft_macro": float(np.mean(list(soft.values()))) if soft else float("nan"),
        "auc_hard_macro": float(np.mean(list(hard.values()))) if hard else float("nan"),
        "bce": float(bce), "kl": float(bce - entropy),
        "n_patches": int(t.shape[0]), "n_tags_soft": len(soft), "n_tags_hard": len(hard),
    }


def group_probe(embeddings: np.ndarray, group: np.ndarray, label: np.ndarray) -> dict:
    """Which package a clip is from, by its nearest neighbour (cosine) among the clips of *other*
    track groups: leave-one-group-out 1-NN balanced accuracy, the validation stand-in for the
    real-audio benchmark (its labels are the package; no clip is matched with its own track).

    ``embeddings [n, D]`` (one row per clip), ``group [n]`` and ``label [n]`` integers.  NaN when
    fewer than two labels have a clip with a neighbour of its label in another group.
    """
    from sklearn.metrics import balanced_accuracy_score  # deferred: optional dependency (scikit-learn)

    e = np.asarray(embeddings, np.float64)
    e = e - e.mean(axis=0)
    e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-12
    sim = e @ e.T
    sim[np.asarray(group)[:, None] == np.asarray(group)[None, :]] = -np.inf
    has = np.isfinite(sim).any(axis=1)
    if len(set(np.asarray(label)[has].tolist())) < 2:
        return {"balanced_accuracy": float("nan"), "n_clips": int(has.sum())}
    pred = np.asarray(label)[np.argmax(sim[has], axis=1)]
    return {"balanced_accuracy": float(balanced_accuracy_score(np.asarray(label)[has], pred)),
            "n_clips": int(has.sum()), "n_groups": int(len(set(np.asarray(group).tolist())))}


def nt_xent(temperature: float):
    """NT-Xent (SimCLR's normalised temperature-scaled cross-entropy) as a Keras loss.

    ``y_true [B, 2]``: per row its pair id and its track group id, ``-1`` for rows outside the
    objective (corpus clips; their loss is 0 and their sample weight 0); ``y_pred [B, D]``: the
    projections.  For row ``i`` the positive is the other row of its pair; the candidates are every
    other objective row of another group (rows of the anchor's own group are neither positive nor
    negative: two segments of one track are not a "different music" example), and the loss is
    ``-log exp(s_ip / t) / (exp(s_ip / t) + sum_n exp(s_in / t))`` with cosine similarities ``s``.
    """
    import keras  # deferred: see build_student

    ops = keras.ops
    t = float(temperature)

    def loss(y_true, y_pred):
        pair, group = y_true[:, 0], y_true[:, 1]
        z = y_pred / (ops.sqrt(ops.sum(ops.square(y_pred), axis=1, keepdims=True)) + 1e-12)
        sim = ops.matmul(z, ops.transpose(z)) / t
        used = pair >= 0
        n = ops.shape(y_pred)[0]
        not_self = ops.logical_not(ops.cast(ops.eye(n), "bool"))
        pos = ops.logical_and(ops.equal(pair[:, None], pair[None, :]), not_self)
        pos = ops.logical_and(pos, used[:, None])
        neg = ops.logical_and(ops.not_equal(group[:, None], group[None, :]), used[None, :])
        keep = ops.logical_or(pos, neg)
        logits = ops.where(keep, sim, -1e9)
        log_norm = ops.logsumexp(logits, axis=1)
        n_pos = ops.maximum(ops.sum(ops.cast(pos, y_pred.dtype), axis=1), 1.0)
        pos_logit = ops.sum(ops.where(pos, sim, 0.0), axis=1) / n_pos
        return ops.where(used, log_norm - pos_logit, 0.0)

    loss.__name__ = "nt_xent"
    return loss


# -- model -----------------------------------------------------------------------------------------


def anchor_layers(student: str, anchor: dict) -> list[str]:
    """The student layers the anchor objective holds: ``anchor["layers"]``, checked against the
    model's ``extract()`` layers, or all of them but the tag head."""
    spec = get_spec(student)
    names = [n for n in spec.layers if n != "tags"]
    layers = anchor.get("layers")
    if layers is None:
        return names
    if isinstance(layers, str) or not isinstance(layers, list) or not layers:
        raise DistillError(f"anchor.layers={layers!r} must be a non-empty list of layer names of {student!r}: "
                           f"{names}")
    bad = [n for n in layers if n not in names]
    if bad:
        raise DistillError(f"anchor.layers {bad} are not layers of {student!r}; expected some of {names}")
    return list(layers)


def build_student(student: str, head: Optional[str], n_teacher: int, feature_dim: int, feature_loss: str,
                  seed: int, contrastive: Optional[dict] = None, anchor: Optional[list] = None,
                  freeze_batchnorm: bool = False):
    """``(full student, training model, student config, frozen anchor model or None)``.

    The full student is the zoo model's family with ``extra_heads = {head: n_teacher}`` (no extra
    head when ``head`` is None: a run without a teacher); every layer it shares with the zoo model
    gets the zoo model's verified weights; the new head (and, training only, the projection to the
    teacher's features and the contrastive projection MLP ``ssl``) start from Keras initialisers
    seeded by ``seed``.  With ``anchor`` (layer names), the training model also outputs those layers
    (``anchor_<layer>``) and the frozen anchor model is the pretrained student with the same outputs.
    ``freeze_batchnorm`` makes every batch-norm layer of the student non-trainable, which in Keras 3
    also runs it in inference mode (its moving statistics, not the batch's, and no update of them).
    """
    import keras  # deferred: Keras only after the command line is parsed

    from mirzoo.nn import get_family  # deferred: imports Keras
    from mirzoo.zoo.registry import build_from_spec  # deferred: imports Keras

    spec = get_spec(student)
    if not spec.is_clip or "tags" not in spec.layers:
        raise DistillError(f"student {student!r} must be a clip model with a 'tags' head (as cnn-tagging)")
    own = dict(spec.config.get("extra_heads") or {})
    if head in spec.layers and own.get(head) != int(n_teacher):
        raise DistillError(
            f"head={head!r} is already a layer of {student!r} {sorted(spec.layers)} (not a teacher head of "
            f"{n_teacher} tags): choose another name")
    # a student shipped by an earlier distillation already has the head: it goes on training it
    config = json.loads(json.dumps(dict(spec.config)))
    if head is not None:
        config["extra_heads"] = dict(config.get("extra_heads") or {}, **{head: int(n_teacher)})
    keras.utils.set_random_seed(seed)
    full = get_family(spec.family)(config, name=student.replace("-", "_"))
    if head is not None and head not in full.output:
        raise DistillError(f"family {spec.family!r} of {student!r} does not build config['extra_heads'] "
                           f"(outputs {sorted(full.output)}); the 'cnn' and 'crnn' families do")
    base = build_from_spec(spec)  # the zoo model with its sha256-checked weights
    copied = 0
    for layer in base.layers:
        if layer.weights:
            full.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    log.info("student %s: %d layers from the zoo weights, new head %r (%d tags)", student, copied, head, n_teacher)
    if freeze_batchnorm:
        log.info("batch norm frozen in inference mode: %d layers", len(freeze_bn(full)))
    outputs = {"tags": full.output["tags"]}
    if head is not None:
        outputs[head] = full.output[head]
    if head is not None and feature_loss != "none":
        outputs["features"] = keras.layers.Dense(feature_dim, name="teacher_projection")(full.output["embedding"])
    if contrastive is not None:
        c = {**CONTRASTIVE_DEFAULTS, **contrastive}
        h = keras.layers.Dense(int(c["hidden"]), activation="relu", name="ssl_hidden")(full.output["embedding"])
        outputs["ssl"] = keras.layers.Dense(int(c["dim"]), name="ssl_projection")(h)
    frozen = None
    if anchor:
        for name in anchor:
            outputs[f"anchor_{name}"] = full.output[name]  # the extract() layers are outputs of the family
        base.trainable = False
        frozen = keras.Model(base.input, {f"anchor_{n}": base.output[n] for n in anchor},
                             name=f"{full.name}_anchor")
    model = keras.Model(full.input, outputs, name=f"{full.name}_distill")
    return full, model, config, frozen


def loss_weights_of(cfg: dict) -> dict:
    """The config's loss weights over their defaults (``contrastive`` 0: no self-supervised objective)."""
    return {"distill": 1.0, "features": 0.5, "corpus": 1.0, "contrastive": 0.0, "anchor": 0.0,
            **(cfg.get("loss_weights") or {})}


def compile_model(model, head: Optional[str], cfg: dict) -> None:
    import keras  # deferred: see build_student

    weights = loss_weights_of(cfg)
    losses = {"tags": "binary_crossentropy"}
    loss_weights = {"tags": float(weights["corpus"])}
    if head is not None:
        losses[head] = "binary_crossentropy"
        loss_weights[head] = float(weights["distill"])
    if "features" in model.output:
        losses["features"] = "cosine_similarity" if cfg.get("feature_loss", "cosine") == "cosine" else "mse"
        loss_weights["features"] = float(weights["features"])
    if "ssl" in model.output:
        losses["ssl"] = nt_xent(float({**CONTRASTIVE_DEFAULTS, **(cfg.get("contrastive") or {})}["temperature"]))
        loss_weights["ssl"] = float(weights["contrastive"])
    anchors = [k for k in model.output if k.startswith("anchor_")]
    for k in anchors:  # the anchor weight shared by its layers
        losses[k] = "cosine_similarity"
        loss_weights[k] = float(weights["anchor"]) / len(anchors)
    model.compile(optimizer=keras.optimizers.Adam(float(cfg.get("learning_rate", 3e-4))), loss=losses,
                  loss_weights=loss_weights)
    model.optimizer.build(model.trainable_variables)


def random_state(model) -> list:
    """The model's variables that ``save_weights`` leaves out: the dropout seed generators' states."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def save_optimizer(model, path: Path) -> None:
    """The optimizer's variables and the dropout random state, so that a resumed run continues exactly."""
    import keras  # deferred: see build_student

    arrays = {f"v{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    arrays.update({f"r{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(random_state(model))})
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_optimizer(model, path: Path) -> None:
    with np.load(path) as z:
        values = [z[k] for k in sorted(z.files) if k.startswith("v")]
        rand = [z[k] for k in sorted(z.files) if k.startswith("r")]
    variables, states = model.optimizer.variables, random_state(model)
    if len(values) != len(variables) or len(rand) != len(states):
        raise DistillError(f"optimizer state {path} holds {len(values)} + {len(rand)} variables, the model's optimizer "
                           f"and random state {len(variables)} + {len(states)}")
    for v, value in zip(list(variables) + states, values + rand):
        v.assign(value)


# -- training --------------------------------------------------------------------------------------


def real_rows_per_batch(cfg: dict) -> int:
    """How many rows of a batch are real clips: ``batch_size x real_fraction``, rounded, at least 1."""
    return max(1, int(round(int(cfg.get("batch_size", 32)) * float(cfg.get("real_fraction", 0.5)))))


def load_config(path: os.PathLike) -> dict:
    cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise DistillError(f"config {path}: unknown keys {sorted(unknown)}; expected some of {sorted(CONFIG_KEYS)}")
    frac = cfg.get("real_fraction", 0.5)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise DistillError(f"config {path}: real_fraction={frac!r} must be a number in (0, 1]")
    if cfg.get("feature_loss", "cosine") not in FEATURE_LOSSES:
        raise DistillError(f"config {path}: feature_loss={cfg['feature_loss']!r} must be one of {FEATURE_LOSSES}")
    weights = loss_weights_of(cfg)
    bad = {k: v for k, v in weights.items()
           if k not in ("distill", "features", "corpus", "contrastive", "anchor") or isinstance(v, bool)
           or not isinstance(v, (int, float)) or v < 0}
    if bad:
        raise DistillError(f"config {path}: loss_weights {bad} must be numbers >= 0 for keys distill, features, "
                           "corpus, contrastive, anchor")
    contrastive = cfg.get("contrastive") or {}
    if not isinstance(contrastive, dict) or set(contrastive) - set(CONTRASTIVE_DEFAULTS):
        raise DistillError(f"config {path}: contrastive={contrastive!r} must be an object with some of "
                           f"{sorted(CONTRASTIVE_DEFAULTS)}")
    anchor = cfg.get("anchor") or {}
    if not isinstance(anchor, dict) or set(anchor) - set(ANCHOR_DEFAULTS):
        raise DistillError(f"config {path}: anchor={anchor!r} must be an object with some of {sorted(ANCHOR_DEFAULTS)}")
    if anchor.get("rows", "corpus") not in ANCHOR_ROWS:
        raise DistillError(f"config {path}: anchor.rows={anchor['rows']!r} must be one of {ANCHOR_ROWS}")
    if weights["anchor"]:
        try:
            anchor_layers(cfg.get("student", "cnn-tagging"), anchor)
        except DistillError as e:
            raise DistillError(f"config {path}: {e}") from None
    if not isinstance(cfg.get("freeze_batchnorm", False), bool):
        raise DistillError(f"config {path}: freeze_batchnorm={cfg['freeze_batchnorm']!r} must be true or false")
    if cfg.get("head", "mtt_tags") is None:
        if weights["distill"] or (weights["features"] and cfg.get("feature_loss", "cosine") != "none"):
            raise DistillError(f"config {path}: head=null (no teacher) needs loss_weights distill 0 and "
                               "feature_loss 'none'")
        if not weights["contrastive"]:
            raise DistillError(f"config {path}: head=null (no teacher) and contrastive weight 0 leave nothing to "
                               "learn from the real clips")
    if weights["contrastive"]:
        n_real = real_rows_per_batch(cfg)
        if n_real < 4 or n_real % 2:
            raise DistillError(f"config {path}: the contrastive objective pairs the real rows of a batch: "
                               f"batch_size x real_fraction = {n_real} must be even and at least 4")
    try:
        augment_config(cfg)
    except SystemExit as e:
        raise DistillError(f"config {path}: {e}") from None
    return cfg


def subset(rows: list[dict], count: int, seed: int) -> list[dict]:
    """``count`` rows drawn without replacement by ``seed`` (in their original order); all when 0."""
    if not count or count >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=int(count), replace=False))
    return [rows[i] for i in keep]


def evaluate(full, head: Optional[str], real_valid: RealData, labels: list[str], corpus_valid, vocab: list[str],
             length: int, hop: int, batch: int = 32) -> dict:
    """Teacher agreement on the real valid patches (with a teacher head), the package probe on the
    real valid clips' mean embeddings (:func:`group_probe`) and corpus tag metrics on the corpus
    valid clips."""
    import keras  # deferred: see build_student

    out: dict = {}
    if real_valid.n_patches:
        outputs = {"embedding": full.output["embedding"]}
        if head is not None:
            outputs[head] = full.output[head]
        probe = keras.Model(full.input, outputs)
        preds, embs = [], []
        for lo in range(0, real_valid.n_patches, batch):
            x = real_valid.patches(np.arange(lo, min(lo + batch, real_valid.n_patches)), length)
            y = probe.predict_on_batch(x)
            embs.append(np.asarray(y["embedding"]))
            if head is not None:
                preds.append(np.asarray(y[head]))
        # clip level, as a user of tag() and extract() sees it: means over each clip's aligned patches
        n_clips = len(real_valid.rows)
        count = np.bincount(real_valid.clip_of_patch, minlength=n_clips)[:, None]

        def clip_mean(a):
            sums = [np.bincount(real_valid.clip_of_patch, a[:, j], n_clips) for j in range(a.shape[1])]
            return np.stack(sums, axis=1) / np.maximum(count, 1)

        clip_group = real_valid.group_of_clip
        package_ids = {p: i for i, p in enumerate(sorted(set(real_valid.package_of_group)))}
        clip_package = np.asarray([package_ids[real_valid.package_of_group[g]] for g in clip_group])
        seen = count[:, 0] > 0
        out["real_probe"] = group_probe(clip_mean(np.concatenate(embs))[seen], clip_group[seen], clip_package[seen])
        if head is not None:
            preds = np.concatenate(preds)
            out["real_valid"] = teacher_agreement(real_valid.tags, preds, labels)
            clip = teacher_agreement(clip_mean(real_valid.tags), clip_mean(preds), labels)
            out["real_valid"].update(
                {f"clip_{k}": v for k, v in clip.items() if k in ("auc_soft_macro", "auc_hard_macro")})
    if corpus_valid is not None:
        rows, aud, y = corpus_valid
        probe = keras.Model(full.input, full.output["tags"])
        m = tag_metrics(y, predict_clips(probe, *aud, length, hop), vocab)
        m.pop("roc_auc_per_tag")
        out["corpus_valid"] = m
    return out


def selection_score(metrics: dict, cfg: dict) -> float:
    """Weighted mean of the real valid soft AUC (``real``), the package probe's balanced accuracy
    (``probe``, default weight 0) and the corpus valid ROC-AUC (``corpus``) (config ``selection``)."""
    w = {"real": 0.5, "corpus": 0.5, "probe": 0.0, **(cfg.get("selection") or {})}
    parts = []
    if "real_valid" in metrics:
        parts.append((w["real"], metrics["real_valid"]["auc_soft_macro"]))
    if w["probe"] and np.isfinite((metrics.get("real_probe") or {}).get("balanced_accuracy", float("nan"))):
        parts.append((w["probe"], metrics["real_probe"]["balanced_accuracy"]))
    if "corpus_valid" in metrics:
        parts.append((w["corpus"], metrics["corpus_valid"]["roc_auc_macro"]))
    total = sum(a for a, _ in parts)
    return float(sum(a * v for a, v in parts) / total) if total else float("nan")


def corpus_auc_kept(metrics: dict, before: dict, cfg: dict) -> bool:
    """Whether the corpus valid ROC-AUC is at most ``max_corpus_auc_drop`` (default 0.01: the issue's
    "no loss above 1 point") below the pretrained student's (epoch -1); an epoch that lost more
    cannot become the best one."""
    drop = float(cfg.get("max_corpus_auc_drop", 0.01))
    if "corpus_valid" not in metrics or "corpus_valid" not in before:
        return True
    return metrics["corpus_valid"]["roc_auc_macro"] >= before["corpus_valid"]["roc_auc_macro"] - drop


def train(args) -> dict:
    cfg = load_config(args.config)
    seed = int(cfg.get("seed", 0))
    student = cfg.get("student", "cnn-tagging")
    head = cfg.get("head", "mtt_tags")
    model_name = cfg.get("teacher_model", "MTT_musicnn") if head is not None else None
    if head is not None and model_name not in tt.MODELS:
        raise DistillError(f"teacher_model={model_name!r} must be one of {tt.MODELS}")
    weights = loss_weights_of(cfg)
    contrastive = {**CONTRASTIVE_DEFAULTS, **(cfg.get("contrastive") or {})} if weights["contrastive"] else None
    anchor_cfg = {**ANCHOR_DEFAULTS, **(cfg.get("anchor") or {})}
    anchored = anchor_layers(student, anchor_cfg) if weights["anchor"] else None
    real = Path(args.real or cfg.get("real", "real"))
    teacher_cache = Path(args.teacher_cache or cfg.get("teacher_cache", "teacher")) if head is not None else None
    corpus = Path(args.corpus or cfg.get("corpus", "corpus"))
    cache = Path(args.cache or cfg.get("cache", "cache-distill"))
    out = Path(args.out or cfg.get("out", f"runs/distill-{student}"))
    feature_loss = cfg.get("feature_loss", "cosine")
    spec = get_spec(student)
    sr, length, hop = spec.sample_rate, spec.patch_samples, spec.patch_hop_samples
    labels = teacher_labels(teacher_cache, model_name) if head is not None else []
    vocab = list(spec.head.labels)

    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if args.resume and state_path.exists() else None
    if args.resume and state is None:
        log.warning("--resume: no %s yet, starting a new run", state_path)

    t0 = time.time()
    # the cheap checks first: no audio is decoded for a run that cannot start
    valid_rows, valid_missing = real_rows(real, "valid", teacher_cache)
    min_valid = int(cfg.get("min_real_valid_clips", 20))
    if len(valid_rows) < min_valid:
        raise DistillError(
            f"only {len(valid_rows)} valid clips of {real} have teacher targets ({valid_missing} lack them; "
            f"min_real_valid_clips={min_valid}): run `python -m training.teacher --real {real} --split valid "
            f"--cache {teacher_cache}` first")
    if not real_rows(real, "train", teacher_cache)[0]:
        raise DistillError(f"no train clip of {real} has teacher targets in {teacher_cache}: run "
                           f"`python -m training.teacher --real {real} --split train --cache {teacher_cache}`")
    real_train = RealData(real, "train", teacher_cache, cache / real.name, sr, model_name)
    real_valid = RealData(real, "valid", teacher_cache, cache / real.name, sr, model_name)
    log.info("real clips with teacher targets: train %d (%.2f h; %d without), valid %d (%d without)",
             len(real_train.rows), real_train.hours(), real_train.missing, len(real_valid.rows), real_valid.missing)
    corpus_rows = {s: subset(read_metadata(corpus, s), int(cfg.get(f"corpus_{s}_clips", 0)), seed)
                   for s in ("train", "valid")}
    if not corpus_rows["train"]:
        raise DistillError(f"no train clips in {corpus}/metadata.csv")
    corpus_audio = {s: audio_cache(corpus, corpus_rows[s], cache / corpus.name, f"{s}-{len(corpus_rows[s])}", sr)
                    for s in corpus_rows if corpus_rows[s]}
    corpus_y = {s: multi_hot(corpus_rows[s], vocab) for s in corpus_rows}
    absent = [t for j, t in enumerate(vocab) if corpus_y["train"][:, j].sum() == 0]
    if absent:
        log.warning("tags of %s's head with no corpus train clip (their head only learns 'absent'): %s",
                    student, absent)
    corpus_valid = (corpus_rows["valid"], corpus_audio["valid"], corpus_y["valid"]) if corpus_rows["valid"] else None
    log.info("data ready in %.0f s: corpus train %d clips, valid %d", time.time() - t0, len(corpus_rows["train"]),
             len(corpus_rows["valid"]))

    # teacher features standardised per dimension with the training patches' statistics (kept on resume)
    if state is not None:
        f_mean, f_std = np.asarray(state["feature_mean"], np.float32), np.asarray(state["feature_std"], np.float32)
    else:
        f_mean, f_std = real_train.feats.mean(axis=0), real_train.feats.std(axis=0) + 1e-3
    full, model, student_config, frozen = build_student(student, head, len(labels), real_train.feats.shape[1],
                                                        feature_loss, seed, contrastive, anchored,
                                                        bool(cfg.get("freeze_batchnorm", False)))
    compile_model(model, head, cfg)
    out.mkdir(parents=True, exist_ok=True)
    if state is not None:
        model.load_weights(out / "last.weights.h5")
        load_optimizer(model, out / "last.optimizer.npz")
        log.info("resumed after epoch %d (best %.4f at epoch %d)", state["epoch"] - 1, state["best"],
                 state["best_epoch"])
    else:
        before = evaluate(full, head, real_valid, labels, corpus_valid, vocab, length, hop)
        log.info("before distillation: %s", before)
        state = {"epoch": 0, "best": -1e9, "best_epoch": -1, "steps": 0, "minutes": 0.0,
                 "history": [{"epoch": -1, **before}], "feature_mean": f_mean.tolist(), "feature_std": f_std.tolist()}

    batch = int(cfg.get("batch_size", 32))
    n_real = real_rows_per_batch(cfg)
    n_corpus = batch - n_real
    aug = cfg.get("augment", {})
    steps = int(cfg.get("steps_per_epoch", 100))
    patience = int(cfg.get("patience", 6))
    started = time.time()
    deadline = started + 60 * float(args.max_minutes or cfg.get("max_minutes", 60))
    hardware = hardware_text()
    record = data_record(real_train, real_valid, corpus, corpus_rows, teacher=head is not None)
    command = "python -m training.distill train --config " + shlex.quote(str(args.config)) + "".join(
        f" --{k.replace('_', '-')} {shlex.quote(str(getattr(args, k)))}"
        for k in ("real", "teacher_cache", "corpus", "cache", "out") if getattr(args, k, None))
    with_features = "features" in model.output
    n_pairs = n_real // 2 if contrastive is not None else 0
    w_real = np.r_[np.full(n_real, batch / n_real), np.zeros(n_corpus)].astype(np.float32)
    w_corpus = np.r_[np.zeros(n_real), np.full(n_corpus, batch / max(n_corpus, 1))].astype(np.float32)
    w_anchor = w_corpus if anchor_cfg["rows"] == "corpus" else np.ones(batch, np.float32)
    if frozen is not None and anchor_cfg["rows"] == "corpus" and not n_corpus:
        raise DistillError("anchor.rows='corpus' with real_fraction 1 leaves no corpus row to anchor")
    while state["epoch"] < int(cfg.get("epochs", 40)) and time.time() < deadline:
        epoch = state["epoch"]
        # every epoch draws from its own generator: a resumed run sees the batches an uninterrupted one sees
        rng = np.random.default_rng([seed, epoch])
        sampler = PatchSampler(*corpus_audio["train"], corpus_y["train"], length, hop, rng)
        te = time.time()
        losses: dict = {}
        done = 0
        for _ in range(steps):
            if n_pairs:  # anchors, then for each another segment of its track group (a different draw of
                # the generator than a run without the objective: the two kinds of run are not comparable
                # batch by batch anyway)
                anchors = rng.integers(0, real_train.n_patches, n_pairs)
                idx = np.r_[anchors, real_train.positives(anchors, rng)]
            else:
                idx = rng.integers(0, real_train.n_patches, n_real)
            xr = real_train.patches(idx, length)
            if n_corpus:
                xc, yc = sampler.batch(n_corpus)
            else:
                xc, yc = np.zeros((0, length), np.float32), np.zeros((0, len(vocab)), np.float32)
            x = augment(np.concatenate([xr, xc]), rng, aug)
            y = {"tags": np.concatenate([np.zeros((n_real, len(vocab)), np.float32), yc])}
            w = {"tags": w_corpus}
            if head is not None:
                y[head] = np.concatenate([real_train.tags[idx], np.zeros((n_corpus, len(labels)), np.float32)])
                w[head] = w_real
            if n_pairs:
                ids = np.full((batch, 2), -1, np.float32)
                ids[:n_real, 0] = np.r_[np.arange(n_pairs), np.arange(n_pairs)]
                ids[:n_real, 1] = real_train.group_of_patch[idx]
                y["ssl"], w["ssl"] = ids, w_real
            if with_features:
                f = (real_train.feats[idx] - f_mean) / f_std
                y["features"] = np.concatenate([f, np.zeros((n_corpus, f.shape[1]), np.float32)]).astype(np.float32)
                w["features"] = w_real
            if frozen is not None:  # the pretrained student's layers on the same (augmented) batch
                for k, v in frozen.predict_on_batch(x).items():
                    y[k], w[k] = np.asarray(v, np.float32), w_anchor
            result = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
            for k, v in result.items():
                losses.setdefault(k, []).append(float(v))
            done += 1
            if time.time() > deadline:
                break
        train_seconds = time.time() - te
        metrics = evaluate(full, head, real_valid, labels, corpus_valid, vocab, length, hop)
        score = selection_score(metrics, cfg)
        minutes = (time.time() - te) / 60
        state["minutes"] += minutes
        state["steps"] += done
        entry = {"epoch": epoch, "steps": done, "loss": {k: float(np.mean(v)) for k, v in losses.items()},
                 **metrics, "score": score, "minutes": minutes, "train_seconds": train_seconds,
                 "steps_per_second": done / max(train_seconds, 1e-9)}
        state["history"].append(entry)
        log.info("epoch %d loss %s score %.4f %s (%.1f min)", epoch, {k: round(v, 4) for k, v in entry["loss"].items()},
                 score, metrics, minutes)
        save_weights_atomic(model, out / "last.weights.h5")
        save_optimizer(model, out / "last.optimizer.npz")
        eligible = corpus_auc_kept(metrics, state["history"][0], cfg)
        entry["eligible"] = eligible
        if eligible and score > state["best"]:
            state["best"], state["best_epoch"] = score, epoch
            save_weights_atomic(full, out / "best.weights.h5")
        state["epoch"] = epoch + 1
        state.update(student=student, head=head, teacher_model=model_name, labels=labels, vocabulary=vocab,
                     model_config=student_config, config=cfg, data=record, hardware=hardware, command=command,
                     objectives={k: v for k, v in weights.items()
                                 if v and (k != "features" or with_features) and (k != "distill" or head)},
                     batch={"size": batch, "real": n_real, "corpus": n_corpus})
        write_json_atomic(state_path, state)
        if epoch - state["best_epoch"] >= patience:
            log.info("early stop: no better validation score for %d epochs", patience)
            break
    return state


# -- ship ------------------------------------------------------------------------------------------


def ship(args) -> dict:
    """Write the run's best student into a weights folder and manifest(s) as a model with a second head."""
    from mirzoo.nn import get_family  # deferred: imports Keras

    run = Path(args.run)
    state_path = run / "state.json"
    if not state_path.exists() or not (run / "best.weights.h5").exists():
        raise DistillError(f"'{run}' holds no best student (state.json and best.weights.h5): train first; a run "
                           "whose every epoch lost more than max_corpus_auc_drop of corpus ROC-AUC has none")
    state = json.loads(state_path.read_text())
    student, head, name = state["student"], state["head"], args.name or state["student"]
    full = get_family(get_spec(student).family)(state["model_config"], name=student.replace("-", "_"))
    full.load_weights(run / "best.weights.h5")  # refuses weights that do not fit the recorded config
    weights_dir = Path(args.weights_dir or PACKAGE_DIR / "weights")
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / f"{name}.weights.h5"
    save_weights_atomic(full, target)
    size = target.stat().st_size
    if size > 10 * 1024 * 1024:
        raise DistillError(f"{target} is {size} bytes: the package limit is 10 MB per file")
    manifests = [Path(p) for p in (args.manifest or [ROOT / "weights_manifest.json", PACKAGE_MANIFEST])]
    data = json.loads(manifests[0].read_text(encoding="utf-8"))
    if student not in data["models"]:
        raise DistillError(f"manifest {manifests[0]} has no entry {student!r} to build on")
    e = json.loads(json.dumps(data["models"][student]))
    e["config"] = state["model_config"]
    if head is not None:
        e["layers"][head] = len(state["labels"])
        e["aux_heads"] = [h for h in e.get("aux_heads") or [] if h["output"] != head] + [
            {"output": head, "labels": list(state["labels"]), "activation": "sigmoid"}]
    e["weights"] = {"kind": "file", "file": target.name, "sha256": file_sha256(target), "size": size}
    e["pretrained"] = True
    rec = state["data"]
    realr = rec["real"]
    pk = "; ".join(f"{p} {v['version']} {v['hours']:.2f} h ({', '.join(sorted(v['licences']))})"
                   for p, v in sorted(realr["packages"].items()))
    before = e.get("training") or {}
    teacher = rec.get("teacher")
    objectives = state.get("objectives") or {"distill": 1.0}
    data_lines = [
        *([f"initial weights ({student} as shipped before): " + (before["data"] if isinstance(before["data"], str)
                                                              else "; ".join(before["data"]))]
          if before.get("data") else []),
        f"mirzoo public corpus {Path(rec['corpus']['folder']).name} (music21 scores rendered with "
        f"{', '.join(rec['corpus']['soundfonts'])}; hours {rec['corpus']['hours']}): the corpus tag head",
        f"real recordings: music of Debian game packages (training/real.py), {realr['hours_train']:.2f} h train "
        f"({realr['clips_train']} clips of 10 s): {pk}",
    ]
    if teacher:
        data_lines.append(f"teacher: {teacher['name']} ({teacher['licence']}) tag probabilities "
                          f"({state['teacher_model']}) and penultimate features on those clips")
    licences = {"real_hours_by_licence": realr["licences_hours"],
                "commercial_use_of_recordings": realr["commercial_use"]}
    if teacher:
        licences["teacher"] = teacher["licence"]
    how = []
    if head is not None:
        how.append(f"head `{head}` learns the teacher's {len(state['labels'])} tags from aligned 3-s patches of "
                   "real recordings")
    if objectives.get("contrastive"):
        c = {**CONTRASTIVE_DEFAULTS, **(state["config"].get("contrastive") or {})}
        how.append(f"a contrastive objective (NT-Xent, temperature {c['temperature']}) pulls together the "
                   "embeddings of two 3-s segments of the same real track and pushes apart those of other tracks")
    if objectives.get("anchor"):
        a = {**ANCHOR_DEFAULTS, **(state["config"].get("anchor") or {})}
        how.append(f"a cosine loss holds the layers {anchor_layers(student, a)} on the {a['rows']} rows near a frozen "
                   f"copy of the pretrained {student}")
    if state["config"].get("freeze_batchnorm"):
        how.append("every batch norm stayed in inference mode with its pretrained statistics")
    e["training"] = {
        "data": data_lines,
        "licences": licences,
        "command": state["command"] + f"  # then: python -m training.distill ship --run {run}",
        "config": state["config"],
        "best_epoch": state["best_epoch"],
        "train_minutes": round(state["minutes"], 1),
        "hardware": state["hardware"],
        "started_from": {"model": student, "weights_sha256": data["models"][student]["weights"].get("sha256"),
                         "training_command": before.get("command"), "data": before.get("data"),
                         "train_minutes": before.get("train_minutes"), "hardware": before.get("hardware")},
        "objectives": objectives,
        "notes": (f"Trained further from {student}'s pretrained weights: " + "; ".join(how) + ", while the `tags` "
                  "head keeps training on the corpus. Commercial use of the recordings: "
                  f"{realr['commercial_use']} (licences {sorted(realr['licences_hours'])}; GPL / CC-BY-SA "
                  "conditions may apply)." + (" " + teacher["attribution"] if teacher else "")),
    }
    best = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
    first = state["history"][0]
    e["metrics"] = {
        "distill_valid_real": best.get("real_valid", {}),
        "valid_real_package_probe": best.get("real_probe", {}),
        "distill_valid_corpus": best.get("corpus_valid", {}),
        "before_distillation_valid_corpus": first.get("corpus_valid", {}),
        "how": ("best epoch on the validation splits; "
                + (f"real: {state['teacher_model']} tags of the teacher on the aligned 3-s patches of the real valid "
                   "clips against the student's head (auc_soft: soft-label ROC-AUC; auc_hard: teacher thresholded at "
                   "0.5; bce/kl: distillation loss); " if head is not None else "")
                + "corpus: clip-mean tag ROC-AUC on the corpus valid clips; package probe: leave-one-track-group-out "
                "1-NN balanced accuracy of the package on the real valid clips' mean embeddings. Benchmarks of the "
                "earlier weights no longer apply: rerun them with --record."),
    }
    refs = list(e.get("references") or [])
    cites = []
    if teacher:
        cites.append("Pons & Serra (2019), musicnn: pre-trained convolutional neural networks for music audio "
                     "tagging (teacher)")
    if objectives.get("contrastive"):
        cites.append("Chen et al. (2020), A simple framework for contrastive learning of visual representations "
                     "(SimCLR, NT-Xent)")
    refs += [c for c in cites if c not in refs]
    e["references"] = refs
    data["models"][name] = e
    ModelSpec.from_entry(name, e)  # refuse to write an entry the zoo cannot read
    for path in manifests:
        write_json_atomic(path, data)
    log.info("shipped %s (%d bytes) as %r with head %r in %s", target, size, name, head, [str(p) for p in manifests])
    return e


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="distil the teacher's tags into the student (resumable)")
    t.add_argument("--config", default="training/configs/distill-cnn-tagging.json")
    t.add_argument("--real", help="training.real build folder (overrides the config)")
    t.add_argument("--teacher-cache", help="training.teacher cache folder (overrides the config)")
    t.add_argument("--corpus", help="training.corpus build folder (overrides the config)")
    t.add_argument("--cache", help="decoded-audio cache folder (overrides the config)")
    t.add_argument("--out", help="run folder: checkpoints and state.json (overrides the config)")
    t.add_argument("--max-minutes", type=float, help="time budget of this invocation (default: config max_minutes)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out after its last finished epoch")
    s = sub.add_parser("ship", help="write a run's best student into the weights folder and manifest(s)")
    s.add_argument("--run", required=True)
    s.add_argument("--name", help="manifest entry to write (default: the student's own name, replacing it)")
    s.add_argument("--manifest", action="append", help="manifest file(s) to update (default: weights_manifest.json "
                   "and mirzoo/weights_manifest.json)")
    s.add_argument("--weights-dir", help="where the weight file goes (default: mirzoo/weights)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    try:
        {"train": train, "ship": ship}[args.cmd](args)
    except (DistillError, tt.TeacherError) as e:
        parser.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
