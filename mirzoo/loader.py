"""``mirzoo.load``: every reference form -> a ready :class:`~mirzoo.extractor.Extractor`, and the model cache.

Owns the reference grammar users type -- a zoo name, ``name@revision``,
``hf://owner/repo[@revision]``, or a directory written by :meth:`Extractor.save` --
and the per-process cache of built models (loading a name twice shares one graph).
:func:`as_extractor` is the one place where "an Extractor or anything ``load`` takes"
is turned into an Extractor (used by batch, distributed, export, hear and sklearn).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import keras

import mirzoo.nn  # noqa: F401  (registers the custom layers and families for deserialisation)
from mirzoo._checks import valid_precision
from mirzoo.errors import ParameterError, UnknownModelError, WeightsError
from mirzoo.extractor import Extractor
from mirzoo.fileio import copy_hashed, file_sha256, safe_relative, write_json_atomic
from mirzoo.nn.precision import with_precision
from mirzoo.spec import ModelSpec
from mirzoo.zoo.hub import manifest_expectations, parse_reference, resolve_weight_file
from mirzoo.zoo.manifest import get_entry
from mirzoo.zoo.registry import build_from_spec
from mirzoo.zoo.transport import COMMIT, SCHEME, snapshot_path, verify_snapshot

__all__ = ["load", "load_directory", "load_reference", "read_saved", "saved_files", "trust_saved", "as_extractor", "KERAS_FILES"]

logger = logging.getLogger(__name__)

# Built models are cached per (reference, backend, dtype policy, precision): loading the same
# model twice returns extractors sharing one graph instead of rebuilding it; a model loaded after
# ``keras.mixed_precision.set_global_policy(...)`` is built anew under that policy, and
# ``precision=...`` is a copy of the float32 graph (also cached).
_CACHE: dict = {}


def read_saved(directory: Union[str, os.PathLike]) -> dict:
    """``mirzoo.json`` of a saved model directory, after validating its entry and the sha256 of every model
    file (:func:`saved_files`).

    Returns the parsed file with ``"name"`` filled in (the directory name if absent).
    """
    d = Path(directory)
    meta_path = d / "mirzoo.json"
    if not meta_path.is_file():
        raise ParameterError(
            f"'{d}' is not a mirzoo model directory: it has no mirzoo.json (expected the layout written by "
            f"Extractor.save: config.json, metadata.json, model.weights.h5, mirzoo.json)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        entry = meta["entry"]
        name = meta.get("name") or d.name
    except (ValueError, KeyError, TypeError) as exc:
        raise ParameterError(f"'{meta_path}' is not a valid mirzoo.json: {exc}") from exc
    record = ModelSpec.from_entry(name, entry).weights
    if record.kind != "file":
        raise ParameterError(
            f"'{meta_path}': weights must be a file record ({{'kind': 'file', 'file': ..., 'sha256': ...}}) as "
            f"written by Extractor.save, got {record}"
        )
    for file, sha in saved_files(d, meta).items():
        actual = file_sha256(d / file)
        if actual != sha:
            raise WeightsError(
                f"file '{d / file}' fails its sha256 check: expected {sha} (from '{meta_path}'), got {actual}. "
                f"The file is corrupt or was modified; save the model again."
            )
    meta["name"] = name
    return meta


#: The files Keras reads from a saved model directory: each must have a sha256 in ``mirzoo.json``.
KERAS_FILES = ("config.json", "metadata.json", "model.weights.h5")


def saved_files(directory: Union[str, os.PathLike], meta: dict) -> dict[str, str]:
    """``{file name: sha256}`` of every model file of a saved directory, from its parsed ``mirzoo.json``.

    The weight record must name ``model.weights.h5`` (the file Keras reads), every name must stay
    inside the directory, and ``config.json``, ``metadata.json`` and ``model.weights.h5`` must all
    be covered: the front-end constants live in ``config.json``, so it is checked like the weights.
    """
    d = Path(directory)
    meta_path = d / "mirzoo.json"
    weights = ModelSpec.from_entry(meta.get("name") or d.name, meta["entry"]).weights
    if weights.file != "model.weights.h5":
        raise WeightsError(
            f"'{meta_path}': weights.file={weights.file!r} must be 'model.weights.h5', the file Keras "
            f"reads; the folder was modified, save the model again"
        )
    files = meta.get("files")
    if files is None:
        raise WeightsError(
            f"'{meta_path}' has no sha256 for config.json and metadata.json (key 'files'): the folder was saved by "
            f"an older mirzoo that checked the weights only. If you trust it, run "
            f"mirzoo.loader.trust_saved('{d}') once to record the hashes, or save the model again"
        )
    if not isinstance(files, dict):
        raise WeightsError(f"'{meta_path}': 'files' must map file names to {{'sha256': <hex>}}, got {files!r}")
    out: dict[str, str] = {}
    for name, record in files.items():
        if not safe_relative(name):
            raise WeightsError(f"'{meta_path}': file name {name!r} leaves the model directory '{d}'")
        sha = record.get("sha256") if isinstance(record, dict) else record
        if not isinstance(sha, str):
            raise WeightsError(f"'{meta_path}': file {name!r} has no sha256 (expected {{'sha256': <hex>}})")
        if not (d / name).is_file():
            raise WeightsError(f"file '{name}' with a sha256 in '{meta_path}' is missing from '{d}'")
        out[name] = sha
    if out.get("model.weights.h5") != weights.sha256:
        raise WeightsError(f"'{meta_path}': the sha256 of model.weights.h5 differs between 'entry' and 'files'")
    for name in KERAS_FILES:
        if name not in out:
            raise WeightsError(f"'{meta_path}' gives no sha256 for '{name}': save the model again")
    return out


def trust_saved(directory: Union[str, os.PathLike]) -> Path:
    """Record the sha256 of ``config.json`` and ``metadata.json`` of a folder saved by an older mirzoo.

    Only for a folder you trust: from now on :func:`load` refuses it if any model file changes.
    The weight file must still match the sha256 it was saved with.
    """
    d = Path(directory)
    meta_path = d / "mirzoo.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    weights = ModelSpec.from_entry(meta.get("name") or d.name, meta["entry"]).weights
    if weights.file != "model.weights.h5" or file_sha256(d / "model.weights.h5") != weights.sha256:
        raise WeightsError(f"'{d / 'model.weights.h5'}' does not match the sha256 in '{meta_path}': save the model again")
    meta["files"] = {n: {"sha256": file_sha256(d / n), "size": (d / n).stat().st_size} for n in KERAS_FILES}
    write_json_atomic(meta_path, meta)
    return d


def load_directory(directory: Union[str, os.PathLike], *, expected: Optional[dict] = None) -> Extractor:
    """Load a model saved by :meth:`Extractor.save` (or a hub snapshot in the same layout).

    Every model file is copied to a private temporary folder, hashed as it is copied and
    checked against ``mirzoo.json`` (and ``expected``, ``{name: sha256}`` from a more trusted
    source); Keras then reads the copies, so the bytes checked are the bytes loaded.
    """
    meta = read_saved(directory)
    d = Path(directory)
    with tempfile.TemporaryDirectory(prefix="mirzoo-load-") as tmp:
        for name, sha in saved_files(d, meta).items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            actual = copy_hashed(d / name, target)
            for want in {sha, (expected or {}).get(name, sha)}:
                if actual != want:
                    raise WeightsError(
                        f"file '{d / name}' fails its sha256 check: expected {want}, got {actual}. The file is "
                        f"corrupt or was modified while loading; save or fetch the model again."
                    )
        model = keras.saving.load_model(tmp)
    entry = meta["entry"]
    entry["name"] = meta["name"]
    return Extractor(model, entry, source=str(directory))


def load(model: Union[str, os.PathLike], *, precision: Optional[str] = None) -> Extractor:
    """Load a model by zoo name or from a directory saved by mirzoo.

    Parameters
    ----------
    model : str or path
        A zoo name from :func:`mirzoo.list_models` (``"crnn-tagging"``),
        ``"name@revision"``, ``"hf://owner/repo[@revision]"`` (branch, tag or
        commit; sha256-verified; honours ``HF_HUB_OFFLINE``/``MIRZOO_OFFLINE`` and
        ``HF_HOME``/``HF_HUB_CACHE``), or a directory written by :meth:`Extractor.save`.
    precision : {"float32", "bfloat16", "float16"} or None
        Compute dtype of the layers after the front-end (which stays float32); weights stay
        float32. ``"bfloat16"`` runs the clip models about 1.5x faster on CPUs with AMX or
        AVX512-BF16 units, with embeddings within about 1e-4 in cosine of float32
        (:mod:`mirzoo.nn.precision`). ``None`` (default): Keras' global dtype policy, float32
        unless you changed it.

    Returns
    -------
    Extractor
        Weights verified against their sha256 (or, for seeded models, the hash
        of the generated weights).

    Raises
    ------
    UnknownModelError
        The name is neither a zoo model nor a directory; the message lists close matches.
    WeightsError
        A weight file is missing or fails its sha256 check.

    Examples
    --------
    >>> import mirzoo
    >>> mirzoo.load("random-cnn").sample_rate
    16000
    """
    valid_precision(precision)
    if isinstance(model, os.PathLike) or (isinstance(model, str) and os.path.isdir(model)):
        if not os.path.isdir(model):
            raise ParameterError(f"model directory '{model}' does not exist")
        return _at_precision(load_directory(model), precision)
    if not isinstance(model, str):
        raise UnknownModelError(f"model must be a name or a directory path, got {type(model).__name__}: {model!r}")
    if model.startswith("hf://") or "@" in model:
        return _at_precision(load_reference(model), precision)
    entry = get_entry(model)
    spec = ModelSpec.from_entry(model, entry)
    key = (model, keras.backend.backend(), keras.config.dtype_policy().name, json.dumps(entry, sort_keys=True))
    path = None
    if spec.weights.kind == "file":
        # verified on every load, cached or not: the file may have changed since
        path = resolve_weight_file(spec)
        stat = path.stat()
        key += (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = build_from_spec(spec, weight_path=path)
    if precision is not None:
        if key + (precision,) not in _CACHE:
            _CACHE[key + (precision,)] = with_precision(_CACHE[key], precision)
        key += (precision,)
    return Extractor(_CACHE[key], entry, source="bundled")


def _at_precision(extractor: Extractor, precision: Optional[str]) -> Extractor:
    if precision is None:
        return extractor
    model = with_precision(extractor.model, precision)
    return extractor if model is extractor.model else Extractor(model, extractor.entry, source=extractor.source)


def load_reference(ref: str) -> Extractor:
    """Load ``'hf://owner/repo'``, ``'hf://owner/repo@rev'`` or ``'name@rev'`` as an Extractor.

    ``rev`` is a branch, tag or commit; without one the repo's ``main`` branch is used
    (pin a revision for reproducible results).  Every file is verified against its
    sha256 before the model is built.

    Raises
    ------
    ParameterError
        Malformed reference.
    UnknownModelError
        ``name@rev`` with a name that is not in the zoo.
    WeightsError
        Not cached while offline, unknown repo or revision, or a sha256 mismatch.

    Examples
    --------
    >>> import mirzoo
    >>> m = mirzoo.load("hf://mirzoo/crnn-tagging@v1")   # doctest: +SKIP
    """
    parsed = parse_reference(ref)
    expected = manifest_expectations(parsed)
    folder = snapshot_path(parsed.repo_id, parsed.revision)
    verify_snapshot(folder, expected=expected, expected_source="the manifest (weights_manifest.json)", ref=parsed)
    extractor = load_directory(folder, expected=expected)
    commit = folder.name if COMMIT.fullmatch(folder.name) else None
    extractor.source = f"{SCHEME}{parsed.repo_id}@{parsed.pinned_revision}" + (
        f" (commit {commit})" if commit and commit != parsed.pinned_revision else ""
    )
    extractor.update_entry(hub={"repo_id": parsed.repo_id, "revision": commit or parsed.revision})
    logger.info("loaded %s from %s", ref, folder)
    return extractor


def as_extractor(model: Union[Extractor, str, os.PathLike], *, precision: Optional[str] = None) -> Extractor:
    """``model`` itself if it is an :class:`Extractor` (at ``precision`` when one is given), else
    :func:`load` of it."""
    if isinstance(model, Extractor):
        return _at_precision(model, valid_precision(precision))
    return load(model, precision=precision)
