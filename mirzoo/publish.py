"""Publish a model to the Hugging Face Hub: a hub-ready folder, a model card, an upload.

The folder holds what :meth:`mirzoo.Extractor.save` writes (the Keras unzipped
layout ``config.json``, ``metadata.json``, ``model.weights.h5`` and
``mirzoo.json``), so ``mirzoo.load("hf://owner/repo@rev")`` and Keras' own
``keras.saving.load_model("hf://owner/repo")`` both read it, plus a ``README.md``
model card.  ``mirzoo.json`` gains the repo id and a ``files`` map with the
sha256 and size of every model file, which :func:`mirzoo.loader.load_reference`
checks.

Command line (a dry run unless ``--push``)::

    mirzoo publish my-finetuned/ --repo owner/my-model            # build the folder, list what would upload
    mirzoo publish my-finetuned/ --repo owner/my-model --push     # upload with $HF_TOKEN, print the commit
    mirzoo publish random-cnn --repo mirzoo/random-cnn --push --tag v1 --update-manifest
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Union

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
    "add_cli_commands",
    "main",
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
    weights = meta["entry"]["weights"]
    if weights.get("kind") != "file" or weights.get("file") != "model.weights.h5":
        raise ParameterError(
            f"'{directory / META}': weights must be {{'kind': 'file', 'file': 'model.weights.h5', ...}} as "
            f"written by Extractor.save, got {weights!r}"
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


def model_card(name: str, entry: dict[str, Any], repo_id: str) -> str:
    """The ``README.md`` model card of a model: YAML front matter and the usual sections.

    Front matter: ``library_name: keras`` (the repo is in Keras' layout, so the hub shows
    Keras' loading snippet), ``license``, ``tags`` (``mirzoo`` among them) and ``datasets``.
    Sections: model, how to use, training data, metrics (from the manifest entry),
    intended use, limitations, citation.
    """
    license_id, license_name = _hub_license(entry.get("license", ""))
    task = entry.get("task", "")
    pretrained = bool(entry.get("pretrained"))
    datasets = _datasets(entry.get("training") or {})
    tags = ["mirzoo", "keras", "audio", "music", "music-information-retrieval"]
    tags += [t for t in (task, entry.get("family", "").replace("_", "-")) if t and t not in tags]
    if not pretrained:
        tags.append("random-weights")
    pipeline = "audio-classification" if entry.get("head") else "feature-extraction"

    front = ["---", "library_name: keras", f"license: {license_id}"]
    if license_name:
        front.append(f"license_name: {_yaml_str(license_name)}")
    front.append("tags:")
    front += [f"- {_yaml_str(t)}" for t in tags]
    front.append("datasets:" + ("" if datasets else " []"))
    front += [f"- {_yaml_str(d)}" for d in datasets]
    front += [f"pipeline_tag: {pipeline}", "---", ""]

    layers = entry.get("layers", {})
    layer_rows = "\n".join(f"| `{k}` | {v} |" for k, v in layers.items())
    head = entry.get("head") or {}
    labels = head.get("labels") or []
    if entry.get("output") == "clip":
        framing = (
            f"clip-level: {entry.get('patch_seconds')} s patches every {entry.get('patch_hop_seconds')} s, "
            f"one vector per patch"
        )
    else:
        framing = "frame-level: one vector per spectrogram frame"
    training = entry.get("training") or {}
    notes = training.get("notes") if isinstance(training, dict) else None
    saved_from = entry.get("saved_from")

    body = [f"# {name}", "", entry.get("description", "").strip(), ""]
    if saved_from and saved_from != name:
        body += [f"Derived from the mirzoo model `{saved_from}`.", ""]
    body += [
        "## Model",
        "",
        f"- Input: mono waveform at {entry.get('sample_rate')} Hz (mirzoo resamples and down-mixes for you);"
        " the audio front-end is a layer inside the model.",
        f"- Output: {framing}.",
        f"- Default embedding layer: `{entry.get('default_layer')}`.",
        "",
        "| layer | dimensions |",
        "|---|---|",
        layer_rows,
        "",
    ]
    frame = entry.get("output") == "frame"
    if labels:
        what = f"Labels of the frame-wise head `{head.get('output')}`" if frame else "Tag vocabulary"
        body += [f"{what} ({len(labels)}): " + ", ".join(f"`{t}`" for t in labels) + ".", ""]
    aux_heads = [h for h in entry.get("aux_heads") or [] if isinstance(h, dict)]
    for h in aux_heads:
        body += [f"Second head `{h.get('output')}` ({len(h.get('labels', []))} labels, read with "
                 f"`m.tag(audio, head=\"{h.get('output')}\")`): " + ", ".join(f"`{t}`" for t in h.get("labels", [])) + ".", ""]
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
    if isinstance(training, dict) and (training.get("train_minutes") or training.get("hardware")):
        line = "Training took"
        if training.get("train_minutes"):
            line += f" {training['train_minutes']} min"
        if training.get("hardware"):
            line += f" on {training['hardware']}"
        if training.get("best_epoch") is not None:
            line += f" (best epoch {training['best_epoch']} on the validation split)"
        body += ["", line + "."]
    if isinstance(training, dict) and training.get("command"):
        body += ["", "Reproduce with:", "", "```bash", str(training["command"]), "```"]
    body += ["", "## Metrics", "", _metrics_section(entry.get("metrics"), pretrained)]

    if not pretrained:
        use = (
            "Random-weight features: a baseline that a trained model has to beat, and a cheap, deterministic "
            "model for testing pipelines. Not a feature extractor to rely on for results."
        )
    elif labels and frame:
        heads = [head.get("output")] + [h.get("output") for h in entry.get("aux_heads") or [] if isinstance(h, dict)]
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
        f"- Works on {entry.get('sample_rate')} Hz mono audio: other input is resampled and down-mixed, so "
        f"content above {int(entry.get('sample_rate', 0)) // 2} Hz and stereo information are lost.",
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

    refs = entry.get("references") or []
    body += ["## Citation", ""]
    body += [f"- {r}" for r in refs] if refs else ["No reference recorded."]
    body += ["", f"Published with [mirzoo](https://pypi.org/project/mirzoo/); license: {entry.get('license')}.", ""]
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
        (tmp / CARD).write_text(model_card(name, entry, repo_id), encoding="utf-8")
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


# -- command line ------------------------------------------------------------------------------


def _default_out(repo_id: str) -> Path:
    return Path(f"{repo_id.split('/')[-1]}-hub")


def _is_previous_build(folder: Path) -> bool:
    return (folder / META).is_file() and (folder / CARD).is_file() and (folder / "config.json").is_file()


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``publish`` options to ``parser``."""
    parser.add_argument("model", help="a saved model directory (Extractor.save), a zoo name or an hf:// reference")
    parser.add_argument("--repo", required=True, metavar="OWNER/NAME", help="Hugging Face repo id")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where to build the hub folder (default: ./<name>-hub; a previous build is replaced)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a previous build")
    parser.add_argument("--license", help="license to record instead of the model's (e.g. MIT, CC-BY-4.0)")
    parser.add_argument("--push", action="store_true", help="upload (token from $HF_TOKEN); default is a dry run")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--branch", help="branch to commit to (default: main)")
    parser.add_argument("--tag", help="tag the new commit, e.g. v1")
    parser.add_argument("--message", help="commit message")
    parser.add_argument(
        "--update-manifest",
        action="store_true",
        help="after --push, pin the zoo entry's hub repo_id and revision (the commit) in both manifest copies",
    )
    parser.set_defaults(func=run, command="publish")
    return parser


def add_cli_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``publish`` on an ``argparse`` sub-parser set; the handler is ``args.func(args) -> int``."""
    parser = subparsers.add_parser(
        "publish",
        help="build a Hugging Face Hub model repo (and with --push, upload it)",
        description=__doc__.split("\n\n")[0],
    )
    return configure_parser(parser)


def run(args: argparse.Namespace, *, stdout=None) -> int:
    """Carry out ``publish`` for parsed ``args``; returns the exit status."""
    out_stream = stdout or sys.stdout
    _check_repo_id(args.repo)
    if args.update_manifest and not args.push:
        raise ParameterError("--update-manifest needs --push: the manifest pins the commit that the push creates")
    if args.push:
        if offline():
            raise PublishError(
                f"cannot push to {args.repo!r}: offline mode is on (HF_HUB_OFFLINE or MIRZOO_OFFLINE); run without "
                f"--push for a dry run, or unset it on a connected machine"
            )
    out = Path(args.out) if args.out else _default_out(args.repo)
    overwrite = args.overwrite or (out.exists() and _is_previous_build(out))
    folder = build_repo_folder(args.model, out, args.repo, overwrite=overwrite, license=args.license)
    files = repo_files(folder)
    total = sum(size for _, size in files)
    print(f"hub folder for {args.repo}: {folder}", file=out_stream)
    width = max(len(f) for f, _ in files)
    for f, size in files:
        print(f"  {f:<{width}}  {_human(size):>9}  ({size} bytes)", file=out_stream)
    print(f"  {len(files)} files, {_human(total)}", file=out_stream)
    if not args.push:
        print(f"dry run: nothing uploaded. Add --push to upload to https://huggingface.co/{args.repo}", file=out_stream)
        return 0
    commit = push(
        folder,
        args.repo,
        private=True if args.private else None,
        branch=args.branch,
        tag=args.tag,
        commit_message=args.message,
    )
    rev = args.tag or commit
    print(f"pushed {args.repo}: commit {commit}", file=out_stream)
    print(f"load it with: mirzoo.load('hf://{args.repo}@{rev}')", file=out_stream)
    if args.update_manifest:
        name = json.loads((folder / META).read_text(encoding="utf-8"))["name"]
        paths = update_manifest(name, args.repo, commit)
        print(f"manifest entry {name!r} now pins {args.repo}@{commit} in {', '.join(map(str, paths))}", file=out_stream)
    return 0


def main(argv: Optional[Sequence[str]] = None, *, prog: str = "mirzoo publish") -> int:
    """``python -m mirzoo.publish``: the ``publish`` command on its own."""
    parser = configure_parser(argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MirzooError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
