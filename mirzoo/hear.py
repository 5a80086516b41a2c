"""The HEAR 2021 API (Holistic Evaluation of Audio Representations) for every mirzoo model.

>>> from mirzoo import hear
>>> model = hear.load_model(name="cnn-tagging")                  # doctest: +SKIP
>>> scene = hear.get_scene_embeddings(audio, model)               # [n, model.scene_embedding_size]
>>> emb, ts = hear.get_timestamp_embeddings(audio, model)        # [n, T, D], [n, T] (milliseconds)

``audio`` is a batch of mono waveforms ``[n, samples]`` at ``model.sample_rate``,
floats in [-1, 1], as a ``torch.Tensor``, a ``tf.Tensor`` or a ``numpy`` array; the
results come back as the same kind (float32).  torch is imported only when torch
tensors are passed.  The object returned by :func:`load_model` is a ``tf.Module``
(TensorFlow is a mirzoo dependency), which is what the HEAR validator and
evaluation kit look for, whatever the Keras backend.

Embeddings
----------
* **Scene** embeddings are the clip vectors of :meth:`mirzoo.Extractor.extract`
  with ``pool`` (``"mean"`` by default): the model's own windowing (3 s patches
  every 1.5 s for clip models, frames for frame models), pooled over time.
* **Timestamp** embeddings: frame models give one vector per frame
  (``hop_length / sample_rate``, 20 ms for ``dense-frame``).  Clip models give one
  vector per patch *centred* on each timestamp ``0, hop, 2 hop, ...`` up to the end
  of the clip (audio outside the clip is zeros), with ``hop_ms`` = 250 ms by default.
  A patch costs a forward pass over ``patch_seconds`` of audio, so a 50 ms hop (what
  HEAR suggests for onset and transcription tasks) costs 20 passes per second of
  audio: pass ``hop_ms=50`` to :func:`load_model` when you need it.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np

from mirzoo._checks import valid_int, valid_number, valid_pool
from mirzoo.embeddings import POOLS
from mirzoo.errors import AudioError, ParameterError
from mirzoo.inference.windows import pad_for_centres
from mirzoo.loader import load

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings"]

#: Default spacing of timestamp embeddings for clip models, in milliseconds.
CLIP_HOP_MS = 250.0

_MODEL_CLASS = None


def _model_class():
    """``HearModel``, a ``tf.Module`` subclass, created on first use (TensorFlow itself only then)."""
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        import tensorflow as tf  # deferred: TensorFlow itself only where it is used (the Keras backend may be jax)

        class HearModel(tf.Module):
            """A mirzoo extractor with the attributes HEAR 2021 asks for.

            Attributes
            ----------
            sample_rate : int
                Rate the audio must have (the model's rate).
            scene_embedding_size : int
                Dimension of :func:`get_scene_embeddings` rows.
            timestamp_embedding_size : int
                Dimension of :func:`get_timestamp_embeddings` vectors.
            extractor : mirzoo.Extractor
                The wrapped model.
            """

            def __init__(self, extractor, layer, keys, pool, hop_ms, batch_size, scene_hop_ms=None):
                super().__init__(name="mirzoo_hear")
                self._mirzoo = {"extractor": extractor}  # a plain dict: keep tf.Module from tracking Keras
                self.sample_rate = int(extractor.sample_rate)
                self.layer = layer
                self.keys = tuple(keys)
                self.pool = pool
                self.hop_ms = float(hop_ms)
                self.batch_size = int(batch_size)
                self.scene_hop_ms = None if scene_hop_ms is None else float(scene_hop_ms)
                dim = sum(int(extractor.layers[k]) for k in keys)
                self.timestamp_embedding_size = int(dim)
                self.scene_embedding_size = int(dim * (2 if pool == "mean+std" else 1))

            @property
            def extractor(self):
                return self._mirzoo["extractor"]

            def __repr__(self) -> str:
                return (
                    f"<mirzoo.hear model {self.extractor.name!r}: layer {self.layer!r}, "
                    f"{self.sample_rate} Hz, scene {self.scene_embedding_size}, "
                    f"timestamp {self.timestamp_embedding_size} every {self.hop_ms:g} ms>"
                )

        _MODEL_CLASS = HearModel
    return _MODEL_CLASS


def load_model(
    model_file_path: str = "",
    name: str = "cnn-tagging",
    *,
    layer: Optional[str] = None,
    pool: str = "mean",
    hop_ms: Optional[float] = None,
    batch_size: int = 16,
    scene_hop_ms: Optional[float] = None,
):
    """Load a mirzoo model for the HEAR API.

    Parameters
    ----------
    model_file_path : str
        A directory written by :meth:`mirzoo.Extractor.save` (or a hub snapshot in
        that layout).  Empty: load the zoo model ``name``.
    name : str
        Zoo model (or any reference :func:`mirzoo.load` accepts) used when
        ``model_file_path`` is empty.
    layer : str, optional
        Embedding layer (default: the model's default layer), or ``"all"``.
    pool : {"mean", "max", "mean+std"}
        Pooling of scene embeddings over time.
    hop_ms : float > 0, optional
        Spacing of timestamp embeddings for clip models (default 250 ms).  Frame
        models always use their frame hop; passing another value for them is an error.
    batch_size : int > 0
        Patches per forward pass.
    scene_hop_ms : float > 0, optional
        Clip models: spacing of the patches pooled into scene embeddings (default: the
        model's patch hop, half a patch); the patch length gives non-overlapping
        patches at half the cost.  ``None`` only for frame models.

    Returns
    -------
    HearModel
        A ``tf.Module`` with ``sample_rate``, ``scene_embedding_size`` and
        ``timestamp_embedding_size``.
    """
    if model_file_path:
        path = os.fspath(model_file_path)
        if not os.path.isdir(path):
            raise ParameterError(
                f"model_file_path={path!r} is not a directory: expected a model saved by "
                f"mirzoo.Extractor.save (config.json, model.weights.h5, mirzoo.json), or leave it "
                f"empty and pass name=<zoo model>"
            )
        extractor = load(path)
    else:
        extractor = load(name)
    valid_pool(pool, POOLS, allow_none=False)
    batch_size = valid_int("batch_size", batch_size)
    layer_name, keys = extractor.resolve_layers(layer)
    frame_hop_ms = 1000.0 * extractor.hop_length / extractor.sample_rate
    if extractor.output_kind == "frame":
        if hop_ms is not None and not math.isclose(float(hop_ms), frame_hop_ms):
            raise ParameterError(
                f"hop_ms={hop_ms!r}: model {extractor.name!r} is frame-level with a fixed hop of "
                f"{frame_hop_ms:g} ms; leave hop_ms=None"
            )
        hop = frame_hop_ms
    else:
        hop = CLIP_HOP_MS if hop_ms is None else hop_ms
        if isinstance(hop, bool) or not isinstance(hop, (int, float, np.integer, np.floating)) or not hop > 0:
            raise ParameterError(f"hop_ms={hop_ms!r} must be a positive number of milliseconds")
        if round(float(hop) * extractor.sample_rate / 1000.0) < 1:
            raise ParameterError(f"hop_ms={hop_ms!r} is shorter than one sample at {extractor.sample_rate} Hz")
    if scene_hop_ms is not None:
        valid_number("scene_hop_ms", scene_hop_ms, unit="milliseconds")
        extractor.plan_for(float(scene_hop_ms) / 1000.0)  # frame models and sub-sample hops refused here
    return _model_class()(extractor, layer_name, keys, pool, hop, batch_size, scene_hop_ms)


# -- tensors in, tensors out ----------------------------------------------------------------


def _to_numpy(audio) -> tuple[np.ndarray, str]:
    """``(array, kind)`` with kind one of ``"numpy"``, ``"torch"``, ``"tf"``."""
    module = type(audio).__module__ or ""
    if module.startswith("torch"):
        return audio.detach().cpu().numpy(), "torch"
    if module.startswith("tensorflow") or module.startswith("tf"):
        return np.asarray(audio.numpy()), "tf"
    if isinstance(audio, np.ndarray):
        return audio, "numpy"
    if hasattr(audio, "__array__") and not isinstance(audio, (list, tuple)):  # jax arrays, ...
        return np.asarray(audio), "numpy"
    raise ParameterError(
        f"audio of type {type(audio).__name__} is not supported: expected a torch.Tensor, a tf.Tensor "
        f"or a numpy array of shape [n_sounds, n_samples]"
    )


def _from_numpy(array: np.ndarray, kind: str, like=None):
    if kind == "torch":
        import torch  # deferred: torch only when torch tensors are passed

        out = torch.from_numpy(np.ascontiguousarray(array))
        device = getattr(like, "device", None)
        return out.to(device) if device is not None else out
    if kind == "tf":
        import tensorflow as tf  # deferred: TensorFlow itself only where it is used (the Keras backend may be jax)

        return tf.convert_to_tensor(array)
    return array


def _check_batch(audio, model) -> tuple[np.ndarray, str]:
    if not hasattr(model, "timestamp_embedding_size") or not hasattr(model, "extractor"):
        raise ParameterError(
            f"model of type {type(model).__name__} is not a mirzoo HEAR model: get one from "
            f"mirzoo.hear.load_model()"
        )
    x, kind = _to_numpy(audio)
    if x.ndim != 2:
        raise AudioError(
            f"audio has shape {tuple(x.shape)}: expected [n_sounds, n_samples] mono waveforms at "
            f"{model.sample_rate} Hz"
        )
    if x.dtype.kind != "f":
        raise AudioError(f"audio has dtype {x.dtype}: expected floating point samples in [-1, 1]")
    if x.shape[0] > 0 and x.shape[1] == 0:
        raise AudioError(f"audio has shape {tuple(x.shape)}: every sound is empty (0 samples)")
    if not np.all(np.isfinite(x)):
        raise AudioError("audio contains NaN or inf samples: expected finite values")
    return x.astype(np.float32, copy=False), kind


def get_scene_embeddings(audio, model):
    """One embedding per sound: ``[n_sounds, model.scene_embedding_size]`` float32.

    Parameters
    ----------
    audio : torch.Tensor, tf.Tensor or np.ndarray [shape=(n_sounds, n_samples)]
        Mono waveforms at ``model.sample_rate``, floats in [-1, 1].
    model : HearModel
        From :func:`load_model`.
    """
    x, kind = _check_batch(audio, model)
    if x.shape[0] == 0:
        return _from_numpy(np.zeros((0, model.scene_embedding_size), np.float32), kind, audio)
    extractor = model.extractor
    hop = None if model.scene_hop_ms is None else model.scene_hop_ms / 1000.0
    vectors = extractor.extract(
        list(x), sr=model.sample_rate, layer=model.layer, pool=model.pool, batch_size=model.batch_size, hop=hop
    )
    return _from_numpy(np.stack(vectors).astype(np.float32), kind, audio)


def _timestamp_embeddings_clip(x: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    extractor = model.extractor
    sr = model.sample_rate
    n = x.shape[1]
    hop = float(model.hop_ms) * sr / 1000.0  # samples, may be fractional
    count = int(math.floor((n - 1) / hop + 1e-9)) + 1  # centres 0, hop, ... <= last sample
    centres = np.round(np.arange(count) * hop).astype(np.int64)
    length = extractor.patch_samples
    padded = pad_for_centres(x, length)
    keys = list(model.keys)
    jobs = [(i, int(c)) for i in range(x.shape[0]) for c in centres]
    rows = []
    for lo in range(0, len(jobs), model.batch_size):
        chunk = jobs[lo : lo + model.batch_size]
        windows = [padded[i, c : c + length] for i, c in chunk]
        for out in extractor.run_batch(windows, keys, model.batch_size):
            parts = [np.asarray(out[k]).reshape(-1) for k in keys]
            rows.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
    emb = np.stack(rows).astype(np.float32).reshape(x.shape[0], count, -1)
    stamps = np.broadcast_to(centres * (1000.0 / sr), (x.shape[0], count))
    return emb, np.ascontiguousarray(stamps, dtype=np.float32)


def get_timestamp_embeddings(audio, model):
    """Embeddings at regular timestamps: ``(embeddings [n, T, D], timestamps [n, T])``.

    ``timestamps`` are in **milliseconds** from the start of each sound, increasing and
    equally spaced (``model.hop_ms`` apart), the same for every sound of the batch;
    ``D = model.timestamp_embedding_size``.  Both come back as float32 of the input's kind.
    """
    x, kind = _check_batch(audio, model)
    extractor = model.extractor
    if x.shape[0] == 0:
        emb = np.zeros((0, 0, model.timestamp_embedding_size), np.float32)
        stamps = np.zeros((0, 0), np.float32)
    elif extractor.output_kind == "frame":
        results = extractor.extract(list(x), sr=model.sample_rate, layer=model.layer, batch_size=model.batch_size)
        emb = np.stack([r.embeddings for r in results]).astype(np.float32)
        stamps = np.stack([r.timestamps * 1000.0 for r in results]).astype(np.float32)
    else:
        emb, stamps = _timestamp_embeddings_clip(x, model)
    return _from_numpy(emb, kind, audio), _from_numpy(stamps, kind, audio)
