"""ModelSpec: one manifest entry, parsed and checked once, as a frozen typed object.

Owns the meaning of a manifest entry (``weights_manifest.json``, a saved model's
``mirzoo.json``): which keys exist, their types, how they must agree with each other,
and the values derived from them (patch and hop in samples, frame or clip output, heads
and labels).  Every other module reads a model's description through a
:class:`ModelSpec`; the raw dict is only kept to be written back out
(:meth:`ModelSpec.to_entry`) or shown to users (``mirzoo info --json``).

A bad entry raises :class:`~mirzoo.errors.ManifestError` naming the model, the key and
the value found.  Numpy only; nothing here builds a model.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional

from mirzoo.errors import ManifestError

__all__ = ["HeadSpec", "WeightsSpec", "ModelSpec", "OUTPUT_KINDS", "PITCH_CLASS_LABELS", "BEAT_FEATURES", "DERIVED_LAYERS",
           "DOWNBEAT_BAR_LENGTHS", "DOWNBEAT_MODEL_FORM", "bar_candidate_width", "BAR_MODEL_FORM",
           "BAR_MODEL_BEAT_FEATURES", "BAR_MODEL_ARRAYS"]

OUTPUT_KINDS = ("clip", "frame")
#: labels of a ``pitch_classes`` head (``dense-frame``'s primary head, ``tcn-music``'s chroma head)
PITCH_CLASS_LABELS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: per-beat features a ``downbeat_model`` record reads (``mirzoo.tasks.analyze.beat_features``), in order
BEAT_FEATURES = ("log_downbeat", "log_beat", "log_evidence", "chord_change", "pitch_class_change",
                 "log_downbeat_mean")
#: bar lengths (beats per bar) a ``downbeat_model`` record chooses between by default
DOWNBEAT_BAR_LENGTHS = (2, 3, 4)
#: the one form of ``downbeat_model`` record there is (``mirzoo.tasks.analyze.bar_candidate_scores``)
DOWNBEAT_MODEL_FORM = "listwise-mlp-v1"
#: the one form of ``bar_model`` record there is (``mirzoo.tasks.bar_model``: a bidirectional GRU over the beats)
BAR_MODEL_FORM = "beat-bigru-v1"
#: the source name, in a ``bar_model`` record's ``sources``, of the :data:`BEAT_FEATURES` block (every other
#: source is a layer or head whose mean over each beat interval is read)
BAR_MODEL_BEAT_FEATURES = "beat_features"
#: layers computed after the network from its outputs, not by it: ``metrical`` (``tcn-music``:
#: ``mirzoo.tasks.analyze.metrical_frames``, each frame's bar-model probabilities of (beats per bar, position)
#: at its tracked beat, then the meter head's probabilities).  A model's ``layers`` may name one when it has
#: what the layer reads (for ``metrical``: a ``bar_model`` record and ``beats``, ``tempo`` and ``meter``
#: heads); ``extract()`` computes it, and a Keras export, which holds the network alone, leaves it out
DERIVED_LAYERS = ("metrical",)
#: the arrays of a ``bar_model`` record, each an encoded array (``mirzoo.tasks.clip_heads.encode_array``)
BAR_MODEL_ARRAYS = ("mean", "scale", "dense_kernel", "dense_bias",
                    "forward_kernel", "forward_recurrent", "forward_bias",
                    "backward_kernel", "backward_recurrent", "backward_bias",
                    "output_kernel", "output_bias")
#: the one form of ``clip_tags`` record there is (``mirzoo.tasks.clip_heads.clip_tag_probabilities``)
CLIP_HEAD_FORM = "pooled-logistic-v1"
#: pools a ``clip_tags`` record may read its layers with, and the bytes per value of its array dtypes
CLIP_HEAD_POOLS = ("mean", "mean+std", "mean+std+max")
ARRAY_DTYPE_BYTES = {"float16": 2, "float32": 4}


def bar_candidate_width(n_features: int, bar_lengths=DOWNBEAT_BAR_LENGTHS) -> int:
    """Columns of ``mirzoo.tasks.analyze.bar_candidates`` for ``n_features`` beat features."""
    return 2 * n_features + 2 + len(bar_lengths) + sum(int(b) for b in bar_lengths) * n_features

_REQUIRED = {
    "family": str,
    "task": str,
    "description": str,
    "sample_rate": int,
    "output": str,
    "config": dict,
    "layers": dict,
    "default_layer": str,
    "all_layers": list,
    "weights": dict,
    "pretrained": bool,
    "license": str,
}


@dataclass(frozen=True)
class HeadSpec:
    """An output head: the layer ``output`` and its ``labels`` (one per unit)."""

    output: str
    labels: tuple[str, ...]
    activation: str = "sigmoid"
    #: fine-tuned heads record whether their classes are exclusive; ``None`` if not said
    multilabel: Optional[bool] = None


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights come from: ``kind="seeded"`` (``seed``, ``init``) or ``kind="file"``."""

    kind: str
    sha256: Optional[str] = None
    seed: Optional[int] = None
    init: str = "he_uniform"
    file: Optional[str] = None
    size: Optional[int] = None


