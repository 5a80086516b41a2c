#!/usr/bin/env python
"""mirzoo against musicnn (Pons & Serra 2019, MTT_musicnn) on the same 30 s clip, back to back.

Usage::

    python benchmarks/vs_musicnn.py                 # needs the musicnn venv (see below), else skips its rows
    python benchmarks/vs_musicnn.py --setup         # build the venv first if it is missing
    MIRZOO_MUSICNN_VENV=/path/to/venv python benchmarks/vs_musicnn.py

musicnn needs Python 3.7 and TensorFlow 2.7, so it runs in its own venv
(``~/.cache/mirzoo-peers/musicnn`` by default, or ``$MIRZOO_MUSICNN_VENV``), built by
``setup-musicnn.sh`` (``$MIRZOO_MUSICNN_SETUP``, default ``/work/shared/peers/setup-musicnn.sh``)
when ``--setup`` is given.  Without the venv the musicnn rows are skipped with a message and
the mirzoo rows are still measured.

What is timed, per call, on one 30 s 16 kHz WAV file (the seeded clip of
``benchmarks/throughput.py``), from the file path to the outputs:

* **musicnn**: its own front-end (``librosa.load`` + ``melspectrogram`` + log, musicnn's
  ``batch_data``) and ``Session.run`` of the MTT_musicnn graph, **built and restored once**
  (musicnn's ``extractor()`` rebuilds it on every call; that cost is left out here), fetching
  what ``extractor(extract_features=True)`` fetches.  Two batchings: musicnn's own
  (``configuration.BATCH_SIZE`` = 1 patch per run) and every patch of the clip in one run.
* **mirzoo**: ``m.extract(path, hop=...)`` (decoding, front-end and network), batch 16.

Equal patch overlap: 3 s patches with no overlap (musicnn ``input_overlap=False``, mirzoo
``hop=3``), and 3 s patches every ~1.5 s (musicnn ``input_overlap=1.5``, mirzoo's default hop).
The figure is audio seconds per wall second (median of ``--repeats``), and mirzoo's ratio to
musicnn.  The load average is recorded: the machine may be shared.
Results: ``benchmarks/results/vs_musicnn-<os>-<arch>-<N>cpu-py<X.Y>-<backend>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from benchmarks.throughput import CACHE_DIR, SR, environment, synth, write_run  # noqa: E402

CLIP_SECONDS = 30.0
# musicnn's TF_ENABLE_ONEDNN_OPTS per run: unset (TensorFlow 2.7's default) and on
MUSICNN_CONFIGS = {"as-installed": None, "onednn-on": "1"}
DEFAULT_VENV = Path.home() / ".cache" / "mirzoo-peers" / "musicnn"
DEFAULT_SETUP = Path("/work/shared/peers/setup-musicnn.sh")
_MARK = "MUSICNN_RESULT "

# Runs inside the musicnn venv (Python 3.7): graph built once, then timed calls.
_MUSICNN_CHILD = r'''
import json, os, statistics, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import librosa
import tensorflow as tf
from musicnn import extractor as mx, models, configuration as config
path, repeats, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
tf.compat.v1.disable_eager_execution()
n_frames = librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP) + 1
tf.compat.v1.reset_default_graph()
with tf.name_scope("model"):
    x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
    is_training = tf.compat.v1.placeholder(tf.bool)
    y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate = models.define_model(
        x, is_training, "MTT_musicnn", len(config.MTT_LABELS))
    fetch = [tf.nn.sigmoid(y), timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate]
sess = tf.compat.v1.Session()
sess.run(tf.compat.v1.global_variables_initializer())
tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(mx.__file__), "MTT_musicnn") + "/")
out = {"tensorflow": tf.__version__, "n_frames": int(n_frames), "batch_size_default": config.BATCH_SIZE, "rows": []}
try:  # FLOPs of one patch through the network (its mel spectrogram is computed by librosa, outside the graph)
    g = tf.Graph()
    with g.as_default():
        xp = tf.compat.v1.placeholder(tf.float32, [1, n_frames, config.N_MELS])
        with tf.name_scope("model"):
            models.define_model(xp, tf.compat.v1.placeholder_with_default(False, []), "MTT_musicnn", len(config.MTT_LABELS))
        opts = tf.compat.v1.profiler.ProfileOptionBuilder(
            tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
        out["flops_per_patch"] = int(tf.compat.v1.profiler.profile(g, options=opts).total_float_ops)
except Exception as exc:
    out["flops_error"] = repr(exc)[:300]
for overlap_s, batch in settings:
    step = n_frames if not overlap_s else librosa.time_to_frames(
        overlap_s, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP)
    def call():
        patches, _ = mx.batch_data(path, n_frames, step)
        size = patches.shape[0] if batch == "all" else config.BATCH_SIZE
        for lo in range(0, patches.shape[0], size):
            sess.run(fetch, feed_dict={x: patches[lo:lo + size], is_training: False})
        return patches.shape[0]
    n = call()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); call(); times.append(time.perf_counter() - t0)
    out["rows"].append({"input_overlap": overlap_s, "batch": batch, "patches": int(n), "step_frames": int(step),
                        "times_s": [round(t, 4) for t in times], "median_s": statistics.median(times)})
print("MUSICNN_RESULT " + json.dumps(out), flush=True)
'''


def clip_file() -> Path:
    import soundfile as sf

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / "vs_musicnn-30s-16k-seed0.wav"
    if not path.exists():
        tmp = path.with_suffix(".tmp.wav")
        sf.write(str(tmp), synth(CLIP_SECONDS, seed=0), SR, subtype="PCM_16")
        os.replace(tmp, path)
    return path


def musicnn_python(setup: bool) -> tuple[Path | None, str]:
    """``(venv python or None, message)``: the venv, built with --setup if it is missing."""
    venv = Path(os.environ.get("MIRZOO_MUSICNN_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.exists() and setup:
        script = Path(os.environ.get("MIRZOO_MUSICNN_SETUP", DEFAULT_SETUP))
        if not script.exists():
            return None, f"no musicnn venv at {venv} and no setup script at {script} (set MIRZOO_MUSICNN_SETUP)"
        print(f"building the musicnn venv at {venv} with {script} ...", flush=True)
        proc = subprocess.run(["bash", str(script), str(venv)], capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"setup-musicnn.sh failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
    if not python.exists():
        return None, (f"SKIPPED musicnn: no venv at {venv} (python benchmarks/vs_musicnn.py --setup builds it "
                      f"with setup-musicnn.sh, or set MIRZOO_MUSICNN_VENV)")
    check = subprocess.run([str(python), "-c", "import musicnn, tensorflow"], capture_output=True, text=True)
    if check.returncode != 0:
        return None, f"SKIPPED musicnn: the venv at {venv} cannot import musicnn: {check.stderr.strip()[-300:]}"
    return python, f"musicnn venv {venv}"


def run_musicnn(python: Path, path: Path, repeats: int, settings: list, onednn: str | None) -> dict:
    """musicnn's rows; ``onednn`` is its TF_ENABLE_ONEDNN_OPTS (None: unset, TensorFlow's own default)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    proc = subprocess.run([str(python), "-c", _MUSICNN_CHILD, str(path), str(repeats), json.dumps(settings)],
                          capture_output=True, text=True, env=env, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}


