#!/usr/bin/env python
"""Folder-scale extraction benchmark: files per minute, ``mirzoo.batch`` against a plain loop.

Usage::

    python benchmarks/folder_extract.py                     # 200 clips x 10 s, cnn-tagging, 2 repeats
    python benchmarks/folder_extract.py --quick             # 50 clips, 1 repeat
    python benchmarks/folder_extract.py --model random-cnn --clips 100 --pool mean

The folder: ``--clips`` seeded synthetic clips of ``--seconds`` each (decaying harmonic
tones plus noise), written as 44.1 kHz mono 16-bit FLAC, like a music collection, so
decoding includes FLAC decoding and resampling to the model's 16 kHz.  They are cached
under ``/tmp/mirzoo-bench/`` (override with ``MIRZOO_BENCH_CACHE``).

Methods (each writes a ``--pool``-ed Parquet file of the whole folder):

``loop``
    ``[m.extract(p, pool=...) for p in paths]`` then one ``write_results``: what
    ``mirzoo extract`` did before the batch engine (decode, then model, file by file).
``engine-w0``
    :func:`mirzoo.batch.extract_files` with ``workers=0``: patches batched across
    files, decoding in the main process.
``engine-auto``
    The same with the default worker count (``min(4, cores - 1)``, at least 1):
    decoding in spawned processes while the model runs.
``engine-w2``
    Two decoder processes.

Before timing, the model is built and every batch shape is traced.  Methods are run
in interleaved order ``--repeats`` times; the figure is the median.  A decode-only pass
(``load_audio`` over the folder, one process) shows how much of the time is decoding.
Results go to ``benchmarks/results/folder_extract-<os>-<arch>-<N>cpu-py<X.Y>-<backend>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)

from benchmarks.throughput import environment  # noqa: E402,F401  (one environment record for all benchmarks)

FILE_SR = 44100
METHODS = ("loop", "engine-w0", "engine-auto", "engine-w2")


def synth(seconds: float, seed: int, sr: int = FILE_SR) -> np.ndarray:
    """A seeded music-like clip: a few decaying harmonic notes at random onsets, plus noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    y = 0.005 * rng.standard_normal(n)
    for _ in range(int(rng.integers(4, 12))):
        f0 = 55.0 * 2 ** (rng.integers(0, 48) / 12)
        onset = rng.uniform(0, seconds * 0.9)
        env = np.where(t >= onset, np.exp(-rng.uniform(0.5, 3.0) * (t - onset)), 0.0)
        for h in range(1, 5):
            if f0 * h < sr / 2:
                y += env * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def make_folder(clips: int, seconds: float) -> Path:
    import soundfile as sf

    cache = Path(os.environ.get("MIRZOO_BENCH_CACHE", "/tmp/mirzoo-bench"))
    folder = cache / f"folder-{clips}x{seconds:g}s-{FILE_SR}"
    stamp = folder / ".complete"
    if stamp.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        sub = folder / f"artist{i % 10:02d}"
        sub.mkdir(exist_ok=True)
        sf.write(sub / f"clip{i:04d}.flac", synth(seconds, seed=1000 + i), FILE_SR, subtype="PCM_16")
    stamp.write_text("ok\n")
    return folder


def warm_up(model, path: str, pool, batch_size: int) -> None:
    """Build the model and trace every batch shape the extraction methods use."""
    for size in (1, 2, 4, 8, 16):
        if size <= batch_size:
            model.extract([np.zeros(model.sample_rate, np.float32)] * size, sr=model.sample_rate, batch_size=size)
    model.extract(path, pool=pool, batch_size=batch_size)


def interleaved_runs(methods: list, repeats: int, run, report) -> dict:
    """``run(method)`` for every method and repeat, the order reversed every other repeat so drift
    in machine load hits all methods alike; each result records the load average before it and is
    passed to ``report(repeat, method, result)``.  Returns ``{method: [result, ...]}``."""
    runs: dict = {m: [] for m in methods}
    for r in range(repeats):
        for method in methods if r % 2 == 0 else list(reversed(methods)):
            load_before = _load()
            result = run(method)
            result["loadavg_before"] = load_before
            runs[method].append(result)
            report(r, method, result)
    return runs


