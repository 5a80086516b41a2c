"""Distributed extraction with Ray Data: the same embeddings, on one machine or a cluster.

::

    import mirzoo.distributed as md
    md.init()                                            # local Ray sized to this machine (or address="auto")
    ds = md.read_audio("s3://bucket/music/")             # a folder, file, glob, URI, or a list of them
    emb = md.extract(ds, model="cnn-tagging", pool="mean+std", batch_size=32)
    md.write_parquet(emb, "out/")                        # a folder of Parquet parts (or emb.write_parquet)
    results, meta = md.read_embeddings("out/")           # like mirzoo.batch.read_embeddings

or ``mirzoo extract cnn-tagging music/ -o out/ --engine ray [--address auto]``.  Needs
``pip install "mirzoo[distributed]"`` (Ray Data and pyarrow); importing this module does not.

How it works
------------
* :func:`read_audio` lists the files (Ray's ``read_binary_files``: local folders walked
  recursively, or any pyarrow/fsspec filesystem by URI or ``filesystem=``) and reads their
  bytes in Ray tasks.  Rows: ``path``, ``bytes``.  Nothing is decoded yet, so each file is
  decoded once, straight to the model's rate.  With ``sr=...`` the files are decoded (and
  resampled) in the read tasks instead; rows: ``path``, ``audio``, ``sr``, ``duration``,
  ``error``.
* :func:`extract` runs the model in a pool of Ray actors (``concurrency`` of them, each
  loading the model once with :func:`mirzoo.load`; GPU actors with ``num_gpus > 0``).  An
  actor decodes its files (:func:`mirzoo.audio.load_audio`'s decoder, on the bytes) and
  batches patches across them like ``mirzoo extract`` does, so the embeddings equal
  :meth:`mirzoo.Extractor.extract` file by file.
* **Bad files** (undecodable, empty, not finite) give one row with the reason in ``error``
  and a null ``embedding``; the job goes on.  Missing input paths are an error up front.

Output rows
-----------
One row per embedding, as in ``mirzoo extract``'s Parquet layout, plus metadata columns:

=============  ======================================  ======================================
column         type                                    meaning
=============  ======================================  ======================================
``path``       string                                  the file (as listed; URIs keep their scheme)
``timestamp``  float64                                 patch/frame centre in s (0 when pooled)
``embedding``  fixed_size_list<float32>[D]             the embedding (null for a failed file)
``duration``   float64                                 decoded length in s (null if undecodable)
``error``      string                                  why the file failed (null when it did not)
``model``      string                                  model name
``layer``      string                                  layer name (``"all"`` for every layer)
``pool``       string                                  ``mean``/``max``/``mean+std``, ``""`` per patch
=============  ======================================  ======================================

With ``pool`` one row per file; with ``pool=None`` one row per patch (clip models) or frame
(frame models), the rows of one file together and in time order.  The schema also carries
``mirzoo.model``/``mirzoo.layer``/``mirzoo.pool`` metadata like the CLI's files.  Row order
across files is not the input order (Ray does not keep it).

Resources
---------
Every actor loads the model and its backend (about 1 GB of memory with tensorflow).  By
default there is one CPU actor per CPU of the cluster (or one per ``num_gpus`` of GPU), each
asking for slightly less than a CPU so that the read tasks always find room: actors that
hold every CPU would starve the reads and the job would wait forever.
"""

from __future__ import annotations

import glob as _glob
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from mirzoo._checks import valid_int, valid_number, valid_pool, valid_precision
from mirzoo.audio import AUDIO_EXTENSIONS, check_sr, load_audio, prepare_audio, stream_file, validate_audio
from mirzoo.embeddings import POOLS
from mirzoo.errors import AudioFileError, MirzooError, MissingDependencyError, ParameterError, UnknownLayerError
from mirzoo.fileio import atomic_directory, atomic_file, check_writable, output_lock
from mirzoo.spec import ModelSpec
from mirzoo.zoo.manifest import get_spec

__all__ = [
    "init",
    "read_audio",
    "extract",
    "write_parquet",
    "require_ray",
    "read_embeddings",
    "MissingDependencyError",
]

_INSTALL = 'pip install "mirzoo[distributed]"'

#: CPUs a read (or decode) task asks for; actors leave at least this much free.
_READ_CPUS = 0.25

#: ``mirzoo.extractor.POOLS``, without importing Keras in the driver.
_POOLS = POOLS  # one list of pooling modes, owned by mirzoo.embeddings

#: Environment variables handed to the actors (when set here) before they import Keras.
_PASSED_ENV = ("KERAS_BACKEND", "MIRZOO_OFFLINE", "MIRZOO_MANIFEST", "MIRZOO_WEIGHTS_DIR", "HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE")


def require_ray():
    """``ray`` with Ray Data, or :class:`MissingDependencyError` naming the install command."""
    try:
        import pyarrow  # noqa: F401
        import ray  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"mirzoo.distributed needs Ray Data and pyarrow, which are not installed ({exc}): {_INSTALL}"
        ) from exc
    return ray


