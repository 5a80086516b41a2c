"""The batched runner: a built model, its :class:`~mirzoo.spec.ModelSpec`, and one way to run it.

Owns everything between "decoded mono signals" and "one array per layer per signal":
resolving layer names, loading an input (path or array) at the model's rate, cutting
windows with the model's :mod:`~mirzoo.inference.windows` plan, splitting a short batch
into power-of-two passes (:func:`split_batch`: few distinct shapes to compile and no
padding windows computed for nothing) and stitching the outputs back per signal.  :class:`Runner` is the base of :class:`mirzoo.Extractor`; the folder engine
(:mod:`mirzoo.batch`), Ray actors (:mod:`mirzoo.distributed`), HEAR, sklearn and
fine-tuning use its public methods.

Every computation is per example, so a clip gives the same output alone or in a batch.

Clip models take a ``hop`` (seconds between patch starts) on every path; ``None`` is the
manifest's ``patch_hop_seconds``.  The network that runs is :attr:`Runner.inference_model`:
the loaded model with each batch normalisation folded into the convolution before it
(:func:`mirzoo.nn.fold.fold_batch_norm`) and, on the JAX backend, the one-channel 1-D filters
XLA runs slowly computed as banded matmuls (:func:`mirzoo.nn.banded.convs_as_matmul`), built on
the first run; the loaded model and the weights on disk are not changed.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import keras
import numpy as np

from mirzoo._checks import valid_int, valid_number
from mirzoo.audio import (FileStream, change_rate, check_rate, load_audio, peak_amplitude, prepare_audio,
                          rate_changed_blocks)
from mirzoo.errors import MirzooError, ParameterError, UnknownLayerError, UnknownModelError
from mirzoo.inference.windows import ClipPlan, FrameChunk, FramePlan, WindowPlan, cut, frame_margin
from mirzoo.nn.banded import convs_as_matmul
from mirzoo.nn.fold import fold_batch_norm
from mirzoo.nn.precision import precision_of
from mirzoo.spec import DERIVED_LAYERS, ModelSpec
from mirzoo.zoo.manifest import get_spec, list_models

__all__ = [
    "Runner", "AudioInput", "bucket", "split_batch", "progress_bar", "as_list", "MAX_PASS_SAMPLES",
    "STREAM_MIN_SAMPLES", "frame_pass_size", "PredictRetracingFilter", "quiet_predict_retracing",
]

AudioInput = Union[str, os.PathLike, np.ndarray]


class PredictRetracingFilter(logging.Filter):
    """Drops one TensorFlow warning: "N out of the last M calls to <function
    TensorFlowTrainer.make_predict_function...> triggered tf.function retracing".

    :meth:`Runner.network_for` keeps one network per set of outputs asked for (``tag(head="key")``,
    ``tag(head="meter")``, ``extract()``, ``analyze()`` each ask for a different set), and each traces
    its Keras predict function once or twice (Keras then relaxes the input length).  TensorFlow counts
    the predict functions of all Keras models as one function, so a session that asks for five
    different sets prints that warning and advises against creating a ``tf.function`` in a loop,
    which does not apply: no network is traced more than it has to be.  Only that warning is dropped;
    retracing warnings about any other function pass.  Installed once on the ``tensorflow`` logger by
    the first network built on the TensorFlow backend (:func:`quiet_predict_retracing`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "make_predict_function" in message)


_RETRACING_FILTER = PredictRetracingFilter()


def quiet_predict_retracing() -> None:
    """Add :class:`PredictRetracingFilter` to the ``tensorflow`` logger, once (TensorFlow backend only)."""
    if keras.backend.backend() != "tensorflow":
        return
    logger = logging.getLogger("tensorflow")
    if _RETRACING_FILTER not in logger.filters:
        logger.addFilter(_RETRACING_FILTER)


#: Most input samples one forward pass of a frame model takes (2^21: 131 s at 16 kHz).  A frame
#: model's windows are long (``tcn-music``: 71 s with its context), and a pass holds every
#: intermediate activation of all its windows: 16 of them took 2.3 GB above the runtime.  Passes
#: of fewer windows change no output (every computation is per window).
MAX_PASS_SAMPLES = 1 << 21