@dataclass(frozen=True)
class ModelSpec:
    """A zoo model's contract: input rate, windows, layers, heads, weights.

    Build one with :meth:`from_entry`; the fields mirror the manifest keys, and the
    properties are the values every consumer used to recompute by hand.
    """

    name: str
    family: str
    task: str
    description: str
    sample_rate: int
    output: str
    config: Mapping[str, Any]
    layers: Mapping[str, int]
    default_layer: str
    all_layers: tuple[str, ...]
    weights: WeightsSpec
    pretrained: bool
    license: str
    patch_seconds: Optional[float] = None
    patch_hop_seconds: Optional[float] = None
    head: Optional[HeadSpec] = None
    aux_heads: tuple[HeadSpec, ...] = ()
    hub_repo_id: Optional[str] = None
    hub_revision: Optional[str] = None
    #: descriptive records, shown by ``mirzoo info`` and model cards (free-form in the manifest)
    training: Mapping[str, Any] = field(default_factory=dict, compare=False)
    metrics: Mapping[str, Any] = field(default_factory=dict, compare=False)
    references: tuple[str, ...] = ()
    #: the zoo model a saved or fine-tuned model was derived from (``Extractor.save`` records it)
    saved_from: Optional[str] = None
    #: clip-level key from the frame ``key`` and ``chord`` heads (``mirzoo.tasks.analyze.clip_key_distribution``):
    #: ``{"scale": [2], "bias": [2], "chord": [2][12][9], ...}`` (major, minor), or ``None``
    clip_key: Optional[Mapping[str, Any]] = field(default=None, compare=False)
    #: bar length and downbeat phase chosen together (``mirzoo.tasks.analyze.choose_bars``): a fitted
    #: ``{"form", "features", "bar_lengths", "mean", "scale", "hidden_weights", ...}`` record, or ``None``
    downbeat_model: Optional[Mapping[str, Any]] = field(default=None, compare=False)
    #: clip-level tags from pooled frame layers (``mirzoo.tasks.clip_heads``): ``{"form", "head", "sources",
    #: "pool", "mean", "scale", "weights", "bias"}``, or ``None``
    clip_tags: Optional[Mapping[str, Any]] = field(default=None, compare=False)
    #: bar length and downbeat phase read by a bidirectional GRU over the tracked beats
    #: (``mirzoo.tasks.analyze.choose_bars_by_model``): ``{"form", "sources", "classes", "mean", ...}``, or ``None``
    bar_model: Optional[Mapping[str, Any]] = field(default=None, compare=False)
    entry: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- derived values ------------------------------------------------------------------
    @property
    def is_clip(self) -> bool:
        """One embedding per patch (``output == "clip"``)."""
        return self.output == "clip"

    @property
    def is_frame(self) -> bool:
        """One embedding per front-end frame (``output == "frame"``)."""
        return self.output == "frame"

    @property
    def frontend(self) -> Mapping[str, Any]:
        """The front-end's configuration (``config["frontend"]``)."""
        return self.config.get("frontend", {})

    @property
    def hop_length(self) -> int:
        """Front-end hop in samples (the frame step)."""
        return int(self.frontend["hop_length"])

    @property
    def frame_seconds(self) -> float:
        """Seconds between two front-end frames."""
        return self.hop_length / self.sample_rate

    @property
    def patch_samples(self) -> int:
        """Samples per patch (clip models) or per chunk (frame models)."""
        if self.is_clip:
            return int(self.config["patch_samples"])
        return int(round(self.patch_seconds * self.sample_rate))

    @property
    def patch_hop_samples(self) -> int:
        """Samples between patch starts (clip models)."""
        return int(round(self.patch_hop_seconds * self.sample_rate))

    @property
    def chunk_frames(self) -> int:
        """Frames per chunk of a frame model (``patch_seconds`` of audio, at least 1)."""
        return max(1, int(round(self.patch_seconds * self.sample_rate / self.hop_length)))

    @property
    def context_frames(self) -> int:
        """Frames of context each side that a frame model's output depends on (``config.context``)."""
        return int(self.config.get("context", 0))

    @property
    def heads(self) -> dict[str, list[str]]:
        """Every output head, primary first: ``{output name: labels}``."""
        found = ([self.head] if self.head else []) + list(self.aux_heads)
        return {h.output: list(h.labels) for h in found}

    @property
    def head_output(self) -> Optional[str]:
        """The primary head's layer name, or ``None`` for a pure feature extractor."""
        return self.head.output if self.head else None

    @property
    def labels(self) -> Optional[list[str]]:
        """The primary head's labels, or ``None``."""
        return list(self.head.labels) if self.head else None

    @property
    def embedding_dim(self) -> int:
        """Size of the default layer's vectors."""
        return int(self.layers[self.default_layer])

    @property
    def weights_label(self) -> str:
        """``"pretrained"``, ``"random (seeded)"`` (feature models) or ``"untrained"``."""
        if self.pretrained:
            return "pretrained"
        return "random (seeded)" if self.task == "features" else "untrained"

    def to_entry(self) -> dict[str, Any]:
        """A deep copy of the manifest entry this spec was parsed from."""
        return copy.deepcopy(dict(self.entry))

    # -- parsing -------------------------------------------------------------------------
    @classmethod
    def from_entry(cls, name: str, entry: Mapping[str, Any]) -> "ModelSpec":
        """Check ``entry`` and parse it; :class:`ManifestError` names the key and the value on failure."""
        where = f"manifest entry {name!r}"
        if not isinstance(entry, Mapping):
            raise ManifestError(f"{where} must be an object, got {type(entry).__name__}: {entry!r}")
        for key, kind in _REQUIRED.items():
            if key not in entry:
                raise ManifestError(f"{where} lacks the required field {key!r}")
            value = entry[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ManifestError(
                    f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}: {value!r}"
                )
        if entry["sample_rate"] <= 0:
            raise ManifestError(f"{where}: sample_rate={entry['sample_rate']!r} must be a positive integer")
        if entry["output"] not in OUTPUT_KINDS:
            raise ManifestError(f"{where}: output={entry['output']!r} must be 'clip' or 'frame'")
        layers = entry["layers"]
        for layer, dim in layers.items():
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise ManifestError(f"{where}: layers[{layer!r}]={dim!r} must be a positive integer (the layer's size)")
        if entry["default_layer"] not in layers:
            raise ManifestError(f"{where}: default_layer {entry['default_layer']!r} is not in its layers")
        for layer in entry["all_layers"]:
            if layer not in layers:
                raise ManifestError(f"{where}: all_layers names {layer!r}, which is not in its layers")
        for key in ("patch_seconds", "patch_hop_seconds"):
            value = entry.get(key)
            needed = entry["output"] == "clip" or (key == "patch_seconds" and value is not None)
            if needed and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ManifestError(f"{where}: clip models need a positive {key!r}, got {value!r}")
        if entry["output"] == "clip":
            expected = round(entry["patch_seconds"] * entry["sample_rate"])
            if entry["config"].get("patch_samples") != expected:
                raise ManifestError(
                    f"{where}: config.patch_samples={entry['config'].get('patch_samples')} does not "
                    f"match patch_seconds * sample_rate = {expected}"
                )
        frontend = entry["config"].get("frontend", {})
        if frontend.get("sample_rate") != entry["sample_rate"]:
            raise ManifestError(
                f"{where}: front-end sample_rate {frontend.get('sample_rate')} differs from "
                f"the model's sample_rate {entry['sample_rate']}"
            )
        hop = frontend.get("hop_length")
        if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
            raise ManifestError(f"{where}: config.frontend.hop_length={hop!r} must be a positive integer")
        weights = _parse_weights(where, entry["weights"])
        head, aux = _parse_heads(where, entry, layers)
        hub = entry.get("hub") or {}
        if not isinstance(hub, Mapping):
            raise ManifestError(f"{where}: hub={hub!r} must be an object with 'repo_id' and 'revision'")
        frozen = copy.deepcopy(dict(entry))
        # the records in this order, so an entry with several faults is named by the first
        clip_key = _parse_clip_key(where, frozen.get("clip_key"), head, aux)
        downbeat_model = _parse_downbeat_model(where, frozen.get("downbeat_model"), head, aux)
        clip_tags = _parse_clip_tags(where, frozen.get("clip_tags"), head, aux, layers)
        bar_model = _parse_bar_model(where, frozen.get("bar_model"), head, aux, layers)
        _check_derived_layers(where, layers, bar_model, head, aux)
        return cls(
            name=name,
            family=entry["family"],
            task=entry["task"],
            description=entry["description"],
            sample_rate=int(entry["sample_rate"]),
            output=entry["output"],
            config=MappingProxyType(frozen["config"]),
            layers=MappingProxyType(dict(layers)),
            default_layer=entry["default_layer"],
            all_layers=tuple(entry["all_layers"]),
            weights=weights,
            pretrained=entry["pretrained"],
            license=entry["license"],
            patch_seconds=None if entry.get("patch_seconds") is None else float(entry["patch_seconds"]),
            patch_hop_seconds=None if entry.get("patch_hop_seconds") is None else float(entry["patch_hop_seconds"]),
            head=head,
            aux_heads=aux,
            hub_repo_id=hub.get("repo_id"),
            hub_revision=hub.get("revision"),
            training=MappingProxyType(dict(frozen.get("training") or {})),
            metrics=MappingProxyType(dict(frozen.get("metrics") or {})),
            references=tuple(frozen.get("references") or ()),
            saved_from=frozen.get("saved_from"),
            clip_key=clip_key,
            downbeat_model=downbeat_model,
            clip_tags=clip_tags,
            bar_model=bar_model,
            entry=MappingProxyType(frozen),
        )


