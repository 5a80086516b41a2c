"""Publish a model to the Hugging Face Hub: a hub-ready folder, a model card, an upload.

The folder holds what :meth:`mirzoo.Extractor.save` writes (the Keras unzipped
layout ``config.json``, ``metadata.json``, ``model.weights.h5`` and
``mirzoo.json``), so ``mirzoo.load("hf://owner/repo@rev")`` and Keras' own
``keras.saving.load_model("hf://owner/repo")`` both read it, plus a ``README.md``
model card.  ``mirzoo.json`` gains the repo id and a ``files`` map with the
sha256 and size of every model file, which :func:`mirzoo.loader.load_reference`
checks.

The ``mirzoo publish`` command (:mod:`mirzoo.cli`) is :func:`publish_model` plus printing;
a dry run unless ``--push``::

    mirzoo publish my-finetuned/ --repo owner/my-model            # build the folder, list what would upload
    mirzoo publish my-finetuned/ --repo owner/my-model --push     # upload with $HF_TOKEN, print the commit
    mirzoo publish random-cnn --repo mirzoo/random-cnn --push --tag v1 --update-manifest
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from mirzoo.errors import MirzooError, ParameterError, PublishError, UnknownModelError
from mirzoo.fileio import atomic_directory, file_sha256, write_json_atomic
from mirzoo.spec import ModelSpec
from mirzoo.zoo.manifest import PACKAGE_MANIFEST, REPO_MANIFEST
from mirzoo.zoo.transport import check_repo_id, offline

__all__ = [
    "PublishError",
    "MODEL_FILES",
    "build_repo_folder",
    "model_card",
    "repo_files",
    "push",
    "update_manifest",
    "manifest_paths",
    "publish_model",
    "PublishResult",
    "default_out",
    "is_previous_build",
]

# Files of a saved model that go to the hub, in the order they are listed.
MODEL_FILES = ("config.json", "metadata.json", "model.weights.h5")
CARD = "README.md"
META = "mirzoo.json"

# Hub license identifiers (https://huggingface.co/docs/hub/repositories-licenses) that mirzoo's
# manifest licenses map to directly; anything else is written as 'other' with its name.
_HUB_LICENSES = {
    "mit": "mit",
    "apache-2.0": "apache-2.0",
    "bsd-3-clause": "bsd-3-clause",
    "bsd-2-clause": "bsd-2-clause",
    "cc0-1.0": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "gpl-3.0": "gpl-3.0",
    "lgpl-3.0": "lgpl-3.0",
    "agpl-3.0": "agpl-3.0",
    "mpl-2.0": "mpl-2.0",
    "unlicense": "unlicense",
}


# -- the folder --------------------------------------------------------------------------------


def _check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str):
        raise ParameterError(f"repo_id must be a string 'owner/name', got {type(repo_id).__name__}: {repo_id!r}")
    check_repo_id(repo_id, f"hf://{repo_id}")


def _read_saved(directory: Path) -> dict[str, Any]:
    """mirzoo.json of a saved model directory (checked by :func:`mirzoo.loader.read_saved`),
    which must also hold every file of the Keras layout."""
    from mirzoo.loader import read_saved  # deferred: Keras/TensorFlow, kept out of `mirzoo --help` start-up

    meta = read_saved(directory)
    weights = ModelSpec.from_entry(meta.get("name") or directory.name, meta["entry"]).weights
    if weights.kind != "file" or weights.file != "model.weights.h5":
        raise ParameterError(
            f"'{directory / META}': weights must be {{'kind': 'file', 'file': 'model.weights.h5', ...}} as "
            f"written by Extractor.save, got {meta['entry']['weights']!r}"
        )
    for f in MODEL_FILES:
        if not (directory / f).is_file():
            raise ParameterError(f"'{directory}' lacks '{f}': save the model again with Extractor.save")
    return meta


def _hub_license(license: str) -> tuple[str, Optional[str]]:
    key = (license or "").strip().lower()
    if key in _HUB_LICENSES:
        return _HUB_LICENSES[key], None
    return "other", license or "unknown"


def _yaml_str(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value), ensure_ascii=False)


def _datasets(training: Any) -> list[str]:
    data = training.get("data") if isinstance(training, dict) else training
    if data is None:
        return []
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        for key in ("datasets", "names", "name"):
            if key in data:
                return _datasets({"data": data[key]})
        return sorted(str(k) for k in data)
    if isinstance(data, (list, tuple)):
        out = []
        for item in data:
            if isinstance(item, dict):
                out.extend(_datasets({"data": item}))
            else:
                out.append(str(item))
        return out
    return [str(data)]


def _metrics_section(metrics: Any, pretrained: bool) -> str:
    """A table of the manifest's metrics.

    A metric is a number, a ``{"value": ..., <how>: ...}`` record, or (as written by
    ``training/train.py``) a group such as ``{"test_fluidr3": {"roc_auc_macro": 0.9,
    "n_clips": 138}}``: each number in a group gets a row, its ``n_*`` counts say what it
    was measured on, and a top-level ``"how"`` string becomes a note under the table.
    """
    if not metrics:
        if not pretrained:
            return "None: the weights are untrained (seeded), so there is nothing to measure.\n"
        return "No metrics were recorded for this model.\n"
    if not isinstance(metrics, dict):
        return f"{metrics}\n"

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else v

    rows = ["| metric | value | how it was measured |", "|---|---|---|"]
    note = metrics.get("how") if isinstance(metrics.get("how"), str) else None
    for key, value in metrics.items():
        if key == "how" and note is not None:
            continue
        if isinstance(value, dict) and "value" not in value:
            count_keys = {k for k in value if k.startswith("n_") or "_n_" in k or k == "weights_sha256"}
            counts = "; ".join(f"{k}: {value[k]}" for k in value if k in count_keys and k != "weights_sha256")
            for k, v in value.items():
                if k in count_keys:
                    continue
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    rows.append(f"| {key}: {k} | {fmt(v)} | {counts} |".replace("\n", " "))
                elif isinstance(v, (str, list)):
                    rows.append(f"| {key}: {k} | {v} | |".replace("\n", " "))
        elif isinstance(value, dict):
            how = "; ".join(f"{k}: {v}" for k, v in value.items() if k != "value")
            rows.append(f"| {key} | {fmt(value.get('value', ''))} | {how} |".replace("\n", " "))
        else:
            rows.append(f"| {key} | {fmt(value)} | |".replace("\n", " "))
    return "\n".join(rows) + "\n" + (f"\n{note}\n" if note else "")


def _fit_time_and_hardware(record: Mapping[str, Any]) -> str:
    """``", 487.4 s on x86_64, 2 CPU cores, no GPU"`` from a fit record's ``fit_seconds`` and ``hardware``, or ``""``."""
    if record.get("hardware") and isinstance(record.get("fit_seconds"), (int, float)):
        return f", {record['fit_seconds']:g} s on {record['hardware']}"
    return ""