# -- the Ray instance ----------------------------------------------------------------------------


def _configure_data(progress: bool, quiet: bool) -> None:
    ray = require_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    ctx.print_on_execution_start = not quiet
    if quiet:
        # "Starting execution ...", "Progress bars disabled ...": not a user's business
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def init(
    address: Optional[str] = None,
    *,
    num_cpus: Optional[int] = None,
    num_gpus: Optional[int] = None,
    progress: bool = False,
    quiet: bool = True,
    **ray_init_args,
) -> dict:
    """Start a local Ray instance, or join a running cluster.

    Parameters
    ----------
    address : str, optional
        ``None``: start a local instance (unless ``$RAY_ADDRESS`` names a cluster);
        ``"auto"``: the cluster this machine belongs to; ``"ray://host:10001"`` or
        ``"host:6379"``: that cluster.
    num_cpus, num_gpus : int >= 0, optional
        Size of a local instance (default: what this machine has).  Not allowed with an address.
    progress : bool
        Ray Data progress bars.
    quiet : bool
        Ray's own logging at ERROR level, no dashboard, worker output not forwarded.
    **ray_init_args
        Passed to ``ray.init``.

    Returns
    -------
    dict
        The cluster's resources (``{"CPU": 2.0, "memory": ..., ...}``).

    Ray already running in this process is kept as it is (only the Ray Data settings change).
    """
    ray = require_ray()
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        valid_int(name, value, minimum=0, allow_none=True)
    if address is not None and not isinstance(address, str):
        raise ParameterError(f"address={address!r} must be a string such as 'auto' or 'ray://host:10001'")
    if address is not None and (num_cpus is not None or num_gpus is not None):
        raise ParameterError(
            f"num_cpus/num_gpus size a local instance; the cluster at address={address!r} has its own"
        )
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        options = {"logging_level": logging.ERROR if quiet else logging.INFO}
        if quiet:
            options["log_to_driver"] = False
        options.update(ray_init_args)
        if address is None:
            options.setdefault("include_dashboard", False)
            options["num_cpus"] = num_cpus if num_cpus is not None else _machine_cpus()
            if num_gpus is not None:
                options["num_gpus"] = num_gpus
            ray.init(**options)
        else:
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise MirzooError(f"cannot join the Ray cluster at address={address!r}: {exc}") from exc
    _configure_data(progress, quiet)
    return dict(ray.cluster_resources())


def _machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _ensure_init() -> None:
    ray = require_ray()
    if not ray.is_initialized():
        init()


# -- reading ---------------------------------------------------------------------------------------


def _scheme(path: str) -> str:
    head, sep, _ = path.partition("://")
    return head.lower() if sep and head.isalnum() else ""


def _as_filesystem(filesystem):
    """A pyarrow filesystem from a pyarrow or fsspec one."""
    if filesystem is None:
        return None
    import pyarrow.fs  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    if isinstance(filesystem, pyarrow.fs.FileSystem):
        return filesystem
    try:
        import fsspec  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')
    except ImportError:  # pragma: no cover - fsspec comes with ray[data]
        fsspec = None
    if fsspec is not None and isinstance(filesystem, fsspec.AbstractFileSystem):
        return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(filesystem))
    raise ParameterError(
        f"filesystem={filesystem!r} must be a pyarrow.fs.FileSystem or an fsspec filesystem"
    )


def _expand_globs(items: list[str], filesystem) -> list[str]:
    """Expand ``*``/``?``/``[`` patterns (``**`` for any depth); other items are kept as given."""
    out: list[str] = []
    for item in items:
        if not any(c in item for c in "*?["):
            out.append(item)
            continue
        if filesystem is None and not _scheme(item) or _scheme(item) == "file":
            local = item.split("://", 1)[1] if _scheme(item) == "file" else item
            found = sorted(p for p in _glob.glob(local, recursive=True) if os.path.isfile(p))
        else:
            found = _remote_glob(item, filesystem)
        if not found:
            raise AudioFileError(f"no files match the pattern '{item}'")
        out.extend(found)
    return out


def _glob_regex(pattern: str):
    """A regex for a shell pattern: ``*``/``?`` stay within a folder, ``**/`` spans any depth."""

    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] in "*?":
            out.append("[^/]*" if pattern[i] == "*" else "[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            j = pattern.index("]", i + 2)
            out.append("[" + pattern[i + 1:j].replace("!", "^", 1 if pattern[i + 1] == "!" else 0) + "]")
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _remote_glob(pattern: str, filesystem) -> list[str]:
    """Files of a pyarrow filesystem matching ``pattern`` (a URI, or a path of ``filesystem``)."""
    import pyarrow.fs  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    scheme = _scheme(pattern)
    path_pattern = pattern.split("://", 1)[1] if scheme else pattern
    fixed = []
    for part in path_pattern.split("/"):
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    if filesystem is None:
        fs, base = pyarrow.fs.FileSystem.from_uri(f"{scheme}://" + "/".join(fixed))
    else:
        fs, base = filesystem, "/".join(fixed)
    matcher = _glob_regex(path_pattern)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    found = sorted(i.path for i in infos if i.type == pyarrow.fs.FileType.File and matcher.match(i.path))
    if scheme and filesystem is None:
        found = [f"{scheme}://{p}" for p in found]
    return found


