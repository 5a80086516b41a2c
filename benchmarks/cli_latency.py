"""Cold start of the ``mirzoo`` command line: wall time, peak RSS, whether TensorFlow was
imported, and whether TensorFlow/absl start-up lines reached the terminal.

    python benchmarks/cli_latency.py                      # this checkout, 3 cold runs per command
    python benchmarks/cli_latency.py --tree /tmp/old-main --label before   # another checkout

Each command runs in a fresh process (``python -m mirzoo ...``) under ``/usr/bin/time -v``
(Debian package ``time``), which reports the wall clock and the maximum resident set size;
without it the script falls back to ``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper
process.  ``TF_CPP_MIN_LOG_LEVEL`` is removed from the environment so that the start-up
noise is measured as a user sees it.  Whether TensorFlow was imported is read from
``python -X importtime``'s report on standard error (one more, untimed run).  Targets (issue 13): ``--help``,
``list`` and ``info`` under 1 s and 150 MB without TensorFlow; ``extract``/``tag`` on one
short file without a process pool.  Results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "rebuild TensorFlow")


def commands(example: str, out_dir: str) -> list[tuple[str, list[str]]]:
    return [
        ("--help", ["--help"]),
        ("list", ["list"]),
        ("info", ["info", "cnn-tagging"]),
        ("extract (1 file)", ["extract", "random-cnn", example, "-o", os.path.join(out_dir, "e.npz"), "-q"]),
        ("tag (1 file)", ["tag", "cnn-tagging", example]),
    ]


def _measure_time_v(argv: list[str], env: dict, cwd: str) -> tuple[float, float, str]:
    proc = subprocess.run(["/usr/bin/time", "-v", *argv], env=env, cwd=cwd, capture_output=True, text=True)
    err = proc.stderr
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", err)
    h, m, s = (float(g) if g else 0.0 for g in wall.groups())
    rss_kb = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-2000:]}")
    return h * 3600 + m * 60 + s, rss_kb / 1024, err


def _measure_rusage(argv: list[str], env: dict, cwd: str) -> tuple[float, float, str]:
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "w = time.perf_counter() - t\n"
        "sys.stderr.write(p.stderr)\n"
        "print(json.dumps([p.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *argv], env=env, cwd=cwd, capture_output=True, text=True)
    code, wall, rss_kb = json.loads(proc.stdout.strip().splitlines()[-1])
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({code}):\n{proc.stderr[-2000:]}")
    return wall, rss_kb / 1024, proc.stderr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(ROOT), help="checkout whose mirzoo is measured (default: this one)")
    parser.add_argument("--label", default="", help="suffix of the result files (e.g. 'before')")
    parser.add_argument("--runs", type=int, default=3, help="cold runs per command (median reported)")
    parser.add_argument("--only", nargs="+", metavar="CMD", help="only these commands (e.g. --only list info)")
    args = parser.parse_args(argv)
    tree = Path(args.tree).resolve()
    example = str(tree / "mirzoo" / "data" / "example.flac")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(tree)
    env["HF_HUB_OFFLINE"] = "1"
    measure = _measure_time_v if shutil.which("/usr/bin/time") and os.access("/usr/bin/time", os.X_OK) else _measure_rusage
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cli_args in commands(example, tmp):
            if args.only and name.split()[0].lstrip("-") not in [o.lstrip("-") for o in args.only]:
                continue
            argv_ = [sys.executable, "-m", "mirzoo", *cli_args]
            walls, rsss = [], []
            for _ in range(args.runs):
                wall, rss, err = measure(argv_, env, tmp)
                walls.append(wall)
                rsss.append(rss)
            noisy = any(n in err for n in NOISE)
            # one more run, untimed, to see what was imported
            _, _, err = measure([sys.executable, "-X", "importtime", *argv_[1:]], env, tmp)
            tf = bool(re.search(r"\|\s+tensorflow$", err, re.M))
            rows.append({
                "command": "mirzoo " + " ".join(a if a != example else "example.flac" for a in cli_args
                                                if not a.startswith(tmp)),
                "wall_s_median": round(statistics.median(walls), 2),
                "wall_s_min": round(min(walls), 2),
                "peak_rss_mb_median": round(statistics.median(rsss), 1),
                "imports_tensorflow": tf,
                "backend_startup_noise": noisy,
            })
            print(f"{rows[-1]['command']:<48} {rows[-1]['wall_s_median']:>6.2f} s  "
                  f"{rows[-1]['peak_rss_mb_median']:>7.1f} MB  tensorflow={tf}  noise={noisy}", flush=True)
    environment = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "timer": "/usr/bin/time -v" if measure is _measure_time_v else "resource.getrusage(RUSAGE_CHILDREN)",
        "runs": args.runs,
        "tree": str(tree),
    }
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"cli_latency-{platform.system().lower()}-{platform.machine()}-{os.cpu_count()}cpu-py" \
           f"{'.'.join(platform.python_version_tuple()[:2])}" + (f"-{args.label}" if args.label else "")
    (out_dir / f"{stem}.json").write_text(json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out_dir / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