#: Files whose header announces at least this many samples at the model's rate (2^23: 8.7 min at
#: 16 kHz, 32 MB decoded) are never decoded whole: windows are cut from the decoded blocks as they
#: arrive (:meth:`Runner.run_inputs`), so memory does not grow with the file's length, only the
#: embeddings do.  Shorter files are decoded whole and batched with the other inputs of a call.
STREAM_MIN_SAMPLES = 1 << 23


def frame_pass_size(window_samples: int, batch_size: int) -> int:
    """Windows of ``window_samples`` a frame model's forward pass takes: ``batch_size``, fewer if
    they would hold more than :data:`MAX_PASS_SAMPLES` input samples, and at least one."""
    return min(batch_size, max(1, MAX_PASS_SAMPLES // max(window_samples, 1)))


def bucket(n: int, limit: int) -> int:
    """Smallest power of two >= n, capped at ``limit``: few distinct batch shapes to compile."""
    size = 1
    while size < n:
        size *= 2
    return min(size, max(limit, 1))


def split_batch(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, size)`` forward passes for ``n`` windows: full batches of ``batch_size``, then
    the rest as descending powers of two (10 -> 8 + 2), so no window is padding and the
    shapes to compile stay few (``batch_size`` and powers of two below it)."""
    out = []
    lo = 0
    while lo < n:
        left = n - lo
        size = batch_size if left >= batch_size else 1 << (left.bit_length() - 1)
        out.append((lo, size))
        lo += size
    return out


def as_list(audio) -> tuple[list, bool]:
    """``(items, was_a_list)``: one input or a non-empty list/tuple of inputs as a list."""
    if isinstance(audio, (list, tuple)):
        if len(audio) == 0:
            raise ParameterError("audio is an empty list: expected at least one path or array")
        return list(audio), True
    return [audio], False


def _naming_item(exc: MirzooError, index: Optional[int]) -> Optional[MirzooError]:
    """``exc`` again with its message starting ``audio[index]: `` (item ``index`` of a list input),
    or None when it should be raised as it is (no index, or not a one-message error)."""
    if index is None or isinstance(exc, UnknownModelError) or len(exc.args) != 1:
        return None
    return type(exc)(f"audio[{index}]: {exc}")


class _Counted:
    """Iterates the blocks of ``blocks`` and counts their samples (``samples``) on the way and, with
    ``peak=True``, their largest absolute sample (``peak``); passes ``expected_samples`` on when
    ``blocks`` has it."""

    def __init__(self, blocks: Iterable[np.ndarray], peak: bool = False):
        self.blocks, self.samples, self.peak, self._track = blocks, 0, 0.0, peak
        if hasattr(blocks, "expected_samples"):
            self.expected_samples = blocks.expected_samples

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.samples += int(block.shape[0])
            if self._track:
                self.peak = max(self.peak, peak_amplitude(block))
            yield block


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(total: int, enabled: bool, desc: str, unit: str = "patch"):
    """A tqdm bar when ``enabled``, else an object with the same ``update``/``close`` that does nothing."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # deferred: only with progress=True

    return tqdm(total=total, desc=desc, unit=unit, leave=False)


class Runner:
    """A Keras model (waveforms in, a dict of named layers out) with its spec and window plan.

    Parameters
    ----------
    model : keras.Model
        Input ``(batch, samples)`` float32 at the spec's rate; outputs a dict of layers,
        one of which is the front-end layer named ``"frontend"``.
    entry : dict
        The manifest entry (with ``"name"``), parsed into :attr:`spec`.
    """

    def __init__(self, model: keras.Model, entry: dict[str, Any], *, source: str = ""):
        self.model = model
        self.entry = entry
        self.name = entry.get("name", model.name)
        self.spec = ModelSpec.from_entry(self.name, entry)
        self.source = source
        self._inference_model: Optional[keras.Model] = None
        # (id of the full network, keys) -> (full network, cut network)
        self._networks: dict[tuple[int, tuple[str, ...]], tuple[keras.Model, keras.Model]] = {}
        spec = self.spec
        self.sample_rate = spec.sample_rate
        self.output_kind = spec.output
        self.layers = dict(spec.layers)
        self.default_layer = spec.default_layer
        self.all_layers = list(spec.all_layers)
        self.labels = spec.labels
        self.head_output = spec.head_output
        #: every output head, primary first: ``{output name: labels}``
        self.heads = spec.heads
        self.frontend = model.get_layer("frontend")
        self.hop_length = int(self.frontend.hop_length)
        if spec.is_clip:
            self.patch_samples = spec.patch_samples
            self.patch_hop_samples = spec.patch_hop_samples
            self.plan: WindowPlan = ClipPlan(self.patch_samples, self.patch_hop_samples, self.sample_rate)
        else:
            self.chunk_frames = max(1, int(round(spec.patch_seconds * self.sample_rate / self.hop_length)))
            self.margin_frames = frame_margin(self.frontend.kernel_length, self.hop_length, spec.context_frames)
            # a window is never shorter than 3 frames: a one-frame input (under one hop, ~20 ms) crashed
            # TensorFlow's oneDNN convolution with SIGABRT; the extra frames are dropped when stitching
            min_samples = max(self.frontend.min_samples(), 2 * self.hop_length + 1)
            self.plan = FramePlan(self.hop_length, self.chunk_frames, self.margin_frames, min_samples, self.sample_rate,
                                  pad_constant=getattr(self.frontend, "pad_mode", None) == "constant")

    @property
    def precision(self) -> str:
        """Compute dtype of the layers after the front-end: ``"float32"`` unless loaded with
        ``mirzoo.load(..., precision=...)`` (or under a mixed Keras dtype policy)."""
        return precision_of(self.model)

    def update_entry(self, **changes: Any) -> None:
        """Set top-level keys of the manifest entry and re-parse :attr:`spec` from it, so the two never
        disagree (a fine-tuned model's validation metrics, the hub commit a snapshot was loaded from)."""
        entry = dict(self.entry, **changes)
        self.spec = ModelSpec.from_entry(self.name, entry)
        self.entry = entry

    # -- inputs and names ---------------------------------------------------------------------
    def load_input(self, item: AudioInput, sr: Optional[int]) -> tuple[np.ndarray, Optional[str]]:
        """``(mono float32 signal at the model's rate, path or None)`` of a path or an array with ``sr``."""
        if isinstance(item, (str, os.PathLike)):
            return load_audio(item, self.sample_rate), os.fspath(item)
        if isinstance(item, np.ndarray):
            return prepare_audio(item, sr, self.sample_rate), None
        raise ParameterError(
            f"audio input of type {type(item).__name__} is not supported: expected a file path, a numpy "
            f"array (with sr=...), or a list of these"
        )

    def load_indexed(self, item: AudioInput, sr: Optional[int], index: Optional[int]):
        """:meth:`load_input`; for item ``index`` of a list, an error message starts with ``audio[index]``."""
        try:
            return self.load_input(item, sr)
        except MirzooError as exc:
            named = _naming_item(exc, index)
            if named is None:
                raise
            raise named from exc

    def resolve_layers(self, layer: Optional[str]) -> tuple[str, list[str]]:
        """``(layer name, output keys)``: ``None`` is the default layer, ``"all"`` every layer of ``all_layers``."""
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

    # -- layers computed after the network --------------------------------------------------------
    def derived_outputs(self) -> dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, np.ndarray]], np.ndarray]]]:
        """``{layer: (network outputs it reads, function of those outputs -> [T, D])}``: the
        :data:`~mirzoo.spec.DERIVED_LAYERS` among the model's layers that this runner computes after the
        network.  The plain runner computes none; :class:`mirzoo.Extractor` supplies them (they are
        analysis code, which sits above this layer)."""
        return {}

    def network_keys(self, keys: Sequence[str]) -> list[str]:
        """The network outputs to run for ``keys``: each derived layer replaced by the outputs it reads."""
        derived = self.derived_outputs()
        found: list[str] = []
        for k in keys:
            if k in derived:
                found.extend(derived[k][0])
            elif k in DERIVED_LAYERS and k in self.layers:
                raise UnknownLayerError(
                    f"layer {k!r} of model {self.name!r} is computed after the network from its outputs, which "
                    f"this {type(self).__name__} cannot do: load the model with mirzoo.load")
            else:
                found.append(k)
        return list(dict.fromkeys(found))

    def with_derived(self, out: dict[str, np.ndarray], keys: Sequence[str]) -> dict[str, np.ndarray]:
        """``{key: output}`` of ``keys`` from the network outputs ``out`` (:meth:`network_keys` of them), the
        derived layers among them computed from those outputs."""
        derived = self.derived_outputs()
        if not any(k in derived for k in keys):
            return out
        return {k: derived[k][1](out) if k in derived else out[k] for k in keys}

    def check_head(self, head: Optional[str]) -> str:
        """The output name of ``head`` (default: the primary head); a usage error if the model has none."""
        if not self.heads:
            raise ParameterError(
                f"model {self.name!r} has no output head (it is a feature extractor): use extract() instead"
            )
        if head is None:
            return self.head_output
        if head not in self.heads:
            try:  # a hint only: a manifest that cannot be read must not hide this error
                having = [name for name in list_models() if head in get_spec(name).heads]
            except MirzooError:
                having = []
            where = f"; the zoo's models with a {head!r} head: {having}" if having else ""
            raise ParameterError(f"head={head!r} is not one of model {self.name!r}'s heads {list(self.heads)}{where}")
        return head

    def plan_for(self, hop: Optional[float] = None) -> WindowPlan:
        """The window plan with patches every ``hop`` seconds (clip models; ``None``: the manifest's hop).

        Frame models have no patch hop: any ``hop`` but ``None`` is an error for them.
        """
        if hop is None:
            return self.plan
        if not self.spec.is_clip:
            raise ParameterError(
                f"hop={hop!r}: model {self.name!r} is frame-level (one output every "
                f"{self.hop_length / self.sample_rate:g} s); hop applies to clip models only, leave it None"
            )
        seconds = valid_number("hop", hop, unit="seconds")
        samples = int(round(seconds * self.sample_rate))
        if samples < 1:
            raise ParameterError(f"hop={hop!r} is shorter than one sample at {self.sample_rate} Hz")
        if samples == self.plan.hop_samples:
            return self.plan
        return ClipPlan(self.patch_samples, samples, self.sample_rate)

    def timestamps(self, count: int, hop: Optional[float] = None) -> np.ndarray:
        """Centre, in seconds, of each of ``count`` patches (clip models, patches ``hop`` s apart)
        or frames (frame models)."""
        return self.plan_for(hop).timestamps(count)

    # -- running ------------------------------------------------------------------------------
    @property
    def inference_model(self) -> keras.Model:
        """The network that runs: :attr:`model` with batch norm folded into the convolutions and,
        on the JAX backend only, the convolutions :func:`~mirzoo.nn.banded.matmul_plan` accepts
        as matmuls (TensorFlow's oneDNN convolutions are faster than those matmuls).

        Built on first use from the weights :attr:`model` has then; the folded convolutions
        are copies, so weights assigned to :attr:`model` later are not seen (call
        :meth:`refresh` after changing them).
        """
        if self._inference_model is None:
            model = fold_batch_norm(self.model)
            if keras.backend.backend() == "jax":
                model = convs_as_matmul(model)
            self._inference_model = model
        return self._inference_model

    def network_for(self, keys: Sequence[str]) -> keras.Model:
        """:attr:`inference_model` cut down to the outputs ``keys`` (cached per network and key set,
        so each keeps its traced functions).

        The full network returns every named layer; asking only for the layers wanted means the
        others are neither kept to the end of the pass nor copied out (a 60-s chunk of
        ``tcn-music`` at batch 16 holds ~0.3 GB in its 1152-wide ``conv1`` output alone), and the
        heads nobody asked for are not computed.  The layers are the same objects, so the
        outputs are the full network's.
        """
        full = self.inference_model
        key = (id(full), tuple(keys))  # the cache keeps `full` alive, so its id stays its own
        cached = self._networks.get(key)
        if cached is not None:
            return cached[1]
        outputs = full.output
        missing = [k for k in keys if k not in outputs]
        if missing:
            raise UnknownLayerError(f"model {self.name!r} has no output {missing[0]!r}")
        # one input tensor, not a list of one: run_batch passes a bare array, and a list-structured
        # model makes Keras warn about the mismatch on every call (torch backend)
        inputs = full.inputs[0] if len(full.inputs) == 1 else full.inputs
        net = keras.Model(inputs, {k: outputs[k] for k in keys}, name=f"{full.name}_outputs")
        quiet_predict_retracing()
        self._networks[key] = (full, net)
        return net

    def refresh(self) -> None:
        """Rebuild :attr:`inference_model` from :attr:`model`'s current weights on the next run."""
        self._inference_model = None
        self._networks = {}

    def run_batch(self, windows: Sequence[np.ndarray], keys: list[str], batch_size: int) -> list[dict[str, np.ndarray]]:
        """Run the model on equal-length windows (passes from :func:`split_batch`); one dict per window."""
        x = np.stack(windows).astype(np.float32, copy=False)
        model = self.network_for(keys)
        pieces: dict[str, list] = {k: [] for k in keys}
        for lo, size in split_batch(len(windows), batch_size):
            out = model.predict_on_batch(x[lo : lo + size])
            for k in keys:
                # float32 whatever the compute dtype (precision="bfloat16" layers return bfloat16)
                pieces[k].append(np.asarray(keras.ops.convert_to_numpy(out[k]), dtype=np.float32))
        arrays = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in pieces.items()}
        return [{k: arrays[k][i] for k in keys} for i in range(len(windows))]

    def forward(
        self,
        signals: list[np.ndarray],
        keys: list[str],
        batch_size: int,
        progress: bool = False,
        *,
        hop: Optional[float] = None,
    ):
        """Outputs ``{key: [T, ...]}`` per signal, windows of all signals batched together
        (clip models: patches every ``hop`` seconds, default the manifest's)."""
        batch_size = valid_int("batch_size", batch_size)
        plan = self.plan_for(hop)
        run = self.network_keys(keys)
        if isinstance(plan, ClipPlan):
            outputs = self._forward_clip(signals, run, batch_size, progress, plan)
        else:
            outputs = self._forward_frame(signals, run, batch_size, progress)
        return [self.with_derived(out, keys) for out in outputs]

    def stream_clip(
        self,
        items: Iterable[tuple[Any, np.ndarray]],
        keys: list[str],
        batch_size: int,
        *,
        hop: Optional[float] = None,
    ) -> Iterator[tuple[Any, np.ndarray, dict[str, np.ndarray]]]:
        """Clip models: patches (every ``hop`` seconds) of a stream of ``(tag, signal)`` batched
        across signals; yields ``(tag, signal, {key: [T, ...]})`` in input order as soon as a
        signal is complete."""

        plan = self.plan_for(hop)
        windows: deque = deque()  # (entry, start)
        open_items: deque = deque()  # [tag, y, remaining, outputs], in input order

        def step(n):
            chunk = [windows.popleft() for _ in range(n)]
            batch = [plan.window(entry[1], start) for entry, start in chunk]
            for (entry, _), out in zip(chunk, self.run_batch(batch, keys, batch_size)):
                for k in keys:
                    entry[3][k].append(out[k])
                entry[2] -= 1
            while open_items and open_items[0][2] == 0:
                tag, y, _, outs = open_items.popleft()
                yield tag, y, {k: np.stack(v) for k, v in outs.items()}

        for tag, y in items:
            starts = plan.starts(y.shape[0])
            entry = [tag, y, len(starts), {k: [] for k in keys}]
            open_items.append(entry)
            windows.extend((entry, int(s)) for s in starts)
            while len(windows) >= batch_size:
                yield from step(batch_size)
        while windows:
            yield from step(min(batch_size, len(windows)))

    def run_inputs(
        self,
        items: list,
        sr: Optional[int],
        keys: list[str],
        batch_size: int,
        progress: bool = False,
        *,
        hop: Optional[float] = None,
        indexed: bool = False,
        rate: float = 1.0,
        peaks: Optional[list] = None,
    ) -> list[tuple[dict[str, np.ndarray], Optional[str], int]]:
        """``(outputs {key: [T, ...]}, path or None, samples at the model's rate)`` per input.

        Files of at least :data:`STREAM_MIN_SAMPLES` are streamed one by one
        (:meth:`forward_stream`); the other inputs are decoded and their windows batched
        together (:meth:`forward`).  Both give the same outputs.  ``indexed``: error messages
        start with ``audio[i]`` (list input).  ``rate``: the network hears each input played
        ``rate`` times faster (:func:`mirzoo.audio.change_rate`, streamed files block by block),
        so its outputs cover ``samples / rate`` samples; ``samples`` stays the input's own length.
        ``peaks``: a list that gets each input's largest absolute sample, in input order (of the
        mono signal at the model's rate, before any rate change; :func:`mirzoo.audio.is_silent`).
        """
        batch_size = valid_int("batch_size", batch_size)
        rate = check_rate(rate)
        plan = self.plan_for(hop)
        streams: dict[int, FileStream] = {}
        loaded: list[tuple[int, np.ndarray, Optional[str]]] = []
        for i, item in enumerate(items):
            stream = self._long_file(item)
            if stream is not None:
                streams[i] = stream
            else:
                y, path = self.load_indexed(item, sr, i if indexed else None)
                loaded.append((i, y, path))
        results: list = [None] * len(items)
        found = [0.0] * len(items)
        for i, stream in streams.items():
            try:
                counted = _Counted(stream, peak=peaks is not None)
                blocks = counted if rate == 1.0 else rate_changed_blocks(counted, self.sample_rate, rate)
                out, _ = self.forward_stream(blocks, keys, batch_size, plan, progress)
            except MirzooError as exc:
                named = _naming_item(exc, i if indexed else None)
                if named is None:
                    raise
                raise named from exc
            results[i], found[i] = (out, os.fspath(items[i]), counted.samples), counted.peak
        if peaks is not None:  # only when asked: a pass over every signal
            for i, y, _ in loaded:
                found[i] = peak_amplitude(y)
        signals = [change_rate(y, self.sample_rate, rate) for _, y, _ in loaded]
        outputs = self.forward(signals, keys, batch_size, progress, hop=hop) if loaded else []
        del signals
        for (i, y, path), out in zip(loaded, outputs):
            results[i] = (out, path, int(y.shape[0]))
        if peaks is not None:
            peaks.extend(found)
        return results

    def _long_file(self, item) -> Optional[FileStream]:
        """A :class:`FileStream` of ``item`` if it is a file libsndfile reads whose header announces
        at least :data:`STREAM_MIN_SAMPLES`; else None (decoded whole, errors reported there)."""
        if not isinstance(item, (str, os.PathLike)):
            return None
        try:
            stream = FileStream(item, self.sample_rate)
        except Exception:  # noqa: BLE001 -- missing, unreadable or not libsndfile's: load_input reports it
            return None
        return stream if stream.expected_samples >= STREAM_MIN_SAMPLES else None

    def forward_stream(
        self, blocks: Iterable[np.ndarray], keys: list[str], batch_size: int, plan: WindowPlan, progress: bool = False
    ) -> tuple[dict[str, np.ndarray], int]:
        """Outputs ``{key: [T, ...]}`` of one signal given as consecutive blocks, and its length.

        Windows are cut from a buffer holding only the samples that later windows still need,
        run in batches as they complete and the rest once the length is known at the end: the
        same windows, hence the same outputs, as :meth:`forward` on the whole signal.
        """
        expected = int(getattr(blocks, "expected_samples", 0))
        run = self.network_keys(keys)
        bar = progress_bar(plan.count(expected) if expected else 0, progress, f"{self.name} windows")
        try:
            if isinstance(plan, ClipPlan):
                out, n = self._stream_clip(blocks, run, batch_size, plan, bar)
            else:
                out, n = self._stream_frame(blocks, run, batch_size, plan, expected, bar)
        finally:
            bar.close()
        return self.with_derived(out, keys), n

    def _stream_clip(self, blocks, keys, batch_size, plan: ClipPlan, bar):
        size, step = plan.patch_samples, plan.hop_samples
        pieces: dict[str, list] = {k: [] for k in keys}
        pending: list[np.ndarray] = []

        def flush():
            for out in self.run_batch(pending, keys, batch_size):
                for k in keys:
                    pieces[k].append(out[k])
            bar.update(len(pending))
            pending.clear()

        buf, start, n, k = np.zeros(0, np.float32), 0, 0, 0  # buf holds samples [start, n)
        for block in blocks:
            buf = np.concatenate([buf, block])
            n += block.shape[0]
            while k * step + size <= n:  # a patch wholly inside the audio is in the plan whatever the length
                lo = k * step - start
                pending.append(buf[lo : lo + size].copy())
                k += 1
                if len(pending) == batch_size:
                    flush()
            drop = min(k * step - start, buf.shape[0])
            if drop > 0:
                buf, start = buf[drop:], start + drop
        for j in range(k, plan.count(n)):  # the patches that reach past the end: zero-padded
            pending.append(cut(buf, j * step - start, size))  # start <= k * step <= j * step
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
        return {k: np.stack(v) for k, v in pieces.items()}, n

    def _stream_frame(self, blocks, keys, batch_size, plan: FramePlan, expected: int, bar):
        hop, width, margin = plan.hop_length, plan.chunk_frames, plan.margin_frames
        results: dict[str, np.ndarray] = {}
        pending: list[tuple[FrameChunk, np.ndarray]] = []

        def flush():
            for (chunk, _), out in zip(pending, self.run_batch([w for _, w in pending], keys, batch_size)):
                first = plan.first_frame(chunk)
                for key in keys:
                    rows = out[key][chunk.skip : chunk.skip + chunk.keep]
                    have = results.get(key)
                    if have is None:  # sized from the header; grown if the file is longer
                        have = results[key] = np.empty((plan.n_frames(expected),) + rows.shape[1:], np.float32)
                    if first + chunk.keep > have.shape[0]:
                        have = results[key] = np.resize(have, (max(2 * have.shape[0], first + chunk.keep),) + have.shape[1:])
                    have[first : first + chunk.keep] = rows
            bar.update(len(pending))
            pending.clear()

        def add(chunk: FrameChunk, window: np.ndarray):
            if pending and pending[0][1].shape[0] != window.shape[0]:
                flush()  # one pass holds windows of one length
            pending.append((chunk, window))
            if len(pending) >= frame_pass_size(window.shape[0], batch_size):
                flush()

        buf, start, n, first = np.zeros(0, np.float32), 0, 0, 0  # buf holds samples [start, n)
        for block in blocks:
            buf = np.concatenate([buf, block])
            n += block.shape[0]
            # a chunk whose right margin is inside the audio is final whatever the length
            while (first + width + margin) * hop <= n:
                left, right = max(0, (first - margin) * hop), (first + width + margin) * hop
                chunk = FrameChunk(left, right, first - left // hop, width)
                add(chunk, plan.window(buf, FrameChunk(left - start, right - start, chunk.skip, width)).copy())
                first += width
            # keep what a window ending at the signal's end may reach back to: up to width + 2 * margin + 1
            # frames before the end (FramePlan.chunks), and the end is at least one frame past `first`
            drop = max(0, (first - 2 * margin - width) * hop) - start
            if drop > 0:
                buf, start = buf[drop:], start + drop
        for chunk in plan.chunks(n):
            if plan.first_frame(chunk) >= first:
                local = FrameChunk(chunk.left - start, chunk.right - start, chunk.skip, chunk.keep)
                add(chunk, plan.window(buf, local))
        if pending:
            flush()
        total = plan.n_frames(n)
        return {key: v[:total] for key, v in results.items()}, n

    def _forward_clip(self, signals, keys, batch_size, progress, plan: ClipPlan):
        total = sum(plan.count(y.shape[0]) for y in signals)
        bar = progress_bar(total, progress, f"{self.name} patches")
        results = []
        hop = plan.hop_samples / self.sample_rate
        for _, _, out in self.stream_clip(enumerate(signals), keys, batch_size, hop=hop):
            bar.update(len(next(iter(out.values()))))
            results.append(out)
        bar.close()
        return results

    def _forward_frame(self, signals, keys, batch_size, progress):
        plan: FramePlan = self.plan
        jobs = []  # (signal index, chunk)
        for idx, y in enumerate(signals):
            jobs.extend((idx, chunk) for chunk in plan.chunks(y.shape[0]))
        # outputs are written straight into preallocated per-signal arrays (one copy, not two)
        results: list[dict[str, np.ndarray]] = [{} for _ in signals]
        by_length: dict[int, list] = {}
        for job in jobs:
            by_length.setdefault(job[1].right - job[1].left, []).append(job)
        bar = progress_bar(len(jobs), progress, f"{self.name} chunks")
        for length, group in sorted(by_length.items()):
            per_pass = frame_pass_size(length, batch_size)
            for lo in range(0, len(group), per_pass):
                part = group[lo : lo + per_pass]
                windows = [plan.window(signals[idx], chunk) for idx, chunk in part]
                for (idx, chunk), out in zip(part, self.run_batch(windows, keys, per_pass)):
                    first = plan.first_frame(chunk)
                    for k in keys:
                        if k not in results[idx]:
                            total = plan.n_frames(signals[idx].shape[0])
                            results[idx][k] = np.empty((total,) + out[k].shape[1:], dtype=np.float32)
                        results[idx][k][first : first + chunk.keep] = out[k][chunk.skip : chunk.skip + chunk.keep]
                bar.update(len(part))
        bar.close()
        return results

    def embeddings_of(self, out: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
        """``[T, D]`` float32: the outputs of ``keys`` flattened per step and concatenated (``layer="all"``)."""
        parts = [out[k].reshape(out[k].shape[0], -1) for k in keys]
        emb = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return np.ascontiguousarray(emb, dtype=np.float32)
