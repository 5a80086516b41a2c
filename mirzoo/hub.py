"""Weight files that are not bundled: the Hugging Face cache and hub.

This module holds the part of hub resolution that ``load()`` needs today: a
weight file named in the manifest but absent from the package is looked up in
the local Hugging Face cache (offline) and, when the network is allowed,
downloaded at the manifest's pinned revision.  Either way the caller checks the
sha256.  Loading whole repositories by ``hf://owner/repo@revision`` and
publishing are separate work (issue 5).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mirzoo.errors import WeightsError

__all__ = ["fetch_weight_file", "offline"]


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``MIRZOO_OFFLINE`` is set to a true value."""
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "MIRZOO_OFFLINE"))


def fetch_weight_file(entry: dict[str, Any]) -> Path:
    """Path of ``entry``'s weight file from the Hugging Face cache, or downloaded at the pinned revision."""
    record = entry["weights"]
    hub = entry.get("hub") or {}
    repo_id, revision = hub.get("repo_id"), hub.get("revision")
    filename = record["file"]
    name = entry.get("name", "?")
    how = (
        f"On a connected machine run: huggingface-cli download {repo_id} {filename} --revision {revision}, "
        f"then copy the Hugging Face cache (HF_HOME) to this machine."
    )
    if not repo_id or not revision:
        raise WeightsError(
            f"weight file '{filename}' of model {name!r} is not bundled with this mirzoo install and the "
            f"manifest pins no hub revision to fetch it from; reinstall mirzoo"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise WeightsError("huggingface_hub is required to fetch weights: pip install huggingface-hub") from exc
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline()))
    except Exception as exc:
        mode = "offline mode (HF_HUB_OFFLINE/MIRZOO_OFFLINE) with nothing cached" if offline() else str(exc)
        raise WeightsError(
            f"weight file '{filename}' of model {name!r} (repo {repo_id}, revision {revision}) is neither "
            f"bundled nor cached: {mode}. {how}"
        ) from exc
