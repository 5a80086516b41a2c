"""The registry: a zoo model's spec + its family's builder -> a Keras model with verified weights.

Owns building: the family builder registered in :mod:`mirzoo.nn` turns the spec's
``config`` into a Keras model, whose weights are then generated from the manifest's
seed (and checked against the sha256 of the generated weights) or read from a weight
file that :func:`mirzoo.zoo.hub.resolve_weight_file` found and checked.  Also
:func:`refresh_seeded`, which rewrites those seeded hashes after an intended change.

Names and entries come from :mod:`mirzoo.zoo.manifest` (re-exported here for
``list_models``/``get_entry``/``model_info`` callers).  Adding a model to the zoo takes
one family module in :mod:`mirzoo.nn` (registered with
:func:`mirzoo.nn.base.register_family`) and one entry in ``weights_manifest.json``;
every test parametrised over :func:`list_models` then covers it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import keras

from mirzoo.errors import ManifestError, WeightsError
from mirzoo.fileio import write_json_atomic
from mirzoo.nn import get_family
from mirzoo.nn.base import apply_seeded_weights, derive_outputs, weights_sha256
from mirzoo.spec import ModelSpec
from mirzoo.zoo.hub import resolve_weight_file
from mirzoo.zoo.manifest import get_entry, list_models, model_info

__all__ = ["list_models", "model_info", "get_entry", "build_model", "build_from_spec", "refresh_seeded"]


def build_from_spec(
    spec: ModelSpec, *, seeded: bool = True, verify: bool = True, weight_path: Optional[Path] = None
) -> keras.Model:
    """Build ``spec``'s Keras model and set its weights.

    Seeded weights are generated from the manifest's seed and, with ``verify``, checked
    against the manifest's sha256 of the generated weights; weight files are checked
    against their sha256 before they are read.  ``seeded=False`` leaves the builder's
    initial weights (for training from scratch).
    """
    builder = get_family(spec.family)
    model = builder(dict(spec.config), name=spec.name.replace("-", "_"))
    record = spec.weights
    if record.kind == "seeded":
        if not seeded:
            return model
        apply_seeded_weights(model, record.seed, record.init)
        if verify:
            if not record.sha256:
                raise ManifestError(f"manifest entry {spec.name!r} has no sha256 for its seeded weights")
            actual = weights_sha256(model)
            if actual != record.sha256:
                raise WeightsError(
                    f"seeded weights of model {spec.name!r} (seed {record.seed}) hash to {actual}, but the "
                    f"manifest expects {record.sha256}: the architecture or the generator changed. Run "
                    f"'mirzoo manifest --refresh-seeded' if the change is intended."
                )
    else:
        # a caller that already resolved (and sha256-checked) the file passes it in
        path = weight_path if weight_path is not None else resolve_weight_file(spec)
        try:
            model.load_weights(str(path))
        except Exception as exc:  # never leave a half-loaded model running
            raise WeightsError(f"weight file '{path}' does not fit model {spec.name!r}: {exc}") from exc
    # weightless outputs computed from the others (tcn-music's ``tonal``), added after the weights
    # are set so that weight files keep the builder's layout
    return derive_outputs(spec.family, model, spec.config)


def build_model(
    name: str, *, entry: Optional[dict[str, Any]] = None, verify: bool = True, weight_path: Optional[Path] = None
) -> keras.Model:
    """Build the Keras model of zoo model ``name`` (or of ``entry``) and set its weights."""
    spec = ModelSpec.from_entry(name, entry if entry is not None else get_entry(name))
    return build_from_spec(spec, verify=verify, weight_path=weight_path)


def refresh_seeded(paths: list[Path]) -> dict[str, str]:
    """Recompute the sha256 of every seeded model's generated weights and write them into ``paths``.

    Reads the manifest at ``paths[0]``; returns ``{name: new sha256}`` for the models whose
    hash changed.
    """
    with open(paths[0], encoding="utf-8") as f:
        data = json.load(f)
    changed = {}
    for name, entry in data["models"].items():
        if entry["weights"].get("kind") != "seeded":
            continue
        digest = weights_sha256(build_model(name, entry=entry, verify=False))
        if entry["weights"].get("sha256") != digest:
            changed[name] = digest
        entry["weights"]["sha256"] = digest
    for p in paths:
        write_json_atomic(p, data)
    return changed