def _normalise_extensions(extensions) -> Optional[list[str]]:
    if extensions is None:
        return None
    if isinstance(extensions, str):
        extensions = [extensions]
    try:
        items = list(extensions)
    except TypeError:
        raise ParameterError(f"extensions={extensions!r} must be a list of suffixes like ['.wav', '.flac'] or None")
    if not items or not all(isinstance(e, str) and e.strip(".") for e in items):
        raise ParameterError(f"extensions={extensions!r} must be a non-empty list of suffixes like ['.wav', '.flac']")
    return sorted({e.lower().lstrip(".") for e in items})


def read_audio(
    paths: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    *,
    sr: Optional[int] = None,
    filesystem=None,
    extensions: Optional[Sequence[str]] = AUDIO_EXTENSIONS,
    **read_args,
):
    """A Ray dataset of audio files, for :func:`extract`.

    Parameters
    ----------
    paths : path, URI, glob, or a list of these
        Files, folders (searched recursively), shell patterns (``music/**/*.flac``) or
        URIs of any filesystem pyarrow knows (``s3://bucket/music/``, ``gs://...``,
        ``file:///...``).  All on one filesystem.
    sr : int > 0, optional
        ``None`` (default): rows hold the files' bytes (``path``, ``bytes``), decoded by
        :func:`extract` straight to its model's rate.  An int: decode and resample now, in
        the read tasks; rows ``path``, ``audio`` (large_list<float32>, mono), ``sr``, ``duration`` and
        ``error`` (the reason a file could not be decoded; ``audio`` is then null).
        Resampling twice gives slightly different samples, so prefer ``sr=None`` unless it
        is the model's rate.
    filesystem : pyarrow.fs.FileSystem or fsspec filesystem, optional
        Where ``paths`` live (default: from the paths: local, or the URI's scheme).
    extensions : list of str or None
        Suffixes (case-insensitive) of the files read, in folders and among files given
        one by one (default: :data:`mirzoo.audio.AUDIO_EXTENSIONS`); ``None`` reads every file.
    **read_args
        Passed to ``ray.data.read_binary_files`` (``override_num_blocks``, ``shuffle``, ...).

    Raises
    ------
    ParameterError
        Bad ``paths``, ``sr`` or ``extensions``.
    AudioFileError
        An input path does not exist, or a pattern matches nothing.
    """
    ray = require_ray()
    if isinstance(paths, (str, os.PathLike)):
        items = [paths]
    elif isinstance(paths, (list, tuple)):
        items = list(paths)
    else:
        raise ParameterError(
            f"paths of type {type(paths).__name__} is not supported: expected a path, URI or pattern, or a list of them"
        )
    if not items:
        raise ParameterError("paths is empty: expected at least one file, folder, pattern or URI")
    if not all(isinstance(p, (str, os.PathLike)) for p in items):
        bad = next(p for p in items if not isinstance(p, (str, os.PathLike)))
        raise ParameterError(f"paths holds {bad!r} of type {type(bad).__name__}: expected paths or URIs")
    if sr is not None:
        sr = check_sr(sr)
    fs = _as_filesystem(filesystem)
    exts = _normalise_extensions(extensions)
    items = _expand_globs([os.fspath(p) for p in items], fs)
    schemes = {_scheme(p) for p in items}
    if len(schemes) > 1 and fs is None:
        raise ParameterError(
            f"paths mix filesystems ({', '.join(sorted(s or 'local' for s in schemes))}): read them with "
            f"one read_audio() call each and ds.union() the datasets"
        )
    scheme = schemes.pop() if len(schemes) == 1 else ""
    _ensure_init()
    read_args.setdefault("num_cpus", _READ_CPUS)
    try:
        ds = ray.data.read_binary_files(items, include_paths=True, filesystem=fs, file_extensions=exts, **read_args)
    except FileNotFoundError as exc:
        raise AudioFileError(f"audio input not found: {exc}") from exc
    except ValueError as exc:
        if "No input files" not in str(exc):
            raise
        raise AudioFileError(
            f"no files with extensions {exts} in {', '.join(repr(p) for p in items[:5])}"
            f"{' ...' if len(items) > 5 else ''} (extensions=None reads every file)"
        ) from exc
    if scheme and scheme != "file" and fs is None:
        # Ray lists object-store paths without their scheme ("bucket/key"): give it back
        ds = ds.map_batches(_restore_scheme, fn_kwargs={"scheme": scheme}, batch_format="pyarrow",
                            num_cpus=_READ_CPUS)
    if sr is not None:
        ds = ds.map_batches(_decode_batch, fn_kwargs={"sr": sr}, batch_format="pyarrow", num_cpus=_READ_CPUS)
    return ds


