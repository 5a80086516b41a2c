"""Sharded training data: write a corpus split as TFRecord shards, stream it with ``tf.data``.

    python -m training.shards write --corpus corpus/ --out shards/train          # from the int16 cache
    python -m training.shards info shards/train

``python -m training.train ... --data shards --shards shards/train`` reads them (and writes them
first when the folder holds no index).

Layout of a shard folder::

    index.json                          written last: marks the folder complete
    shard-00000-of-00008.tfrecord ...   one ``tf.train.Example`` per clip

Each record holds the clip's audio as int16 (``audio``, little-endian raw bytes,
``n_samples``), its tags as indices into the index's ``vocabulary`` (``tag_ids``; the
vocabulary is every tag of the split, so any model vocabulary chosen from the split maps onto
it) and, where the corpus has them, the frame-level pitch-class targets (``chroma``, uint8
``[n_frames, 12]`` raw bytes, ``n_frames``).  Clips are spread over the shards in a seeded
random order, so every shard mixes collections.  Every file is written under a temporary name
and renamed into place; ``index.json`` (shard list, clip/sample counts, sample rate, hop,
vocabulary with counts, clip ids in metadata order) comes last.

:func:`read_shards` streams the shards as an endless, seeded ``tf.data`` pipeline: shard order
shuffled per pass, records interleaved across shards, a clip shuffle buffer, random hop-aligned
crops (on average ``crop_rate * n_samples / length`` per clip and pass, so every second of
audio is equally likely, as with the in-memory ``PatchSampler``), a crop shuffle buffer,
batching, the waveform augmentation of ``training.train.augment`` as TF ops
(:func:`augment_tf`), prefetch.  It yields exactly what ``training.train`` feeds the model:
``(x [B, length] float32, y)`` with ``y`` the clip tags ``[B, n_tags]``, the pitch classes
``[B, frames, 12]``, or ``{"pitch_classes": [B, frames, 12], "tags": [B, frames, n_tags]}``.

Randomness comes from ``tf.data.Dataset.random`` and stateless random ops seeded from
``seed``: the same seed gives the same stream, and each new iterator over the dataset (each
``model.fit`` call) continues with fresh draws rather than repeating the first pass.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np

from mirzoo.fileio import write_json_atomic
from training.data import EQ_DEFAULTS, EQ_LOWEST, audio_cache, read_metadata

log = logging.getLogger("mirzoo.training")

FORMAT = "mirzoo-shards"
VERSION = 1
INDEX = "index.json"


# -- writing ------------------------------------------------------------------------------------


def _clip_tags(row: dict) -> list[str]:
    return [t for t in row["tags"].split(";") if t]


def read_index(directory: os.PathLike | str) -> dict:
    """The ``index.json`` of a shard folder (``FileNotFoundError`` when there is none)."""
    index = json.loads((Path(directory) / INDEX).read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{directory}/{INDEX} is not a {FORMAT} v{VERSION} index")
    return index


def write_shards(out: os.PathLike | str, rows: list[dict], audio: np.ndarray, offsets: np.ndarray, sr: int, *,
                 corpus: os.PathLike | str | None = None, split: str = "train", num_shards: int | None = None,
                 shard_mb: float = 128.0, seed: int = 0) -> dict:
    """Write the clips ``rows`` (audio: the int16 array and offsets of ``training.train.audio_cache``)
    as TFRecord shards into ``out`` and return the index.

    ``corpus`` is the corpus folder the frame targets (``targets`` column) are read from; without it
    or without targets the shards hold audio and tags only.  ``num_shards`` defaults to one per
    ``shard_mb`` of audio, at least ``min(8, clips)``.
    """
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first


    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    if n == 0:
        raise ValueError("no clips to write")
    if len(offsets) != n + 1:
        raise ValueError(f"{len(offsets) - 1} cached clips for {n} rows")
    durations = np.diff(np.asarray(offsets, dtype=np.int64))
    vocab_counts: dict[str, int] = {}
    for r in rows:
        for t in _clip_tags(r):
            vocab_counts[t] = vocab_counts.get(t, 0) + 1
    vocab = sorted(vocab_counts)
    pos = {t: i for i, t in enumerate(vocab)}
    frame_targets = corpus is not None and all(r.get("targets") for r in rows)
    hops = {int(r["hop"]) for r in rows if r.get("hop")}
    if num_shards is None:
        num_shards = max(math.ceil(2 * int(durations.sum()) / (shard_mb * 2**20)), min(8, n))
    num_shards = max(1, min(int(num_shards), n))
    order = np.random.default_rng(seed).permutation(n)
    groups = np.array_split(order, num_shards)

    shards = []
    for s, group in enumerate(groups):
        name = f"shard-{s:05d}-of-{num_shards:05d}.tfrecord"
        tmp = out / f".{name}.tmp"
        samples = 0
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for c in sorted(int(i) for i in group):  # metadata order inside a shard
                r = rows[c]
                wav = np.asarray(audio[offsets[c] : offsets[c + 1]], dtype="<i2")
                feature = {
                    "clip_id": _bytes(r["clip_id"].encode()),
                    "audio": _bytes(wav.tobytes()),
                    "n_samples": _ints([wav.size]),
                    "tag_ids": _ints([pos[t] for t in _clip_tags(r)]),
                }
                if frame_targets:
                    chroma = np.load(Path(corpus) / r["targets"])["chroma"].astype(np.uint8)
                    if chroma.ndim != 2 or chroma.shape[1] != 12:
                        raise ValueError(f"{r['targets']}: chroma of shape {chroma.shape}, expected [T, 12]")
                    feature["chroma"] = _bytes(np.ascontiguousarray(chroma).tobytes())
                    feature["n_frames"] = _ints([chroma.shape[0]])
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
                samples += wav.size
        os.replace(tmp, out / name)
        shards.append({"file": name, "clips": len(group), "samples": int(samples),
                       "bytes": (out / name).stat().st_size})

    index = {
        "format": FORMAT,
        "version": VERSION,
        "split": split,
        "corpus": str(Path(corpus).resolve()) if corpus is not None else None,
        "sample_rate": int(sr),
        "hop": hops.pop() if len(hops) == 1 else None,
        "frame_targets": bool(frame_targets),
        "clips": n,
        "samples": int(durations.sum()),
        "hours": round(float(durations.sum()) / sr / 3600, 4),
        "seed": int(seed),
        "shards": shards,
        "vocabulary": vocab,
        "tag_counts": {t: vocab_counts[t] for t in vocab},
        "clip_ids": [r["clip_id"] for r in rows],
    }
    write_json_atomic(out / INDEX, index)
    keep = {s["file"] for s in shards}
    for stale in out.glob("shard-*.tfrecord"):
        if stale.name not in keep:
            stale.unlink()
    log.info("wrote %d clips (%.2f h) into %d shards in %s", n, index["hours"], num_shards, out)
    return index


def write_split(corpus: os.PathLike | str, out: os.PathLike | str, *, split: str = "train", sr: int = 16000,
                cache: os.PathLike | str | None = None, **kwargs) -> dict:
    """Decode a corpus split through the int16 audio cache of ``training.train`` (reused when it is
    there: ``<cache>/<corpus name>/<split>.npy``) and write it as shards."""

    corpus = Path(corpus)
    rows = read_metadata(corpus, split)
    if not rows:
        raise SystemExit(f"no {split!r} clips in {corpus}/metadata.csv")
    cache_dir = Path(cache or "cache") / corpus.name
    audio, offsets = audio_cache(corpus, rows, cache_dir, split, sr)
    return write_shards(out, rows, audio, offsets, sr, corpus=corpus, split=split, **kwargs)


def check_index(index: dict, directory, *, clip_ids: list[str] | None = None, sr: int | None = None,
                hop: int | None = None, vocab: list[str] | None = None) -> None:
    """Refuse shards that do not fit the run (other clips, sample rate, frame hop or tags)."""
    fix = f"rewrite them (python -m training.shards write ... --out {directory} --force, or delete the folder)"
    if clip_ids is not None and index["clip_ids"] != list(clip_ids):
        raise SystemExit(f"the shards in {directory} hold other clips ({index['clips']}) than the training split "
                         f"({len(clip_ids)}) of this corpus: {fix}")
    if sr is not None and index["sample_rate"] != sr:
        raise SystemExit(f"the shards in {directory} are at {index['sample_rate']} Hz, the model wants {sr} Hz: {fix}")
    if hop is not None:
        if not index["frame_targets"]:
            raise SystemExit(f"the shards in {directory} hold no frame targets: {fix}")
        if index["hop"] != hop:
            raise SystemExit(f"the frame targets in {directory} have a hop of {index['hop']} samples, "
                             f"the model {hop}: {fix}")
    if vocab is not None:
        missing = sorted(set(vocab) - set(index["vocabulary"]))
        if missing:
            raise SystemExit(f"tags {missing} are not in the shards' vocabulary ({directory}): {fix}")


def _bytes(value: bytes):
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values):
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


# -- reading ------------------------------------------------------------------------------------


def _features(frames: bool):
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    spec = {
        "clip_id": tf.io.FixedLenFeature([], tf.string),
        "audio": tf.io.FixedLenFeature([], tf.string),
        "n_samples": tf.io.FixedLenFeature([], tf.int64),
        "tag_ids": tf.io.VarLenFeature(tf.int64),
    }
    if frames:
        spec["chroma"] = tf.io.FixedLenFeature([], tf.string)
        spec["n_frames"] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def _decode(record, frames: bool):
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    ex = tf.io.parse_single_example(record, _features(frames))
    out = {
        "clip_id": ex["clip_id"],
        "audio": tf.io.decode_raw(ex["audio"], tf.int16, little_endian=True),
        "tag_ids": tf.sparse.to_dense(ex["tag_ids"]),
    }
    if frames:
        out["chroma"] = tf.reshape(tf.io.decode_raw(ex["chroma"], tf.uint8), [-1, 12])
    return out


def iterate_clips(directory: os.PathLike | str, frames: bool | None = None):
    """Every clip of a shard folder in shard order, as numpy: ``clip_id``, ``audio`` (int16),
    ``tags`` (strings) and, with frame targets, ``chroma`` (uint8 [T, 12]).  For checks and tools."""
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    directory = Path(directory)
    index = read_index(directory)
    frames = index["frame_targets"] if frames is None else frames
    vocab = index["vocabulary"]
    for shard in index["shards"]:
        for record in tf.data.TFRecordDataset(str(directory / shard["file"])):
            clip = {k: v.numpy() for k, v in _decode(record, frames).items()}
            clip["clip_id"] = clip["clip_id"].decode()
            clip["tags"] = [vocab[i] for i in clip.pop("tag_ids")]
            yield clip


def augment_tf(x, seed, cfg: dict | None):
    """``training.train.augment`` as TF ops on a batch ``x`` [B, L] float32: random gain
    (±``gain_db``), additive Gaussian noise at a random SNR (``snr_db`` range) on a
    ``noise_prob`` share of the examples, random polarity (``polarity``), and a random equaliser
    on an ``eq_prob`` share (``eq_db``, ``eq_points``; off by default); clipped to [-1, 1].
    ``seed``: an int64 scalar (stateless random ops; same seed, same result)."""
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    cfg = cfg or {}
    seed = tf.cast(seed, tf.int64)

    def key(i):
        return tf.stack([seed, tf.constant(i, tf.int64)])

    b, n = tf.shape(x)[0], tf.shape(x)[1]
    g = float(cfg.get("gain_db", 6.0))
    x = x * tf.pow(10.0, tf.random.stateless_uniform([b, 1], key(1), -g, g) / 20.0)
    noise_prob = float(cfg.get("noise_prob", 0.3))
    if noise_prob > 0:
        lo, hi = (float(v) for v in cfg.get("snr_db", [10.0, 40.0]))
        noisy = tf.random.stateless_uniform([b], key(2)) < noise_prob
        snr = tf.random.stateless_uniform([b], key(3), lo, hi)
        power = tf.reduce_mean(x * x, axis=1) + 1e-10
        noise = tf.random.stateless_normal([b, n], key(4)) * tf.sqrt(power / tf.pow(10.0, snr / 10.0))[:, None]
        x = x + tf.where(noisy[:, None], noise, tf.zeros_like(noise))
    if cfg.get("polarity", True):
        x = x * tf.where(tf.random.stateless_uniform([b, 1], key(5)) < 0.5, -1.0, 1.0)
    eq_prob = float(cfg.get("eq_prob", 0.0))
    if eq_prob > 0:

        db = float(cfg.get("eq_db", EQ_DEFAULTS["eq_db"]))
        points = int(cfg.get("eq_points", EQ_DEFAULTS["eq_points"]))
        x = _random_eq_tf(x, tf.random.stateless_uniform([b], key(6)) < eq_prob,
                          tf.random.stateless_uniform([b, points], key(7), -db, db))
    return tf.clip_by_value(x, -1.0, 1.0)


def _random_eq_tf(x, on, gains_db):
    """``training.train.random_eq`` as TF ops: the rows of ``x`` [B, L] where ``on`` go through the
    zero-phase equaliser with ``gains_db`` [B, P] at the control points of ``train.eq_curve_db``."""
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first


    n = tf.shape(x)[1]
    spec = tf.signal.rfft(x)
    n_bins = tf.shape(spec)[1]
    p = tf.shape(gains_db)[1]
    f = tf.maximum(tf.range(n_bins, dtype=tf.float32) / tf.cast(tf.maximum(n_bins - 1, 1), tf.float32), EQ_LOWEST)
    pos = tf.math.log(f / EQ_LOWEST) / float(np.log(1 / EQ_LOWEST)) * tf.cast(p - 1, tf.float32)
    lo = tf.minimum(tf.cast(tf.floor(pos), tf.int32), p - 2)
    w = pos - tf.cast(lo, tf.float32)
    curve = tf.gather(gains_db, lo, axis=1) * (1 - w) + tf.gather(gains_db, lo + 1, axis=1) * w
    curve = tf.where(on[:, None], curve, tf.zeros_like(curve))
    y = tf.signal.irfft(spec * tf.cast(tf.pow(10.0, curve / 20.0), spec.dtype), fft_length=[n])
    return tf.where(on[:, None], y, x)


def read_shards(directory: os.PathLike | str, *, length: int, hop: int, batch_size: int, kind: str = "tags",
                vocab: list[str] | None = None, frame_head: str = "pitch_classes", seed: int = 0,
                augment: dict | None = None, shuffle_buffer: int = 1024, clip_buffer: int = 64,
                crop_rate: float = 1.0, cycle_length: int = 8, repeat: bool = True):
    """An endless ``tf.data.Dataset`` of training batches ``(x, y)`` streamed from a shard folder.

    ``kind="tags"``: ``y`` = clip tags over ``vocab`` ``[B, len(vocab)]``.  ``kind="frames"``:
    ``y`` = pitch classes ``[B, 1 + length // hop, 12]``, or with ``vocab`` the dict
    ``{frame_head: pitch classes, "tags": clip tags on every frame [B, frames, len(vocab)]}``.
    Crops of ``length`` samples start on multiples of ``hop`` (the frame hop for frame models);
    clips shorter than ``length`` are zero-padded, as are the targets.  ``augment``: the config of
    :func:`augment_tf` (``None``: no augmentation).  ``batch_size`` is the global batch.
    """
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    directory = Path(directory)
    index = read_index(directory)
    if kind not in ("tags", "frames"):
        raise ValueError(f"kind={kind!r} must be 'tags' or 'frames'")
    frames = kind == "frames"
    if kind == "tags" and not vocab:
        raise ValueError("kind='tags' needs the tag vocabulary")
    check_index(index, directory, hop=hop if frames else None, vocab=vocab)
    n_frames = 1 + length // hop
    n_vocab = len(vocab or [])
    # tag index in the shards -> position in the model vocabulary (-1: not a model tag)
    remap = np.full(max(len(index["vocabulary"]), 1), -1, np.int64)
    for j, t in enumerate(vocab or []):
        remap[index["vocabulary"].index(t)] = j
    remap = tf.constant(remap)
    files = [str(directory / s["file"]) for s in index["shards"]]

    def multi_hot(tag_ids):
        ids = tf.gather(remap, tag_ids)
        return tf.minimum(tf.reduce_sum(tf.one_hot(ids, n_vocab, dtype=tf.float32), axis=0), 1.0)

    def crops(clip, rnd):
        audio = clip["audio"]
        n = tf.cast(tf.shape(audio)[0], tf.int64)
        # stochastic rounding: on average crop_rate * n / length crops of this clip per pass
        expected = crop_rate * tf.cast(n, tf.float64) / length
        k = tf.cast(tf.floor(expected), tf.int64)
        k += tf.cast(tf.random.stateless_uniform([], tf.stack([rnd, tf.constant(0, tf.int64)]), dtype=tf.float64)
                     < expected - tf.floor(expected), tf.int64)
        positions = tf.maximum((n - length) // hop, 0) + 1
        starts = hop * tf.random.stateless_uniform([k], tf.stack([rnd, tf.constant(1, tf.int64)]), minval=0,
                                                   maxval=positions, dtype=tf.int64)
        padded = tf.pad(audio, [[0, length]])
        idx = starts[:, None] + tf.range(length, dtype=tf.int64)[None, :]
        x = tf.gather(padded, idx)  # int16 [k, length]; zero beyond the clip's end
        out = {"x": x}
        if frames:
            chroma = tf.pad(clip["chroma"], [[0, n_frames], [0, 0]])
            fidx = (starts // hop)[:, None] + tf.range(n_frames, dtype=tf.int64)[None, :]
            out["pc"] = tf.gather(chroma, fidx)  # uint8 [k, frames, 12]
        if n_vocab:
            out["tags"] = tf.repeat(multi_hot(clip["tag_ids"])[None], k, axis=0)  # [k, n_vocab]
        return out

    def finish(batch, rnd):
        x = tf.cast(batch["x"], tf.float32) / 32768.0
        if augment is not None:
            x = augment_tf(x, rnd, augment)
        if not frames:
            return x, batch["tags"]
        pc = tf.cast(batch["pc"], tf.float32)
        if not n_vocab:
            return x, pc
        tags = tf.repeat(batch["tags"][:, None, :], n_frames, axis=1)
        return x, {frame_head: pc, "tags": tags}

    ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda r: _decode(r, frames), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if clip_buffer > 1:
        ds = ds.shuffle(clip_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    rand = tf.data.Dataset.random(seed=seed + 2, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rand)).map(crops, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch()
    if shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed + 3, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    rand = tf.data.Dataset.random(seed=seed + 4, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rand)).map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


# -- command line -------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.shards", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write a corpus split as TFRecord shards")
    w.add_argument("--corpus", required=True, help="corpus folder (metadata.csv)")
    w.add_argument("--out", required=True, help="shard folder")
    w.add_argument("--split", default="train")
    w.add_argument("--sr", type=int, default=16000, help="sample rate of the models (16000 for the zoo)")
    w.add_argument("--cache", default="cache", help="int16 audio cache folder (as training.train's --cache)")
    w.add_argument("--num-shards", type=int, help="default: one per --shard-mb of audio, at least 8")
    w.add_argument("--shard-mb", type=float, default=128.0)
    w.add_argument("--seed", type=int, default=0, help="seed of the clip-to-shard assignment")
    w.add_argument("--force", action="store_true", help="rewrite shards that are already complete")
    i = sub.add_parser("info", help="summary of a shard folder")
    i.add_argument("directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.command == "info":
        index = read_index(args.directory)
        print(json.dumps({k: v for k, v in index.items() if k not in ("clip_ids", "tag_counts")}, indent=2))
        return 0
    if (Path(args.out) / INDEX).exists() and not args.force:
        raise SystemExit(f"{args.out} already holds shards ({INDEX}); --force rewrites them")
    write_split(args.corpus, args.out, split=args.split, sr=args.sr, cache=args.cache, num_shards=args.num_shards,
                shard_mb=args.shard_mb, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
