"""Score-supervised multi-task training of ``tcn-music`` (issue 15) on corpus version 2.

Three steps, each resumable:

``python -m training.musical cache --corpus DIR [--corpus DIR2 ...] --out CACHE``
    Runs the model's constant-Q front-end once over every clip that has score targets
    (``targets/**.npz``, so a corpus still being built can be cached in passes) and stores,
    per shard of clips, float16 features ``[frames, bins]`` next to the frame targets (beats,
    downbeats, beat mask, key, chord) and the clip targets (meter, tempo, tags). The front-end
    has no trainable weight, so training on cached features is exact and several times cheaper.

``python -m training.musical train --cache CACHE --out RUN [--max-minutes M] [--resume]``
    Trains every layer after the front-end on random crops (``crop_seconds``) with masked
    losses (a frame whose label is unknown contributes nothing), transposition augmentation
    (the constant-Q bins shifted by whole semitones and the key and chord labels with them)
    and gain augmentation; checkpoints every epoch (``last.weights.h5``, ``state.json``) and
    keeps the best on the validation crops (``best.weights.h5``).

``python -m training.musical train ... --init shipped --anneal --average-from 0.5``
    Fine-tunes from the shipped weights (or a weights file), keeping the shipped tag vocabulary,
    and keeps a running average of the weights of every epoch after the given fraction of the
    stint (stochastic weight averaging), scored on the same validation crops as each epoch; the
    average becomes the best weights when it scores higher.

``python -m training.musical ship --run RUN``
    Writes the best weights into ``mirzoo/weights/`` and the manifest entry (vocabulary,
    training record), atomically.

Fits on the package's weights after ``ship`` (each rewrites the entry): ``fit-pitch-classes`` (a
chroma head on the frozen frame vector), ``fit-tags`` (the tags head refitted on frozen ``conv3``,
``frame`` and ``embedding``), ``fit-key`` (the clip key record), ``fit-downbeats`` (bar length and phase),
``fit-bars`` (bar length and phase from a bidirectional GRU over the tracked beats, ``bar_model``), ``fit-clip-tags``.

Two config keys for fine-tunes that must not cost what the embedding already knows (the linear probes
of ``benchmarks/musicality.py``): ``anchor`` (``{"layers": [...], "weight": w}``, with ``--init``) holds
the named ``extract()`` layers, or heads' outputs (``"key"``, ``"chord"``: what the fitted clip key
reads), frame by frame, near a frozen copy of the initial weights with a cosine loss of total weight
``w`` (learning without forgetting; Li & Hoiem 2017), while the heads' losses move the rest; a layer
named ``"head:channel"`` (``"beats:0"``: the beat channel of the beat/downbeat head) anchors that one
channel, by the cosine over the crop's frames of its activation curve (the other channels stay free);
``freeze_batchnorm: true`` keeps every batch norm in inference mode with its initial statistics
(otherwise the batch statistics of training crops, and the moving statistics they drift, change every
layer in a way no loss sees).

The configuration is ``training/configs/tcn-music.json``; the model's architecture is its
manifest entry (``weights_manifest.json``, ``tcn-music``).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("training.musical")

MODEL = "tcn-music"
#: tempo classes: 48 log-spaced centres 40 * 2**(k / 16) BPM (40 .. 306)
TEMPO_MIN, TEMPO_PER_OCTAVE, N_TEMPO = 40.0, 16, 48
N_KEYS, N_CHORD_QUALITIES, NO_CHORD = 24, 9, 108
SPLIT_OF_SHARD = ("train", "valid", "test")


def tempo_class(bpm: float) -> int:
    """Index of the tempo class nearest ``bpm`` (log scale), or -1 for NaN / non-positive."""
    if not np.isfinite(bpm) or bpm <= 0:
        return -1
    k = int(round(TEMPO_PER_OCTAVE * math.log2(bpm / TEMPO_MIN)))
    return min(max(k, 0), N_TEMPO - 1)


def transpose_key(key: np.ndarray, shift: int) -> np.ndarray:
    """Key indices (tonic + 12 * minor, -1 masked) transposed by ``shift`` semitones."""
    out = key.copy()
    ok = key >= 0
    out[ok] = (key[ok] % 12 + shift) % 12 + 12 * (key[ok] // 12)
    return out


def transpose_chord(chord: np.ndarray, shift: int) -> np.ndarray:
    """Chord indices (root * 9 + quality, 108 = N, -1 masked) transposed by ``shift`` semitones."""
    out = chord.copy()
    ok = (chord >= 0) & (chord < NO_CHORD)
    out[ok] = ((chord[ok] // N_CHORD_QUALITIES + shift) % 12) * N_CHORD_QUALITIES + chord[ok] % N_CHORD_QUALITIES
    return out


def shift_bins(x: np.ndarray, bins: int, fill: float) -> np.ndarray:
    """``x [..., F]`` moved ``bins`` along the last axis (up if positive), the gap filled with ``fill``."""
    if bins == 0:
        return x
    out = np.full_like(x, fill)
    if bins > 0:
        out[..., bins:] = x[..., :-bins]
    else:
        out[..., :bins] = x[..., -bins:]
    return out


def widen(events: np.ndarray) -> np.ndarray:
    """Frame targets for an event track: 1 on the event frame, 0.5 on its neighbours."""
    e = events.astype(np.float32)
    out = e.copy()
    out[1:] = np.maximum(out[1:], 0.5 * e[:-1])
    out[:-1] = np.maximum(out[:-1], 0.5 * e[1:])
    return out


# -- cache ----------------------------------------------------------------------------------------
def _frontend(entry: dict):
    import keras

    from mirzoo.nn.frontend import build_frontend

    layer = build_frontend(dict(entry["config"]["frontend"]))

    def run(y: np.ndarray) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(layer(y[None].astype(np.float32))))[0]

    return run, layer


#: per cache folder: the soundfonts of each corpus cached in it (``record_corpus_sources``)
CORPUS_SOURCES = "corpora.json"


def record_corpus_sources(cache_dir: Path, corpora) -> dict:
    """Merge the soundfonts each corpus was rendered with (its ``build_config.json``: ``soundfont`` and
    ``mix_soundfonts``) and its split assignment (``seed``, ``split_fractions``) into
    ``cache_dir/corpora.json``, keyed by corpus folder name as the cache's clips are; returns the whole
    record. A corpus without a build config is recorded as unknown.

    The split of a piece is a hash of the build seed and the piece, so corpora built with different seeds
    or fractions put different pieces in ``test``: one cache mixing them would train on another corpus's
    test pieces. That is refused (``SystemExit`` naming both corpora) before anything is written."""
    from mirzoo.fileio import write_json_atomic

    path = Path(cache_dir) / CORPUS_SOURCES
    record = json.loads(path.read_text()) if path.exists() else {}
    for corpus in corpora:
        config = Path(corpus) / "build_config.json"
        cfg = json.loads(config.read_text()) if config.exists() else {}
        new = {"soundfont": cfg.get("soundfont"), "mix_soundfonts": list(cfg.get("mix_soundfonts") or []),
               "p_soundfont_mix": (cfg.get("augment") or {}).get("p_soundfont_mix"),
               "seed": cfg.get("seed"), "split_fractions": cfg.get("split_fractions")}
        for other, rec in record.items():
            if other != Path(corpus).name and rec.get("seed") is not None and cfg and (
                    (rec["seed"], rec["split_fractions"]) != (new["seed"], new["split_fractions"])):
                raise SystemExit(f"{corpus}: built with seed {new['seed']} and split fractions {new['split_fractions']}, "
                                 f"but {other} in the cache {cache_dir} with seed {rec['seed']} and "
                                 f"{rec['split_fractions']}: their pieces fall in different splits, so one cache of "
                                 "both would train on test pieces; rebuild with the same seed and fractions")
        record[Path(corpus).name] = new
    write_json_atomic(path, record)
    return record


def describe_corpus_sources(sources: dict | None) -> str:
    """How the cached corpora were rendered, for the training record:
    ``"soundfonts per corpus (corpus-v2: FluidR3; corpus-v2-mix: MuseScore_General_Lite, each channel ...)"``;
    without a record (a cache from before ``corpora.json``), the FluidR3 soundfont every such cache had."""
    if not sources:
        return "the FluidR3_GM soundfont"
    parts = []
    for name, src in sorted(sources.items()):
        main = src.get("soundfont") or "soundfont not recorded"
        mix = src.get("mix_soundfonts") or []
        p = src.get("p_soundfont_mix")
        parts.append(f"{name}: {main}" + (f", each channel with probability {p if p is not None else '(not recorded)'} "
                                          f"from {' or '.join(mix)} instead" if mix else ""))
    return "soundfonts per corpus (" + "; ".join(parts) + ")"


def cache(args) -> None:
    """Front-end features and targets of every finished clip, in shards of ``--shard-clips``."""
    from mirzoo.audio import load_audio
    from mirzoo.zoo.manifest import get_entry
    from training.corpus import load_clip_targets

    entry = get_entry(MODEL)
    run, layer = _frontend(entry)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "done.json"
    done = set(json.loads(done_path.read_text())) if done_path.exists() else set()
    shard_no = len(glob.glob(str(out / "shard-*.npz")))
    pending: list = []
    t0, n_new = time.time(), 0

    def flush():
        nonlocal shard_no, pending
        if not pending:
            return
        feats = np.concatenate([p["feats"] for p in pending])
        offsets = np.cumsum([0] + [len(p["feats"]) for p in pending])
        arrays = {"feats": feats, "offsets": offsets}
        for k in ("beat", "downbeat", "beat_mask", "key", "chord"):
            arrays[k] = np.concatenate([p[k] for p in pending])
        for k in ("meter", "tempo_bpm"):
            arrays[k] = np.array([p[k] for p in pending])
        for k in ("clip_id", "piece_id", "split", "tags", "corpus", "split_key"):
            arrays[k] = np.array([p[k] for p in pending])
        tmp = out / f".shard-{shard_no:04d}.npz"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, out / f"shard-{shard_no:04d}.npz")
        done.update(p["key_id"] for p in pending)
        tmp = out / ".done.json"
        tmp.write_text(json.dumps(sorted(done)))
        os.replace(tmp, done_path)
        log.info("shard %d: %d clips, %.2f h (%.0f s)", shard_no, len(pending), len(feats) * layer.hop_length
                 / layer.sample_rate / 3600, time.time() - t0)
        shard_no += 1
        pending = []

    record_corpus_sources(out, [Path(c) for c in args.corpus])
    for corpus in args.corpus:
        corpus = Path(corpus)
        files = sorted(glob.glob(str(corpus / "targets" / "**" / "*.npz"), recursive=True))
        if args.splits:
            keep = tuple(f"{os.sep}{s}{os.sep}" for s in args.splits.split(","))
            files = [f for f in files if any(k in os.path.relpath(f, corpus / "targets").join([os.sep, os.sep]) for k in keep)]
        for path in files:
            key_id = f"{corpus.name}/{os.path.relpath(path, corpus)}"
            if key_id in done:
                continue
            t = load_clip_targets(path)
            meta = t["meta"]
            y = load_audio(str(corpus / meta["path"]), layer.sample_rate)
            feats = run(y)
            n = min(len(feats), len(t["beat"]))
            pending.append({
                "key_id": key_id, "feats": feats[:n].astype(np.float16),
                "beat": t["beat"][:n].astype(np.uint8), "downbeat": t["downbeat"][:n].astype(np.uint8),
                "beat_mask": t["beat_mask"][:n].astype(np.uint8), "key": t["key"][:n].astype(np.int16),
                "chord": t["chord"][:n].astype(np.int16), "meter": int(t["meter"]),
                "tempo_bpm": float(t["tempo_bpm"]), "clip_id": meta["clip_id"], "piece_id": meta["piece_id"],
                "split": meta["split"], "tags": meta.get("tags", ""), "corpus": corpus.name,
                "split_key": meta.get("split_key", meta["piece_id"]),
            })
            n_new += 1
            if len(pending) >= args.shard_clips:
                flush()
            if args.limit and n_new >= args.limit:
                break
    flush()
    log.info("cached %d new clips (%d in all) in %.0f s", n_new, len(done), time.time() - t0)


def read_cache(folder: Path) -> dict:
    """Every shard of a cache, concatenated per split: ``{split: dict of arrays and clip lists}``."""
    parts: dict = {}
    for path in sorted(folder.glob("shard-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        offs = d["offsets"]
        for i in range(len(offs) - 1):
            split = str(d["split"][i])
            sl = slice(offs[i], offs[i + 1])
            clip = {k: d[k][sl] for k in ("feats", "beat", "downbeat", "beat_mask", "key", "chord")}
            clip.update({k: d[k][i] for k in ("meter", "tempo_bpm", "clip_id", "piece_id", "tags", "corpus")})
            parts.setdefault(split, []).append(clip)
    return parts


# -- training -------------------------------------------------------------------------------------
HEAD_LOSSES = {
    "beats": "binary_crossentropy",
    "key": "sparse_categorical_crossentropy",
    "chord": "sparse_categorical_crossentropy",
    "meter": "sparse_categorical_crossentropy",
    "tempo": "sparse_categorical_crossentropy",
    "tags": "binary_crossentropy",
}

#: heads a config may add (``add_heads``) whose targets are derived from the score targets already
#: cached: ``mode``, a frame-wise softmax over major/minor, is the mode of the frame's key (masked
#: where the key is).  The 24-way key head holds the mode only as a sum over twelve softmax outputs,
#: which no linear read of the embedding (a probe on pooled frames) recovers; a head of its own gives
#: the mode one direction of the embedding, and users ``tag(head="mode")``.
DERIVED_HEADS = {"mode": ("major", "minor")}


def head_losses(config: dict) -> dict:
    """The loss of every trained head of a model config: :data:`HEAD_LOSSES` plus its derived heads."""
    losses = dict(HEAD_LOSSES)
    for head in DERIVED_HEADS:
        if head in config.get("heads", {}):
            losses[head] = "sparse_categorical_crossentropy"
    return losses


def beat_channel_loss(weights, bar_phase: float = 0.0):
    """Binary cross-entropy of the ``beats`` head with a weight per channel (beat, downbeat), normalised
    by their sum, so ``[1, 1]`` is the plain loss; config key ``beat_channel_weights``. Downbeats are a
    quarter or fewer of the beats and the harder half: a larger weight asks more of them.

    ``bar_phase`` (config key ``bar_phase_weight``) adds that much of each crop's :func:`bar_phase_nll`
    to every frame of the crop: the frame-wise loss lets the downbeat channel fire on every strong beat
    (beat 3 of a four-beat bar as much as beat 1), the bar-phase term asks it to rank the first beat of
    each bar above the bar's other beats."""
    import keras

    if (not isinstance(weights, list) or len(weights) != 2 or any(isinstance(w, bool) or not isinstance(w, (int, float))
                                                                  or w < 0 for w in weights) or sum(weights) <= 0):
        raise SystemExit(f"beat_channel_weights={weights!r} must be two numbers >= 0 (beat, downbeat), not both 0")
    if isinstance(bar_phase, bool) or not isinstance(bar_phase, (int, float)) or not 0 <= bar_phase < float("inf"):
        raise SystemExit(f"bar_phase_weight={bar_phase!r} must be a finite number >= 0 (0: no bar-phase term)")
    w = np.asarray(weights, np.float32) / float(sum(weights))

    def beats_loss(y_true, y_pred):
        per_channel = keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None])  # [batch, frames, 2]
        loss = keras.ops.sum(per_channel * w, axis=-1)
        if bar_phase:
            loss = loss + float(bar_phase) * bar_phase_nll(y_true, y_pred)[:, None]
        return loss

    return beats_loss


def meter_bar_length_loss(labels, weight: float = 0.0):
    """Categorical cross-entropy of the ``meter`` head plus ``weight`` times the cross-entropy of its
    bar length: the head's probabilities summed over the meters of each number of beats per bar
    (:func:`mirzoo.tasks.analyze.beats_per_bar`: 2/4, 2/2 and 6/8 are all two-beat bars), against the
    target meter's.  Config key ``meter_bar_length_weight``.

    ``analyze()`` reads the bar length from the meter head (summed the same way) and the downbeat
    evidence; the plain loss spends the head on notational distinctions audio hardly carries (4/4
    against 4/2), the added term asks it for the one the downbeats need (three beats against four).
    Targets of -1 (masked frames, weight 0) add nothing to either term (``keras``' own sparse loss
    raises on them eagerly)."""
    import keras
    from mirzoo.tasks.analyze import beats_per_bar

    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
        raise SystemExit(f"meter_bar_length_weight={weight!r} must be a finite number >= 0 (0: the plain loss)")
    lengths = [beats_per_bar(m) for m in labels]
    kinds = sorted(set(lengths))
    group = np.zeros((len(labels), len(kinds)), np.float32)  # [meters, bar lengths], one 1 per row
    group[np.arange(len(labels)), [kinds.index(b) for b in lengths]] = 1.0

    def meter_loss(y_true, y_pred):
        ops = keras.ops
        target = ops.one_hot(ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32"), len(labels))  # -1: zeros
        p = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)
        loss = -ops.sum(target * ops.log(p), axis=-1)
        if weight:
            p_len = ops.clip(ops.matmul(ops.cast(y_pred, "float32"), group), 1e-7, 1.0)
            loss = loss - float(weight) * ops.sum(ops.matmul(target, group) * ops.log(p_len), axis=-1)
        return loss

    return meter_loss


#: bars per crop :func:`bar_phase_nll` and :func:`bar_phase_accuracy` look at (a 12 s crop of two-beat
#: bars at 240 BPM has 24); later bars are left out
MAX_BARS_PER_CROP = 32


def bar_phase_nll(y_true, y_pred, max_bars: int = MAX_BARS_PER_CROP):
    """Per crop, the mean over its bars of ``-log softmax(downbeat logits at the bar's beats)[first beat]``.

    ``y_true`` and ``y_pred`` are ``beats`` targets and outputs ``[crops, frames, 2]`` (beat, downbeat;
    :func:`widen`ed targets, so an event's own frame is the one at 1).  A bar runs from a downbeat to
    the frame before the next; the beats before a crop's first downbeat belong to no bar.  Bars with
    fewer than two beats say nothing about the phase and are left out; a crop without a bar scores 0."""
    import keras

    ops = keras.ops
    beat = ops.cast(y_true[..., 0] >= 0.999, "float32")
    down = ops.cast(y_true[..., 1] >= 0.999, "float32") * beat
    bar = ops.cumsum(down, axis=1)  # 0 before the first downbeat, then 1, 2, ...
    member = ops.cast(ops.equal(bar[..., None], ops.arange(1, max_bars + 1, dtype="float32")), "float32")
    member = member * beat[..., None]  # [crops, frames, bars]: the bar's beats
    p = ops.clip(ops.cast(y_pred[..., 1], "float32"), 1e-7, 1.0 - 1e-7)
    logit = (ops.log(p) - ops.log(1.0 - p))[..., None]
    spread = ops.logsumexp(ops.where(member > 0, logit, -1e9), axis=1)  # [crops, bars]
    first = ops.sum(member * down[..., None] * logit, axis=1)
    counted = ops.cast(ops.sum(member, axis=1) >= 2, "float32")
    nll = ops.where(counted > 0, spread - first, 0.0)
    return ops.sum(nll, axis=1) / ops.maximum(ops.sum(counted, axis=1), 1.0)


