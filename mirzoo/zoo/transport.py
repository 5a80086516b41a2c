"""Hugging Face Hub transport: repositories and files at pinned revisions, sha256-checked.

Owns talking to the Hub and its local cache -- offline mode, the cache location,
snapshot download with a cache-first policy for commits, single-file download, and
checking files against their sha256 -- and nothing else: it knows no zoo model names
(that is :mod:`mirzoo.zoo.hub`), no manifest and no Keras.

Resolution: the Hugging Face cache first (for a commit hash, or whenever
offline), then ``huggingface_hub``'s download at the pinned revision (branch,
tag or commit), which itself falls back to the cache when the network is
unreachable.  A mismatch raises :class:`~mirzoo.errors.WeightsError`, never a
silent fallback.

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
from typing import Optional

from mirzoo._version import __version__
from mirzoo.errors import ManifestError, ParameterError, WeightsError
from mirzoo.fileio import file_sha256
from mirzoo.spec import ModelSpec

__all__ = [
    "SCHEME",
    "COMMIT",
    "HubReference",
    "offline",
    "cache_dir",
    "check_repo_id",
    "snapshot_path",
    "verify_snapshot",
    "fetch_file",
]

logger = logging.getLogger(__name__)

SCHEME = "hf://"
DEFAULT_REVISION = "main"
# The files mirzoo needs in a snapshot before it reads mirzoo.json (which names the weight file).
REQUIRED_FILES = ("mirzoo.json", "config.json")
_SNAPSHOT_FILES = "the model files (mirzoo.json, config.json, model.weights.h5)"

COMMIT = re.compile(r"[0-9a-f]{40}")
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


def check_repo_id(repo_id: str, ref: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) and ".." not in p for p in parts):
        raise ParameterError(
            f"model reference {ref!r}: {repo_id!r} is not a Hugging Face repo id; expected 'owner/name' "
            f"(letters, digits, '.', '_', '-'), as in 'hf://owner/name@v1'"
        )


# -- the cache --------------------------------------------------------------------------------


def storage_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def cached_revisions(cache: Path, repo_id: str) -> list[str]:
    """Branches and tags (from ``refs/``) and commits (from ``snapshots/``) cached for ``repo_id``."""
    storage = storage_folder(cache, repo_id)
    refs_dir, snaps_dir = storage / "refs", storage / "snapshots"
    refs = sorted(str(p.relative_to(refs_dir)) for p in refs_dir.rglob("*") if p.is_file()) if refs_dir.is_dir() else []
    snaps = sorted(p.name for p in snaps_dir.iterdir() if p.is_dir()) if snaps_dir.is_dir() else []
    return refs + snaps


def how_to_fetch(ref: HubReference, cache: Path) -> str:
    rev = ref.pinned_revision
    return (
        f"On a connected machine run 'hf download {ref.repo_id} --revision {rev}' (huggingface_hub >= 0.34; "
        f"older: 'huggingface-cli download ...') or python -c \"import mirzoo; mirzoo.load('{ref}')\", then "
        f"copy that machine's Hugging Face cache into '{cache}' here (or point HF_HOME or HF_HUB_CACHE at "
        f"the copy)."
    )


def not_cached(ref: HubReference, cache: Path, missing: str, reason: str, exc: Optional[BaseException] = None):
    cached = cached_revisions(cache, ref.repo_id)
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
        f"Face cache '{cache}', and {why}. {known} {how_to_fetch(ref, cache)}"
    )


def _missing_files(snapshot: Path) -> list[str]:
    missing = [f for f in REQUIRED_FILES if not (snapshot / f).is_file()]
    if missing:
        return missing
    try:
        meta = json.loads((snapshot / "mirzoo.json").read_text(encoding="utf-8"))
        weights = ModelSpec.from_entry(meta.get("name") or snapshot.name, meta["entry"]).weights
        names = [f for f in (weights.file, *(meta.get("files") or {})) if f]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ManifestError):
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
    check_repo_id(repo_id, str(ref))
    cache = Path(cache) if cache is not None else cache_dir()
    try:
        import huggingface_hub  # deferred: huggingface_hub is slow to import and only needed to fetch
        from huggingface_hub.utils import (  # deferred: huggingface_hub is slow to import and only needed to fetch
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise WeightsError("huggingface_hub is needed to load from the hub: pip install huggingface-hub") from exc
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
    if is_offline or COMMIT.fullmatch(ref.pinned_revision):
        try:
            local = download(True)
        except LocalEntryNotFoundError as exc:
            if is_offline:
                raise not_cached(ref, cache, _SNAPSHOT_FILES, "offline") from exc
        else:
            missing = _missing_files(local)
            if not missing:
                return local
            if is_offline:
                raise not_cached(ref, cache, f"file '{missing[0]}'", "offline")
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
        raise not_cached(ref, cache, _SNAPSHOT_FILES, "unreachable", exc) from exc
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
            f"'{storage_folder(cache_dir(), ref.repo_id)}') and load {str(ref)!r} again on a connected machine; "
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
    directory = Path(directory)
    checks: list[tuple[str, str, str]] = []
    for name, sha in (expected or {}).items():
        checks.append((name, sha, expected_source))
    meta_path = directory / "mirzoo.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files = dict(meta.get("files") or {})
        weights = ModelSpec.from_entry(meta.get("name") or directory.name, meta["entry"]).weights
        if weights.file:
            files.setdefault(weights.file, {"sha256": weights.sha256})
    except (OSError, ValueError, AttributeError, KeyError, TypeError, ManifestError):
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


# -- single weight files of manifest entries ---------------------------------------------------


# -- single files ------------------------------------------------------------------------------


def fetch_file(repo_id: str, revision: str, filename: str, *, owner: str) -> Path:
    """Path of ``filename`` of ``repo_id`` at ``revision``: from the Hugging Face cache, or downloaded.

    ``owner`` names what the file belongs to in error messages (``"model 'cnn-tagging'"``).
    """
    ref = HubReference(repo_id, revision)
    cache = cache_dir()
    try:
        from huggingface_hub import hf_hub_download  # deferred: huggingface_hub is slow to import and only needed to fetch
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RevisionNotFoundError  # deferred: huggingface_hub is slow to import and only needed to fetch
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise WeightsError("huggingface_hub is required to fetch weights: pip install huggingface-hub") from exc
    is_offline = offline()
    try:
        return Path(
            hf_hub_download(repo_id, filename, revision=revision, cache_dir=str(cache), local_files_only=is_offline)
        )
    except LocalEntryNotFoundError as exc:
        what = f"weight file '{filename}' ({owner})"
        raise not_cached(ref, cache, what, "offline" if is_offline else "unreachable", exc) from exc
    except RevisionNotFoundError as exc:
        raise WeightsError(
            f"weight file '{filename}' of {owner}: repo {repo_id!r} has no revision {revision!r}; the "
            f"manifest's hub revision is wrong, reinstall mirzoo"
        ) from exc
    except EntryNotFoundError as exc:
        raise WeightsError(
            f"weight file '{filename}' of {owner} is not in repo {repo_id!r} at revision {revision!r}; "
            f"the manifest's hub entry is wrong, reinstall mirzoo"
        ) from exc
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"weight file '{filename}' of {owner} (repo {repo_id}, revision {revision}) is not bundled "
            f"and could not be fetched: {type(exc).__name__}: {exc}. {how_to_fetch(ref, cache)}"
        ) from exc
