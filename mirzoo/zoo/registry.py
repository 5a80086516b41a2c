"""Model names -> manifest entries -> built Keras models with verified weights.

Adding a model to the zoo takes one family module in :mod:`mirzoo.nn`
(registered with :func:`mirzoo.nn.base.register_family`) and one entry in
``weights_manifest.json``; every test parametrised over :func:`list_models`
then covers it.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from pathlib import Path
from typing import Any, Optional

import keras

from mirzoo.errors import ManifestError, UnknownModelError, WeightsError
from mirzoo.zoo.manifest import WEIGHTS_DIR, file_sha256, get_manifest
from mirzoo.nn import get_family
from mirzoo.nn.base import apply_seeded_weights, weights_sha256

__all__ = ["list_models", "model_info", "get_entry", "build_model", "resolve_weight_file"]


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
    """The manifest entry of ``name`` (a copy), or :class:`UnknownModelError` with close matches."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a string, got {type(name).__name__}: {name!r}")
    models = get_manifest()["models"]
    if name not in models:
        raise _unknown(name, sorted(models))
    entry = models[name]
    entry["name"] = name
    return entry


def model_info(name: str) -> dict[str, Any]:
    """Everything the manifest says about ``name``: architecture config, sample rate, patch
    length and hop, embedding layers and their dims, tag vocabulary, weights, training data,
    metrics, license and hub location."""
    return get_entry(name)


def resolve_weight_file(entry: dict[str, Any]) -> Path:
    """Find the weight file of ``entry``: bundled in the package, else the Hugging Face cache/hub.

    The file's sha256 is checked against the manifest; a mismatch raises
    :class:`WeightsError` and never falls back to other weights.
    """
    record = entry["weights"]
    bundled_dir = Path(os.environ.get("MIRZOO_WEIGHTS_DIR", WEIGHTS_DIR))
    path = bundled_dir / record["file"]
    if not path.exists():
        from mirzoo.zoo import hub

        path = hub.fetch_weight_file(entry)
    actual = file_sha256(path)
    if actual != record["sha256"]:
        raise WeightsError(
            f"weight file '{path}' of model {entry.get('name', '?')!r} fails its sha256 check: expected "
            f"{record['sha256']}, got {actual}. The file is corrupt or was replaced; reinstall mirzoo or "
            f"delete the file so that it is fetched again."
        )
    return path


def build_model(
    name: str, *, entry: Optional[dict[str, Any]] = None, verify: bool = True, weight_path: Optional[Path] = None
) -> keras.Model:
    """Build the Keras model of zoo model ``name`` and set its weights.

    Seeded weights are generated from the manifest's seed and, with ``verify``,
    checked against the manifest's sha256 of the generated weights; weight files
    are checked against their sha256 before they are read.
    """
    if entry is None:
        entry = get_entry(name)
    builder = get_family(entry["family"])
    model = builder(entry["config"], name=name.replace("-", "_"))
    record = entry["weights"]
    if record["kind"] == "seeded":
        apply_seeded_weights(model, record["seed"], record.get("init", "he_uniform"))
        if verify:
            expected = record.get("sha256")
            if not expected:
                raise ManifestError(f"manifest entry {name!r} has no sha256 for its seeded weights")
            actual = weights_sha256(model)
            if actual != expected:
                raise WeightsError(
                    f"seeded weights of model {name!r} (seed {record['seed']}) hash to {actual}, but the "
                    f"manifest expects {expected}: the architecture or the generator changed. Run "
                    f"'python -m mirzoo.zoo.manifest --refresh-seeded' if the change is intended."
                )
    else:
        # a caller that already resolved (and sha256-checked) the file passes it in
        path = weight_path if weight_path is not None else resolve_weight_file(dict(entry, name=name))
        try:
            model.load_weights(str(path))
        except Exception as exc:  # never leave a half-loaded model running
            raise WeightsError(f"weight file '{path}' does not fit model {name!r}: {exc}") from exc
    return model