def _parse_clip_key(where: str, record: Any, head: Optional[HeadSpec], aux: tuple) -> Optional[Mapping[str, Any]]:
    """The ``clip_key`` record, checked: its arrays' shapes, and ``key`` (24) and ``chord`` (12 x 9 + 1) heads."""
    if record is None:
        return None
    if not isinstance(record, Mapping):
        raise ManifestError(f"{where}: clip_key={record!r} must be an object with 'scale', 'bias' and 'chord'")
    labels = {h.output: h.labels for h in ([head] if head else []) + list(aux)}
    key, chord = labels.get("key", ()), labels.get("chord", ())
    # the layout clip_key_distribution reads: keys tonic + 12 * minor from C, chords root * 9 + quality, then N
    if len(key) != 24 or key[0] != "C major" or key[12] != "C minor" or len(chord) != 12 * 9 + 1 \
            or chord[0] != "C:maj" or chord[9] != "C#:maj" or chord[-1] != "N":
        raise ManifestError(
            f"{where}: clip_key needs the 24-label 'key' head ('C major' .. 'B minor') and the 109-label 'chord' "
            f"head ('C:maj' .. 'B:dim7', 'N'); the model's heads are {[(k, len(v)) for k, v in labels.items()]}"
        )
    _check_shapes(where, "clip_key", record, {"scale": (2,), "bias": (2,), "chord": (2, 12, 9)})
    mode_scale = record.get("mode_scale")
    if mode_scale is not None:
        if isinstance(mode_scale, bool) or not isinstance(mode_scale, (int, float)):
            raise ManifestError(f"{where}: clip_key['mode_scale'] must be a number, got {mode_scale!r}")
        if tuple(labels.get("mode", ())) != ("major", "minor"):
            raise ManifestError(f"{where}: clip_key['mode_scale'] needs a 'mode' head labelled ['major', 'minor']; "
                                f"the model's heads are {sorted(labels)}")
    chroma_scale = record.get("chroma_scale")
    if chroma_scale is not None:
        try:
            ok = _nested_shape(chroma_scale) == (2,)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ManifestError(f"{where}: clip_key['chroma_scale'] must be 2 numbers (major, minor), got {chroma_scale!r:.80}")
        if tuple(labels.get("pitch_classes", ())) != PITCH_CLASS_LABELS:
            raise ManifestError(f"{where}: clip_key['chroma_scale'] needs a 'pitch_classes' head labelled {list(PITCH_CLASS_LABELS)}; "
                                f"the model's heads are {sorted(labels)}")
    profiles = [name for name in ("pitch_class_profile", "final_profile") if record.get(name) is not None]
    if profiles:
        _check_shapes(where, "clip_key", record, {name: (2, 12) for name in profiles})
        if tuple(labels.get("pitch_classes", ())) != PITCH_CLASS_LABELS:
            raise ManifestError(f"{where}: clip_key[{profiles[0]!r}] needs a 'pitch_classes' head labelled "
                                f"{list(PITCH_CLASS_LABELS)}; the model's heads are {sorted(labels)}")
    if record.get("final_profile") is not None:
        frames = record.get("final_frames")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ManifestError(f"{where}: clip_key['final_frames']={frames!r}: the final_profile needs a positive "
                                f"whole number of frames (the clip's last frames it reads)")
    return MappingProxyType(dict(record))


