"""Folder-scale extraction: many files in, one ``.npz`` or ``.parquet`` out.

This is the engine behind ``mirzoo extract``::

    from mirzoo.batch import extract_files
    report = extract_files("cnn-tagging", ["music/"], "emb.parquet", pool="mean+std", progress=True)
    report.exit_code        # 0 all written, 1 some failed, 2 nothing could be done

How it works
------------
* **Inputs**: files as given, folders walked recursively for audio files (sorted), and
  optionally a list file with one path (or folder) per line.  Duplicates are dropped.
* **Decoding** runs in worker processes (``spawn`` start method, so it is safe with
  TensorFlow/JAX loaded in the main process) that call
  :func:`mirzoo.audio.decode_or_reason`, a few files ahead of the model; the model runs in
  the main process.  A worker imports only the audio module (no Keras, no backend), so it
  starts in a fraction of a second; a script that imports Keras at its top level makes each
  spawned worker import it too (Python re-runs the main module's top level in spawned
  processes), so import mirzoo's heavy parts inside ``if __name__ == "__main__":``.  A decoder process that dies (a crashing codec) is replaced, and the
  file that killed it is found by retrying the files in flight one at a time.
* **Batching across files**: clip models' patches are streamed into full batches
  whatever file they come from, so only the very last batch is padded; frame models'
  chunks are batched over groups of files.  Results are the same as
  :meth:`mirzoo.Extractor.extract` file by file.
* **Bad files** (unreadable, empty, not finite) are reported with the reason and
  skipped; the run goes on.
* **Output** is written to a temporary file that is renamed onto the target, so it is
  never half-written.  While the run goes on, finished files are saved in small
  "part" files in a hidden folder beside the output (``.<name>.parts/``); the final
  output is assembled from them at the end and the folder removed.
* **Resume** (``resume=True``, ``--resume``): files already in the output, or in the
  parts of an interrupted run, are skipped; the new results are merged with the old and
  the output rewritten atomically.  Model, layer and pooling must match the existing
  output's.  Parts already assembled into the output (a run killed after writing it, before
  removing them) are dropped, not merged twice.

Output layouts
--------------
NPZ: ``paths`` [n]; with pooling ``embeddings`` [n, D]; otherwise ``embeddings``
[ΣT, D], ``timestamps`` [ΣT] (seconds), ``file_index`` [ΣT] and ``offsets`` [n+1]
(the rows of file i are ``offsets[i]:offsets[i+1]``); plus ``model``, ``layer`` and
``pool`` strings.  Parquet: one row per embedding with ``path`` (string),
``timestamp`` (float64 s; 0 when pooled) and ``embedding`` (fixed-size list of
float32), and ``mirzoo.model``/``mirzoo.layer``/``mirzoo.pool`` schema metadata.
NPZ output is assembled in memory; prefer Parquet, which is written in streaming
fashion, for very large collections.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from mirzoo._checks import valid_int, valid_pool
from mirzoo.audio import AUDIO_EXTENSIONS, decode_or_reason
from mirzoo.embeddings import POOLS, Embeddings
from mirzoo.errors import MirzooError, ParameterError
from mirzoo.fileio import atomic_file, check_writable, default_mode, output_lock, watch_parent  # noqa: F401  (default_mode re-exported)
from mirzoo.inference.runner import progress_bar
from mirzoo.loader import as_extractor

__all__ = [
    "extract_files",
    "find_audio_files",
    "read_embeddings",
    "write_results",
    "ExtractionReport",
    "Failure",
    "OUTPUT_SUFFIXES",
    "Embedder",
    "meta_of",
    "default_workers",
    "require_pyarrow",
    "parquet_schema",
]

log = logging.getLogger("mirzoo")

OUTPUT_SUFFIXES = (".npz", ".parquet")

#: Files under which ``workers=None`` decodes in the main process (starting worker
#: processes costs about a second each, more than decoding a few files).
_MIN_FILES_FOR_WORKERS = 8

#: Finished files are saved to a part file at least this often (files, seconds); also after
#: every ``batch_size`` files, so a killed run keeps all but its last batch for ``--resume``.
_PART_FILES = 256
_PART_SECONDS = 30.0


# -- inputs ------------------------------------------------------------------------------------


def find_audio_files(
    inputs: Sequence[Union[str, os.PathLike]] = (),
    *,
    files_from: Optional[Union[str, os.PathLike]] = None,
) -> list[str]:
    """Expand inputs to a list of files: folders walked recursively, list files read.

    Parameters
    ----------
    inputs : sequence of paths
        Files (kept as given, even if missing: they are reported when read) and
        folders (searched recursively for :data:`mirzoo.audio.AUDIO_EXTENSIONS`, sorted).
    files_from : path, optional
        A text file with one file or folder per line (blank lines and lines starting
        with ``#`` are ignored); ``"-"`` reads standard input.

    Returns
    -------
    list of str
        In the order given, without duplicates (same normalised absolute path).
    """
    items = [os.fspath(p) for p in inputs]
    if files_from is not None:
        if os.fspath(files_from) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            try:
                lines = Path(files_from).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ParameterError(f"cannot read the file list '{files_from}': {exc}") from exc
        items.extend(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    paths: list[str] = []
    seen: set[str] = set()
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                log.warning("no audio files under '%s'", item)
        else:
            found = [item]
        for p in found:
            key = _key(p)
            if key not in seen:
                seen.add(key)
                paths.append(p)
    return paths


def _key(path: str) -> str:
    """Identity of a path for de-duplication and resuming."""
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


# -- decoding (in worker processes) -----------------------------------------------------------
# The function a worker runs is pickled by reference, so it lives in mirzoo.audio: a worker that
# unpickled mirzoo.batch._something would import this module, hence Keras and its backend (~6 s
# and ~0.8 GB per process), which made the folder path slower with workers than without.
_decode_file = decode_or_reason


class _Decoder:
    """Decoded files in input order, decoded ``ahead`` files in advance by worker processes."""

    def __init__(self, paths: list[str], sr: int, workers: int, decode: Callable = _decode_file):
        self.paths = paths
        self.sr = sr
        self.workers = workers
        self.decode = decode
        self.ahead = max(4, 2 * workers + 2)
        self.pool = None

    def _new_pool(self):
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=watch_parent,
            initargs=(os.getpid(),),
        )

    def __iter__(self) -> Iterator[tuple[str, Optional[np.ndarray], Optional[str]]]:
        if self.workers <= 0:
            for p in self.paths:
                y, reason = self.decode(p, self.sr)
                yield p, y, reason
            return

        queue = deque(self.paths)
        inflight: deque = deque()  # (path, future), in input order
        suspects: set[str] = set()  # in flight when a decoder process died: retried one at a time
        self.pool = self._new_pool()
        try:
            while queue or inflight:
                while queue and len(inflight) < (1 if suspects else self.ahead):
                    p = queue.popleft()
                    inflight.append((p, self.pool.submit(self.decode, p, self.sr)))
                p, future = inflight.popleft()
                try:
                    y, reason = future.result()
                except BrokenProcessPool:
                    # Every future in flight is lost with the process.  Which file killed it is
                    # known only when it was alone in flight: otherwise retry them one at a time.
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    self.pool = self._new_pool()
                    lost = [p] + [q for q, _ in inflight]
                    inflight.clear()
                    if len(lost) == 1:
                        suspects.discard(p)
                        yield p, None, "the decoder process died while reading this file (crashing codec?)"
                        continue
                    suspects.update(lost)
                    queue.extendleft(reversed(lost))
                    continue
                except Exception as exc:  # e.g. a result that cannot be sent back
                    y, reason = None, f"{type(exc).__name__}: {exc}"
                suspects.discard(p)
                yield p, y, reason
        finally:
            self.close()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


# -- results, parts and output files -----------------------------------------------------------


@dataclass
class Failure:
    """A file that could not be processed, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ExtractionReport:
    """What :func:`extract_files` did.

    Attributes
    ----------
    output : Path
        The output file (written only if ``written > 0`` or earlier parts were merged).
    written : int
        Files embedded and written by this run.
    skipped : int
        Files skipped because the output (or an interrupted run's parts) already had them.
    failed : list of Failure
        Files that could not be read, with the reason.
    total : int
        Files in the output after the run.
    seconds : float
        Wall time of the run.
    """

    output: Path
    written: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0: no failure; 1: some files failed, the others were written; 2: files failed and none was written."""
        if not self.failed:
            return 0
        return 1 if self.written else 2


@dataclass
class _Block:
    """Embeddings of consecutive files: rows of file i are ``offsets[i]:offsets[i+1]``."""

    paths: list
    embeddings: np.ndarray
    timestamps: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_results(cls, results: list, pooled: bool) -> "_Block":
        if not results:
            raise ParameterError("no results to write")
        paths = [str(p) for p, _ in results]
        if pooled:
            emb = np.stack([np.asarray(r, dtype=np.float32) for _, r in results])
            ts = np.zeros(len(results))
            offsets = np.arange(len(results) + 1)
        else:
            emb = np.concatenate([r.embeddings for _, r in results]).astype(np.float32, copy=False)
            ts = np.concatenate([np.asarray(r.timestamps, dtype=np.float64) for _, r in results])
            offsets = np.concatenate([[0], np.cumsum([len(r) for _, r in results])])
        return cls(paths, emb, ts, offsets.astype(np.int64))

    @classmethod
    def concatenate(cls, blocks: list) -> "_Block":
        if len(blocks) == 1:
            return blocks[0]
        offsets = [np.asarray([0], np.int64)]
        base = 0
        for b in blocks:
            offsets.append(b.offsets[1:] + base)
            base += int(b.offsets[-1])
        return cls(
            [p for b in blocks for p in b.paths],
            np.concatenate([b.embeddings for b in blocks]),
            np.concatenate([b.timestamps for b in blocks]),
            np.concatenate(offsets),
        )


_META_KEYS = ("model", "layer", "pool", "hop", "precision")


def meta_of(model: str, layer: str, pool: Optional[str], hop: str = "", precision: str = "") -> dict:
    """What an output file records about how it was made; ``hop`` (:func:`hop_key`) only when not the
    default, and ``precision`` only when not float32 (so a resume never mixes precisions)."""
    meta = {"model": str(model), "layer": str(layer), "pool": pool or ""}
    if hop:
        meta["hop"] = str(hop)
    if precision and precision != "float32":
        meta["precision"] = str(precision)
    return meta


def hop_key(extractor, hop: Optional[float]) -> str:
    """``hop`` as recorded in output files: "" for the model's default patch hop, else seconds."""
    plan = extractor.plan_for(hop)
    if plan is extractor.plan:
        return ""
    return f"{plan.hop_samples / extractor.sample_rate:g}"


def _save_npz(target: str, block: _Block, meta: dict, *, layout: bool) -> None:
    """``layout=True``: the public NPZ layout; otherwise a part file (always with offsets)."""
    pooled = bool(meta["pool"])
    arrays = {"paths": np.asarray(block.paths, dtype=str), "embeddings": block.embeddings}
    if not (layout and pooled):
        lengths = np.diff(block.offsets)
        arrays.update(
            timestamps=block.timestamps,
            file_index=np.repeat(np.arange(len(block.paths)), lengths),
            offsets=block.offsets,
        )
    with open(target, "wb") as f:
        np.savez(f, **{k: meta[k] for k in _META_KEYS if k in meta}, **arrays)


def _load_npz(path: Union[str, Path]) -> tuple[_Block, dict]:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = meta_of(*(str(data[k]) if k in data else "" for k in _META_KEYS))
            paths = [str(p) for p in data["paths"]]
            emb = np.asarray(data["embeddings"], dtype=np.float32)
            if "offsets" in data:
                offsets = np.asarray(data["offsets"], dtype=np.int64)
                ts = np.asarray(data["timestamps"], dtype=np.float64)
            else:  # pooled layout: one row per file
                offsets = np.arange(len(paths) + 1, dtype=np.int64)
                ts = np.zeros(len(paths))
    except (OSError, KeyError, ValueError) as exc:
        raise ParameterError(f"'{path}' is not a mirzoo embeddings file: {exc}") from exc
    if emb.ndim != 2 or offsets.shape != (len(paths) + 1,) or offsets[-1] != emb.shape[0]:
        raise ParameterError(f"'{path}' is not a consistent mirzoo embeddings file (paths/offsets/embeddings)")
    return _Block(paths, emb, ts, offsets), meta


def require_pyarrow():
    try:
        import pyarrow as pa  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')
        import pyarrow.parquet as pq  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')
    except ImportError as exc:
        raise MirzooError("Parquet output needs pyarrow: pip install 'mirzoo[parquet]'") from exc
    return pa, pq


def parquet_schema(dim: int, meta: dict):
    pa, _ = require_pyarrow()
    schema = pa.schema(
        [("path", pa.string()), ("timestamp", pa.float64()), ("embedding", pa.list_(pa.float32(), dim))]
    )
    return schema.with_metadata({f"mirzoo.{k}".encode(): str(v).encode() for k, v in meta.items()})


def _parquet_table(block: _Block, schema):
    pa, _ = require_pyarrow()
    lengths = np.diff(block.offsets)
    paths = np.repeat(np.asarray(block.paths, dtype=object), lengths)
    emb = np.ascontiguousarray(block.embeddings, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    return pa.Table.from_arrays(
        [pa.array(paths, type=pa.string()), pa.array(block.timestamps, type=pa.float64()), column], schema=schema
    )


def _parquet_meta(path: Union[str, Path]) -> tuple[dict, int, list]:
    """``(meta, dim, paths)`` of an existing Parquet output (paths unique, in order)."""
    _, pq = require_pyarrow()
    try:
        f = pq.ParquetFile(path)
        schema = f.schema_arrow
        raw = schema.metadata or {}
        meta = meta_of(*(raw.get(f"mirzoo.{k}".encode(), b"").decode() for k in _META_KEYS))
        dim = schema.field("embedding").type.list_size
        column = f.read(columns=["path"]).column("path").to_pylist()
    except Exception as exc:
        raise ParameterError(f"'{path}' is not a mirzoo Parquet embeddings file: {exc}") from exc
    return meta, int(dim), list(dict.fromkeys(column))


def read_embeddings(path: Union[str, os.PathLike]) -> tuple[list, dict]:
    """Read an output of :func:`extract_files` back: ``(results, meta)``.

    ``results`` is a list of ``(path, embeddings [T, D], timestamps [T])`` per file, in
    file order (``T = 1`` and timestamps 0 for pooled outputs); ``meta`` holds
    ``model``, ``layer`` and ``pool``.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        block, meta = _load_npz(path)
    elif path.suffix.lower() == ".parquet":
        _, pq = require_pyarrow()
        table = pq.read_table(path)
        raw = table.schema.metadata or {}
        meta = meta_of(*(raw.get(f"mirzoo.{k}".encode(), b"").decode() for k in _META_KEYS))
        paths = table.column("path").to_pylist()
        dim = table.schema.field("embedding").type.list_size
        values = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        emb = np.asarray(values, dtype=np.float32).reshape(-1, dim)
        ts = table.column("timestamp").to_numpy()
        order = list(dict.fromkeys(paths))
        rows: dict = {}
        for i, p in enumerate(paths):
            rows.setdefault(p, []).append(i)
        return [(p, emb[rows[p]], ts[rows[p]]) for p in order], meta
    else:
        raise ParameterError(f"'{path}' must end in .npz or .parquet")
    results = [
        (p, block.embeddings[a:b], block.timestamps[a:b])
        for p, a, b in zip(block.paths, block.offsets[:-1], block.offsets[1:])
    ]
    return results, meta


def _write_output(target: Path, sources: list, meta: dict) -> int:
    """Write ``sources`` (existing output path and/or part files, in order) to ``target`` atomically.

    Returns the number of files written.
    """
    suffix = target.suffix.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target, suffix=suffix) as tmp:
        if suffix == ".npz":
            blocks = [_load_npz(s)[0] for s in sources]
            block = _Block.concatenate(blocks)
            _save_npz(tmp, block, meta, layout=True)
            count = len(block.paths)
        else:
            _, pq = require_pyarrow()
            writer = None
            count = 0
            try:
                for source in sources:
                    if Path(source).suffix.lower() == ".parquet":  # the existing output: stream it
                        pf = pq.ParquetFile(source)
                        count += len(_parquet_meta(source)[2])
                        for batch in pf.iter_batches():
                            if writer is None:
                                schema = parquet_schema(pf.schema_arrow.field("embedding").type.list_size, meta)
                                writer = pq.ParquetWriter(tmp, schema)
                            writer.write_table(_pa_table_from_batch(batch, writer.schema))
                        continue
                    block, _ = _load_npz(source)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, parquet_schema(block.embeddings.shape[1], meta))
                    writer.write_table(_parquet_table(block, writer.schema))
                    count += len(block.paths)
            finally:
                if writer is not None:
                    writer.close()
    return count


def _pa_table_from_batch(batch, schema):
    pa, _ = require_pyarrow()
    return pa.Table.from_batches([batch]).cast(schema)


def write_results(
    path: Union[str, os.PathLike], results: list, *, model: str, layer: str, pool: Optional[str]
) -> Path:
    """Write ``[(path, Embeddings or pooled vector), ...]`` to ``.npz``/``.parquet`` atomically."""
    target = Path(path)
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ParameterError(f"output file '{target}' must end in .npz or .parquet")
    meta = meta_of(model, layer, pool)
    block = _Block.from_results(results, pooled=bool(pool))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        part = os.path.join(tmp, "part.npz")
        _save_npz(part, block, meta, layout=False)
        _write_output(target, [part], meta)
    return target


# -- the engine --------------------------------------------------------------------------------


class _Parts:
    """Part files of a run in ``.<output>.parts/``, each written atomically."""

    def __init__(self, output: Path):
        self.dir = output.parent / f".{output.name}.parts"

    def existing(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.npz")) if self.dir.is_dir() else []

    def clear(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def write(self, block: _Block, meta: dict) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        index = len(self.existing())
        target = self.dir / f"part-{index:06d}.npz"
        with atomic_file(target) as tmp:
            _save_npz(tmp, block, meta, layout=False)
        return target


def _check_meta(where, found: dict, wanted: dict) -> None:
    if any(found.get(k, "") != wanted.get(k, "") for k in _META_KEYS):
        have = ", ".join(f"{k}={found.get(k, '')!r}" for k in _META_KEYS)
        want = ", ".join(f"{k}={wanted.get(k, '')!r}" for k in _META_KEYS)
        raise ParameterError(
            f"cannot resume into '{where}': it holds {have}, but this run asks for {want}; "
            f"write to a new file or run without --resume"
        )


class Embedder:
    """Runs a model over decoded files, batching patches across files; yields results in order.

    The folder engine and the Ray actors (:mod:`mirzoo.distributed`) both use it, so both
    give what :meth:`mirzoo.Extractor.extract` gives file by file.
    """

    def __init__(
        self, extractor, keys: list[str], layer: str, pool: Optional[str], batch_size: int, hop: Optional[float] = None
    ):
        self.extractor = extractor
        self.keys = keys
        self.layer = layer
        self.pool = pool
        self.batch_size = batch_size
        self.hop = hop
        self.plan = extractor.plan_for(hop)  # a bad hop fails here, before any file is read

    def _result(self, path: str, outputs: dict, duration: float):
        ex = self.extractor
        emb = ex.embeddings_of(outputs, self.keys)
        result = Embeddings(
            embeddings=emb,
            timestamps=self.plan.timestamps(emb.shape[0]),
            layer=self.layer,
            model=ex.name,
            source=path,
            duration=duration,
        )
        return result.pooled(self.pool) if self.pool else result

    def run(self, files: Iterable[tuple[str, np.ndarray]]) -> Iterator[tuple[str, object]]:
        """``(path, Embeddings or pooled vector)`` for each ``(path, signal)``, in input order."""
        ex = self.extractor
        if ex.spec.is_clip:
            for path, y, out in ex.stream_clip(files, self.keys, self.batch_size, hop=self.hop):
                yield path, self._result(path, out, y.shape[0] / ex.sample_rate)
        else:
            yield from self._run_grouped(files)

    def _run_grouped(self, files):
        ex = self.extractor
        target = 4 * self.batch_size
        group: list = []
        chunks = 0
        for path, y in files:
            group.append((path, y))
            chunks += ex.plan.count(y.shape[0])
            if chunks >= target:
                yield from self._forward_group(group)
                group, chunks = [], 0
        if group:
            yield from self._forward_group(group)

    def _forward_group(self, group):
        ex = self.extractor
        outputs = ex.forward([y for _, y in group], self.keys, self.batch_size)
        for (path, y), out in zip(group, outputs):
            yield path, self._result(path, out, y.shape[0] / ex.sample_rate)


def default_workers(n_files: int) -> int:
    """Decoder processes ``workers=None`` starts for ``n_files`` files: none below
    ``_MIN_FILES_FOR_WORKERS`` (one short file never pays for a process pool), else cores - 1, 1 to 4."""
    if n_files < _MIN_FILES_FOR_WORKERS:
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def extract_files(
    model,
    inputs: Sequence[Union[str, os.PathLike]],
    output: Union[str, os.PathLike],
    *,
    layer: Optional[str] = None,
    pool: Optional[str] = None,
    batch_size: int = 16,
    hop: Optional[float] = None,
    precision: Optional[str] = None,
    workers: Optional[int] = None,
    resume: bool = False,
    files_from: Optional[Union[str, os.PathLike]] = None,
    progress: bool = False,
    on_failure: Optional[Callable[[Failure], None]] = None,
    _decode: Callable = _decode_file,
) -> ExtractionReport:
    """Embed every audio file of ``inputs`` into one ``.npz`` or ``.parquet`` file.

    Parameters
    ----------
    model : str, os.PathLike or Extractor
        A loaded :class:`~mirzoo.Extractor` or anything :func:`mirzoo.load` accepts.
    inputs : sequence of paths
        Files and folders (searched recursively); see :func:`find_audio_files`.
    output : path
        ``.npz`` or ``.parquet`` file (layouts in the module docstring).
    layer : str, optional
        Layer name or ``"all"`` (default: the model's default layer).
    pool : {"mean", "max", "mean+std"}, optional
        One vector per file instead of one per patch/frame.
    batch_size : int > 0
        Patches per forward pass.
    hop : float > 0, optional
        Clip models: seconds between patch starts (default: the model's); recorded in
        the output, and a ``resume`` with another hop is refused.
    precision : {"float32", "bfloat16", "float16"}, optional
        Compute dtype of the model's layers after the front-end, as in :func:`mirzoo.load`;
        recorded in the output when not float32, and a ``resume`` with another is refused.
    workers : int >= 0, optional
        Decoder processes.  0 decodes in the main process; None picks
        ``min(4, cores - 1)`` (at least 1), or 0 for fewer than 8 files.
    resume : bool
        Skip files already in ``output`` (or in the parts of an interrupted run) and
        merge the new ones in.
    files_from : path, optional
        A list file, one path per line (``"-"``: standard input).
    progress : bool
        Show a progress bar over files.
    on_failure : callable, optional
        Called with each :class:`Failure` as it happens (default: log a warning).

    Returns
    -------
    ExtractionReport
        ``.exit_code`` is what ``mirzoo extract`` returns.

    Raises
    ------
    ParameterError
        Bad output suffix, layer, pool, batch size, or a ``resume`` into an output made
        with another model/layer/pooling; raised before any file is processed.
    """

    start_time = time.perf_counter()
    target = Path(output)
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ParameterError(f"output '{target}' must end in .npz or .parquet")
    check_writable(target)  # before any work: a run must not fail at the very end
    if target.suffix.lower() == ".parquet":
        require_pyarrow()
    valid_pool(pool, POOLS)
    batch_size = valid_int("batch_size", batch_size)
    valid_int("workers", workers, minimum=0, allow_none=True)
    extractor = as_extractor(model, precision=precision)
    layer_name, keys = extractor.resolve_layers(layer)
    meta = meta_of(extractor.name, layer_name, pool, hop_key(extractor, hop), extractor.precision)
    paths = find_audio_files(inputs, files_from=files_from)
    if not paths:
        raise ParameterError("no input files: give audio files, folders that contain some, or a file list")
    with output_lock(target):  # one writer per output: a second run gets "being written by process N"
        return _extract_locked(
            extractor, target, paths, keys, layer_name, meta, pool, batch_size, workers, resume, progress,
            on_failure, _decode, start_time, hop,
        )


def _extract_locked(
    extractor, target, paths, keys, layer_name, meta, pool, batch_size, workers, resume, progress, on_failure,
    _decode, start_time, hop,
) -> ExtractionReport:
    parts = _Parts(target)
    done: set[str] = set()
    sources: list = []
    if resume:
        if target.exists():
            if target.suffix.lower() == ".npz":
                block, found = _load_npz(target)
                old_paths = block.paths
            else:
                found, _, old_paths = _parquet_meta(target)
            _check_meta(target, found, meta)
            done.update(_key(p) for p in old_paths)
            sources.append(target)
        in_target = set(done)
        assembled = []  # parts whose every file is already in the output
        existing = parts.existing()
        for part in existing:
            block, found = _load_npz(part)
            _check_meta(part, found, meta)
            part_keys = {_key(p) for p in block.paths}
            if in_target and part_keys <= in_target:
                assembled.append(part)
            done.update(part_keys)
        if assembled:
            # a run is killed after it wrote the output from its parts but before it removed them: those
            # parts are in the output already (every assembly takes all of them), so merging them again
            # would list their files twice
            if len(assembled) != len(existing):
                raise ParameterError(
                    f"cannot resume into '{target}': {len(assembled)} of the part files in '{parts.dir}' are already "
                    f"in it and the others are not; remove '{parts.dir}' (its files are then extracted again) or "
                    "write to a new file")
            log.info("removing %d part files already assembled into %s", len(assembled), target)
            parts.clear()
    else:
        parts.clear()  # leftovers of an interrupted run that is not being resumed

    todo = [p for p in paths if _key(p) not in done]
    report = ExtractionReport(output=target, skipped=len(paths) - len(todo))
    report_failure = on_failure or (lambda f: log.warning("skipped %s", f))
    n_workers = default_workers(len(todo)) if workers is None else workers
    decoder = _Decoder(todo, extractor.sample_rate, n_workers, decode=_decode)
    bar = _bar(len(todo), progress, f"extract {extractor.name}")

    def decoded():
        for path, y, reason in decoder:
            if y is None:
                failure = Failure(path, reason or "unknown error")
                report.failed.append(failure)
                report_failure(failure)
                bar.update(1)
                continue
            yield path, y

    embedder = Embedder(extractor, keys, layer_name, pool, batch_size, hop)
    pending: list = []
    last_part = time.monotonic()
    try:
        for path, result in embedder.run(decoded()):
            pending.append((path, result))
            report.written += 1
            bar.update(1)
            if len(pending) >= min(_PART_FILES, batch_size) or time.monotonic() - last_part > _PART_SECONDS:
                parts.write(_Block.from_results(pending, pooled=bool(pool)), meta)
                pending, last_part = [], time.monotonic()
        if pending:
            parts.write(_Block.from_results(pending, pooled=bool(pool)), meta)
            pending = []
    except KeyboardInterrupt:
        if pending:  # keep what is done: --resume picks up from here
            parts.write(_Block.from_results(pending, pooled=bool(pool)), meta)
        raise
    finally:
        decoder.close()
        bar.close()
    new_parts = parts.existing()
    if new_parts:  # something new (this run or an interrupted one): assemble the output
        report.total = _write_output(target, sources + new_parts, meta)
        parts.clear()
    elif target.exists() and resume:
        report.total = len(done)
    report.seconds = time.perf_counter() - start_time
    return report


def _bar(total: int, enabled: bool, desc: str):
    return progress_bar(total, enabled and total >= 2, desc, unit="file")
