#!/usr/bin/env python
"""Per-layer timings of the single-channel convolutions as convolutions and as matmuls.

Usage::

    KERAS_BACKEND=jax python benchmarks/conv_as_matmul.py            # the zoo's one-channel Conv2D layers
    python benchmarks/conv_as_matmul.py --models random-cnn-musical  # tensorflow: the same layers there
    TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/conv_as_matmul.py      # ... with oneDNN's convolutions

For every ``Conv2D`` with one input channel, stride 1 and dilation 1 in the BN-folded copy of
each model, a batch of ``--batch`` random inputs of the layer's input shape runs through

* ``conv``: the layer itself (the backend's convolution);
* ``banded1`` / ``banded2``: :class:`mirzoo.nn.banded.MatmulConv2D`, Toeplitz along rows / columns
  (only along an axis of fixed length, and only where that costs at most 70x the arithmetic);
* ``patches``: the same layer in its im2col form;

each as a one-layer Keras model called with ``predict_on_batch`` (compiled by the backend; one
warm-up call), the forms interleaved round by round so they see the same machine load.  Reported:
the median milliseconds per batch, the convolution's GFLOP/s, and which form
:func:`mirzoo.nn.banded.matmul_plan` picks (the runner applies it on the JAX backend only; on
tensorflow the column says what the JAX rule would pick).  Results go to
``benchmarks/results/conv_as_matmul-<environment>[-contended].json`` (``--contended`` marks a run
while other processes used the cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)

from benchmarks.throughput import env_tag, environment  # noqa: E402

DEFAULT_MODELS = ("cnn-tagging", "crnn-tagging", "random-cnn", "random-cnn-musical", "tcn-music")
#: rows given to a layer whose input has a time axis of unknown length (frame models)
FREE_ROWS = 256


def candidates(model):
    """``(layer, input shape)`` of each stride-1, dilation-1, one-channel ``Conv2D`` of ``model``."""
    import keras

    out = []
    for layer in model.layers:
        if type(layer) is not keras.layers.Conv2D or layer.groups != 1:
            continue
        if tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1):
            continue
        shape = tuple(layer.input.shape)
        if len(shape) == 4 and shape[-1] == 1 and layer.padding in ("same", "valid"):
            out.append((layer, shape))
    return out


def variants(conv, shape):
    """``{form name: one-layer keras.Model}``: the convolution and its matmul forms."""
    import keras

    from mirzoo.nn.banded import MatmulConv2D

    rows = shape[1] if shape[1] is not None else FREE_ROWS
    concrete = (None, rows, shape[2], 1)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    bias = keras.ops.convert_to_numpy(conv.bias) if conv.use_bias else None
    layers = {"conv": conv}
    forms = [("banded", 1, rows), ("banded", 2, shape[2]), ("patches", None, None)]
    for form, axis, n in forms:
        if form == "banded" and (n / conv.kernel_size[axis - 1] > 70 or (conv.padding == "valid" and n < conv.kernel_size[axis - 1])):
            continue
        layer = MatmulConv2D(conv.filters, conv.kernel_size, padding=conv.padding, form=form, axis=axis,
                             axis_length=n, activation=conv.activation)
        layer.build(concrete)
        layer.set_kernel(kernel, bias)
        layers[form + (str(axis) if axis else "")] = layer
    models = {}
    for name, layer in layers.items():
        inputs = keras.Input(concrete[1:])
        models[name] = keras.Model(inputs, layer(inputs))
    return models, concrete


def bench_layer(conv, shape, batch: int, repeats: int) -> dict:
    from mirzoo.nn.banded import matmul_plan

    models, concrete = variants(conv, shape)
    x = np.random.default_rng(0).standard_normal((batch,) + concrete[1:]).astype(np.float32)
    ref = np.asarray(models["conv"].predict_on_batch(x))
    errors = {}
    for name, model in models.items():  # warm-up (compilation) and a check that the forms agree
        out = np.asarray(model.predict_on_batch(x))
        errors[name] = float(np.abs(out - ref).max() / np.abs(ref).max())
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.predict_on_batch(x)
            times[name].append(time.perf_counter() - t0)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    flops = 2 * batch * int(np.prod(ref.shape[1:])) * conv.kernel_size[0] * conv.kernel_size[1]
    plan = matmul_plan(conv, shape)
    picked = "conv" if plan is None else plan["form"] + (str(plan.get("axis")) if plan.get("axis") else "")
    return {"layer": conv.name, "input": list(concrete[1:]), "kernel": list(conv.kernel_size),
            "filters": conv.filters, "padding": conv.padding, "batch": batch, "ms": ms,
            "conv_gflops": flops / (ms["conv"] / 1000) / 1e9, "rule_picks": picked,
            "speedup_of_pick": ms["conv"] / ms[picked], "max_rel_error": errors}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--contended", action="store_true", help="mark the result file: other processes were using the cores")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)

    import keras

    import mirzoo
    from mirzoo.fileio import write_json_atomic
    from mirzoo.nn.fold import fold_batch_norm

    load_start = os.getloadavg()
    rows = []
    for name in args.models:
        model = mirzoo.load(name)
        # the folded model, not inference_model: on jax that has the matmul forms in place already
        for conv, shape in candidates(fold_batch_norm(model.keras_model)):
            row = dict(bench_layer(conv, shape, args.batch, args.repeats), model=name)
            rows.append(row)
            forms = "  ".join(f"{k} {v:7.1f}" for k, v in row["ms"].items())
            print(f"{name:20s} {row['layer']:18s} k={tuple(row['kernel'])!s:9s} F={row['filters']:3d}  ms/batch: {forms}"
                  f"  | conv {row['conv_gflops']:5.1f} GF/s, jax rule: {row['rule_picks']} ({row['speedup_of_pick']:.2f}x)",
                  flush=True)
    env = environment(keras.backend.backend())
    payload = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "environment": env,
               "loadavg_start": [round(v, 2) for v in load_start],
               "loadavg_end": [round(v, 2) for v in os.getloadavg()],
               "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "results": rows}
    # TensorFlow's oneDNN convolutions are on by default only on some CPUs (not this AMD EPYC
    # without AVX-512), and they change the picture: mark a run that turned them on
    onednn = "-onednn" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1" and env["backend"] == "tensorflow" else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"conv_as_matmul-{env_tag(env)}{onednn}{'-contended' if args.contended else ''}.json"
    write_json_atomic(out, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
