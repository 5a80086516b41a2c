#!/usr/bin/env python
"""Throughput, memory and compute-efficiency benchmark for every mirzoo model.

Usage::

    python benchmarks/throughput.py                      # all models, full run (~5-10 min on 2 cores)
    python benchmarks/throughput.py --quick              # fewer repeats, 5-minute long file
    python benchmarks/throughput.py --models cnn-tagging dense-frame
    KERAS_BACKEND=jax python benchmarks/throughput.py    # writes a separate result file
    python benchmarks/throughput.py --hop 3              # non-overlapping patches (clip models)
    python benchmarks/throughput.py --batch 64 --mixed-precision   # a GPU: bigger batches, float16 compute

For each model it measures

1. **Throughput** (seconds of audio per wall-clock second) on 30 s clips, front-end
   included: batch 1 (one clip, ``extract(clip, batch_size=1)``) and batch 16 (sixteen
   clips in one ``extract([...], batch_size=16)`` call).  One warm-up call of each kind
   comes first, so graph tracing/compilation is excluded; the figure is the median of
   ``--repeats`` timed calls.
2. **Peak RSS for a long file**: a seeded 1-hour 16 kHz mono FLAC (noise + tones,
   cached under ``/tmp/mirzoo-bench``) goes through ``m.extract(path)`` in a separate
   subprocess per model, which reports its own ``VmHWM`` (peak resident set).  Models
   too slow for the time budget run a 20-minute file instead and the 1-hour figure is
   extrapolated linearly from the growth over the post-warm-up baseline (marked
   ``extrapolated``).  TensorFlow's import pulls in whatever optional packages are installed
   (jax, pandas, matplotlib, IPython: ~210 MB of RSS on a 2.21 install), so ``--core-venv``
   runs these children in a virtual environment holding only mirzoo's required dependencies
   (built once with ``pip install`` of this checkout under the bench cache, ``MIRZOO_BENCH_CACHE``
   or ``/tmp/mirzoo-bench``; the children import this checkout's code): what a user who installs mirzoo alone holds.
   ``--memory-python`` names another interpreter for them.
3. **Compute efficiency**: the model's FLOPs are counted analytically from its Keras
   layers (convolutions, dense layers, GRUs and the front-end's strided-convolution
   kernel and filterbank projection; elementwise work such as batch norm, activations,
   pooling and the dB compression is *not* counted) for the exact window shapes the
   benchmark fed to the network, divided by the batch-16 time, and compared with a
   float32 2048x2048 numpy matmul measured right before each model (interleaved, so
   both see the same machine load).

4. **Batch-norm folding**: the batch-N time of the model as loaded (BN separate) against
   the folded inference model that mirzoo runs, interleaved (``fold_speedup``).
5. **End to end on a folder** (``--folder``): 200 ten-second 44.1 kHz FLAC files through
   :func:`mirzoo.batch.extract_files` (decoding and resampling included) against the
   model-only throughput on the same audio already decoded (``folder_ratio``; target 0.8).

``--batch N`` sets the batch of the "b16" columns (default 16; use 64 or more on a GPU),
``--mixed-precision`` runs Keras' ``mixed_float16`` policy (for GPUs; on CPUs it is slower),
``--precision bfloat16`` loads every model with ``mirzoo.load(name, precision="bfloat16")`` (CPUs with
AMX or AVX512-BF16 units; ratios stay against the float32 matmul), ``--hop`` the clip models' patch
hop.  Results go to
``benchmarks/results/throughput-<os>-<arch>-<N>cpu[-avx512|-amx]-py<X.Y>-<backend>[-<device>][-hop<H>][-b<N>][-mp][-bfloat16].{json,csv}``.
See ``benchmarks/README.md`` for the meaning of every column.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)

SR = 16000
CLIP_SECONDS = 30.0
N_CLIPS = 16
CACHE_DIR = Path(os.environ.get("MIRZOO_BENCH_CACHE", "/tmp/mirzoo-bench"))
#: issue 17's targets: 1-hour peak RSS, and the batch-16 share of the matmul ceiling per backend
RSS_TARGET_MB = 1024.0
MATMUL_TARGET = {"tensorflow": 0.8, "jax": 0.6}
# models whose 1-hour figure is always measured for real, whatever the budget
ALWAYS_FULL_HOUR = ("cnn-tagging", "dense-frame")
_CHILD_MARK = "MIRZOO_BENCH_RESULT "
#: optional packages TensorFlow or Keras import when they are installed (the children report which are)
OPTIONAL_IMPORTS = ("jax", "pandas", "matplotlib", "IPython", "pyarrow")


# -- synthetic audio -----------------------------------------------------------------------------


#: the precision every load in this run (and its long-file children) uses: set by ``--precision``
PRECISION_ENV = "MIRZOO_BENCH_PRECISION"


def synth(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """Seeded test signal: pink-ish noise plus a few gliding harmonic tones with note envelopes."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(4) / 4, mode="same")  # a little low-pass
    y = 0.05 * noise
    for _ in range(3):
        f0 = 110.0 * 2.0 ** (rng.integers(0, 36) / 12.0)
        rate = rng.uniform(0.5, 4.0)  # notes per second
        env = 0.5 * (1 + np.sign(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3)))) * np.exp(
            -((t * rate) % 1.0) * 3.0
        )
        tone = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3))
        y = y + 0.1 * env * tone
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def long_file(minutes: int) -> Path:
    """A cached ``minutes``-long 16 kHz mono FLAC, written block by block (60 s blocks, seeded per block)."""
    import soundfile as sf

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"long-{minutes}min-16k-seed0.flac"
    if path.exists():
        try:
            if sf.info(str(path)).frames == minutes * 60 * SR:
                return path
        except Exception:
            pass
    tmp = path.with_suffix(".tmp.flac")
    print(f"  writing {minutes}-minute test file {path} ...", flush=True)
    with sf.SoundFile(str(tmp), "w", samplerate=SR, channels=1, format="FLAC", subtype="PCM_16") as f:
        for block in range(minutes):
            f.write(synth(60.0, seed=1000 + block))
    os.replace(tmp, path)
    return path


