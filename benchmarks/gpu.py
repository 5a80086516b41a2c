#!/usr/bin/env python
"""Every model on an accelerator: throughput at large batches, float32 and mixed precision, with parity.

Usage (on a machine with a GPU; the backend is Keras', so run it once per backend)::

    KERAS_BACKEND=jax python benchmarks/gpu.py                     # float32, mixed_bfloat16, mixed_float16
    KERAS_BACKEND=torch python benchmarks/gpu.py --batch 256
    python benchmarks/gpu.py --allow-cpu --models cnn-tagging --batch 4 --repeats 1   # smoke run, no GPU

For each dtype policy and model it reports

* throughput in seconds of audio per second at batch 1 and at ``--batch`` (64 by default), on
  30 s clips with the front-end included (:func:`throughput.bench_model`, the same measurement as
  ``throughput.py``; the ``b16`` fields hold the ``--batch`` figures);
* the model's GFLOP/s at that batch against the **device's own matmul ceiling** in the policy's
  compute dtype (an 8192 x 8192 x 8192 product through ``keras.ops.matmul`` on the accelerator,
  measured at the start of the run; on the JAX backend float32 products may run as TF32, as
  XLA does by default on NVIDIA GPUs, and the model does the same);
* for the mixed policies, **parity with float32 on the same device**: the smallest cosine between
  the float32 and mixed-precision embedding of the same window, the largest difference relative
  to the largest float32 value, and the largest change of any head's output (tag, key, chord... probabilities);
* on the JAX backend, whether the banded-matmul form of the single-channel convolutions
  (:mod:`mirzoo.nn.banded`, chosen for XLA's CPU convolutions) also pays on the accelerator.

Results go to ``benchmarks/results/gpu-<os>-<arch>-<N>cpu-py<X.Y>-<backend>-gpu-b<N>.{json,md}``,
written after every policy, so a run stopped early keeps what it measured.  It never runs in the
tests: no test may depend on an accelerator.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: take GPU memory as needed

import numpy as np  # noqa: E402

import throughput as tp  # noqa: E402  (benchmarks/throughput.py: the shared timing and FLOP count)

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
COMPUTE_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
PARITY_CLIPS = 8


def device_matmul_tflops(dtype: str, n: int = 8192, chain: int = 10, tries: int = 3) -> float:
    """TFLOP/s of ``chain`` back-to-back ``n x n @ n x n`` products in ``dtype`` through ``keras.ops``
    (on the backend's default device), best of ``tries``; one scalar comes back to the host per try."""
    import keras

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n), dtype=dtype)

    def run():
        c = a
        for _ in range(chain):
            c = keras.ops.matmul(c, b)
        return float(keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.cast(c[:1, :1], "float32"))))

    run()  # compile / warm up
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 * chain / best / 1e12


def embeddings_of(extractor, clips, batch: int) -> np.ndarray:
    out = extractor.extract(clips, sr=tp.SR, batch_size=batch)
    return np.concatenate([np.asarray(e.embeddings, dtype=np.float32) for e in out])


def head_outputs(extractor, clips, batch: int):
    """Every head's per-window outputs, flattened (None for a model without heads)."""
    if not extractor.heads:
        return None
    values = []
    for head in extractor.heads:
        out = extractor.predict(clips, sr=tp.SR, batch_size=batch, pool=None, head=head)
        values += [np.asarray(o, dtype=np.float32).reshape(-1) for o in out]
    return np.concatenate(values)


def parity(ref: np.ndarray, got: np.ndarray) -> dict:
    cos = (ref * got).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(got, axis=-1) + 1e-12)
    return {
        "min_cosine": round(float(np.min(cos)), 6),
        "max_rel_diff": float(f"{np.max(np.abs(ref - got)) / (np.max(np.abs(ref)) + 1e-12):.3g}"),
        "finite": bool(np.isfinite(got).all()),
    }


def banded_check(extractor, clips, batch: int, repeats: int) -> dict | None:
    """JAX only: batch time with the banded-matmul convolutions (what the runner builds) against the
    folded model without them, interleaved.  None when the model has no convolution to convert."""
    from mirzoo.nn.fold import fold_batch_norm

    current = extractor.inference_model
    plain = fold_batch_norm(extractor.model)
    if len(plain.layers) == len(current.layers) and all(
        type(a) is type(b) for a, b in zip(plain.layers, current.layers)
    ):
        return None
    keys = extractor.resolve_layers(None)[1]
    t_b, t_p = [], []

    def run_with(model):
        extractor._inference_model = model
        extractor._networks = {}
        extractor.network_for(keys)
        return tp.timed(lambda: extractor.extract(clips, sr=tp.SR, batch_size=batch))[0]

    try:
        run_with(plain)  # trace both
        run_with(current)
        for _ in range(repeats):
            t_p.append(run_with(plain))
            t_b.append(run_with(current))
    finally:
        extractor._inference_model = current
        extractor._networks = {}
    return {"banded_s": round(statistics.median(t_b), 4), "conv_s": round(statistics.median(t_p), 4),
            "banded_speedup": round(statistics.median(t_p) / statistics.median(t_b), 3)}


