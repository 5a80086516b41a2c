"""Musicality benchmark (issue 15): key, beats, downbeats, tempo, chords, probes and tags, baselines in the same run.

    python benchmarks/musicality.py [--heldout /work/data/heldout-v2] [--limit N] [--model tcn-music]
                                    [--probe-models cnn-tagging ...] [--record]

Data: the test split of a version-2 corpus (score targets), meant to be the TimGM6mb render
(``--heldout``; the soundfont is never used in training).  Clips are found from
``targets/**/*.npz`` (their ``meta`` row says split, audio path, tags and piece), so a corpus
still being built can be measured; only ``split == "test"`` clips are used.  ``--limit`` takes
the first N clips in a seeded shuffle.  The soundfont(s) measured are printed and recorded:
a FluidR3 render is *not* the held-out condition.

Measures (model: ``Extractor.analyze`` of ``--model``; every baseline computed here, same clips):

* **key**, MIREX weighted score (``mir_eval.key.weighted_score``): reference = the most frequent
  unmasked frame key of the clip (also reported by where that label came from: the key written
  in the score, or music21's windowed analysis where the score has none, e.g. Palestrina, the
  trecento pieces and most Essen songs); baseline = Krumhansl-Schmuckler: the clip's mean
  ``librosa.feature.chroma_cqt`` correlated with the 24 rotations of the Krumhansl-Kessler profiles.
  The model's key is ``analyze``'s global key (with the model's ``clip_key`` record when it has one:
  key and chord heads together); the key head's clip mean alone is reported beside it.  A reference
  point without audio: the same Krumhansl-Schmuckler on the pitch classes the *score* sounds in the
  clip (its ``chroma`` target), i.e. a perfect transcription read by the profile method, overall and
  by reference source.  The analysis references come from such a method over windows of measures
  that reach past the clip, so this shows how far a clip-level reading can follow them.
* **beats**, F-measure (``mir_eval.beat.f_measure``, 70 ms window, first 5 s trimmed as mir_eval
  does); reference = the score's beat times; baseline ``librosa.beat.beat_track``.  Estimated beats
  where the score's beat grid is unknown (``beat_mask == 0``) are left out, for every method alike.
* **downbeats**, F-measure of the same kind on the beats at bar position 1 (no baseline).  For a model
  with a ``downbeat_model`` record (bar length and phase chosen together, ``fit-downbeats``) or a
  ``bar_model`` record (a recurrent network over the tracked beats, ``fit-bars``), the same heads read without it (the downbeat evidence alone) are scored beside it, with their time signatures.
* **tempo**, Acc1 (within 4 % of the notated tempo) and Acc2 (also at x2, x3, x1/2, x1/3);
  baseline ``librosa.feature.tempo``.  The reference is the *notated* beat (dotted quarter in
  6/8, 9/8, 12/8; one per bar in 3/8), which a periodicity estimator without meter knowledge
  rarely reports in compound meters, so Acc1 is also given on simple-meter clips alone, and Acc2
  forgives the octave/triple errors.  Clips whose tempo is masked (changing) are left out.
* **chords**, root and maj/min accuracy (``mir_eval.chord.root`` / ``majmin``), frame-weighted
  over frames with a chord label (maj/min: frames whose reference reduces to maj/min/N);
  baseline: ``chroma_cqt`` (50 frames/s, 1 s moving average) matched to binary major/minor
  triad templates (cosine), ``N`` below 1 % of the clip's maximum energy.
* **linear probes** on mean+std pooled embeddings, balanced classes (each class subsampled,
  seeded, to the smallest kept class; classes under ``--min-class`` clips dropped): mode
  (``mode:major`` / ``mode:minor``; modal tags left out), meter (``meter:`` tag), tune type (``tune:`` tag), style, instrument (clips with
  one ``instrument:`` tag).  Logistic regression on standardised features; outer 5-fold
  ``StratifiedGroupKFold`` grouped by piece; the layer and C are chosen *inside* each outer
  fold by an inner grouped 3-fold CV on its training part.  Score: balanced accuracy, mean
  over outer folds, then over ``--probe-repeats`` repeats (default 5; repeat ``r`` draws its balanced
  subset and its folds with seed ``--seed + r``, so repeat 0 is the single draw earlier sessions
  reported): a 68-clip probe moves by several points with the draw alone, and a ship decision needs
  the mean, with the spread across repeats (``repeat_std``) beside it.  Baseline: 20 MFCCs + deltas + delta-deltas, mean+std (same protocol).
  Reported beside it, not in its place: the same probe with each of the model's head outputs as
  one more candidate layer (``<model>+heads``: the clip mean of the key, chord, meter, tempo, mode
  (when the model has one) and tag heads, and with a ``clip_key`` record the clip key distribution), i.e. what a user gets from
  a linear probe on everything ``extract(layer=...)`` and ``tag(head=...)`` return.
* **meter analyze() reports** (not a probe): on every clip with a reference meter, the fraction
  whose time signature is the reference's, and the balanced accuracy of its meter class (the
  corpus's ``meter:`` tag of a time signature, e.g. 6/8 -> ``compound-duple``) over the classes.
* **mode of the reported key** (not a probe): balanced accuracy of the mode of ``analyze()``'s key
  against the ``mode:major`` / ``mode:minor`` tag, on every clip with one of them; beside it, with no audio,
  the mode of Krumhansl-Schmuckler on the clip's score notes (what profile matching on a perfect
  transcription reads against these tags).
* **tag ROC-AUC**: macro ROC-AUC of the clip tags as ``tag()`` reads them (the model's ``clip_tags`` record
  where it has one, with the tag head's frame mean beside it; the frame mean otherwise) over tags with both
  classes present.

``--oracle`` replaces the model's head outputs by one-hot frames built from the score targets
(beats widened to +-1 frame): a check of the analysis and scoring chain, whose scores should be
near 1 (key, beats, downbeats, chords; tempo where the beats are regular).

Results: ``benchmarks/results/musicality-<env>.{json,md}``, and every clip's figures in
``musicality-<env>.clips.json.gz`` for ``compare_musicality.py``; the table is printed with the issue's
targets.  ``--record`` writes the model's figures into its manifest entry.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)
from training.corpus import meter_class  # noqa: E402  (the meter tag of a time signature, as the corpus writes it)
from training.corpus_targets import KEY_SOURCES  # noqa: E402  (names of the targets' key_source codes)
from training.musical import beat_f_measure as beat_f  # noqa: E402  (mir_eval's, first 5 s trimmed)
from training.musical import in_beat_grid as inside_grid  # noqa: E402  (only where the score's beat grid is known)
from mirzoo.tasks.analyze import (  # noqa: E402
    KRUMHANSL_KESSLER_MAJOR,
    KRUMHANSL_KESSLER_MINOR,
    RHYTHM_SHIFTS,
    check_rhythm_shifts,
    signal_rhythm_ensemble,
    beats_per_bar,
    downbeat_phase,
    key_profile_correlations,
)

FPS_REF = 50.0
KK_MAJOR = np.array(KRUMHANSL_KESSLER_MAJOR)
KK_MINOR = np.array(KRUMHANSL_KESSLER_MINOR)
TONICS = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
KEY_LABELS = [f"{t} major" for t in TONICS] + [f"{t} minor" for t in TONICS]
COMPOUND = {"6/8", "9/8", "12/8", "6/4", "3/8"}
PROBE_TASKS = ("mode", "meter", "tune", "style", "instrument")
#: heads whose clip means are candidate layers (``head:<name>``) of the ``<model>+heads`` probe
HEAD_PROBE = ("key", "chord", "meter", "tempo", "mode", "tags")


def env_name() -> str:
    import keras

    return (f"{sys.platform}-{platform.machine()}-{os.cpu_count()}cpu-py{sys.version_info.major}."
            f"{sys.version_info.minor}-{keras.backend.backend()}")


# -- data ---------------------------------------------------------------------------------------
def find_clips(folder: Path, limit: int | None, seed: int) -> list[dict]:
    """Test-split clips of a version-2 corpus: ``{meta, targets, audio}`` dicts, seeded order."""
    from training.corpus import load_clip_targets

    clips = []
    for npz in sorted((folder / "targets").rglob("*.npz")):
        try:
            t = load_clip_targets(str(npz))
        except (ValueError, OSError, KeyError) as exc:
            print(f"  skipped {npz}: {exc}")
            continue
        meta = t["meta"]
        if meta.get("split") != "test":
            continue
        audio = folder / meta["path"]
        if audio.exists():
            clips.append({"meta": meta, "targets": t, "audio": str(audio)})
    order = np.random.default_rng(seed).permutation(len(clips))
    clips = [clips[i] for i in order]
    return clips[:limit] if limit else clips


def reference(clip: dict, key_labels: list[str], chord_labels: list[str], meter_labels: list[str]) -> dict:
    t = clip["targets"]
    keys = t["key"][t["key"] >= 0]
    ref = {"key": key_labels[int(Counter(keys.tolist()).most_common(1)[0][0])] if keys.size else None}
    # where that label came from (KEY_SOURCES: "written" in the score, or music21's windowed "analysis")
    source = np.asarray(t.get("key_source", np.zeros(0)))
    if keys.size and source.shape == np.shape(t["key"]):
        code = Counter(source[t["key"] == key_labels.index(ref["key"])].tolist()).most_common(1)[0][0]
        ref["key_source"] = KEY_SOURCES[int(code)] if 0 <= int(code) < len(KEY_SOURCES) else "none"
    else:
        ref["key_source"] = None
    beats = np.asarray(t["beat_times"], dtype=np.float64)
    ref["beats"] = beats
    ref["downbeats"] = beats[np.asarray(t["beat_position"]) == 1]
    tempo = float(t["tempo_bpm"])
    ref["tempo"] = tempo if np.isfinite(tempo) else None
    meter = int(t["meter"])
    ref["meter"] = meter_labels[meter] if meter >= 0 else clip["meta"].get("meter") or None
    chord = np.asarray(t["chord"])
    hop, sr = int(t["hop"]), int(t["sr"])
    frames = np.flatnonzero(chord >= 0)
    ref["chord_times"] = frames * hop / sr
    ref["chord_labels"] = np.array([chord_labels[int(c)] for c in chord[frames]], dtype=object)
    return ref


def oracle_frames(t: dict, heads: dict, n: int) -> dict[str, np.ndarray]:
    """One-hot head outputs built from a clip's score targets (``--oracle``)."""

    def one_hot(idx, k):
        out = np.full((n, k), 1.0 / k)
        idx = np.asarray(idx)[:n]
        ok = idx >= 0
        out[: idx.size][ok] = 0.0
        out[np.flatnonzero(ok), idx[ok]] = 1.0
        return out

    beats = np.zeros((n, 2))
    for col, name in enumerate(("beat", "downbeat")):
        f = np.flatnonzero(np.asarray(t[name])[:n])
        for d in (-1, 0, 1):
            beats[np.clip(f + d, 0, n - 1), col] = np.maximum(beats[np.clip(f + d, 0, n - 1), col], 1.0 if d == 0 else 0.5)
    centres = 40 * 2 ** (np.arange(len(heads["tempo"])) / 16)
    tempo = float(t["tempo_bpm"])
    tempo_idx = int(np.argmin(np.abs(np.log2(centres / tempo)))) if np.isfinite(tempo) else -1
    return {"beats": beats, "key": one_hot(t["key"], len(heads["key"])),
            "chord": one_hot(t["chord"], len(heads["chord"])),
            "meter": one_hot(np.full(n, int(t["meter"])), len(heads["meter"])),
            "tempo": one_hot(np.full(n, tempo_idx), len(heads["tempo"]))}