def time_mirzoo(models: dict, path: Path, repeats: int, hops: list) -> dict:
    out = {}
    for name, m in models.items():
        for hop in hops:
            m.extract(str(path), hop=hop)  # warm-up: every batch shape traced
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                m.extract(str(path), hop=hop)
                times.append(time.perf_counter() - t0)
            out[(name, hop)] = times
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["cnn-tagging", "crnn-tagging"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--setup", action="store_true", help="build the musicnn venv if it is missing")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default=None,
                   help="load mirzoo's models with this precision (file name gets -bfloat16 etc.)")
    args = p.parse_args(argv)

    import keras

    import mirzoo

    env = environment(keras.backend.backend())
    env["precision"] = args.precision
    load_start = os.getloadavg()
    path = clip_file()
    python, note = musicnn_python(args.setup)
    print(note, flush=True)
    models = {name: mirzoo.load(name, precision=args.precision) for name in args.models}
    hops = [3.0, None]  # no overlap; mirzoo's default (1.5 s)
    settings = [[False, "default"], [False, "all"], [1.5, "default"], [1.5, "all"]]

    # back to back, mirzoo on both sides of musicnn so that both see the same load.  musicnn runs
    # twice: as installed (TensorFlow 2.7's own oneDNN default, off on this kind of CPU) and with
    # oneDNN on, as mirzoo runs its own TensorFlow; the ratio against each is reported.
    first = time_mirzoo(models, path, args.repeats, hops)
    musicnn = {}
    for config, onednn in MUSICNN_CONFIGS.items():
        musicnn[config] = run_musicnn(python, path, args.repeats, settings, onednn) if python else {"error": note}
    second = time_mirzoo(models, path, args.repeats, hops)
    load_end = os.getloadavg()

    rows = []
    ref = {}
    for config, result in musicnn.items():
        if "error" in result:
            print(f"musicnn ({config}): {result['error']}", flush=True)
            continue
        for r in result["rows"]:
            speed = CLIP_SECONDS / r["median_s"]
            batch = result["batch_size_default"] if r["batch"] == "default" else r["patches"]
            ref[(config, bool(r["input_overlap"]), r["batch"])] = speed
            rows.append({"system": "musicnn MTT_musicnn", "config": config,
                         "overlap": "1.5 s hop" if r["input_overlap"] else "none",
                         "batch": batch, "patches": r["patches"], "audio_per_s": round(speed, 2),
                         "times_s": r["times_s"]})
    for (name, hop), times in first.items():
        times = times + second[(name, hop)]
        speed = CLIP_SECONDS / statistics.median(times)
        overlapped = hop is None
        m = models[name]
        row = {"system": f"mirzoo {name}", "config": f"onednn={env.get('tf_enable_onednn_opts')}"
               + (f" {args.precision}" if args.precision else ""),
               "overlap": "1.5 s hop" if overlapped else "none", "batch": 16,
               "patches": m.plan_for(hop).count(int(CLIP_SECONDS * SR)), "audio_per_s": round(speed, 2),
               "times_s": [round(t, 4) for t in times]}
        for config in MUSICNN_CONFIGS:
            for batching in ("default", "all"):
                key = (config, overlapped, batching)
                if key in ref:
                    row[f"x_musicnn_{config}_{'b1' if batching == 'default' else 'ball'}"] = round(speed / ref[key], 2)
        rows.append(row)

    configs = list(MUSICNN_CONFIGS)
    print(f"\n== {CLIP_SECONDS:.0f} s clip, from the file; audio seconds per wall second (median of "
          f"{args.repeats}, twice for mirzoo: before and after musicnn); 'vs' columns: musicnn at its "
          f"own batching, {' / '.join(configs)}")
    print(f"{'system':22s} {'config':14s} {'overlap':10s} {'batch':>5s} {'patches':>7s} {'x-rt':>8s} "
          + " ".join(f"{'vs ' + c:>16s}" for c in configs))
    for r in rows:
        ratios = [r.get(f"x_musicnn_{c}_b1") for c in configs]
        print(f"{r['system']:22s} {str(r['config']):14s} {r['overlap']:10s} {r['batch']:>5} {r['patches']:>7} "
              f"{r['audio_per_s']:8.1f} " + " ".join(f"{'-' if x is None else f'{x:.1f}x':>16s}" for x in ratios))
    print(f"load average {load_start[0]:.2f} -> {load_end[0]:.2f} on {env['cores']} cores")
    ct = next((r for r in rows if r["system"] == "mirzoo cnn-tagging" and r["overlap"] == "none"), None)
    for config in configs:
        x = ct.get(f"x_musicnn_{config}_b1") if ct else None
        if x is not None:
            verdict = "meets" if x >= 50 else "is BELOW"
            print(f"cnn-tagging, no overlap: {x:.1f}x musicnn {config} (its batching) {verdict} the 50x target; "
                  f"{ct[f'x_musicnn_{config}_ball']:.1f}x with every musicnn patch in one run")

    # work per patch: at equal FLOP/s, the speed ratio would be the FLOP ratio
    from benchmarks.throughput import window_flops

    flops = {f"mirzoo {name}": int(window_flops(m, m.patch_samples)["total"]) for name, m in models.items()
             if m.spec.is_clip}
    musicnn_flops = next((r["flops_per_patch"] for r in musicnn.values() if "flops_per_patch" in r), None)
    if musicnn_flops:
        flops["musicnn MTT_musicnn"] = int(musicnn_flops)
    print("FLOPs per 3-s patch (multiply and add counted apart): " + ", ".join(
        f"{k} {v / 1e9:.3f} G" for k, v in flops.items())
        + ("; musicnn's mel spectrogram runs in librosa, outside its count" if musicnn_flops else ""))
    if musicnn_flops and "mirzoo cnn-tagging" in flops:
        print(f"at equal FLOP/s cnn-tagging would run {musicnn_flops / flops['mirzoo cnn-tagging']:.2f}x musicnn's speed")

    out = write_run(args.out_dir, "vs_musicnn", env, load_start, load_end, {
        "flops_per_patch": flops,
        "clip": {"seconds": CLIP_SECONDS, "sample_rate": SR, "file": path.name, "signal": "benchmarks.throughput.synth(seed=0)"},
        "musicnn": {c: {k: v for k, v in r.items() if k != "rows"} for c, r in musicnn.items()},
        "rows": rows,
    })
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
