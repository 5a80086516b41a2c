"""Clip-level heads fitted on pooled frame layers: a model's ``clip_tags`` record.

A frame model's ``tags`` head scores every frame, and averaging its frames is a poor reading of tags
that describe the whole clip.  A ``clip_tags`` record (``python -m training.musical fit-clip-tags``)
holds a logistic regression from statistics of the clip's frames -- the mean, and with
``pool="mean+std"`` the standard deviation (and with ``"mean+std+max"`` the maximum too), of each of
its ``sources`` -- trunk layers, or head outputs such as the ``tags`` head's own frame probabilities --
to the head's labels.
:meth:`mirzoo.extractor.Extractor.tag` reads it for that head.

Its arrays travel inside the manifest entry (so ``Extractor.save``, the hub and model cards carry them
with no extra file) as ``{"dtype": "float16" | "float32", "shape": [...], "base64": ...}`` (little endian);
:mod:`mirzoo.spec` checks their sizes, this module decodes them.
"""

from __future__ import annotations

import base64
import functools
from typing import Any, Mapping

import numpy as np

from mirzoo.embeddings import pool_embeddings
from mirzoo.errors import ParameterError

__all__ = ["encode_array", "decode_array", "clip_features", "clip_tag_probabilities"]

_DTYPES = {"float16": "<f2", "float32": "<f4"}


def encode_array(values: np.ndarray, dtype: str = "float32") -> dict:
    """``values`` as a JSON-friendly record: ``{"dtype", "shape", "base64"}`` (little endian)."""
    if dtype not in _DTYPES:
        raise ParameterError(f"dtype={dtype!r}: expected one of {sorted(_DTYPES)}")
    a = np.ascontiguousarray(np.asarray(values, dtype=_DTYPES[dtype]))
    return {"dtype": dtype, "shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(record: Mapping[str, Any]) -> np.ndarray:
    """The float64 array of an :func:`encode_array` record (its size is checked by the manifest parser);
    read-only, decoded once per record and shared (``tag()`` reads the same record for every clip)."""
    return _decoded(record["dtype"], tuple(record["shape"]), record["base64"])


@functools.lru_cache(maxsize=32)
def _decoded(dtype: str, shape: tuple, text: str) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    a = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape).astype(np.float64)
    a.flags.writeable = False
    return a


def clip_features(outputs: Mapping[str, np.ndarray], sources, pool: str) -> np.ndarray:
    """``[d]``: the ``sources`` layers of one clip's frame outputs (``{layer: [T, ...]}``), concatenated
    frame by frame and pooled over its frames: ``"mean"``, ``"mean+std"`` (every mean, then every std) or
    ``"mean+std+max"`` (then every maximum)."""
    missing = [s for s in sources if s not in outputs]
    if missing:
        raise ParameterError(f"the clip head reads the layers {missing}, which the outputs lack (have {sorted(outputs)})")
    layers = [np.asarray(outputs[s], dtype=np.float64) for s in sources]
    if any(a.ndim == 0 or a.shape[0] == 0 for a in layers):
        raise ParameterError("the clip has no frames to pool")
    x = np.concatenate([a.reshape(a.shape[0], -1) for a in layers], axis=1)
    if pool == "mean+std+max":
        return np.concatenate([pool_embeddings(x, "mean+std"), pool_embeddings(x, "max")]).astype(np.float64)
    return pool_embeddings(x, pool).astype(np.float64)


def clip_tag_probabilities(outputs: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> np.ndarray:
    """``[labels]``: the probabilities of a ``clip_tags`` record for one clip's frame outputs,
    ``sigmoid(((features - mean) / scale) @ weights + bias)`` on :func:`clip_features`."""
    z = (clip_features(outputs, record["sources"], record["pool"]) - decode_array(record["mean"])) / decode_array(record["scale"])
    logits = z @ decode_array(record["weights"]) + np.asarray(record["bias"], dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-logits))
