"""Export a mirzoo model, front-end included, to SavedModel, TFLite or ONNX.

>>> from mirzoo.export import export
>>> export("crnn-tagging", "onnx", "crnn.onnx")                    # doctest: +SKIP
>>> export("cnn-tagging", "tflite", "cnn.tflite", layers=["embedding", "tags"])  # doctest: +SKIP

The exported graph takes **waveforms** and returns the model's named layers:

* input ``waveform``: float32 ``[batch, samples]``, mono, in [-1, 1], at the model's
  sample rate; the batch dimension is dynamic.  ``samples`` is fixed: the patch length
  for clip models (``patch_samples``, 3 s), and ``samples`` (default: the model's
  ``patch_seconds``, 10 s for ``dense-frame``) for frame models.  Windowing of long
  audio, resampling and pooling stay outside (see :meth:`mirzoo.Extractor.extract`).
* outputs: one per layer, named after it: ``[batch, D]`` for clip models,
  ``[batch, frames, D]`` for frame models (``frames = 1 + samples // hop_length``).
* a frame model whose ``tag()`` reads a ``clip_tags`` record (``tcn-music``) gives it in the
  description (key ``clip_tags``, with a ``how`` line) when every layer it reads is exported:
  the pooled regression from a clip's frames to its tags, in base64 arrays, so users of the
  file can read the same clip tags as :meth:`mirzoo.Extractor.tag`.

Formats:

``"savedmodel"``
    A TensorFlow SavedModel directory (signature ``serving_default``), plus
    ``mirzoo.json`` describing the input, outputs and tag labels.
``"tflite"``
    A TFLite (LiteRT) flatbuffer with **builtin ops only** (no ``SELECT_TF_OPS``): the
    front-end is a strided convolution and the GRUs are unrolled, so nothing needs the
    TF runtime.  The same description is stored as the model's ``mirzoo`` metadata entry.
    ``quantize="float16"`` stores the weights as float16 (half the size, computed in
    float32); ``quantize="int8"`` quantises the network's weights and activations to int8,
    calibrated on patches of the shipped example clip (``mirzoo/data/example.flac``) at
    three gains; the front-end stays float32 (int8 cannot hold the range of its Fourier
    kernels and power spectrum), and so do the input and outputs.
    Parity with the float model is measured by ``benchmarks/quantized_export.py``.
``"onnx"``
    ONNX via ``tf2onnx`` (Keras' ``export(format="onnx")``), no RFFT or complex ops,
    runs on onnxruntime; the description is in ``metadata_props["mirzoo"]``.  Needs
    ``pip install 'mirzoo[export]'``.

Every export is written under a temporary name in the target's folder and renamed
into place, so an interrupted export leaves nothing half-written.  Exporting needs the
``tensorflow`` Keras backend (the default).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import keras
import numpy as np

from mirzoo._version import __version__
from mirzoo.audio import load_audio
from mirzoo.errors import MirzooError, ParameterError
from mirzoo.fileio import atomic_directory, atomic_file
from mirzoo.loader import as_extractor
from mirzoo.spec import DERIVED_LAYERS

__all__ = ["export", "FORMATS", "QUANTIZATIONS", "export_description", "read_tflite_metadata", "calibration_windows"]

#: TFLite quantisations of :func:`export` (``quantize=``).
QUANTIZATIONS = ("float16", "int8")

#: Export formats and the aliases accepted for them.
FORMATS = {
    "savedmodel": "savedmodel",
    "saved_model": "savedmodel",
    "tf_saved_model": "savedmodel",
    "tflite": "tflite",
    "litert": "tflite",
    "onnx": "onnx",
}

_SUFFIX_FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


def _format_of(fmt: Optional[str], path: Path) -> str:
    if fmt is None:
        guess = _SUFFIX_FORMATS.get(path.suffix.lower())
        if guess is None and path.suffix == "":
            guess = "savedmodel"
        if guess is None:
            raise ParameterError(
                f"cannot tell the export format from '{path}': pass fmt= one of "
                f"'savedmodel', 'tflite', 'onnx' (or use a .onnx/.tflite file or a directory)"
            )
        return guess
    key = str(fmt).lower()
    if key not in FORMATS:
        raise ParameterError(f"fmt={fmt!r} is not an export format: expected 'savedmodel', 'tflite' or 'onnx'")
    return FORMATS[key]


def _input_samples(extractor, samples: Optional[int]) -> int:
    if extractor.spec.is_clip:
        if samples is not None and int(samples) != extractor.patch_samples:
            raise ParameterError(
                f"samples={samples!r}: model {extractor.name!r} is a clip model with a fixed patch of "
                f"{extractor.patch_samples} samples; leave samples=None"
            )
        return int(extractor.patch_samples)
    if samples is None:
        return int(round(extractor.spec.patch_seconds * extractor.sample_rate))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < extractor.frontend.min_samples():
        raise ParameterError(
            f"samples={samples!r} must be an integer >= {extractor.frontend.min_samples()} "
            f"(the front-end's shortest input)"
        )
    return samples


def _output_layers(extractor, layers: Optional[Sequence[str]]) -> list[str]:
    """The network outputs to export: ``layers``, checked, or by default every layer of the model that the
    network computes (not the :data:`~mirzoo.spec.DERIVED_LAYERS`, which come after it)."""
    if layers is None:
        return [k for k in extractor.layers if k not in DERIVED_LAYERS]
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers)
    derived = [n for n in names if n in DERIVED_LAYERS and n in extractor.layers]
    if derived:
        raise ParameterError(
            f"layers={names!r}: {derived} of model {extractor.name!r} are computed after the network from its "
            f"outputs (beat tracking, in numpy), so an exported network cannot hold them; export the outputs "
            f"they read and compute them with mirzoo, or leave them out"
        )
    unknown = [n for n in names if n not in extractor.layers]
    if unknown or not names:
        raise ParameterError(
            f"layers={list(layers)!r}: {unknown or 'empty'} not layer(s) of model {extractor.name!r}; "
            f"valid layers: {', '.join(extractor.layers)}"
        )
    return list(dict.fromkeys(names))


#: how an exported description's ``clip_tags`` record turns the exported outputs into clip-level tags
CLIP_TAGS_HOW = ("concatenate the 'sources' outputs of every frame of the clip (all its windows), frame by frame; "
                 "pool them over the frames ('mean': the mean of each column; 'mean+std': every mean, then every "
                 "population standard deviation; 'mean+std+max': then every maximum); subtract 'mean' and divide by 'scale'; then "
                 "sigmoid(x @ weights + bias) gives one probability per label of 'head'. The arrays are base64 of "
                 "little-endian values of 'dtype' and 'shape'.")


def export_description(extractor, layers: Sequence[str], samples: int, fmt: str) -> dict:
    """What an exported file contains: input contract, outputs, labels, provenance."""

    frontend = extractor.frontend
    out_shapes = {}
    for k in layers:
        dim = int(extractor.layers[k])
        out_shapes[k] = [None, frontend.n_frames(samples), dim] if extractor.spec.is_frame else [None, dim]
    return {
        "format": fmt,
        "mirzoo_version": __version__,
        "model": extractor.name,
        "pretrained": extractor.pretrained,
        "output_kind": extractor.output_kind,
        "sample_rate": extractor.sample_rate,
        "input": {
            "name": "waveform",
            "shape": [None, samples],
            "dtype": "float32",
            "description": f"mono waveforms in [-1, 1] at {extractor.sample_rate} Hz",
        },
        "outputs": out_shapes,
        "patch_seconds": extractor.spec.patch_seconds,
        "patch_hop_seconds": extractor.spec.patch_hop_seconds,
        "hop_length": extractor.hop_length,
        # labels of every head among the exported outputs (e.g. dense-frame's pitch classes and tags)
        "labels": {head: labels for head, labels in extractor.heads.items() if head in out_shapes},
        "license": extractor.spec.license,
        "clip_tags": _clip_tags_description(extractor, out_shapes),
    }


def _clip_tags_description(extractor, out_shapes: Mapping[str, list]) -> Optional[dict]:
    """The model's ``clip_tags`` record (what :meth:`~mirzoo.Extractor.tag` reads for its head) when every
    layer it reads is exported, so a user of the file can compute the same clip-level tags from the
    outputs of all of a clip's windows; ``None`` otherwise."""
    record = extractor.spec.clip_tags
    if record is None or any(s not in out_shapes for s in record["sources"]):
        return None
    return dict(record, how=CLIP_TAGS_HOW)