def model_card(spec: ModelSpec, repo_id: str) -> str:
    """The ``README.md`` model card of a model: YAML front matter and the usual sections.

    Front matter: ``library_name: keras`` (the repo is in Keras' layout, so the hub shows
    Keras' loading snippet), ``license``, ``tags`` (``mirzoo`` among them) and ``datasets``.
    Sections: model, how to use, training data, metrics (from the manifest entry),
    intended use, limitations, citation.
    """
    name = spec.name
    license_id, license_name = _hub_license(spec.license)
    task = spec.task
    pretrained = spec.pretrained
    datasets = _datasets(dict(spec.training))
    tags = ["mirzoo", "keras", "audio", "music", "music-information-retrieval"]
    tags += [t for t in (task, spec.family.replace("_", "-")) if t and t not in tags]
    if not pretrained:
        tags.append("random-weights")
    pipeline = "audio-classification" if spec.head else "feature-extraction"

    front = ["---", "library_name: keras", f"license: {license_id}"]
    if license_name:
        front.append(f"license_name: {_yaml_str(license_name)}")
    front.append("tags:")
    front += [f"- {_yaml_str(t)}" for t in tags]
    front.append("datasets:" + ("" if datasets else " []"))
    front += [f"- {_yaml_str(d)}" for d in datasets]
    front += [f"pipeline_tag: {pipeline}", "---", ""]

    layer_rows = "\n".join(f"| `{k}` | {v} |" for k, v in spec.layers.items())
    labels = spec.labels or []
    if spec.is_clip:
        framing = (
            f"clip-level: {spec.patch_seconds} s patches every {spec.patch_hop_seconds} s, "
            f"one vector per patch"
        )
    else:
        framing = "frame-level: one vector per spectrogram frame"
    training = dict(spec.training)
    notes = training.get("notes")
    saved_from = spec.saved_from

    body = [f"# {name}", "", spec.description.strip(), ""]
    if saved_from and saved_from != name:
        body += [f"Derived from the mirzoo model `{saved_from}`.", ""]
    body += [
        "## Model",
        "",
        f"- Input: mono waveform at {spec.sample_rate} Hz (mirzoo resamples and down-mixes for you);"
        " the audio front-end is a layer inside the model.",
        f"- Output: {framing}.",
        f"- Default embedding layer: `{spec.default_layer}`.",
        "",
        "| layer | dimensions |",
        "|---|---|",
        layer_rows,
        "",
    ]
    frame = spec.is_frame
    if labels:
        what = f"Labels of the frame-wise head `{spec.head_output}`" if frame else "Tag vocabulary"
        body += [f"{what} ({len(labels)}): " + ", ".join(f"`{t}`" for t in labels) + ".", ""]
    for h in spec.aux_heads:
        body += [f"Second head `{h.output}` ({len(h.labels)} labels, read with "
                 f"`m.tag(audio, head=\"{h.output}\")`): " + ", ".join(f"`{t}`" for t in h.labels) + ".", ""]
    body += [
        "## How to use",
        "",
        "```python",
        "import mirzoo",
        f'm = mirzoo.load("hf://{repo_id}@<commit-or-tag>")   # pin a revision; sha256-checked',
        'e = m.extract("song.wav")                              # embeddings [T, D] and timestamps [T]',
    ]
    if labels:
        body.append('m.tag("song.wav", top_k=5)')
    body += [
        "```",
        "",
        "Keras alone reads the same files (import `mirzoo` first: it registers the custom layers):",
        "",
        "```python",
        "import keras, mirzoo.nn",
        f'model = keras.saving.load_model("hf://{repo_id}")',
        "```",
        "",
        "## Training data",
        "",
    ]
    if datasets:
        body += [f"- {d}" for d in datasets]
    elif pretrained:
        body.append("Not recorded.")
    else:
        body.append("None: the weights come from a fixed random seed, not from training.")
    if notes:
        body += ["", str(notes)]
    if training.get("train_minutes") or training.get("hardware"):
        line = "Training took"
        if training.get("train_minutes"):
            line += f" {training['train_minutes']} min"
        if training.get("hardware"):
            line += f" on {training['hardware']}"
        if training.get("best_epoch") is not None:
            line += f" (best epoch {training['best_epoch']} on the validation split)"
        body += ["", line + "."]
    init = training.get("init")
    if isinstance(init, dict):
        line = f"Fine-tuned from earlier weights (sha256 `{str(init.get('sha256', '?'))[:12]}`"
        if init.get("epochs") is not None:
            line += f", {init['epochs']} epochs"
        if init.get("train_minutes") is not None:
            line += f", {init['train_minutes']} min"
        line += ")"
        if training.get("train_minutes_in_all") is not None:
            line += f": {training['train_minutes_in_all']} min of training in all"
        body += ["", line + "."]
    pcs = training.get("pitch_classes")
    if isinstance(pcs, dict):
        valid = dict(pcs.get("valid") or {})
        body += ["", f"Pitch-class head `pitch_classes`: 12 sigmoid units on the frozen `frame` vector, fitted by "
                 f"logistic regression to the pitch classes the score sounds in each frame ({pcs.get('frames')} frames "
                 f"of {pcs.get('clips')} {pcs.get('split')} clips of {', '.join(pcs.get('corpora', []))}); every other "
                 "output is unchanged by it"
                 + (f"; frame F1 {valid['f1']} on {valid['frames']} {valid['split']} frames" if "f1" in valid else "") + "."]
    tags_head = training.get("tags_head")
    if isinstance(tags_head, dict):
        valid = dict(tags_head.get("valid") or {})
        hardware = _fit_time_and_hardware(tags_head)
        body += ["", f"Tags head refitted on the frozen {' + '.join(f'`{s}`' for s in tags_head.get('sources', []))} "
                 f"(concatenated): a frame-wise logistic regression to the clip tags ({tags_head.get('frames')} frames of "
                 f"{tags_head.get('clips')} {tags_head.get('split')} clips of {', '.join(tags_head.get('corpora', []))}"
                 f"{hardware}); every other output is unchanged by it"
                 + (f"; clip tag ROC-AUC {valid['roc_auc_before']} -> {valid['roc_auc']} on {valid['clips']} "
                    f"{valid['split']} clips" if "roc_auc" in valid else "") + "."]
    clip_tags, clip_fit = spec.clip_tags, training.get("clip_tags")
    if clip_tags and isinstance(clip_fit, dict):
        valid = dict(clip_fit.get("valid") or {})
        stats = {"mean+std": "mean and standard deviation",
                 "mean+std+max": "mean, standard deviation and maximum"}.get(clip_tags.get("pool"), "mean")
        hardware = _fit_time_and_hardware(clip_fit)
        body += ["", f"Clip-level tags (`tag()`): a logistic regression on the {stats} over the clip's frames of "
                 f"{' + '.join(f'`{s}`' for s in clip_tags.get('sources', []))}, fitted on {clip_fit.get('clips')} "
                 f"{clip_fit.get('split')} clips of {', '.join(clip_fit.get('corpora', []))} (L2 {clip_fit.get('l2')}, "
                 f"chosen on the {valid.get('split')} clips{hardware}); the `{clip_tags.get('head')}` head's frames "
                 "(`predict`, taggrams) are unchanged"
                 + (f"; clip tag ROC-AUC on {valid['clips']} {valid['split']} clips {valid['roc_auc_frame_mean']} "
                    f"(frame mean of the head) -> {valid['roc_auc']}" if "roc_auc" in valid else "") + "."]
    clip_key = spec.clip_key
    if clip_key:
        v = dict(clip_key.get("valid") or {})
        fitted = f", fitted on {clip_key['fitted_on']}" if clip_key.get("fitted_on") else ""
        fit_time = _fit_time_and_hardware(clip_key)
        if clip_key.get("form") == "profiles":
            secs = ""
            if clip_key.get("final_frames") and spec.sample_rate and spec.hop_length:
                secs = f" ({clip_key['final_frames'] * spec.hop_length / spec.sample_rate:g} s)"
            how = ("from the key head's clip mean and learnt key profiles of the `pitch_classes` head: one for the "
                   f"whole clip and one for its last frames{secs}, where a cadence usually lands on the tonic (a "
                   "transposition-equivariant logistic regression" + fitted + ")")
        elif clip_key.get("form") == "pitch-classes":
            how = ("by Krumhansl-Schmuckler key finding on the `pitch_classes` head: the clip mean's correlation with "
                   "the 24 rotations of the Krumhansl-Kessler profiles, with a scale and a bias per mode" + fitted
                   + "; chosen over a regression on the key and chord heads by cross-validation")
        else:
            how = ("from the key and chord heads together (a transposition-equivariant logistic regression"
                   + (" that also weighs the `pitch_classes` head's Krumhansl-Schmuckler scores" if clip_key.get("chroma_scale") else "")
                   + fitted + ")")
        body += ["", "Clip key: `analyze()` and `m.tag(audio, head=\"key\")` score a clip's key " + how
                 + (f"; MIREX weighted score cross-validated by piece {v['key_mirex_cv']}"
                    + (f" ({v['key_mirex_cv_heads_form']} for the key and chord heads' regression on the same folds)"
                       if "key_mirex_cv_heads_form" in v else "")
                    + f", against {v['key_mirex_head_mean']} for the key head's clip mean alone" if "key_mirex_cv" in v else "")
                 + (f"; fitted in {fit_time[2:]}" if fit_time else "")
                 + "."]
    downbeat_model = spec.downbeat_model
    if downbeat_model:
        v = dict(downbeat_model.get("valid") or {})
        body += ["", "Bars: `analyze()` chooses the bar length (" + ", ".join(str(b) for b in downbeat_model.get("bar_lengths", ()))
                 + " beats) and the downbeat phase together, with a small network "
                 f"({downbeat_model.get('hidden')} tanh units) scoring every candidate from the downbeat, beat, chord and "
                 "pitch-class heads at the tracked beats and the meter head"
                 + (f", fitted on {downbeat_model['fitted_on']}" if downbeat_model.get("fitted_on") else "")
                 + (f"; downbeat F-measure {v['downbeat_f']} on {v['clips']} valid clips, against "
                    f"{v['downbeat_f_evidence']} for the downbeat evidence alone" if "downbeat_f" in v else "") + "."]
    bar_model = spec.bar_model
    if bar_model:
        v = dict(bar_model.get("valid") or {})
        settings = dict(bar_model.get("settings") or {})
        seconds = dict(bar_model.get("seconds") or {})
        lengths = sorted({int(c[0]) for c in bar_model.get("classes", ())})
        body += ["", "Bars: `analyze()` reads the bar length (" + ", ".join(str(b) for b in lengths)
                 + " beats) and the downbeat phase with a bidirectional GRU over the tracked beats"
                 + (f" ({settings['units']} units each way)" if "units" in settings else "")
                 + ", from the downbeat and beat evidence at each beat and the means of "
                 + ", ".join(f"`{s}`" for s in bar_model.get("sources", ()) if s != "beat_features")
                 + " over each beat's interval; one bar length and phase per clip, and the meter head's most probable "
                 "meter of that bar length"
                 + (f"; fitted on {bar_model['fitted_on']}" if bar_model.get("fitted_on") else "")
                 + (f" in {(seconds['inputs'] + seconds['fit']) / 60:.0f} min on "
                    f"{training.get('hardware') or 'the training hardware'} ({seconds['inputs']:.0f} s for the "
                    f"features, {seconds['fit']:.0f} s for the network)" if {"inputs", "fit"} <= set(seconds) else "")
                 + (f"; on {v['clips_with_downbeats']} valid clips, downbeat F-measure {v['downbeat_f']} against "
                    f"{v['downbeat_f_evidence']} for the downbeat evidence alone, time signature {v['time_signature']} "
                    f"against {v['time_signature_evidence']}" if "downbeat_f" in v else "") + "."
                 + (f" The record also gives the `metrical` layer ({spec.layers['metrical']} values a frame): the "
                    f"record's probabilities of its {len(bar_model.get('classes', ()))} (beats per bar, position) "
                    "classes at the tracked beat that holds the frame, then the meter head's; computed after the "
                    "network, so a Keras export leaves it out." if "metrical" in spec.layers else "")]
    if training.get("command"):
        body += ["", "Reproduce with:", "", "```bash", str(training["command"]), "```"]
    body += ["", "## Metrics", "", _metrics_section(dict(spec.metrics), pretrained)]

    if not pretrained:
        use = (
            "Random-weight features: a baseline that a trained model has to beat, and a cheap, deterministic "
            "model for testing pipelines. Not a feature extractor to rely on for results."
        )
    elif labels and frame:
        heads = list(spec.heads)
        use = (
            "Frame-level analysis of music audio (one output every hop): " + " and ".join(f"`{h}`" for h in heads)
            + " per frame, and frame embeddings from the layers above for downstream tasks (chord recognition, "
            "transcription front-ends, pooled clip features)."
        )
    elif labels:
        use = (
            f"Multi-label tagging of music audio with the {len(labels)} tags above, and embeddings from the "
            "layers above for downstream tasks (linear probes, similarity, clustering)."
        )
    else:
        use = "Embeddings of music audio for downstream tasks (linear probes, similarity, clustering)."
    body += ["## Intended use", "", use, ""]

    limits = [
        f"- Works on {spec.sample_rate} Hz mono audio: other input is resampled and down-mixed, so "
        f"content above {spec.sample_rate // 2} Hz and stereo information are lost.",
    ]
    if not pretrained:
        limits.append("- Untrained: embeddings carry only what a random convolutional network preserves.")
    elif not datasets:
        limits.append("- The training data are not recorded: check them before relying on the model.")
    else:
        limits.append(
            "- The model knows only the data listed above; expect lower accuracy on other recordings, "
            "instrumentation, genres or production styles."
        )
    if labels:
        limits.append("- Tag probabilities are not calibrated across tags; choose thresholds per tag.")
    body += ["## Limitations", "", *limits, ""]

    refs = list(spec.references)
    body += ["## Citation", ""]
    body += [f"- {r}" for r in refs] if refs else ["No reference recorded."]
    body += ["", f"Published with [mirzoo](https://pypi.org/project/mirzoo/); license: {spec.license}.", ""]
    return "\n".join(front + body)


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "size": path.stat().st_size}


