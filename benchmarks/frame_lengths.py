#!/usr/bin/env python
"""Frame models on files of many lengths: time and memory with and without shared window lengths.

Usage::

    python benchmarks/frame_lengths.py                    # tcn-music and dense-frame, 20 signals of 75-240 s
    python benchmarks/frame_lengths.py --models tcn-music --files 10 --min-seconds 20 --max-seconds 40
    python benchmarks/frame_lengths.py --min-seconds 3 --max-seconds 12 --framings blocked strided   # short files

Each (model, plan) runs in a fresh process (TensorFlow's oneDNN kernels are cached per process, per
input shape): the model is loaded and run once on a warm-up signal, then on ``--files`` seeded noise
signals whose lengths are drawn uniformly in ``[--min-seconds, --max-seconds]``.  Reported: the
wall time of those files, the resident memory (RSS) after the warm-up and after the last file, the
peak RSS, and the window lengths each plan ran.  ``shared`` is the plan ``mirzoo`` uses
(:class:`mirzoo.inference.windows.FramePlan`: the last window of a long signal as long as the first,
windows zero-padded to whole frames); ``per-length`` the earlier one (``share_lengths=False``: a
window for every length met).  Both plans give the same outputs (``tests/test_architecture.py``).
``--framings`` also runs the constant-Q front-end's strided one-channel convolutions as they were
(``strided``) beside the blocked form mirzoo uses on TensorFlow (``blocked``,
``ConstantQ.blocked_frames``): files shorter than one window run at their own length, so what
each new length costs is the front-end's per-shape cost.
Results: ``benchmarks/results/frame_lengths-<environment>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def one_run(model: str, shared: bool, files: int, lo: float, hi: float, seed: int, framing: str = "") -> dict:
    """Run in this process (a child of :func:`main`); returns the figures."""
    import numpy as np

    import mirzoo

    m = mirzoo.load(model)
    m.plan = dataclasses.replace(m.plan, share_lengths=shared)
    frontend = m.model.get_layer("frontend")
    if framing:
        frontend.blocked_frames = framing == "blocked"
    rng = np.random.default_rng(seed)
    sr = m.sample_rate
    key = [m.default_layer]
    m.forward([rng.standard_normal(int(sr * (lo + hi) / 2)).astype(np.float32) * 0.1], key, 16)
    before = rss_gb()
    lengths = [int(sr * rng.uniform(lo, hi)) for _ in range(files)]
    windows = {w for n in lengths for w in (len(m.plan.window(np.zeros(n, np.float32), c)) for c in m.plan.chunks(n))}
    t0 = time.perf_counter()
    for n in lengths:
        m.forward([rng.standard_normal(n).astype(np.float32) * 0.1], key, 16)
    wall = time.perf_counter() - t0
    return {"model": model, "plan": "shared" if shared else "per-length",
            "framing": "blocked" if getattr(frontend, "blocked_frames", False) else "strided", "files": files,
            "audio_seconds": round(sum(lengths) / sr, 1), "wall_s": round(wall, 2),
            "x_real_time": round(sum(lengths) / sr / wall, 1), "rss_after_warmup_gb": round(before, 3),
            "rss_end_gb": round(rss_gb(), 3),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "window_lengths": len(windows)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tcn-music", "dense-frame"])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--min-seconds", type=float, default=75.0)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plans", nargs="+", choices=["shared", "per-length"], default=["shared", "per-length"])
    parser.add_argument("--framings", nargs="+", choices=["blocked", "strided"], default=None,
                        help="constant-Q framing forms to run (default: the backend's own only)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "model,shared,framing" in a child
    parser.add_argument("--output", default=None, help="result JSON (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if not 0 < args.min_seconds <= args.max_seconds or args.files < 1:
        parser.error(f"need 0 < --min-seconds <= --max-seconds and --files >= 1, got {args.min_seconds}, "
                     f"{args.max_seconds}, {args.files}")
    if args.child:
        model, shared, framing = args.child.split(",")
        print(json.dumps(one_run(model, shared == "1", args.files, args.min_seconds, args.max_seconds, args.seed,
                                 framing)))
        return 0

    import keras

    from benchmarks.throughput import environment, write_run

    env = environment(keras.backend.backend())
    rows = []
    load0 = os.getloadavg()
    runs = [(model, plan == "shared", framing) for model in args.models for framing in (args.framings or [""])
            for plan in args.plans]
    for model, shared, framing in runs:
        cmd = [sys.executable, __file__, "--child", f"{model},{int(shared)},{framing}", "--files", str(args.files),
               "--min-seconds", str(args.min_seconds), "--max-seconds", str(args.max_seconds),
               "--seed", str(args.seed)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['model']:12s} {r['plan']:10s} {r['framing']:8s} {r['files']} files, {r['audio_seconds']:.0f} s of audio: "
              f"{r['wall_s']:.1f} s ({r['x_real_time']:.0f}x real time), RSS {r['rss_after_warmup_gb']:.2f} -> "
              f"{r['rss_end_gb']:.2f} GB (peak {r['peak_rss_gb']:.2f}), {r['window_lengths']} window lengths",
              flush=True)
    body = {"settings": {k: getattr(args, k) for k in ("models", "files", "min_seconds", "max_seconds", "seed",
                                                         "plans", "framings")},
            "results": rows}
    if args.output:
        from mirzoo.fileio import write_json_atomic

        write_json_atomic(Path(args.output), dict(environment=env, **body))
        print(f"wrote {args.output}")
    else:
        print(f"wrote {write_run(REPO / 'benchmarks' / 'results', 'frame_lengths', env, load0, os.getloadavg(), body)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