def _restore_scheme(batch, scheme: str):
    import pyarrow as pa  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    paths = [p if "://" in p else f"{scheme}://{p}" for p in batch.column("path").to_pylist()]
    return batch.set_column(batch.schema.get_field_index("path"), "path", pa.array(paths, pa.string()))


def _decode_bytes(data, path: str, sr: int) -> tuple[Optional[np.ndarray], Optional[str]]:
    """Decode a file's bytes like :func:`mirzoo.audio.load_audio`; ``(waveform, None)`` or ``(None, reason)``."""
    try:
        if data is None:
            raise AudioFileError(f"no data was read for audio file '{path}'")
        try:
            y = stream_file(io.BytesIO(data), sr)
        except Exception:  # not for libsndfile: the fallback decoders want a file on disk
            suffix = os.path.splitext(path)[1][:16]
            with tempfile.TemporaryDirectory(prefix="mirzoo-decode-") as tmp:
                name = os.path.join(tmp, "audio" + suffix)
                with open(name, "wb") as f:
                    f.write(data)
                try:
                    y = load_audio(name, sr)
                except MirzooError as exc:
                    raise type(exc)(str(exc).replace(name, path)) from exc
        return validate_audio(y, name=f"audio file '{path}'"), None
    except MirzooError as exc:
        return None, str(exc)
    except Exception as exc:  # a decoder bug must not stop the whole job
        return None, f"{type(exc).__name__}: {exc}"


def _decode_batch(batch, sr: int):
    """``path, bytes`` rows -> ``path, audio, sr, duration, error`` rows (read tasks of ``read_audio(sr=...)``)."""
    import pyarrow as pa  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    paths = batch.column("path").to_pylist()
    data = batch.column("bytes")
    audio, durations, errors = [], [], []
    for i, path in enumerate(paths):
        y, reason = _decode_bytes(data[i].as_py(), path, sr)
        audio.append(y)
        durations.append(None if y is None else y.shape[0] / sr)
        errors.append(reason)
    return pa.table(
        {
            "path": pa.array(paths, pa.string()),
            "audio": pa.array(audio, pa.large_list(pa.float32())),  # long files: 64-bit offsets
            "sr": pa.array([sr] * len(paths), pa.int64()),
            "duration": pa.array(durations, pa.float64()),
            "error": pa.array(errors, pa.string()),
        }
    )


# -- extraction ------------------------------------------------------------------------------------


def _output_schema(dim: int, meta: dict):
    import pyarrow as pa  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    schema = pa.schema(
        [
            ("path", pa.string()),
            ("timestamp", pa.float64()),
            ("embedding", pa.list_(pa.float32(), dim)),
            ("duration", pa.float64()),
            ("error", pa.string()),
            ("model", pa.string()),
            ("layer", pa.string()),
            ("pool", pa.string()),
        ]
    )
    return schema.with_metadata({f"mirzoo.{k}".encode(): str(v).encode() for k, v in meta.items()})


