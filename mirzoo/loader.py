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
from pathlib import Path
from typing import Union

import keras

import mirzoo.nn  # noqa: F401  (registers the custom layers and families for deserialisation)
from mirzoo.errors import ParameterError, UnknownModelError, WeightsError
from mirzoo.extractor import Extractor
from mirzoo.fileio import file_sha256
from mirzoo.spec import ModelSpec
from mirzoo.zoo.hub import manifest_expectations, parse_reference, resolve_weight_file
from mirzoo.zoo.manifest import get_entry
from mirzoo.zoo.registry import build_from_spec
from mirzoo.zoo.transport import COMMIT, SCHEME, snapshot_path, verify_snapshot

__all__ = ["load", "load_directory", "load_reference", "read_saved", "as_extractor"]

logger = logging.getLogger(__name__)

# Built models are cached per (reference, backend): loading the same model twice
# returns extractors sharing one graph instead of rebuilding it.
_CACHE: dict = {}


def read_saved(directory: Union[str, os.PathLike]) -> dict:
    """``mirzoo.json`` of a saved model directory, after validating its entry and the weight sha256.

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
    weights = d / record.file
    if not weights.is_file():
        raise WeightsError(f"weight file '{weights}' named in '{meta_path}' is missing")
    actual = file_sha256(weights)
    if actual != record.sha256:
        raise WeightsError(
            f"weight file '{weights}' fails its sha256 check: expected {record.sha256} "
            f"(from '{meta_path}'), got {actual}. The file is corrupt or was modified; save the model again."
        )
    meta["name"] = name
    return meta


def load_directory(directory: Union[str, os.PathLike]) -> Extractor:
    """Load a model saved by :meth:`Extractor.save` (or a hub snapshot in the same layout)."""
    meta = read_saved(directory)
    model = keras.saving.load_model(str(directory))
    entry = meta["entry"]
    entry["name"] = meta["name"]
    return Extractor(model, entry, source=str(directory))


def load(model: Union[str, os.PathLike]) -> Extractor:
    """Load a model by zoo name or from a directory saved by mirzoo.

    Parameters
    ----------
    model : str or path
        A zoo name from :func:`mirzoo.list_models` (``"crnn-tagging"``),
        ``"name@revision"``, ``"hf://owner/repo[@revision]"`` (branch, tag or
        commit; sha256-verified; honours ``HF_HUB_OFFLINE``/``MIRZOO_OFFLINE`` and
        ``HF_HOME``/``HF_HUB_CACHE``), or a directory written by :meth:`Extractor.save`.

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
    if isinstance(model, os.PathLike) or (isinstance(model, str) and os.path.isdir(model)):
        if not os.path.isdir(model):
            raise ParameterError(f"model directory '{model}' does not exist")
        return load_directory(model)
    if not isinstance(model, str):
        raise UnknownModelError(f"model must be a name or a directory path, got {type(model).__name__}: {model!r}")
    if model.startswith("hf://") or "@" in model:
        return load_reference(model)
    entry = get_entry(model)
    spec = ModelSpec.from_entry(model, entry)
    key = (model, keras.backend.backend(), json.dumps(entry, sort_keys=True))
    path = None
    if spec.weights.kind == "file":
        # verified on every load, cached or not: the file may have changed since
        path = resolve_weight_file(spec)
        stat = path.stat()
        key += (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = build_from_spec(spec, weight_path=path)
    return Extractor(_CACHE[key], entry, source="bundled")


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
    extractor = load_directory(folder)
    commit = folder.name if COMMIT.fullmatch(folder.name) else None
    extractor.source = f"{SCHEME}{parsed.repo_id}@{parsed.pinned_revision}" + (
        f" (commit {commit})" if commit and commit != parsed.pinned_revision else ""
    )
    hub = dict(extractor.entry.get("hub") or {}, repo_id=parsed.repo_id, revision=commit or parsed.revision)
    extractor.entry["hub"] = hub
    logger.info("loaded %s from %s", ref, folder)
    return extractor


def as_extractor(model: Union[Extractor, str, os.PathLike]) -> Extractor:
    """``model`` itself if it is an :class:`Extractor`, else :func:`load` of it."""
    return model if isinstance(model, Extractor) else load(model)