# -- baselines ----------------------------------------------------------------------------------
#: thresholds of the max-normalised chroma_cqt the pitch-class baseline is scored at (its best is kept)
PITCH_CLASS_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def pitch_class_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``[true positives, predicted, true]`` of boolean ``[frames, 12]`` pitch-class activities."""
    return np.array([np.sum(pred & truth), np.sum(pred), np.sum(truth)], dtype=np.float64)


def f1_of(counts) -> float:
    """F-measure from :func:`pitch_class_counts` totals."""
    tp, predicted, true = counts
    return float(2 * tp / (predicted + true)) if predicted + true else 0.0


def ks_key(chroma: np.ndarray) -> str:
    """Krumhansl-Schmuckler: the key whose rotated Krumhansl-Kessler profile best correlates with the mean chroma."""
    return KEY_LABELS[int(np.argmax(key_profile_correlations(chroma.mean(axis=1))))]


def template_chords(chroma: np.ndarray, fps: float) -> np.ndarray:
    """Frame labels ``"C:maj"`` .. ``"B:min"`` / ``"N"`` from chroma ``[12, T]`` and binary triad templates."""
    width = max(1, int(round(fps)))  # 1 s moving average
    kernel = np.ones(width) / width
    smooth = np.stack([np.convolve(row, kernel, mode="same") for row in chroma])
    templates, labels = [], []
    for quality, third in (("maj", 4), ("min", 3)):
        for root in range(12):
            v = np.zeros(12)
            v[[root, (root + third) % 12, (root + 7) % 12]] = 1.0
            templates.append(v / np.linalg.norm(v))
            labels.append(f"{TONICS[root]}:{quality}")
    norms = np.linalg.norm(smooth, axis=0)
    sims = np.asarray(templates) @ (smooth / np.maximum(norms, 1e-9))
    out = np.array([labels[i] for i in np.argmax(sims, axis=0)], dtype=object)
    out[norms < 0.01 * max(float(norms.max()), 1e-9)] = "N"
    return out


def labels_at(times: np.ndarray, segments) -> np.ndarray:
    starts = np.array([s.start for s in segments])
    idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segments) - 1)
    return np.array([segments[i].label for i in idx], dtype=object)


# -- scores -------------------------------------------------------------------------------------
def tempo_acc(ref: float, est) -> tuple[bool, bool]:
    if est is None:  # analyze() heard no beat in the clip: no tempo, scored wrong
        return False, False
    ok1 = abs(est - ref) <= 0.04 * ref
    ok2 = any(abs(est * f - ref) <= 0.04 * ref for f in (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0))
    return ok1, ok2


def chord_scores(ref_labels: np.ndarray, est_labels: np.ndarray) -> tuple[float, float, int, int]:
    """``(root correct frames, majmin correct frames, root frames, majmin frames)``."""
    import mir_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = mir_eval.chord.root(list(ref_labels), list(est_labels))
        majmin = mir_eval.chord.majmin(list(ref_labels), list(est_labels))
    root, majmin = np.asarray(root, dtype=float), np.asarray(majmin, dtype=float)
    return float((root == 1).sum()), float((majmin == 1).sum()), int((root >= 0).sum()), int((majmin >= 0).sum())


def mfcc_vector(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    full = np.concatenate([m, librosa.feature.delta(m), librosa.feature.delta(m, order=2)])
    return np.concatenate([full.mean(axis=1), full.std(axis=1)]).astype(np.float32)


def downbeats_with_bar_length(beat_times: np.ndarray, beats: np.ndarray, fps: float, per_bar: int) -> np.ndarray:
    """The downbeats ``analyze()``'s evidence reading picks among the tracked ``beat_times`` when the bar
    length is given (``per_bar`` beats, the score's): the bar phase alone, as :func:`downbeat_phase` reads
    the ``beats`` ``[T, 2]`` (beat, downbeat) activation. A diagnostic: how much of the downbeat error is
    the bar length, and how much the phase."""
    beat_times = np.asarray(beat_times, dtype=np.float64)
    frames = np.round(beat_times * fps).astype(np.int64)
    _, positions = downbeat_phase(frames, beats[:, 1], per_bar, beat_activation=beats[:, 0])
    return beat_times[positions == 1]


def probe_labels(meta: dict) -> dict[str, str]:
    tags = [t for t in meta.get("tags", "").split(";") if t]
    out = {}
    for task, prefix in (("mode", "mode:"), ("meter", "meter:"), ("tune", "tune:"), ("style", "style:"),
                         ("instrument", "instrument:")):
        vals = [t.split(":", 1)[1] for t in tags if t.startswith(prefix)]
        if len(vals) == 1 and (task != "mode" or vals[0] in ("major", "minor")):
            out[task] = vals[0]
    return out


def mode_agreement(pairs: list[tuple[str, str]]) -> dict:
    """``(tagged, reported)`` modes (``major`` / ``minor``) -> their balanced accuracy, with the tag counts."""
    from sklearn.metrics import balanced_accuracy_score

    truth, said = zip(*pairs)
    with warnings.catch_warnings():  # a reported mode no reference has (a bootstrap draw without minor clips)
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(truth, said))
    return {"model": balanced, "n": len(truth), "classes": dict(Counter(truth))}


def meter_agreement(pairs: list[tuple[str, str]]) -> dict:
    """``(reference, reported)`` time signatures -> exact accuracy and the balanced accuracy of their
    meter classes (:func:`training.corpus.meter_class`), with the reference class counts."""
    from sklearn.metrics import balanced_accuracy_score

    def cls(label: str) -> str:
        num, den = (int(v) for v in label.split("/"))
        return meter_class(num, den)

    truth = [cls(r) for r, _ in pairs]
    said = [cls(a) for _, a in pairs]
    with warnings.catch_warnings():  # a reported class no reference has
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(truth, said))
    return {"exact": float(np.mean([r == a for r, a in pairs])), "class_balanced": balanced, "n": len(pairs),
            "classes": dict(Counter(truth))}


def balanced_subset(labels: dict[int, str], min_class: int, seed: int) -> list[int]:
    counts = Counter(labels.values())
    kept = {c for c, n in counts.items() if n >= min_class}
    if len(kept) < 2:
        return []
    size = min(counts[c] for c in kept)
    rng = np.random.default_rng(seed)
    idx = []
    for c in sorted(kept):
        members = sorted(i for i, v in labels.items() if v == c)
        idx.extend(rng.choice(members, size=size, replace=False).tolist())
    return sorted(idx)


def repeated_probe(features: dict[str, np.ndarray], task_labels: dict[int, str], groups_all: np.ndarray,
                   min_class: int, Cs: tuple, seed: int, repeats: int) -> dict:
    """:func:`nested_probe` on ``repeats`` seeded balanced subsets (seed ``seed + r``): the mean
    balanced accuracy over repeats, their spread and each repeat's figure; ``n`` and ``classes``
    of one subset (all subsets have the same size)."""
    runs = []
    for r in range(repeats):
        idx = balanced_subset(task_labels, min_class, seed + r)
        y = np.array([task_labels[i] for i in idx])
        runs.append(nested_probe({l: x[idx] for l, x in features.items()}, y, groups_all[idx], Cs, seed + r))
    scores = [r["balanced_accuracy"] for r in runs]
    if any(v is None for v in scores):
        return runs[0]
    return {"balanced_accuracy": float(np.mean(scores)), "repeat_std": float(np.std(scores)),
            "per_repeat": [float(v) for v in scores], "std": float(np.mean([r["std"] for r in runs])),
            "n": runs[0]["n"], "classes": runs[0]["classes"], "chosen": [c for r in runs for c in r["chosen"]]}


def nested_probe(features: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, Cs: tuple, seed: int,
                 folds: int = 5) -> dict:
    """Balanced accuracy of a logistic-regression probe; layer and C chosen by inner grouped CV per outer fold."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score as _balanced
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(x, yy, C):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=C, tol=1e-3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clf.fit(x, yy)

    def balanced_accuracy_score(a, b):
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true" on small inner folds
            warnings.simplefilter("ignore", UserWarning)
            return _balanced(a, b)

    n_groups = len(set(groups.tolist()))
    folds = min(folds, n_groups, min(Counter(y.tolist()).values()))
    if folds < 2:
        return {"balanced_accuracy": None, "n": int(len(y)), "why": "too few pieces per class"}
    scores, chosen = [], []
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in outer.split(np.zeros(len(y)), y, groups):
        best, best_score = None, -1.0
        inner_folds = min(3, len(set(groups[train].tolist())), min(Counter(y[train].tolist()).values()))
        candidates = [(layer, C) for layer in features for C in Cs]
        if inner_folds >= 2 and len(candidates) > 1:
            inner = StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
            splits = list(inner.split(np.zeros(len(train)), y[train], groups[train]))
            for layer, C in candidates:
                x = features[layer][train]
                s = np.mean([balanced_accuracy_score(y[train][ite], fit(x[itr], y[train][itr], C).predict(x[ite]))
                             for itr, ite in splits])
                if s > best_score:
                    best, best_score = (layer, C), s
        else:
            best = candidates[len(candidates) // 2]
        layer, C = best
        pred = fit(features[layer][train], y[train], C).predict(features[layer][test])
        scores.append(balanced_accuracy_score(y[test], pred))
        chosen.append(f"{layer}@C={C:g}")
    return {"balanced_accuracy": float(np.mean(scores)), "std": float(np.std(scores)), "n": int(len(y)),
            "classes": int(len(set(y.tolist()))), "chosen": chosen}


# -- main ---------------------------------------------------------------------------------------
TARGETS = {
    "key_weighted": ">= 0.85 and >= baseline + 0.15",
    "beat_f": ">= 0.90",
    "downbeat_f": ">= 0.75",
    "tempo_acc1": ">= 0.90",
    "chord_root": ">= 0.80",
    "chord_majmin": ">= 0.80",
    "probe_mode": ">= 0.85",
    "probe_meter": ">= 0.80",
    "probe_tune": ">= 0.80",
    "probe_style": "not below today's",
    "probe_instrument": "not below today's",
    "tag_roc_auc": "not below 0.905",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heldout", default="/work/data/heldout-v2", help="version-2 corpus (TimGM6mb test render)")
    parser.add_argument("--fallback", default="/work/data/corpus-v2",
                        help="used (and said so) when --heldout does not exist: its test split")
    parser.add_argument("--limit", type=int, default=None, help="at most N clips (seeded choice)")
    parser.add_argument("--model", default="tcn-music")
    parser.add_argument("--probe-models", nargs="*", default=[], help="more zoo models for the probes (today's)")
    parser.add_argument("--min-class", type=int, default=6)
    parser.add_argument("--Cs", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rhythm-shifts", type=float, nargs="+", default=list(RHYTHM_SHIFTS), metavar="SEMITONES",
                        help="analyze()'s rhythm_shifts (default its own, one pass; session 27 scored "
                        "-0.667 -0.333 0 0.333 0.667)")
    parser.add_argument("--probe-repeats", type=int, default=5,
                        help="balanced subsets (and fold draws) per probe, seeds seed .. seed+R-1; the mean is reported")
    parser.add_argument("--oracle", action="store_true",
                        help="feed one-hot score targets instead of the model's heads (checks the chain)")
    parser.add_argument("--record", action="store_true", help="write the model's figures into its manifest entry")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    if args.probe_repeats < 1:
        parser.error(f"--probe-repeats={args.probe_repeats}: expected at least 1")

    import librosa

    import mirzoo
    from mirzoo.embeddings import pool_embeddings
    from mirzoo.tasks.analyze import (
        OPTIONAL_HEADS,
        REQUIRED_HEADS,
        analyze_frames,
        clip_key_distribution,
        global_distribution,
    )
    from mirzoo.tasks.clip_heads import clip_tag_probabilities

    try:
        rhythm_shifts = check_rhythm_shifts(tuple(args.rhythm_shifts))
    except mirzoo.ParameterError as exc:
        parser.error(f"--rhythm-shifts: {exc}")
    data = Path(args.heldout)
    notes = []
    if not (data / "targets").is_dir():
        notes.append(f"{data} does not exist: measured on the test split of {args.fallback} instead")
        data = Path(args.fallback)
    print(notes[0] if notes else f"data: {data}")
    clips = find_clips(data, args.limit, args.seed)
    soundfonts = sorted(Counter(c["meta"].get("soundfont", "?") for c in clips).items())
    print(f"{len(clips)} test clips of {len(set(c['meta']['piece_id'] for c in clips))} pieces; soundfonts {soundfonts}")
    if not clips:
        print("no test clips found", file=sys.stderr)
        return 2
    if any(sf != "TimGM6mb" for sf, _ in soundfonts):
        notes.append(f"soundfonts {dict(soundfonts)}: not (only) the held-out TimGM6mb render")

    m = mirzoo.load(args.model)
    heads = m.heads
    sr = m.sample_rate
    fps = sr / m.hop_length
    layers = list(m.all_layers)
    keys = list(REQUIRED_HEADS) + [h for h in OPTIONAL_HEADS if h in heads] + (["tags"] if "tags" in heads else []) \
        + [l for l in layers if l not in REQUIRED_HEADS]
    clip_tags = None if args.oracle else m.spec.clip_tags  # tag()'s reading of the tags head, when the model has one
    if clip_tags is not None:
        keys += [s for s in clip_tags["sources"] if s not in keys]
    others = [mirzoo.load(name) for name in args.probe_models]

    per = {k: [] for k in ("key_model", "key_head_mean", "key_base", "key_source", "mode_pairs", "mode_pairs_notes", "meter_pairs", "beat_model", "beat_base", "down_model", "tempo_model",
                           "down_evidence", "meter_pairs_evidence", "down_known_bar",
                           "tempo_base", "tempo_simple", "key_pcs", "key_notes")}
    chord_tot = {"model": np.zeros(4), "base": np.zeros(4)}
    # pitch classes sounding per frame (a model with a pitch_classes head): true positives, predicted,
    # true, for the head at 0.5 and for chroma_cqt at each of PITCH_CLASS_THRESHOLDS
    pc_tot = {"model": np.zeros(3), "base": np.zeros((len(PITCH_CLASS_THRESHOLDS), 3)), "frames": 0}
    feats: dict[str, dict[str, list]] = {"mfcc": {"mfcc": []}, args.model: {l: [] for l in layers}}
    with_heads = f"{args.model}+heads"
    probe_heads = [h for h in HEAD_PROBE if h in heads]
    for o in others:
        feats[o.name] = {l: [] for l in o.all_layers}
    tag_probs, tag_truth, tag_frame_mean = [], [], []
    per_clip: list[dict] = []  # every figure of every clip, for paired comparisons (compare_musicality.py)
    clip_key = None if args.oracle else m.spec.clip_key  # the oracle checks the chain with one-hot heads alone
    downbeat_model = None if args.oracle else m.spec.downbeat_model
    bar_model = None if args.oracle else m.spec.bar_model
    bar_records = downbeat_model is not None or bar_model is not None  # then the evidence reading is shown beside
    head_feats: dict[str, list] = {f"head:{h}": [] for h in probe_heads + (["clip_key"] if clip_key is not None else [])}
    t0 = time.time()
    timing = {"model": 0.0, "baselines": 0.0, "probe_models": 0.0}
    for i, clip in enumerate(clips):
        ref = reference(clip, heads["key"], heads["chord"], heads["meter"])
        row: dict = {"clip": clip["meta"]["path"], "piece": clip["meta"]["piece_id"]}
        per_clip.append(row)
        y, _ = m.load_input(clip["audio"], None)
        ts = time.time()
        out = m.forward([y], keys, 16)[0]
        if args.oracle:
            out.update(oracle_frames(clip["targets"], heads, out["beats"].shape[0]))
            frames = out
        else:  # as analyze() reads them: the rhythm heads averaged over the passes of --rhythm-shifts
            frames = signal_rhythm_ensemble(m, y, out, rhythm_shifts)
        a = analyze_frames(frames, heads, fps, duration=y.shape[0] / sr, source=clip["audio"], model=m.name,
                           clip_key=clip_key, downbeat_model=downbeat_model, bar_model=bar_model)
        # the downbeats and meter without the model's downbeat_model or bar_model record, beside them in the same run
        a_evidence = a if not bar_records else analyze_frames(
            frames, heads, fps, duration=y.shape[0] / sr, clip_key=clip_key, downbeat_model=None, bar_model=None)
        head_key = global_distribution(out["key"], heads["key"], top_k=1)[0][0]
        timing["model"] += time.time() - ts
        for l in layers:
            feats[args.model][l].append(pool_embeddings(out[l].reshape(out[l].shape[0], -1), "mean+std"))
        for h in probe_heads:
            head_feats[f"head:{h}"].append(out[h].reshape(out[h].shape[0], -1).mean(axis=0).astype(np.float32))
        if clip_key is not None:
            head_feats["head:clip_key"].append(
                clip_key_distribution(out["key"], out["chord"], clip_key, out.get("mode"), out.get("pitch_classes")).astype(np.float32))
        if "tags" in heads:
            tag_frame_mean.append(out["tags"].mean(axis=0))
            tag_probs.append(clip_tag_probabilities(out, clip_tags) if clip_tags is not None and clip_tags["head"] == "tags"
                             else tag_frame_mean[-1])  # as tag() reads them
            tags = set(clip["meta"].get("tags", "").split(";"))
            tag_truth.append([lab in tags for lab in heads["tags"]])
            row["tags"] = [round(float(v), 4) for v in tag_probs[-1]]
            row["tag_truth"] = [j for j, lab in enumerate(heads["tags"]) if lab in tags]
        # no audio: Krumhansl-Schmuckler on the pitch classes the score sounds in the clip, i.e. a perfect
        # transcription read by the profile method (the analysis references come from it, over windows of
        # measures that reach past the clip); None without sounding notes
        score_pcs = np.asarray(clip["targets"].get("chroma", np.zeros((0, 12))), dtype=np.float64)
        notes_key = (heads["key"][int(np.argmax(key_profile_correlations(score_pcs.mean(axis=0))))]
                     if score_pcs.size and score_pcs.sum() > 0 else None)
        ts = time.time()
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=m.hop_length)
        if ref["key"]:
            import mir_eval

            per["key_model"].append(mir_eval.key.weighted_score(ref["key"], a.key))
            per["key_head_mean"].append(mir_eval.key.weighted_score(ref["key"], head_key))
            per["key_base"].append(mir_eval.key.weighted_score(ref["key"], ks_key(chroma)))
            if "pitch_classes" in out:  # Krumhansl-Schmuckler on the head, unfitted
                corr = key_profile_correlations(out["pitch_classes"].mean(axis=0))
                per["key_pcs"].append(mir_eval.key.weighted_score(ref["key"], heads["key"][int(np.argmax(corr))]))
            per["key_source"].append(ref["key_source"])
            per["key_notes"].append(None if notes_key is None else mir_eval.key.weighted_score(ref["key"], notes_key))
            row.update(key=per["key_model"][-1], key_head_mean=per["key_head_mean"][-1])
        _, base_beats = librosa.beat.beat_track(y=y, sr=sr, hop_length=m.hop_length, units="time")
        for name, est in (("beat_model", a.beats), ("beat_base", base_beats)):
            f = beat_f(ref["beats"], inside_grid(est, clip["targets"]))
            if f is not None:
                per[name].append(f)
                if name == "beat_model":
                    row["beat_f"] = f
        f = beat_f(ref["downbeats"], inside_grid(a.downbeats, clip["targets"]))
        if f is not None:
            per["down_model"].append(f)
            row["downbeat_f"] = f
            f_evidence = beat_f(ref["downbeats"], inside_grid(a_evidence.downbeats, clip["targets"]))
            per["down_evidence"].append(f_evidence)
            row["downbeat_f_evidence"] = f_evidence
            if ref["meter"]:  # diagnostic: the score's bar length given, the phase read from the evidence
                known = downbeats_with_bar_length(a.beats, out["beats"], fps, beats_per_bar(ref["meter"]))
                f_known = beat_f(ref["downbeats"], inside_grid(known, clip["targets"]))
                if f_known is not None:
                    per["down_known_bar"].append(f_known)
                    row["downbeat_f_known_bar"] = f_known
        if ref["tempo"]:
            base_tempo = float(np.atleast_1d(librosa.feature.tempo(y=y, sr=sr, hop_length=m.hop_length))[0])
            per["tempo_model"].append(tempo_acc(ref["tempo"], a.tempo))
            row["tempo_acc1"], row["tempo_acc2"] = (bool(v) for v in per["tempo_model"][-1])
            per["tempo_base"].append(tempo_acc(ref["tempo"], base_tempo))
            per["tempo_simple"].append(ref["meter"] not in COMPOUND if ref["meter"] else False)
        if ref["chord_labels"].size:
            row["chords"] = list(chord_scores(ref["chord_labels"], labels_at(ref["chord_times"], a.chords)))
            chord_tot["model"] += row["chords"]
            frames = np.clip(np.round(ref["chord_times"] * fps).astype(int), 0, chroma.shape[1] - 1)
            chord_tot["base"] += chord_scores(ref["chord_labels"], template_chords(chroma, fps)[frames])
        if "pitch_classes" in out and "chroma" in clip["targets"]:
            truth = np.asarray(clip["targets"]["chroma"]) > 0
            n = min(len(truth), len(out["pitch_classes"]), chroma.shape[1])
            truth = truth[:n]
            pc_tot["frames"] += n
            pc_tot["model"] += pitch_class_counts(out["pitch_classes"][:n] > 0.5, truth)
            peak = chroma[:, :n].T / np.maximum(chroma[:, :n].T.max(axis=1, keepdims=True), 1e-9)
            for j, th in enumerate(PITCH_CLASS_THRESHOLDS):
                pc_tot["base"][j] += pitch_class_counts(peak >= th, truth)
        feats["mfcc"]["mfcc"].append(mfcc_vector(y, sr))
        tagged = probe_labels(clip["meta"]).get("mode")
        if tagged and a.key:
            per["mode_pairs"].append((tagged, a.key.split()[-1]))
            row["mode"] = list(per["mode_pairs"][-1])
            if notes_key is not None:  # the mode of the score notes' key: a ceiling of the profile method
                per["mode_pairs_notes"].append((tagged, notes_key.split()[-1]))
        if ref["meter"] and a.meter:
            per["meter_pairs"].append((ref["meter"], a.meter))
            row["meter"] = list(per["meter_pairs"][-1])
            per["meter_pairs_evidence"].append((ref["meter"], a_evidence.meter))
            if bar_records:  # so that compare_musicality.py --evidence-reading pairs the two readings of one run
                row["meter_evidence"] = list(per["meter_pairs_evidence"][-1])
        timing["baselines"] += time.time() - ts
        ts = time.time()
        for o in others:
            o_out = o.forward([y if o.sample_rate == sr else o.load_input(clip["audio"], None)[0]],
                              list(o.all_layers), 16)[0]
            for l in o.all_layers:
                feats[o.name][l].append(pool_embeddings(o_out[l].reshape(o_out[l].shape[0], -1), "mean+std"))
        timing["probe_models"] += time.time() - ts
        if (i + 1) % 10 == 0 or i + 1 == len(clips):
            print(f"  {i + 1}/{len(clips)} clips ({time.time() - t0:.0f} s)", flush=True)

    def mean(v):
        return float(np.mean(v)) if len(v) else None

    def tempo_summary(rows, simple_mask):
        rows = np.asarray(rows, dtype=bool).reshape(-1, 2)
        simple = np.asarray(simple_mask, dtype=bool)
        return {"acc1": mean(rows[:, 0]), "acc2": mean(rows[:, 1]),
                "acc1_simple_meter": mean(rows[simple, 0]) if simple.any() else None, "n": int(rows.shape[0]),
                "n_simple": int(simple.sum())}

    res = {
        "key_weighted": {"model": mean(per["key_model"]), "baseline": mean(per["key_base"]),
                         "baseline_name": "Krumhansl-Schmuckler on chroma_cqt", "n": len(per["key_model"]),
                         # the key head's clip mean alone (what `model` is without a clip_key record)
                         "model_head_mean": mean(per["key_head_mean"]),
                         "score_notes": mean([v for v in per["key_notes"] if v is not None]),
                         "n_score_notes": sum(v is not None for v in per["key_notes"]),
                         "clip_key": clip_key is not None,
                         # by where the reference came from: the score's written key, or music21's analysis
                         "by_source": {src: {"model": mean([v for v, s_ in zip(per["key_model"], per["key_source"]) if s_ == src]),
                                             "baseline": mean([v for v, s_ in zip(per["key_base"], per["key_source"]) if s_ == src]),
                                             "n": sum(s_ == src for s_ in per["key_source"]),
                                             "score_notes": mean([v for v, s_ in zip(per["key_notes"], per["key_source"])
                                                                  if s_ == src and v is not None])}
                                       for src in sorted(set(s_ for s_ in per["key_source"] if s_))}},
        "beat_f": {"model": mean(per["beat_model"]), "baseline": mean(per["beat_base"]),
                   "baseline_name": "librosa.beat.beat_track", "n": len(per["beat_model"])},
        "downbeat_f": {"model": mean(per["down_model"]), "baseline": None, "n": len(per["down_model"]),
                       "downbeat_model": downbeat_model is not None, "bar_model": bar_model is not None,
                       "evidence_reading": mean(per["down_evidence"]) if bar_records else None,
                       # the evidence reading's phase with the score's bar length: what the bar length costs
                       "bar_length_from_score": mean(per["down_known_bar"]), "n_bar_length_from_score": len(per["down_known_bar"])},
        "tempo": {"model": tempo_summary(per["tempo_model"], per["tempo_simple"]),
                  "baseline": tempo_summary(per["tempo_base"], per["tempo_simple"]),
                  "baseline_name": "librosa.feature.tempo"},
    }
    for name, tot in chord_tot.items():
        res.setdefault("chords", {})[name] = {"root": tot[0] / tot[2] if tot[2] else None,
                                              "majmin": tot[1] / tot[3] if tot[3] else None,
                                              "frames_root": int(tot[2]), "frames_majmin": int(tot[3])}
    res["chords"]["baseline_name"] = "chroma_cqt + binary triad templates"
    if pc_tot["model"][2] > 0:
        base_f1 = [f1_of(c) for c in pc_tot["base"]]
        best = int(np.argmax(base_f1))
        res["pitch_classes"] = {
            "model_f1": f1_of(pc_tot["model"]), "frames": int(pc_tot["frames"]),
            "baseline_f1": base_f1[best], "baseline_threshold": PITCH_CLASS_THRESHOLDS[best],
            "baseline_name": "chroma_cqt over its frame maximum, at the threshold best for it on these clips",
            "key_ks_on_head": mean(per["key_pcs"]), "key_n": len(per["key_pcs"])}

    # probes
    labels = [probe_labels(c["meta"]) for c in clips]
    groups_all = np.array([c["meta"]["piece_id"] for c in clips])
    arrays = {method: {l: np.stack(v) for l, v in fl.items()} for method, fl in feats.items()}
    if head_feats:  # the model's layers, plus each head's clip-mean output as one more candidate
        arrays[with_heads] = dict(arrays[args.model], **{h: np.stack(v) for h, v in head_feats.items()})
    probes = {}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        for task in PROBE_TASKS:
            task_labels = {i: lab[task] for i, lab in enumerate(labels) if task in lab}
            idx = balanced_subset(task_labels, args.min_class, args.seed)
            if not idx:
                probes[task] = {"why": f"fewer than two classes with >= {args.min_class} clips "
                                       f"({dict(Counter(task_labels.values()))})"}
                continue
            probes[task] = {method: repeated_probe(fl, task_labels, groups_all, args.min_class, tuple(args.Cs),
                                                   args.seed, args.probe_repeats)
                            for method, fl in arrays.items()}
            print(f"  probe {task}: " + ", ".join(f"{k} {v['balanced_accuracy'] if v['balanced_accuracy'] is None else round(v['balanced_accuracy'], 3)}"
                                                  for k, v in probes[task].items()), flush=True)
    res["probes"] = probes
    if per["mode_pairs"]:  # not a probe: the mode of the key analyze() reports, on every mode-tagged clip
        res["mode_from_key"] = mode_agreement(per["mode_pairs"])
        if per["mode_pairs_notes"]:
            res["mode_from_key"]["score_notes"] = mode_agreement(per["mode_pairs_notes"])
    if per["meter_pairs"]:  # not a probe: the meter analyze() reports, on every clip with a reference meter
        res["meter_from_analyze"] = meter_agreement(per["meter_pairs"])
        if bar_records:
            res["meter_from_analyze"]["evidence_reading"] = meter_agreement(per["meter_pairs_evidence"])
    if tag_probs:
        from sklearn.metrics import roc_auc_score

        truth = np.asarray(tag_truth)
        usable = [j for j in range(truth.shape[1]) if 0 < truth[:, j].sum() < truth.shape[0]]

        def macro_auc(probs) -> float | None:
            probs = np.asarray(probs)
            return float(np.mean([roc_auc_score(truth[:, j], probs[:, j]) for j in usable])) if usable else None

        res["tag_roc_auc"] = {"model": macro_auc(tag_probs), "tags": len(usable),
                              "reading": "frame mean" if clip_tags is None else "clip_tags record"}
        if clip_tags is not None:
            res["tag_roc_auc"]["frame_mean"] = macro_auc(tag_frame_mean)

    report = {
        "benchmark": "musicality", "env": env_name(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": str(data), "clips": len(clips), "pieces": len(set(groups_all.tolist())),
        "soundfonts": dict(soundfonts), "model": args.model, "pretrained": bool(m.pretrained),
        "weights_sha256": m.entry.get("weights", {}).get("sha256"), "oracle": bool(args.oracle), "notes": notes,
        "probe_repeats": args.probe_repeats, "rhythm_shifts": None if args.oracle else list(rhythm_shifts),
        "timing_s": {k: round(v, 1) for k, v in timing.items()}, "results": res, "targets": TARGETS,
    }
    table = render_table(report)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from mirzoo.fileio import atomic_file, write_json_atomic

    stem = out / f"musicality-{report['env']}"  # env holds dots (py3.11): no with_suffix here
    # every clip's figures, for paired comparisons (compare_musicality.py), gzipped beside the report
    # with the records' sha256, so that a report copied or renamed without its own records (its name
    # then points at another run's) is refused by the comparison instead of compared with itself
    payload = json.dumps(per_clip, separators=(",", ":")).encode("utf-8")
    report["per_clip_file"] = f"{stem.name}.clips.json.gz"
    report["per_clip_sha256"] = hashlib.sha256(payload).hexdigest()
    with atomic_file(Path(f"{stem}.clips.json.gz")) as tmp:
        with gzip.open(tmp, "wb") as f:
            f.write(payload)
    write_json_atomic(Path(f"{stem}.json"), report)
    with atomic_file(Path(f"{stem}.md")) as tmp:
        Path(tmp).write_text(table + "\n", encoding="utf-8")
    print(f"wrote {stem}.json and .md")
    if args.record:
        from _record import record

        record(args.model, "musicality", record_figures(res, args.model, len(clips), soundfonts))
    return 0


def record_figures(res: dict, model_name: str, n_clips: int, soundfonts: list) -> dict:
    """The headline figures, flat, as the model card prints them (the full report is in the results file);
    ``soundfonts`` as ``[(name, clips), ...]``."""
    return dict(headline(res, model_name), n_clips=n_clips, soundfonts=", ".join(name for name, _ in soundfonts))


def headline(res: dict, model_name: str) -> dict:
    """The model's figures and their same-run baselines, one number per name (``None`` left out)."""
    out: dict = {}

    def put(name, value):
        if value is not None:
            out[name] = round(float(value), 4)

    put("key_mirex", res["key_weighted"]["model"])
    put("key_mirex_krumhansl_schmuckler", res["key_weighted"]["baseline"])
    for src, v in (res["key_weighted"].get("by_source") or {}).items():
        put(f"key_mirex_{src}_reference", v.get("model"))
    if res["key_weighted"].get("clip_key"):
        put("key_mirex_head_mean", res["key_weighted"].get("model_head_mean"))
    put("beat_f", res["beat_f"]["model"])
    put("beat_f_librosa", res["beat_f"]["baseline"])
    put("downbeat_f", res["downbeat_f"]["model"])
    put("downbeat_f_evidence_reading", res["downbeat_f"].get("evidence_reading"))
    put("tempo_acc1", res["tempo"]["model"]["acc1"])
    put("tempo_acc1_librosa", res["tempo"]["baseline"]["acc1"])
    chords = res.get("chords", {})
    put("chord_root", chords.get("model", {}).get("root"))
    put("chord_majmin", chords.get("model", {}).get("majmin"))
    put("chord_root_templates", chords.get("base", {}).get("root"))
    for task, by_method in res.get("probes", {}).items():
        put(f"probe_{task}", (by_method.get(model_name) or {}).get("balanced_accuracy"))
        put(f"probe_{task}_mfcc", (by_method.get("mfcc") or {}).get("balanced_accuracy"))
        put(f"probe_{task}_with_heads", (by_method.get(f"{model_name}+heads") or {}).get("balanced_accuracy"))
    put("tag_roc_auc", (res.get("tag_roc_auc") or {}).get("model"))
    put("tag_roc_auc_frame_mean", (res.get("tag_roc_auc") or {}).get("frame_mean"))
    put("pitch_class_f1", (res.get("pitch_classes") or {}).get("model_f1"))
    put("pitch_class_f1_chroma_cqt", (res.get("pitch_classes") or {}).get("baseline_f1"))
    put("key_mirex_ks_on_pitch_classes", (res.get("pitch_classes") or {}).get("key_ks_on_head"))
    put("mode_from_key", (res.get("mode_from_key") or {}).get("model"))
    put("meter_exact_from_analyze", (res.get("meter_from_analyze") or {}).get("exact"))
    put("meter_exact_evidence_reading", ((res.get("meter_from_analyze") or {}).get("evidence_reading") or {}).get("exact"))
    put("meter_class_from_analyze", (res.get("meter_from_analyze") or {}).get("class_balanced"))
    return out


def fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def fmt_probe(p: dict) -> str:
    """A probe's balanced accuracy, with the spread over its repeats when there were several."""
    v = p.get("balanced_accuracy")
    return fmt(v) + (f" ± {p['repeat_std']:.3f}" if v is not None and len(p.get("per_repeat") or []) > 1 else "")


def render_table(r: dict) -> str:
    res = r["results"]
    what = 'pretrained' if r['pretrained'] else 'NOT pretrained: seeded weights'
    if r.get("oracle"):
        what = "ORACLE: score targets fed as head outputs (a check of the chain, not a model)"
    lines = [f"# Musicality benchmark: {r['model']} ({what})",
             "", f"{r['clips']} clips of {r['pieces']} test pieces from `{r['data']}` (soundfonts {r['soundfonts']}); "
             f"{r['env']}, {r['date']}."]
    lines += [f"- note: {n}" for n in r["notes"]]
    if r.get("rhythm_shifts") and list(r["rhythm_shifts"]) != [0.0]:
        lines += [f"- beats, downbeats, tempo and meter as `analyze()` reads them: the beat, tempo and meter heads averaged "
                  f"over passes at {', '.join(f'{v:+.3g}' for v in r['rhythm_shifts'])} semitones (`rhythm_shifts`)"]
    lines += ["", "| measure | model | baseline in the same run | target |", "|---|---|---|---|"]
    k = res["key_weighted"]
    lines.append(f"| key, MIREX weighted (n={k['n']}) | {fmt(k['model'])} | {fmt(k['baseline'])} ({k['baseline_name']}) | {TARGETS['key_weighted']} |")
    if k.get("clip_key"):
        lines.append(f"| key, the key head's clip mean alone | {fmt(k.get('model_head_mean'))} | | |")
    for src, v in (k.get("by_source") or {}).items():
        what = {"written": "reference written in the score", "analysis": "reference from music21's windowed analysis"}.get(src, src)
        lines.append(f"| key, {what} (n={v['n']}) | {fmt(v['model'])} | {fmt(v['baseline'])} | |")
    if k.get("score_notes") is not None:
        parts = ", ".join(f"{src} {fmt(v.get('score_notes'))}" for src, v in (k.get("by_source") or {}).items())
        lines.append(f"| key, Krumhansl-Schmuckler on the clip's score notes, no audio: a perfect transcription read by "
                     f"the profile method (n={k['n_score_notes']}) | | {fmt(k['score_notes'])} ({parts}) | |")
    b = res["beat_f"]
    lines.append(f"| beat F-measure (n={b['n']}) | {fmt(b['model'])} | {fmt(b['baseline'])} ({b['baseline_name']}) | {TARGETS['beat_f']} |")
    d = res["downbeat_f"]
    lines.append(f"| downbeat F-measure (n={d['n']}) | {fmt(d['model'])} | — | {TARGETS['downbeat_f']} |")
    if d.get("evidence_reading") is not None:
        lines.append(f"| downbeat F-measure, bars read from the downbeat evidence alone (no `downbeat_model` or `bar_model`) | "
                     f"{fmt(d['evidence_reading'])} | | |")
    if d.get("bar_length_from_score") is not None:
        lines.append(f"| downbeat F-measure with the score's bar length, phase from the downbeat evidence "
                     f"(diagnostic, n={d['n_bar_length_from_score']}) | {fmt(d['bar_length_from_score'])} | | |")
    t = res["tempo"]
    lines.append(f"| tempo Acc1 (n={t['model']['n']}) | {fmt(t['model']['acc1'])} | {fmt(t['baseline']['acc1'])} ({t['baseline_name']}) | {TARGETS['tempo_acc1']} |")
    lines.append(f"| tempo Acc1, simple meters (n={t['model']['n_simple']}) | {fmt(t['model']['acc1_simple_meter'])} | {fmt(t['baseline']['acc1_simple_meter'])} | |")
    lines.append(f"| tempo Acc2 (x2, x3, x1/2, x1/3) | {fmt(t['model']['acc2'])} | {fmt(t['baseline']['acc2'])} | |")
    c = res["chords"]
    lines.append(f"| chord root (frames={c['model']['frames_root']}) | {fmt(c['model']['root'])} | {fmt(c['base']['root'])} ({c['baseline_name']}) | {TARGETS['chord_root']} |")
    lines.append(f"| chord maj/min (frames={c['model']['frames_majmin']}) | {fmt(c['model']['majmin'])} | {fmt(c['base']['majmin'])} | {TARGETS['chord_majmin']} |")
    pcs = res.get("pitch_classes")
    if pcs:
        lines.append(f"| pitch classes sounding, frame F-measure of the `pitch_classes` head at 0.5 (frames={pcs['frames']}) | "
                     f"{fmt(pcs['model_f1'])} | {fmt(pcs['baseline_f1'])} (chroma_cqt over its frame maximum >= "
                     f"{pcs['baseline_threshold']:g}, the threshold best for it here) | |")
        lines.append(f"| key, Krumhansl-Schmuckler on the `pitch_classes` head's clip mean, unfitted (n={pcs['key_n']}) | "
                     f"{fmt(pcs['key_ks_on_head'])} | {fmt(res['key_weighted']['baseline'])} (on chroma_cqt) | |")
    for task in PROBE_TASKS:
        p = res["probes"].get(task, {})
        if "why" in p:
            lines.append(f"| probe {task} (balanced accuracy) | — | — | {TARGETS['probe_' + task]} ({p['why']}) |")
            continue
        model = p.get(r["model"], {})
        plus = f"{r['model']}+heads"
        others = "; ".join(f"{name} {fmt_probe(v)}" for name, v in p.items()
                           if name not in (r["model"], "mfcc", plus))
        base = f"{fmt_probe(p.get('mfcc', {}))} (MFCC)" + (f"; {others}" if others else "")
        reps = len(model.get("per_repeat") or [1])
        lines.append(f"| probe {task} (balanced acc., n={model.get('n')}, {model.get('classes')} classes"
                     + (f", mean ± std of {reps} draws" if reps > 1 else "") + f") | "
                     f"{fmt_probe(model)} | {base} | {TARGETS['probe_' + task]} |")
        if plus in p:
            lines.append(f"| probe {task}, head outputs also candidate layers | {fmt_probe(p[plus])} | | |")
    if "mode_from_key" in res:
        mk = res["mode_from_key"]
        lines.append(f"| mode of the key `analyze()` reports (balanced acc., all {mk['n']} major/minor-tagged clips: "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(mk['classes'].items()))}) | {fmt(mk['model'])} | | not a probe |")
        if mk.get("score_notes"):
            sn = mk["score_notes"]
            lines.append(f"| mode of Krumhansl-Schmuckler on the clip's score notes, no audio (balanced acc., {sn['n']} of those "
                         f"clips): what profile matching on a perfect transcription reads | | {fmt(sn['model'])} | |")
    if "meter_from_analyze" in res:
        mm = res["meter_from_analyze"]
        lines.append(f"| meter `analyze()` reports, time signature exact (all {mm['n']} clips with a reference meter) | "
                     f"{fmt(mm['exact'])} | | not a probe |")
        if mm.get("evidence_reading"):
            ev = mm["evidence_reading"]
            lines.append(f"| meter, time signature exact, bars read from the downbeat evidence alone | {fmt(ev['exact'])} | | |")
        lines.append(f"| meter `analyze()` reports, meter class (balanced acc.: "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(mm['classes'].items()))}) | {fmt(mm['class_balanced'])} | | not a probe |")
    if "tag_roc_auc" in res:
        tr = res["tag_roc_auc"]
        how = "" if tr.get("reading", "frame mean") == "frame mean" else ", as `tag()` reads them: the `clip_tags` record"
        lines.append(f"| tag ROC-AUC ({tr['tags']} tags{how}) | {fmt(tr['model'])} | — | {TARGETS['tag_roc_auc']} |")
        if tr.get("frame_mean") is not None:
            lines.append(f"| tag ROC-AUC, the `tags` head's frame mean | {fmt(tr['frame_mean'])} | | |")
    lines += ["", f"Time: model {r['timing_s']['model']} s, baselines {r['timing_s']['baselines']} s, "
              f"other probe models {r['timing_s']['probe_models']} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
