"""Benchmark: how fast the public corpus renders on this machine.

Builds a corpus of ``--hours`` of audio twice into temporary folders:

* ``cold``: with an empty score cache (music21 parses every piece: what a first build costs);
* ``warm``: a second build of the same corpus with the score cache filled (what a rebuild,
  another seed or the held-out split costs: FluidSynth, resampling, FLAC and targets only).

It reports audio hours rendered per wall-clock hour for both, the corpus statistics of the
build (clips, hours per split and collection, tag counts, failures), and writes
``benchmarks/results/corpus_render-<env>.json`` (``env`` like ``linux-x86_64-2cpu-py3.11``).

Usage::

    python benchmarks/corpus_render.py --hours 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training import corpus as tc  # noqa: E402
from training import corpus_render as cr  # noqa: E402


def env_name() -> str:
    """``<os>-<machine>-<n>cpu-py<major>.<minor>``, e.g. ``linux-x86_64-2cpu-py3.11``."""
    return (f"{sys.platform}-{platform.machine()}-{os.cpu_count()}cpu-"
            f"py{sys.version_info.major}.{sys.version_info.minor}")


def _versions() -> dict:
    import music21
    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__, "music21": music21.__version__}
    try:
        import fluidsynth

        out["pyfluidsynth"] = getattr(fluidsynth, "__version__", "installed")
    except (ImportError, OSError):
        out["pyfluidsynth"] = None
    try:
        import subprocess

        out["fluidsynth"] = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True,
                                           timeout=10).stdout.splitlines()[0]
    except Exception:  # noqa: BLE001 - informational only
        out["fluidsynth"] = None
    return out


def run(hours: float, workers: int, seed: int, keep: bool) -> dict:
    """Run the cold and warm builds and return the result dict."""
    cfg = tc.BuildConfig(seed=seed)
    tmp = Path(tempfile.mkdtemp(prefix="mirzoo-corpus-bench-"))
    cache = tmp / "cache"
    result = {"env": env_name(), "hours_requested": hours, "workers": workers, "seed": seed,
              "config": cfg.to_json(), "versions": _versions(), "backend": cr.FluidRenderer(
                  cr.SOUNDFONTS["FluidR3"], cfg.synth_sr).backend, "runs": {}}
    try:
        for name in ("cold", "warm"):
            out = tmp / name
            t0 = time.perf_counter()
            report = tc.build(str(out), tc.BuildConfig(seed=seed), hours=hours, workers=workers,
                              cache_dir=str(cache), progress=False)
            wall = time.perf_counter() - t0
            result["runs"][name] = {
                "wall_seconds": round(wall, 2), "audio_seconds": round(report.seconds, 2),
                "clips": report.clips, "pieces": report.pieces, "failed_pieces": report.failures,
                "audio_hours_per_wall_hour": round(report.seconds / wall, 1),
                "audio_hours_per_wall_hour_per_core": round(report.seconds / wall / workers, 1),
                "disk_mb": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6, 1),
            }
            print(f"{name}: {report.seconds / 3600:.3f} h of audio in {wall:.1f} s -> "
                  f"{report.seconds / wall:.0f} audio hours per wall hour ({workers} workers)", flush=True)
        stats = tc.corpus_stats(str(tmp / "cold"))
        result["stats"] = stats
        result["hours_for_30h_corpus_estimate_wall_minutes"] = round(
            30 * 3600 / result["runs"]["cold"]["audio_hours_per_wall_hour"] / 60, 1)
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=0.5, help="audio hours per build (default 0.5)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary corpora")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    result = run(args.hours, args.workers, args.seed, args.keep)
    path = Path(args.results) / f"corpus_render-{result['env']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(tc.format_stats(result["stats"]))
    print(f"estimated wall time of a 30 h corpus (cold cache): "
          f"{result['hours_for_30h_corpus_estimate_wall_minutes']} min")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
