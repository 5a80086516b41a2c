"""The user-facing model object, :class:`Extractor`: a thin facade over the runner.

Owns the public methods users call on a loaded model -- ``extract``, ``predict``, ``analyze``,
``tag``, ``fine_tune``, ``evaluate`` and ``save`` -- and the shape of what they return
(:class:`~mirzoo.embeddings.Embeddings`, pooled vectors, ``(label, probability)`` pairs).
Windowing and batching live in :mod:`mirzoo.inference` (one engine for every path),
fine-tuning in :mod:`mirzoo.tasks.finetune`.

Long audio is cut into windows, so the network never sees more than one batch of
windows at a time.  A long file (from about 9 minutes at 16 kHz,
:data:`mirzoo.inference.runner.STREAM_MIN_SAMPLES`) is never decoded whole: windows are cut
from its blocks as they are decoded, so what grows with its length is only the embeddings.
Shorter inputs are decoded whole (about 230 MB per hour at 16 kHz) and batched together:

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

import functools
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import keras
import numpy as np

from mirzoo._checks import check_tag_options, valid_pool
from mirzoo.embeddings import POOLS, Embeddings, pool_embeddings
from mirzoo.audio import warn_silent
from mirzoo.errors import ParameterError
from mirzoo.fileio import atomic_directory, file_sha256, write_json_atomic
from mirzoo.inference.runner import AudioInput, Runner, as_list
from mirzoo.tasks import analyze as _analyze
from mirzoo.tasks import clip_heads as _clip_heads
from mirzoo.tasks import finetune as _finetune

__all__ = ["Embeddings", "Extractor", "POOLS", "pool_embeddings"]


class Extractor(Runner):
    """A mirzoo model: a Keras model (waveform in, named layers out) and its manifest entry.

    Get one with :func:`mirzoo.load`.  :attr:`spec` is the parsed manifest entry
    (:class:`~mirzoo.spec.ModelSpec`); :attr:`entry` the raw one.

    Examples
    --------
    >>> import mirzoo
    >>> m = mirzoo.load("random-cnn")
    >>> e = m.extract(mirzoo.example_audio())
    >>> e.embeddings.shape[1] == m.layers["embedding"]
    True
    """

    # -- description --------------------------------------------------------------------------
    @property
    def pretrained(self) -> bool:
        return self.spec.pretrained

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

    def derived_outputs(self):
        """The layers computed after the network (:data:`mirzoo.spec.DERIVED_LAYERS`) that the model's entry
        names: ``metrical`` (:func:`mirzoo.tasks.analyze.metrical_frames`, from the ``bar_model`` record)."""
        spec = self.spec
        if _analyze.METRICAL_LAYER not in spec.layers or spec.is_clip or spec.bar_model is None:
            return {}
        compute = functools.partial(_analyze.metrical_frames, heads=self.heads, fps=self.sample_rate / self.hop_length,
                                    bar_model=spec.bar_model)
        return {_analyze.METRICAL_LAYER: (tuple(_analyze.metrical_inputs(spec.bar_model)), compute)}

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
        hop: Optional[float] = None,
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
        hop : float > 0, optional
            Clip models: seconds between patch starts (default ``spec.patch_hop_seconds``,
            half a patch).  ``hop=spec.patch_seconds`` gives non-overlapping patches and
            halves the work; a smaller hop gives a finer time grid.  Timestamps (patch
            centres) follow the hop.  Frame models have no patch hop (``None`` only).

        Returns
        -------
        Embeddings or np.ndarray, or a list of them for list input.
        """
        valid_pool(pool, POOLS)
        layer_name, keys = self.resolve_layers(layer)
        plan = self.plan_for(hop)  # checked before any audio is read
        items, is_list = as_list(audio)
        results = []
        for out, path, samples in self.run_inputs(items, sr, keys, batch_size, progress, hop=hop, indexed=is_list):
            emb = self.embeddings_of(out, keys)
            result = Embeddings(
                embeddings=emb,
                timestamps=plan.timestamps(emb.shape[0]),
                layer=layer_name,
                model=self.name,
                source=path,
                duration=samples / self.sample_rate,
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
        output = self.check_head(head)
        if pool not in (None, "mean", "max"):
            raise ParameterError(f"pool={pool!r} must be 'mean', 'max' or None for predict()")
        out = self.extract(audio, sr, layer=output, batch_size=batch_size)
        outs = out if isinstance(out, list) else [out]
        values = [o.embeddings if pool is None else o.pooled(pool) for o in outs]
        return values if isinstance(out, list) else values[0]

    def tag(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]],
        sr: Optional[int] = None,
        *,
        top_k: Optional[int] = 5,
        threshold: Optional[float] = None,
        batch_size: int = 16,
        head: Optional[str] = None,
        frames: Optional[list] = None,
    ):
        """Labels with probabilities, most probable first: ``[(label, prob), ...]``.

        Probabilities are the head's outputs averaged over the input's patches
        (frames, for frame-level models), except for the head of a ``clip_tags`` record
        (``tcn-music``'s ``tags``): a logistic regression on the mean and spread of the input's
        frames of the layers it names (:func:`mirzoo.tasks.clip_heads.clip_tag_probabilities`);
        ``predict(head=...)`` still gives that head's frames.  The ``key`` head of a model with a ``clip_key``
        record (``tcn-music``) gives the clip key that :meth:`analyze` reports, scored from
        the key and chord heads together (:func:`mirzoo.tasks.analyze.clip_key_distribution`;
        with the ``mode`` and ``pitch_classes`` heads too, when the record weighs them).
        ``top_k`` keeps the best k (``None`` keeps all); ``threshold`` keeps those at or above it.  ``head`` picks one of
        :attr:`heads` (default: the primary head; e.g. ``dense-frame`` has
        ``pitch_classes`` first and ``tags`` second).  A list input gives a list of such
        lists.

        ``frames``: a list that gets each input's frame (or patch) outputs of the head, ``[T, n_labels]``
        as ``predict(pool=None, head=...)`` gives them, in input order, from the same forward pass (a
        taggram without running the model twice).

        A silent input (every sample below :data:`mirzoo.audio.SILENCE_PEAK`, -80 dBFS) still gets
        its probabilities, with a :class:`~mirzoo.SilentAudioWarning` naming it: what a model says of
        silence describes the model, not the audio.
        """
        check_tag_options(top_k, threshold)
        output = self.check_head(head)
        labels = self.heads[output]
        clip_tags = self.spec.clip_tags
        if frames is not None and not isinstance(frames, list):
            raise ParameterError(f"frames={frames!r} must be a list (each input's [T, n_labels] head outputs "
                                 "are appended to it) or None")
        items, many = as_list(audio)
        peaks: list[float] = []
        if clip_tags is not None and output == clip_tags["head"]:
            # a clip-level head on pooled layers (one pass over the layers it reads)
            keys = list(clip_tags["sources"])

            def score(out):
                return _clip_heads.clip_tag_probabilities(out, clip_tags)
        elif output == "key" and self.spec.clip_key is not None:
            # the clip key, as analyze() reads it: key and chord heads together (one pass)
            keys = ["key", "chord"] + [h for h in _analyze.OPTIONAL_HEADS if h in self.heads]

            def score(out):
                return _analyze.clip_key_distribution(out["key"], out["chord"], self.spec.clip_key, out.get("mode"),
                                                      out.get("pitch_classes"))
        else:
            # predict(pool="mean"): the head's outputs averaged over the patches or frames
            keys = [output]

            def score(out):
                return pool_embeddings(self.embeddings_of(out, [output]), "mean")
        if frames is not None and output not in keys:
            keys = keys + [output]
        probs = []
        for out, _, _ in self.run_inputs(items, sr, keys, batch_size, False, indexed=many, peaks=peaks):
            probs.append(score(out))
            if frames is not None:
                frames.append(self.embeddings_of(out, [output]))
        warn_silent(items, peaks, indexed=many, what=f"its {output!r} probabilities", stacklevel=2)
        probs = probs if many else probs[0]
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

    def analyze(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]],
        sr: Optional[int] = None,
        *,
        batch_size: int = 16,
        progress: bool = False,
        **options,
    ):
        """Key, tempo, meter, beat and downbeat times and chord segments (times in seconds).

        Needs a frame model with the heads ``beats``, ``key``, ``chord``, ``meter`` and ``tempo``
        (such as ``tcn-music``); other models raise :class:`~mirzoo.ParameterError` naming the
        missing heads.  Returns a :class:`mirzoo.tasks.analyze.Analysis` (``to_dict()``,
        ``to_rows()``, ``to_jams()``), or a list of them for list input.  ``rhythm_shifts``
        (semitones; default ``(0,)``, one pass) are the playback rates the beat, tempo and meter heads
        are averaged over (:func:`mirzoo.tasks.analyze.analyze`;
        ``mirzoo.tasks.analyze.RATE_ENSEMBLE`` is a five-pass set); the other ``options``
        (switching penalties, beat tracker) go to :func:`mirzoo.tasks.analyze.analyze_frames`.

        Examples
        --------
        >>> m = mirzoo.load("tcn-music")                          # doctest: +SKIP
        >>> a = m.analyze("song.wav")                             # doctest: +SKIP
        >>> a.key, a.tempo, a.meter, a.downbeats[:2], a.chords[0]  # doctest: +SKIP
        """
        return _analyze.analyze(self, audio, sr, batch_size=batch_size, progress=progress, **options)

    # -- transfer learning ----------------------------------------------------------------------
    def fine_tune(self, data, **kwargs) -> "Extractor":
        """Train a classifier head (and optionally the top blocks) on labelled audio.

        See :func:`mirzoo.tasks.finetune.fine_tune` for the data forms and options.  This model
        is not modified; a new :class:`Extractor` is returned.
        """
        return _finetune.fine_tune(self, data, **kwargs)

    def evaluate(self, data, *, sr: Optional[int] = None) -> dict:
        """Clip-level metrics of the head on labelled audio (see :func:`mirzoo.tasks.finetune.evaluate`)."""
        return _finetune.evaluate(self, data, sr=sr)

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
        blocked = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            raise ParameterError(f"cannot save to '{target}': '{blocked}' is a file, not a directory")
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
            # every file Keras reads gets a sha256, not only the weights (config.json holds the front end)
            files = {
                p.relative_to(tmp).as_posix(): {"sha256": file_sha256(p), "size": p.stat().st_size}
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            write_json_atomic(tmp / "mirzoo.json", {"name": self.name, "entry": entry, "files": files})
        return target