def _is_record_of_form(where: str, name: str, record: Any, form: str, command: str) -> bool:
    """``False`` for an absent record; ``True`` for an object whose ``form`` is ``form``; a ``ManifestError``
    naming the record and the fit that writes it (``python -m training.musical COMMAND``) otherwise."""
    if record is None:
        return False
    if not isinstance(record, Mapping):
        raise ManifestError(f"{where}: {name}={record!r:.80} must be an object (python -m training.musical {command})")
    if record.get("form") != form:
        raise ManifestError(f"{where}: {name}['form']={record.get('form')!r}: expected {form!r}")
    return True


def _parse_downbeat_model(where: str, record: Any, head: Optional[HeadSpec], aux: tuple) -> Optional[Mapping[str, Any]]:
    """The ``downbeat_model`` record, checked: its form, feature names, bar lengths, array shapes and the
    heads it reads (``beats``, ``chord``, ``meter``, ``pitch_classes``)."""
    if not _is_record_of_form(where, "downbeat_model", record, DOWNBEAT_MODEL_FORM, "fit-downbeats"):
        return None
    if tuple(record.get("features") or ()) != BEAT_FEATURES:
        raise ManifestError(f"{where}: downbeat_model['features']={record.get('features')!r:.120} must be "
                            f"{list(BEAT_FEATURES)} (the features this version computes)")
    bars = record.get("bar_lengths", list(DOWNBEAT_BAR_LENGTHS))
    if not isinstance(bars, (list, tuple)) or not bars or any(isinstance(b, bool) or not isinstance(b, int) or b < 2
                                                             for b in bars) or len(set(bars)) != len(bars):
        raise ManifestError(f"{where}: downbeat_model['bar_lengths']={bars!r:.80} must be distinct whole numbers >= 2")
    labels = {h.output: h.labels for h in ([head] if head else []) + list(aux)}
    missing = [h for h in ("beats", "chord", "meter", "pitch_classes") if h not in labels]
    if missing:
        raise ManifestError(f"{where}: downbeat_model reads the heads {missing}, which the model lacks "
                            f"(its heads are {sorted(labels)})")
    width = bar_candidate_width(len(BEAT_FEATURES), bars)
    hidden = record.get("hidden_bias")
    try:
        n_hidden = (_nested_shape(hidden) or (-1,))[0]  # a scalar has shape ()
    except (TypeError, ValueError):
        n_hidden = -1
    if n_hidden < 1:
        raise ManifestError(f"{where}: downbeat_model['hidden_bias'] must be a non-empty list of numbers, got {hidden!r:.80}")
    _check_shapes(where, "downbeat_model", record, {"mean": (width,), "scale": (width,), "hidden_weights": (width, n_hidden),
                                                    "hidden_bias": (n_hidden,), "output_weights": (n_hidden,)})
    if not all(v > 0 for v in record["scale"]):
        raise ManifestError(f"{where}: downbeat_model['scale'] must be > 0 everywhere")
    return MappingProxyType(dict(record))