def _submodel(extractor, layers: list[str]):
    model = extractor.keras_model
    outputs = model.output
    if not isinstance(outputs, dict):  # pragma: no cover - every zoo model outputs a dict
        raise MirzooError(f"model {extractor.name!r} does not output a dict of named layers")
    return keras.Model(model.inputs, {k: outputs[k] for k in layers}, name=f"{model.name}_export")


def _write_savedmodel(sub, samples: int, directory: Path) -> None:
    import tensorflow as tf  # deferred: TensorFlow itself only where it is used (the Keras backend may be jax)

    archive = keras.export.ExportArchive()
    archive.track(sub)
    archive.add_endpoint(
        "serve",
        lambda waveform: sub(waveform, training=False),
        input_signature=[tf.TensorSpec([None, samples], tf.float32, name="waveform")],
    )
    archive.write_out(str(directory), verbose=False)


def calibration_windows(extractor, samples: int, gains=(1.0, 0.5, 0.125)) -> list:
    """Windows of ``samples`` samples of the shipped example clip (every half window, at each
    of ``gains``): the int8 calibration set, float32 ``[1, samples]`` each."""
    y = load_audio(Path(__file__).resolve().parent / "data" / "example.flac", extractor.sample_rate)
    hop = max(1, samples // 2)
    starts = range(0, max(1, y.shape[0] - samples + 1), hop)
    out = []
    for gain in gains:
        for s in starts:
            piece = np.zeros(samples, np.float32)
            chunk = y[s : s + samples]
            piece[: chunk.shape[0]] = chunk * gain
            out.append(piece[None])
    return out


def _write_tflite(sub, samples: int, target: Path, description: dict, quantize=None, calibration=None) -> None:
    import tensorflow as tf  # deferred: TensorFlow itself only where it is used (the Keras backend may be jax)

    with tempfile.TemporaryDirectory(prefix=".mirzoo-export-", dir=target.parent) as tmp:
        saved = Path(tmp) / "savedmodel"
        _write_savedmodel(sub, samples, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        try:
            flatbuffer = converter.convert()
            if quantize == "int8":
                flatbuffer = _int8_network(tf, saved, flatbuffer, list(calibration))
        except Exception as exc:  # the converter raises ConverterError and others
            raise MirzooError(
                f"TFLite conversion with builtin ops only failed for {description['model']!r}: {exc}"
            ) from exc
    flatbuffer = _tflite_with_metadata(flatbuffer, description)
    _write_file_atomic(target, lambda f: f.write(flatbuffer))


_FRONTEND_TENSOR = re.compile(r"(^|/)frontend(_\d+)?/")


def _int8_network(tf, saved: Path, float_flatbuffer: bytes, windows: list) -> bytes:
    """int8 weights and activations for the network, float32 for the front-end.

    The front-end's Fourier kernels and its power spectrum span a dynamic range that int8
    cannot hold (quantising them too gave an embedding cosine of ~0.5 against the float
    model); every tensor of the ``frontend`` layer is left float through TFLite's
    quantisation debugger (``denylisted_nodes``), the rest is calibrated on ``windows``.
    """
    interpreter = tf.lite.Interpreter(model_content=float_flatbuffer)
    frontend = sorted({d["name"] for d in interpreter.get_tensor_details() if _FRONTEND_TENSOR.search(d["name"])})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([w] for w in windows)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=frontend)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([w] for w in windows[:2]), debug_options=options
    )
    return bytes(debugger.get_nondebug_quantized_model())


