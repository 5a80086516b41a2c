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
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from mirzoo.errors import OutputError

__all__ = ["default_mode", "atomic_file", "atomic_directory", "write_json_atomic", "file_sha256", "copy_hashed", "safe_relative",
           "check_writable", "output_lock", "watch_parent"]


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


def write_json_atomic(path: Union[str, os.PathLike], data: Any, ensure_ascii: bool = True) -> None:
    """Write JSON (indented, newline-terminated) to a temporary file beside ``path`` and rename it over ``path``;
    ``ensure_ascii=False`` writes non-ASCII characters as UTF-8 (as the weights manifests hold them) rather than
    as ``\\u`` escapes."""
    with atomic_file(path, suffix=".tmp") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=ensure_ascii)
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


def check_writable(target: Union[str, os.PathLike], *, folder: bool = False) -> Path:
    """``target`` as a Path if a file (``folder=True``: a folder) can be written there and renamed onto
    it; :class:`OutputError` if not.

    Refuses an existing directory where a file is expected (an existing file where a folder is),
    a parent that is a file, and a folder this process cannot write to (tested by creating and
    removing a temporary file), before any work is done.
    """
    target = Path(target)
    if target.is_dir() and not folder:
        raise OutputError(f"output '{target}' is an existing directory: expected a file name")
    if folder and target.exists() and not target.is_dir():
        raise OutputError(f"output '{target}' is an existing file: expected a folder (or a name ending in .parquet)")
    parent = target.parent
    blocked = next((p for p in [parent, *parent.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise OutputError(f"cannot write output '{target}': '{blocked}' is a file, not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write output '{target}': folder '{parent}' is not writable ({exc.strerror or exc})") from exc
    return target


@contextlib.contextmanager
def output_lock(target: Union[str, os.PathLike]) -> Iterator[Path]:
    """Hold ``.<name>.lock`` beside ``target`` (an exclusive ``flock``, with this process's PID inside).

    A second process that asks for the same output gets :class:`OutputError` naming the PID of
    the process that holds it.  The lock dies with its process (``kill -9`` included), so a
    stale lock file never blocks a later run.
    """
    import fcntl  # deferred: POSIX only

    target = Path(target)
    lock = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(
                f"output '{target}' is being written by process {holder} (lock '{lock}'): wait for it to finish, "
                f"or write to another file"
            ) from None
        try:  # the holder before us may have removed the file after we opened it: retry on the new one
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """In a worker process: exit as soon as ``parent_pid`` is no longer our parent (it died, even by
    ``kill -9``), so no worker outlives its run.  Starts a daemon thread and returns.

    Lives in this light module so that a pool initializer runs it before the worker imports
    anything heavy (Keras, TensorFlow): the watchdog is up within a second of the worker's start.
    """
    import threading  # deferred: only worker processes run the watchdog

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="mirzoo-parent-watchdog", daemon=True).start()