def bar_phase_accuracy(beats_true: np.ndarray, downbeat_pred: np.ndarray, weights: np.ndarray) -> float:
    """Share of the bars (as :func:`bar_phase_nll` counts them, and with a weighted downbeat frame) whose
    largest downbeat output among the bar's beats is on its first beat; NaN without such bars."""
    hits = []
    for y, p, w in zip(beats_true, downbeat_pred, weights):
        beats = np.flatnonzero(y[:, 0] >= 0.999)
        downs = set(np.flatnonzero((y[:, 1] >= 0.999) & (y[:, 0] >= 0.999)).tolist())
        bar_of = np.cumsum([b in downs for b in beats])
        for k in range(1, min(int(bar_of.max(initial=0)), MAX_BARS_PER_CROP) + 1):
            members = beats[bar_of == k]
            if len(members) >= 2 and w[members[0]] > 0:
                hits.append(members[int(np.argmax(p[members]))] == members[0])
    return float(np.mean(hits)) if hits else float("nan")


def added_heads(cfg: dict) -> tuple:
    """The config's ``add_heads``, checked against :data:`DERIVED_HEADS`."""
    heads = cfg.get("add_heads", [])
    if not isinstance(heads, list) or any(h not in DERIVED_HEADS for h in heads):
        raise SystemExit(f"add_heads={heads!r} must be a list of heads from {sorted(DERIVED_HEADS)}")
    return tuple(heads)


def meter_weights(clips: list, exponent: float) -> dict:
    """Loss weight of each meter class: ``(clips of the meter / mean clips per meter) ** -exponent``,
    scaled to a mean of 1 over the clips (``exponent`` 0: all 1; 1: every meter weighs the same in all)."""
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not 0 <= exponent <= 1:
        raise SystemExit(f"meter_balance={exponent!r} must be a number in [0, 1] (0: no balancing)")
    meters = np.array([int(c["meter"]) for c in clips if int(c["meter"]) >= 0])
    if not meters.size:
        return {}
    kinds, counts = np.unique(meters, return_counts=True)
    raw = (counts / counts.mean()) ** -float(exponent)
    scale = float((raw * counts).sum() / counts.sum())
    return {int(k): float(r / scale) for k, r in zip(kinds, raw)}


