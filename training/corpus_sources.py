"""Source material of the public corpus: the music21 bundled corpus.

Two steps:

1. :func:`build_catalog` lists the pieces (cheap: file names and ABC headers only,
   no music21 parsing).  Every piece gets a stable ``piece_id``, its collection,
   collection-level tags (style, tune type, origin, written mode of ABC tunes) and a
   ``split_key`` that decides its split.
2. :func:`load_score` parses one piece with music21 and turns it into a
   :class:`ScoreData` note table (ties merged, chords expanded, grace notes and chord
   symbols dropped), with measure starts, time signatures, the written key/mode and
   metronome marks.  Parsing is slow, so the result is cached on disk (one ``.npz``
   per piece, written atomically); a piece that cannot be parsed is cached as a
   failure too, so a resumed build does not retry it.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from training import corpus_targets as ct

logger = logging.getLogger(__name__)

#: Bump when the content of cached :class:`ScoreData` changes.
CACHE_VERSION = 2  # 2: spelling, beat grid, key segments and beat chords (corpus version 2)

#: Default on-disk cache of parsed scores (override with ``$MIRZOO_CORPUS_CACHE``).
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "mirzoo", "corpus-scores")

# --------------------------------------------------------------------------- catalog


@dataclasses.dataclass(frozen=True)
class Collection:
    """A group of pieces of the music21 corpus.

    Attributes
    ----------
    name : str
        Collection tag value (``collection:<name>``).
    patterns : tuple of str
        Glob patterns relative to the music21 corpus root.
    kind : {"score", "abc-tunes", "abc-merge"}
        ``score``: one file is one piece; ``abc-tunes``: every ``X:`` tune of an ABC file
        is a piece; ``abc-merge``: the tunes of an ABC file are the voices of one piece.
    style : str
        Style tag value (``style:<style>``).
    weight : float
        Share of this collection in the interleaved build order.
    tempo : (float, float)
        Range of the drawn tempo in beats per minute (beat of the time signature).
    mode_from_abc : bool
        Whether the ABC ``K:`` field states a written mode worth a ``mode:`` tag.
    mode_from_score : bool
        Whether a key with a mode in the parsed score is trusted for a ``mode:`` tag
        (Bach's MusicXML chorales state it; Essen's ABC ``K:`` and the trecento files
        only carry a key signature).
    exclude : tuple of str
        File names left out (test files, variants).
    """

    name: str
    patterns: Tuple[str, ...]
    kind: str
    style: str
    weight: float
    tempo: Tuple[float, float]
    mode_from_abc: bool = False
    mode_from_score: bool = False
    exclude: Tuple[str, ...] = ()


COLLECTIONS: Tuple[Collection, ...] = (
    Collection("bach-chorales", ("bach/*.mxl", "bach/*.xml"), "score", "baroque", 1.0, (56, 96),
               mode_from_score=True),
    Collection("palestrina", ("palestrina/*.krn",), "score", "renaissance", 1.0, (44, 80)),
    Collection("monteverdi-madrigals", ("monteverdi/*.mxl",), "score", "renaissance", 0.3, (50, 100),
               mode_from_score=True),
    Collection("josquin", ("josquin/*.abc",), "abc-merge", "renaissance", 0.1, (44, 80),
               mode_from_score=True),
    Collection("trecento", ("trecento/*.xml", "trecento/*.mxl"), "score", "medieval", 0.3, (50, 100)),
    Collection(
        "string-quartets",
        ("beethoven/**/*.mxl", "beethoven/*.mxl", "haydn/**/*.mxl", "mozart/**/*.mxl"),
        "score", "classical", 0.5, (60, 150), mode_from_score=True,
    ),
    Collection(
        "essen-folksongs", ("essenFolksong/*.abc",), "abc-tunes", "folk", 1.5, (60, 130),
        exclude=("test0.abc", "test1.abc", "testd.abc", "teste.abc", "variant0.abc"),
    ),
    Collection("oneills-1850", ("oneills1850/*.abc",), "abc-tunes", "irish-folk", 1.0, (70, 130), True),
    Collection("ryans-mammoth", ("ryansMammoth/*.abc",), "abc-tunes", "irish-folk", 1.0, (70, 130), True),
    Collection("airds-airs", ("airdsAirs/*.abc",), "abc-tunes", "scottish-folk", 0.7, (60, 120), True),
    Collection("misc-folk", ("miscFolk/*.abc",), "abc-tunes", "folk", 0.3, (70, 130), True),
    Collection(
        "misc-classical",
        ("chopin/*.krn", "schumann_clara/**/*.*ml", "schumann_clara/*.*ml", "schumann_robert/**/*.*ml",
         "schumann_robert/*.*ml", "schubert/*.xml", "beach/*.musicxml", "verdi/*.mxl", "weber/*.mxl",
         "handel/**/*.mxl", "corelli/**/*.xml", "cpebach/*.mxl", "joplin/*.mxl", "luca/*.xml",
         "ciconia/*.xml", "lusitano/*.mxl", "schoenberg/**/*.mxl", "webern/*.mxl"),
        "score", "", 0.2, (60, 130), mode_from_score=True,
    ),
)

# style of the single works gathered in "misc-classical", by corpus folder
_MISC_STYLE = {
    "chopin": "romantic", "schumann_clara": "romantic", "schumann_robert": "romantic",
    "schubert": "romantic", "beach": "romantic", "verdi": "romantic", "weber": "romantic",
    "handel": "baroque", "corelli": "baroque", "cpebach": "classical", "joplin": "ragtime",
    "luca": "medieval", "ciconia": "medieval", "lusitano": "renaissance",
    "schoenberg": "modern", "webern": "modern",
}

# Essen folk song origins: by file prefix, then by country named in the O: field
_ESSEN_PREFIX_ORIGIN = {
    "han": "china", "irl": "ireland", "lot": "lorraine", "lux": "luxembourg", "altdeu": "germany",
    "boehme": "germany", "dva": "germany", "erk": "germany", "fink": "germany", "kinder": "germany",
    "zuccal": "germany", "folkhaydn": "germany",
}
_ESSEN_COUNTRY = {
    "deutschland": "germany", "jugoslawien": "yugoslavia", "ungarn": "hungary", "niederlande": "netherlands",
    "polen": "poland", "frankreich": "france", "oesterreich": "austria", "schweiz": "switzerland",
    "daenemark": "denmark", "schweden": "sweden", "tschechoslowakei": "czechoslovakia",
    "russland": "russia", "rumaenien": "romania", "italien": "italy", "england": "england",
    "belgien": "belgium", "luxemburg": "luxembourg", "china": "china", "irland": "ireland",
}

_TUNE_TYPES = {
    "reel": "reel", "double jig": "jig", "jig": "jig", "single jig": "jig", "slip jig": "slip-jig",
    "slipjig": "slip-jig", "hornpipe": "hornpipe", "clog": "hornpipe", "strathspey": "strathspey",
    "air": "air", "highland fling": "fling", "fling": "fling", "waltz": "waltz", "march": "march",
    "polka": "polka", "slide": "slide", "set dance": "set-dance", "quickstep": "march",
}

_ABC_MODES = {
    "": "major", "maj": "major", "major": "major", "ion": "major", "ionian": "major",
    "m": "minor", "min": "minor", "minor": "minor", "aeo": "minor", "aeolian": "minor",
    "dor": "dorian", "dorian": "dorian", "mix": "mixolydian", "mixolydian": "mixolydian",
    "lyd": "lydian", "lydian": "lydian", "phr": "phrygian", "phrygian": "phrygian",
    "loc": "locrian", "locrian": "locrian",
}


@dataclasses.dataclass(frozen=True)
class Piece:
    """One piece of the catalog (a file, or one tune of an ABC file).

    Attributes
    ----------
    piece_id : str
        Stable identifier, e.g. ``bach-chorales/bwv66.6`` or ``oneills-1850/626``.
    collection : str
        Name of its :class:`Collection`.
    path : str
        Corpus-relative source path.
    number : int or None
        ABC tune number (``X:``) inside ``path``; None for whole files.
    abc_text : str or None
        The tune's ABC text (``abc-tunes`` collections), so workers need not reread the file.
    title : str
        Title, when known from the catalog step.
    tags : tuple of str
        Tags known without parsing (collection, style, tune type, origin, ABC mode).
    split_key : str
        Pieces with the same key always land in the same split (folk tunes: the
        normalised title, so a tune printed in two books cannot leak across splits).
    """

    piece_id: str
    collection: str
    path: str
    number: Optional[int] = None
    abc_text: Optional[str] = None
    title: str = ""
    tags: Tuple[str, ...] = ()
    split_key: str = ""


def corpus_root() -> Path:
    """Return the folder of music21's bundled corpus.

    Raises
    ------
    ImportError
        If music21 is not installed (``pip install music21``).
    """
    try:
        import music21.corpus
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the public corpus needs music21: pip install 'music21>=9'") from error
    return Path(music21.corpus.__file__).resolve().parent


def _norm_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def _abc_field(header: str, field: str) -> str:
    match = re.search(rf"(?m)^{field}:\s*(.*)$", header)
    return match.group(1).strip() if match else ""


def abc_mode(key_field: str) -> Optional[str]:
    """Return the written mode of an ABC ``K:`` field (``"Ador"`` -> ``"dorian"``), or None.

    Parameters
    ----------
    key_field : str
        Value of the ``K:`` field, e.g. ``"G"``, ``"Em"``, ``"D Mixolydian"``.
    """
    match = re.match(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)", key_field)
    if not match:
        return None
    suffix = match.group(3).lower()
    if suffix in _ABC_MODES:
        return _ABC_MODES[suffix]
    return _ABC_MODES.get(suffix[:3])


def _tune_type(rhythm: str, title: str) -> Optional[str]:
    text = (rhythm or "").lower().strip().rstrip(".")
    for key in sorted(_TUNE_TYPES, key=len, reverse=True):
        if key in text:
            return _TUNE_TYPES[key]
    low = title.lower()
    for key in ("reel", "jig", "hornpipe", "strathspey", "waltz", "march", "polka"):
        if re.search(rf"\b{key}\b", low):
            return _TUNE_TYPES[key]
    return None


def _essen_origin(file_name: str, origin_field: str) -> str:
    stem = re.sub(r"\d+$", "", Path(file_name).stem).lower()
    if stem in _ESSEN_PREFIX_ORIGIN:
        return _ESSEN_PREFIX_ORIGIN[stem]
    low = origin_field.lower()
    for word, origin in _ESSEN_COUNTRY.items():
        if word in low:
            return origin
    return "europe"


def _split_abc(text: str) -> List[str]:
    """Split an ABC file into tunes (chunks starting at ``X:``)."""
    return [chunk for chunk in re.split(r"(?m)^(?=X:)", text) if chunk.startswith("X:")]


def _collection_files(root: Path, coll: Collection) -> List[str]:
    found = set()
    for pattern in coll.patterns:
        for path in glob.glob(str(root / pattern), recursive=True):
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if Path(rel).name not in coll.exclude:
                found.add(rel)
    # a Beethoven movement shipped as both .krn and .mxl is one piece: keep one file
    return sorted(found)


def build_catalog(collections: Optional[Sequence[str]] = None) -> List[Piece]:
    """List the pieces of the music21 corpus without parsing any score.

    Parameters
    ----------
    collections : sequence of str, optional
        Restrict to these collection names (see :data:`COLLECTIONS`); all by default.

    Returns
    -------
    list of Piece
        Sorted by ``piece_id``; duplicate tunes (same ``X:`` number in two O'Neill
        files) appear once.

    Raises
    ------
    ValueError
        If a requested collection name is unknown.
    """
    known = {c.name: c for c in COLLECTIONS}
    if collections:
        unknown = [name for name in collections if name not in known]
        if unknown:
            raise ValueError(f"unknown collection(s) {unknown}: expected some of {sorted(known)}")
        chosen = [known[name] for name in collections]
    else:
        chosen = list(COLLECTIONS)
    root = corpus_root()
    pieces: Dict[str, Piece] = {}
    for coll in chosen:
        for rel in _collection_files(root, coll):
            base_tags = [f"collection:{coll.name}"]
            style = coll.style or _MISC_STYLE.get(rel.split("/")[0], "")
            if style:
                base_tags.append(f"style:{style}")
            if coll.kind in ("score", "abc-merge"):
                stem = re.sub(r"\.(mxl|xml|krn|abc|musicxml)$", "", rel)
                pid = f"{coll.name}/{stem.split('/', 1)[1] if '/' in stem else stem}"
                pieces.setdefault(pid, Piece(pid, coll.name, rel, tags=tuple(base_tags), split_key=pid,
                                             title=Path(stem).name))
                continue
            text = (root / rel).read_text(encoding="latin-1")
            for tune in _split_abc(text):
                header = tune.split("\nK:", 1)[0]
                number_text = _abc_field(tune, "X")
                try:
                    number = int(re.match(r"\d+", number_text).group(0))
                except (AttributeError, ValueError):
                    continue
                title = _abc_field(header, "T")
                tags = list(base_tags)
                tune_type = _tune_type(_abc_field(header, "R"), title)
                if tune_type and coll.name != "essen-folksongs":
                    tags.append(f"tune:{tune_type}")
                if coll.name == "essen-folksongs":
                    tags.append(f"origin:{_essen_origin(rel, _abc_field(header, 'O'))}")
                if coll.mode_from_abc:
                    mode = abc_mode(_abc_field(tune, "K"))
                    if mode:
                        tags.append(f"mode:{mode}")
                if coll.name == "oneills-1850":
                    pid = f"{coll.name}/{number}"  # X: is O'Neill's tune number; files overlap
                else:
                    pid = f"{coll.name}/{Path(rel).stem}/{number}"
                key = _norm_title(title) or pid
                pieces.setdefault(pid, Piece(pid, coll.name, rel, number, tune, title, tuple(tags), f"title:{key}"))
    return [pieces[k] for k in sorted(pieces)]


# --------------------------------------------------------------------------- scores


@dataclasses.dataclass
class ScoreData:
    """A parsed piece as a note table (times in quarter lengths, ``ql``).

    Attributes
    ----------
    part : np.ndarray [shape=(n,), int16]
        Part index of each note.
    onset, duration : np.ndarray [shape=(n,), float64]
        Onset and duration in quarter lengths (ties merged).
    pitch : np.ndarray [shape=(n,), int16]
        MIDI pitch 0..127 as written.
    velocity : np.ndarray [shape=(n,), int16]
        MIDI velocity from the score's dynamics where music21 knows it, else 80.
    part_names : list of str
        Part or instrument names; ``part_programs`` the GM program music21 knows for
        the part's instrument (-1 when unknown).
    measures : np.ndarray [shape=(m,), float64]
        Measure start offsets of the first part.
    time_signatures : list of (offset, numerator, denominator, beat_ql)
    mode : str or None
        Written mode (``major``, ``minor``, ``dorian``...) of the first key with a mode.
    tempo_marks : list of (offset, quarter notes per minute)
    fifths : np.ndarray [shape=(n,), int16]
        Spelling of each note as a line-of-fifths position (C=0, G=1, F=-1).
    grid : BeatGrid
        Beats of the score (:func:`training.corpus_targets.beat_grid`).
    chords : np.ndarray [shape=(b,), int16]
        Chord of each beat of ``grid`` (:func:`training.corpus_targets.beat_chords`).
    keys : list of KeySegment
        Key segments (:func:`training.corpus_targets.key_segments`).
    """

    part: np.ndarray
    onset: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    part_names: List[str]
    part_programs: List[int]
    measures: np.ndarray
    time_signatures: List[Tuple[float, int, int, float]]
    mode: Optional[str]
    tempo_marks: List[Tuple[float, float]]
    title: str = ""
    fifths: Optional[np.ndarray] = None
    grid: Optional[ct.BeatGrid] = None
    chords: Optional[np.ndarray] = None
    keys: List[ct.KeySegment] = dataclasses.field(default_factory=list)

    @property
    def length(self) -> float:
        """End of the last note in quarter lengths."""
        return float(np.max(self.onset + self.duration)) if self.onset.size else 0.0

    @property
    def n_parts(self) -> int:
        """Number of parts."""
        return len(self.part_names)

    def time_signature_at(self, offset: float) -> Tuple[int, int, float]:
        """Return ``(numerator, denominator, beat_ql)`` in force at ``offset`` (4/4 if none)."""
        current = (4, 4, 1.0)
        for off, num, den, beat in self.time_signatures:
            if off <= offset + 1e-9:
                current = (num, den, beat)
        return current

    def to_npz_dict(self) -> dict:
        """Arrays and a JSON string for :func:`numpy.savez`."""
        meta = {
            "part_names": self.part_names, "part_programs": self.part_programs,
            "time_signatures": self.time_signatures, "mode": self.mode,
            "tempo_marks": self.tempo_marks, "title": self.title,
            "grid_uncertain": [list(u) for u in self.grid.uncertain], "grid_end": self.grid.end,
            "has_meter": self.grid.has_meter,
            "keys": [[k.start, k.end, k.key, k.source] for k in self.keys],
        }
        return {
            "part": self.part, "onset": self.onset, "duration": self.duration, "pitch": self.pitch,
            "velocity": self.velocity, "measures": self.measures, "meta": np.array(json.dumps(meta)),
            "fifths": self.fifths, "beat_times": self.grid.times, "beat_position": self.grid.position,
            "beat_length": self.grid.length, "chords": self.chords,
        }

    @classmethod
    def from_npz(cls, data) -> "ScoreData":
        """Inverse of :meth:`to_npz_dict`."""
        meta = json.loads(str(data["meta"]))
        return cls(
            part=data["part"], onset=data["onset"], duration=data["duration"], pitch=data["pitch"],
            velocity=data["velocity"], measures=data["measures"], part_names=list(meta["part_names"]),
            part_programs=[int(p) for p in meta["part_programs"]],
            time_signatures=[tuple(t) for t in meta["time_signatures"]], mode=meta["mode"],
            tempo_marks=[tuple(t) for t in meta["tempo_marks"]], title=meta.get("title", ""),
            fifths=data["fifths"],
            grid=ct.BeatGrid(data["beat_times"], data["beat_position"], data["beat_length"],
                             [tuple(u) for u in meta["grid_uncertain"]], float(meta["grid_end"]),
                             bool(meta["has_meter"])),
            chords=data["chords"], keys=[ct.KeySegment(float(a), float(b), int(k), str(src))
                                         for a, b, k, src in meta["keys"]],
        )


class ScoreError(Exception):
    """A piece cannot be parsed or holds no playable notes."""


def _parse_music21(piece: Piece):
    import music21
    from music21 import converter, corpus

    if piece.abc_text is not None:
        return converter.parse(piece.abc_text, format="abc")
    score = corpus.parse(piece.path, forceSource=False)
    if isinstance(score, music21.stream.Opus):
        if len(score.scores) == 1:
            score = score.scores[0]
        else:
            score = score.mergeScores()  # the voices of a piece stored as separate tunes
    return score


def extract_score(score, *, trust_written_key: bool = False) -> ScoreData:
    """Turn a music21 score into a :class:`ScoreData` (ties merged by pitch) with its score labels.

    ``trust_written_key``: whether the key the score writes (a music21 ``Key`` with a
    major/minor mode) is taken as the key label (see :func:`training.corpus_targets.key_segments`).
    """
    from music21 import harmony, key, meter, note, stream, tempo

    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    rows: List[Tuple[int, float, float, int, int, int]] = []
    names, programs = [], []
    for index, part in enumerate(parts):
        inst = part.getInstrument(returnDefault=True)
        names.append(str(part.partName or inst.instrumentName or f"part {index + 1}"))
        programs.append(int(inst.midiProgram) if inst.midiProgram is not None else -1)
        flat = part.flatten()
        open_ties: Dict[int, int] = {}
        for element in flat.notes:
            if isinstance(element, harmony.Harmony) or element.duration.isGrace:
                continue
            ql = float(element.quarterLength)
            if ql <= 0:
                continue
            offset = float(element.offset)
            members = [element] if isinstance(element, note.Note) else list(getattr(element, "notes", []))
            for member in members:
                pitch = getattr(member, "pitch", None)
                if pitch is None:
                    continue
                midi = int(round(pitch.ps))
                if not 0 <= midi <= 127:
                    continue
                tie = member.tie if member.tie is not None else element.tie
                tie_type = tie.type if tie is not None else None
                velocity = member.volume.velocity if member.volume.velocityIsRelative is False else None
                velocity = int(velocity) if velocity else 80
                if tie_type in ("stop", "continue") and midi in open_ties:
                    row = rows[open_ties[midi]]
                    rows[open_ties[midi]] = (row[0], row[1], offset + ql - row[1], row[3], row[4], row[5])
                    if tie_type == "stop":
                        del open_ties[midi]
                    continue
                alter = pitch.accidental.alter if pitch.accidental is not None else 0.0
                rows.append((index, offset, ql, midi, velocity, ct.fifths_of(pitch.step, alter)))
                if tie_type in ("start", "continue"):
                    open_ties[midi] = len(rows) - 1
                else:
                    open_ties.pop(midi, None)
    if not rows:
        raise ScoreError("no pitched notes")
    table = np.array(rows, dtype=np.float64)
    order = np.lexsort((table[:, 3], table[:, 1], table[:, 0]))
    table = table[order]
    first = parts[0]
    measure_objs = sorted(first.getElementsByClass(stream.Measure), key=lambda m: float(m.offset))
    measures = sorted({float(m.offset) for m in measure_objs}) or [0.0]
    signatures = []
    for ts in first.flatten().getElementsByClass(meter.TimeSignature):
        try:
            beat = float(ts.beatDuration.quarterLength)
        except Exception:  # odd meters music21 cannot beat-divide
            beat = 4.0 / ts.denominator
        signatures.append((float(ts.offset), int(ts.numerator), int(ts.denominator), beat))
    mode = None
    for k in score.recurse().getElementsByClass(key.Key):
        if k.mode:
            mode = str(k.mode)
            break
    marks = []
    for mark in first.flatten().getElementsByClass(tempo.MetronomeMark):
        qpm = mark.getQuarterBPM()
        if qpm:
            marks.append((float(mark.offset), float(qpm)))
    title = ""
    if score.metadata is not None and score.metadata.title:
        title = str(score.metadata.title)
    # -- score labels: beat grid, chords per beat, key segments -----------------------------
    note_end = float(np.max(table[:, 1] + table[:, 2]))
    bars = []
    for i, m in enumerate(measure_objs):
        off = float(m.offset)
        nxt = float(measure_objs[i + 1].offset) if i + 1 < len(measure_objs) else None
        length = (nxt - off) if nxt is not None else float(m.duration.quarterLength)
        bars.append((off, length, float(m.paddingLeft or 0.0)))
    if not bars:
        bars = [(0.0, note_end, 0.0)]
    grid = ct.beat_grid(bars, signatures)
    chords = ct.beat_chords(table[:, 1], table[:, 2], table[:, 5].astype(np.int64), grid.times, grid.length)
    written = []
    for ks in first.flatten().getElementsByClass(key.KeySignature):
        if isinstance(ks, key.Key) and ks.mode in ct.KEY_MODES:
            written.append((float(ks.offset), int(ks.tonic.pitchClass), str(ks.mode)))
        else:
            written.append((float(ks.offset), None, None))
    keys = ct.key_segments(written, measures, max(grid.end, note_end), table[:, 1], table[:, 2], table[:, 3],
                           trust_written=trust_written_key)
    return ScoreData(
        part=table[:, 0].astype(np.int16), onset=table[:, 1], duration=table[:, 2],
        pitch=table[:, 3].astype(np.int16), velocity=table[:, 4].astype(np.int16),
        part_names=names, part_programs=programs, measures=np.asarray(measures, dtype=np.float64),
        time_signatures=signatures, mode=mode, tempo_marks=marks, title=title,
        fifths=table[:, 5].astype(np.int16), grid=grid, chords=chords, keys=keys,
    )


_extract = extract_score  # the name benchmarks/chords.py uses


def cache_dir_default() -> str:
    """Return the score cache folder: ``$MIRZOO_CORPUS_CACHE`` or ``~/.cache/mirzoo/corpus-scores``."""
    return os.path.expanduser(os.environ.get("MIRZOO_CORPUS_CACHE", DEFAULT_CACHE_DIR))


def _cache_paths(piece: Piece, cache_dir: str) -> Tuple[Path, Path]:
    import music21

    digest = hashlib.sha1(piece.piece_id.encode("utf-8")).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", piece.piece_id)[-60:]
    folder = Path(cache_dir) / f"m21-{music21.__version__}-v{CACHE_VERSION}" / digest[:2]
    return folder / f"{slug}-{digest}.npz", folder / f"{slug}-{digest}.fail.json"


def load_score(piece: Piece, cache_dir: Optional[str] = None, *, retry_failed: bool = False) -> ScoreData:
    """Parse ``piece`` with music21 (or read it from the cache).

    Parameters
    ----------
    piece : Piece
        A catalog entry from :func:`build_catalog`.
    cache_dir : str, optional
        Cache folder; :func:`cache_dir_default` when None.
    retry_failed : bool
        Parse again a piece whose earlier failure is cached.

    Returns
    -------
    ScoreData

    Raises
    ------
    ScoreError
        If music21 cannot parse the piece or it has no pitched notes (cached as a failure).
    """
    cache_dir = cache_dir or cache_dir_default()
    data_path, fail_path = _cache_paths(piece, cache_dir)
    if data_path.exists():
        try:
            with np.load(data_path, allow_pickle=False) as data:
                return ScoreData.from_npz(data)
        except Exception as error:  # a damaged cache entry: parse again
            logger.warning("cache entry %s unreadable (%s): parsing again", data_path, error)
    if fail_path.exists() and not retry_failed:
        raise ScoreError(json.loads(fail_path.read_text())["error"])
    data_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trusted = {c.name: c.mode_from_score or c.mode_from_abc for c in COLLECTIONS}
            score = extract_score(_parse_music21(piece), trust_written_key=trusted.get(piece.collection, False))
    except Exception as error:
        message = f"{type(error).__name__}: {error}"[:500]
        tmp = fail_path.with_name(f".{fail_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"piece_id": piece.piece_id, "error": message}))
        os.replace(tmp, fail_path)
        raise ScoreError(message) from error
    tmp = data_path.with_name(f".{data_path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **score.to_npz_dict())
    os.replace(tmp, data_path)
    return score