class _EmbedActor:
    """A Ray Data callable class: loads the model once, then embeds batches of files."""

    def __init__(
        self, model: str, layer: Optional[str], pool: Optional[str], batch_size: int, env: dict,
        hop: Optional[float] = None, precision: Optional[str] = None,
    ):
        for key, value in env.items():  # before Keras is imported in this worker
            os.environ.setdefault(key, value)
        # deferred: these import Keras, which must see the environment just set in this worker
        from mirzoo.batch import Embedder, hop_key, meta_of
        from mirzoo.loader import load

        self.extractor = load(model, precision=precision)
        layer_name, keys = self.extractor.resolve_layers(layer)
        self.pool = pool
        self.embedder = Embedder(self.extractor, keys, layer_name, pool, batch_size, hop)
        self.meta = meta_of(self.extractor.name, layer_name, pool, hop_key(self.extractor, hop),
                            self.extractor.precision)
        # one forward pass: the embedding size of this layer/pooling, and the model traced
        rate = self.extractor.sample_rate
        probe = self.extractor.extract(np.zeros(rate, np.float32), sr=rate, layer=layer, pool=pool)
        self.dim = int(np.shape(probe if pool else probe.embeddings)[-1])
        self.schema = _output_schema(self.dim, self.meta)

    def _decode_row(self, batch, i: int) -> tuple[str, Optional[np.ndarray], Optional[str]]:
        """``(path, waveform or None, reason)`` of row ``i``, whatever form the rows have."""
        rate = self.extractor.sample_rate
        names = batch.column_names
        path = str(batch.column("path")[i].as_py())
        if "bytes" in names:
            return (path, *_decode_bytes(batch.column("bytes")[i].as_py(), path, rate))
        try:
            if "audio" in names:
                earlier = batch.column("error")[i].as_py() if "error" in names else None
                audio = batch.column("audio")[i]
                if earlier or not audio.is_valid:
                    return path, None, earlier or f"no audio for '{path}'"
                values = audio.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
                return path, prepare_audio(values, batch.column("sr")[i].as_py(), rate, name=f"audio of '{path}'"), None
            return path, load_audio(path, rate), None  # a dataset of local paths only
        except MirzooError as exc:
            return path, None, str(exc)
        except Exception as exc:  # a decoder bug must not stop the whole job
            return path, None, f"{type(exc).__name__}: {exc}"

    def __call__(self, batch):
        import pyarrow as pa  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

        # one decoder thread, two files ahead, so decoding overlaps the forward passes
        # (libsndfile, soxr and the backend release the GIL)
        rate = self.extractor.sample_rate
        rows: list = []  # (path, duration or None, reason): the waveforms themselves are not kept
        good: list = []  # row index of each waveform given to the embedder, in order

        def signals(pool):
            pending: deque = deque()
            upcoming = iter(range(batch.num_rows))
            for i in upcoming:
                pending.append(pool.submit(self._decode_row, batch, i))
                if len(pending) == 2:
                    break
            while pending:
                path, y, reason = pending.popleft().result()
                nxt = next(upcoming, None)
                if nxt is not None:
                    pending.append(pool.submit(self._decode_row, batch, nxt))
                rows.append((path, None if y is None else y.shape[0] / rate, reason))
                if y is not None:
                    good.append(len(rows) - 1)
                    yield path, y

        results = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mirzoo-decode") as pool:
            for k, (_, result) in enumerate(self.embedder.run(signals(pool))):
                results[good[k]] = result
        out_paths, stamps, blocks, valid, durations, errors = [], [], [], [], [], []
        for i, (path, duration, reason) in enumerate(rows):
            if i not in results:
                out_paths.append(path)
                stamps.append(None)
                blocks.append(np.zeros((1, self.dim), np.float32))
                valid.append(False)
                durations.append(duration)
                errors.append(reason or "unknown error")
                continue
            result = results[i]
            if self.pool:
                emb, ts = np.asarray(result, np.float32)[None, :], [0.0]
            else:
                emb, ts = result.embeddings, result.timestamps.tolist()
            out_paths.extend([path] * len(ts))
            stamps.extend(ts)
            blocks.append(emb)
            valid.extend([True] * len(ts))
            durations.extend([duration] * len(ts))
            errors.extend([None] * len(ts))
        values = np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32)
        n = len(out_paths)
        validity = pa.array(valid, pa.bool_()).buffers()[1]  # a bitmap, as a validity buffer wants
        embedding = pa.Array.from_buffers(
            pa.list_(pa.float32(), self.dim), n, [validity], children=[pa.array(values.reshape(-1))]
        )
        return pa.Table.from_arrays(
            [
                pa.array(out_paths, pa.string()),
                pa.array(stamps, pa.float64()),
                embedding,
                pa.array(durations, pa.float64()),
                pa.array(errors, pa.string()),
                pa.array([self.meta["model"]] * n, pa.string()),
                pa.array([self.meta["layer"]] * n, pa.string()),
                pa.array([self.meta["pool"]] * n, pa.string()),
            ],
            schema=self.schema,
        )


