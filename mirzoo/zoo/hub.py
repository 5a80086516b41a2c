"""The Hugging Face Hub: weight files and whole model repositories at pinned revisions.

Two things live here:

* :func:`fetch_weight_file`: a weight file named in the manifest but absent from
  the package is looked up in the local Hugging Face cache and, when the network
  is allowed, downloaded at the manifest's pinned revision.  The caller
  (:func:`mirzoo.zoo.registry.resolve_weight_file`) checks its sha256.
* :func:`load_reference`: ``mirzoo.load("hf://owner/repo@revision")`` and
  ``mirzoo.load("name@revision")``.  A hub repo holds the Keras unzipped layout
  (``config.json``, ``metadata.json``, ``model.weights.h5``) plus ``mirzoo.json``
  (the manifest entry) and a ``README.md`` model card; see :mod:`mirzoo.publish`.

Resolution: the Hugging Face cache first (for a commit hash, or whenever
offline), then ``huggingface_hub``'s download at the pinned revision (branch,
tag or commit), which itself falls back to the cache when the network is
unreachable.  Every file is checked against its sha256 from ``mirzoo.json``
(and from the manifest, when the revision is the one the manifest pins); a
mismatch raises :class:`~mirzoo.errors.WeightsError`, never a silent fallback.

Offline mode (``HF_HUB_OFFLINE=1`` or ``MIRZOO_OFFLINE=1``) and the cache
location (``HF_HUB_CACHE``, else ``HF_HOME/hub``) are read when a model is
loaded, not when mirzoo is imported.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from mirzoo.errors import ParameterError, WeightsError

if TYPE_CHECKING:  # pragma: no cover
    from mirzoo.extractor import Extractor

__all__ = [
    "HubReference",
    "offline",
    "cache_dir",
    "parse_reference",
    "snapshot_path",
    "verify_snapshot",
    "load_reference",
    "fetch_weight_file",
]

logger = logging.getLogger(__name__)

SCHEME = "hf://"
DEFAULT_REVISION = "main"
# The files mirzoo needs in a snapshot before it reads mirzoo.json (which names the weight file).
REQUIRED_FILES = ("mirzoo.json", "config.json")
_SNAPSHOT_FILES = "the model files (mirzoo.json, config.json, model.weights.h5)"

_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class HubReference:
    """A parsed model reference: hub ``repo_id`` at ``revision``.

    ``name`` is the zoo model the reference came from (``"crnn-tagging@v1"``), else ``None``.
    ``revision`` is ``None`` when the reference names none (``"hf://owner/repo"``): the
    repo's default branch is used.
    """

    repo_id: str
    revision: Optional[str]
    name: Optional[str] = None

    @property
    def pinned_revision(self) -> str:
        return self.revision or DEFAULT_REVISION

    def __str__(self) -> str:
        return f"{SCHEME}{self.repo_id}@{self.pinned_revision}"


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``MIRZOO_OFFLINE`` is set to a true value."""
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "MIRZOO_OFFLINE"))


def cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment as it is now.

    ``HF_HUB_CACHE`` (or the legacy ``HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``,
    else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``: the
    order ``huggingface_hub`` uses, but read at call time (``huggingface_hub`` reads it
    once, at import).
    """
    env = os.environ
    path = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not path:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
        )
        path = os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(path)))


def _check_repo_id(repo_id: str, ref: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) and ".." not in p for p in parts):
        raise ParameterError(
            f"model reference {ref!r}: {repo_id!r} is not a Hugging Face repo id; expected 'owner/name' "
            f"(letters, digits, '.', '_', '-'), as in 'hf://owner/name@v1'"
        )


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
        _check_repo_id(repo_id, ref)
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
    from mirzoo.zoo.registry import get_entry

    entry = get_entry(name)
    repo_id = (entry.get("hub") or {}).get("repo_id")
    if not repo_id:
        raise ParameterError(
            f"model reference {ref!r}: zoo model {name!r} names no hub repo in the manifest, so revision "
            f"{revision!r} cannot be looked up; load {name!r} without '@' or use 'hf://owner/repo@{revision}'"
        )
    return HubReference(repo_id, revision, name=name)


# -- the cache --------------------------------------------------------------------------------


def _storage_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _cached_revisions(cache: Path, repo_id: str) -> list[str]:
    """Branches and tags (from ``refs/``) and commits (from ``snapshots/``) cached for ``repo_id``."""
    storage = _storage_folder(cache, repo_id)
    refs_dir, snaps_dir = storage / "refs", storage / "snapshots"
    refs = sorted(str(p.relative_to(refs_dir)) for p in refs_dir.rglob("*") if p.is_file()) if refs_dir.is_dir() else []
    snaps = sorted(p.name for p in snaps_dir.iterdir() if p.is_dir()) if snaps_dir.is_dir() else []
    return refs + snaps


def _how_to_fetch(ref: HubReference, cache: Path) -> str:
    rev = ref.pinned_revision
    return (
        f"On a connected machine run 'hf download {ref.repo_id} --revision {rev}' (huggingface_hub >= 0.34; "
        f"older: 'huggingface-cli download ...') or python -c \"import mirzoo; mirzoo.load('{ref}')\", then "
        f"copy that machine's Hugging Face cache into '{cache}' here (or point HF_HOME or HF_HUB_CACHE at "
        f"the copy)."
    )


def _not_cached(ref: HubReference, cache: Path, missing: str, reason: str, exc: Optional[BaseException] = None):
    cached = _cached_revisions(cache, ref.repo_id)
    known = (
        f"Cached revisions of {ref.repo_id}: {', '.join(cached)}."
        if cached
        else f"Nothing of {ref.repo_id} is cached."
    )
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None and reason != "offline" else ""
    why = {
        "offline": "offline mode is on (HF_HUB_OFFLINE or MIRZOO_OFFLINE)",
        "unreachable": f"the Hugging Face Hub could not be reached{detail}",
    }[reason]
    return WeightsError(
        f"{missing} of model repo {ref.repo_id!r} at revision {ref.pinned_revision!r}: not in the Hugging "
        f"Face cache '{cache}', and {why}. {known} {_how_to_fetch(ref, cache)}"
    )


def _missing_files(snapshot: Path) -> list[str]:
    missing = [f for f in REQUIRED_FILES if not (snapshot / f).is_file()]
    if missing:
        return missing
    try:
        meta = json.loads((snapshot / "mirzoo.json").read_text(encoding="utf-8"))
        names = [meta["entry"]["weights"]["file"], *(meta.get("files") or {})]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # let load_directory report the malformed mirzoo.json
    return [f for f in dict.fromkeys(names) if not (snapshot / f).is_file()]


def snapshot_path(repo_id: str, revision: Optional[str] = None, *, cache: Optional[os.PathLike] = None) -> Path:
    """The local snapshot folder of ``repo_id`` at ``revision``: cached, else downloaded.

    A commit hash (immutable) is looked up in the cache first; a branch or tag asks
    the hub what it points to now, and uses the cache when the hub is unreachable.
    Offline, only the cache is used.

    Raises
    ------
    WeightsError
        Not cached while offline or unreachable (naming repo, revision, file and how to
        fetch it), unknown repo or revision, or files missing from the repo.
    """
    ref = HubReference(repo_id, revision)
    _check_repo_id(repo_id, str(ref))
    cache = Path(cache) if cache is not None else cache_dir()
    try:
        import huggingface_hub
        from huggingface_hub.utils import (
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise WeightsError("huggingface_hub is needed to load from the hub: pip install huggingface-hub") from exc
    from mirzoo import __version__

    def download(local_only: bool) -> Path:
        return Path(
            huggingface_hub.snapshot_download(
                repo_id,
                revision=ref.pinned_revision,
                cache_dir=str(cache),
                local_files_only=local_only,
                library_name="mirzoo",
                library_version=__version__,
            )
        )

    is_offline = offline()
    if is_offline or _COMMIT.fullmatch(ref.pinned_revision):
        try:
            local = download(True)
        except LocalEntryNotFoundError as exc:
            if is_offline:
                raise _not_cached(ref, cache, _SNAPSHOT_FILES, "offline") from exc
        else:
            missing = _missing_files(local)
            if not missing:
                return local
            if is_offline:
                raise _not_cached(ref, cache, f"file '{missing[0]}'", "offline")
    try:
        folder = download(False)
    except RevisionNotFoundError as exc:
        raise WeightsError(
            f"model repo {repo_id!r} has no revision {ref.pinned_revision!r} on the Hugging Face Hub; expected "
            f"a branch, tag or commit of that repo (see https://huggingface.co/{repo_id}/commits/main)"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise WeightsError(
            f"model repo {repo_id!r} (revision {ref.pinned_revision!r}) was not found on the Hugging Face Hub, "
            f"or it is private or gated: check the name, or set HF_TOKEN to a token that can read it"
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise _not_cached(ref, cache, _SNAPSHOT_FILES, "unreachable", exc) from exc
    except (OSError, ValueError) as exc:  # HTTP errors, validation errors
        raise WeightsError(
            f"model repo {repo_id!r} at revision {ref.pinned_revision!r} could not be fetched from the Hugging "
            f"Face Hub: {type(exc).__name__}: {exc}"
        ) from exc
    missing = _missing_files(folder)
    if missing:
        raise WeightsError(
            f"model repo {repo_id!r} at revision {ref.pinned_revision!r} lacks '{missing[0]}': it is not a mirzoo "
            f"model repo (expected config.json, metadata.json, model.weights.h5 and mirzoo.json, as written by "
            f"'mirzoo publish')"
        )
    return folder


def _sha_mismatch(path: Path, expected: str, actual: str, source: str, ref: Optional[HubReference]) -> WeightsError:
    if ref is not None:
        where = (
            f"Delete the cached copy ('hf cache rm model/{ref.repo_id}' or remove "
            f"'{_storage_folder(cache_dir(), ref.repo_id)}') and load {str(ref)!r} again on a connected machine; "
            f"if the error persists the repo itself is inconsistent: tell its owner."
        )
    else:
        where = "The file is corrupt or was modified: save or publish the model again."
    return WeightsError(
        f"file '{path.name}' ({path}) fails its sha256 check: expected {expected} (from {source}), "
        f"got {actual}. {where}"
    )


def verify_snapshot(
    directory: os.PathLike,
    *,
    expected: Optional[dict[str, str]] = None,
    expected_source: str = "the manifest",
    ref: Optional[HubReference] = None,
) -> None:
    """Check every file that ``mirzoo.json`` or ``expected`` gives a sha256 for.

    ``mirzoo.json`` gives one for the weight file of its entry and, in folders built by
    :mod:`mirzoo.publish`, for every model file (key ``files``).  ``expected`` maps file
    names to sha256 values from a more trusted source (the manifest's pinned entry).

    Raises
    ------
    WeightsError
        A file is missing or its sha256 differs: the message names the file, both
        hashes, where the expected one came from, and what to do.
    """
    from mirzoo.zoo.manifest import file_sha256

    directory = Path(directory)
    checks: list[tuple[str, str, str]] = []
    for name, sha in (expected or {}).items():
        checks.append((name, sha, expected_source))
    meta_path = directory / "mirzoo.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files = dict(meta.get("files") or {})
        weights = meta["entry"]["weights"]
        files.setdefault(weights["file"], {"sha256": weights["sha256"]})
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        files = {}  # load_directory reports a missing or malformed mirzoo.json
    for name, record in files.items():
        sha = record.get("sha256") if isinstance(record, dict) else record
        if not isinstance(sha, str):
            raise WeightsError(
                f"'{meta_path}': file {name!r} has no sha256 (expected {{'sha256': <hex>, 'size': <int>}})"
            )
        checks.append((name, sha, f"'{meta_path}'"))
    for name, sha, source in dict.fromkeys(checks):
        path = directory / name
        if not path.is_file():
            raise WeightsError(f"file '{name}' with a sha256 in {source} is missing from '{directory}'")
        actual = file_sha256(path)
        if actual != sha:
            raise _sha_mismatch(path, sha, actual, source, ref)


def _manifest_expectations(ref: HubReference) -> dict[str, str]:
    """sha256 values the manifest pins for ``ref`` (only for the revision the manifest pins)."""
    if ref.name is None:
        return {}
    from mirzoo.zoo.registry import get_entry

    entry = get_entry(ref.name)
    hub = entry.get("hub") or {}
    weights = entry["weights"]
    if weights.get("kind") == "file" and hub.get("revision") and hub["revision"] == ref.revision:
        return {weights["file"]: weights["sha256"]}
    return {}


def load_reference(ref: str) -> "Extractor":
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
    from mirzoo.loader import load_directory

    parsed = parse_reference(ref)
    expected = _manifest_expectations(parsed)
    folder = snapshot_path(parsed.repo_id, parsed.revision)
    verify_snapshot(folder, expected=expected, expected_source="the manifest (weights_manifest.json)", ref=parsed)
    extractor = load_directory(folder)
    commit = folder.name if _COMMIT.fullmatch(folder.name) else None
    extractor.source = f"{SCHEME}{parsed.repo_id}@{parsed.pinned_revision}" + (
        f" (commit {commit})" if commit and commit != parsed.pinned_revision else ""
    )
    hub = dict(extractor.entry.get("hub") or {}, repo_id=parsed.repo_id, revision=commit or parsed.revision)
    extractor.entry["hub"] = hub
    logger.info("loaded %s from %s", ref, folder)
    return extractor


# -- single weight files of manifest entries ---------------------------------------------------


def fetch_weight_file(entry: dict[str, Any]) -> Path:
    """Path of ``entry``'s weight file from the Hugging Face cache, or downloaded at the pinned revision."""
    record = entry["weights"]
    hub = entry.get("hub") or {}
    repo_id, revision = hub.get("repo_id"), hub.get("revision")
    filename = record["file"]
    name = entry.get("name", "?")
    if not repo_id or not revision:
        raise WeightsError(
            f"weight file '{filename}' of model {name!r} is not bundled with this mirzoo install and the "
            f"manifest pins no hub revision to fetch it from; reinstall mirzoo"
        )
    ref = HubReference(repo_id, revision)
    cache = cache_dir()
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RevisionNotFoundError
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise WeightsError("huggingface_hub is required to fetch weights: pip install huggingface-hub") from exc
    is_offline = offline()
    try:
        return Path(
            hf_hub_download(repo_id, filename, revision=revision, cache_dir=str(cache), local_files_only=is_offline)
        )
    except LocalEntryNotFoundError as exc:
        what = f"weight file '{filename}' (model {name!r})"
        raise _not_cached(ref, cache, what, "offline" if is_offline else "unreachable", exc) from exc
    except RevisionNotFoundError as exc:
        raise WeightsError(
            f"weight file '{filename}' of model {name!r}: repo {repo_id!r} has no revision {revision!r}; the "
            f"manifest's hub revision is wrong, reinstall mirzoo"
        ) from exc
    except EntryNotFoundError as exc:
        raise WeightsError(
            f"weight file '{filename}' of model {name!r} is not in repo {repo_id!r} at revision {revision!r}; "
            f"the manifest's hub entry is wrong, reinstall mirzoo"
        ) from exc
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"weight file '{filename}' of model {name!r} (repo {repo_id}, revision {revision}) is not bundled "
            f"and could not be fetched: {type(exc).__name__}: {exc}. {_how_to_fetch(ref, cache)}"
        ) from exc
