"""Atomic writes and file hashes: every file or folder mirzoo produces appears whole or not at all.

Owns writing (files, folders, JSON) under a temporary name and renaming, and the
sha256 of a file that every weight check compares against.

Each helper writes under a hidden temporary name beside the target, gives the result
the permissions of an ordinary new file under the current umask (``mkstemp``/``mkdtemp``
create private 0600/0700 entries), then renames it onto the target.  On any failure the
temporary entry is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

__all__ = ["default_mode", "atomic_file", "atomic_directory", "write_json_atomic", "file_sha256", "copy_hashed", "safe_relative"]


def default_mode(directory: bool = False) -> int:
    """Permissions a new file (or folder) gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextlib.contextmanager
def atomic_file(target: Union[str, os.PathLike], suffix: Optional[str] = None) -> Iterator[str]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix if suffix is None else suffix,
                               dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(target: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; replace ``target`` with it when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, default_mode(directory=True))
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: Union[str, os.PathLike], data: Any) -> None:
    """Write JSON (indented, newline-terminated) to a temporary file beside ``path`` and rename it over ``path``."""
    with atomic_file(path, suffix=".tmp") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def file_sha256(path: Union[str, os.PathLike], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def copy_hashed(source: Union[str, os.PathLike], target: Union[str, os.PathLike], chunk: int = 1 << 20) -> str:
    """Copy ``source`` to ``target`` (a new file) and return the hex sha256 of the bytes copied.

    Checking the returned hash and then reading ``target`` means the bytes checked are the
    bytes used: a file swapped at ``source`` after the copy changes nothing.
    """
    h = hashlib.sha256()
    with open(source, "rb") as src, open(target, "xb") as dst:
        for block in iter(lambda: src.read(chunk), b""):
            h.update(block)
            dst.write(block)
    return h.hexdigest()


def safe_relative(name: Any) -> bool:
    """True if ``name`` is a relative POSIX path that stays inside its folder (no ``..``, no root, no ``\\``)."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    parts = name.split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)