def mode_weights(clips: list, exponent: float) -> dict:
    """Loss weight of the mode head's classes (0 major, 1 minor): ``(key frames of the mode / mean key frames
    per mode) ** -exponent``, scaled to a mean of 1 over those frames (config key ``mode_balance``; 0: all 1,
    1: minor frames weigh as much in all as major ones).  The corpus is mostly major, and the balanced mode
    probe asks as much of the minor clips."""
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not 0 <= exponent <= 1:
        raise SystemExit(f"mode_balance={exponent!r} must be a number in [0, 1] (0: no balancing)")
    counts = np.zeros(2)
    for c in clips:
        key = np.asarray(c["key"], np.int64)
        counts += np.bincount(key[key >= 0] // 12, minlength=2)[:2]
    if not (counts > 0).all():
        return {}
    raw = (counts / counts.mean()) ** -float(exponent)
    scale = float((raw * counts).sum() / counts.sum())
    return {0: float(raw[0] / scale), 1: float(raw[1] / scale)}


class CropSampler:
    """Random crops of ``length`` frames with their targets and per-frame loss weights."""

    def __init__(self, clips: list, vocab: list, length: int, rng: np.random.Generator, *, augment: dict,
                 heads: tuple = (), meter_weight: dict | None = None, mode_weight: dict | None = None):
        self.clips, self.vocab, self.length, self.rng, self.aug = clips, vocab, length, rng, augment
        self.heads, self.meter_weight = tuple(heads), dict(meter_weight or {})
        self.mode_weight = dict(mode_weight or {})
        lengths = np.array([len(c["feats"]) for c in clips], np.float64)
        self.p = lengths / lengths.sum()
        index = {t: i for i, t in enumerate(vocab)}
        self.tags = []
        for c in clips:
            v = np.zeros(len(vocab), np.float32)
            for t in str(c["tags"]).split(";"):
                if t in index:
                    v[index[t]] = 1
            self.tags.append(v)

    def crop(self, i: int, start: int, shift: int = 0, gain_db: float = 0.0):
        c, n = self.clips[i], self.length
        T = len(c["feats"])
        sl = slice(start, min(start + n, T))
        m = sl.stop - sl.start
        bins = c["feats"].shape[1]
        bins_per_semitone = bins // 72
        x = np.full((n, bins), -100.0, np.float32)
        x[:m] = shift_bins(c["feats"][sl].astype(np.float32), shift * bins_per_semitone, -100.0) + gain_db
        valid = np.zeros(n, np.float32)
        valid[:m] = 1
        beats = np.zeros((n, 2), np.float32)
        beats[:m, 0] = widen(c["beat"][sl])
        beats[:m, 1] = widen(c["downbeat"][sl])
        beat_w = valid.copy()
        beat_w[:m] *= c["beat_mask"][sl]
        key = np.full(n, -1, np.int64)
        key[:m] = transpose_key(c["key"][sl].astype(np.int64), shift)
        chord = np.full(n, -1, np.int64)
        chord[:m] = transpose_chord(c["chord"][sl].astype(np.int64), shift)
        meter = np.full(n, int(c["meter"]), np.int64) * (valid > 0) + (valid == 0) * -1
        tempo = np.full(n, tempo_class(float(c["tempo_bpm"])), np.int64) * (valid > 0) + (valid == 0) * -1
        y = {"beats": beats, "key": key, "chord": chord, "meter": meter, "tempo": tempo,
             "tags": np.repeat(self.tags[i][None], n, 0)}
        if "mode" in self.heads:
            y["mode"] = np.where(key >= 0, key // 12, -1)
        w = {"beats": beat_w, "tags": valid}
        for k in ("key", "chord", "meter", "tempo", "mode"):
            if k in y:
                w[k] = (y[k] >= 0).astype(np.float32)
                y[k] = np.maximum(y[k], 0)
        if self.meter_weight:
            w["meter"] *= self.meter_weight.get(int(c["meter"]), 1.0)
        if self.mode_weight and "mode" in y:
            w["mode"] *= np.where(y["mode"] == 1, self.mode_weight.get(1, 1.0), self.mode_weight.get(0, 1.0))
        return x, y, w

    def batch(self, size: int):
        xs, ys, ws = [], {}, {}
        for _ in range(size):
            i = int(self.rng.choice(len(self.clips), p=self.p))
            T = len(self.clips[i]["feats"])
            start = int(self.rng.integers(0, max(1, T - self.length + 1)))
            shift = 0
            if self.rng.random() < self.aug.get("p_transpose", 0.0):
                lo, hi = self.aug.get("transpose", [-5, 6])
                shift = int(self.rng.integers(lo, hi + 1))
            gain = float(self.rng.uniform(*self.aug.get("gain_db", [0.0, 0.0])))
            x, y, w = self.crop(i, start, shift, gain)
            xs.append(x)
            for k in y:
                ys.setdefault(k, []).append(y[k])
                ws.setdefault(k, []).append(w[k])
        return np.stack(xs), {k: np.stack(v) for k, v in ys.items()}, {k: np.stack(v) for k, v in ws.items()}


def fixed_crops(sampler: CropSampler, count: int, seed: int):
    """The same validation crops every epoch (deterministic, no augmentation)."""
    rng = np.random.default_rng(seed)
    xs, ys, ws = [], {}, {}
    for _ in range(count):
        i = int(rng.choice(len(sampler.clips), p=sampler.p))
        T = len(sampler.clips[i]["feats"])
        x, y, w = sampler.crop(i, int(rng.integers(0, max(1, T - sampler.length + 1))))
        xs.append(x)
        for k in y:
            ys.setdefault(k, []).append(y[k])
            ws.setdefault(k, []).append(w[k])
    return np.stack(xs), {k: np.stack(v) for k, v in ys.items()}, {k: np.stack(v) for k, v in ws.items()}


def crop_frames(cfg: dict, entry: dict) -> int:
    """Frames in a training or validation crop of ``crop_seconds``."""
    hop = entry["config"]["frontend"]["hop_length"]
    return int(round(float(cfg.get("crop_seconds", 12.0)) * entry["sample_rate"] / hop))


def validation_crops(cfg: dict, entry: dict, data: dict, vocab: list, heads: tuple = ()):
    """A run's fixed validation crops (its ``valid_crops`` from the valid split, seeded by its ``seed``): the
    same every epoch, and for :func:`interpolate`, which scores against the run's own."""
    sampler = CropSampler(data.get("valid") or data["train"], vocab, crop_frames(cfg, entry), np.random.default_rng(0),
                          augment={}, heads=heads)
    return fixed_crops(sampler, int(cfg.get("valid_crops", 64)), int(cfg.get("seed", 0)) + 1)


def valid_metrics(model, crops, batch: int = 8) -> dict:
    """Masked frame accuracies of the softmax heads and beat/downbeat frame F1 on fixed crops."""
    x, y, w = crops
    preds: dict = {}
    for lo in range(0, len(x), batch):
        out = model.predict_on_batch(x[lo : lo + batch])
        for k, v in out.items():
            preds.setdefault(k, []).append(np.asarray(v))
    preds = {k: np.concatenate(v) for k, v in preds.items()}
    m = {}
    for k in ("key", "chord", "meter", "tempo", "mode"):
        if k not in preds or k not in y:
            continue
        mask = w[k] > 0
        m[f"{k}_acc"] = float((preds[k].argmax(-1)[mask] == y[k][mask]).mean()) if mask.any() else float("nan")
    # meter frame accuracy is mostly 4/4's: the mean recall over the meters present is scored too
    mask = w["meter"] > 0
    hits = preds["meter"].argmax(-1)[mask] == y["meter"][mask]
    recalls = [float(hits[y["meter"][mask] == c].mean()) for c in np.unique(y["meter"][mask])]
    m["meter_bacc"] = float(np.mean(recalls)) if recalls else float("nan")
    for j, name in enumerate(("beat", "downbeat")):
        mask = w["beats"] > 0
        truth = y["beats"][..., j][mask] >= 1.0
        p = preds["beats"][..., j][mask]
        # frame-level F1 with a one-frame tolerance: a predicted peak frame (> 0.5) counts when
        # the truth is 1 or 0.5 there
        near = y["beats"][..., j][mask] >= 0.5
        hit = (p > 0.5)
        tp = float((hit & near).sum())
        prec = tp / max(hit.sum(), 1)
        rec = float((hit & truth).sum()) / max(truth.sum(), 1)
        m[f"{name}_f1"] = 2 * prec * rec / max(prec + rec, 1e-9)
    m["bar_phase_acc"] = bar_phase_accuracy(y["beats"], preds["beats"][..., 1], w["beats"])
    # the frame accuracy above swings by +-0.05 between epochs and did not track
    # benchmarks/musicality.py's clip-level key score; this one scores a key per crop the same way
    m["key_mirex"] = crop_key_mirex(preds["key"], y["key"], w["key"])
    return m


def crop_key_mirex(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Mean MIREX weighted key score (``mir_eval.key.weighted_score``) of one key per crop.

    ``probs`` ``[crops, frames, 24]``, ``labels`` and ``weights`` ``[crops, frames]`` (key classes of
    :data:`training.corpus_targets.KEYS`; weight 0 where the key is unknown).  A crop's estimate is
    the argmax of its labelled frames' mean probabilities and its reference the most frequent
    labelled key, as ``benchmarks/musicality.py`` scores whole clips; crops without a key are left out.
    """
    refs, ests = [], []
    for p, y, w in zip(probs, labels, weights):
        mask = w > 0
        if not mask.any():
            continue
        refs.append(int(np.bincount(y[mask].astype(int), minlength=p.shape[-1]).argmax()))
        ests.append(int(p[mask].mean(axis=0).argmax()))
    return key_mirex(ests, refs) if refs else float("nan")


#: what :func:`validation_score` averages; version 2 added the crop-level MIREX key score, version 3 the
#: meters' mean recall and the mode head's accuracy (absent heads are left out), version 4 the bar-phase
#: accuracy, so that a run resumed from an older state rescores its best epoch before comparing
SCORE_KEYS = ("key_acc", "key_mirex", "chord_acc", "beat_f1", "downbeat_f1", "meter_acc", "meter_bacc",
              "tempo_acc", "mode_acc", "bar_phase_acc")
SCORE_VERSION = 4


def validation_score(metrics: dict) -> float:
    """The model-selection score: the mean of the key accuracy and crop-level MIREX key score, the
    chord, meter and tempo accuracies and beat/downbeat F1 (NaN entries left out)."""
    return float(np.nanmean([metrics.get(k, float("nan")) for k in SCORE_KEYS]))


class WeightAverage:
    """Running mean of a model's weights (every variable, batch-norm statistics included) over epochs."""

    def __init__(self):
        self.mean, self.count, self.first = None, 0, None

    def add(self, weights: list, epoch: int) -> None:
        if self.mean is None:
            self.mean, self.first = [np.array(w, np.float64) for w in weights], epoch
        else:
            for m, w in zip(self.mean, weights):
                m += (np.asarray(w, np.float64) - m) / (self.count + 1)
        self.count += 1

    def weights(self) -> list:
        return [m.astype(np.float32) for m in self.mean]


def init_weights_path(init: str, entry: dict) -> Path:
    """The weights file a run starts from: ``"shipped"`` (the package's ``tcn-music`` weights) or a path."""
    if init == "shipped":
        path = Path(__file__).resolve().parent.parent / "mirzoo" / "weights" / entry["weights"]["file"]
    else:
        path = Path(init)
    if not path.is_file():
        raise SystemExit(f"--init {init!r}: no weights file at {path}")
    return path


def build_training_model(entry: dict, n_tags: int, anchor_layers: tuple = (), add_heads: tuple = ()):
    """``(full waveform model, features-in training model, config)`` sharing one set of weights; the
    training model also outputs each of ``anchor_layers`` (``extract()`` layers or heads) as
    ``anchor_<layer>``; ``add_heads`` (names of :data:`DERIVED_HEADS`) are added to the entry's heads."""
    import keras

    from mirzoo.nn import get_family

    config = json.loads(json.dumps(entry["config"]))
    config["n_tags"] = n_tags
    for head in add_heads:
        config["heads"][head] = len(DERIVED_HEADS[head])
    full = get_family(entry["family"])(config, name=MODEL.replace("-", "_"))
    feats_in = full.get_layer("input_bn").input
    outputs = {k: full.output[k] for k in head_losses(config)}
    for name in anchor_layers:
        # the extract() layers and heads are outputs of the family; a head is also a loss output, and
        # Keras takes a tensor as one output only, hence the (weightless) identity
        outputs[anchor_key(name)] = keras.layers.Identity(name=anchor_key(name))(anchor_tensor(full, name))
    model = keras.Model(feats_in, outputs, name="tcn_music_train")
    return full, model, config


def split_anchor(name: str) -> tuple:
    """``(layer, channel or None)`` of an anchor name: ``"key"`` or ``"beats:0"``."""
    layer, _, channel = name.partition(":")
    return layer, (int(channel) if channel else None)


def anchor_key(name: str) -> str:
    """The training model's output (and loss) name of an anchored layer or channel."""
    layer, channel = split_anchor(name)
    return f"anchor_{layer}" if channel is None else f"anchor_{layer}_{channel}"


def anchor_tensor(full, name: str):
    """What an anchor holds: the layer's output ``(batch, frames, d)``, or one channel of it as the
    crop's activation curve ``(batch, frames)`` (the cosine loss then compares curves over frames)."""
    layer, channel = split_anchor(name)
    out = full.output[layer]
    return out if channel is None else out[..., channel]


def anchor_settings(cfg: dict, entry: dict) -> tuple:
    """``(layers, weight)`` of the config's ``anchor`` (``((), 0.0)`` without one), checked: the
    layers must be ``extract()`` layers or heads of the model's entry computed by the network (not a derived
    layer such as ``metrical``; a head the run adds, such as a new ``mode`` head, has no initial output to
    hold), the weight a number > 0."""
    from mirzoo.spec import DERIVED_LAYERS

    anchor = cfg.get("anchor")
    if not anchor:
        return (), 0.0
    names = [n for n in entry["layers"] if n not in DERIVED_LAYERS]  # the network's own layers
    if not isinstance(anchor, dict) or set(anchor) - {"layers", "weight"}:
        raise SystemExit(f"anchor={anchor!r} must be an object with keys layers and weight")
    layers, weight = anchor.get("layers"), anchor.get("weight", 1.0)

    def valid(name) -> bool:
        if not isinstance(name, str):
            return False
        layer, colon, channel = name.partition(":")
        if layer not in names:
            return False
        if not colon:
            return True
        width = entry["layers"][layer]
        return channel.isdigit() and int(channel) < width
    if not isinstance(layers, list) or not layers or not all(valid(n) for n in layers):
        raise SystemExit(f"anchor.layers={layers!r} must be a non-empty list of layers of {MODEL} "
                         f"(or 'layer:channel' with a channel below the layer's width): {names}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
        raise SystemExit(f"anchor.weight={weight!r} must be a number > 0")
    return tuple(layers), float(weight)


def derived_heads_of(config: dict) -> tuple:
    """The derived heads (:data:`DERIVED_HEADS`) a model config has, from the entry or added by a run:
    the ones whose targets the crops must carry."""
    return tuple(h for h in DERIVED_HEADS if h in config.get("heads", {}))


def run_added_heads(model_config: dict, entry: dict) -> tuple:
    """The derived heads a run's model config has beyond the manifest entry's (what to pass as ``add_heads``)."""
    return tuple(h for h in derived_heads_of(model_config) if h not in entry["config"]["heads"])


def load_initial_weights(full, path: Path, entry: dict, n_tags: int) -> list:
    """Load ``path`` into ``full``; weights of a model with other derived heads (:data:`DERIVED_HEADS`)
    than ``full``'s are copied layer by layer: the heads the file lacks keep their fresh initialisation,
    and those ``full`` lacks are left out. Returns the names of the layers that kept it."""
    core = json.loads(json.dumps(entry))
    for head in DERIVED_HEADS:
        core["config"]["heads"].pop(head, None)
    names = {layer.name for layer in full.layers}
    wanted = tuple(h for h in DERIVED_HEADS if h in names)
    last = None
    for heads in dict.fromkeys([wanted, tuple(DERIVED_HEADS), ()]):  # the model's own heads first, then all, then none
        base, _, _ = build_training_model(core, n_tags, add_heads=heads)
        try:
            with warnings.catch_warnings():  # keras warns of the containers it cannot match before it fails
                warnings.filterwarnings("ignore", message="Skipping nested container")
                base.load_weights(path)
        except ValueError as err:  # another set of layers than this file's
            last = err
            continue
        fresh, loaded = [], {b.name for b in base.layers}
        for layer in full.layers:
            if layer.name in loaded:
                layer.set_weights(base.get_layer(layer.name).get_weights())
            elif layer.weights:
                fresh.append(layer.name)
        return fresh
    raise SystemExit(f"{path}: not weights of {MODEL} with heads {list(wanted)} or without them ({last})")


def choose_vocabulary(clips: list, min_count: int, groups: list) -> list:
    counts: dict = {}
    for c in clips:
        if str(c["corpus"]).endswith("-mix"):
            continue  # count pieces once: extra renders of the same pieces do not add tags
        for t in str(c["tags"]).split(";"):
            if t and t.split(":")[0] in groups:
                counts[t] = counts.get(t, 0) + 1
    return sorted(t for t, n in counts.items() if n >= min_count)


def freeze_through(full, name) -> list:
    """Make every layer of ``full`` up to and including the layer ``name`` (in the model's layer order)
    untrainable, so that a fine-tune changes only what comes after it (``"embedding"``: the heads alone,
    every layer that ``extract()`` returns stays as it was). Returns the frozen layers' names."""
    if not name:
        return []
    names = [layer.name for layer in full.layers]
    if name not in names:
        raise SystemExit(f"freeze_through={name!r} is not a layer of {MODEL}; its layers: {names}")
    frozen = full.layers[: names.index(name) + 1]
    for layer in frozen:
        layer.trainable = False
    return [layer.name for layer in frozen]


def train(args) -> dict:
    import keras

    from mirzoo.zoo.manifest import get_entry
    from training.train import freeze_batchnorm, hardware_text, save_weights_atomic

    cfg = json.loads(Path(args.config).read_text())
    seed = int(cfg.get("seed", 0))
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    data = read_cache(Path(args.cache))
    if not data.get("train"):
        raise SystemExit(f"no training clips in the cache {args.cache}: run `python -m training.musical cache` first")
    log.info("clips: %s", {k: len(v) for k, v in data.items()})
    entry = get_entry(MODEL)
    out = Path(args.out)
    state_path = out / "state.json"
    init = None
    if args.init and not (args.resume and state_path.exists()):
        init = init_weights_path(args.init, entry)
    if args.resume and state_path.exists():
        # a resumed run keeps its tag vocabulary (the cache may have grown since)
        vocab = json.loads(state_path.read_text())["vocabulary"]
    elif init is not None:
        # the tag head's width and order are the initial weights'
        vocab = list(entry["head"]["labels"])
    else:
        vocab = choose_vocabulary(data["train"], int(cfg.get("min_tag_count", 20)), cfg["tag_groups"])
    anchored, anchor_weight = anchor_settings(cfg, entry)
    if anchored and init is None and not (args.resume and state_path.exists()):
        raise SystemExit("anchor holds layers near the initial weights: it needs --init")
    extra_heads = added_heads(cfg)
    full, model, config = build_training_model(entry, len(vocab), anchored, extra_heads)
    frozen = freeze_through(full, cfg.get("freeze_through"))
    if frozen:
        log.info("frozen (not trained): %d layers, up to and including %r", len(frozen), cfg["freeze_through"])
    if cfg.get("freeze_batchnorm"):
        log.info("batch norm frozen in inference mode: %s", freeze_batchnorm(full))
    weights = cfg.get("loss_weights", {})
    losses = head_losses(config)
    loss_weights = {k: float(weights.get(k, 1.0)) for k in losses}
    if cfg.get("beat_channel_weights") is not None or cfg.get("bar_phase_weight"):
        losses["beats"] = beat_channel_loss(cfg.get("beat_channel_weights") or [1, 1], cfg.get("bar_phase_weight", 0.0))
    if cfg.get("meter_bar_length_weight"):
        meter_labels = next(h["labels"] for h in entry["aux_heads"] if h["output"] == "meter")
        losses["meter"] = meter_bar_length_loss(meter_labels, cfg["meter_bar_length_weight"])
    for name in anchored:  # the anchor weight shared by its layers
        losses[anchor_key(name)] = "cosine_similarity"
        loss_weights[anchor_key(name)] = anchor_weight / len(anchored)
    model.compile(optimizer=keras.optimizers.Adam(float(cfg.get("learning_rate", 1e-3)), clipnorm=1.0),
                  loss=losses, loss_weights=loss_weights)
    hop = entry["config"]["frontend"]["hop_length"]
    length = crop_frames(cfg, entry)
    balance = meter_weights(data["train"], cfg.get("meter_balance", 0.0))
    if cfg.get("meter_balance"):
        log.info("meter loss weights (meter class: weight): %s", {k: round(v, 3) for k, v in balance.items()})
    mode_balance = mode_weights(data["train"], cfg.get("mode_balance", 0.0)) if cfg.get("mode_balance") else {}
    if mode_balance:
        log.info("mode loss weights (major, minor): %.3f, %.3f", mode_balance[0], mode_balance[1])
    sampler = CropSampler(data["train"], vocab, length, rng, augment=cfg.get("augment", {}),
                          heads=derived_heads_of(config), meter_weight=balance if cfg.get("meter_balance") else None,
                          mode_weight=mode_balance or None)
    crops = validation_crops(cfg, entry, data, vocab, derived_heads_of(config))
    out.mkdir(parents=True, exist_ok=True)
    state = {"epoch": 0, "best": -1e9, "best_epoch": -1, "history": [], "minutes": 0.0, "vocabulary": vocab,
             "valid_crops": len(crops[0]), "score_version": SCORE_VERSION}
    if init is not None:
        fresh = load_initial_weights(full, init, entry, len(vocab))
        if fresh:
            log.info("layers not in the initial weights (freshly initialised): %s", fresh)
        state["init"] = {"weights": str(init), "sha256": hashlib.sha256(init.read_bytes()).hexdigest(),
                         "training": entry.get("training") if args.init == "shipped" else None}
        metrics = valid_metrics(model, crops)
        state["init"].update(metrics, score=validation_score(metrics))
        state["best"] = validation_score(metrics)
        save_weights_atomic(full, out / "best.weights.h5")
        state["best_source"] = "init"
        log.info("initial weights %s score %.4f %s", init, state["best"], {k: round(v, 3) for k, v in metrics.items()})
    if args.resume and state_path.exists():
        state = json.loads(state_path.read_text())
        full.load_weights(out / "last.weights.h5")
        rng = np.random.default_rng([seed, state["epoch"]])
        sampler.rng = rng
        log.info("resumed after epoch %d (best %.4f at %d)", state["epoch"], state["best"], state["best_epoch"])
        if state.get("valid_crops") != len(crops[0]) or state.get("score_version", 1) != SCORE_VERSION:
            # the validation crops or the score changed since the best was scored: rescore the resumed
            # weights so that "best" compares like with like
            metrics = valid_metrics(model, crops)
            state["history"][-1].update(metrics, score=validation_score(metrics), rescored=True)
            state["best"], state["best_epoch"] = validation_score(metrics), state["epoch"] - 1
            save_weights_atomic(full, out / "best.weights.h5")
            log.info("validation crops changed: the resumed weights score %.4f on the new ones", state["best"])
        state["valid_crops"], state["score_version"] = len(crops[0]), SCORE_VERSION
    anchor_model = None
    if anchored:  # a frozen copy of the initial weights: the targets of the anchored layers
        init_path = Path(state["init"]["weights"]) if "init" in state else init
        base, _, _ = build_training_model(entry, len(vocab), add_heads=extra_heads)
        load_initial_weights(base, Path(init_path), entry, len(vocab))
        anchor_model = keras.Model(base.get_layer("input_bn").input, {anchor_key(n): anchor_tensor(base, n) for n in anchored})
        log.info("anchored to %s: %s, weight %g", init_path, list(anchored), anchor_weight)
    hours: dict = {}  # what the run trains and validates on, recorded with every checkpoint
    for split, clips in data.items():
        for c in clips:
            key = f"{c['corpus']} {split}"
            hours[key] = hours.get(key, 0.0) + len(c["feats"]) * hop / entry["sample_rate"] / 3600
    # rounded once, at the end: rounding the running sum at every clip lost up to 0.0005 h a clip (1.8 h of
    # corpus-v3's 72.4 h train split, whose 30-s clips each rounded down)
    hours = {key: round(h, 3) for key, h in hours.items()}
    source_path = Path(args.cache) / CORPUS_SOURCES
    sources = json.loads(source_path.read_text()) if source_path.exists() else None
    hardware = hardware_text()
    steps, batch = int(cfg.get("steps_per_epoch", 100)), int(cfg.get("batch_size", 8))
    started = time.time()
    deadline = started + 60 * float(args.max_minutes)
    lr0 = float(cfg.get("learning_rate", 1e-3))
    average = WeightAverage() if args.average_from is not None else None
    while state["epoch"] < int(cfg.get("epochs", 100)) and time.time() < deadline:
        te = time.time()
        losses = []
        for _ in range(steps):
            if args.anneal:
                # cosine decay over this invocation's time budget, down to 5 % of the base rate
                frac = min(1.0, (time.time() - started) / (deadline - started))
                model.optimizer.learning_rate.assign(lr0 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac))))
            x, y, w = sampler.batch(batch)
            if anchor_model is not None:
                for k, v in anchor_model.predict_on_batch(x).items():
                    y[k] = np.asarray(v, np.float32)
                    w[k] = np.ones(y[k].shape[:-1], np.float32)
            loss = model.train_on_batch(x, y, sample_weight=w)
            losses.append(float(loss[0] if isinstance(loss, (list, tuple)) else loss))
            if time.time() > deadline:
                break
        metrics = valid_metrics(model, crops)
        score = validation_score(metrics)
        minutes = (time.time() - te) / 60
        state["minutes"] += minutes
        record = {"epoch": state["epoch"], "loss": float(np.mean(losses)), "score": score, **metrics,
                  "minutes": minutes, "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))}
        state["history"].append(record)
        log.info("epoch %d loss %.4f score %.4f %s (%.1f min)", state["epoch"], record["loss"], score,
                 {k: round(v, 3) for k, v in metrics.items()}, minutes)
        save_weights_atomic(full, out / "last.weights.h5")
        if score > state["best"]:
            state["best"], state["best_epoch"], state["best_source"] = score, state["epoch"], "epoch"
            save_weights_atomic(full, out / "best.weights.h5")
        if average is not None and (time.time() - started) >= args.average_from * (deadline - started):
            average.add(full.get_weights(), state["epoch"])
            current = full.get_weights()
            full.set_weights(average.weights())
            avg_metrics = valid_metrics(model, crops)
            avg_score = validation_score(avg_metrics)
            save_weights_atomic(full, out / "average.weights.h5")
            record["average"] = {"epochs": [average.first, state["epoch"]], "score": avg_score, **avg_metrics}
            log.info("average of epochs %d-%d: score %.4f %s", average.first, state["epoch"], avg_score,
                     {k: round(v, 3) for k, v in avg_metrics.items()})
            if avg_score > state["best"]:
                state["best"], state["best_epoch"] = avg_score, state["epoch"]
                state["best_source"] = f"average of epochs {average.first}-{state['epoch']}"
                save_weights_atomic(full, out / "best.weights.h5")
            full.set_weights(current)
        state["epoch"] += 1
        state.update(hardware=hardware, config=cfg, model_config=config, data_hours=hours, data_sources=sources,
                     schedule={"anneal": bool(args.anneal), "average_from": args.average_from})
        tmp = out / ".state.json"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, state_path)
    return state


# -- clip key -------------------------------------------------------------------------------------
#: the L2 penalties ``fit-key`` chooses from by grouped cross-validation on the valid clips
CLIP_KEY_L2 = (1e-4, 3e-4, 1e-3, 3e-3)
#: the clip-key forms ``fit-key`` chooses between: ``"heads"`` (the key head, the chord evidence, the mode
#: head, and the pitch-class head's Krumhansl-Schmuckler scores when the model has one: one fit per
#: penalty of :data:`CLIP_KEY_L2`) and ``"pitch-classes"`` (the Krumhansl-Schmuckler scores of the
#: pitch-class head alone, with a scale and a bias per mode)
CLIP_KEY_FORMS = ("heads", "pitch-classes")


def clip_key_design(key_means: np.ndarray, chord_means: np.ndarray, mode_means: np.ndarray | None = None,
                    chroma_means: np.ndarray | None = None) -> np.ndarray:
    """``[clips, 24, 220 (+1 with mode_means [clips, 2]) (+2 with chroma_means [clips, 12])]``: the linear
    features behind :func:`mirzoo.tasks.analyze.clip_key_scores`.

    Parameter order: ``scale[2], bias[2], chord[2, 12, 9]`` (major, minor), then ``mode_scale``, then
    ``chroma_scale[2]``.
    """
    from mirzoo.tasks.analyze import clip_key_features, key_profile_correlations

    n = len(key_means)
    log_key, rel = clip_key_features(key_means, chord_means)  # [n, mode, tonic], [n, tonic, interval, quality]
    width = 4 + 2 * 108 + (mode_means is not None) + 2 * (chroma_means is not None)
    x = np.zeros((n, 2, 12, width))
    corr = None if chroma_means is None else key_profile_correlations(chroma_means).reshape(n, 2, 12)
    for m in range(2):
        x[:, m, :, m] = log_key[:, m]
        x[:, m, :, 2 + m] = 1.0
        x[:, m, :, 4 + 108 * m: 4 + 108 * (m + 1)] = rel.reshape(n, 12, 108)
        if mode_means is not None:
            x[:, m, :, 220] = np.log(np.asarray(mode_means, np.float64)[:, m] + 1e-6)[:, None]
        if corr is not None:
            x[:, m, :, width - 2 + m] = corr[:, m]
    return x.reshape(n, 24, -1)


def fit_multinomial(x: np.ndarray, refs: np.ndarray, l2: float, penalty: np.ndarray | None = None,
                    start: np.ndarray | None = None, bounds=None, maxiter: int = 3000) -> np.ndarray:
    """Weights ``theta`` of a multinomial logistic regression of ``refs`` (class per row) on the design
    ``x [rows, classes, features]`` (score of class ``k``: ``x[:, k] @ theta``), by L-BFGS(-B): mean negative
    log-likelihood plus ``l2 * sum(penalty * theta**2)`` (``penalty`` 1 for every weight by default), from
    ``start`` (zeros by default) within ``bounds`` (scipy's ``(low, high)`` pairs, one per weight)."""
    from scipy.optimize import minimize  # deferred: scipy is in the corpus and test extras

    x = np.asarray(x, np.float64)
    y = np.asarray(refs, int)
    n, width = len(y), x.shape[-1]
    penal = np.ones(width) if penalty is None else np.asarray(penalty, np.float64)

    def loss(theta):
        s = x @ theta
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        nll = -np.log(p[np.arange(n), y] + 1e-300).mean()
        p[np.arange(n), y] -= 1.0
        grad = np.einsum("nk,nkd->d", p, x) / n + 2 * l2 * penal * theta
        return nll + l2 * float((penal * theta ** 2).sum()), grad

    theta0 = np.zeros(width) if start is None else np.asarray(start, np.float64)
    return minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": maxiter}).x


def fit_clip_key(key_means: np.ndarray, chord_means: np.ndarray, refs: np.ndarray, l2: float,
                 mode_means: np.ndarray | None = None, chroma_means: np.ndarray | None = None,
                 form: str = "heads") -> dict:
    """Multinomial logistic regression of the reference keys on :func:`clip_key_design` (L-BFGS, L2 on the
    chord weights), started from the key head alone (scale 1, everything else 0); with ``mode_means``
    (a mode head's clip means) also the unpenalised ``mode_scale``, with ``chroma_means`` (a pitch-class
    head's clip means) the unpenalised ``chroma_scale``.  ``form="pitch-classes"`` (needs
    ``chroma_means``) fits the pitch-class scores' ``chroma_scale`` and the bias alone, every other
    weight held at 0 (and the record has no ``mode_scale``)."""
    if form not in CLIP_KEY_FORMS:
        raise ValueError(f"form={form!r}: expected one of {CLIP_KEY_FORMS}")
    if form == "pitch-classes" and chroma_means is None:
        raise ValueError("form='pitch-classes' needs chroma_means (a pitch-class head's clip means)")
    x = clip_key_design(key_means, chord_means, mode_means, chroma_means)
    width = x.shape[-1]
    with_mode, with_chroma = mode_means is not None, chroma_means is not None
    penal = np.zeros(width)
    penal[4:220] = 1.0
    theta0 = np.zeros(width)
    bounds = [(None, None)] * width
    if form == "heads":
        theta0[:2] = 1.0
    else:  # the pitch-class scores and the biases only
        theta0[width - 2:] = 10.0
        bounds = [(None, None) if 2 <= i < 4 or i >= width - 2 else (0.0, 0.0) for i in range(width)]
    theta = fit_multinomial(x, refs, l2, penalty=penal, start=theta0, bounds=bounds, maxiter=2000)
    record = {"scale": theta[:2].tolist(), "bias": theta[2:4].tolist(),
              "chord": theta[4:220].reshape(2, 12, 9).tolist(), "l2": l2 if form == "heads" else 0.0}
    if with_mode and form == "heads":
        record["mode_scale"] = float(theta[220])
    if with_chroma:
        record["chroma_scale"] = theta[width - 2:].tolist()
    record["form"] = form
    return record


def key_scores(estimates, refs) -> np.ndarray:
    """The MIREX weighted score of each estimated key index against its reference (``training.corpus_targets.KEYS``)."""
    import mir_eval  # deferred: in the corpus and test extras, needed only for this figure

    from training.corpus_targets import KEYS

    return np.array([mir_eval.key.weighted_score(KEYS[int(r)], KEYS[int(e)]) for e, r in zip(estimates, refs)])


def key_mirex(estimates, refs) -> float:
    """Mean MIREX weighted score of key indices (:func:`key_scores`)."""
    return float(np.mean(key_scores(estimates, refs)))


def keyed_clip_outputs(extractor, corpus: Path, split: str, heads, limit: int = 0):
    """``(reference key, piece id, reference source, outputs)`` of every clip of ``split`` with a known key, in
    file order: the reference is the most frequent labelled frame key (as ``benchmarks/musicality.py``
    scores), its source where the targets say (``"written"`` or ``"analysis"``, :data:`KEY_SOURCES` of
    ``training.corpus_targets``; ``None`` in targets without ``key_source``), the outputs ``extractor``'s
    ``heads`` over the clip's frames."""
    from collections import Counter

    from training.corpus import load_clip_targets
    from training.corpus_targets import KEY_SOURCES

    files = target_files(corpus, split)
    for path in files[:limit] if limit else files:
        t = load_clip_targets(path)
        labelled = t["key"][t["key"] >= 0]
        if not labelled.size:
            continue
        ref = int(Counter(labelled.tolist()).most_common(1)[0][0])
        source = None
        if "key_source" in t and np.shape(t["key_source"]) == np.shape(t["key"]):
            code = int(Counter(np.asarray(t["key_source"])[t["key"] == ref].tolist()).most_common(1)[0][0])
            source = KEY_SOURCES[code] if 0 <= code < len(KEY_SOURCES) else None
        y, _ = extractor.load_input(str(corpus / t["meta"]["path"]), None)
        yield ref, t["meta"]["piece_id"], source, extractor.forward([y], list(heads), 16)[0]


def clip_key_inputs(extractor, corpus: Path, split: str, limit: int = 0):
    """Clip means of the key and chord heads and the reference key (:func:`keyed_clip_outputs`) of every clip
    of ``split`` with a known key; plus piece ids, the clip means of the ``mode`` and ``pitch_classes``
    heads (``None`` for a head the model lacks), and the references' sources."""
    keys, chords, modes, chromas, refs, pieces, sources = [], [], [], [], [], [], []
    optional = [h for h in ("mode", "pitch_classes") if h in extractor.heads]
    for ref, piece, source, out in keyed_clip_outputs(extractor, corpus, split, ["key", "chord"] + optional, limit):
        sources.append(source)
        keys.append(out["key"].astype(np.float64).mean(axis=0))
        chords.append(out["chord"].astype(np.float64).mean(axis=0))
        if "mode" in out:
            modes.append(out["mode"].astype(np.float64).mean(axis=0))
        if "pitch_classes" in out:
            chromas.append(out["pitch_classes"].astype(np.float64).mean(axis=0))
        refs.append(ref)
        pieces.append(piece)
    return (np.array(keys), np.array(chords), np.array(refs), np.array(pieces), (np.array(modes) if modes else None),
            (np.array(chromas) if chromas else None), np.array(sources, dtype=object))


def mode_balanced_accuracy(estimates, refs) -> float:
    """Balanced accuracy of the mode (major / minor) of key indices (``tonic + 12 * minor``)."""
    est, ref = np.asarray(estimates) // 12, np.asarray(refs) // 12
    return float(np.mean([np.mean(est[ref == m] == m) for m in np.unique(ref)]))


def key_mirex_by_source(predictions: dict, refs, sources) -> dict:
    """``{source: {"clips": n, name: MIREX score of predictions[name]}}`` over the clips of each reference source
    (``sources``, one per clip, e.g. ``"written"``, ``"analysis"``; ``None`` left out): a pooled score can hide
    a fit that gains on one source and loses on the other."""
    sources = np.asarray(sources, dtype=object)
    refs = np.asarray(refs)
    out = {}
    for source in sorted({s for s in sources.tolist() if s is not None}):
        own = sources == source
        out[str(source)] = {"clips": int(own.sum()),
                            **{name: round(key_mirex(np.asarray(p)[own], refs[own]), 4) for name, p in predictions.items()}}
    return out


def choose_clip_key(key_means, chord_means, refs, pieces, folds: int = 5, seed: int = 0, mode_means=None,
                    corpora=None, chroma_means=None, sources=None) -> dict:
    """Fit :func:`fit_clip_key` in the form (:data:`CLIP_KEY_FORMS`) and with the L2 penalty
    (:data:`CLIP_KEY_L2`) that score best in ``folds``-fold cross-validation grouped by piece; the record
    carries the cross-validated figures (with ``sources``, each reference source's share of them and of the
    key head's clip mean, :func:`key_mirex_by_source`).  ``mode_means`` (a mode head's clip means) and
    ``chroma_means`` (a pitch-class head's) enter the fit; with ``chroma_means`` the
    ``"pitch-classes"`` form competes with the ``"heads"`` fits.

    ``corpora`` (one name per clip: the corpus, hence the soundfonts, it was rendered from) adds, for the
    chosen fit, each corpus's share of the cross-validated score and a **cross-corpus** score: fitted
    on the training folds of the other corpora only, scored on this corpus's held-out pieces (a piece
    rendered in two corpora is in the same fold in both) -- whether the fit carries to soundfonts it
    never saw, which a cross-validation within one soundfont cannot tell.
    """
    uniq = np.unique(pieces)
    fold_of = dict(zip(uniq, np.random.default_rng(seed).permutation(len(uniq)) % folds))
    fold = np.array([fold_of[p] for p in pieces])
    candidates = [("heads", l2) for l2 in CLIP_KEY_L2] + ([("pitch-classes", 0.0)] if chroma_means is not None else [])
    means = (key_means, chord_means, refs, mode_means, chroma_means)
    cv, preds = {}, {}
    for cand in candidates:
        preds[cand] = _fold_predictions(*means, fold, folds, cand)
        cv[cand] = key_mirex(preds[cand], refs)
    # ties go to the pitch-class form (fewer weights), then to the smaller penalty
    best = max(candidates, key=lambda c: (cv[c], c[0] == "pitch-classes", -c[1]))
    params = fit_clip_key(key_means, chord_means, refs, best[1], mode_means, chroma_means, form=best[0])
    params["valid"] = {"clips": int(len(refs)), "pieces": int(len(uniq)),
                       "key_mirex_head_mean": round(key_mirex(key_means.argmax(axis=1), refs), 4),
                       "key_mirex_cv": round(cv[best], 4),
                       "mode_balanced_accuracy_cv": round(mode_balanced_accuracy(preds[best], refs), 4),
                       "key_mirex_cv_by_l2": {f"{l2:g}": round(cv[("heads", l2)], 4) for l2 in CLIP_KEY_L2}}
    if sources is not None:
        params["valid"]["key_mirex_cv_by_source"] = key_mirex_by_source(
            {"clip_key": preds[best], "head_mean": np.asarray(key_means).argmax(axis=1)}, refs, sources)
    if chroma_means is not None:
        from mirzoo.tasks.analyze import key_profile_correlations

        params["valid"]["key_mirex_cv_pitch_classes"] = round(cv[("pitch-classes", 0.0)], 4)
        params["valid"]["key_mirex_pitch_classes_unfitted"] = round(
            key_mirex(key_profile_correlations(chroma_means).argmax(axis=1), refs), 4)
    names = np.unique(corpora) if corpora is not None else ()
    if len(names) > 1:
        corpora = np.asarray(corpora)
        by, cross = {}, {}
        for name in names:
            own = corpora == name
            by[str(name)] = round(key_mirex(preds[best][own], refs[own]), 4)
            pred = _fold_predictions(*means, fold, folds, best, train_mask=~own, test_mask=own)
            cross[str(name)] = round(key_mirex(pred[own], refs[own]), 4)
        params["valid"]["key_mirex_cv_by_corpus"] = by
        params["valid"]["key_mirex_cross_corpus"] = cross
    return params


def _fold_predictions(key_means, chord_means, refs, mode_means, chroma_means, fold, folds: int, candidate,
                      train_mask=None, test_mask=None) -> np.ndarray:
    """Cross-validated clip-key indices of a ``(form, l2)`` candidate: for each fold, fitted on the other
    folds (within ``train_mask``) and predicted on the fold (within ``test_mask``); clips outside
    ``test_mask`` stay -1."""
    from mirzoo.tasks.analyze import clip_key_scores

    form, l2 = candidate
    n = len(refs)
    train_mask = np.ones(n, bool) if train_mask is None else train_mask
    test_mask = np.ones(n, bool) if test_mask is None else test_mask
    pred = np.full(n, -1, int)

    def part(a, idx):
        return None if a is None else a[idx]

    for f in range(folds):
        tr, te = (fold != f) & train_mask, (fold == f) & test_mask
        if not te.any():
            continue
        params = fit_clip_key(key_means[tr], chord_means[tr], refs[tr], l2, part(mode_means, tr),
                              part(chroma_means, tr), form=form)
        pred[te] = [int(np.argmax(clip_key_scores(key_means[j][None], chord_means[j][None], params,
                                                  part(mode_means, [j]), part(chroma_means, [j]))))
                    for j in np.flatnonzero(te)]
    return pred


# -- clip key from learnt pitch-class profiles --------------------------------------------------------
#: the ending a ``"profiles"`` clip key reads (``final_profile``): the last 4 s of the ``pitch_classes`` head
CLIP_KEY_FINAL_SECONDS = 4.0
#: L2 penalty of both stages of the ``"profiles"`` fit (session 33: chosen by grouped cross-validation on the
#: valid clips of three renders, with the ending's length, among about a dozen variants)
CLIP_KEY_PROFILE_L2 = 1e-3


def clip_key_profile_inputs(extractor, corpus: Path, split: str, final_frames: int, limit: int = 0) -> dict:
    """What the ``"profiles"`` fit reads, for every clip of ``split`` with a known key: ``key``, ``chord``,
    ``mode`` and ``pcs`` (clip means of those heads), ``whole`` and ``final``
    (:func:`mirzoo.tasks.analyze.clip_pitch_class_features` of the ``pitch_classes`` frames), ``ref`` (the
    most frequent labelled frame key, as ``benchmarks/musicality.py`` scores) and ``piece``; arrays, one row
    per clip."""
    from mirzoo.tasks.analyze import clip_pitch_class_features

    if "pitch_classes" not in extractor.heads or "mode" not in extractor.heads:
        raise SystemExit("the profiles clip key needs the model's 'pitch_classes' and 'mode' heads")
    rows: dict = {k: [] for k in ("key", "chord", "mode", "pcs", "whole", "final", "ref", "piece", "source")}
    heads = {"key": "key", "chord": "chord", "mode": "mode", "pcs": "pitch_classes"}
    for ref, piece, source, out in keyed_clip_outputs(extractor, corpus, split, heads.values(), limit):
        rows["source"].append(source)
        whole, final = clip_pitch_class_features(out["pitch_classes"], final_frames)
        for name, head in heads.items():
            rows[name].append(out[head].astype(np.float64).mean(axis=0))
        rows["whole"].append(whole)
        rows["final"].append(final)
        rows["ref"].append(ref)
        rows["piece"].append(piece)
    return {k: np.array(v, dtype=object if k == "source" else None) for k, v in rows.items()}


def profile_design(whole: np.ndarray, final: np.ndarray) -> np.ndarray:
    """``[clips, 24, 50]``: the stage-1 features of a ``"profiles"`` clip key -- a bias per mode (2), then
    ``whole`` and ``final`` (``[clips, 12]`` each) seen from each tonic, one weight per mode and interval
    (``pitch_class_profile [2, 12]``, ``final_profile [2, 12]``)."""
    from mirzoo.tasks.analyze import TONIC_ROTATION as rot

    whole, final = np.asarray(whole, np.float64), np.asarray(final, np.float64)
    x = np.zeros((len(whole), 2, 12, 50))
    for m in range(2):
        x[:, m, :, m] = 1.0
        x[:, m, :, 2 + 12 * m: 14 + 12 * m] = whole[:, rot]
        x[:, m, :, 26 + 12 * m: 38 + 12 * m] = final[:, rot]
    return x.reshape(len(whole), 24, 50)


def _profile_stage2_design(key_means: np.ndarray, stage1: np.ndarray) -> np.ndarray:
    """``[clips, 24, 3]``: the log key-head mean, one weight per mode, and the stage-1 score."""
    log_key = np.log(np.asarray(key_means, np.float64) + 1e-6).reshape(-1, 2, 12)
    x = np.zeros((len(log_key), 2, 12, 3))
    x[:, 0, :, 0], x[:, 1, :, 1] = log_key[:, 0], log_key[:, 1]
    x[..., 2] = np.asarray(stage1, np.float64).reshape(-1, 2, 12)
    return x.reshape(len(log_key), 24, 3)


def fit_clip_key_profiles(train: dict, valid: dict, final_frames: int, l2: float = CLIP_KEY_PROFILE_L2,
                          folds: int = 5, seed: int = 0, corpora=None) -> dict:
    """A ``"profiles"`` ``clip_key`` record (:func:`mirzoo.tasks.analyze.clip_key_scores`), fitted in two stages.

    1. **Profiles**, on ``train`` (:func:`clip_key_profile_inputs` of training-split clips): a bias per mode
       and the learnt ``pitch_class_profile`` and ``final_profile`` (:func:`profile_design`).  They read the
       ``pitch_classes`` head alone, which was fitted on frozen layers, so a training clip's features are
       no more confident than a new clip's and the thousands of training clips can be used.
    2. **Blend**, on ``valid`` (clips of pieces the network never trained on): the key head's log clip
       mean, a scale per mode, plus one scale of the stage-1 score.  The key head is sure of itself on the
       clips it was trained on, so its weight is only learnt on valid clips.

    ``record["valid"]`` has the blend's ``folds``-fold cross-validated MIREX score grouped by piece, beside
    the ``"heads"`` form's (:func:`choose_clip_key`'s, best penalty) on the same folds; with ``corpora``
    (one name per valid clip) each corpus's share of both, and with ``valid["source"]`` (each reference's
    source) each source's (:func:`key_mirex_by_source`), with the profiles alone beside them.
    """
    if len(train["ref"]) < 24 or len(valid["ref"]) < 20:
        raise SystemExit(f"the profiles clip key needs at least 24 training and 20 valid clips with a key, got "
                         f"{len(train['ref'])} and {len(valid['ref'])}")
    theta1 = fit_multinomial(profile_design(train["whole"], train["final"]), train["ref"], l2)
    stage1 = profile_design(valid["whole"], valid["final"]) @ theta1
    x2, refs = _profile_stage2_design(valid["key"], stage1), np.asarray(valid["ref"], int)
    theta2 = fit_multinomial(x2, refs, l2)
    pieces = np.asarray(valid["piece"])
    uniq = np.unique(pieces)
    fold_of = dict(zip(uniq, np.random.default_rng(seed).permutation(len(uniq)) % folds))
    fold = np.array([fold_of[p] for p in pieces])
    pred = np.full(len(refs), -1, int)
    for f in range(folds):
        if (fold == f).any():
            pred[fold == f] = (x2[fold == f] @ fit_multinomial(x2[fold != f], refs[fold != f], l2)).argmax(axis=1)
    heads = {l2_: _fold_predictions(valid["key"], valid["chord"], refs, valid["mode"], valid["pcs"], fold, folds,
                                    ("heads", l2_)) for l2_ in CLIP_KEY_L2}
    best_heads = max(CLIP_KEY_L2, key=lambda v: key_mirex(heads[v], refs))
    w = float(theta2[2])
    record = {"scale": theta2[:2].tolist(), "bias": (w * theta1[:2]).tolist(), "chord": np.zeros((2, 12, 9)).tolist(),
              "pitch_class_profile": (w * theta1[2:26]).reshape(2, 12).tolist(),
              "final_profile": (w * theta1[26:50]).reshape(2, 12).tolist(), "final_frames": int(final_frames),
              "l2": l2, "form": "profiles"}
    record["valid"] = {"clips": int(len(refs)), "pieces": int(len(uniq)), "train_clips": int(len(train["ref"])),
                       "key_mirex_head_mean": round(key_mirex(np.asarray(valid["key"]).argmax(axis=1), refs), 4),
                       "key_mirex_profiles_alone": round(key_mirex(stage1.argmax(axis=1), refs), 4),
                       "key_mirex_cv": round(key_mirex(pred, refs), 4),
                       "mode_balanced_accuracy_cv": round(mode_balanced_accuracy(pred, refs), 4),
                       "key_mirex_cv_heads_form": round(key_mirex(heads[best_heads], refs), 4),
                       "heads_form_l2": best_heads,
                       "gain_over_heads_form_95": _paired_piece_interval(pred, heads[best_heads], refs, pieces, seed)}
    if "source" in valid:
        record["valid"]["key_mirex_cv_by_source"] = key_mirex_by_source(
            {"profiles": pred, "heads_form": heads[best_heads], "profiles_alone": stage1.argmax(axis=1)}, refs,
            valid["source"])
    names = np.unique(corpora) if corpora is not None else ()
    if len(names) > 1:
        corpora = np.asarray(corpora)
        record["valid"]["key_mirex_cv_by_corpus"] = {
            str(c): {"profiles": round(key_mirex(pred[corpora == c], refs[corpora == c]), 4),
                     "heads_form": round(key_mirex(heads[best_heads][corpora == c], refs[corpora == c]), 4)}
            for c in names}
    return record


def target_files(corpus: Path, split: str) -> list:
    """The score-target files (``targets/<split>/**/*.npz``) of a version-2 corpus's split, sorted."""
    return sorted(glob.glob(str(corpus / "targets" / split / "**" / "*.npz"), recursive=True))


def draw_target_files(corpus: Path, split: str, clips: int, seed: int) -> list:
    """``clips`` of :func:`target_files` drawn with ``seed``, in file order (0, or more than there are: all)."""
    files = target_files(corpus, split)
    if clips and clips < len(files):
        pick = np.sort(np.random.default_rng(seed).choice(len(files), clips, replace=False))
        files = [files[i] for i in pick]
    return files


def package_weights(root: str) -> tuple:
    """``(root, entry, weights path)`` of the ``tcn-music`` package at ``root`` (default: this checkout),
    the weights checked against the entry's sha256: what the fits rewrite."""
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    entry = dict(json.loads((root / "mirzoo" / "weights_manifest.json").read_text())["models"][MODEL], name=MODEL)
    path = root / "mirzoo" / "weights" / entry["weights"]["file"]
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry["weights"]["sha256"]:
        raise SystemExit(f"{path} is not the weights its manifest entry names (sha256 differs)")
    return root, entry, path


def append_command(entry: dict, step: str) -> None:
    """Add ``step`` (a ``python -m training.musical SUBCOMMAND ...`` line) to the end of the entry's training
    command unless that subcommand is already there: the fits work on the package's weights, after ``ship``."""
    command = entry.setdefault("training", {}).get("command", "")
    subcommand = " ".join(step.split()[:4])
    if subcommand not in command:
        entry["training"]["command"] = f"{command} && {step}" if command else step


def update_package_entry(root: Path, update) -> None:
    """Apply ``update(entry)`` to the ``tcn-music`` entry of both package manifests under ``root``
    (``weights_manifest.json`` and ``mirzoo/weights_manifest.json``), then write each atomically.  Both are
    read and updated before either is written, so an ``update`` that raises leaves both as they were."""
    from mirzoo.fileio import atomic_file

    paths = (root / "weights_manifest.json", root / "mirzoo" / "weights_manifest.json")
    manifests = [json.loads(path.read_text()) for path in paths]
    for manifest in manifests:
        update(manifest["models"][MODEL])
    for path, manifest in zip(paths, manifests):
        with atomic_file(path) as tmp:
            Path(tmp).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _paired_piece_interval(pred: np.ndarray, base: np.ndarray, refs: np.ndarray, pieces: np.ndarray, seed: int,
                          boot: int = 2000) -> list:
    """The 95 % interval of the mean MIREX gain of ``pred`` over ``base`` (key indices), pieces resampled."""
    gain = key_scores(pred, refs) - key_scores(base, refs)
    uniq, inverse = np.unique(pieces, return_inverse=True)
    total, count = np.bincount(inverse, weights=gain), np.bincount(inverse)
    rng = np.random.default_rng(seed)
    draws = [total[i].sum() / count[i].sum() for i in (rng.integers(0, len(uniq), len(uniq)) for _ in range(boot))]
    return [round(float(v), 4) for v in np.percentile(draws, [2.5, 97.5])]


def fit_key_profiles(args, extractor) -> dict:
    """``fit-key --profile-corpus``: the ``"profiles"`` record (:func:`fit_clip_key_profiles`), its profiles
    fitted on the train split of each ``--profile-corpus`` and its blend on the ``--split`` clips of each
    ``--corpus``."""
    final_frames = int(round(CLIP_KEY_FINAL_SECONDS * extractor.sample_rate / extractor.hop_length))

    def gather(corpora, split):
        parts = [clip_key_profile_inputs(extractor, Path(c), split, final_frames, args.limit) for c in corpora]
        names = np.concatenate([[Path(c).name] * len(p["ref"]) for c, p in zip(corpora, parts)])
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, names

    train, _ = gather(args.profile_corpus, "train")
    valid, names = gather(args.corpus, args.split)
    record = fit_clip_key_profiles(train, valid, final_frames, corpora=names)
    record["fitted_on"] = (
        f"the train clips of {' + '.join(Path(c).name for c in args.profile_corpus)} ({len(train['ref'])}) for the "
        f"profiles and the {args.split} clips of {' + '.join(Path(c).name for c in args.corpus)} ({len(valid['ref'])} "
        f"clips of {record['valid']['pieces']} pieces) for the blend (python -m training.musical fit-key --profile-corpus)")
    return record


def fit_key(args) -> None:
    """Fit the ``clip_key`` record of some ``tcn-music`` weights on the valid clips of a corpus."""
    from mirzoo.extractor import Extractor
    from training.train import hardware_text
    from mirzoo.fileio import write_json_atomic
    from mirzoo.zoo.manifest import get_entry

    entry = dict(get_entry(MODEL), name=MODEL)
    if args.weights == "shipped" and not args.out:
        raise SystemExit("--weights shipped: give --out FILE, or --out manifest to put the record into the package's entry")
    path = init_weights_path(args.weights, entry)
    extra: tuple = ()
    if args.weights == "shipped":
        vocab = list(entry["head"]["labels"])
    else:
        state = json.loads((path.parent / "state.json").read_text())
        vocab = state["vocabulary"]
        extra = run_added_heads(state.get("model_config", {}), entry)
    full, _, config = build_training_model(entry, len(vocab), add_heads=extra)
    full.load_weights(path)
    entry.pop("clip_key", None)
    extractor = Extractor(full, describe_derived_heads(json.loads(json.dumps(dict(entry, config=config)))))
    t0 = time.time()
    if args.profile_corpus:
        record = fit_key_profiles(args, extractor)
    else:
        parts = [clip_key_inputs(extractor, Path(c), args.split, args.limit) for c in args.corpus]
        for c, part in zip(args.corpus, parts):
            if len(part[2]) < 20:
                raise SystemExit(f"{c} split {args.split!r}: {len(part[2])} clips with a key, need at least 20")
        key_means, chord_means, refs, pieces = (np.concatenate([p[i] for p in parts]) for i in range(4))
        mode_means = None if parts[0][4] is None else np.concatenate([p[4] for p in parts])
        chroma_means = None if parts[0][5] is None else np.concatenate([p[5] for p in parts])
        corpora = np.concatenate([[Path(c).name] * len(p[2]) for c, p in zip(args.corpus, parts)])
        record = choose_clip_key(key_means, chord_means, refs, pieces, mode_means=mode_means, corpora=corpora,
                                 chroma_means=chroma_means, sources=np.concatenate([p[6] for p in parts]))
        record["fitted_on"] = (" + ".join(Path(c).name for c in args.corpus) + f" split {args.split}: {len(refs)} "
                               f"clips of {record['valid']['pieces']} pieces (python -m training.musical fit-key)")
    record["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    record["fit_seconds"] = round(time.time() - t0, 1)
    record["hardware"] = hardware_text()
    if args.out == "manifest":
        # the package's own weights: the record goes into their manifest entry (both copies)
        if args.weights != "shipped":
            raise SystemExit("--out manifest is for --weights shipped; a run's record is shipped with the run")

        def put_record(entry: dict) -> None:
            entry["clip_key"] = record
            append_command(entry, "python -m training.musical fit-key --corpus CORPUS --weights shipped --out manifest"
                           + (" --profile-corpus CORPUS" if args.profile_corpus else ""))

        update_package_entry(Path(__file__).resolve().parent.parent, put_record)
        out = "the manifest entry"
    else:
        out = Path(args.out) if args.out else path.parent / "clip_key.json"
        write_json_atomic(out, record)
    if args.profile_corpus:
        v = record["valid"]
        log.info("profiles clip key: stage 1 on %d train clips, blend on %d %s clips (%.0f s): MIREX head mean %.4f, "
                 "profiles alone %.4f, cross-validated %.4f (heads form %.4f) -> %s", v["train_clips"], v["clips"],
                 args.split, time.time() - t0, v["key_mirex_head_mean"], v["key_mirex_profiles_alone"], v["key_mirex_cv"],
                 v["key_mirex_cv_heads_form"], out)
        return
    log.info("clip key on %d %s clips (%.0f s): MIREX head mean %.4f, clip key (cross-validated, form %s, l2 %g) %.4f%s -> %s",
             record["valid"]["clips"], args.split, time.time() - t0, record["valid"]["key_mirex_head_mean"], record["form"], record["l2"],
             record["valid"]["key_mirex_cv"],
             "".join(f"; {k}: cv {v}, fitted on the other corpora {record['valid']['key_mirex_cross_corpus'][k]}"
                     for k, v in record["valid"].get("key_mirex_cv_by_corpus", {}).items()), out)


# -- pitch-class head -------------------------------------------------------------------------------
#: the frame head :func:`fit_pitch_classes` adds (sigmoid, on the ``frame`` vector), and its labels
PITCH_CLASS_HEAD = "pitch_classes"
#: entry config keys of weightless derived outputs (``mirzoo.nn.tcn.add_tonal``): kept by ``ship``
DERIVED_CONFIG_KEYS = ("tonal",)


def pitch_class_head_unchanged(entry: dict, config: dict, n_tags: int, before: Path, after: Path) -> bool:
    """Whether the :data:`PITCH_CLASS_HEAD` gives the same output with the weights file ``after`` (of a model
    with ``config`` and ``n_tags`` tags, a run's) as with ``before`` (the package's, of ``entry``'s own
    config): every weight of every layer between the input and that head is equal (a run frozen through
    ``frame`` or later leaves it so, since ``train`` has no loss on that head).  ``False`` when either
    file does not load into its model: nothing is then known to be unchanged."""
    import keras

    models = []
    for path, cfg, tags in ((before, entry["config"], len(entry["head"]["labels"])), (after, config, n_tags)):
        full, _, _ = build_training_model(dict(entry, config=cfg), tags)
        try:
            full.load_weights(path)
        except (ValueError, OSError):
            return False
        models.append(keras.Model(full.input, full.output[PITCH_CLASS_HEAD]))
    for layer in models[0].layers:
        mine, theirs = layer.get_weights(), models[1].get_layer(layer.name).get_weights()
        if len(mine) != len(theirs) or any(not np.array_equal(a, b) for a, b in zip(mine, theirs)):
            return False
    return True


def drop_bar_model(entry: dict) -> bool:
    """Remove ``entry``'s ``bar_model`` record (in place) and the ``metrical`` layer computed from it
    (:func:`mirzoo.tasks.analyze.metrical_frames`), which would not load without it; whether it had one."""
    had = entry.pop("bar_model", None) is not None
    if "metrical" in entry.get("layers", {}):
        entry["layers"].pop("metrical")
        entry["all_layers"] = [layer for layer in entry.get("all_layers", []) if layer != "metrical"]
        if entry.get("default_layer") == "metrical":
            entry["default_layer"] = "embedding"
    return had


def put_bar_model(entry: dict, record: dict) -> None:
    """Set ``entry``'s ``bar_model`` record (in place).  An entry whose layers name ``metrical`` (each frame's
    probabilities of the record's classes at its beat, then the meter head's) keeps it, sized for the new record;
    one without it does not gain it (the shipped entry does not name it: session 34)."""
    from mirzoo.tasks.analyze import metrical_width

    entry["bar_model"] = record
    if "metrical" in entry.get("layers", {}):
        meter = next(a for a in entry.get("aux_heads", []) + [entry.get("head") or {}] if a.get("output") == "meter")
        entry["layers"]["metrical"] = metrical_width(record, {"meter": meter["labels"]})


def drop_pitch_class_head(entry: dict) -> dict:
    """Remove the :data:`PITCH_CLASS_HEAD` from ``entry``'s config, layers and aux heads (in place),
    and what reads it: the ``tonal`` layer and the ``downbeat_model`` and ``bar_model`` records (their beat
    features read the head; an entry that kept them would no longer load), with the bar model's ``metrical`` layer."""
    (entry["config"].get("frame_heads") or {}).pop(PITCH_CLASS_HEAD, None)
    entry.pop("downbeat_model", None)
    drop_bar_model(entry)
    if entry["config"].pop("tonal", None):
        entry["layers"].pop("tonal", None)
        entry["all_layers"] = [layer for layer in entry.get("all_layers", []) if layer != "tonal"]
        if entry.get("default_layer") == "tonal":
            entry["default_layer"] = "embedding"
    if not entry["config"].get("frame_heads"):
        entry["config"].pop("frame_heads", None)
    entry["layers"].pop(PITCH_CLASS_HEAD, None)
    entry["aux_heads"] = [a for a in entry.get("aux_heads", []) if a["output"] != PITCH_CLASS_HEAD]
    return entry


def fit_binary_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent L2-penalised logistic regressions of the columns of ``y [n, k]`` (0/1) on ``x [n, d]``,
    jointly by L-BFGS; the features are standardised for the fit and the weights mapped back, so the
    result applies to raw ``x``: ``sigmoid(x @ w + b)``.  Returns ``(w [d, k], b [k])``."""
    from scipy.optimize import minimize  # deferred: scipy is in the corpus and test extras

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mu) / sd
    n, d = xs.shape
    k = y.shape[1]

    def loss(theta):
        w, b = theta[: d * k].reshape(d, k), theta[d * k:]
        z = xs @ w + b
        # log(1 + e^z) - y z, stably
        nll = (np.logaddexp(0.0, z) - y * z).sum() / n
        g = (1.0 / (1.0 + np.exp(-z)) - y) / n
        return nll + l2 * float((w ** 2).sum()), np.r_[(xs.T @ g + 2 * l2 * w).ravel(), g.sum(axis=0)]

    theta = minimize(loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 1000}).x
    w, b = theta[: d * k].reshape(d, k), theta[d * k:]
    return w / sd[:, None], b - (mu / sd) @ w


def frame_features_and_chroma(extractor, corpus: Path, split: str, clips: int, step: int, seed: int = 0):
    """The ``frame`` vectors of every ``step``-th frame and the score's pitch classes sounding there
    (``targets/...npz``'s ``chroma``), for ``clips`` clips of ``split`` drawn with ``seed`` (0: all)."""
    from training.corpus import load_clip_targets

    files = draw_target_files(corpus, split, clips, seed)
    feats, chroma = [], []
    for path in files:
        t = load_clip_targets(path)
        y, _ = extractor.load_input(str(corpus / t["meta"]["path"]), None)
        out = extractor.forward([y], ["frame"], 16)[0]["frame"]
        n = min(len(out), len(t["chroma"]))
        feats.append(out[:n:step].astype(np.float32))
        chroma.append((t["chroma"][:n:step] > 0).astype(np.float32))
    if not feats:
        raise SystemExit(f"{corpus}: no clips in split {split!r}")
    return np.concatenate(feats), np.concatenate(chroma), len(files)


def fit_pitch_classes(args) -> None:
    """Add a ``pitch_classes`` head to the shipped ``tcn-music`` weights: 12 sigmoid units on the frozen
    ``frame`` vector, fitted by logistic regression to the score's pitch classes on ``--split`` clips
    of the given corpora.  Every other weight and output stays as it was."""
    from mirzoo.extractor import Extractor
    from mirzoo.nn import get_family
    from mirzoo.spec import PITCH_CLASS_LABELS
    from training.train import save_weights_atomic

    root, entry, path = package_weights(args.root)
    # the model without the head (its frame vector is what the fit reads)
    base_entry = drop_pitch_class_head(json.loads(json.dumps(entry)))
    base_entry.pop("clip_key", None)
    vocab = list(entry["head"]["labels"])
    full, _, config = build_training_model(base_entry, len(vocab))
    if entry["config"].get("frame_heads"):  # the package's weights already carry the head: refit it
        shipped = json.loads(json.dumps(entry["config"]))
        shipped["n_tags"] = len(vocab)
        old = get_family(entry["family"])(shipped, name=MODEL.replace("-", "_"))
        old.load_weights(path)
        for layer in full.layers:
            layer.set_weights(old.get_layer(layer.name).get_weights())
    else:
        full.load_weights(path)
    extractor = Extractor(full, describe_derived_heads(json.loads(json.dumps(dict(base_entry, config=config)))))
    t0 = time.time()
    parts = [frame_features_and_chroma(extractor, Path(c), args.split, args.clips, args.step) for c in args.corpus]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    w, b = fit_binary_logistic(x, y, args.l2)
    fit_s = time.time() - t0
    valid = {}
    if args.valid_split:
        vx, vy = [], []
        for c in args.corpus:
            f, t, _ = frame_features_and_chroma(extractor, Path(c), args.valid_split, args.clips // 4, args.step, seed=1)
            vx.append(f)
            vy.append(t)
        p = 1.0 / (1.0 + np.exp(-(np.concatenate(vx) @ w + b)))
        truth = np.concatenate(vy) > 0.5
        pred = p > 0.5
        valid = {"split": args.valid_split, "frames": int(len(truth)),
                 "f1": round(float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)), 4),
                 "accuracy": round(float((pred == truth).mean()), 4)}
    with_head = dict(config, frame_heads={PITCH_CLASS_HEAD: 12})  # config carries n_tags already
    model = get_family(entry["family"])(with_head, name=MODEL.replace("-", "_"))
    for layer in full.layers:
        model.get_layer(layer.name).set_weights(layer.get_weights())
    model.get_layer(PITCH_CLASS_HEAD).set_weights([w.astype(np.float32), b.astype(np.float32)])
    target = path
    save_weights_atomic(model, target)
    data = target.read_bytes()
    record = {"corpora": [Path(c).name for c in args.corpus], "split": args.split,
              "clips": int(sum(p[2] for p in parts)), "frames": int(len(x)), "frame_step": args.step, "l2": args.l2,
              "fit_seconds": round(fit_s, 1), "valid": valid,
              "command": "python -m training.musical fit-pitch-classes " + " ".join(f"--corpus {Path(c).name}" for c in args.corpus)
              + f" --split {args.split} --clips {args.clips} --step {args.step} --l2 {args.l2:g}"}
    def put_head(e: dict) -> None:
        e["config"]["frame_heads"] = {PITCH_CLASS_HEAD: 12}
        e["layers"][PITCH_CLASS_HEAD] = 12
        e["aux_heads"] = [a for a in e.get("aux_heads", []) if a["output"] != PITCH_CLASS_HEAD] + [
            {"output": PITCH_CLASS_HEAD, "labels": list(PITCH_CLASS_LABELS), "activation": "sigmoid"}]
        e["weights"] = {"kind": "file", "file": target.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        e.pop("clip_key", None)  # fitted on the weights without the head: rerun fit-key
        e.pop("downbeat_model", None)  # it reads the pitch-class head: rerun fit-downbeats
        drop_bar_model(e)  # so does this one (and the metrical layer computed from it): rerun fit-bars
        drop_clip_tags_reading(e, [PITCH_CLASS_HEAD])
        e["training"]["pitch_classes"] = record
        command = e["training"].get("command", "")
        if "fit-pitch-classes" not in command:  # it works on the package's weights: after they are shipped
            e["training"]["command"] = (f"{command} && python -m training.musical fit-pitch-classes --corpus CORPUS "
                                        "&& python -m training.musical fit-key --corpus CORPUS --weights shipped --out manifest")

    update_package_entry(root, put_head)
    log.info("pitch-class head on %d frames of %d clips (%.0f s)%s -> %s; now run fit-key --out manifest",
             len(x), record["clips"], fit_s, f", {valid['split']} F1 {valid['f1']}" if valid else "", target)


# -- tag head ---------------------------------------------------------------------------------------
#: layers the refitted ``tags`` head reads by default (``fit-tags``): the 2-D stack's last map, the frame
#: vector and the embedding -- clip tags (instrument, style, texture) are timbre as much as structure
TAG_SOURCES = ("conv3", "frame", "embedding")


def tagged_clip_outputs(extractor, corpus: Path, split: str, clips: int, keys, vocab, seed: int = 0):
    """Yield ``(outputs {key: [frames, ...]}, tags [len(vocab)] 0/1)`` for ``clips`` clips of ``split`` drawn
    with ``seed`` (0: all): the ``keys`` outputs of the clip, and its tags."""
    from training.corpus import load_clip_targets

    for path in draw_target_files(corpus, split, clips, seed):
        t = load_clip_targets(path)
        tags = set(t["meta"].get("tags", "").split(";"))
        y, _ = extractor.load_input(str(corpus / t["meta"]["path"]), None)
        yield extractor.forward([y], list(keys), 16)[0], np.array([lab in tags for lab in vocab], dtype=np.float32)


def frame_features_and_tags(extractor, corpus: Path, split: str, clips: int, step: int, sources, vocab,
                            seed: int = 0):
    """``(x, y, clip_index, n_clips)``: every ``step``-th frame of ``sources`` (concatenated) and the clip's
    tags (``vocab``, 0/1) broadcast to its frames, for ``clips`` clips of ``split`` drawn with ``seed``
    (0: all), with the clip each frame comes from."""
    xs, ys, owner = [], [], []
    for i, (out, tags) in enumerate(tagged_clip_outputs(extractor, corpus, split, clips, sources, vocab, seed)):
        x = np.concatenate([out[src].reshape(len(out[src]), -1) for src in sources], axis=1)[::step]
        xs.append(x.astype(np.float32))
        ys.append(np.repeat(tags[None], len(x), axis=0))
        owner.append(np.full(len(x), i))
    if not xs:
        raise SystemExit(f"{corpus}: no clips in split {split!r}")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(owner), len(xs)


def clip_tag_roc_auc(probs: np.ndarray, truth: np.ndarray) -> float | None:
    """Macro ROC-AUC of clip tag probabilities ``[clips, tags]`` over the tags with both classes present
    (as ``benchmarks/musicality.py`` scores the tag head); ``None`` if no tag has both."""
    from sklearn.metrics import roc_auc_score  # deferred: in the corpus and test extras

    usable = [j for j in range(truth.shape[1]) if 0 < truth[:, j].sum() < truth.shape[0]]
    return float(np.mean([roc_auc_score(truth[:, j], probs[:, j]) for j in usable])) if usable else None


def package_network(root: str, sources, heads_too: bool = False) -> tuple:
    """``(root, entry, weights path, network, config, extractor)`` of the package's ``tcn-music`` (see
    :func:`package_weights`), after checking that ``sources`` are distinct trunk layers of it (with
    ``heads_too``, or the outputs of its heads; never the derived ``tonal``): what the fits on frozen layers read."""
    from mirzoo.extractor import Extractor
    from mirzoo.nn.tcn import is_trunk_layer

    root, entry, path = package_weights(root)
    full, _, config = build_training_model(entry, len(entry["head"]["labels"]))
    full.load_weights(path)
    heads = ({entry["head"]["output"]} | {a["output"] for a in entry.get("aux_heads", [])}) if heads_too else set()
    unknown = [src for src in sources if src not in full.output or src not in entry["layers"]
               or not (is_trunk_layer(src) or src in heads)]
    if unknown or len(set(sources)) != len(sources):
        raise SystemExit(f"--sources {list(sources)}: expected distinct layers of {MODEL}'s network (conv1 .. conv3, frame, "
                         f"tcn1 .. tcnN, embedding)" + (f" or its heads {sorted(heads)}" if heads_too else ", not heads"))
    extractor = Extractor(full, describe_derived_heads(json.loads(json.dumps(dict(entry, config=config)))))
    return root, entry, path, full, config, extractor


def drop_clip_tags_reading(entry: dict, outputs) -> None:
    """Drop the entry's ``clip_tags`` record (and its training record) when it reads one of ``outputs``, heads a
    fit has just changed: it was fitted on their previous values (rerun ``fit-clip-tags``)."""
    record = entry.get("clip_tags")
    if record and set(record.get("sources", ())) & set(outputs):
        entry.pop("clip_tags")
        entry.get("training", {}).pop("clip_tags", None)
        log.warning("the entry's clip_tags record reads %s, which this fit changed: dropped; rerun fit-clip-tags",
                    sorted(set(record["sources"]) & set(outputs)))


def fit_tags(args) -> None:
    """Refit the shipped ``tcn-music``'s ``tags`` head on the frozen ``--sources`` layers (concatenated):
    a frame-wise logistic regression to the clips' tags on ``--split`` clips of the given corpora, as the
    head is trained (clip tags broadcast to frames).  Every other weight and output stays as it was.
    The record gives the valid clips' tag ROC-AUC (frame mean, as ``tag()`` reads it) before and after;
    nothing is written when the refit is not better there."""
    from mirzoo.nn import get_family
    from training.train import hardware_text, save_weights_atomic

    sources = list(args.sources)
    root, entry, path, full, config, extractor = package_network(args.root, sources)
    vocab = list(entry["head"]["labels"])
    t0 = time.time()
    parts = [frame_features_and_tags(extractor, Path(c), args.split, args.clips, args.step, sources, vocab)
             for c in args.corpus]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    w, b = fit_binary_logistic(x, y, args.l2)
    fit_s = time.time() - t0
    # the valid clips, every frame: the clip means of the old head and of the refit
    before, after, truth = [], [], []
    for c in args.corpus:
        vx, vy, owner, n = frame_features_and_tags(extractor, Path(c), args.valid_split, args.clips // 4, 1,
                                                   sources + ["tags"], vocab, seed=1)
        new = 1.0 / (1.0 + np.exp(-(vx[:, : x.shape[1]] @ w + b)))
        for i in range(n):
            rows = owner == i
            before.append(vx[rows, x.shape[1]:].mean(axis=0))
            after.append(new[rows].mean(axis=0))
            truth.append(vy[rows][0])
    truth = np.asarray(truth)
    auc_before, auc_after = clip_tag_roc_auc(np.asarray(before), truth), clip_tag_roc_auc(np.asarray(after), truth)
    if auc_before is None:
        raise SystemExit(f"no tag is both present and absent among the {len(truth)} {args.valid_split} clips: "
                         "nothing to judge the refit on; give a larger --valid-split")
    valid = {"split": args.valid_split, "clips": int(len(truth)), "roc_auc_before": round(auc_before, 4),
             "roc_auc": round(auc_after, 4)}
    log.info("tags head on %s: valid clip ROC-AUC %.4f -> %.4f (%d clips)", "+".join(sources),
             valid["roc_auc_before"], valid["roc_auc"], valid["clips"])
    if not valid["roc_auc"] > valid["roc_auc_before"]:
        raise SystemExit(f"the refitted tags head is not better on the {args.valid_split} clips "
                         f"({valid['roc_auc']} against {valid['roc_auc_before']}): nothing written")
    model = get_family(entry["family"])(dict(config, tags_from=sources), name=MODEL.replace("-", "_"))  # n_tags set
    for layer in full.layers:
        if layer.weights and layer.name != "tags":
            model.get_layer(layer.name).set_weights(layer.get_weights())
    model.get_layer("tags").set_weights([w.astype(np.float32), b.astype(np.float32)])
    save_weights_atomic(model, path)
    data = path.read_bytes()
    record = {"sources": sources, "corpora": [Path(c).name for c in args.corpus], "split": args.split,
              "clips": int(sum(p[3] for p in parts)), "frames": int(len(x)), "frame_step": args.step, "l2": args.l2,
              "fit_seconds": round(fit_s, 1), "hardware": hardware_text(), "valid": valid,
              "command": "python -m training.musical fit-tags " + " ".join(f"--corpus {Path(c).name}" for c in args.corpus)
              + f" --split {args.split} --clips {args.clips} --step {args.step} --l2 {args.l2:g} --sources {' '.join(sources)}"}

    def put_head(e: dict) -> None:
        e["config"]["tags_from"] = sources
        e["weights"] = {"kind": "file", "file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        e.pop("clip_key", None)  # fitted on the previous file (its heads are unchanged): rerun fit-key
        e.pop("downbeat_model", None)
        drop_bar_model(e)
        drop_clip_tags_reading(e, ["tags"])
        e["training"]["tags_head"] = record
        append_command(e, "python -m training.musical fit-tags --corpus CORPUS && python -m training.musical fit-key "
                          "--corpus CORPUS --weights shipped --out manifest")

    update_package_entry(root, put_head)
    log.info("tags head refitted on %d frames of %d clips (%.0f s) -> %s; now run fit-key --weights shipped --out manifest",
             len(x), record["clips"], fit_s, path)


#: ``fit-clip-tags``' defaults, the shipped record's recipe (sessions 25 and 26: chosen on the valid clips, with
#: each render also left out of the fit in turn): the layers and heads it reads (the ``tags`` head's own frame
#: probabilities among them), the statistics of the clip's frames, the train clips drawn per corpus (0: all),
#: and the L2 penalties it chooses between by the valid clips' tag ROC-AUC
CLIP_TAG_SOURCES = ("conv2", "conv3", "frame", "embedding", "tags")
CLIP_TAG_POOL = "mean+std+max"
CLIP_TAG_CLIPS = 0
CLIP_TAG_L2 = (0.003, 0.01, 0.03)


def fit_clip_tags(args) -> None:
    """Fit the shipped ``tcn-music``'s ``clip_tags`` record: a logistic regression from each clip's mean and
    spread (``--pool``) of the frozen ``--sources`` layers (and heads) to its tags, on ``--split`` clips of the given
    corpora, its L2 penalty chosen among ``--l2`` on the ``--valid-split`` clips.  It is written only if it
    ranks the valid clips' tags better than the ``tags`` head's frame mean (what ``tag()`` read before);
    the weights do not change, so the other records stay valid."""
    from mirzoo.fileio import write_json_atomic
    from mirzoo.spec import CLIP_HEAD_FORM, ModelSpec
    from mirzoo.tasks.clip_heads import clip_features, clip_tag_probabilities, encode_array
    from training.train import hardware_text

    sources = list(args.sources)
    root, entry, path, full, config, extractor = package_network(args.root, sources, heads_too=True)
    vocab = list(entry["head"]["labels"])
    l2_grid = sorted(set(args.l2))
    if not l2_grid or min(l2_grid) <= 0:
        raise SystemExit(f"--l2 {args.l2}: expected penalties > 0")

    def pooled(split: str, clips: int, seed: int):
        feats, truth, frame_mean = [], [], []
        for c in args.corpus:
            for out, tags in tagged_clip_outputs(extractor, Path(c), split, clips, list(dict.fromkeys(sources + ["tags"])),
                                                 vocab, seed):
                feats.append(clip_features(out, sources, args.pool))
                truth.append(tags)
                frame_mean.append(out["tags"].mean(axis=0))
        if not feats:
            raise SystemExit(f"{args.corpus}: no clips in split {split!r}")
        return np.array(feats), np.array(truth), np.array(frame_mean)

    t0 = time.time()
    x, y, _ = pooled(args.split, args.clips, 0)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    vx, vy, before = pooled(args.valid_split, args.valid_clips, 1)
    auc_before = clip_tag_roc_auc(before, vy)
    if auc_before is None:
        raise SystemExit(f"no tag is both present and absent among the {len(vy)} {args.valid_split} clips: "
                         "nothing to judge the fit on; give a larger --valid-split")
    records, scores = {}, {}
    for l2 in l2_grid:
        w, b = fit_binary_logistic((x - mean) / scale, y, l2)
        records[l2] = {"form": CLIP_HEAD_FORM, "head": entry["head"]["output"], "sources": sources, "pool": args.pool,
                       "mean": encode_array(mean, "float32"), "scale": encode_array(scale, "float32"),
                       "weights": encode_array(w, "float16"), "bias": [round(float(v), 6) for v in b]}
        # scored as tag() reads the record, its float16 weights included
        probs = np.array([clip_tag_probabilities({"pooled": row[None]}, dict(records[l2], sources=["pooled"], pool="mean"))
                          for row in vx])
        scores[l2] = round(clip_tag_roc_auc(probs, vy), 4)
        log.info("clip tags, L2 %g: valid ROC-AUC %.4f (frame mean of the tags head %.4f)", l2, scores[l2], auc_before)
    best = max(l2_grid, key=lambda v: (scores[v], v))
    fit_s = time.time() - t0
    if not scores[best] > auc_before:
        raise SystemExit(f"the clip tags record is not better on the {args.valid_split} clips than the tags head's frame "
                         f"mean ({scores[best]} against {round(auc_before, 4)}): nothing written")
    record = records[best]
    fit = {"corpora": [Path(c).name for c in args.corpus], "split": args.split, "clips": int(len(x)), "l2": best,
           "l2_scores": {f"{v:g}": scores[v] for v in l2_grid}, "fit_seconds": round(fit_s, 1), "hardware": hardware_text(),
           "valid": {"split": args.valid_split, "clips": int(len(vy)), "roc_auc_frame_mean": round(auc_before, 4),
                     "roc_auc": scores[best]},
           "command": "python -m training.musical fit-clip-tags " + " ".join(f"--corpus {Path(c).name}" for c in args.corpus)
           + f" --split {args.split} --clips {args.clips} --valid-clips {args.valid_clips} --pool {args.pool}"
           + f" --sources {' '.join(sources)} --l2 {' '.join(f'{v:g}' for v in l2_grid)}"}
    ModelSpec.from_entry(MODEL, dict(entry, clip_tags=record))  # the record the manifest will hold must parse
    if args.out != "manifest":
        write_json_atomic(args.out, {"clip_tags": record, "fit": fit})
    else:
        def put_record(e: dict) -> None:
            e["clip_tags"] = record
            e["training"]["clip_tags"] = fit
            append_command(e, "python -m training.musical fit-clip-tags --corpus CORPUS --out manifest")

        update_package_entry(root, put_record)
    log.info("clip tags on %s (%s) from %d clips: valid ROC-AUC %.4f -> %.4f (L2 %g, %.0f s) -> %s", "+".join(sources),
             args.pool, len(x), auc_before, scores[best], best, fit_s, args.out)


# -- bar length and downbeat phase ------------------------------------------------------------------
#: (hidden units, L2 penalty) pairs ``fit-downbeats`` chooses between by the valid clips' downbeat F-measure
DOWNBEAT_GRID = ((8, 1e-3), (16, 1e-3), (16, 1e-2))


def beat_f_measure(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """mir_eval's beat F-measure (70 ms window, first 5 s trimmed from both), as ``benchmarks/musicality.py``
    scores beats and downbeats; ``None`` for fewer than two reference beats after trimming."""
    import mir_eval  # deferred: in the corpus and test extras

    ref = mir_eval.beat.trim_beats(np.asarray(reference, dtype=np.float64))
    if ref.size < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(mir_eval.beat.f_measure(ref, mir_eval.beat.trim_beats(np.asarray(estimate, dtype=np.float64))))


def in_beat_grid(times: np.ndarray, targets: dict) -> np.ndarray:
    """The times whose frame lies where the score's beat grid is known (``beat_mask``): elsewhere the truth is
    unknown, so a beat there is neither right nor wrong (``benchmarks/musicality.py`` scores these)."""
    times = np.asarray(times, dtype=np.float64)
    mask = np.asarray(targets["beat_mask"]).astype(bool)
    if not mask.size:
        return times
    frames = np.clip(np.round(times * int(targets["sr"]) / int(targets["hop"])).astype(int), 0, mask.size - 1)
    return times[mask[frames]]


def downbeat_inputs(extractor, corpus: Path, split: str, limit: int = 0) -> list[dict]:
    """Every clip of ``split`` with reference downbeats: its :func:`mirzoo.tasks.analyze.clip_bar_candidates`
    rows, each candidate's downbeat F-measure against the score, and the F-measure and time signature of the
    evidence reading (``analyze_frames`` without a ``downbeat_model``), on the frames ``analyze()`` reads (the
    rhythm heads averaged over its default ``rhythm_shifts``)."""
    from mirzoo.tasks.analyze import (OPTIONAL_HEADS, REQUIRED_HEADS, analyze_frames, clip_bar_candidates,
                                      signal_rhythm_ensemble)
    from training.corpus import load_clip_targets

    heads = extractor.heads
    fps = extractor.sample_rate / extractor.hop_length
    keys = list(REQUIRED_HEADS) + [h for h in OPTIONAL_HEADS if h in heads]
    files = target_files(corpus, split)
    if limit:
        files = files[:limit]
    rows = []
    for path in files:
        t = load_clip_targets(path)
        beats = np.asarray(t["beat_times"], dtype=np.float64)
        reference = beats[np.asarray(t["beat_position"]) == 1]
        meter = int(t["meter"])
        if meter < 0:
            continue
        y, _ = extractor.load_input(str(corpus / t["meta"]["path"]), None)
        out = signal_rhythm_ensemble(extractor, y, extractor.forward([y], keys, 16)[0])
        a = analyze_frames(out, heads, fps, duration=y.shape[0] / extractor.sample_rate, downbeat_model=None)
        base = beat_f_measure(reference, in_beat_grid(a.downbeats, t))
        if base is None:
            continue
        x, labels = clip_bar_candidates(np.round(a.beats * fps).astype(np.int64), out, heads["meter"])
        if not labels:
            continue
        scores = [beat_f_measure(reference, in_beat_grid(a.beats[p::b], t)) or 0.0 for b, p in labels]
        rows.append({"x": x, "labels": labels, "f": np.array(scores), "base_f": base, "piece": t["meta"]["piece_id"],
                     "meter": heads["meter"][meter], "base_meter": a.meter, "meter_mean": out["meter"].mean(axis=0)})
    return rows


def _pad_candidates(xs: list) -> tuple[np.ndarray, np.ndarray]:
    n, width = len(xs), xs[0].shape[1]
    most = max(len(x) for x in xs)
    x = np.zeros((n, most, width))
    mask = np.zeros((n, most), dtype=bool)
    for i, rows in enumerate(xs):
        x[i, :len(rows)] = rows
        mask[i, :len(rows)] = True
    return x, mask


def fit_downbeat_model(xs: list, targets: np.ndarray, hidden: int, l2: float, seed: int = 0,
                       max_iter: int = 500) -> dict:
    """A listwise scorer of bar candidates: ``tanh`` layer of ``hidden`` units, then a linear score; the softmax
    of a clip's candidates' scores is fitted to its best candidate (``targets``: one index per clip) by
    L-BFGS with an L2 penalty on both weight matrices.  Returns the arrays of a ``downbeat_model`` record
    (:func:`mirzoo.tasks.analyze.bar_candidate_scores` reads them)."""
    from scipy.optimize import minimize

    x, mask = _pad_candidates(xs)
    flat = x[mask]
    mean, scale = flat.mean(axis=0), flat.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    x = (x - mean) / scale * mask[..., None]
    n, _, d = x.shape
    y = np.asarray(targets, dtype=np.int64)
    rows = np.arange(n)

    def unpack(theta):
        return theta[:d * hidden].reshape(d, hidden), theta[d * hidden:d * hidden + hidden], theta[d * hidden + hidden:]

    def loss(theta):
        w1, b1, w2 = unpack(theta)
        h = np.tanh(x @ w1 + b1)
        s = np.where(mask, h @ w2, -1e9)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s) * mask
        p = e / e.sum(axis=1, keepdims=True)
        value = -np.log(p[rows, y] + 1e-12).mean() + l2 * ((w1 ** 2).sum() + (w2 ** 2).sum())
        g = p.copy()
        g[rows, y] -= 1.0
        g *= mask / n
        g_w2 = np.einsum("nc,nch->h", g, h) + 2 * l2 * w2
        g_z = g[:, :, None] * w2 * (1.0 - h ** 2)
        g_w1 = np.einsum("ncd,nch->dh", x, g_z) + 2 * l2 * w1
        return value, np.concatenate([g_w1.ravel(), g_z.sum(axis=(0, 1)), g_w2])

    rng = np.random.default_rng(seed)
    theta = np.concatenate([rng.normal(0.0, 1.0 / math.sqrt(d), d * hidden), np.zeros(hidden),
                            rng.normal(0.0, 1.0 / math.sqrt(hidden), hidden)])
    fit = minimize(loss, theta, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    w1, b1, w2 = unpack(fit.x)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "hidden_weights": w1.tolist(), "hidden_bias": b1.tolist(),
            "output_weights": w2.tolist(), "hidden": int(hidden), "l2": float(l2), "iterations": int(fit.nit),
            "train_loss": round(float(fit.fun), 5)}


def write_fitted_record(args, key: str, record: dict, command: str) -> str:
    """Write a record fitted on the package's weights: into the ``key`` of both package manifests' entry
    (``--out manifest``; refused, nothing written, where an entry's weights are not the ones fitted on, by
    ``record["weights_sha256"]``), with ``command`` appended to the training command; or as JSON to ``--out``.
    Returns where it went."""
    from mirzoo.fileio import write_json_atomic

    if args.out != "manifest":
        write_json_atomic(Path(args.out), record)
        return args.out

    def put_record(entry: dict) -> None:
        if entry["weights"]["sha256"] != record["weights_sha256"]:
            raise SystemExit(f"a package manifest's {MODEL} weights are not the ones fitted on: nothing written")
        if key == "bar_model":
            put_bar_model(entry, record)
        else:
            entry[key] = record
        append_command(entry, f"python -m training.musical {command} --corpus CORPUS --out manifest")

    update_package_entry(Path(args.root) if args.root else Path(__file__).resolve().parent.parent, put_record)
    return "the manifest entry"


def downbeat_choice_figures(rows: list, record: dict, meter_labels: list) -> dict:
    """Mean downbeat F-measure and time-signature accuracy of the record's choices on ``rows``, beside the
    evidence reading's."""
    from mirzoo.tasks.analyze import bar_candidate_scores, meter_of_bar_length

    f, exact = [], []
    for r in rows:
        i = int(np.argmax(bar_candidate_scores(r["x"], record)))
        f.append(r["f"][i])
        exact.append(meter_of_bar_length(r["meter_mean"], meter_labels, r["labels"][i][0]) == r["meter"])
    return {"clips": len(rows), "downbeat_f": round(float(np.mean(f)), 4),
            "downbeat_f_evidence": round(float(np.mean([r["base_f"] for r in rows])), 4),
            "time_signature": round(float(np.mean(exact)), 4),
            "time_signature_evidence": round(float(np.mean([r["base_meter"] == r["meter"] for r in rows])), 4)}


def fit_downbeats(args) -> None:
    """Fit the ``downbeat_model`` record of the shipped ``tcn-music`` weights: on the ``--split`` clips of
    the corpora, chosen among :data:`DOWNBEAT_GRID` by the ``--valid-split`` clips' downbeat F-measure."""
    import mirzoo
    from mirzoo.spec import BEAT_FEATURES, DOWNBEAT_BAR_LENGTHS, DOWNBEAT_MODEL_FORM

    extractor = mirzoo.load(MODEL)  # the package's weights (MIRZOO_MANIFEST / MIRZOO_WEIGHTS_DIR name another copy)
    if "pitch_classes" not in extractor.heads:
        raise SystemExit(f"{MODEL}'s shipped weights have no pitch_classes head: run fit-pitch-classes first")
    t0 = time.time()
    train_rows = [r for c in args.corpus for r in downbeat_inputs(extractor, Path(c), args.split, args.limit)]
    valid_rows = [r for c in args.corpus for r in downbeat_inputs(extractor, Path(c), args.valid_split, args.limit)]
    for name, rows in ((args.split, train_rows), (args.valid_split, valid_rows)):
        if len(rows) < 20:
            raise SystemExit(f"split {name!r}: {len(rows)} clips with reference downbeats, need at least 20")
    inputs_s = time.time() - t0
    targets = np.array([int(np.argmax(r["f"])) for r in train_rows])
    meter_labels = extractor.heads["meter"]
    tried = []
    for hidden, l2 in DOWNBEAT_GRID:
        fitted = fit_downbeat_model([r["x"] for r in train_rows], targets, hidden, l2, seed=args.seed)
        tried.append((downbeat_choice_figures(valid_rows, fitted, meter_labels), fitted))
        log.info("hidden %d, l2 %g: %s", hidden, l2, tried[-1][0])
    figures, fitted = max(tried, key=lambda t: t[0]["downbeat_f"])
    record = {"form": DOWNBEAT_MODEL_FORM, "features": list(BEAT_FEATURES), "bar_lengths": list(DOWNBEAT_BAR_LENGTHS),
              **fitted, "weights_sha256": extractor.spec.weights.sha256,  # checked against the file when loaded
              "fitted_on": (" + ".join(Path(c).name for c in args.corpus) + f" split {args.split}: {len(train_rows)} "
                            f"clips; chosen on split {args.valid_split} (python -m training.musical fit-downbeats)"),
              "train": downbeat_choice_figures(train_rows, fitted, meter_labels), "valid": figures,
              "grid": [dict(hidden=f["hidden"], l2=f["l2"], **v) for v, f in tried],
              "seconds": {"inputs": round(inputs_s, 1), "fit": round(time.time() - t0 - inputs_s, 1)}}
    out = write_fitted_record(args, "downbeat_model", record, "fit-downbeats")
    log.info("downbeat model on %d %s clips (%.0f s): valid downbeat F %.4f (evidence reading %.4f), time signature "
             "%.4f (%.4f) -> %s", len(train_rows), args.split, time.time() - t0, figures["downbeat_f"],
             figures["downbeat_f_evidence"], figures["time_signature"], figures["time_signature_evidence"], out)


#: the sources a ``fit-bars`` record reads by default: the beat features, and the means over each beat's
#: interval of the pitch-class, chord, beat and meter heads.  Session 32 chose them by leave-one-render-out
#: (fitted on two renders' train clips, scored on the third's valid clips): a record that also reads the
#: embedding learns the training soundfonts' timbre and falls below the evidence reading on a render it was
#: not fitted on; this one gains on every held-out render (training/README.md, "Session 32")
BAR_SOURCES = ("beat_features", "pitch_classes", "chord", "beats", "meter")


def bar_inputs(extractor, corpus: Path, split: str, sources, every: int = 1, limit: int = 0) -> list[dict]:
    """Every ``every``-th clip of ``split`` with a reference meter: the :func:`mirzoo.tasks.analyze.bar_features`
    of its tracked beats (the beats ``analyze()`` tracks, on the frames it reads), each beat's joint class of
    :data:`mirzoo.tasks.bar_model.BAR_CLASSES` (the position of the score's beat within 70 ms of it and the
    meter's beats per bar; -1 where there is none or the bar length has no class), and what the figures need:
    the evidence reading's downbeat F-measure and meter, the beats, the reference downbeats."""
    from mirzoo.tasks.analyze import analysis_outputs, analyze_frames, bar_features, beats_per_bar, signal_rhythm_ensemble
    from mirzoo.tasks.bar_model import BAR_CLASSES
    from training.corpus import load_clip_targets

    heads = extractor.heads
    fps = extractor.sample_rate / extractor.hop_length
    keys = analysis_outputs(heads, sources)
    files = target_files(corpus, split)[::max(int(every), 1)]
    if limit:
        files = files[:limit]
    index = {c: k for k, c in enumerate(BAR_CLASSES)}
    rows = []
    for path in files:
        t = load_clip_targets(path)
        meter = int(t["meter"])
        if meter < 0:
            continue
        y, _ = extractor.load_input(str(corpus / t["meta"]["path"]), None)
        plain = extractor.forward([y], keys, 16)[0]
        out = signal_rhythm_ensemble(extractor, y, plain)
        a = analyze_frames(out, heads, fps, duration=y.shape[0] / extractor.sample_rate, downbeat_model=None,
                           bar_model=None)
        beat_frames = np.round(a.beats * fps).astype(np.int64)
        if beat_frames.size < 4:
            continue
        ref_beats = np.asarray(t["beat_times"], dtype=np.float64)
        positions = np.asarray(t["beat_position"])
        per_bar = beats_per_bar(heads["meter"][meter])
        label = np.full(beat_frames.size, -1, dtype=np.int64)
        if ref_beats.size:
            nearest = np.abs(ref_beats[None, :] - a.beats[:, None]).argmin(axis=1)
            near = np.abs(ref_beats[nearest] - a.beats) <= 0.07
            label = np.array([index.get((per_bar, int(pos)), -1) if ok else -1
                              for pos, ok in zip(positions[nearest], near)], dtype=np.int64)
        reference = ref_beats[positions == 1]
        rows.append({"x": bar_features(beat_frames, out, sources).astype(np.float32), "label": label,
                     "beats": a.beats, "in_grid": np.isin(a.beats, in_beat_grid(a.beats, t)), "reference": reference,
                     "base_f": beat_f_measure(reference, in_beat_grid(a.downbeats, t)) if reference.size else None,
                     "meter": heads["meter"][meter], "base_meter": a.meter, "meter_mean": out["meter"].mean(axis=0),
                     "piece": t["meta"]["piece_id"]})
    return rows


def bar_choice_figures(rows: list, record: dict, meter_labels: list) -> dict:
    """Mean downbeat F-measure (clips with reference downbeats) and time-signature accuracy of the record's
    choices on ``rows`` (:func:`mirzoo.tasks.analyze.bars_from_features`, as ``analyze()`` reads them), beside the
    evidence reading's; a clip where the record cannot choose keeps the evidence reading, as ``analyze()`` does."""
    from mirzoo.tasks.analyze import bars_from_features

    f, f_base, exact = [], [], []
    for r in rows:
        chosen = bars_from_features(r["x"], r["meter_mean"], meter_labels, record)
        if chosen is None:
            exact.append(r["base_meter"] == r["meter"])
            if r["base_f"] is not None:
                f.append(r["base_f"])
                f_base.append(r["base_f"])
            continue
        meter, b, p = chosen
        exact.append(meter == r["meter"])
        if r["base_f"] is not None:
            down = r["beats"][p::b][r["in_grid"][p::b]]
            f.append(beat_f_measure(r["reference"], down) or 0.0)
            f_base.append(r["base_f"])
    return {"clips": len(rows), "clips_with_downbeats": len(f), "downbeat_f": round(float(np.mean(f)), 4),
            "downbeat_f_evidence": round(float(np.mean(f_base)), 4),
            "time_signature": round(float(np.mean(exact)), 4),
            "time_signature_evidence": round(float(np.mean([r["base_meter"] == r["meter"] for r in rows])), 4)}


def bar_network(n_features: int, hidden: int, units: int, dropout: float):
    """``(net, layers)``: the Keras network a ``bar_model`` record holds, ``Masking -> Dense(hidden, relu) ->
    Dropout -> Bidirectional(GRU(units)) -> Dropout -> Dense(softmax)`` over ``[clips, beats, n_features]``,
    and its ``{"dense", "gru", "output"}`` layers (what :func:`bar_network_arrays` reads)."""
    import keras

    from mirzoo.tasks.bar_model import BAR_CLASSES

    inputs = keras.Input((None, n_features))
    layers = {"dense": keras.layers.Dense(hidden, activation="relu"),
              "gru": keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True)),
              "output": keras.layers.Dense(len(BAR_CLASSES), activation="softmax")}
    h = keras.layers.Dropout(dropout)(layers["dense"](keras.layers.Masking(0.0)(inputs)))
    h = keras.layers.Dropout(dropout)(layers["gru"](h))
    return keras.Model(inputs, layers["output"](h)), layers


def bar_network_arrays(layers: dict, mean: np.ndarray, scale: np.ndarray) -> dict:
    """The array records (float32, :func:`mirzoo.tasks.clip_heads.encode_array`) of a ``bar_model`` record from the
    layers of :func:`bar_network` and the feature standardisation (``mean``, ``scale``)."""
    import keras

    from mirzoo.spec import BAR_MODEL_ARRAYS
    from mirzoo.tasks.clip_heads import encode_array

    forward, backward = layers["gru"].forward_layer.cell, layers["gru"].backward_layer.cell
    arrays = {"mean": mean, "scale": scale, "dense_kernel": layers["dense"].kernel, "dense_bias": layers["dense"].bias,
              "forward_kernel": forward.kernel, "forward_recurrent": forward.recurrent_kernel, "forward_bias": forward.bias,
              "backward_kernel": backward.kernel, "backward_recurrent": backward.recurrent_kernel,
              "backward_bias": backward.bias, "output_kernel": layers["output"].kernel, "output_bias": layers["output"].bias}
    return {name: encode_array(np.asarray(keras.ops.convert_to_numpy(arrays[name])), "float32") for name in BAR_MODEL_ARRAYS}


def fit_bar_network(train_rows: list, hidden: int, units: int, dropout: float, epochs: int, patience: int,
                    seed: int) -> tuple[dict, dict]:
    """A Keras ``Dense(relu) -> Bidirectional(GRU) -> Dense(softmax)`` over each clip's beats, fitted to the
    beats' joint classes (unlabelled beats weigh 0), with early stopping on a tenth of the pieces held out
    (seeded).  Returns the record's arrays (``mean``, ``scale``, the layers' weights; float32 array records)
    and how the fit went."""
    import keras

    keras.utils.set_random_seed(seed)
    pieces = np.array([r["piece"] for r in train_rows])
    names = np.unique(pieces)
    held = set(np.random.default_rng(seed).choice(names, size=max(len(names) // 10, 1), replace=False).tolist())
    fit_idx = [i for i, p in enumerate(pieces) if p not in held]
    stop_idx = [i for i, p in enumerate(pieces) if p in held]
    stacked = np.concatenate([train_rows[i]["x"] for i in fit_idx]).astype(np.float64)
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0) + 1e-4

    def batch(idx):
        most = max(train_rows[i]["x"].shape[0] for i in idx)
        x = np.zeros((len(idx), most, mean.size), np.float32)
        y = np.zeros((len(idx), most), np.int64)
        w = np.zeros((len(idx), most), np.float32)
        for k, i in enumerate(idx):
            r = train_rows[i]
            n = r["x"].shape[0]
            x[k, :n] = (r["x"] - mean) / scale
            y[k, :n] = np.maximum(r["label"], 0)
            w[k, :n] = r["label"] >= 0
        return x, y, w

    x_fit, y_fit, w_fit = batch(fit_idx)
    x_stop, y_stop, w_stop = batch(stop_idx)
    net, layers = bar_network(mean.size, hidden, units, dropout)
    net.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    history = net.fit(x_fit, y_fit, sample_weight=w_fit, validation_data=(x_stop, y_stop, w_stop), epochs=epochs,
                      batch_size=32, verbose=0, shuffle=True,
                      callbacks=[keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)])
    losses = history.history["val_loss"]
    record = bar_network_arrays(layers, mean, scale)
    fit = {"clips": len(fit_idx), "early_stopping_clips": len(stop_idx), "epochs": len(losses),
           "best_epoch": int(np.argmin(losses)), "early_stopping_loss": round(float(min(losses)), 4),
           "parameters": int(net.count_params())}
    return record, fit


def fit_bars(args) -> None:
    """Fit the ``bar_model`` record of the shipped ``tcn-music`` weights (:mod:`mirzoo.tasks.bar_model`): on every
    ``--every``-th ``--split`` clip of the corpora, with early stopping on a tenth of their pieces; scored on the
    ``--valid-split`` clips against the evidence reading.  Written only when it reads a higher downbeat F there."""
    import mirzoo
    from mirzoo.spec import BAR_MODEL_FORM
    from mirzoo.tasks.bar_model import BAR_CLASSES

    extractor = mirzoo.load(MODEL)
    missing = [h for h in ("beats", "chord", "meter", "pitch_classes") if h not in extractor.heads]
    if missing:
        raise SystemExit(f"{MODEL}'s shipped weights lack the heads {missing} the bar model reads")
    sources = tuple(args.sources)
    t0 = time.time()
    train_rows = [r for c in args.corpus for r in bar_inputs(extractor, Path(c), args.split, sources, args.every, args.limit)]
    valid_rows = [r for c in args.corpus for r in bar_inputs(extractor, Path(c), args.valid_split, sources, 1, args.limit)]
    for name, rows in ((args.split, train_rows), (args.valid_split, valid_rows)):
        if len(rows) < 20:
            raise SystemExit(f"split {name!r}: {len(rows)} clips with a reference meter, need at least 20")
    inputs_s = time.time() - t0
    arrays, fit = fit_bar_network(train_rows, args.hidden, args.units, args.dropout, args.epochs, args.patience, args.seed)
    record = {"form": BAR_MODEL_FORM, "sources": list(sources), "classes": [list(c) for c in BAR_CLASSES], **arrays}
    figures = bar_choice_figures(valid_rows, record, extractor.heads["meter"])
    record.update({
        "weights_sha256": extractor.spec.weights.sha256,
        "fitted_on": (" + ".join(Path(c).name for c in args.corpus) + f" split {args.split}, "
                      + ("every clip" if args.every <= 1 else f"one clip in {args.every}")
                      + f": {len(train_rows)} clips (python -m training.musical fit-bars)"),
        "fit": fit, "valid": {"split": args.valid_split, **figures},
        "settings": {"hidden": args.hidden, "units": args.units, "dropout": args.dropout, "seed": args.seed},
        "seconds": {"inputs": round(inputs_s, 1), "fit": round(time.time() - t0 - inputs_s, 1)}})
    log.info("bar model on %d %s clips (%.0f s): valid downbeat F %.4f (evidence reading %.4f), time signature "
             "%.4f (%.4f)", len(train_rows), args.split, time.time() - t0, figures["downbeat_f"],
             figures["downbeat_f_evidence"], figures["time_signature"], figures["time_signature_evidence"])
    if not figures["downbeat_f"] > figures["downbeat_f_evidence"]:
        log.warning("the bar model reads no higher downbeat F than the evidence reading on the %s clips: nothing written",
                    args.valid_split)
        return
    write_fitted_record(args, "bar_model", record, "fit-bars")


def last_epoch_label(state: dict) -> str:
    """How ``ship`` and ``interpolate`` name a run's last epoch (``--weights last``): epochs count from 0."""
    return f"last epoch {state['epoch'] - 1}"


def interpolate(args) -> None:
    """Weight-space ensembling of a fine-tune with its initial weights (WiSE-FT, Wortsman et al. 2022).

    Writes a new run folder whose ``best.weights.h5`` is ``alpha * run + (1 - alpha) * initial`` (``run``: its
    best weights, or with ``--weights last`` its last epoch's) for every
    variable the initial weights have (heads the run added keep the run's), scored on the run's own
    validation crops; its ``state.json`` is the run's plus that record as the best, so ``fit-key`` and
    ``ship`` take it like any run. A fine-tune that moved the heads' answers but cost some of what the
    embedding knew can keep most of both.
    """
    import keras

    from mirzoo.zoo.manifest import get_entry
    from training.train import save_weights_atomic

    run, out = Path(args.run), Path(args.out)
    if not 0.0 < args.alpha < 1.0:
        raise SystemExit(f"--alpha {args.alpha}: expected a fraction in (0, 1) of the way from the initial weights")
    state = json.loads((run / "state.json").read_text())
    if "init" not in state:
        raise SystemExit(f"{run} did not start from initial weights (--init): nothing to interpolate with")
    entry = get_entry(MODEL)
    vocab = state["vocabulary"]
    extra = run_added_heads(state["model_config"], entry)
    full, model, config = build_training_model(entry, len(vocab), add_heads=extra)
    which = args.weights  # argparse's choices: best or last
    full.load_weights(run / f"{which}.weights.h5")
    start, _, _ = build_training_model(entry, len(vocab), add_heads=extra)
    fresh = set(load_initial_weights(start, Path(state["init"]["weights"]), entry, len(vocab)))
    for layer in full.layers:
        if layer.weights and layer.name not in fresh:
            layer.set_weights([args.alpha * np.asarray(a, np.float64) + (1 - args.alpha) * np.asarray(b, np.float64)
                               for a, b in zip(layer.get_weights(), start.get_layer(layer.name).get_weights())])
    cfg = state["config"]
    keras.utils.set_random_seed(int(cfg.get("seed", 0)))
    data = read_cache(Path(args.cache))
    metrics = valid_metrics(model, validation_crops(cfg, entry, data, vocab, derived_heads_of(config)))
    out.mkdir(parents=True, exist_ok=True)
    save_weights_atomic(full, out / "best.weights.h5")
    if which == "last":
        source = last_epoch_label(state)
    else:
        source = state["best_source"] if state.get("best_source") != "epoch" else f"epoch {state['best_epoch']}"
    record = {"epoch": len(state["history"]), "score": validation_score(metrics), **metrics,
              "interpolation": {"alpha": args.alpha, "run": str(run), "run_best": source, "run_weights": which,
                                "initial": state["init"]["weights"]}}
    run_best = state["best"]
    state["history"].append(record)
    state["best"], state["best_epoch"] = record["score"], record["epoch"]
    state["best_source"] = f"interpolation: {args.alpha:g} x ({source} of {run.name}) + {1 - args.alpha:g} x initial weights"
    tmp = out / ".state.json"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, out / "state.json")
    log.info("%s: score %.4f %s (the run's best %.4f, its initial weights %.4f)", state["best_source"], record["score"],
             {k: round(v, 3) for k, v in metrics.items()}, run_best, state["init"]["score"])


def describe_derived_heads(entry: dict) -> dict:
    """Give every derived head of ``entry``'s config (:data:`DERIVED_HEADS`) its ``layers`` width and an
    ``aux_heads`` record with readable labels, so that ``tag(head=...)`` and ``extract(layer=...)``
    serve it. Changes and returns ``entry``."""
    for head, labels in DERIVED_HEADS.items():
        if head in entry["config"].get("heads", {}):
            entry["layers"][head] = len(labels)
            aux = [a for a in entry.get("aux_heads", []) if a["output"] != head]
            entry["aux_heads"] = aux + [{"output": head, "labels": list(labels), "activation": "softmax"}]
    return entry


def ship(args) -> None:
    """Copy the run's best weights into the package and rewrite the manifest entry."""
    from mirzoo.fileio import atomic_file

    run = Path(args.run)
    state = json.loads((run / "state.json").read_text())
    which = args.weights  # argparse's choices: best or last
    if which == "last":
        # the end of the run (of an annealed schedule, say) when a measure beyond the crops' score chose it
        if state["epoch"] < 1:
            raise SystemExit(f"{run}: the run has no trained epoch; nothing to ship")
        source, chosen, weights_file = last_epoch_label(state), state["epoch"] - 1, run / "last.weights.h5"
    else:
        source, chosen, weights_file = state.get("best_source", "epoch"), state["best_epoch"], run / "best.weights.h5"
        if source == "init" or chosen < 0:
            raise SystemExit(f"{run}: no epoch scored above the run's initial weights on the validation crops; nothing to ship")
    root = Path(args.root) if getattr(args, "root", "") else Path(__file__).resolve().parent.parent
    manifest_paths = [root / "weights_manifest.json", root / "mirzoo" / "weights_manifest.json"]
    manifest = json.loads(manifest_paths[0].read_text())
    entry = manifest["models"][MODEL]
    target = root / "mirzoo" / "weights" / f"{MODEL}.weights.h5"
    data = weights_file.read_bytes()
    frame_heads = state["model_config"].get("frame_heads") or {}
    # the head's record stays true when the weights it reads are those it was fitted on (the package's now)
    head_record = (entry.get("training") or {}).get(PITCH_CLASS_HEAD)
    keep_head_record = bool(
        head_record and PITCH_CLASS_HEAD in frame_heads and PITCH_CLASS_HEAD in (entry["config"].get("frame_heads") or {})
        and target.is_file() and pitch_class_head_unchanged(entry, state["model_config"], len(state["vocabulary"]),
                                                            target, weights_file))
    with atomic_file(target) as tmp:
        Path(tmp).write_bytes(data)
    # a weightless derived output (the `tonal` layer, mirzoo.nn.tcn.add_tonal) is the entry's choice,
    # not the run's: a run started before the entry had it keeps it
    derived = {k: entry["config"][k] for k in DERIVED_CONFIG_KEYS if k in entry["config"]}
    entry["config"] = dict(state["model_config"], **derived)
    entry["layers"]["tags"] = len(state["vocabulary"])
    describe_derived_heads(entry)
    if PITCH_CLASS_HEAD not in frame_heads:  # a run without the head: the entry must not promise it
        drop_pitch_class_head(entry)
    elif not keep_head_record:  # trained on with the rest: fitted on another frame vector
        log.warning("%s carries a %s head fitted on the initial weights' frame vector: run fit-pitch-classes "
                    "and then fit-key --weights shipped --out manifest", run, PITCH_CLASS_HEAD)
    entry["head"]["labels"] = state["vocabulary"]
    entry["weights"] = {"kind": "file", "file": target.name, "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data)}
    entry["pretrained"] = True
    clip_key = run / "clip_key.json"
    entry.pop("clip_key", None)  # fitted on other weights
    if entry.pop("downbeat_model", None) is not None:
        log.warning("the entry's downbeat_model was fitted on the weights this run replaces: dropped; run "
                    "fit-downbeats --out manifest after shipping")
    if drop_bar_model(entry):
        log.warning("the entry's bar_model (and its metrical layer) was fitted on the weights this run replaces: "
                    "dropped; run fit-bars --out manifest after shipping")
    if entry.pop("clip_tags", None) is not None:  # it reads trunk layers the run retrained
        entry["training"].pop("clip_tags", None)
        log.warning("the entry's clip_tags record was fitted on the layers of the weights this run replaces: dropped "
                    "(tag() reads the tags head's frame mean until then); run fit-clip-tags --out manifest after shipping")
    if clip_key.is_file():
        record = json.loads(clip_key.read_text())
        if record.get("weights_sha256") != entry["weights"]["sha256"]:
            raise SystemExit(f"{clip_key} was fitted on other weights than {weights_file}: rerun fit-key")
        entry["clip_key"] = record
    best = state["history"][chosen]
    if source.startswith("average"):
        best = best["average"]
    hours = state.get("data_hours") or {}
    train_hours = round(sum(v for k, v in hours.items() if k.endswith(" train")), 2) or "not recorded"
    valid_crops = state.get("valid_crops", "the")
    chosen_how = (f"every epoch scored on {valid_crops} fixed crops of the valid split and the run's last epoch shipped "
                  "(ship --weights last)" if which == "last" else
                  f"the best epoch chosen on {valid_crops} fixed crops of the valid split")
    entry["training"] = {
        "data": f"corpus version 2 (music21 scores rendered with FluidSynth and {describe_corpus_sources(state.get('data_sources'))}, "
                f"training/README.md): trained on the train split, {train_hours} h; {chosen_how} (hours in the cache per corpus and split: "
                f"{state.get('data_hours', 'not recorded')}; the test split is never used); score targets: beats, "
                "downbeats, 24 keys, 109 chords, 12 meters, tempo, clip tags",
        "command": "python -m training.musical cache --corpus CORPUS --out CACHE && python -m training.musical train "
                   "--cache CACHE --config training/configs/tcn-music.json --max-minutes M [--resume] [--anneal]",
        "epochs": state["epoch"], "best_epoch": chosen, "best_weights": source,
        "train_minutes": round(state["minutes"], 1), "hardware": state.get("hardware"),
        "valid": {k: round(v, 4) for k, v in best.items() if k.endswith(("_acc", "_f1", "_mirex"))},
    }
    init = state.get("init")
    if init:
        # a fine-tuning run: its lineage, so that the card counts all the training behind the weights
        before = init.get("training") or {}
        entry["training"]["init"] = {"sha256": init["sha256"], "epochs": before.get("epochs"),
                                     "train_minutes": before.get("train_minutes"), "hardware": before.get("hardware")}
        # everything behind the initial weights (their own lineage when they were a fine-tune too)
        behind = before.get("train_minutes_in_all", before.get("train_minutes"))
        if behind is not None:
            entry["training"]["train_minutes_in_all"] = round(behind + state["minutes"], 1)
    if state.get("init"):
        # the schedule flags as the run recorded them (runs before session 20 did not: their recipe then)
        schedule = state.get("schedule", {"anneal": True, "average_from": 0.5})
        flags = " --anneal" * bool(schedule.get("anneal")) + (
            f" --average-from {schedule['average_from']:g}" if schedule.get("average_from") is not None else "")
        entry["training"]["command"] = (
            "python -m training.musical cache --corpus CORPUS --out CACHE && python -m training.musical train "
            f"--cache CACHE --config {config_file_of(state.get('config'), 'training/configs/tcn-music-finetune.json')} "
            f"--init shipped{flags} --max-minutes M")
    shipped_run = "RUN"
    if source.startswith("interpolation"):
        alpha = best["interpolation"]["alpha"]
        entry["training"]["command"] += (f" && python -m training.musical interpolate --run RUN --alpha {alpha:g} "
                                         "--cache CACHE --out RUN2"
                                         + " --weights last" * (best["interpolation"].get("run_weights") == "last"))
        shipped_run = "RUN2"
    if "clip_key" in entry:  # fitted on the run's weights before shipping
        entry["training"]["command"] += (" && python -m training.musical fit-key --corpus CORPUS --weights "
                                         f"{shipped_run}/{weights_file.name}")
    if state.get("init"):
        entry["training"]["command"] += f" && python -m training.musical ship --run {shipped_run}" + (
            " --weights last" * (which == "last"))
    if keep_head_record:  # frozen below the head: the package's fit still describes it
        entry["training"][PITCH_CLASS_HEAD] = head_record
    if args.notes:
        entry["training"]["notes"] = args.notes
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    for p in manifest_paths:
        with atomic_file(p) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")


def config_file_of(cfg, default: str) -> str:
    """The file under ``training/configs/`` whose settings are ``cfg`` (a run's ``state.json`` keeps the
    settings, not the file name), as a path from the repository root; ``default`` if none matches."""
    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "training" / "configs").glob("*.json")):
        try:
            if json.loads(path.read_text(encoding="utf-8")) == cfg:
                return path.relative_to(root).as_posix()
        except (OSError, ValueError):
            continue
    return default


#: commands that run the network on whole clips of many lengths (see :func:`onednn_off_for_fits`)
VARIABLE_LENGTH_COMMANDS = ("fit-key", "fit-pitch-classes", "fit-downbeats", "fit-tags", "fit-clip-tags", "fit-bars")


def onednn_off_for_fits(cmd: str, environ, modules) -> bool:
    """Set ``TF_ENABLE_ONEDNN_OPTS=0`` in ``environ`` for :data:`VARIABLE_LENGTH_COMMANDS` unless it is
    set or TensorFlow is already imported (``modules``; it reads the variable once).  TensorFlow's oneDNN
    kernels keep about 130 MB per input shape, and every corpus clip is shorter than one inference
    window, so of a length of its own: with them a fit over 1200 clips passed 16 GB; without, ~1.3 GB
    and faster (benchmarks/README, session 16).  Since the constant-Q front-end runs over blocks of
    samples a shape costs about 6 MB (session 17), still ~7 GB over 1200 lengths, so this stays.
    Returns whether it set the variable."""
    if cmd not in VARIABLE_LENGTH_COMMANDS or "tensorflow" in modules or "TF_ENABLE_ONEDNN_OPTS" in environ:
        return False
    environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.musical", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="front-end features and score targets of corpus clips")
    c.add_argument("--corpus", action="append", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--shard-clips", type=int, default=200)
    c.add_argument("--limit", type=int, default=0)
    c.add_argument("--splits", default="", help="comma-separated splits to cache (default: all)")
    t = sub.add_parser("train", help="multi-task training on a feature cache")
    t.add_argument("--cache", required=True)
    t.add_argument("--config", default="training/configs/tcn-music.json")
    t.add_argument("--out", default="runs/tcn-music")
    t.add_argument("--max-minutes", type=float, default=60)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--anneal", action="store_true",
                   help="cosine-decay the learning rate over this run's --max-minutes (for a final fixed-budget stretch)")
    t.add_argument("--init", default=None,
                   help="start a new run from 'shipped' (the package's weights and tag vocabulary) or a weights file")
    t.add_argument("--average-from", type=float, default=None, metavar="FRACTION",
                   help="average the weights of every epoch after this fraction of --max-minutes (0..1)")
    k = sub.add_parser("fit-key", help="fit the clip key (key and chord heads together) on a corpus's valid clips")
    k.add_argument("--corpus", action="append", required=True,
                   help="a version-2 corpus folder (its --split clips are used); repeat for several renders")
    k.add_argument("--split", default="valid")
    k.add_argument("--weights", default="shipped", help="'shipped' or a run's weights file (its state.json beside it)")
    k.add_argument("--out", default=None,
                   help="JSON record (default: clip_key.json beside a run's weights), or 'manifest' (shipped weights only)")
    k.add_argument("--profile-corpus", action="append", default=[],
                   help="fit the 'profiles' form instead: learnt pitch-class key profiles on this corpus's train "
                        "split (repeat for several renders), blended with the key head on the --corpus clips")
    k.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    pc = sub.add_parser("fit-pitch-classes",
                        help="add a pitch-class (chroma) head to the shipped weights, fitted on the frozen frame vector")
    pc.add_argument("--corpus", action="append", required=True, help="a version-2 corpus folder; repeat for several renders")
    pc.add_argument("--split", default="train")
    pc.add_argument("--clips", type=int, default=400, help="clips drawn per corpus (seed 0; 0: all)")
    pc.add_argument("--step", type=int, default=4, help="keep every STEP-th frame")
    pc.add_argument("--l2", type=float, default=1e-4)
    pc.add_argument("--valid-split", default="valid", help="split scored for the record ('' to skip)")
    pc.add_argument("--root", default="", help=argparse.SUPPRESS)  # another checkout's package (tests)
    tg = sub.add_parser("fit-tags", help="refit the shipped weights' tags head on frozen layers (conv3, frame, embedding)")
    tg.add_argument("--corpus", action="append", required=True, help="a version-2 corpus folder; repeat for several renders")
    tg.add_argument("--split", default="train")
    tg.add_argument("--clips", type=int, default=1000, help="clips drawn per corpus (seed 0; 0: all)")
    tg.add_argument("--step", type=int, default=25, help="keep every STEP-th frame")
    tg.add_argument("--l2", type=float, default=1e-3)
    tg.add_argument("--sources", nargs="+", default=list(TAG_SOURCES), help="layers the head reads, concatenated")
    tg.add_argument("--valid-split", default="valid", help="split the refit must be better on (clip ROC-AUC)")
    tg.add_argument("--root", default="", help=argparse.SUPPRESS)  # another checkout's package (tests)
    ct = sub.add_parser("fit-clip-tags", help="fit the shipped weights' clip-level tags (clip_tags record) on pooled frozen layers")
    ct.add_argument("--corpus", action="append", required=True, help="a version-2 corpus folder; repeat for several renders")
    ct.add_argument("--split", default="train")
    ct.add_argument("--clips", type=int, default=CLIP_TAG_CLIPS, help="clips drawn per corpus (seed 0; 0: all)")
    ct.add_argument("--valid-split", default="valid", help="split the L2 penalty is chosen on and the record must be better on")
    ct.add_argument("--valid-clips", type=int, default=0, help="valid clips drawn per corpus (seed 1; 0: all)")
    ct.add_argument("--sources", nargs="+", default=list(CLIP_TAG_SOURCES), help="layers (or heads) the record reads, concatenated")
    ct.add_argument("--pool", choices=("mean", "mean+std", "mean+std+max"), default=CLIP_TAG_POOL,
                    help="statistics of the clip's frames")
    ct.add_argument("--l2", type=float, nargs="+", default=list(CLIP_TAG_L2), help="L2 penalties to choose between")
    ct.add_argument("--out", default="manifest", help="'manifest' (the package's entry, both copies) or a JSON file")
    ct.add_argument("--root", default="", help=argparse.SUPPRESS)  # another checkout's package (tests)
    db = sub.add_parser("fit-downbeats",
                        help="fit the joint bar-length and downbeat-phase scorer of the shipped weights on corpus clips")
    db.add_argument("--corpus", action="append", required=True, help="a version-2 corpus folder; repeat for several renders")
    db.add_argument("--split", default="train", help="clips the scorer is fitted on")
    db.add_argument("--valid-split", default="valid", help="clips its size and penalty are chosen on")
    db.add_argument("--out", required=True, help="JSON record, or 'manifest' (the package's entry, both copies)")
    db.add_argument("--seed", type=int, default=0)
    db.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    db.add_argument("--root", default="", help=argparse.SUPPRESS)  # another checkout's package (tests)
    br = sub.add_parser("fit-bars", help="fit the shipped weights' beat-synchronous bar model (bar length and downbeat "
                                         "phase) on corpus clips")
    br.add_argument("--corpus", action="append", required=True, help="a version-2 corpus folder; repeat for several renders")
    br.add_argument("--split", default="train", help="clips the network is fitted on")
    br.add_argument("--every", type=int, default=3, help="fit on every n-th clip of --split (its features are the cost)")
    br.add_argument("--valid-split", default="valid", help="clips it is scored on (written only if better there)")
    br.add_argument("--sources", nargs="+", default=list(BAR_SOURCES),
                    help="'beat_features' and the layers or heads whose beat-interval means it reads")
    br.add_argument("--hidden", type=int, default=64)
    br.add_argument("--units", type=int, default=32, help="GRU units in each direction")
    br.add_argument("--dropout", type=float, default=0.2)
    br.add_argument("--epochs", type=int, default=40)
    br.add_argument("--patience", type=int, default=6)
    br.add_argument("--out", required=True, help="JSON record, or 'manifest' (the package's entry, both copies)")
    br.add_argument("--seed", type=int, default=0)
    br.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    br.add_argument("--root", default="", help=argparse.SUPPRESS)  # another checkout's package (tests)
    w = sub.add_parser("interpolate", help="a run's weights interpolated with its initial weights (WiSE-FT)")
    w.add_argument("--run", required=True, help="a run started with --init")
    w.add_argument("--alpha", type=float, required=True, help="weight of the run's weights (--weights; 0..1); the rest is the initial weights'")
    w.add_argument("--cache", required=True, help="the feature cache the run was validated on")
    w.add_argument("--out", required=True, help="a new run folder")
    w.add_argument("--weights", choices=("best", "last"), default="best",
                   help="the run's weights to interpolate: its best by the crops' score, or its last epoch")
    s = sub.add_parser("ship", help="ship a run's best weights into the package")
    s.add_argument("--run", required=True)
    s.add_argument("--notes", default="", help="how the run went (stints, schedule), for the model card")
    s.add_argument("--weights", choices=("best", "last"), default="best",
                   help="the epoch the validation crops chose (best.weights.h5) or the run's last (last.weights.h5)")
    s.add_argument("--root", default="", help=argparse.SUPPRESS)  # another checkout's package (tests)
    args = parser.parse_args(argv)
    if getattr(args, "average_from", None) is not None and not 0.0 <= args.average_from < 1.0:
        parser.error(f"--average-from {args.average_from}: expected a fraction of the time budget in [0, 1)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    onednn_off_for_fits(args.cmd, os.environ, sys.modules)
    {"cache": cache, "train": train, "fit-key": fit_key, "fit-pitch-classes": fit_pitch_classes, "fit-downbeats": fit_downbeats, "fit-bars": fit_bars, "fit-tags": fit_tags, "fit-clip-tags": fit_clip_tags,
     "interpolate": interpolate, "ship": ship}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
