"""The user-facing model object: embeddings, predictions and tags from audio.

:class:`Extractor` wraps a Keras model whose input is a batch of waveforms and
whose outputs are a dict of named layers, together with its manifest entry.

Long audio is cut into windows, so the network never sees more than one batch of
windows at a time; what grows with the length is only the decoded mono signal at the
model's rate (about 230 MB per hour at 16 kHz) and the embeddings themselves:

* **clip models** (``output == "clip"``) see patches of ``patch_seconds`` every
  ``patch_hop_seconds``; each patch gives one embedding, time-stamped at the
  patch centre.  The last patch and clips shorter than a patch are padded with
  zeros.
* **frame models** (``output == "frame"``) see chunks of ``patch_seconds`` with
  enough audio margin on both sides that every kept frame is computed from real
  signal only; the result equals that of the whole file in one piece.  Frame
  ``t`` is centred at ``t * hop_length / sample_rate`` seconds.

Patches of all inputs of one call are batched together.  Every computation is
per example, so a clip gives the same embedding alone or inside a batch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import keras
import numpy as np

from mirzoo.audio import load_audio, prepare_audio
from mirzoo.embeddings import POOLS, Embeddings, pool_embeddings
from mirzoo.errors import ParameterError, UnknownLayerError
from mirzoo.zoo.manifest import file_sha256, write_json_atomic

__all__ = ["Embeddings", "Extractor", "POOLS", "pool_embeddings"]

AudioInput = Union[str, os.PathLike, np.ndarray]


def _bucket(n: int, limit: int) -> int:
    """Smallest power of two >= n, capped at ``limit``: few distinct batch shapes to compile."""
    size = 1
    while size < n:
        size *= 2
    return min(size, max(limit, 1))


class Extractor:
    """A mirzoo model: a Keras model (waveform in, named layers out) and its manifest entry.

    Get one with :func:`mirzoo.load`.

    Examples
    --------
    >>> import mirzoo
    >>> m = mirzoo.load("random-cnn")
    >>> e = m.extract(mirzoo.example_audio())
    >>> e.embeddings.shape[1] == m.layers["embedding"]
    True
    """

    def __init__(self, model: keras.Model, entry: dict[str, Any], *, source: str = ""):
        self.model = model
        self.entry = entry
        self.name = entry.get("name", model.name)
        self.source = source
        self.sample_rate = int(entry["sample_rate"])
        self.output_kind = entry["output"]
        self.layers = dict(entry["layers"])
        self.default_layer = entry["default_layer"]
        self.all_layers = list(entry["all_layers"])
        head = entry.get("head") or None
        self.labels = list(head["labels"]) if head else None
        self.head_output = head["output"] if head else None
        #: every output head, primary first: ``{output name: labels}``
        self.heads = {h["output"]: list(h["labels"]) for h in ([head] if head else []) + list(entry.get("aux_heads") or [])}
        self._frontend = model.get_layer("frontend")
        self.hop_length = int(self._frontend.hop_length)
        if self.output_kind == "clip":
            self.patch_samples = int(entry["config"]["patch_samples"])
            self.patch_hop_samples = int(round(entry["patch_hop_seconds"] * self.sample_rate))
        else:
            frames = int(round(entry["patch_seconds"] * self.sample_rate / self.hop_length))
            self.chunk_frames = max(1, frames)
            context = int(entry["config"].get("context", 0))
            self.margin_frames = math.ceil((self._frontend.kernel_length - self._frontend.kernel_length // 2) / self.hop_length) + context + 1

    # -- description --------------------------------------------------------------------------
    @property
    def pretrained(self) -> bool:
        return bool(self.entry.get("pretrained"))

    @property
    def keras_model(self) -> keras.Model:
        """The underlying Keras model (input: waveforms ``(batch, samples)``; outputs: dict of layers)."""
        return self.model

    def __repr__(self) -> str:
        weights = "pretrained" if self.pretrained else "untrained/random"
        return (
            f"<mirzoo.Extractor {self.name!r}: {self.output_kind}-level, {self.sample_rate} Hz, "
            f"layers {list(self.layers)}, {weights}>"
        )

    # -- input handling -----------------------------------------------------------------------
    def _load_one(self, item: AudioInput, sr) -> tuple[np.ndarray, Optional[str]]:
        if isinstance(item, (str, os.PathLike)):
            return load_audio(item, self.sample_rate), os.fspath(item)
        if isinstance(item, np.ndarray):
            return prepare_audio(item, sr, self.sample_rate), None
        raise ParameterError(
            f"audio input of type {type(item).__name__} is not supported: expected a file path, a numpy "
            f"array (with sr=...), or a list of these"
        )

    @staticmethod
    def _as_list(audio) -> tuple[list, bool]:
        if isinstance(audio, (list, tuple)):
            if len(audio) == 0:
                raise ParameterError("audio is an empty list: expected at least one path or array")
            return list(audio), True
        return [audio], False

    def _resolve_layers(self, layer: Optional[str]) -> tuple[str, list[str]]:
        if layer is None:
            layer = self.default_layer
        if layer == "all":
            return "all", list(self.all_layers)
        if not isinstance(layer, str) or layer not in self.layers:
            raise UnknownLayerError(
                f"layer={layer!r} is not a layer of model {self.name!r}; valid layers: "
                f"{', '.join(list(self.layers) + ['all'])}"
            )
        return layer, [layer]

    # -- windowing ----------------------------------------------------------------------------
    def _clip_windows(self, n: int) -> tuple[int, np.ndarray]:
        if n <= self.patch_samples:
            count = 1
        else:
            count = 1 + math.ceil((n - self.patch_samples) / self.patch_hop_samples)
        starts = np.arange(count) * self.patch_hop_samples
        return count, starts

    @staticmethod
    def _window(y: np.ndarray, start: int, length: int) -> np.ndarray:
        piece = y[start : start + length]
        if piece.shape[0] < length:
            piece = np.pad(piece, (0, length - piece.shape[0]))
        return piece

    def _run(self, batch: list[np.ndarray], keys: list[str], batch_size: int) -> list[dict[str, np.ndarray]]:
        """Run the model on equal-length windows, padding the batch to a bucketed size."""
        x = np.stack(batch).astype(np.float32, copy=False)
        size = _bucket(len(batch), batch_size)
        if size > len(batch):
            x = np.concatenate([x, np.zeros((size - len(batch),) + x.shape[1:], np.float32)])
        out = self.model.predict_on_batch(x)
        arrays = {k: np.asarray(keras.ops.convert_to_numpy(out[k])) for k in keys}
        return [{k: arrays[k][i] for k in keys} for i in range(len(batch))]

    def _forward_clip(self, signals: list[np.ndarray], keys, batch_size, progress) -> list[dict[str, np.ndarray]]:
        jobs = []
        for idx, y in enumerate(signals):
            count, starts = self._clip_windows(y.shape[0])
            jobs.extend((idx, int(s)) for s in starts)
        results: list[dict[str, list]] = [{k: [] for k in keys} for _ in signals]
        bar = _progress(len(jobs), progress, f"{self.name} patches")
        for lo in range(0, len(jobs), batch_size):
            chunk = jobs[lo : lo + batch_size]
            windows = [self._window(signals[i], s, self.patch_samples) for i, s in chunk]
            for (i, _), out in zip(chunk, self._run(windows, keys, batch_size)):
                for k in keys:
                    results[i][k].append(out[k])
            bar.update(len(chunk))
        bar.close()
        return [{k: np.stack(v[k]) for k in keys} for v in results]

    def _frame_chunks(self, n: int) -> list[tuple[int, int, int, int]]:
        """``(left, right, skip, keep)`` per chunk: audio [left, right), drop ``skip`` frames, keep ``keep``."""
        hop = self.hop_length
        total = 1 + n // hop
        chunks = []
        for first in range(0, total, self.chunk_frames):
            keep = min(self.chunk_frames, total - first)
            left = max(0, (first - self.margin_frames) * hop)
            right = min(n, (first + keep + self.margin_frames) * hop)
            chunks.append((left, right, first - left // hop, keep))
        return chunks

    def _forward_frame(self, signals: list[np.ndarray], keys, batch_size, progress) -> list[dict[str, np.ndarray]]:
        minimum = self._frontend.min_samples()
        jobs = []  # (signal index, chunk index, left, right, skip, keep)
        for idx, y in enumerate(signals):
            chunks = self._frame_chunks(y.shape[0])
            jobs.extend((idx, c, *chunk) for c, chunk in enumerate(chunks))
        # outputs are written straight into preallocated per-signal arrays (one copy, not two)
        results: list[dict[str, np.ndarray]] = [{} for _ in signals]
        hop = self.hop_length
        by_length: dict[int, list] = {}
        for job in jobs:
            by_length.setdefault(job[3] - job[2], []).append(job)
        bar = _progress(len(jobs), progress, f"{self.name} chunks")
        for length, group in sorted(by_length.items()):
            for lo in range(0, len(group), batch_size):
                part = group[lo : lo + batch_size]
                windows = []
                for idx, _, left, right, _, _ in part:
                    piece = signals[idx][left:right]
                    if piece.shape[0] < minimum:  # too short for the front-end's padding
                        piece = np.pad(piece, (0, minimum - piece.shape[0]))
                    windows.append(piece)
                for (idx, c, left, _, skip, keep), out in zip(part, self._run(windows, keys, batch_size)):
                    first = left // hop + skip
                    for k in keys:
                        if k not in results[idx]:
                            total = 1 + signals[idx].shape[0] // hop
                            results[idx][k] = np.empty((total,) + out[k].shape[1:], dtype=np.float32)
                        results[idx][k][first : first + keep] = out[k][skip : skip + keep]
                bar.update(len(part))
        bar.close()
        return results

    def _forward(self, signals, keys, batch_size, progress):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ParameterError(f"batch_size={batch_size!r} must be a positive integer")
        if self.output_kind == "clip":
            return self._forward_clip(signals, keys, int(batch_size), progress)
        return self._forward_frame(signals, keys, int(batch_size), progress)

    def _timestamps(self, n_items: int) -> np.ndarray:
        if self.output_kind == "clip":
            return (np.arange(n_items) * self.patch_hop_samples + self.patch_samples / 2) / self.sample_rate
        return np.arange(n_items) * self.hop_length / self.sample_rate

    # -- public API ---------------------------------------------------------------------------
    def extract(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]],
        sr: Optional[int] = None,
        *,
        layer: Optional[str] = None,
        pool: Optional[str] = None,
        batch_size: int = 16,
        progress: bool = False,
    ):
        """Embeddings of one input or of a list of inputs.

        Parameters
        ----------
        audio : path, np.ndarray, or list of these
            A file path (WAV, FLAC, OGG, MP3, ...), or samples with ``sr``:
            ``(n,)`` mono or ``(channels, n)`` / ``(n, channels)`` multi-channel,
            float in [-1, 1] or integer PCM.  Resampled to the model's rate.
            A list is processed as one batch and gives a list back.
        sr : int > 0
            Sample rate of array input (required for arrays, ignored for paths).
        layer : str, optional
            A name from ``self.layers`` (default: ``self.default_layer``), or
            ``"all"`` for every layer in ``self.all_layers`` concatenated (the
            multi-layer "convnet feature" of Choi et al. 2017).
        pool : {"mean", "max", "mean+std"}, optional
            Pool over time and return a clip vector (``[D]`` or ``[2D]``)
            instead of an :class:`Embeddings`.
        batch_size : int > 0
            Patches per forward pass; memory grows with it, not with the input length.
        progress : bool
            Show a progress bar over patches.

        Returns
        -------
        Embeddings or np.ndarray, or a list of them for list input.
        """
        if pool is not None and pool not in POOLS:
            raise ParameterError(f"pool={pool!r} is not one of {POOLS} (or None for per-patch embeddings)")
        layer_name, keys = self._resolve_layers(layer)
        items, is_list = self._as_list(audio)
        loaded = [self._load_one(item, sr) for item in items]
        signals = [y for y, _ in loaded]
        outputs = self._forward(signals, keys, batch_size, progress)
        results = []
        for (y, path), out in zip(loaded, outputs):
            parts = [out[k].reshape(out[k].shape[0], -1) for k in keys]
            emb = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            emb = np.ascontiguousarray(emb, dtype=np.float32)
            result = Embeddings(
                embeddings=emb,
                timestamps=self._timestamps(emb.shape[0]),
                layer=layer_name,
                model=self.name,
                source=path,
                duration=y.shape[0] / self.sample_rate,
            )
            results.append(result.pooled(pool) if pool else result)
        return results if is_list else results[0]

    def predict(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]],
        sr: Optional[int] = None,
        *,
        pool: Optional[str] = "mean",
        batch_size: int = 16,
        head: Optional[str] = None,
    ):
        """Head output (e.g. tag probabilities) per patch/frame, or pooled over time.

        Returns ``[n_labels]`` (``pool="mean"`` or ``"max"``), ``[T, n_labels]``
        (``pool=None``), or a list of these for list input.  ``head`` picks one of
        :attr:`heads` (default: the primary head, ``head_output``); its labels are
        ``heads[head]``.
        """
        output = self._head(head)
        if pool not in (None, "mean", "max"):
            raise ParameterError(f"pool={pool!r} must be 'mean', 'max' or None for predict()")
        out = self.extract(audio, sr, layer=output, batch_size=batch_size)
        outs = out if isinstance(out, list) else [out]
        values = [o.embeddings if pool is None else o.pooled(pool) for o in outs]
        return values if isinstance(out, list) else values[0]

    def _head(self, head: Optional[str]) -> str:
        if not self.heads:
            raise ParameterError(
                f"model {self.name!r} has no output head (it is a feature extractor): use extract() instead"
            )
        if head is None:
            return self.head_output
        if head not in self.heads:
            raise ParameterError(f"head={head!r} is not one of model {self.name!r}'s heads {list(self.heads)}")
        return head

    def tag(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]],
        sr: Optional[int] = None,
        *,
        top_k: Optional[int] = 5,
        threshold: Optional[float] = None,
        batch_size: int = 16,
        head: Optional[str] = None,
    ):
        """Labels with probabilities, most probable first: ``[(label, prob), ...]``.

        Probabilities are the head's outputs averaged over the input's patches
        (frames, for frame-level models).  ``top_k`` keeps the best k (``None`` keeps
        all); ``threshold`` keeps those at or above it.  ``head`` picks one of
        :attr:`heads` (default: the primary head; e.g. ``dense-frame`` has
        ``pitch_classes`` first and ``tags`` second).  A list input gives a list of such
        lists.
        """
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ParameterError(f"top_k={top_k!r} must be a positive integer or None")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ParameterError(f"threshold={threshold!r} must lie in [0, 1]")
        output = self._head(head)
        labels = self.heads[output]
        probs = self.predict(audio, sr, pool="mean", batch_size=batch_size, head=output)
        many = isinstance(probs, list)
        results = []
        for p in probs if many else [probs]:
            order = np.argsort(-p, kind="stable")
            pairs = [(labels[i], float(p[i])) for i in order]
            if threshold is not None:
                pairs = [(t, v) for t, v in pairs if v >= threshold]
            if top_k is not None:
                pairs = pairs[:top_k]
            results.append(pairs)
        return results if many else results[0]

    # -- transfer learning ----------------------------------------------------------------------
    def fine_tune(self, data, **kwargs) -> "Extractor":
        """Train a classifier head (and optionally the top blocks) on labelled audio.

        See :func:`mirzoo.tasks.finetune.fine_tune` for the data forms and options.  This model
        is not modified; a new :class:`Extractor` is returned.
        """
        from mirzoo.tasks.finetune import fine_tune

        return fine_tune(self, data, **kwargs)

    def evaluate(self, data, *, sr: Optional[int] = None) -> dict:
        """Clip-level metrics of the head on labelled audio (see :func:`mirzoo.tasks.finetune.evaluate`)."""
        from mirzoo.tasks.finetune import evaluate

        return evaluate(self, data, sr=sr)

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: Union[str, os.PathLike], *, overwrite: bool = False) -> Path:
        """Save to a directory that :func:`mirzoo.load` and ``keras.saving.load_model`` read.

        Layout (the Keras unzipped format plus mirzoo's entry): ``config.json``,
        ``metadata.json``, ``model.weights.h5`` and ``mirzoo.json`` (manifest entry
        with the sha256 of the weight file).  The directory is written under a
        temporary name and renamed, so a failure leaves nothing half-written.
        """
        target = Path(directory)
        if target.exists() and not overwrite:
            raise ParameterError(f"'{target}' already exists: pass overwrite=True to replace it")
        from mirzoo.fileio import atomic_directory

        with atomic_directory(target) as tmp:
            keras.saving.save_model(self.model, str(tmp), zipped=False)
            weights_file = tmp / "model.weights.h5"
            entry = dict(self.entry)
            entry.pop("name", None)
            entry["saved_from"] = self.name
            entry["weights"] = {
                "kind": "file",
                "file": "model.weights.h5",
                "sha256": file_sha256(weights_file),
                "size": weights_file.stat().st_size,
            }
            write_json_atomic(tmp / "mirzoo.json", {"name": self.name, "entry": entry})
        return target


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="patch", leave=False)