def _parse_clip_tags(where: str, record: Any, head: Optional[HeadSpec], aux: tuple,
                     layers: Mapping[str, int]) -> Optional[Mapping[str, Any]]:
    """The ``clip_tags`` record, checked: its form, the head it scores, the layers and pool it reads, and the
    dtype, shape and byte length of each of its arrays (``mean``, ``scale`` ``[d]``, ``weights`` ``[d, labels]``)."""
    if not _is_record_of_form(where, "clip_tags", record, CLIP_HEAD_FORM, "fit-clip-tags"):
        return None
    labels = {h.output: h.labels for h in ([head] if head else []) + list(aux)}
    if record.get("head") not in labels:
        raise ManifestError(f"{where}: clip_tags['head']={record.get('head')!r} is not one of the model's heads {sorted(labels)}")
    sources = record.get("sources")
    if not isinstance(sources, (list, tuple)) or not sources or any(s not in layers for s in sources) \
            or len(set(sources)) != len(sources):
        raise ManifestError(f"{where}: clip_tags['sources']={sources!r:.120} must be distinct layers or heads of the model "
                            f"(it has: {sorted(layers)})")
    if record.get("pool") not in CLIP_HEAD_POOLS:
        raise ManifestError(f"{where}: clip_tags['pool']={record.get('pool')!r}: expected one of {list(CLIP_HEAD_POOLS)}")
    d = sum(int(layers[s]) for s in sources) * len(record["pool"].split("+"))  # one block per statistic
    k = len(labels[record["head"]])
    for name, shape in (("mean", (d,)), ("scale", (d,)), ("weights", (d, k))):
        _check_array_record(where, f"clip_tags[{name!r}]", record.get(name), shape)
    _check_shapes(where, "clip_tags", record, {"bias": (k,)})
    return MappingProxyType(dict(record))


