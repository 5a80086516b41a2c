#!/usr/bin/env python
"""Ray Data extraction against the single-process engine: files per minute, audio seconds per second.

Usage::

    python benchmarks/ray_extract.py                       # 200 clips x 10 s, cnn-tagging, 2 repeats
    python benchmarks/ray_extract.py --quick               # 50 clips, 1 repeat, no subprocess runs
    python benchmarks/ray_extract.py --data music/ --model random-cnn

The folder: the same seeded synthetic clips as ``folder_extract.py`` (``--clips`` x
``--seconds``, 44.1 kHz mono 16-bit FLAC, cached under ``/tmp/mirzoo-bench/``), or the
audio files under ``--data``.

Methods, in one process (each writes a ``--pool``-ed Parquet file of the whole folder):

``local``
    :func:`mirzoo.batch.extract_files` with a model loaded beforehand and the default
    decoder workers: what ``mirzoo extract`` does, minus its start-up.
``ray-1``, ``ray-2``
    ``read_audio`` -> ``extract(concurrency=1 or 2)`` -> ``write_parquet`` (a ``.parquet``
    file) on a local Ray instance started once beforehand (:func:`mirzoo.distributed.init`,
    all CPUs).  Every run starts its own actors, which import the backend and build the
    model: that start-up is part of the figure, as it is for a user.
``ray-overhead``
    ``ray-1`` on a single file: the fixed cost of a Ray job (actor start-up, model load,
    scheduling), which larger collections amortise.

Then, unless ``--no-cli``, the whole command line once each, in a fresh process (Python,
backend and Ray start-up included): ``mirzoo extract ... -o x.parquet`` with
``--engine local`` and ``--engine ray``.

Methods are run in interleaved order ``--repeats`` times; figures are medians.  Results go
to ``benchmarks/results/ray_extract-<os>-<arch>-<N>cpu-py<X.Y>-<backend>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from benchmarks.folder_extract import _load, environment, interleaved_runs, make_folder, warm_up  # noqa: E402

METHODS = ("local", "ray-1", "ray-2", "ray-overhead")


def durations(paths: list) -> float:
    import soundfile as sf

    total = 0.0
    for p in paths:
        info = sf.info(p)
        total += info.frames / info.samplerate
    return total


def run_method(method: str, model, paths: list, pool: str, batch_size: int, out_dir: Path) -> dict:
    from mirzoo.batch import extract_files

    out = out_dir / f"{method}.parquet"
    if out.exists():
        out.unlink()
    start = time.perf_counter()
    if method == "local":
        report = extract_files(model, paths, out, pool=pool, batch_size=batch_size)
    else:
        import mirzoo.distributed as md

        files = paths[:1] if method == "ray-overhead" else paths
        concurrency = 2 if method == "ray-2" else 1
        ds = md.read_audio(files)
        emb = md.extract(ds, model.name, pool=pool, batch_size=batch_size, concurrency=concurrency)
        report = md.write_parquet(emb, out, overwrite=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "files": report.written, "failed": len(report.failed)}


def run_cli(engine: str, model: str, folder: str, pool: str, batch_size: int, out_dir: Path) -> dict:
    out = out_dir / f"cli-{engine}.parquet"
    cmd = [sys.executable, "-m", "mirzoo", "extract", model, folder, "-o", str(out), "--pool", pool,
           "--batch-size", str(batch_size), "--engine", engine, "-q"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    import pyarrow.parquet as pq

    files = len(set(pq.read_table(out, columns=["path"]).column("path").to_pylist()))
    return {"seconds": seconds, "files": files, "failed": 0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn-tagging")
    parser.add_argument("--data", default=None, help="a folder of audio files instead of synthetic clips")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pool", default="mean+std")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--no-cli", action="store_true", help="skip the fresh-process command-line runs")
    parser.add_argument("--quick", action="store_true", help="50 clips, 1 repeat, no command-line runs")
    parser.add_argument("--output", default=None, help="result JSON (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.repeats, args.no_cli = 50, 1, True

    import keras
    import ray

    import mirzoo
    import mirzoo.distributed as md
    from mirzoo.batch import default_workers, find_audio_files

    env = environment(keras.backend.backend())
    env["ray"] = ray.__version__
    print(json.dumps(env))
    folder = Path(args.data) if args.data else make_folder(args.clips, args.seconds)
    paths = find_audio_files([folder])
    audio_seconds = durations(paths)
    model = mirzoo.load(args.model)
    print(f"{len(paths)} files, {audio_seconds:.0f} s of audio under {folder}; model {model.name}; "
          f"local engine's decoder workers = {default_workers(len(paths))}")

    start = time.perf_counter()
    resources = md.init()
    init_seconds = time.perf_counter() - start
    print(f"md.init() (local Ray, {resources.get('CPU', 0):g} CPUs): {init_seconds:.1f} s")
    # warm-up of the local engine: trace every batch shape it uses
    warm_up(model, paths[0], args.pool, args.batch_size)

    with tempfile.TemporaryDirectory(prefix="mirzoo-ray-bench-") as tmp:
        runs = interleaved_runs(
            args.methods, args.repeats,
            lambda method: run_method(method, model, paths, args.pool, args.batch_size, Path(tmp)),
            lambda r, method, result: print(
                f"  repeat {r + 1} {method:13s} {result['seconds']:7.1f} s  {result['files']} files  "
                f"(load {result['loadavg_before']})", flush=True),
        )
        ray.shutdown()
        cli: dict = {}
        if not args.no_cli:
            for engine in ("local", "ray"):
                load_before = _load()
                cli[f"cli-{engine}"] = dict(
                    run_cli(engine, args.model, str(folder), args.pool, args.batch_size, Path(tmp)),
                    loadavg_before=load_before,
                )
                print(f"  cli --engine {engine:5s} {cli[f'cli-{engine}']['seconds']:7.1f} s (load {load_before})",
                      flush=True)

    summary = {}
    local_fpm = None
    for method, rows in list(runs.items()) + [(k, [v]) for k, v in cli.items()]:
        seconds = statistics.median(x["seconds"] for x in rows)
        files = rows[0]["files"]
        audio = audio_seconds * files / len(paths)
        fpm = 60.0 * files / seconds
        if method == "local":
            local_fpm = fpm
        summary[method] = {
            "files": files,
            "seconds": round(seconds, 2),
            "files_per_minute": round(fpm, 1),
            "audio_seconds_per_second": round(audio / seconds, 1),
        }
    for method, row in summary.items():  # the one-file overhead run is no throughput figure
        row["vs_local"] = round(row["files_per_minute"] / local_fpm, 3) if local_fpm and method != "ray-overhead" else None
    header = f"{'method':13s} {'files':>6s} {'s':>8s} {'files/min':>10s} {'audio s/s':>10s} {'vs local':>9s}"
    print("\n" + header)
    for method, row in summary.items():
        ratio = "-" if row["vs_local"] is None else f"{row['vs_local']:.2f}"
        print(f"{method:13s} {row['files']:6d} {row['seconds']:8.1f} {row['files_per_minute']:10.1f} "
              f"{row['audio_seconds_per_second']:10.1f} {ratio:>9s}")

    py = ".".join(env["python"].split(".")[:2])
    tag = f"{env['os']}-{env['arch']}-{env['cores']}cpu-py{py}-{env['backend']}"
    target = Path(args.output) if args.output else REPO / "benchmarks" / "results" / f"ray_extract-{tag}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "ray_extract",
        "environment": env,
        "config": {
            "model": model.name,
            "files": len(paths),
            "audio_seconds": round(audio_seconds, 1),
            "data": str(args.data) if args.data else
            f"{args.clips} synthetic {args.seconds:g} s clips, FLAC 16-bit mono 44100 Hz (seeded, folder_extract.py)",
            "pool": args.pool,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "ray_cpus": resources.get("CPU"),
            "local_decoder_workers": default_workers(len(paths)),
        },
        "ray_init_seconds": round(init_seconds, 2),
        "summary": summary,
        "runs": runs,
        "cli": cli,
        "unix_time": int(time.time()),
    }
    target.write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"Ray Data extraction vs the single-process engine: {model.name}, {len(paths)} files "
        f"({audio_seconds:.0f} s of audio), pool {args.pool}, batch {args.batch_size}; "
        f"{env['cores']} CPUs ({env['cpu_model']}), {env['backend']}, ray {env['ray']}; "
        f"median of {args.repeats} (command-line rows: one run each, start-up included).",
        "",
        "| method | files | seconds | files/min | audio s/s | vs local |",
        "|---|---|---|---|---|---|",
    ]
    for method, row in summary.items():
        ratio = "-" if row["vs_local"] is None else f"{row['vs_local']:.2f}"
        lines.append(f"| {method} | {row['files']} | {row['seconds']:.1f} | {row['files_per_minute']:.1f} | "
                     f"{row['audio_seconds_per_second']:.1f} | {ratio} |")
    lines += ["", f"`md.init()` (local Ray start): {init_seconds:.1f} s, not in the in-process rows.", ""]
    target.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {target} and {target.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