def build_repo_folder(
    model_or_dir: Union[Any, str, os.PathLike],
    out_dir: Union[str, os.PathLike],
    repo_id: str,
    *,
    overwrite: bool = False,
    license: Optional[str] = None,
) -> Path:
    """Write a hub-ready model repo to ``out_dir``.

    Parameters
    ----------
    model_or_dir : Extractor, str or path
        A loaded model (``mirzoo.load(name)``, a fine-tuned model), a directory written
        by :meth:`Extractor.save`, or anything :func:`mirzoo.load` accepts.
    out_dir : str or path
        Where the folder goes; written under a temporary name and renamed.
    repo_id : str
        ``owner/name`` on the Hugging Face Hub (recorded in ``mirzoo.json`` and the card).
    overwrite : bool
        Replace ``out_dir`` if it exists.
    license : str, optional
        Override the entry's license (``"MIT"``, ``"CC-BY-4.0"``, ...).

    Returns
    -------
    Path
        ``out_dir``, holding ``config.json``, ``metadata.json``, ``model.weights.h5``,
        ``mirzoo.json`` and ``README.md``.

    Examples
    --------
    >>> import mirzoo, mirzoo.publish
    >>> mirzoo.publish.build_repo_folder(mirzoo.load("random-cnn"), "hub/random-cnn", "me/random-cnn")  # doctest: +SKIP
    """
    from mirzoo.loader import Extractor, load  # deferred: Keras/TensorFlow, kept out of `mirzoo --help` start-up

    _check_repo_id(repo_id)
    target = Path(out_dir)
    if target.exists() and not overwrite:
        raise ParameterError(f"'{target}' already exists: pass overwrite=True (--overwrite) to replace it")
    with atomic_directory(target) as tmp:
        source = model_or_dir
        if not isinstance(source, Extractor):
            if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
                source = Path(source)
            elif isinstance(source, str):
                source = load(source)
            else:
                raise ParameterError(
                    f"model_or_dir must be an Extractor, a saved model directory or a model name, got "
                    f"{type(model_or_dir).__name__}: {model_or_dir!r}"
                )
        if isinstance(source, Extractor):
            saved = source.save(tmp / "model", overwrite=True)
        else:
            saved = source
        meta = _read_saved(saved)
        for f in MODEL_FILES:
            shutil.copyfile(saved / f, tmp / f)
        assets = saved / "assets"
        if assets.is_dir() and any(assets.iterdir()):
            shutil.copytree(assets, tmp / "assets")
        if isinstance(source, Extractor):
            shutil.rmtree(saved)
        name = meta["name"]
        entry = copy.deepcopy(meta["entry"])
        if license is not None:
            entry["license"] = license
        entry["hub"] = {"repo_id": repo_id, "revision": None}
        files = {f: _file_record(tmp / f) for f in MODEL_FILES}
        if (tmp / "assets").is_dir():
            for p in sorted((tmp / "assets").rglob("*")):
                if p.is_file():
                    files[p.relative_to(tmp).as_posix()] = _file_record(p)
        entry["weights"] = {"kind": "file", "file": "model.weights.h5", **files["model.weights.h5"]}
        write_json_atomic(tmp / META, {"name": name, "entry": entry, "files": files})
        (tmp / CARD).write_text(model_card(ModelSpec.from_entry(name, entry), repo_id), encoding="utf-8")
    return target