def write(out_dir: Path, tag: str, payload: dict) -> Path:
    from mirzoo.fileio import atomic_file, write_json_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    jpath = out_dir / f"gpu-{tag}.json"
    write_json_atomic(jpath, payload)
    lines = [f"# Accelerator throughput ({payload['environment'].get('gpu')}, {payload['environment']['backend']}, "
             f"batch {payload['settings']['batch']})", "",
             "| policy | model | b1 audio s/s | batch audio s/s | GFLOP/s | x device matmul | min cosine vs float32 | "
             "max tag change | banded speedup |", "|---|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        par = r.get("parity") or {}
        lines.append(
            f"| {r['policy']} | {r['model']} | {r['b1_audio_per_s']:.0f} | {r['b16_audio_per_s']:.0f} | "
            f"{r['b16_gflop_per_s']:.0f} | {r['ratio_vs_device_matmul']:.3f} | "
            f"{par.get('min_cosine', '-')} | {r.get('max_tag_change', '-')} | "
            f"{(r.get('banded') or {}).get('banded_speedup', '-')} |")
    mm = payload["device_matmul_tflops"]
    lines += ["", "Device matmul ceiling (8192^3 through keras.ops, TFLOP/s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in mm.items()), ""]
    with atomic_file(out_dir / f"gpu-{tag}.md") as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    return jpath


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="models to run (default: all)")
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES,
                   help="Keras dtype policies, float32 first (parity is measured against it)")
    p.add_argument("--batch", type=int, default=64, help="windows per forward pass (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median; default 3)")
    p.add_argument("--allow-cpu", action="store_true", help="run without an accelerator (a smoke run)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    import keras

    import mirzoo

    backend = keras.backend.backend()
    env = tp.environment(backend)
    if not env.get("gpu") and not args.allow_cpu:
        print(f"no accelerator visible to the {backend} backend: nothing to measure (--allow-cpu for a smoke run)")
        return 2
    models = args.models or mirzoo.list_models()
    unknown = [n for n in models if n not in mirzoo.list_models()]
    if unknown:
        p.error(f"unknown model(s) {unknown}; available: {mirzoo.list_models()}")
    policies = list(dict.fromkeys(args.policies))
    if "float32" in policies:
        policies.remove("float32")
        policies.insert(0, "float32")
    tag = tp.env_tag(env, batch=args.batch)
    print("== environment")
    for k, v in env.items():
        print(f"  {k:11s} {v}")

    mm = {}
    for pol in policies:
        dt = COMPUTE_DTYPE[pol]
        n = 8192 if env.get("gpu") else 512
        mm[dt] = round(device_matmul_tflops(dt, n=n, chain=10 if env.get("gpu") else 2), 2)
        print(f"  device matmul {dt}: {mm[dt]:.1f} TFLOP/s", flush=True)

    n_clips = max(tp.N_CLIPS, args.batch)
    clips = [tp.synth(tp.CLIP_SECONDS, seed=s) for s in range(n_clips)]
    probe = clips[:PARITY_CLIPS]
    payload = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "environment": env,
               "settings": {"batch": args.batch, "repeats": args.repeats, "clips": n_clips,
                            "clip_seconds": tp.CLIP_SECONDS, "policies": policies, "parity_clips": PARITY_CLIPS},
               "device_matmul_tflops": mm, "results": []}
    reference: dict[str, tuple] = {}
    started = time.perf_counter()
    for pol in policies:
        keras.mixed_precision.set_global_policy(pol)
        print(f"\n== {pol} (batch {args.batch}, {n_clips} x {tp.CLIP_SECONDS:.0f} s clips)", flush=True)
        for name in models:
            t0 = time.perf_counter()
            row = tp.bench_model(name, clips, args.repeats, None, args.batch)
            row["policy"] = pol
            ceiling = mm[COMPUTE_DTYPE[pol]] * 1e3
            row["device_matmul_gflop_per_s"] = ceiling
            row["ratio_vs_device_matmul"] = round(row["b16_gflop_per_s"] / ceiling, 4)
            m = mirzoo.load(name)
            emb = embeddings_of(m, probe, args.batch)
            tags = head_outputs(m, probe, args.batch)
            if pol == "float32":
                reference[name] = (emb, tags)
            elif name in reference:
                row["parity"] = parity(reference[name][0], emb)
                if tags is not None and reference[name][1] is not None:
                    row["max_tag_change"] = round(float(np.max(np.abs(tags - reference[name][1]))), 5)
            if backend == "jax":
                row["banded"] = banded_check(m, clips, args.batch, args.repeats)
            payload["results"].append(row)
            par = row.get("parity") or {}
            print(f"  {name:20s} b1 {row['b1_audio_per_s']:8.0f}x  b{args.batch} {row['b16_audio_per_s']:9.0f}x  "
                  f"{row['b16_gflop_per_s']:8.0f} GF/s = {row['ratio_vs_device_matmul']:.3f} x device matmul"
                  + (f"  cos {par['min_cosine']:.5f}" if par else "")
                  + (f"  tags +-{row['max_tag_change']:.4f}" if "max_tag_change" in row else "")
                  + (f"  banded x{row['banded']['banded_speedup']:.2f}" if row.get("banded") else "")
                  + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
        payload["wall_s"] = round(time.perf_counter() - started, 1)
        out = write(args.out_dir, tag, payload)
    keras.mixed_precision.set_global_policy("float32")
    print(f"\nwrote {out} ({payload['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