def _tflite_with_metadata(flatbuffer: bytes, description: dict) -> bytes:
    """Add a ``mirzoo`` metadata entry (the JSON description) to a TFLite flatbuffer.

    Uses TensorFlow's flatbuffer helpers; if they are missing (they are not public
    API), the model is returned unchanged.
    """
    try:
        from tensorflow.lite.python import schema_py_generated as schema  # deferred: TensorFlow itself only where it is used (the Keras backend may be jax)
        from tensorflow.lite.tools import flatbuffer_utils  # deferred: TensorFlow itself only where it is used (the Keras backend may be jax)
    except ImportError:  # pragma: no cover - depends on the TensorFlow build
        return flatbuffer
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(description).encode("utf-8"))
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = "mirzoo"
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_tflite_metadata(path: Union[str, os.PathLike]) -> Optional[dict]:
    """The ``mirzoo`` description stored in an exported ``.tflite`` file (None if absent)."""
    from tensorflow.lite.tools import flatbuffer_utils  # deferred: TensorFlow itself only where it is used (the Keras backend may be jax)

    model = flatbuffer_utils.read_model(os.fspath(path))
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == "mirzoo":
            return json.loads(bytes(bytearray(model.buffers[entry.buffer].data)).decode("utf-8"))
    return None


def _write_onnx(sub, samples: int, target: Path, description: dict, opset: Optional[int]) -> None:
    missing = [m for m in ("tf2onnx", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise MirzooError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'mirzoo[export]' "
            f"(tf2onnx, onnx; onnxruntime to run the result)"
        )
    import onnx  # deferred: optional dependency (pip install 'mirzoo[export]')

    with atomic_file(target, suffix=".onnx") as tmp:
        spec = [keras.InputSpec(shape=(None, samples), dtype="float32", name="waveform")]
        kwargs = {} if opset is None else {"opset_version": int(opset)}
        with warnings.catch_warnings():
            # keras' numpy-2 shim for tf2onnx touches the deprecated np.object
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*np.object.*")
            sub.export(tmp, format="onnx", verbose=False, input_signature=spec, **kwargs)
        proto = onnx.load(tmp)
        for value in list(proto.graph.input) + list(proto.graph.output):
            dims = value.type.tensor_type.shape.dim
            if len(dims) and not dims[0].HasField("dim_value"):
                dims[0].dim_param = "batch"  # tf2onnx names it "unk__N"
        entry = proto.metadata_props.add()
        entry.key, entry.value = "mirzoo", json.dumps(description)
        proto.producer_name = f"mirzoo {description['mirzoo_version']} via {proto.producer_name}"
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)


