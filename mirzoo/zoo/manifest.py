"""The weights manifest as a catalogue: model names -> validated entries and specs.

Owns reading ``weights_manifest.json`` (``$MIRZOO_MANIFEST`` overrides the packaged
copy), checking every entry once through :class:`~mirzoo.spec.ModelSpec`, and name
lookups with close-match suggestions (:func:`list_models`, :func:`get_entry`,
:func:`get_spec`).  Plain JSON and numpy: importing this module imports neither Keras
nor TensorFlow, so ``mirzoo list`` and ``mirzoo info`` start in well under a second.

``weights_manifest.json`` is data and a contract.  It lives at the top of the
repository and, identical, inside the package (``mirzoo/weights_manifest.json``)
so that an installed mirzoo knows its models without the source tree.  Tests
check the manifest against the built models (sample rate, hop, patch length,
embedding dimensions, seeded-weight hashes).  After changing the architecture of a
seeded model, ``mirzoo manifest --refresh-seeded`` recomputes the sha256 of its
generated weights (:func:`mirzoo.zoo.registry.refresh_seeded`).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from mirzoo.errors import ManifestError, UnknownModelError
from mirzoo.spec import ModelSpec

__all__ = [
    "PACKAGE_DIR",
    "PACKAGE_MANIFEST",
    "REPO_MANIFEST",
    "WEIGHTS_DIR",
    "manifest_path",
    "get_manifest",
    "list_models",
    "get_entry",
    "get_spec",
    "model_info",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PACKAGE_MANIFEST = PACKAGE_DIR / "weights_manifest.json"
#: the copy at the top of a source checkout (absent in an installed package)
REPO_MANIFEST = PACKAGE_DIR.parent / "weights_manifest.json"
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def manifest_path() -> Path:
    """The manifest in use: ``$MIRZOO_MANIFEST`` if set, else the packaged copy."""
    override = os.environ.get("MIRZOO_MANIFEST")
    return Path(override) if override else PACKAGE_MANIFEST


@lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as exc:
        raise ManifestError(f"weights manifest not found at '{path}'") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"weights manifest '{path}' is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ManifestError(f"weights manifest '{path}' must be an object with a 'models' mapping")
    for name, entry in data["models"].items():
        ModelSpec.from_entry(name, entry)
    return data


def get_manifest() -> dict[str, Any]:
    """The parsed, validated manifest (a deep copy: callers may modify it)."""
    path = manifest_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError as exc:
        raise ManifestError(f"weights manifest not found at '{path}'") from exc
    return copy.deepcopy(_read(str(path), mtime))


def list_models(filter: Optional[str] = None, *, pretrained: Optional[bool] = None) -> list[str]:
    """Names of the zoo's models, sorted.

    Parameters
    ----------
    filter : str, optional
        A shell-style pattern (``"*tagging"``, ``"random-*"``).
    pretrained : bool, optional
        Only models whose weights are (``True``) or are not (``False``) trained.

    Examples
    --------
    >>> import mirzoo
    >>> "random-cnn" in mirzoo.list_models()
    True
    """
    models = get_manifest()["models"]
    names = sorted(models)
    if filter is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, filter)]
    if pretrained is not None:
        names = [n for n in names if models[n]["pretrained"] is pretrained]
    return names


def _unknown(name: str, known: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownModelError(
        f"unknown model {name!r}.{hint} Available models: {', '.join(known)}. "
        f"A local directory saved by mirzoo or an 'hf://owner/repo@revision' reference also works."
    )


def get_entry(name: str) -> dict[str, Any]:
    """The manifest entry of ``name`` (a copy, with ``"name"``), or :class:`UnknownModelError` with close matches."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a string, got {type(name).__name__}: {name!r}")
    models = get_manifest()["models"]
    if name not in models:
        raise _unknown(name, sorted(models))
    entry = models[name]
    entry["name"] = name
    return entry


def get_spec(name: str) -> ModelSpec:
    """The :class:`~mirzoo.spec.ModelSpec` of zoo model ``name``."""
    return ModelSpec.from_entry(name, get_entry(name))


def model_info(name: str) -> dict[str, Any]:
    """Everything the manifest says about ``name``: architecture config, sample rate, patch
    length and hop, embedding layers and their dims, tag vocabulary, weights, training data,
    metrics, license and hub location."""
    return get_entry(name)