def _load() -> list:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_method(method: str, model, paths: list, pool: str, batch_size: int, out_dir: Path) -> dict:
    from mirzoo.batch import extract_files, write_results

    out = out_dir / f"{method}.parquet"
    if out.exists():
        out.unlink()
    start = time.perf_counter()
    if method == "loop":
        results = [(p, model.extract(p, pool=pool, batch_size=batch_size)) for p in paths]
        write_results(out, results, model=model.name, layer=model.default_layer, pool=pool)
        written, failed = len(results), 0
    else:
        workers = {"engine-w0": 0, "engine-auto": None, "engine-w2": 2}[method]
        report = extract_files(model, paths, out, pool=pool, batch_size=batch_size, workers=workers)
        written, failed = report.written, len(report.failed)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "files": written, "failed": failed, "files_per_minute": 60.0 * written / seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn-tagging")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pool", default="mean+std")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--quick", action="store_true", help="50 clips, 1 repeat")
    parser.add_argument("--output", default=None, help="result JSON (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.repeats = 50, 1

    import keras

    import mirzoo
    from mirzoo.audio import load_audio
    from mirzoo.batch import default_workers, find_audio_files

    env = environment(keras.backend.backend())
    print(json.dumps(env))
    folder = make_folder(args.clips, args.seconds)
    paths = find_audio_files([folder])
    model = mirzoo.load(args.model)
    print(f"{len(paths)} files of {args.seconds:g} s under {folder}; model {model.name}; "
          f"auto workers = {default_workers(len(paths))}")

    warm_up(model, paths[0], args.pool, args.batch_size)

    start = time.perf_counter()
    for p in paths:
        load_audio(p, model.sample_rate)
    decode_seconds = time.perf_counter() - start
    print(f"decode only (1 process): {decode_seconds:.1f} s = {60 * len(paths) / decode_seconds:.0f} files/min")

    with tempfile.TemporaryDirectory(prefix="mirzoo-folder-bench-") as tmp:
        runs = interleaved_runs(
            args.methods, args.repeats,
            lambda method: run_method(method, model, paths, args.pool, args.batch_size, Path(tmp)),
            lambda r, method, result: print(
                f"  repeat {r + 1} {method:12s} {result['seconds']:7.1f} s  "
                f"{result['files_per_minute']:7.1f} files/min  (load {result['loadavg_before']})"),
        )
    summary = {}
    loop_fpm = statistics.median(x["files_per_minute"] for x in runs["loop"]) if runs.get("loop") else None
    for method, rows in runs.items():
        fpm = statistics.median(x["files_per_minute"] for x in rows)
        summary[method] = {
            "files_per_minute": round(fpm, 1),
            "seconds": round(statistics.median(x["seconds"] for x in rows), 2),
            "speedup_vs_loop": round(fpm / loop_fpm, 3) if loop_fpm else None,
        }
    print(f"\n{'method':14s} {'files/min':>10s} {'s':>8s} {'vs loop':>8s}")
    for method, row in summary.items():
        print(f"{method:14s} {row['files_per_minute']:10.1f} {row['seconds']:8.1f} {row['speedup_vs_loop'] or 0:8.2f}")

    py = ".".join(env["python"].split(".")[:2])
    tag = f"{env['os']}-{env['arch']}-{env['cores']}cpu-py{py}-{env['backend']}"
    target = Path(args.output) if args.output else REPO / "benchmarks" / "results" / f"folder_extract-{tag}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "folder_extract",
        "environment": env,
        "config": {
            "model": model.name,
            "clips": len(paths),
            "clip_seconds": args.seconds,
            "file_format": f"FLAC 16-bit mono {FILE_SR} Hz (resampled to {model.sample_rate} Hz)",
            "pool": args.pool,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "patches_per_clip": model.plan.count(int(args.seconds * model.sample_rate))
            if model.output_kind == "clip" else None,
            "auto_workers": default_workers(len(paths)),
        },
        "decode_only_seconds": round(decode_seconds, 2),
        "summary": summary,
        "runs": runs,
        "unix_time": int(time.time()),
    }
    target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