def repo_files(folder: Union[str, os.PathLike]) -> list[tuple[str, int]]:
    """``(path in repo, size in bytes)`` of every file ``upload_folder`` would send, sorted."""
    folder = Path(folder)
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


# -- the upload --------------------------------------------------------------------------------


def push(
    folder: Union[str, os.PathLike],
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: Optional[bool] = None,
    branch: Optional[str] = None,
    tag: Optional[str] = None,
    commit_message: Optional[str] = None,
) -> str:
    """Upload ``folder`` to ``repo_id`` (created if needed) and return the commit sha.

    The token is ``token``, else ``$HF_TOKEN``, else the one ``hf auth login`` stored.
    With ``tag``, the commit is also tagged (``mirzoo.load("hf://repo@<tag>")``).

    Raises
    ------
    PublishError
        Offline mode is on, or the hub refused (no token, no write access, ...).
    """
    _check_repo_id(repo_id)
    folder = Path(folder)
    _read_saved(folder)
    if not (folder / CARD).is_file():
        raise ParameterError(f"'{folder}' has no {CARD}: build it with mirzoo.publish.build_repo_folder first")
    if offline():
        raise PublishError(
            f"cannot push to {repo_id!r}: offline mode is on (HF_HUB_OFFLINE or MIRZOO_OFFLINE); unset it on a "
            f"connected machine"
        )
    try:
        from huggingface_hub import HfApi  # deferred: huggingface_hub is slow to import and only needed to fetch
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise PublishError("huggingface_hub is needed to push: pip install huggingface-hub") from exc
    token = token or os.environ.get("HF_TOKEN") or None
    api = HfApi(token=token, library_name="mirzoo")
    name = json.loads((folder / META).read_text(encoding="utf-8")).get("name", repo_id)
    message = commit_message or f"Upload mirzoo model {name}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=message,
            revision=branch,
            ignore_patterns=[".*", "**/.*"],
        )
        commit = getattr(info, "oid", None)
        if not commit:
            raise PublishError(f"the hub accepted the upload to {repo_id!r} but returned no commit id: {info!r}")
        if tag:
            api.create_tag(repo_id, tag=tag, revision=commit)
    except MirzooError:
        raise
    except Exception as exc:  # HTTP, auth, validation: all reported the same way
        hint = "" if token else " No token was given: set HF_TOKEN to a token with write access."
        raise PublishError(f"pushing '{folder}' to {repo_id!r} failed: {type(exc).__name__}: {exc}.{hint}") from exc
    return commit