def _check_model(model, layer, hop=None) -> str:
    """The model reference an actor can load; layer and hop checked here when the spec is at hand."""

    spec = None
    if isinstance(model, os.PathLike) or (isinstance(model, str) and os.path.isdir(model)):
        directory = os.path.abspath(os.fspath(model))  # actors may run in another folder
        try:
            meta = json.loads(Path(directory, "mirzoo.json").read_text(encoding="utf-8"))
            spec = ModelSpec.from_entry(meta.get("name") or Path(directory).name, meta["entry"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, MirzooError):
            spec = None  # the actors' load reports a missing or malformed mirzoo.json with its own message
        ref = directory
    elif isinstance(model, str) and model:
        ref = model
        if not model.startswith("hf://") and "@" not in model:
            spec = get_spec(model)  # UnknownModelError with close matches
    else:
        raise ParameterError(
            f"model={model!r} must be a zoo name, 'hf://owner/repo@rev' or a saved-model directory: every Ray "
            f"actor loads its own copy (save an Extractor with .save(dir) and pass the directory)"
        )
    if spec is not None and layer is not None:
        names = list(spec.layers) + ["all"]
        if layer not in names:
            raise UnknownLayerError(
                f"layer={layer!r} is not a layer of model {model!r}; valid layers: {', '.join(names)}"
            )
    if spec is not None and hop is not None and not spec.is_clip:
        raise ParameterError(f"hop={hop!r}: model {model!r} is frame-level; hop applies to clip models only")
    return ref


def extract(
    ds,
    model: Union[str, os.PathLike],
    *,
    layer: Optional[str] = None,
    pool: Optional[str] = "mean",
    batch_size: int = 32,
    hop: Optional[float] = None,
    precision: Optional[str] = None,
    files_per_call: int = 16,
    concurrency: Union[int, tuple, None] = None,
    num_gpus: float = 0,
    num_cpus: Optional[float] = None,
):
    """Embeddings of every file of a dataset, computed by a pool of Ray actors.

    Parameters
    ----------
    ds : ray.data.Dataset
        From :func:`read_audio` (``path`` + ``bytes``, or ``path`` + ``audio`` + ``sr``), or any
        dataset with a ``path`` column of local paths every worker can read.
    model : str or path
        A zoo name, ``"hf://owner/repo@rev"`` or a directory saved by :meth:`mirzoo.Extractor.save`
        (reachable from every worker).  Each actor loads it once.
    layer : str, optional
        Layer name or ``"all"`` (default: the model's embedding layer).
    pool : {"mean", "max", "mean+std"} or None
        One vector per file (default ``"mean"``); ``None``: one row per patch or frame, with
        its timestamp.
    batch_size : int > 0
        Patches per forward pass; patches of different files share batches.
    hop : float > 0, optional
        Clip models: seconds between patch starts (default: the model's), as in
        :meth:`mirzoo.Extractor.extract`.
    precision : {"float32", "bfloat16", "float16"}, optional
        Compute dtype of the actors' models, as in :func:`mirzoo.load`.
    files_per_call : int > 0
        Files an actor takes at a time (Ray Data's ``batch_size``).
    concurrency : int > 0 or (min, max), optional
        Number of actors (a tuple: an autoscaling pool).  Default: one per CPU of the
        cluster, or ``GPUs / num_gpus`` with GPUs.
    num_gpus : float >= 0
        GPUs per actor (fractions share a GPU; memory preallocation is then turned off).
    num_cpus : float > 0, optional
        CPUs per actor (default: 1, or a little less so that reads always find a CPU).

    Returns
    -------
    ray.data.Dataset
        Rows as in the module docstring (lazy: runs when written or consumed).

    Raises
    ------
    ParameterError
        Bad model reference, layer, pool, sizes or resources; raised before anything runs.
    """
    ray = require_ray()
    if not isinstance(ds, ray.data.Dataset):
        raise ParameterError(f"ds must be a ray.data.Dataset (see read_audio), got {type(ds).__name__}")
    valid_pool(pool, _POOLS)
    if layer is not None and not isinstance(layer, str):
        raise ParameterError(f"layer={layer!r} must be a layer name or 'all'")
    batch_size = valid_int("batch_size", batch_size)
    valid_number("hop", hop, unit="seconds", allow_none=True)
    valid_precision(precision)
    files_per_call = valid_int("files_per_call", files_per_call)
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or not num_gpus >= 0:
        raise ParameterError(f"num_gpus={num_gpus!r} must be a number >= 0")
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float))
                                 or not num_cpus > 0):
        raise ParameterError(f"num_cpus={num_cpus!r} must be a number > 0 or None")
    if concurrency is not None:
        if isinstance(concurrency, tuple):
            if (len(concurrency) != 2 or any(isinstance(c, bool) or not isinstance(c, int) for c in concurrency)
                    or not 1 <= concurrency[0] <= concurrency[1]):
                raise ParameterError(f"concurrency={concurrency!r} must be a positive int or a (min, max) pair")
        else:
            concurrency = valid_int("concurrency", concurrency)
    ref = _check_model(model, layer, hop)
    _ensure_init()

    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 1.0))
    if concurrency is None:
        if num_gpus > 0:
            gpus = float(resources.get("GPU", 0.0))
            if gpus == 0:
                raise ParameterError(
                    f"num_gpus={num_gpus!r} but the Ray cluster has no GPU now: use num_gpus=0, or pass "
                    f"concurrency=N if the cluster starts GPU nodes on demand"
                )
            concurrency = max(1, int(gpus // num_gpus))
        elif num_cpus is None:
            concurrency = max(1, int(cpus))
        else:
            concurrency = max(1, int((cpus - _READ_CPUS) // num_cpus))
    actors = concurrency if isinstance(concurrency, int) else concurrency[1]
    if num_cpus is None:  # a CPU each, less what the reads need when the actors would fill the cluster
        num_cpus = round(max(0.01, min(1.0, (cpus - _READ_CPUS) / actors)), 3)
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    env.update({k: os.environ[k] for k in _PASSED_ENV if k in os.environ})
    if not os.environ.get("KERAS_BACKEND"):
        if "keras" in sys.modules:  # keep the backend this process runs
            env["KERAS_BACKEND"] = sys.modules["keras"].backend.backend()
    if 0 < num_gpus < 1:  # several actors share a GPU: no preallocation of the whole memory
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    options = {"num_cpus": num_cpus}
    if num_gpus > 0:
        options["num_gpus"] = num_gpus
    return ds.map_batches(
        _EmbedActor,
        fn_constructor_kwargs={
            "model": ref, "layer": layer, "pool": pool, "batch_size": batch_size, "env": env, "hop": hop,
            "precision": precision,
        },
        batch_size=files_per_call,
        batch_format="pyarrow",
        concurrency=concurrency,
        **options,
    )


# -- output ----------------------------------------------------------------------------------------


def _failures_and_counts(table) -> tuple[list, int]:
    """``(failures, files written)`` from a table with ``path`` and ``error`` columns."""
    from mirzoo.batch import Failure  # deferred: mirzoo.batch imports Keras; importing mirzoo.distributed must not

    paths = table.column("path").to_pylist()
    errors = table.column("error").to_pylist()
    failed = {}
    ok = set()
    for path, error in zip(paths, errors):
        if error is None:
            ok.add(path)
        else:
            failed.setdefault(path, error)
    return [Failure(p, r) for p, r in failed.items()], len(ok)


def write_parquet(ds, path: Union[str, os.PathLike], *, filesystem=None, overwrite: bool = False):
    """Run :func:`extract`'s dataset and write it; report what was written and what failed.

    Parameters
    ----------
    ds : ray.data.Dataset
        The output of :func:`extract`.
    path : path or URI
        Ending in ``.parquet``: one file in exactly ``mirzoo extract``'s Parquet layout
        (``path``, ``timestamp``, ``embedding`` and the ``mirzoo.*`` metadata; readable by
        :func:`mirzoo.batch.read_embeddings`), assembled on this machine, failed files left
        out (they are in the report).  Otherwise a folder of Parquet parts written by the
        workers in parallel, every column of :func:`extract` kept, failed files included
        (``ds.write_parquet(path)`` does the same without the checks and the report).
        Local outputs are written under a temporary name and renamed.
    filesystem : pyarrow.fs.FileSystem or fsspec filesystem, optional
        Where to write (default: from the path).
    overwrite : bool
        Replace an existing output.  A folder is only replaced if it holds nothing but
        Parquet files (so that an input folder is never deleted by mistake).

    Returns
    -------
    mirzoo.batch.ExtractionReport
        ``written`` (files embedded), ``failed`` (:class:`~mirzoo.batch.Failure` list),
        ``total`` (files in the output), ``seconds``; ``exit_code`` as ``mirzoo extract``'s.
    """
    ray = require_ray()
    if not isinstance(ds, ray.data.Dataset):
        raise ParameterError(f"ds must be a ray.data.Dataset (see extract), got {type(ds).__name__}")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ParameterError(f"path={path!r} must be a file (.parquet) or folder path or URI")
    fs = _as_filesystem(filesystem)
    target = os.fspath(path)
    local = fs is None and _scheme(target) in ("", "file")
    if _scheme(target) == "file":
        target = target.split("://", 1)[1]
    start = time.perf_counter()
    if target.lower().endswith(".npz"):
        raise ParameterError(f"output '{target}' must be a .parquet file or a folder (NPZ: use mirzoo.batch)")
    single = target.lower().endswith(".parquet")
    if local:
        # before the dataset runs (it is lazy: writing is what executes it), and one writer per output
        check_writable(target, folder=not single)
        with output_lock(target):
            report = (_write_single if single else _write_folder)(ds, target, fs, local, overwrite)
    else:
        report = (_write_single if single else _write_folder)(ds, target, fs, local, overwrite)
    report.seconds = time.perf_counter() - start
    return report


def _check_target(target: str, fs, local: bool, overwrite: bool, folder: bool) -> None:
    if local:
        p = Path(target)
        exists = p.exists()
        if exists and folder and p.is_dir():
            entries = [e for e in p.rglob("*") if e.is_file() and not e.name.startswith(".")]
            if not entries:
                return
            if not overwrite:
                raise ParameterError(f"output folder '{target}' is not empty: pass overwrite=True to replace it")
            others = [e for e in entries if e.suffix.lower() != ".parquet"]
            if others:
                raise ParameterError(
                    f"output folder '{target}' holds files other than Parquet (e.g. '{others[0]}'): refusing to "
                    f"replace it; choose a new folder"
                )
        elif exists and (folder or p.is_dir()):
            raise ParameterError(f"output '{target}' exists and is not a {'folder' if folder else 'file'}")
        elif exists and not overwrite:
            raise ParameterError(f"output file '{target}' exists: pass overwrite=True to replace it")
        return
    import pyarrow.fs  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    if fs is None:
        fs, remote = pyarrow.fs.FileSystem.from_uri(target)
    else:
        remote = target
    info = fs.get_file_info(remote)
    if info.type == pyarrow.fs.FileType.NotFound:
        return
    if folder and info.type == pyarrow.fs.FileType.Directory:
        if fs.get_file_info(pyarrow.fs.FileSelector(remote, recursive=False)) and not overwrite:
            raise ParameterError(f"output folder '{target}' is not empty: pass overwrite=True to write into it")
        return
    if not overwrite:
        raise ParameterError(f"output '{target}' exists: pass overwrite=True to replace it")


def _write_single(ds, target: str, fs, local: bool, overwrite: bool):
    import pyarrow.parquet as pq  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    from mirzoo.batch import ExtractionReport, Failure, parquet_schema  # deferred: mirzoo.batch imports Keras; importing mirzoo.distributed must not

    _check_target(target, fs, local, overwrite, folder=False)
    report = ExtractionReport(output=Path(target))
    written: set = set()
    failed: dict = {}

    def write(sink) -> None:
        import pyarrow.compute as pc  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

        writer = None
        try:
            for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                ok = table.column("error").is_null()
                for row in table.filter(pc.invert(ok)).select(["path", "error"]).to_pylist():
                    failed.setdefault(row["path"], row["error"])
                good = table.filter(ok)
                if good.num_rows == 0:
                    continue
                if writer is None:
                    raw = table.schema.metadata or {}
                    meta = {k: raw.get(f"mirzoo.{k}".encode(), b"").decode() for k in ("model", "layer", "pool")}
                    schema = parquet_schema(table.schema.field("embedding").type.list_size, meta)
                    writer = pq.ParquetWriter(sink, schema)
                writer.write_table(good.select(["path", "timestamp", "embedding"]).cast(writer.schema))
                written.update(good.column("path").to_pylist())
        finally:
            if writer is not None:
                writer.close()

    if local:
        try:
            with atomic_file(target, suffix=".parquet") as tmp:
                write(tmp)
                if not written:  # nothing to keep: leave no file behind
                    raise _NothingWritten()
        except _NothingWritten:
            pass
    else:
        import pyarrow.fs  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

        if fs is None:
            fs, remote = pyarrow.fs.FileSystem.from_uri(target)
        else:
            remote = target
        with fs.open_output_stream(remote) as sink:
            write(sink)
    report.written = report.total = len(written)
    report.failed = [Failure(p, r) for p, r in failed.items()]
    return report


class _NothingWritten(Exception):
    """Every file failed: the output is not created."""


def _write_folder(ds, target: str, fs, local: bool, overwrite: bool):
    import pyarrow.parquet as pq  # deferred: optional dependency (pip install 'mirzoo[distributed]' / '[parquet]')

    from mirzoo.batch import ExtractionReport  # deferred: mirzoo.batch imports Keras; importing mirzoo.distributed must not

    _check_target(target, fs, local, overwrite, folder=True)
    if local:
        with atomic_directory(target) as tmp:
            ds.write_parquet(str(tmp))
        table = pq.read_table(target, columns=["path", "error"])
    else:
        ds.write_parquet(target, filesystem=fs)
        table = pq.read_table(target, columns=["path", "error"], filesystem=fs)
    failed, written = _failures_and_counts(table)
    return ExtractionReport(output=Path(target), written=written, failed=failed, total=written + len(failed))


def read_embeddings(path: Union[str, os.PathLike], *, filesystem=None) -> tuple[list, dict]:
    """Read a :func:`write_parquet` output (file or folder) back, like :func:`mirzoo.batch.read_embeddings`.

    Returns ``(results, meta)``: ``results`` is ``[(path, embeddings [T, D], timestamps [T]), ...]``
    for every file that has embeddings (failed files are left out), ``meta`` holds ``model``,
    ``layer`` and ``pool``.
    """
    from mirzoo.batch import require_pyarrow  # deferred: mirzoo.batch imports Keras; importing mirzoo.distributed must not

    pa, pq = require_pyarrow()
    fs = _as_filesystem(filesystem)
    source = os.fspath(path)
    try:
        table = pq.read_table(source, filesystem=fs)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ParameterError(f"'{source}' is not a mirzoo Parquet embeddings file or folder: {exc}") from exc
    names = table.column_names
    if not {"path", "timestamp", "embedding"} <= set(names):
        raise ParameterError(f"'{source}' has columns {names}: expected path, timestamp and embedding")
    raw = table.schema.metadata or {}
    meta = {k: raw.get(f"mirzoo.{k}".encode(), b"").decode() for k in ("model", "layer", "pool")}
    table = table.filter(table.column("embedding").is_valid())
    dim = table.schema.field("embedding").type.list_size
    values = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    emb = np.asarray(values, dtype=np.float32).reshape(-1, dim)
    ts = table.column("timestamp").to_numpy()
    paths = table.column("path").to_pylist()
    rows: dict = {}
    for i, p in enumerate(paths):
        rows.setdefault(p, []).append(i)
    return [(p, emb[idx], ts[idx]) for p, idx in rows.items()], meta
