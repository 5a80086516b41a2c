"""Zoo model references on the Hub: ``hf://owner/repo@rev``, ``name@rev``, and manifest weight files.

Owns what joins the catalogue (:mod:`mirzoo.zoo.manifest`) to the transport
(:mod:`mirzoo.zoo.transport`): parsing a reference into a :class:`HubReference`
(a zoo name with a revision is the manifest's hub repo at that revision), the sha256
values the manifest pins for a reference, and finding a manifest weight file --
bundled in the package, else from the Hub cache or a download -- checked against its
sha256.  Loading a reference into a model is :func:`mirzoo.loader.load`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mirzoo.errors import ParameterError, WeightsError
from mirzoo.fileio import file_sha256
from mirzoo.spec import ModelSpec
from mirzoo.zoo.manifest import WEIGHTS_DIR, get_spec
from mirzoo.zoo.transport import SCHEME, HubReference, cache_dir, check_repo_id, fetch_file

__all__ = [
    "HubReference",
    "cache_dir",
    "parse_reference",
    "manifest_expectations",
    "resolve_weight_file",
]

logger = logging.getLogger(__name__)


def parse_reference(ref: str) -> HubReference:
    """Parse ``'hf://owner/repo'``, ``'hf://owner/repo@rev'`` or ``'name@rev'``.

    A zoo name with a revision resolves through the manifest: ``name@rev`` is the
    manifest entry's hub ``repo_id`` at ``rev``.

    Raises
    ------
    ParameterError
        Malformed reference, or a zoo model whose manifest entry names no hub repo.
    UnknownModelError
        ``name@rev`` with a name that is not in the zoo (the message lists close matches).
    """
    if not isinstance(ref, str):
        raise ParameterError(f"model reference must be a string, got {type(ref).__name__}: {ref!r}")
    if ref.startswith(SCHEME):
        body = ref[len(SCHEME):]
        repo_id, sep, revision = body.partition("@")
        check_repo_id(repo_id, ref)
        if sep and not revision.strip():
            raise ParameterError(
                f"model reference {ref!r} has an empty revision after '@'; expected a branch, tag or "
                f"commit, as in 'hf://{repo_id}@main'"
            )
        return HubReference(repo_id, revision or None)
    name, sep, revision = ref.partition("@")
    if not sep or not name or not revision.strip():
        raise ParameterError(
            f"model reference {ref!r}: expected 'hf://owner/repo', 'hf://owner/repo@revision' or "
            f"'name@revision' with a zoo name and a branch, tag or commit"
        )
    if "/" in name:
        raise ParameterError(
            f"model reference {ref!r}: {name!r} is neither a zoo name nor an existing directory; for a "
            f"Hugging Face repo write 'hf://{name}@{revision}'"
        )
    repo_id = get_spec(name).hub_repo_id
    if not repo_id:
        raise ParameterError(
            f"model reference {ref!r}: zoo model {name!r} names no hub repo in the manifest, so revision "
            f"{revision!r} cannot be looked up; load {name!r} without '@' or use 'hf://owner/repo@{revision}'"
        )
    return HubReference(repo_id, revision, name=name)


def manifest_expectations(ref: HubReference) -> dict[str, str]:
    """sha256 values the manifest pins for ``ref`` (only for the revision the manifest pins)."""
    if ref.name is None:
        return {}
    spec = get_spec(ref.name)
    weights = spec.weights
    if weights.kind == "file" and spec.hub_revision and spec.hub_revision == ref.revision:
        return {weights.file: weights.sha256}
    return {}


def resolve_weight_file(spec: ModelSpec) -> Path:
    """Find the weight file of ``spec``: bundled in the package, else the Hugging Face cache/hub.

    The file's sha256 is checked against the manifest; a mismatch raises
    :class:`WeightsError` and never falls back to other weights.
    """
    record = spec.weights
    bundled_dir = Path(os.environ.get("MIRZOO_WEIGHTS_DIR", WEIGHTS_DIR))
    path = bundled_dir / record.file
    if not path.exists():
        if not spec.hub_repo_id or not spec.hub_revision:
            raise WeightsError(
                f"weight file '{record.file}' of model {spec.name!r} is not bundled with this mirzoo install and "
                f"the manifest pins no hub revision to fetch it from; reinstall mirzoo"
            )
        path = fetch_file(spec.hub_repo_id, spec.hub_revision, record.file, owner=f"model {spec.name!r}")
    actual = file_sha256(path)
    if actual != record.sha256:
        raise WeightsError(
            f"weight file '{path}' of model {spec.name!r} fails its sha256 check: expected "
            f"{record.sha256}, got {actual}. The file is corrupt or was replaced; reinstall mirzoo or "
            f"delete the file so that it is fetched again."
        )
    return path
