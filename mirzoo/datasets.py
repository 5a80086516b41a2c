"""Labelled audio datasets on disk, behind one interface.

Layouts understood (``kind``):

``magnatagatune``
    ``annotations_final.csv`` (tab-separated: ``clip_id``, one 0/1 column per tag,
    ``mp3_path``) with the mp3 folders beside it; the ``top_k`` (50) most frequent tags.
``gtzan``
    ``<root>/genres/<genre>/*.wav`` or ``<root>/<genre>/*.wav`` (``.au`` too).
``folder``
    Folder per label: ``<root>/<label>/**/<audio>``.
``csv``
    A CSV with a path column and either a label column (``"rock"`` or ``"rock;live"``)
    or one 0/1 column per class.
``corpus``
    The public training corpus built by ``python -m training.corpus build``
    (``metadata.csv`` + ``build_config.json``).
``giantsteps``
    GiantSteps key (Knees et al. 2015; github.com/GiantSteps/giantsteps-key-dataset):
    ``audio/<id>.LOFI.mp3`` and ``annotations/key/<id>.LOFI.key`` holding one line
    ``"<tonic> <mode>"`` (``"Eb minor"``); labels are the 24 keys, flats spelled for
    black keys.
``ballroom``
    Ballroom (Gouyon et al. 2006): ``BallroomData/<Genre>/<name>.wav``, with the beat
    annotations of Krebs et al. 2013 (github.com/CPJKU/BallroomAnnotations):
    ``BallroomAnnotations/<name>.beats``, one ``"<time s> <position in bar>"`` per line.
    Labels are the genres; beats are in ``Dataset.annotations``.
``nsynth``
    NSynth (Engel et al. 2017): ``nsynth-<split>/audio/<note_str>.wav`` and
    ``nsynth-<split>/examples.json`` (one object per note: ``instrument_family_str``,
    ``pitch``, ``velocity``, ``instrument_source_str``, ...).  Labels are the instrument
    family (or the pitch, ``target="pitch"``); every field is in ``Dataset.annotations``.

Every loader returns a :class:`Dataset`: ``items`` (path, labels), ``classes``,
``multilabel``, and :meth:`Dataset.to_arrays` for waveforms and a multi-hot matrix.

Examples
--------
>>> ds = mirzoo.datasets.load_dataset("data/gtzan")          # doctest: +SKIP
>>> X, Y = ds.to_arrays(sr=16000)                             # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from mirzoo.audio import AUDIO_EXTENSIONS, load_audio
from mirzoo.errors import ParameterError

__all__ = [
    "Dataset",
    "DATASET_KINDS",
    "GTZAN_GENRES",
    "GTZAN_SPLIT_FILES",
    "load_dataset",
    "load_magnatagatune",
    "load_gtzan",
    "load_folder",
    "load_csv",
    "load_corpus",
    "load_giantsteps_key",
    "load_ballroom",
    "load_nsynth",
    "parse_key",
    "BALLROOM_GENRES",
    "KEY_NAMES",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: The ten genres of GTZAN (Tzanetakis & Cook 2002).
GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")

#: Layouts :func:`load_dataset` understands.
DATASET_KINDS = ("auto", "magnatagatune", "gtzan", "folder", "csv", "corpus", "giantsteps", "ballroom", "nsynth")

#: The ten style folders of the Ballroom data set (Gouyon et al. 2006).
BALLROOM_GENRES = ("ChaChaCha", "Jive", "Quickstep", "Rumba-American", "Rumba-International", "Rumba-Misc",
                   "Samba", "Tango", "VienneseWaltz", "Waltz")

#: Pitch-class names used for key labels (flats for the black keys, as GiantSteps writes most of them).
_PITCH_CLASSES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

#: The 24 key labels :func:`load_giantsteps_key` gives (``"C major"`` ... ``"B minor"``).
KEY_NAMES = tuple(f"{tonic} {mode}" for mode in ("major", "minor") for tonic in _PITCH_CLASSES)

_PATH_COLUMNS = ("path", "file", "filename", "file_path", "filepath", "audio", "audio_path", "mp3_path")
_LABEL_COLUMNS = ("label", "labels", "tags", "tag", "genre", "class", "classes", "target")
_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", ""}


class Dataset:
    """A list of labelled audio files.

    Parameters
    ----------
    items : iterable of (path, labels)
        ``labels`` is a list of str (one element for single-label data; may be empty for
        a multi-label clip with no positive tag).
    classes : sequence of str, optional
        The vocabulary; by default the sorted set of labels seen.  Labels outside it
        raise :class:`~mirzoo.errors.ParameterError`.
    multilabel : bool, optional
        By default True when any item has other than exactly one label.
    annotations : sequence of dict, optional
        Per-item annotations beyond the labels (beat times, pitch, ...), aligned with ``items``.
    name : str
        Layout or dataset name, for messages.
    root : path, optional
        Where it was loaded from.

    Attributes
    ----------
    items : list of (str, list of str)
    classes : list of str
        Sorted vocabulary (order of the columns of ``Y``).
    multilabel : bool
    annotations : list of dict or None
    """

    def __init__(self, items: Iterable[Tuple[PathLike, Sequence[str]]], classes: Optional[Sequence[str]] = None,
                 multilabel: Optional[bool] = None, *, name: str = "dataset", root: Optional[PathLike] = None,
                 annotations: Optional[Sequence[dict]] = None):
        self.items: List[Tuple[str, List[str]]] = []
        for entry in items:
            try:
                path, labels = entry
            except (TypeError, ValueError):
                raise ParameterError(f"dataset item {entry!r} must be a (path, labels) pair") from None
            if isinstance(labels, str):
                labels = [labels]
            self.items.append((os.fspath(path), [str(label) for label in labels]))
        self.name = name
        self.root = None if root is None else os.fspath(root)
        seen = sorted({label for _, labels in self.items for label in labels})
        if classes is None:
            classes = seen
        self.classes: List[str] = sorted(str(c) for c in classes)
        if len(set(self.classes)) != len(self.classes):
            raise ParameterError(f"classes of {name} hold duplicates: {self.classes}")
        unknown = sorted(set(seen) - set(self.classes))
        if unknown:
            raise ParameterError(f"{name}: labels {unknown[:10]} are not in classes {self.classes[:20]}")
        if multilabel is None:
            multilabel = any(len(labels) != 1 for _, labels in self.items)
        self.multilabel = bool(multilabel)
        self._index: Dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.annotations: Optional[List[dict]] = None if annotations is None else [dict(a) for a in annotations]
        if self.annotations is not None and len(self.annotations) != len(self.items):
            raise ParameterError(f"{name}: {len(self.annotations)} annotations for {len(self.items)} items")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Tuple[str, List[str]]]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Tuple[str, List[str]]:
        return self.items[index]

    def __repr__(self) -> str:
        kind = "multi-label" if self.multilabel else "single-label"
        return f"Dataset(name={self.name!r}, items={len(self)}, classes={len(self.classes)}, {kind})"

    @property
    def paths(self) -> List[str]:
        """Audio paths, in item order."""
        return [path for path, _ in self.items]

    def label_matrix(self) -> np.ndarray:
        """Multi-hot targets.

        Returns
        -------
        np.ndarray [shape=(len(self), len(self.classes)), float32]
        """
        y = np.zeros((len(self.items), len(self.classes)), dtype=np.float32)
        for row, (_, labels) in enumerate(self.items):
            for label in labels:
                y[row, self._index[label]] = 1.0
        return y

    def label_counts(self) -> Dict[str, int]:
        """Number of items per class."""
        counts = self.label_matrix().sum(axis=0)
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def to_arrays(self, sr: Optional[int] = None):
        """Inputs and multi-hot targets.

        Parameters
        ----------
        sr : int > 0, optional
            Decode every file to mono float32 at ``sr`` Hz with
            :func:`mirzoo.audio.load_audio`; when None, return the paths instead.

        Returns
        -------
        X : list of np.ndarray [shape=(n_i,), float32] or list of str
        Y : np.ndarray [shape=(len(self), len(self.classes)), float32]

        Raises
        ------
        mirzoo.errors.AudioFileError
            If a file is missing or cannot be decoded (the message names it).
        """
        y = self.label_matrix()
        if sr is None:
            return self.paths, y
        return [load_audio(path, sr) for path in self.paths], y

    def subset(self, indices: Sequence[int]) -> "Dataset":
        """A dataset of the items at ``indices``, with the same classes."""
        notes = None if self.annotations is None else [self.annotations[i] for i in indices]
        return Dataset([self.items[i] for i in indices], self.classes, self.multilabel, name=self.name, root=self.root,
                       annotations=notes)


# --------------------------------------------------------------------------- helpers


def _require_dir(root: PathLike, what: str) -> Path:
    path = Path(os.fspath(root)).expanduser()
    if not path.exists():
        raise ParameterError(f"{what} folder not found: '{path}'")
    if not path.is_dir():
        raise ParameterError(f"'{path}' is a file, expected a {what} folder")
    return path


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def _audio_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*") if _is_audio(p))


def _check_nonempty(items: list, where: Path, what: str) -> None:
    if not items:
        raise ParameterError(f"no {what} found under '{where}' (audio extensions: {', '.join(AUDIO_EXTENSIONS)})")


def _check_files(items: Sequence[Tuple[str, List[str]]], source: Path) -> None:
    missing = [path for path, _ in items if not os.path.isfile(path)]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ParameterError(
            f"{len(missing)} audio file(s) listed in '{source}' do not exist: "
            f"{', '.join(repr(m) for m in missing[:3])}{more} (pass audio_dir= or check_files=False)"
        )


# --------------------------------------------------------------------------- loaders


def _mtat_split(mp3_path: str) -> str:
    # the usual MagnaTagATune split by the first hex digit of the folder: 0-b, c, d-f
    first = mp3_path.strip("/").split("/")[0][:1].lower()
    if first in "0123456789ab":
        return "train"
    return "valid" if first == "c" else "test"


def load_magnatagatune(source: PathLike, *, audio_dir: Optional[PathLike] = None, top_k: int = 50,
                       split: Optional[str] = None, drop_untagged: bool = False,
                       check_files: bool = True) -> Dataset:
    """MagnaTagATune from ``annotations_final.csv``.

    Parameters
    ----------
    source : path
        The ``annotations_final.csv`` file, or the folder holding it.
    audio_dir : path, optional
        Folder the ``mp3_path`` column is relative to (default: the csv's folder, or its
        ``mp3/`` subfolder when that exists).
    top_k : int > 0
        Keep the ``top_k`` most frequent tags (ties broken by name); 50 is the usual benchmark.
    split : {"train", "valid", "test"}, optional
        The usual split by the clip's folder (``0``-``b``, ``c``, ``d``-``f``).
    drop_untagged : bool
        Drop clips with none of the kept tags.
    check_files : bool
        Raise if listed mp3 files are missing.

    Raises
    ------
    mirzoo.errors.ParameterError
        If the file is missing or malformed, ``top_k`` or ``split`` is bad, or files are missing.
    """
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        path = path / "annotations_final.csv"
    if not path.is_file():
        raise ParameterError(f"MagnaTagATune annotations not found: '{path}' (expected annotations_final.csv)")
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k <= 0:
        raise ParameterError(f"top_k={top_k!r}: expected a positive int")
    if split not in (None, "train", "valid", "test"):
        raise ParameterError(f"split={split!r}: expected None, 'train', 'valid' or 'test'")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows:
        raise ParameterError(f"'{path}' is empty: expected a tab-separated header clip_id, <tags>..., mp3_path")
    header = [h.strip().strip('"') for h in rows[0]]
    if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
        raise ParameterError(
            f"'{path}' does not look like MagnaTagATune's annotations_final.csv: expected a tab-separated "
            f"header 'clip_id', <tag columns>, 'mp3_path', got {header[:3]}...{header[-1:]}"
        )
    tags = header[1:-1]
    matrix = np.zeros((len(rows) - 1, len(tags)), dtype=np.int8)
    mp3 = []
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ParameterError(f"'{path}' line {i + 2} has {len(row)} fields, expected {len(header)}")
        try:
            matrix[i] = [int(v.strip().strip('"') or 0) for v in row[1:-1]]
        except ValueError:
            raise ParameterError(f"'{path}' line {i + 2}: tag columns must be 0/1") from None
        mp3.append(row[-1].strip().strip('"'))
    counts = matrix.sum(axis=0)
    order = sorted(range(len(tags)), key=lambda j: (-int(counts[j]), tags[j]))[:top_k]
    keep = [tags[j] for j in order]
    if audio_dir is None:
        base = path.parent / "mp3" if (path.parent / "mp3").is_dir() else path.parent
    else:
        base = _require_dir(audio_dir, "MagnaTagATune audio")
    items = []
    for i, rel in enumerate(mp3):
        if not rel or (split is not None and _mtat_split(rel) != split):
            continue
        labels = [tags[j] for j in order if matrix[i, j]]
        if drop_untagged and not labels:
            continue
        items.append((str(base / rel), labels))
    _check_nonempty(items, path, "MagnaTagATune clips")
    if check_files:
        _check_files(items, path)
    return Dataset(items, keep, True, name="magnatagatune", root=path.parent)


def _gtzan_base(root: Path) -> Path:
    return root / "genres" if (root / "genres").is_dir() else root


#: File names of the fault-filtered GTZAN split (Kereliuk, Sturm & Larsen 2015, "Deep learning and
#: music adversaries"; Sturm 2013 catalogues the faults: repeated excerpts, mislabellings, distortions).
#: The three lists are published as text files with github.com/coreyker/dnn-mgr (``gtzan/``), one
#: ``<genre>/<genre>.000NN.wav`` per line; mirzoo ships no copy, so they must lie beside the audio.
GTZAN_SPLIT_FILES = {"train": "train_filtered.txt", "valid": "valid_filtered.txt", "test": "test_filtered.txt"}


def load_gtzan(root: PathLike, *, split: Optional[str] = None, split_dir: Optional[PathLike] = None) -> Dataset:
    """GTZAN genre collection: ``<root>/genres/<genre>/*`` or ``<root>/<genre>/*``.

    Parameters
    ----------
    root : path
        The GTZAN folder.
    split : {"train", "valid", "test"}, optional
        One part of the fault-filtered split (:data:`GTZAN_SPLIT_FILES`: 443 / 197 / 290
        tracks of the 1000, artists kept apart, faulty excerpts left out).  Its list
        ``<split>_filtered.txt`` is read from ``split_dir`` (default: ``root``, then the
        ``genres`` folder); listed ``.wav`` names also match the original ``.au`` files.
        Without ``split``, every file of every genre folder.
    split_dir : path, optional
        Folder holding the three split lists.

    Raises
    ------
    mirzoo.errors.ParameterError
        If the folder is missing or holds no audio in genre folders; with ``split``, if the
        list is missing, a line is not ``<genre>/<file>`` (the message names the file and
        the line) or a listed track is not on disk.
    """
    base = _gtzan_base(_require_dir(root, "GTZAN"))
    dataset = _folder_items(base, "GTZAN")
    odd = sorted(set(dataset.classes) - set(GTZAN_GENRES))
    if odd:
        logger.warning("GTZAN folder '%s' has non-GTZAN genre folders %s", base, odd)
    dataset.name = "gtzan"
    if split is None:
        return dataset
    if split not in GTZAN_SPLIT_FILES:
        raise ParameterError(f"split={split!r}: expected None, 'train', 'valid' or 'test'")
    name = GTZAN_SPLIT_FILES[split]
    folders = [_require_dir(split_dir, "GTZAN split")] if split_dir is not None else [Path(os.fspath(root)).expanduser(), base]
    list_file = next((f / name for f in folders if (f / name).is_file()), None)
    if list_file is None:
        raise ParameterError(
            f"GTZAN fault-filtered split list '{name}' not found in {' or '.join(repr(str(f)) for f in folders)}: "
            f"put train_filtered.txt, valid_filtered.txt and test_filtered.txt (Kereliuk et al. 2015, published "
            f"with github.com/coreyker/dnn-mgr, gtzan/) beside the genre folders, or pass split_dir=")
    on_disk = {}
    for path, labels in dataset.items:
        rel = Path(path).relative_to(base)
        on_disk.setdefault((rel.parent.as_posix(), rel.stem), (path, labels))
    items, missing = [], []
    for n, line in enumerate(list_file.read_text(encoding="utf-8-sig").splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        parts = entry.replace("\\", "/").split("/")
        if len(parts) != 2 or not all(parts):
            raise ParameterError(f"'{list_file}' line {n}: {entry!r} is not '<genre>/<file>' "
                                 f"(e.g. 'blues/blues.00029.wav')")
        found = on_disk.get((parts[0], Path(parts[1]).stem))
        if found is None:
            missing.append(entry)
        else:
            items.append(found)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ParameterError(f"{len(missing)} track(s) listed in '{list_file}' are not under '{base}': "
                             f"{', '.join(repr(m) for m in missing[:3])}{more}")
    _check_nonempty(items, list_file, "GTZAN tracks")
    return Dataset(items, dataset.classes, False, name="gtzan", root=base)


def _folder_items(base: Path, what: str) -> Dataset:
    items = []
    for label_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        items.extend((str(f), [label_dir.name]) for f in _audio_files(label_dir))
    if not items:
        loose = [p for p in base.iterdir() if _is_audio(p)]
        hint = f" ({len(loose)} audio files lie directly in it: put them in one folder per label)" if loose else ""
        raise ParameterError(f"no audio files in label folders under '{base}'{hint}: expected {what} layout "
                             f"'<root>/<label>/<file>'")
    return Dataset(items, None, False, name="folder", root=base)


def load_folder(root: PathLike) -> Dataset:
    """Folder-per-label layout: every subfolder of ``root`` is a class; audio is searched recursively.

    Raises
    ------
    mirzoo.errors.ParameterError
        If the folder is missing or no subfolder holds audio.
    """
    return _folder_items(_require_dir(root, "dataset"), "folder-per-label")


def load_csv(path: PathLike, *, audio_dir: Optional[PathLike] = None, label_separator: str = ";",
             multilabel: Optional[bool] = None, check_files: bool = True) -> Dataset:
    """Labels from a CSV file.

    Two forms, both with a header row:

    * ``path,label`` where ``label`` may hold several labels joined by ``label_separator``
      (``rock;live``);
    * ``path,<class 1>,<class 2>,...`` with 0/1 (or true/false) values.

    The path column is the first column named one of ``path, file, filename, audio,
    mp3_path...`` (else the first column).  Relative paths are resolved against
    ``audio_dir`` (default: the CSV's folder).  Tab-separated files are detected.

    Raises
    ------
    mirzoo.errors.ParameterError
        If the file is missing, empty, has no label column, holds non 0/1 values in a
        one-hot layout, or lists missing audio files.
    """
    csv_path = Path(os.fspath(path)).expanduser()
    if not csv_path.is_file():
        raise ParameterError(f"CSV file not found: '{csv_path}'")
    text = csv_path.read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise ParameterError(f"'{csv_path}' holds no data rows: expected a header and one row per audio file")
    delimiter = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    if len(header) < 2:
        raise ParameterError(
            f"'{csv_path}' has a single column {header}: expected 'path,label' or 'path,<class>,...' columns"
        )
    lower = [h.lower() for h in header]
    path_col = next((i for i, h in enumerate(lower) if h in _PATH_COLUMNS), 0)
    others = [i for i in range(len(header)) if i != path_col]
    label_col = next((i for i in others if lower[i] in _LABEL_COLUMNS), None)
    base = Path(os.fspath(audio_dir)).expanduser() if audio_dir is not None else csv_path.parent
    items = []
    if label_col is None and len(others) == 1:
        label_col = others[0]
    if label_col is not None:
        classes = None
        for n, row in enumerate(rows[1:], start=2):
            if len(row) <= max(path_col, label_col):
                raise ParameterError(f"'{csv_path}' line {n} has {len(row)} fields, expected {len(header)}")
            labels = [x.strip() for x in row[label_col].split(label_separator) if x.strip()]
            items.append((row[path_col].strip(), labels))
    else:
        classes = [header[i] for i in others]
        for n, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise ParameterError(f"'{csv_path}' line {n} has {len(row)} fields, expected {len(header)}")
            labels = []
            for i in others:
                value = row[i].strip().lower()
                if value in _TRUE:
                    labels.append(header[i])
                elif value not in _FALSE:
                    raise ParameterError(
                        f"'{csv_path}' line {n}, column {header[i]!r}: value {row[i]!r} is not 0/1; expected "
                        f"a 'path,label' CSV or one 0/1 column per class"
                    )
            items.append((row[path_col].strip(), labels))
    resolved = []
    for rel, labels in items:
        if not rel:
            raise ParameterError(f"'{csv_path}' has a row with an empty path")
        p = Path(rel).expanduser()
        resolved.append((str(p if p.is_absolute() else base / p), labels))
    if check_files:
        _check_files(resolved, csv_path)
    if multilabel is None and classes is not None:
        multilabel = True
    return Dataset(resolved, classes, multilabel, name="csv", root=csv_path.parent)


def load_corpus(folder: PathLike, *, split: Optional[str] = None,
                tag_prefixes: Optional[Sequence[str]] = None, check_files: bool = False) -> Dataset:
    """The corpus built by ``python -m training.corpus build`` (multi-label tags).

    Parameters
    ----------
    folder : path
        Corpus folder with ``metadata.csv``.
    split : {"train", "valid", "test"}, optional
        Keep one split.
    tag_prefixes : sequence of str, optional
        Keep only tags starting with one of these (``["instrument:", "style:"]``); the
        vocabulary is then restricted to them too.
    check_files : bool
        Raise if listed audio files are missing.

    Raises
    ------
    mirzoo.errors.ParameterError
        If ``metadata.csv`` is missing or malformed, or nothing is left after filtering.
    """
    root = _require_dir(folder, "corpus")
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise ParameterError(f"'{root}' is not a built corpus: '{meta}' not found")
    with open(meta, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "tags", "split"} - set(reader.fieldnames or [])
        if missing:
            raise ParameterError(f"'{meta}' lacks column(s) {sorted(missing)}")
        rows = list(reader)
    if split not in (None, "train", "valid", "test"):
        raise ParameterError(f"split={split!r}: expected None, 'train', 'valid' or 'test'")
    prefixes = tuple(tag_prefixes or ())
    all_tags = set()
    items = []
    for row in rows:
        tags = [t for t in row["tags"].split(";") if t and (not prefixes or t.startswith(prefixes))]
        all_tags.update(tags)
        if split is None or row["split"] == split:
            items.append((str(root / row["path"]), tags))
    _check_nonempty(items, root, f"clips{f' in split {split!r}' if split else ''}")
    if check_files:
        _check_files(items, meta)
    # the vocabulary covers every split, so models trained on one split share columns with the others
    return Dataset(items, sorted(all_tags), True, name="corpus", root=root)


# --------------------------------------------------------------------------- key, beat and note data sets


def parse_key(text: str, *, source: str = "key", line: int = 1) -> str:
    """A key name such as ``"Eb minor"``, ``"c# Major"`` or ``"A min"`` as one of :data:`KEY_NAMES`.

    Raises
    ------
    mirzoo.errors.ParameterError
        Naming ``source`` and ``line`` when ``text`` is not ``"<tonic> <major|minor>"``.
    """
    parts = text.split()
    if len(parts) != 2:
        raise ParameterError(f"'{source}' line {line}: {text.strip()!r} is not a key; expected '<tonic> <mode>' "
                             f"such as 'Eb minor' or 'A major'")
    tonic, mode = parts
    mode = {"major": "major", "maj": "major", "minor": "minor", "min": "minor"}.get(mode.lower())
    letter = tonic[:1].upper()
    accidentals = tonic[1:]
    if mode is None or letter not in _NATURAL or accidentals not in ("", "b", "#", "\u266d", "\u266f"):
        raise ParameterError(f"'{source}' line {line}: {text.strip()!r} is not a key; expected a tonic A-G with "
                             f"an optional '#' or 'b' and the mode 'major' or 'minor' (e.g. 'Eb minor')")
    shift = {"": 0, "b": -1, "\u266d": -1, "#": 1, "\u266f": 1}[accidentals]
    return f"{_PITCH_CLASSES[(_NATURAL[letter] + shift) % 12]} {mode}"


def _audio_by_stem(folder: Path) -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for path in _audio_files(folder):
        found.setdefault(path.name[: -len(path.suffix)], path)
    return found


def load_giantsteps_key(root: PathLike, *, check_files: bool = True) -> Dataset:
    """GiantSteps key: ``annotations/key/<id>.LOFI.key`` with the audio in ``audio/<id>.LOFI.mp3``.

    The layout is that of github.com/GiantSteps/giantsteps-key-dataset after its
    ``audio_dl.sh`` has filled ``audio/`` (``.mp3``; ``.wav`` and the other audio
    extensions are accepted).  Every ``.key`` file holds one line ``"<tonic> <mode>"``;
    labels are normalised to :data:`KEY_NAMES` (``"D# minor"`` -> ``"Eb minor"``), which
    is what the MIREX weighted key score compares.

    Parameters
    ----------
    root : path
        The data set folder (holding ``annotations/key`` and ``audio``).
    check_files : bool
        Raise if the audio of an annotated track is missing.

    Raises
    ------
    mirzoo.errors.ParameterError
        If a folder is missing, a ``.key`` file is empty or malformed (the message names the
        file and the line), or audio is missing.
    """
    base = _require_dir(root, "GiantSteps key")
    key_dir = base / "annotations" / "key"
    if not key_dir.is_dir():
        raise ParameterError(f"'{base}' is not a GiantSteps key data set: '{key_dir}' not found "
                             f"(expected annotations/key/<id>.LOFI.key and audio/<id>.LOFI.mp3)")
    key_files = sorted(key_dir.glob("*.key"))
    if not key_files:
        raise ParameterError(f"no .key files in '{key_dir}'")
    audio = _audio_by_stem(base / "audio") if (base / "audio").is_dir() else {}
    items, notes = [], []
    for key_file in key_files:
        lines = [(n, line) for n, line in enumerate(key_file.read_text(encoding="utf-8-sig").splitlines(), 1)
                 if line.strip()]
        if not lines:
            raise ParameterError(f"'{key_file}' line 1: the file is empty; expected a key such as 'Eb minor'")
        if len(lines) > 1:
            raise ParameterError(f"'{key_file}' line {lines[1][0]}: expected a single key line, found "
                                 f"{len(lines)} non-empty lines")
        n, text = lines[0]
        key = parse_key(text, source=str(key_file), line=n)
        stem = key_file.name[: -len(".key")]
        path = audio.get(stem, base / "audio" / f"{stem}.mp3")
        items.append((str(path), [key]))
        notes.append({"key": key, "annotation": str(key_file)})
    if check_files:
        _check_files(items, key_dir)
    return Dataset(items, None, False, name="giantsteps", root=base, annotations=notes)


def _read_beats(path: Path) -> np.ndarray:
    """``time position`` per line (Krebs et al. 2013) -> float64 [n, 2]."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ParameterError(f"'{path}' line {n}: {line.strip()!r} has {len(fields)} field(s); expected "
                                 f"'<time in seconds> <beat position in bar>'")
        try:
            time, position = float(fields[0]), int(fields[1])
        except ValueError:
            raise ParameterError(f"'{path}' line {n}: {line.strip()!r} is not '<time in seconds> <beat position "
                                 f"in bar>' (a number and an integer)") from None
        if not np.isfinite(time) or time < 0 or position < 1:
            raise ParameterError(f"'{path}' line {n}: time {fields[0]} must be >= 0 and position {fields[1]} >= 1")
        if rows and time <= rows[-1][0]:
            raise ParameterError(f"'{path}' line {n}: time {time} does not follow the previous beat "
                                 f"({rows[-1][0]}); beat times must increase")
        rows.append((time, position))
    if not rows:
        raise ParameterError(f"'{path}' line 1: the file holds no beats")
    return np.asarray(rows, dtype=np.float64)


def load_ballroom(root: PathLike, *, annotations_dir: Optional[PathLike] = None, beats: bool = True) -> Dataset:
    """Ballroom: ``BallroomData/<Genre>/<name>.wav``, beats in ``BallroomAnnotations/<name>.beats``.

    The audio layout is that of the BallroomData archive (Gouyon et al. 2006); the beat
    files are those of Krebs, Böck & Widmer 2013 (github.com/CPJKU/BallroomAnnotations),
    one line ``"<time in seconds> <beat position in bar>"`` per beat (``1`` = downbeat).

    Parameters
    ----------
    root : path
        A folder holding ``BallroomData`` (and usually ``BallroomAnnotations``), or
        ``BallroomData`` itself.
    annotations_dir : path, optional
        Folder of the ``.beats`` files (default: ``BallroomAnnotations`` next to, or inside,
        ``BallroomData``).
    beats : bool
        Read the beat annotations (every track then needs its ``.beats`` file).  Each
        item's annotation holds ``beats`` (float64 [n, 2]: time, position) and
        ``downbeats`` (times with position 1).

    Raises
    ------
    mirzoo.errors.ParameterError
        If a folder or a ``.beats`` file is missing, or a line is malformed (the message
        names the file and the line).
    """
    base = _require_dir(root, "Ballroom")
    data = base / "BallroomData" if (base / "BallroomData").is_dir() else base
    dataset = _folder_items(data, "Ballroom")
    odd = sorted(set(dataset.classes) - set(BALLROOM_GENRES))
    if odd:
        logger.warning("Ballroom folder '%s' has folders %s that are not Ballroom styles", data, odd)
    notes = None
    if beats:
        if annotations_dir is not None:
            ann = _require_dir(annotations_dir, "Ballroom annotations")
        else:
            candidates = [data.parent / "BallroomAnnotations", data / "BallroomAnnotations", base / "BallroomAnnotations"]
            ann = next((c for c in candidates if c.is_dir()), None)
            if ann is None:
                raise ParameterError(
                    f"Ballroom beat annotations not found: expected a 'BallroomAnnotations' folder of <name>.beats "
                    f"files (github.com/CPJKU/BallroomAnnotations) in '{data.parent}', or pass annotations_dir= "
                    f"(or beats=False for genre labels only)")
        notes = []
        for path, _ in dataset.items:
            beat_file = ann / (Path(path).stem + ".beats")
            if not beat_file.is_file():
                raise ParameterError(f"beat annotation file '{beat_file}' for '{path}' not found")
            table = _read_beats(beat_file)
            notes.append({"beats": table, "downbeats": table[table[:, 1] == 1, 0], "annotation": str(beat_file)})
    return Dataset(dataset.items, dataset.classes, False, name="ballroom", root=data, annotations=notes)


_NSYNTH_TARGETS = {"instrument_family": "instrument_family_str", "instrument_source": "instrument_source_str",
                   "pitch": "pitch"}


def _json_line(text: str, key: str) -> int:
    at = text.find(f'"{key}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def load_nsynth(root: PathLike, *, split: Optional[str] = None, target: str = "instrument_family",
                check_files: bool = True) -> Dataset:
    """NSynth: ``nsynth-<split>/examples.json`` and ``nsynth-<split>/audio/<note_str>.wav``.

    ``examples.json`` maps each ``note_str`` to its fields (``instrument_family_str``,
    ``instrument_source_str``, ``pitch``, ``velocity``, ``qualities_str``...), as in the
    archives of Engel et al. 2017 (magenta.tensorflow.org/datasets/nsynth).

    Parameters
    ----------
    root : path
        An ``nsynth-<split>`` folder, or the folder holding them (then ``split`` is needed).
    split : {"train", "valid", "test"}, optional
    target : {"instrument_family", "instrument_source", "pitch"}
        What the labels are (pitch labels are MIDI numbers as strings, ``"60"``); every
        field of the note is kept in ``Dataset.annotations``.
    check_files : bool
        Raise if listed audio is missing.

    Raises
    ------
    mirzoo.errors.ParameterError
        If ``examples.json`` is missing or malformed (the message names the file and the
        line), a note lacks the target field, or audio is missing.
    """
    if target not in _NSYNTH_TARGETS:
        raise ParameterError(f"target={target!r}: expected one of {sorted(_NSYNTH_TARGETS)}")
    if split not in (None, "train", "valid", "test"):
        raise ParameterError(f"split={split!r}: expected None, 'train', 'valid' or 'test'")
    base = _require_dir(root, "NSynth")
    if not (base / "examples.json").is_file():
        if split is None:
            found = sorted(p.name for p in base.glob("nsynth-*") if (p / "examples.json").is_file())
            raise ParameterError(f"'{base}' holds no examples.json: pass an nsynth-<split> folder or split= "
                                 f"(found {found or 'no nsynth-<split> folders'})")
        base = _require_dir(base / f"nsynth-{split}", f"NSynth {split}")
    elif split is not None and base.name != f"nsynth-{split}":
        raise ParameterError(f"split={split!r} but '{base}' is not an nsynth-{split} folder")
    meta = base / "examples.json"
    if not meta.is_file():
        raise ParameterError(f"NSynth annotations not found: '{meta}'")
    text = meta.read_text(encoding="utf-8")
    try:
        examples = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"'{meta}' line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(examples, dict) or not examples:
        raise ParameterError(f"'{meta}' line 1: expected a non-empty object mapping note_str to its fields")
    field = _NSYNTH_TARGETS[target]
    items, notes = [], []
    for note in sorted(examples):
        fields = examples[note]
        if not isinstance(fields, dict) or field not in fields:
            raise ParameterError(f"'{meta}' line {_json_line(text, note)}: note {note!r} has no {field!r} field")
        value = fields[field]
        if field == "pitch" and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 127):
            raise ParameterError(f"'{meta}' line {_json_line(text, note)}: note {note!r} has pitch {value!r}; "
                                 f"expected a MIDI number 0-127")
        items.append((str(base / "audio" / f"{note}.wav"), [str(value)]))
        notes.append(dict(fields, note_str=note))
    if check_files:
        _check_files(items, meta)
    return Dataset(items, None, False, name="nsynth", root=base, annotations=notes)


# --------------------------------------------------------------------------- detection


def _detect(path: Path) -> str:
    if path.is_file():
        if path.name == "annotations_final.csv":
            return "magnatagatune"
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            return "csv"
        raise ParameterError(f"cannot tell the dataset layout of file '{path}': expected a .csv/.tsv file")
    if (path / "metadata.csv").is_file() and ((path / "build_config.json").is_file() or (path / "vocabulary.json").is_file()):
        return "corpus"
    if (path / "annotations_final.csv").is_file():
        return "magnatagatune"
    if (path / "annotations" / "key").is_dir():
        return "giantsteps"
    if (path / "BallroomData").is_dir() or path.name == "BallroomData":
        return "ballroom"
    if (path / "examples.json").is_file() and (path / "audio").is_dir():
        return "nsynth"
    if (path / "genres").is_dir():
        return "gtzan"
    subdirs = {p.name for p in path.iterdir() if p.is_dir()}
    if len(subdirs) >= 2 and subdirs <= set(GTZAN_GENRES):
        return "gtzan"
    if subdirs:
        return "folder"
    csvs = sorted(path.glob("*.csv"))
    if len(csvs) == 1:
        return "csv"
    raise ParameterError(
        f"cannot tell the dataset layout of '{path}': expected label subfolders, a GTZAN 'genres/' folder, "
        f"annotations_final.csv, a single CSV file, or a corpus metadata.csv"
    )


def load_dataset(source, kind: str = "auto", **kwargs) -> Dataset:
    """Load labelled audio from a folder, a CSV file or a list of pairs.

    Parameters
    ----------
    source : path or sequence of (path, label)
        A folder or file on disk; or ``[(path, "label"), (path, ["a", "b"]), ...]``.
    kind : {"auto", "magnatagatune", "gtzan", "folder", "csv", "corpus", "giantsteps", "ballroom", "nsynth"}
        Layout; ``auto`` detects it (see :mod:`mirzoo.datasets`).
    **kwargs
        Passed to the loader (``split=``, ``top_k=``, ``audio_dir=``...).

    Returns
    -------
    Dataset

    Raises
    ------
    mirzoo.errors.ParameterError
        If ``source`` does not exist, ``kind`` is unknown, the layout cannot be detected,
        or the dataset is empty or malformed.
    """
    if kind not in DATASET_KINDS:
        raise ParameterError(f"kind={kind!r}: expected one of {list(DATASET_KINDS)}")
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (list, tuple)):
        if not source:
            raise ParameterError("the list of (path, label) pairs is empty")
        return Dataset(source, kwargs.get("classes"), kwargs.get("multilabel"), name="pairs")
    if not isinstance(source, (str, os.PathLike)):
        raise ParameterError(f"source must be a path or a list of (path, label) pairs, got {type(source).__name__}")
    path = Path(os.fspath(source)).expanduser()
    if not path.exists():
        raise ParameterError(f"dataset not found: '{path}' does not exist")
    if kind == "auto":
        kind = _detect(path)
        logger.info("dataset '%s' detected as %s", path, kind)
    if kind == "csv" and path.is_dir():
        csvs = sorted(path.glob("*.csv"))
        if len(csvs) != 1:
            raise ParameterError(f"kind='csv' with folder '{path}': expected exactly one .csv in it, found {len(csvs)}")
        path = csvs[0]
    loaders = {"magnatagatune": load_magnatagatune, "gtzan": load_gtzan, "folder": load_folder,
               "csv": load_csv, "corpus": load_corpus, "giantsteps": load_giantsteps_key, "ballroom": load_ballroom,
               "nsynth": load_nsynth}
    return loaders[kind](path, **kwargs)