def _write_file_atomic(target: Path, write) -> None:
    with atomic_file(target) as tmp, open(tmp, "wb") as f:
        write(f)


def export(
    model,
    fmt: Optional[str],
    path: Union[str, os.PathLike],
    *,
    layers: Optional[Sequence[str]] = None,
    samples: Optional[int] = None,
    overwrite: bool = False,
    opset: Optional[int] = None,
    quantize: Optional[str] = None,
) -> Path:
    """Export ``model`` (front-end included: waveform in, named layers out).

    Parameters
    ----------
    model : str, os.PathLike or Extractor
        A loaded :class:`~mirzoo.Extractor`, or anything :func:`mirzoo.load` accepts.
    fmt : {"savedmodel", "tflite", "onnx"} or None
        Output format (``"litert"``, ``"saved_model"`` are aliases).  None: from the
        path (``.onnx``, ``.tflite``, no suffix: SavedModel directory).
    path : path
        Output file (``.tflite``, ``.onnx``) or directory (SavedModel).
    layers : list of str, optional
        Layers to output (default: every named layer of the model).
    samples : int, optional
        Input length for frame models (default ``patch_seconds`` of audio).  Clip
        models always take one patch (``patch_samples``).
    overwrite : bool
        Replace an existing ``path``; otherwise that is an error.
    opset : int, optional
        ONNX opset (default: tf2onnx's).
    quantize : {"float16", "int8"}, optional
        TFLite only: float16 weights, or int8 weights and activations calibrated on the
        shipped example clip (see the module docstring).  Default: float32.

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    kind = _format_of(fmt, target)
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ParameterError(f"quantize={quantize!r} is not one of {QUANTIZATIONS} (or None for float32)")
        if kind != "tflite":
            raise ParameterError(f"quantize={quantize!r} applies to the tflite format only, not {kind!r}")
    if keras.backend.backend() != "tensorflow":
        raise ParameterError(
            f"export needs the tensorflow Keras backend, but KERAS_BACKEND is "
            f"{keras.backend.backend()!r}: run with KERAS_BACKEND=tensorflow"
        )
    if target.exists() and not overwrite:
        raise ParameterError(f"'{target}' already exists: pass overwrite=True (--overwrite) to replace it")
    if kind != "savedmodel" and target.is_dir():
        raise ParameterError(f"'{target}' is a directory: a {kind} export is a single file")
    extractor = as_extractor(model)
    names = _output_layers(extractor, layers)
    n = _input_samples(extractor, samples)
    description = export_description(extractor, names, n, kind)
    description["quantize"] = quantize
    sub = _submodel(extractor, names)
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "savedmodel":
        with atomic_directory(target) as tmp:
            _write_savedmodel(sub, n, tmp)
            (tmp / "mirzoo.json").write_text(json.dumps(description, indent=2), encoding="utf-8")
    elif kind == "tflite":
        calibration = calibration_windows(extractor, n) if quantize == "int8" else None
        _write_tflite(sub, n, target, description, quantize, calibration)
    else:
        _write_onnx(sub, n, target, description, opset)
    return target
