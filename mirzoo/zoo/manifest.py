"""The weights manifest: what every zoo model is, how to build it, where its weights are.

``weights_manifest.json`` is data and a contract.  It lives at the top of the
repository and, identical, inside the package (``mirzoo/weights_manifest.json``)
so that an installed mirzoo knows its models without the source tree.  Tests
check the manifest against the built models (sample rate, hop, patch length,
embedding dimensions, seeded-weight hashes).

Run ``python -m mirzoo.zoo.manifest --refresh-seeded`` after changing the
architecture of a seeded model: it rebuilds each seeded model, recomputes the
sha256 of its generated weights and rewrites both copies of the manifest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from mirzoo.errors import ManifestError

__all__ = [
    "PACKAGE_MANIFEST",
    "manifest_path",
    "get_manifest",
    "validate_entry",
    "file_sha256",
    "write_json_atomic",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PACKAGE_MANIFEST = PACKAGE_DIR / "weights_manifest.json"
WEIGHTS_DIR = PACKAGE_DIR / "weights"

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


def manifest_path() -> Path:
    """The manifest in use: ``$MIRZOO_MANIFEST`` if set, else the packaged copy."""
    override = os.environ.get("MIRZOO_MANIFEST")
    return Path(override) if override else PACKAGE_MANIFEST


def validate_entry(name: str, entry: dict[str, Any]) -> None:
    """Raise :class:`ManifestError` if ``entry`` lacks a required field or is inconsistent."""
    for key, kind in _REQUIRED.items():
        if key not in entry:
            raise ManifestError(f"manifest entry {name!r} lacks the required field {key!r}")
        if not isinstance(entry[key], kind) or (kind is int and isinstance(entry[key], bool)):
            raise ManifestError(
                f"manifest entry {name!r}: field {key!r} must be {kind.__name__}, got {type(entry[key]).__name__}"
            )
    if entry["output"] not in ("clip", "frame"):
        raise ManifestError(f"manifest entry {name!r}: output={entry['output']!r} must be 'clip' or 'frame'")
    if entry["default_layer"] not in entry["layers"]:
        raise ManifestError(f"manifest entry {name!r}: default_layer {entry['default_layer']!r} is not in its layers")
    for layer in entry["all_layers"]:
        if layer not in entry["layers"]:
            raise ManifestError(f"manifest entry {name!r}: all_layers names {layer!r}, which is not in its layers")
    if entry["output"] == "clip":
        for key in ("patch_seconds", "patch_hop_seconds"):
            if not isinstance(entry.get(key), (int, float)) or entry[key] <= 0:
                raise ManifestError(f"manifest entry {name!r}: clip models need a positive {key!r}")
        expected = round(entry["patch_seconds"] * entry["sample_rate"])
        if entry["config"].get("patch_samples") != expected:
            raise ManifestError(
                f"manifest entry {name!r}: config.patch_samples={entry['config'].get('patch_samples')} does not "
                f"match patch_seconds * sample_rate = {expected}"
            )
    frontend = entry["config"].get("frontend", {})
    if frontend.get("sample_rate") != entry["sample_rate"]:
        raise ManifestError(
            f"manifest entry {name!r}: front-end sample_rate {frontend.get('sample_rate')} differs from "
            f"the model's sample_rate {entry['sample_rate']}"
        )
    weights = entry["weights"]
    kind = weights.get("kind")
    if kind == "seeded":
        if not isinstance(weights.get("seed"), int):
            raise ManifestError(f"manifest entry {name!r}: seeded weights need an integer 'seed'")
    elif kind == "file":
        for key in ("file", "sha256", "size"):
            if key not in weights:
                raise ManifestError(f"manifest entry {name!r}: weight file record lacks {key!r}")
    else:
        raise ManifestError(f"manifest entry {name!r}: weights.kind={kind!r} must be 'seeded' or 'file'")
    head = entry.get("head")
    aux = entry.get("aux_heads") or []
    if aux and head is None:
        raise ManifestError(f"manifest entry {name!r}: 'aux_heads' needs a primary 'head'")
    if not isinstance(aux, list):
        raise ManifestError(f"manifest entry {name!r}: 'aux_heads' must be a list of head records")
    for h in ([head] if head is not None else []) + aux:
        if not isinstance(h, dict) or h.get("output") not in entry["layers"]:
            out = h.get("output") if isinstance(h, dict) else h
            raise ManifestError(f"manifest entry {name!r}: head output {out!r} is not in its layers")
        if len(h.get("labels", [])) != entry["layers"][h["output"]]:
            raise ManifestError(
                f"manifest entry {name!r}: {len(h.get('labels', []))} labels for the "
                f"{entry['layers'][h['output']]}-dim head {h['output']!r}"
            )


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
        validate_entry(name, entry)
    return data


def get_manifest() -> dict[str, Any]:
    """The parsed, validated manifest (a deep copy: callers may modify it)."""
    path = manifest_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError as exc:
        raise ManifestError(f"weights manifest not found at '{path}'") from exc
    return copy.deepcopy(_read(str(path), mtime))


def file_sha256(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: os.PathLike | str, data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path``."""
    from mirzoo.fileio import atomic_file

    with atomic_file(path, suffix=".tmp") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def _refresh_seeded(paths: list[Path]) -> dict[str, str]:
    """Recompute the sha256 of every seeded model's weights; write them into ``paths``."""
    from mirzoo.zoo.registry import build_model

    with open(paths[0], encoding="utf-8") as f:
        data = json.load(f)
    changed = {}
    for name, entry in data["models"].items():
        if entry["weights"].get("kind") != "seeded":
            continue
        model = build_model(name, entry=entry, verify=False)
        from mirzoo.nn.base import weights_sha256

        digest = weights_sha256(model)
        if entry["weights"].get("sha256") != digest:
            changed[name] = digest
        entry["weights"]["sha256"] = digest
    for p in paths:
        write_json_atomic(p, data)
    return changed


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mirzoo.zoo.manifest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh-seeded", action="store_true", help="recompute seeded-weight sha256 values")
    parser.add_argument("--check", action="store_true", help="validate the manifest and exit")
    args = parser.parse_args(argv)
    top = PACKAGE_DIR.parent / "weights_manifest.json"
    if args.refresh_seeded:
        paths = [top, PACKAGE_MANIFEST] if top.exists() else [PACKAGE_MANIFEST]
        changed = _refresh_seeded(paths)
        print(f"updated {len(changed)} seeded hash(es): {sorted(changed)}; wrote {', '.join(map(str, paths))}")
    manifest = get_manifest()
    print(f"manifest OK: {len(manifest['models'])} models in {manifest_path()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