def _check_derived_layers(where: str, layers: Mapping[str, int], bar_model: Optional[Mapping[str, Any]],
                          head: Optional[HeadSpec], aux: tuple) -> None:
    """Check the :data:`DERIVED_LAYERS` among ``layers``: ``metrical`` needs a ``bar_model`` record (parsed) and
    ``beats``, ``tempo`` and ``meter`` heads, and its size is the record's classes plus the meter head's labels."""
    if "metrical" not in layers:
        return
    labels = {h.output: h.labels for h in ([head] if head else []) + list(aux)}
    if bar_model is None:
        raise ManifestError(f"{where}: layers name 'metrical', which is computed from a bar_model record; "
                            "the entry has none (python -m training.musical fit-bars)")
    lacking = [h for h in ("beats", "tempo", "meter") if h not in labels]
    if lacking:
        raise ManifestError(f"{where}: layers name 'metrical', which reads the heads {lacking}; the model lacks them")
    width = len(bar_model["classes"]) + len(labels["meter"])
    if layers["metrical"] != width:
        raise ManifestError(f"{where}: layers['metrical']={layers['metrical']!r}, but its bar_model has "
                            f"{len(bar_model['classes'])} classes and the meter head {len(labels['meter'])} labels "
                            f"(expected {width})")


def _parse_bar_model(where: str, record: Any, head: Optional[HeadSpec], aux: tuple,
                     layers: Mapping[str, int]) -> Optional[Mapping[str, Any]]:
    """The ``bar_model`` record, checked: its form, the sources it reads (the beat features, layers or heads of
    the model, but no derived layer, which may be computed from the record), its classes (``[beats per bar,
    position]``, every position of each bar length) and the dtype, shape and byte length of each of its arrays
    (``mirzoo.tasks.bar_model.BAR_MODEL_ARRAYS``)."""
    if not _is_record_of_form(where, "bar_model", record, BAR_MODEL_FORM, "fit-bars"):
        return None
    heads = {h.output for h in ([head] if head else []) + list(aux)}
    sources = record.get("sources")
    derived = [s for s in sources if s in DERIVED_LAYERS] if isinstance(sources, (list, tuple)) else []
    if derived:
        raise ManifestError(f"{where}: bar_model reads {derived}, which are computed from its own output")
    if not isinstance(sources, (list, tuple)) or not sources or len(set(sources)) != len(sources) \
            or any(not isinstance(s, str) or (s != BAR_MODEL_BEAT_FEATURES and s not in layers) for s in sources):
        raise ManifestError(f"{where}: bar_model['sources']={sources!r:.120} must be distinct names among "
                            f"{BAR_MODEL_BEAT_FEATURES!r} and the model's layers and heads {sorted(layers)}")
    needed = {"beats", "meter"} | ({"chord", "pitch_classes"} if BAR_MODEL_BEAT_FEATURES in sources else set())
    if needed - heads:
        raise ManifestError(f"{where}: bar_model reads the heads {sorted(needed - heads)}, which the model lacks "
                            f"(it has {sorted(heads)})")
    classes = record.get("classes")
    try:
        pairs = [(int(b), int(j)) for b, j in classes]
        ok = (len(set(pairs)) == len(pairs) and len(pairs) > 0
              and all(not isinstance(v, bool) and isinstance(v, int) for c in classes for v in c)
              and all(b >= 2 and 1 <= j <= b for b, j in pairs)
              and all((b, j) in pairs for b, _ in pairs for j in range(1, b + 1)))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ManifestError(f"{where}: bar_model['classes']={classes!r:.120} must be distinct [beats per bar >= 2, "
                            "position 1..beats per bar] pairs, every position of each bar length")
    d = sum(len(BEAT_FEATURES) if s == BAR_MODEL_BEAT_FEATURES else int(layers[s]) for s in sources)
    try:
        hidden = int(record["dense_bias"]["shape"][0])
        units = int(record["forward_recurrent"]["shape"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        raise ManifestError(f"{where}: bar_model lacks a 'dense_bias' or 'forward_recurrent' array record "
                            f"(got {record.get('dense_bias')!r:.60}, {record.get('forward_recurrent')!r:.60})") from None
    shapes = {"mean": (d,), "scale": (d,), "dense_kernel": (d, hidden), "dense_bias": (hidden,),
              "output_kernel": (2 * units, len(pairs)), "output_bias": (len(pairs),)}
    for side in ("forward", "backward"):
        shapes.update({f"{side}_kernel": (hidden, 3 * units), f"{side}_recurrent": (units, 3 * units),
                       f"{side}_bias": (2, 3 * units)})
    for name in BAR_MODEL_ARRAYS:
        _check_array_record(where, f"bar_model[{name!r}]", record.get(name), shapes[name])
    return MappingProxyType(dict(record))


def _check_array_record(where: str, what: str, value: Any, shape: tuple) -> None:
    """``ManifestError`` unless ``value`` is an encoded array (``{"dtype", "shape", "base64"}``) of ``shape``
    whose bytes fit it."""
    if not isinstance(value, Mapping) or value.get("dtype") not in ARRAY_DTYPE_BYTES \
            or list(value.get("shape") or ()) != list(shape) or not isinstance(value.get("base64"), str):
        raise ManifestError(f"{where}: {what} must be {{'dtype': one of {sorted(ARRAY_DTYPE_BYTES)}, 'shape': {list(shape)}, "
                            f"'base64': ...}}, got {value!r:.120}")
    try:
        size = len(base64.b64decode(value["base64"], validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ManifestError(f"{where}: {what}['base64'] is not base64: {exc}") from exc
    want = ARRAY_DTYPE_BYTES[value["dtype"]] * math.prod(shape)
    if size != want:
        raise ManifestError(f"{where}: {what} holds {size} bytes; {value['dtype']} of shape {list(shape)} needs {want}")


def _check_shapes(where: str, what: str, record: Mapping[str, Any], shapes: Mapping[str, tuple]) -> None:
    """``ManifestError`` unless each ``record[name]`` is nested lists of numbers of shape ``shapes[name]``."""
    for name, shape in shapes.items():
        value = record.get(name)
        try:
            ok = _nested_shape(value) == shape
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ManifestError(f"{where}: {what}[{name!r}] must be numbers of shape {shape}, got {value!r:.80}")


def _nested_shape(value: Any) -> tuple:
    """Shape of a nested list of numbers (``ValueError`` when ragged, ``TypeError`` for non-numbers)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, (int, float)):
        return ()
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError("not a non-empty list")
    inner = {_nested_shape(v) for v in value}
    if len(inner) != 1:
        raise ValueError("ragged")
    return (len(value),) + inner.pop()


def _parse_weights(where: str, weights: Mapping[str, Any]) -> WeightsSpec:
    kind = weights.get("kind")
    if kind == "seeded":
        seed = weights.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ManifestError(f"{where}: seeded weights need an integer 'seed', got {seed!r}")
        return WeightsSpec(kind, sha256=weights.get("sha256"), seed=seed, init=weights.get("init", "he_uniform"))
    if kind == "file":
        for key in ("file", "sha256", "size"):
            if key not in weights:
                raise ManifestError(f"{where}: weight file record lacks {key!r}")
        return WeightsSpec(kind, sha256=weights["sha256"], file=weights["file"], size=weights["size"])
    raise ManifestError(f"{where}: weights.kind={kind!r} must be 'seeded' or 'file'")


def _parse_heads(where: str, entry: Mapping[str, Any], layers: Mapping[str, int]):
    head = entry.get("head")
    aux = entry.get("aux_heads") or []
    if aux and head is None:
        raise ManifestError(f"{where}: 'aux_heads' needs a primary 'head'")
    if not isinstance(aux, list):
        raise ManifestError(f"{where}: 'aux_heads' must be a list of head records, got {aux!r}")
    parsed = []
    for h in ([head] if head is not None else []) + aux:
        if not isinstance(h, Mapping) or h.get("output") not in layers:
            out = h.get("output") if isinstance(h, Mapping) else h
            raise ManifestError(f"{where}: head output {out!r} is not in its layers")
        labels = h.get("labels", [])
        if len(labels) != layers[h["output"]]:
            raise ManifestError(
                f"{where}: {len(labels)} labels for the {layers[h['output']]}-dim head {h['output']!r}"
            )
        parsed.append(HeadSpec(
                h["output"], tuple(str(label) for label in labels), h.get("activation", "sigmoid"), h.get("multilabel")
            ))
    if head is None:
        return None, ()
    return parsed[0], tuple(parsed[1:])