def manifest_paths() -> list[Path]:
    """Both copies of the manifest: top-level ``weights_manifest.json`` (in a source tree) and the packaged one."""
    return [REPO_MANIFEST, PACKAGE_MANIFEST] if REPO_MANIFEST.exists() else [PACKAGE_MANIFEST]


def update_manifest(
    name: str, repo_id: str, revision: str, *, paths: Optional[Sequence[Union[str, os.PathLike]]] = None
) -> list[Path]:
    """Write ``hub = {repo_id, revision}`` into the manifest entry ``name`` of every copy.

    Only the hub location changes: ``mirzoo.load(f"{name}@{revision}")`` then loads the
    published repo, while ``mirzoo.load(name)`` keeps the entry's weights.

    Raises
    ------
    UnknownModelError
        ``name`` is not in a manifest (publishing a new model does not add an entry).
    """
    _check_repo_id(repo_id)
    if not isinstance(revision, str) or not revision:
        raise ParameterError(f"revision must be a non-empty string (a commit or tag), got {revision!r}")
    targets = [Path(p) for p in (paths if paths is not None else manifest_paths())]
    datas = []
    for path in targets:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = data.get("models", {})
        if name not in models:
            raise UnknownModelError(
                f"model {name!r} is not in the manifest '{path}' (it has {', '.join(sorted(models))}): updating the "
                f"manifest only re-pins the hub location of an existing zoo model; add an entry for {name!r} first"
            )
        models[name]["hub"] = {"repo_id": repo_id, "revision": revision}
        ModelSpec.from_entry(name, models[name])
        datas.append(data)
    for path, data in zip(targets, datas):
        write_json_atomic(path, data)
    return targets


