"""``mirzoo.load``: resolve a model reference to a ready :class:`~mirzoo.extractor.Extractor`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

from mirzoo.errors import ParameterError, UnknownModelError, WeightsError
from mirzoo.extractor import Extractor
from mirzoo.zoo.manifest import file_sha256, validate_entry
from mirzoo.zoo.registry import build_model, get_entry

__all__ = ["load", "load_directory", "read_saved"]

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
    validate_entry(name, entry)
    if entry["weights"].get("kind") != "file":
        raise ParameterError(
            f"'{meta_path}': weights must be a file record ({{'kind': 'file', 'file': ..., 'sha256': ...}}) as "
            f"written by Extractor.save, got {entry['weights']!r}"
        )
    weights = d / entry["weights"]["file"]
    if not weights.is_file():
        raise WeightsError(f"weight file '{weights}' named in '{meta_path}' is missing")
    actual = file_sha256(weights)
    if actual != entry["weights"]["sha256"]:
        raise WeightsError(
            f"weight file '{weights}' fails its sha256 check: expected {entry['weights']['sha256']} "
            f"(from '{meta_path}'), got {actual}. The file is corrupt or was modified; save the model again."
        )
    meta["name"] = name
    return meta


def load_directory(directory: Union[str, os.PathLike]) -> Extractor:
    """Load a model saved by :meth:`Extractor.save` (or a hub snapshot in the same layout)."""
    import keras

    import mirzoo.nn.frontend  # noqa: F401  (registers custom layers for deserialisation)
    import mirzoo.nn  # noqa: F401

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
    import keras

    if isinstance(model, os.PathLike) or (isinstance(model, str) and os.path.isdir(model)):
        if not os.path.isdir(model):
            raise ParameterError(f"model directory '{model}' does not exist")
        return load_directory(model)
    if not isinstance(model, str):
        raise UnknownModelError(f"model must be a name or a directory path, got {type(model).__name__}: {model!r}")
    if model.startswith("hf://") or "@" in model:
        from mirzoo.zoo import hub

        return hub.load_reference(model)
    entry = get_entry(model)
    key = (model, keras.backend.backend(), json.dumps(entry, sort_keys=True))
    path = None
    if entry["weights"]["kind"] == "file":
        from mirzoo.zoo.registry import resolve_weight_file

        # verified on every load, cached or not: the file may have changed since
        path = resolve_weight_file(entry)
        stat = path.stat()
        key += (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = build_model(model, entry=entry, weight_path=path)
    return Extractor(_CACHE[key], entry, source="bundled")