# -- environment ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"})
    except OSError:
        pass
    return []


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        return "unknown"


def _has_dist(metadata, name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def environment(backend: str) -> dict:
    import keras

    env = {
        "os": platform.system().lower(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": _cores(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": _blas(),
        "keras": keras.__version__,
        "backend": backend,
    }
    try:
        import tensorflow as tf

        env["tensorflow"] = tf.__version__
    except Exception:
        env["tensorflow"] = None
    # read by TensorFlow once, at import: 1 = oneDNN kernels (mirzoo's default since session 7)
    env["tf_enable_onednn_opts"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    try:  # tensorflow vs tensorflow-cpu builds differ in import-time memory (CUDA probing)
        from importlib import metadata

        env["tensorflow_dists"] = [d for d in ("tensorflow", "tensorflow-cpu", "tf-nightly") if _has_dist(metadata, d)]
    except Exception:
        env["tensorflow_dists"] = None
    if backend == "jax":
        import jax

        env["jax"] = jax.__version__
    env["gpu"] = _gpus(backend)
    try:
        import mirzoo

        env["mirzoo"] = mirzoo.__version__
    except Exception:
        pass
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except Exception:
        env["git_commit"] = None
    return env


def env_tag(env: dict, hop=None, batch: int = 16, mixed: bool = False, precision=None) -> str:
    py = ".".join(env["python"].split(".")[:2])
    # the CPU's widest vector/matrix unit when it is beyond AVX2, so results from different
    # machines of the same core count do not overwrite each other (oneDNN picks other kernels)
    flags = set(env.get("cpu_flags") or ())
    isa = "-amx" if "amx_tile" in flags else "-avx512" if "avx512f" in flags else ""
    tag = f"{env['os']}-{env['arch']}-{env['cores']}cpu{isa}-py{py}-{env['backend']}"
    if env.get("gpu"):
        tag += "-gpu"
    if hop is not None:
        tag += f"-hop{hop:g}"
    if batch != 16:
        tag += f"-b{batch}"
    if mixed:
        tag += "-mp"
    precision = precision or env.get("precision")
    if precision and precision != "float32":
        tag += f"-{precision}"
    return tag


def write_run(out_dir: Path, name: str, env: dict, loadavg_start, loadavg_end, body: dict) -> Path:
    """``<out_dir>/<name>-<env tag>.json``, written atomically: the run's header (schema, time, command,
    environment, load averages at start and end) followed by ``body``."""
    from mirzoo.fileio import write_json_atomic  # deferred: keeps this module importable before mirzoo is set up

    payload = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "environment": env,
               "loadavg_start": [round(v, 2) for v in loadavg_start],
               "loadavg_end": [round(v, 2) for v in loadavg_end], **body}
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}-{env_tag(env)}.json"
    write_json_atomic(out, payload)
    return out


def _gpus(backend: str) -> list[str]:
    """Names of the accelerators the backend sees (empty on a CPU-only machine)."""
    try:
        if backend == "jax":
            import jax

            return [str(d.device_kind) for d in jax.devices() if d.platform != "cpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:
        return []


def _proc_status(key: str) -> float:
    """A ``/proc/self/status`` field in MB (``VmHWM``, ``VmRSS``); falls back to getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- numpy matmul reference ----------------------------------------------------------------------

_MM = {}


_MM_UTIL: list[float] = []  # CPU seconds / wall seconds of each probe (cores the BLAS actually got)


def matmul_gflops(n: int = 2048, tries: int = 3) -> float:
    """Best-of-``tries`` GFLOP/s of a float32 ``n x n @ n x n`` numpy matmul.

    Also appends the probe's CPU utilisation (process CPU time / wall time) to ``_MM_UTIL``:
    a multi-threaded BLAS on idle cores keeps all of them busy, so a value well below the
    core count means other processes were using the cores.
    """
    if n not in _MM:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        _MM[n] = (a, b, np.empty((n, n), np.float32))
        np.matmul(a, b, out=_MM[n][2])  # first call: thread pool start-up
    a, b, c = _MM[n]
    best = math.inf
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(tries):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    _MM_UTIL.append((time.process_time() - c0) / (time.perf_counter() - w0))
    return 2.0 * n**3 / best / 1e9


# -- analytic FLOP count -------------------------------------------------------------------------


def _dims(shape, t: int) -> list[int]:
    """Shape without the batch axis, unknown (time) dimensions replaced by ``t``."""
    return [t if d is None else int(d) for d in list(shape)[1:]]


def _prod(xs) -> int:
    return int(np.prod(xs, dtype=np.int64)) if len(xs) else 1


def layer_flops(layer, frames: int) -> tuple[int, str]:
    """FLOPs (multiply and add counted separately) of one example through ``layer``.

    ``frames`` replaces unknown time dimensions (frame models take any length).
    Returns ``(flops, kind)``; ``kind`` is ``""`` for layers that are not counted.
    """
    import keras

    name = type(layer).__name__
    if hasattr(layer, "flops_per_frame"):  # mirzoo.nn.frontend.SpectralFrontend: as its call() runs
        return frames * int(layer.flops_per_frame()), "frontend"
    try:
        out_shape = layer.output.shape
        in_shape = layer.input.shape
    except (AttributeError, ValueError):
        return 0, ""
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        out = _dims(out_shape, frames)
        in_ch = _dims(in_shape, frames)[-1]
        k = _prod([int(d) for d in layer.kernel_size])
        groups = int(getattr(layer, "groups", 1) or 1)
        return 2 * _prod(out) * k * in_ch // groups, "conv"
    if isinstance(layer, keras.layers.Dense):
        inp = _dims(in_shape, frames)
        return 2 * _prod(inp[:-1]) * inp[-1] * int(layer.units), "dense"
    if isinstance(layer, keras.layers.GRU):
        steps, features = _dims(in_shape, frames)
        units = int(layer.units)
        return steps * 2 * 3 * (features + units) * units, "gru"
    if isinstance(layer, keras.layers.LSTM):
        steps, features = _dims(in_shape, frames)
        units = int(layer.units)
        return steps * 2 * 4 * (features + units) * units, "lstm"
    if layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
        print(f"  note: layer {layer.name} ({name}) has weights but no FLOP formula; not counted", flush=True)
    return 0, ""


def window_flops(extractor, samples: int) -> dict[str, int]:
    """FLOPs by kind for one input window of ``samples`` samples."""
    frames = extractor.frontend.n_frames(int(samples))
    totals: dict[str, int] = {}
    for layer in extractor.keras_model.layers:
        flops, kind = layer_flops(layer, frames)
        if kind:
            totals[kind] = totals.get(kind, 0) + flops
    totals["total"] = sum(totals.values())
    return totals


class ShapeRecorder:
    """Record the input shapes of every forward pass ``Runner.run_batch`` makes (incl. batch padding)."""

    def __init__(self, model):
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def __enter__(self):
        original = self.model.predict_on_batch

        def recording(x, *args, **kwargs):
            self.shapes.append(tuple(int(d) for d in np.shape(x)))
            return original(x, *args, **kwargs)

        object.__setattr__(self.model, "predict_on_batch", recording)
        return self

    def __exit__(self, *exc):
        try:
            object.__delattr__(self.model, "predict_on_batch")
        except AttributeError:
            pass
        return False


def call_flops(extractor, shapes) -> tuple[int, int]:
    """(total FLOPs, windows) of forward passes with the recorded input ``shapes``."""
    cache: dict[int, int] = {}
    total = windows = 0
    for batch, samples in shapes:
        if samples not in cache:
            cache[samples] = window_flops(extractor, samples)["total"]
        total += batch * cache[samples]
        windows += batch
    return total, windows


# -- timing --------------------------------------------------------------------------------------


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def frontend_share(extractor, samples: int, batch: int, repeats: int) -> float | None:
    """Fraction of a forward pass of ``batch`` windows spent in the front-end (median of repeats)."""
    import keras

    try:
        fe = keras.Model(extractor.keras_model.input, extractor.frontend.output)
    except Exception:
        return None
    x = np.asarray(synth(samples / SR * batch, seed=7)[: samples * batch].reshape(batch, samples))
    fe.predict_on_batch(x)
    extractor.keras_model.predict_on_batch(x)
    t_fe, t_all = [], []
    for _ in range(repeats):
        t_fe.append(timed(lambda: fe.predict_on_batch(x))[0])
        t_all.append(timed(lambda: extractor.keras_model.predict_on_batch(x))[0])
    return statistics.median(t_fe) / statistics.median(t_all)


def bench_model(name: str, clips: list[np.ndarray], repeats: int, hop=None, batch: int = 16) -> dict:
    import mirzoo

    t0 = time.perf_counter()
    m = mirzoo.load(name, precision=os.environ.get(PRECISION_ENV) or None)
    load_s = time.perf_counter() - t0
    hop = hop if m.spec.is_clip else None
    one = clips[0]
    # warm-up: trace/compile every batch shape used below; record the shapes for the FLOP count
    t0 = time.perf_counter()
    network = m.network_for(m.resolve_layers(None)[1])  # what extract() runs for the default layer
    with ShapeRecorder(network) as rec1:
        m.extract(one, sr=SR, batch_size=1, hop=hop)
    with ShapeRecorder(network) as rec16:
        m.extract(clips, sr=SR, batch_size=batch, hop=hop)
    warmup_s = time.perf_counter() - t0
    flops16, windows16 = call_flops(m, rec16.shapes)
    flops1, windows1 = call_flops(m, rec1.shapes)
    counts: dict[int, int] = {}
    for batch, samples in rec16.shapes:
        counts[samples] = counts.get(samples, 0) + batch
    window_samples = max(counts, key=counts.get)  # the most common window length
    per_window = window_flops(m, window_samples)

    mm, t16, c16, t1 = [], [], [], []
    del _MM_UTIL[:]
    folded = m.inference_model
    unfolded_t = []
    if folded is not m.model:  # BN folding: the same batch on the model as loaded, interleaved
        m._inference_model = m.model
        m.extract(clips, sr=SR, batch_size=batch, hop=hop)  # trace
        m._inference_model = folded
    for _ in range(repeats):
        mm.append(matmul_gflops())  # interleaved: the reference sees the same machine load
        wall, cpu = timed(lambda: m.extract(clips, sr=SR, batch_size=batch, hop=hop))
        t16.append(wall)
        c16.append(cpu)
        t1.append(timed(lambda: m.extract(one, sr=SR, batch_size=1, hop=hop))[0])
        if folded is not m.model:
            m._inference_model = m.model
            unfolded_t.append(timed(lambda: m.extract(clips, sr=SR, batch_size=batch, hop=hop))[0])
            m._inference_model = folded

    audio16 = CLIP_SECONDS * len(clips)
    med16, med1, med_mm = statistics.median(t16), statistics.median(t1), statistics.median(mm)
    gflops16 = flops16 / med16 / 1e9
    share = None
    if m.output_kind == "clip":
        share = frontend_share(m, m.patch_samples, 16, max(3, repeats))
    return {
        "model": name,
        "output": m.output_kind,
        "load_s": round(load_s, 3),
        "warmup_s": round(warmup_s, 3),
        "window_samples": int(window_samples),
        "flops_per_window": {k: int(v) for k, v in per_window.items()},
        "gflop_per_audio_second": round(flops16 / audio16 / 1e9, 4),
        "b1_audio_per_s": round(CLIP_SECONDS / med1, 2),
        "b16_audio_per_s": round(audio16 / med16, 2),
        "b1_times_s": [round(v, 4) for v in t1],
        "b16_times_s": [round(v, 4) for v in t16],
        "b16_spread": round((max(t16) - min(t16)) / med16, 3),
        "b16_cpu_util": round(statistics.median(c / w for c, w in zip(c16, t16)), 2),
        "b16_windows": int(windows16),
        "b1_windows": int(windows1),
        "b16_gflop": round(flops16 / 1e9, 3),
        "b1_gflop_per_s": round(flops1 / med1 / 1e9, 2),
        "b16_gflop_per_s": round(gflops16, 2),
        "matmul_gflop_per_s": round(med_mm, 2),
        "matmul_samples": [round(v, 2) for v in mm],
        "matmul_cpu_util": round(statistics.median(_MM_UTIL), 2) if _MM_UTIL else None,
        "ratio_vs_matmul": round(gflops16 / med_mm, 3),
        "frontend_share_b16": None if share is None else round(share, 3),
        "b16_unfolded_audio_per_s": round(audio16 / statistics.median(unfolded_t), 2) if unfolded_t else None,
        "fold_speedup": round(statistics.median(unfolded_t) / med16, 3) if unfolded_t else None,
        "hop_s": None if hop is None else float(hop),
        "batch": int(batch),
    }


def bench_folder(name: str, hop=None, batch: int = 16, clips: int = 200, seconds: float = 10.0) -> dict:
    """End to end (files -> extract_files, decoding included) against the model alone on the same audio."""
    import tempfile

    import mirzoo
    from mirzoo.audio import load_audio
    from mirzoo.batch import extract_files

    from benchmarks.folder_extract import make_folder  # the same cached folder as benchmarks/folder_extract.py

    folder = make_folder(clips, seconds)
    paths = sorted(str(p) for p in Path(folder).rglob("*.flac"))
    m = mirzoo.load(name, precision=os.environ.get(PRECISION_ENV) or None)
    hop = hop if m.spec.is_clip else None
    signals = [load_audio(p, m.sample_rate) for p in paths]
    audio = sum(y.shape[0] for y in signals) / m.sample_rate
    m.extract(signals[:batch], sr=m.sample_rate, batch_size=batch, hop=hop, pool="mean")  # trace
    with tempfile.TemporaryDirectory() as tmp:
        extract_files(m, paths[:4], Path(tmp) / "warm.npz", pool="mean", batch_size=batch, hop=hop, workers=0)
        t_model, t_e2e = [], []
        for i in range(2):  # interleaved
            t_model.append(timed(lambda: m.extract(signals, sr=m.sample_rate, batch_size=batch, hop=hop, pool="mean"))[0])
            t_e2e.append(timed(lambda: extract_files(m, paths, Path(tmp) / f"out{i}.npz", pool="mean",
                                                     batch_size=batch, hop=hop))[0])
    model_only, e2e = audio / min(t_model), audio / min(t_e2e)
    return {"files": len(paths), "audio_s": audio, "model_only_audio_per_s": round(model_only, 2),
            "end_to_end_audio_per_s": round(e2e, 2), "ratio": round(e2e / model_only, 3),
            "model_only_times_s": [round(v, 2) for v in t_model], "end_to_end_times_s": [round(v, 2) for v in t_e2e]}


# -- long-file memory (subprocess) ---------------------------------------------------------------


def child_main(name: str, path: str, hop: str = "") -> None:
    """Inside the subprocess: load, warm up on 30 s, extract the long file, report peak RSS."""
    import mirzoo
    from mirzoo.audio import load_audio

    optional = [n for n in OPTIONAL_IMPORTS if importlib.util.find_spec(n) is not None]
    m = mirzoo.load(name, precision=os.environ.get(PRECISION_ENV) or None)
    hop = float(hop) if hop and m.spec.is_clip else None
    m.extract(synth(CLIP_SECONDS, seed=3), sr=SR, hop=hop)
    baseline = _proc_status("VmRSS")
    t0 = time.perf_counter()
    e = m.extract(path, hop=hop)
    seconds = time.perf_counter() - t0
    hwm = _proc_status("VmHWM")
    rss_end = _proc_status("VmRSS")
    duration = e.duration
    output_mb = (e.embeddings.nbytes + e.timestamps.nbytes) / 2**20  # what the caller asked to hold
    del e
    t0 = time.perf_counter()
    load_audio(path, m.sample_rate)
    decode = time.perf_counter() - t0
    print(
        _CHILD_MARK
        + json.dumps(
            {
                "baseline_rss_mb": round(baseline, 1),
                "peak_rss_mb": round(hwm, 1),
                "end_rss_mb": round(rss_end, 1),
                "output_mb": round(output_mb, 1),
                "extract_s": round(seconds, 2),
                "decode_s": round(decode, 2),
                "duration_s": duration,
                "python": sys.executable,
                "optional_installed": optional,
            }
        ),
        flush=True,
    )


def core_venv(path: Path) -> Path:
    """The python of a virtual environment at ``path`` holding mirzoo's required dependencies only
    (``pip install`` of this checkout, no extras), built once and reused while pyproject.toml is
    unchanged (a stamp of its sha256).  Raises ``RuntimeError`` with pip's message if the build fails."""
    python = path / "bin" / "python"
    stamp = path / "mirzoo-deps.sha256"
    want = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    if path.exists():
        shutil.rmtree(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    steps = [[sys.executable, "-m", "venv", str(tmp)],
             [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-800:]}")
    (tmp / "mirzoo-deps.sha256").write_text(want + "\n")
    # only bin/python is used, which finds the venv's site-packages from the pyvenv.cfg beside it,
    # so the renamed venv works (its console scripts would still name the .tmp path)
    tmp.rename(path)
    return python


def run_child(name: str, path: Path, timeout: float, hop=None, python: str = sys.executable) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--_child", name, str(path), "" if hop is None else str(hop)]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(_CHILD_MARK):
            return json.loads(line[len(_CHILD_MARK) :])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}


def bench_memory(name: str, b16_rate: float, quick: bool, budget_s: float, hop=None, python: str = sys.executable) -> dict:
    """Peak RSS for 1 hour of audio (or 5 min with --quick; 20 min + extrapolation if too slow)."""
    if quick:
        minutes, target = 5, 5
    else:
        target = 60
        expected = 3600.0 / max(b16_rate, 1e-9)
        minutes = 60 if (name in ALWAYS_FULL_HOUR or expected <= budget_s) else 20
    path = long_file(minutes)
    res = run_child(name, path, timeout=max(600.0, 3 * minutes * 60 / max(b16_rate, 1e-9)), hop=hop, python=python)
    out = {"file_minutes": minutes, "target_minutes": target}
    if "error" in res:
        out["error"] = res["error"]
        return out
    out.update(res)
    out["long_audio_per_s"] = round(res["duration_s"] / res["extract_s"], 2)
    if minutes == target:
        out["peak_rss_target_mb"] = res["peak_rss_mb"]
        out["extrapolated"] = False
    else:
        growth = max(0.0, res["peak_rss_mb"] - res["baseline_rss_mb"])
        out["peak_rss_target_mb"] = round(res["baseline_rss_mb"] + growth * target / minutes, 1)
        out["extrapolated"] = True
    return out


# -- report --------------------------------------------------------------------------------------

COLUMNS = [
    ("model", "model", "{}"),
    ("b1_audio_per_s", "b1 x-rt", "{:.1f}"),
    ("b16_audio_per_s", "b16 x-rt", "{:.1f}"),
    ("b16_spread", "spread", "{:.0%}"),
    ("b16_cpu_util", "cpu", "{:.2f}"),
    ("gflop_per_audio_second", "GF/aud-s", "{:.3f}"),
    ("b16_gflop_per_s", "GF/s b16", "{:.1f}"),
    ("matmul_gflop_per_s", "mm GF/s", "{:.1f}"),
    ("matmul_cpu_util", "mm cpu", "{:.2f}"),
    ("ratio_vs_matmul", "ratio", "{:.2f}"),
    ("frontend_share_b16", "fe share", "{:.0%}"),
    ("fold_speedup", "fold x", "{:.2f}"),
    ("folder_ratio", "folder/model", "{:.2f}"),
    ("long_file", "long file", "{}"),
    ("long_audio_per_s", "long x-rt", "{:.1f}"),
    ("peak_rss_target_mb", "peak RSS MB", "{:.0f}"),
]


def _flat(row: dict) -> dict:
    flat = {k: v for k, v in row.items() if not isinstance(v, (list, dict))}
    mem = row.get("memory") or {}
    if mem:
        for key in ("peak_rss_mb", "baseline_rss_mb", "peak_rss_target_mb", "output_mb", "long_audio_per_s", "extract_s",
                    "decode_s"):
            flat[key] = mem.get(key)
        flat["long_file_minutes"] = mem.get("file_minutes")
        flat["rss_extrapolated"] = mem.get("extrapolated")
        flat["long_file"] = (
            f"{mem.get('file_minutes')}min" + ("->60 extrap" if mem.get("extrapolated") else "")
            if "error" not in mem
            else "error"
        )
        flat["rss_error"] = mem.get("error")
    for k, v in (row.get("flops_per_window") or {}).items():
        flat[f"mflop_per_window_{k}"] = round(v / 1e6, 2)
    return flat


def print_table(rows: list[dict]) -> None:
    flats = [_flat(r) for r in rows]
    cells = [[h for _, h, _ in COLUMNS]]
    for f in flats:
        line = []
        for key, _, fmt in COLUMNS:
            v = f.get(key)
            line.append("-" if v is None else fmt.format(v))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    for j, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def write_results(out_dir: Path, tag: str, payload: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath = out_dir / f"throughput-{tag}.json"
    cpath = out_dir / f"throughput-{tag}.csv"
    jpath.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    flats = [_flat(r) for r in payload["results"]]
    keys: list[str] = []
    for f in flats:
        keys.extend(k for k in f if k not in keys)
    with open(cpath, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(flats)
    return jpath, cpath


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="models to run (default: all of mirzoo.list_models())")
    p.add_argument("--quick", action="store_true", help="3 repeats and a 5-minute long file instead of 1 hour")
    p.add_argument("--repeats", type=int, help="timed repeats per measurement (default 5, --quick 3)")
    p.add_argument("--no-memory", action="store_true", help="skip the long-file peak-RSS subprocesses")
    p.add_argument(
        "--memory-budget", type=float, default=90.0,
        help="seconds a model may take on the 1-hour file; slower ones run 20 minutes and extrapolate "
        f"(never for {', '.join(ALWAYS_FULL_HOUR)}) (default 90)",
    )
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--hop", type=float, default=None, help="clip models' patch hop in seconds (default: the model's)")
    p.add_argument("--batch", type=int, default=16, help="batch of the 'b16' columns (default 16; 64+ on a GPU)")
    p.add_argument("--mixed-precision", action="store_true", help="Keras mixed_float16 policy (GPUs)")
    p.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default=None,
                   help="mirzoo.load(..., precision=...) for every model (bfloat16: CPUs with AMX/AVX512-BF16)")
    p.add_argument("--folder", action="store_true",
                   help="also time 200 ten-second FLAC files end to end against model-only throughput")
    p.add_argument("--core-venv", action="store_true",
                   help="run the long-file children in a venv with mirzoo's required dependencies only "
                   "(built once under the bench cache: needs the package index)")
    p.add_argument("--memory-python", default=None, help="interpreter for the long-file children (default: this one)")
    p.add_argument("--_child", nargs=3, metavar=("MODEL", "PATH", "HOP"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:
        child_main(*args._child)
        return 0

    import keras

    import mirzoo

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    backend = keras.backend.backend()
    env = environment(backend)
    env["mixed_precision"] = bool(args.mixed_precision)
    env["precision"] = args.precision
    if args.precision:
        os.environ[PRECISION_ENV] = args.precision  # read by every load, here and in the long-file children
    tag = env_tag(env, args.hop, args.batch, args.mixed_precision, args.precision)
    if args.core_venv and args.memory_python:
        p.error("--core-venv and --memory-python: choose one")
    memory_python = args.memory_python or sys.executable
    if args.core_venv and not args.no_memory:
        print("== building or reusing the core-dependencies venv for the long-file children ...", flush=True)
        memory_python = str(core_venv(CACHE_DIR / "core-venv"))
        tag += "-corevenv"
    env["memory_python"] = memory_python
    repeats = args.repeats or (3 if args.quick else 5)
    models = args.models or mirzoo.list_models()
    unknown = [n for n in models if n not in mirzoo.list_models()]
    if unknown:
        p.error(f"unknown model(s) {unknown}; available: {mirzoo.list_models()}")

    print("== environment")
    for k, v in env.items():
        print(f"  {k:11s} {v}")
    load_start = os.getloadavg()
    print(f"  loadavg    {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} (at start)")
    started = time.perf_counter()
    mm0 = matmul_gflops(tries=5)
    print(f"  numpy float32 2048x2048 matmul: {mm0:.1f} GFLOP/s (best of 5)", flush=True)

    n_clips = max(N_CLIPS, args.batch)
    clips = [synth(CLIP_SECONDS, seed=s) for s in range(n_clips)]
    rows = []
    print(f"\n== throughput ({repeats} repeats, median; batch {args.batch} = {n_clips} x {CLIP_SECONDS:.0f} s clips"
          f"{'' if args.hop is None else f', hop {args.hop:g} s'})", flush=True)
    for name in models:
        t0 = time.perf_counter()
        row = bench_model(name, clips, repeats, args.hop, args.batch)
        print(
            f"  {name:20s} b1 {row['b1_audio_per_s']:7.1f}x  b16 {row['b16_audio_per_s']:7.1f}x  "
            f"{row['b16_gflop_per_s']:6.1f} GF/s = {row['ratio_vs_matmul']:.2f} x matmul "
            f"({row['matmul_gflop_per_s']:.1f})  fold x{row['fold_speedup'] or 1:.2f}  [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
        rows.append(row)

    if args.folder:
        print("\n== end to end: 200 x 10 s FLAC files (44.1 kHz) vs model-only on the decoded audio", flush=True)
        for row in rows:
            row["folder"] = bench_folder(row["model"], args.hop, args.batch)
            row["folder_ratio"] = row["folder"]["ratio"]
            f = row["folder"]
            print(f"  {row['model']:20s} end to end {f['end_to_end_audio_per_s']:.1f}x, model only "
                  f"{f['model_only_audio_per_s']:.1f}x: ratio {f['ratio']:.2f}", flush=True)

    if not args.no_memory:
        print(f"\n== peak RSS on a long file (one subprocess per model; target < {RSS_TARGET_MB:.0f} MB)", flush=True)
        for row in rows:
            t0 = time.perf_counter()
            mem = bench_memory(row["model"], row["b16_audio_per_s"], args.quick, args.memory_budget, args.hop,
                               python=memory_python)
            row["memory"] = mem
            if "error" in mem:
                print(f"  {row['model']:20s} ERROR {mem['error']}", flush=True)
                continue
            extra = " (extrapolated to 60 min)" if mem["extrapolated"] else ""
            print(
                f"  {row['model']:20s} {mem['file_minutes']} min: peak {mem['peak_rss_mb']:.0f} MB "
                f"(baseline {mem['baseline_rss_mb']:.0f} MB, returned embeddings {mem.get('output_mb', 0):.0f} MB), "
                f"{mem['long_audio_per_s']:.1f}x realtime, "
                f"decode {mem['decode_s']:.1f} s -> {mem['target_minutes']} min: "
                f"{mem['peak_rss_target_mb']:.0f} MB{extra}  [{time.perf_counter() - t0:.0f} s]"
                f"{'' if not mem.get('optional_installed') else '  (installed: ' + ', '.join(mem['optional_installed']) + ')'}",
                flush=True,
            )

    load_end = os.getloadavg()
    mm_all = [v for r in rows for v in r["matmul_samples"]] + [mm0]
    noise = {
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in load_end],
        "matmul_min_gflop_per_s": round(min(mm_all), 2),
        "matmul_max_gflop_per_s": round(max(mm_all), 2),
        "matmul_spread": round((max(mm_all) - min(mm_all)) / statistics.median(mm_all), 3),
        "max_b16_spread": max((r["b16_spread"] for r in rows), default=None),
    }
    print(f"\n== results ({tag})")
    print_table(rows)
    print(
        f"\nnoise: loadavg {load_start[0]:.2f} -> {load_end[0]:.2f} on {env['cores']} cores; matmul reference "
        f"ranged {noise['matmul_min_gflop_per_s']:.1f}-{noise['matmul_max_gflop_per_s']:.1f} GFLOP/s "
        f"({noise['matmul_spread']:.0%} spread) during the run; worst batch-16 spread "
        f"{noise['max_b16_spread']:.0%}. Ratios use the matmul measured next to each model."
    )
    contended = [
        r["model"]
        for r in rows
        if r["matmul_gflop_per_s"] < 0.75 * noise["matmul_max_gflop_per_s"]
        or (env["cores"] > 1 and (r.get("matmul_cpu_util") or env["cores"]) < 0.75 * env["cores"])
    ]
    if contended:
        print(
            f"CONTENDED: timings for {', '.join(contended)}: the matmul reference next to it ran "
            f"below 75% of the run's best, or kept fewer than 75% of the {env['cores']} cores busy. Other "
            "processes were using the cores; a contended run understates what multi-threaded kernels gain "
            "from free cores, so those ratios read high and are not comparable with uncontended ones."
        )
    noise["contended_models"] = contended
    target = MATMUL_TARGET.get(keras.backend.backend())
    if target is not None:
        below = [f"{r['model']} {r['ratio_vs_matmul']:.2f}" for r in rows
                 if r.get("ratio_vs_matmul") is not None and r["ratio_vs_matmul"] < target]
        print(f"batch-16 share of the matmul ceiling >= {target} on {keras.backend.backend()}: "
              + ("met by all" if not below else "BELOW for " + ", ".join(below)))
    over = [r["model"] for r in rows if (r.get("memory") or {}).get("peak_rss_target_mb", 0) >= RSS_TARGET_MB]
    if not args.no_memory:
        print(f"1-hour peak RSS < {RSS_TARGET_MB:.0f} MB: " + ("met by all" if not over else
                                                              f"EXCEEDED by {', '.join(over)}"))

    payload = {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "settings": {
            "quick": args.quick,
            "repeats": repeats,
            "clip_seconds": CLIP_SECONDS,
            "clips_in_batch16": N_CLIPS,
            "sample_rate": SR,
            "matmul": "numpy float32 2048x2048 @ 2048x2048, best of 3, measured before each model's repeats",
            "flops": "2 per multiply-add; conv/dense/GRU layers + front-end conv kernel and projection; "
            "elementwise ops (BN, ELU, pooling, dB) not counted; includes batch padding windows",
            "memory_budget_s": args.memory_budget,
            "hop_s": args.hop,
            "batch": args.batch,
            "mixed_precision": bool(args.mixed_precision),
        },
        "environment": env,
        "matmul_gflop_per_s_start": round(mm0, 2),
        "noise": noise,
        "wall_s": round(time.perf_counter() - started, 1),
        "results": rows,
    }
    jpath, cpath = write_results(args.out_dir, tag, payload)
    print(f"\nwrote {jpath.relative_to(REPO) if jpath.is_relative_to(REPO) else jpath} and {cpath.name} "
          f"({payload['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