# -- the whole job -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_model` did: the folder it built, its files and, after a push, the commit."""

    name: str
    repo_id: str
    folder: Path
    files: tuple[tuple[str, int], ...]
    commit: Optional[str] = None
    revision: Optional[str] = None  # the tag if one was made, else the commit
    manifests: tuple[Path, ...] = ()  # the manifest copies re-pinned by update_manifest=True

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def default_out(repo_id: str) -> Path:
    """Where a hub folder goes when no ``out`` is given: ``./<name>-hub``."""
    return Path(f"{repo_id.split('/')[-1]}-hub")


def is_previous_build(folder: Union[str, os.PathLike]) -> bool:
    """Whether ``folder`` looks like a hub folder built by :func:`build_repo_folder` (safe to replace)."""
    folder = Path(folder)
    return (folder / META).is_file() and (folder / CARD).is_file() and (folder / "config.json").is_file()


def publish_model(
    model: Union[Any, str, os.PathLike],
    repo_id: str,
    *,
    out: Optional[Union[str, os.PathLike]] = None,
    overwrite: bool = False,
    license: Optional[str] = None,
    push_to_hub: bool = False,
    private: bool = False,
    branch: Optional[str] = None,
    tag: Optional[str] = None,
    message: Optional[str] = None,
    update_manifest_entry: bool = False,
) -> PublishResult:
    """Build the hub folder of ``model`` and, with ``push_to_hub``, upload it: ``mirzoo publish``.

    Everything that can be refused is checked before anything is written: the repo id, an
    ``update_manifest_entry`` without a push, a push in offline mode.  A previous build at
    ``out`` (default :func:`default_out`) is replaced; another existing folder needs ``overwrite``.
    """
    _check_repo_id(repo_id)
    if update_manifest_entry and not push_to_hub:
        raise ParameterError("--update-manifest needs --push: the manifest pins the commit that the push creates")
    if push_to_hub and offline():
        raise PublishError(
            f"cannot push to {repo_id!r}: offline mode is on (HF_HUB_OFFLINE or MIRZOO_OFFLINE); run without "
            f"--push for a dry run, or unset it on a connected machine"
        )
    target = Path(out) if out is not None else default_out(repo_id)
    overwrite = overwrite or (target.exists() and is_previous_build(target))
    folder = build_repo_folder(model, target, repo_id, overwrite=overwrite, license=license)
    name = json.loads((folder / META).read_text(encoding="utf-8"))["name"]
    result = PublishResult(name, repo_id, folder, tuple(repo_files(folder)))
    if not push_to_hub:
        return result
    commit = push(folder, repo_id, private=True if private else None, branch=branch, tag=tag,
                  commit_message=message)
    manifests = tuple(update_manifest(name, repo_id, commit)) if update_manifest_entry else ()
    return dataclasses.replace(result, commit=commit, revision=tag or commit, manifests=manifests)
