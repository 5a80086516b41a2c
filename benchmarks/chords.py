"""Chord-root accuracy on the Roman-numeral analyses of the music21 corpus.

    python benchmarks/chords.py [--max-pieces N] [--smooth 9] [--cache /work/data/chords]

music21 ships RomanText (``.rntxt``) analyses of 20 Bach chorales (Riemenschneider
1-20, by BWV number) and 48 Monteverdi madrigals (books 3-5).  Each analysis is paired
with its score in the corpus and parsed into a chord timeline (offset in quarter notes ->
root pitch class, music21's ``RomanNumeral.root()``).  Analysis and score are aligned by
measure number: a chord at ``m<N> b<beat>`` sits at the start of the score's full bar
``N`` (the first measure numbered ``N``, minus its pickup padding) plus the beat's
offset in the analysis's own bar, so pickups and bars the score splits in two
(``7`` + ``7a`` around a repeat sign) line up.

Every paired score is rendered from the corpus's own note table
(:func:`training.corpus_sources._extract`, ties merged, repeats not expanded) at a
fixed tempo (Bach 80, Monteverdi 120 quarter notes per minute), dry, one GM program for
all parts (piano, church organ, choir aahs or string ensemble, cycling over the pieces),
once with FluidR3_GM and once with TimGM6mb (FluidSynth at 32 kHz, resampled to 16 kHz,
peak -1 dBFS), so a quarter-note offset ``q`` is ``q * 60 / qpm`` seconds exactly.
Renders are cached under ``--cache``.

Every frame of the common grid (hop 320 at 16 kHz, frame ``t`` centred on
``t * 320 / 16000`` s, which is where ``librosa.feature.*(center=True)`` and dense-frame
both put it) that lies inside an analysed chord gets that chord's root.  Methods: the
dense-frame ``pitch_classes`` activities, ``librosa.feature.chroma_cqt`` and
``chroma_stft`` (n_fft 2048) of the same audio, and an *oracle*: the pitch classes the
synthesiser was told to play (the score's sounding notes).  Each is decoded frame by
frame with the same 48 binary templates (major, minor, diminished triads and
dominant sevenths on the 12 roots; cosine similarity, root of the best template), once
raw and once after a ``--smooth``-frame median filter along time of the chroma.  Scores:
frame-weighted root accuracy over all labelled frames and the mean of the per-piece
accuracies, and the paired difference dense-frame minus librosa with a bootstrap interval
over pieces.  The oracle is a binary pitch-class set: a passing note weighs as much as a
held chord tone and the templates tie on sets like {C, E, G, A}, so it is *not* an upper
bound (the audio chromas, where held and doubled notes are louder, beat it); it checks the
alignment, together with the oracle scored with the labels shifted by up to one quarter
note and dense-frame scored with them shifted by up to 6 frames (both must peak at zero).

Alignment.  The analyses and scores do not always agree: two analyses are of transposed
editions, one numbers a written-out repeat differently, and 19 madrigal files hold doubled
whole-bar rests that make music21 read their parts out of step (every later note of such a
part comes 4 quarter notes late per doubled rest; the corpus renders them that way).  So
the parts' measures are first put back on a common timeline (:func:`repair_timeline`),
then three alignment rules (bar number, offset, offset with repeats written out) and 12
transpositions are scored by the share of the notes that fall inside the labelled chord
(:func:`chord_tone_share`, no templates involved); the bar-number rule untransposed is
kept unless another beats it by 2 points, and pieces whose best share is under
``--min-fit`` (0.7) are left out and listed.

Training overlap: dense-frame was trained on the ``train`` split of ``--corpus``
(``metadata.csv``).  Each piece is marked with the splits its corpus clips are in, and
with any other corpus piece of its collection in the train split whose notes match its
own (:func:`note_fingerprint`: a duplicate file such as ``madrigal.3.1_old`` shares 89 %
of its interval 5-grams with ``madrigal.3.1``, unrelated pieces at most ~20 %).  Accuracies
are also reported on the pieces with no train clip and no train duplicate, and on the
frames that lie outside every train clip window of their piece.
Results: ``benchmarks/results/chords-<env>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import mirzoo  # noqa: E402,F401  (before Keras: sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported)

SR, HOP, SYNTH_SR = 16000, 320, 32000
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

#: Template chord qualities as intervals above the root.
QUALITIES = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "dom7": (0, 4, 7, 10)}

#: Fixed tempo of the renders, quarter notes per minute, by collection.
TEMPO_QPM = {"bach-chorales": 80.0, "monteverdi-madrigals": 120.0}

#: GM programs the pieces cycle through (all parts of a piece get the same one).
PROGRAM_CYCLE = (0, 19, 52, 48)  # acoustic grand piano, church organ, choir aahs, string ensemble 1
PROGRAM_NAMES = {0: "piano", 19: "church organ", 52: "choir aahs", 48: "string ensemble"}

SOUNDFONTS = ("FluidR3", "TimGM6mb")
METHODS = ("dense-frame", "chroma_cqt", "chroma_stft", "oracle")

#: Bump when the cached piece data (notes, chord segments) changes.
PIECE_VERSION = 1
#: Bump when the renders change.
RENDER_VERSION = 1
ARTICULATION = 0.9  # notes longer than 60 ms sound for 90 % of their written length


# --------------------------------------------------------------------------- templates


def chord_templates() -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """The decoding templates.

    Returns
    -------
    templates : np.ndarray [shape=(48, 12), float64]
        Binary pitch-class templates, unit L2 norm; row ``12 * q + r`` is quality ``q``
        (order of :data:`QUALITIES`) on root ``r`` (C = 0).
    roots : np.ndarray [shape=(48,), int]
    names : list of str
        ``"C:maj"``, ...
    """
    rows, roots, names = [], [], []
    for quality, intervals in QUALITIES.items():
        for root in range(12):
            t = np.zeros(12)
            t[[(root + i) % 12 for i in intervals]] = 1.0
            rows.append(t / np.linalg.norm(t))
            roots.append(root)
            names.append(f"{PITCH_NAMES[root]}:{quality}")
    return np.stack(rows), np.asarray(roots), names


def median_smooth(chroma: np.ndarray, width: int) -> np.ndarray:
    """Median filter of ``chroma [T, 12]`` along time (``width`` frames, odd; <= 1: unchanged)."""
    if width <= 1:
        return chroma
    from scipy.ndimage import median_filter

    return median_filter(np.asarray(chroma, dtype=np.float32), size=(int(width), 1), mode="nearest")


def decode_roots(chroma: np.ndarray, templates: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Root pitch class of the best template per frame (cosine similarity).

    Parameters
    ----------
    chroma : np.ndarray [shape=(T, 12)]
        Non-negative pitch-class activities (any scale).
    templates, roots : from :func:`chord_templates`

    Returns
    -------
    np.ndarray [shape=(T,), int]
        Root 0..11, or -1 for frames whose chroma is all zero (counted as errors).
    """
    c = np.asarray(chroma, dtype=np.float64)
    norm = np.linalg.norm(c, axis=1)
    scores = c @ templates.T  # cosine up to the per-frame norm, which does not change the argmax
    out = roots[np.argmax(scores, axis=1)].astype(np.int64)
    out[norm <= 1e-12] = -1
    return out


# --------------------------------------------------------------------------- labels


def frame_times_ql(n_frames: int, qpm: float, sr: int = SR, hop: int = HOP) -> np.ndarray:
    """Score offset (quarter notes) of the centre of each frame of a render at ``qpm``."""
    return np.arange(n_frames) * hop / sr * qpm / 60.0


def label_frames(segments: Sequence[Tuple[float, float, int]], times_ql: np.ndarray) -> np.ndarray:
    """Root label of each frame: the root of the segment ``[start, end)`` holding its time.

    Parameters
    ----------
    segments : sequence of (start_ql, end_ql, root)
        Chord segments, sorted, non-overlapping.
    times_ql : np.ndarray [shape=(T,)]

    Returns
    -------
    np.ndarray [shape=(T,), int]
        Root 0..11, or -1 where no segment covers the frame.
    """
    labels = np.full(times_ql.shape, -1, dtype=np.int64)
    for start, end, root in segments:
        labels[(times_ql >= start - 1e-9) & (times_ql < end - 1e-9)] = int(root)
    return labels


def bar_starts(measures: Sequence[Tuple[int, float, float, float, float]]) -> Dict[int, float]:
    """Offset of the start of each *full* bar, by measure number.

    Parameters
    ----------
    measures : sequence of (number, offset, padding_left, duration, bar_duration)
        Measures of one part in order.  A first measure shorter than its bar and with no
        padding recorded is taken as a pickup padded on the left.

    Returns
    -------
    dict
        ``{number: offset of beat 1}`` from the first measure with that number (a bar the
        score splits in two, ``7`` and ``7a``, starts at ``7``).  A pickup starts before
        its first note: ``offset - padding``.
    """
    out: Dict[int, float] = {}
    for i, (number, offset, padding, duration, bar) in enumerate(measures):
        if i == 0 and padding <= 0 and bar - duration > 1e-9:
            padding = bar - duration
        out.setdefault(int(number), float(offset) - float(padding))
    return out


def bach_score_candidates(bwv: str) -> List[str]:
    """Corpus file stems a RomanText ``BWV:`` field can name, best first.

    ``"269"`` -> ``["bwv269"]``; ``"153.1"`` -> ``["bwv153.1", "bwv153"]``;
    ``"248(2).12"`` -> ``["bwv248.12-2", "bwv248.12", "bwv248"]``; ``"41.6s"`` -> ``["bwv41.6", "bwv41"]``.
    """
    m = re.match(r"\s*(\d+)(?:\((\d+)\))?(?:\.(\d+))?", bwv)
    if not m:
        return []
    base, part, movement = m.group(1), m.group(2), m.group(3)
    out = []
    if movement and part:
        out.append(f"bwv{base}.{movement}-{part}")
    if movement:
        out.append(f"bwv{base}.{movement}")
    out.append(f"bwv{base}")
    return out


def _header(text: str, field: str) -> str:
    m = re.search(rf"(?mi)^{field}:\s*(.*)$", text)
    return m.group(1).strip() if m else ""


def pair_analyses() -> List[dict]:
    """RomanText analyses of the music21 corpus paired with their scores.

    Returns
    -------
    list of dict
        ``piece_id`` (as in the mirzoo corpus), ``collection``, ``rntxt`` and ``score``
        (corpus-relative paths), ``title``; sorted by ``piece_id``.  Analyses whose
        score is not found are returned with ``score=None``.
    """
    from training import corpus_sources as cs

    root = cs.corpus_root()
    out = []
    for path in sorted(root.glob("**/*.rntxt")):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        title = _header(text, "Title")
        if rel.startswith("bach/"):
            score = next((f"bach/{s}.mxl" for s in bach_score_candidates(_header(text, "BWV"))
                          if (root / "bach" / f"{s}.mxl").exists()), None)
            collection = "bach-chorales"
        elif rel.startswith("monteverdi/"):
            cand = rel[: -len(".rntxt")] + ".mxl"
            score = cand if (root / cand).exists() else None
            collection = "monteverdi-madrigals"
        else:
            continue
        stem = Path(score).name.rsplit(".", 1)[0] if score else Path(rel).stem
        out.append({"piece_id": f"{collection}/{stem}", "collection": collection, "rntxt": rel, "score": score,
                    "title": title})
    return sorted(out, key=lambda d: d["piece_id"])


# --------------------------------------------------------------------------- parsing


def _measure_rows(part) -> List[Tuple[int, float, float, float, float]]:
    """``(number, offset, padding_left, duration, bar_duration)`` of each measure of ``part``."""
    from music21 import stream

    rows = []
    for m in part.getElementsByClass(stream.Measure):
        try:
            bar = float(m.barDuration.quarterLength)
        except Exception:
            bar = float(m.duration.quarterLength)
        rows.append((int(m.number), float(m.offset), float(m.paddingLeft or 0.0), float(m.duration.quarterLength), bar))
    return rows


def nominal_offsets(parts: Sequence[Sequence[Tuple[float, float]]]) -> Optional[np.ndarray]:
    """Measure offsets all parts should share, from their ``(duration, bar_duration)`` per measure.

    A measure lasts the median of its parts' durations, at most its bar length (some
    madrigal files hold doubled whole-bar rests, so one part's bar lasts 8 quarter notes
    in 4/4 and every later note of that part comes late).  Pickups and bars split around
    a repeat sign, which are short in every part, keep their length.

    Returns
    -------
    np.ndarray [shape=(m,)] or None
        Offset of each measure; None when the parts do not have the same number of measures.
    """
    if not parts or len({len(p) for p in parts}) != 1:
        return None
    dur = np.array([[d for d, _ in p] for p in parts], dtype=np.float64)
    bar = np.array([b for _, b in parts[0]], dtype=np.float64)
    length = np.minimum(np.median(dur, axis=0), bar)
    return np.concatenate([[0.0], np.cumsum(length)[:-1]])


def repair_timeline(score) -> int:
    """Move every measure of every part to its :func:`nominal_offsets` place; return how many moved."""
    from music21 import stream

    parts = list(score.parts)
    measures = [list(p.getElementsByClass(stream.Measure)) for p in parts]
    rows = [[(float(m.duration.quarterLength), r[4]) for m, r in zip(ms, _measure_rows(p))] for ms, p in zip(measures, parts)]
    first = [float(ms[0].offset) if ms else 0.0 for ms in measures]
    offsets = nominal_offsets(rows)
    if offsets is None:
        return 0
    moved = 0
    for part, ms, start in zip(parts, measures, first):
        for m, off in zip(ms, offsets + start):
            if abs(float(m.offset) - off) > 1e-9:
                part.setElementOffset(m, off)
                moved += 1
        if moved:
            part.coreElementsChanged()
    return moved


def offset_map(raw: Sequence[float], fixed: Sequence[float]):
    """Map offsets of the unrepaired timeline to the repaired one (measure by measure, first part)."""
    raw, fixed = np.asarray(raw, dtype=np.float64), np.asarray(fixed, dtype=np.float64)

    def apply(q: float) -> float:
        i = max(0, int(np.searchsorted(raw, q + 1e-9)) - 1)
        return float(fixed[i] + (q - raw[i]))

    return apply


def expanded_order(durations: Sequence[float], bars: Sequence[float], repeat_end: Sequence[bool],
                   repeat_start: Sequence[bool]) -> List[int]:
    """Measure indices in playing order, repeats expanded once (no voltas).

    A repeat jumps back to the last start-repeat, or to the beginning; a pickup measure
    (shorter than its bar) at the beginning is not played again, as in a score that
    writes the repeat out.
    """
    order, start, i, done = [], 0, 0, set()
    while i < len(durations):
        if repeat_start[i]:
            start = i
        order.append(i)
        if repeat_end[i] and i not in done:
            done.add(i)
            back = start
            if back == 0 and durations[0] < bars[0] - 1e-9:
                back = 1
            order.extend(range(back, i + 1))
            start = i + 1
        i += 1
    return order


def chord_segments(chords: Sequence[Tuple[float, float, int, Sequence[int], str]], end: float) -> List[tuple]:
    """Segments ``(start, end, root, pcs, figure)`` from chord onsets ``(start, bar_end, root, pcs, figure)``.

    A chord lasts until the next one, the last until the end of its bar or ``end``.
    """
    chords = sorted(chords, key=lambda c: c[0])
    out = []
    for i, (start, bar_end, root, pcs, figure) in enumerate(chords):
        stop = chords[i + 1][0] if i + 1 < len(chords) else min(bar_end, end)
        if stop > start + 1e-9:
            out.append((float(start), float(stop), int(root), [int(p) for p in pcs], figure))
    return out


def chord_tone_share(segments: Sequence[tuple], notes: np.ndarray, transpose: int = 0, step: float = 0.125) -> Tuple[float, float]:
    """How well a chord timeline fits the notes, without templates.

    Returns
    -------
    share : float
        Of the (pitch class, time) activity of the notes inside labelled time, the part
        that belongs to the labelled chord's pitch classes (transposed by ``transpose``).
    labelled : float
        Share of the notes' activity that lies in labelled time.
    """
    if not len(notes):
        return 0.0, 0.0
    end = float(np.max(notes[:, 1] + notes[:, 2]))
    grid = np.arange(0.0, end, step) + step / 2
    active = np.zeros((grid.size, 12), dtype=bool)
    for on, dur, pitch in zip(notes[:, 1], notes[:, 2], notes[:, 3].astype(int)):
        active[int(np.ceil(on / step - 0.5)):int(np.ceil((on + dur) / step - 0.5)), pitch % 12] = True
    chord = np.zeros_like(active)
    labelled = np.zeros(grid.size, dtype=bool)
    for start, stop, _, pcs, _ in segments:
        sel = (grid >= start) & (grid < stop)
        labelled |= sel
        chord[np.ix_(sel, [(p + transpose) % 12 for p in pcs])] = True
    inside = active[labelled]
    total = active.sum()
    return (float((inside & chord[labelled]).sum() / max(inside.sum(), 1)),
            float(inside.sum() / max(total, 1)))


def analysis_alignments(rntxt_path: str, score_measures, score_end: float) -> Tuple[Dict[str, List[tuple]], dict]:
    """Chord segments of a RomanText analysis in the score's offsets, by alignment rule.

    Returns
    -------
    candidates : dict
        ``"measure"``: a chord at bar ``N``, beat offset ``x`` goes to the start of the
        score's full bar ``N`` plus ``x`` (see :func:`bar_starts`); ``"offset"``: the
        chord's offset from the start of the analysis; ``"expanded"`` (only when the
        analysis has repeat signs): the same with its repeats written out
        (:func:`expanded_order`).  Segments are ``(start, end, root, pcs, figure)``.
    info : dict
        ``chords``, ``dropped`` (chords in bars the score lacks), ``bar_mismatches``.
    """
    from music21 import bar as m21bar
    from music21 import converter, roman, stream

    analysis = converter.parse(rntxt_path, format="romantext")
    part = analysis.parts[0] if analysis.parts else analysis
    measures = list(part.getElementsByClass(stream.Measure))
    rows = _measure_rows(part)
    rn_bars = bar_starts(rows)
    score_bars = bar_starts(score_measures)
    score_len: Dict[int, float] = {}
    for number, _, _, _, bar in score_measures:
        score_len.setdefault(number, bar)
    per_measure = []
    for (number, offset, _, _, bar), m in zip(rows, measures):
        per_measure.append([(float(rn.offset), offset + float(rn.offset) - rn_bars[number], int(rn.root().pitchClass),
                             sorted(set(rn.pitchClasses)), rn.figure)
                            for rn in m.getElementsByClass(roman.RomanNumeral)])
    by_number, by_offset, dropped, mismatched = [], [], 0, set()
    for (number, offset, _, duration, bar), chords in zip(rows, per_measure):
        for local, pos, root, pcs, figure in chords:
            by_offset.append((offset + local, offset + duration, root, pcs, figure))
            if number not in score_bars:
                dropped += 1
                continue
            if abs(score_len[number] - bar) > 1e-6:
                mismatched.add(number)
            by_number.append((score_bars[number] + pos, score_bars[number] + bar, root, pcs, figure))
    out = {"measure": chord_segments(by_number, score_end), "offset": chord_segments(by_offset, score_end)}
    ends = [isinstance(m.rightBarline, m21bar.Repeat) and m.rightBarline.direction == "end" for m in measures]
    starts = [isinstance(m.leftBarline, m21bar.Repeat) and m.leftBarline.direction == "start" for m in measures]
    if any(ends):
        order = expanded_order([r[3] for r in rows], [r[4] for r in rows], ends, starts)
        expanded, t = [], 0.0
        for i in order:
            expanded += [(t + local, t + rows[i][3], root, pcs, figure) for local, _, root, pcs, figure in per_measure[i]]
            t += rows[i][3]
        out["expanded"] = chord_segments(expanded, score_end)
    n_chords = sum(len(c) for c in per_measure)
    return out, {"chords": n_chords, "dropped": dropped, "bar_mismatches": len(mismatched)}


def choose_alignment(candidates: Dict[str, List[tuple]], notes: np.ndarray, margin: float = 0.02) -> dict:
    """Pick the alignment rule and transposition whose chords fit the notes best (:func:`chord_tone_share`).

    ``measure`` without transposition wins unless another choice fits better by more
    than ``margin`` (some analyses are of a transposed edition, some of a version that
    writes repeats out or numbers its bars differently).
    """
    fits = {}
    for name, segments in candidates.items():
        for k in range(12):
            fits[(name, k)] = chord_tone_share(segments, notes, k)
    default = fits[("measure", 0)]
    best = max(fits, key=lambda key: fits[key][0])
    choice = ("measure", 0) if fits[best][0] <= default[0] + margin else best
    return {"alignment": choice[0], "transpose": choice[1], "fit": fits[choice][0], "labelled_share": fits[choice][1],
            "fit_measure_untransposed": default[0]}


def load_piece(pair: dict, cache: Path) -> dict:
    """Parse a paired score and analysis (cached).

    Returns
    -------
    dict
        ``notes`` [n, 5] (part, onset, duration, pitch, velocity; repaired timeline),
        ``segments`` (start, end, root, pcs, figure; aligned and transposed to the score),
        ``alignment`` (see :func:`choose_alignment`), ``info``, ``raw_measures`` and
        ``measures`` (first part's measure offsets before / after :func:`repair_timeline`),
        ``raw_notes`` (the note table as the corpus extracts it, unrepaired).
    """
    import music21

    from training import corpus_sources as cs

    slug = pair["piece_id"].replace("/", "__")
    path = cache / "pieces" / f"m21-{music21.__version__}-v{PIECE_VERSION}" / f"{slug}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"])) | {"notes": z["notes"], "raw_notes": z["raw_notes"]}

    def table(data):
        return np.stack([data.part, data.onset, data.duration, data.pitch, data.velocity], axis=1).astype(np.float64)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        piece = cs.Piece(pair["piece_id"], pair["collection"], pair["score"])
        score = cs._parse_music21(piece)
        raw = cs._extract(score)
        raw_measures = [r[1] for r in _measure_rows(score.parts[0])]
        moved = repair_timeline(score)
        data = cs._extract(score) if moved else raw
        measures = _measure_rows(score.parts[0])
        candidates, info = analysis_alignments(str(cs.corpus_root() / pair["rntxt"]), measures, data.length)
    notes = table(data)
    choice = choose_alignment(candidates, notes)
    segments = [(a, b, (r + choice["transpose"]) % 12, [(p + choice["transpose"]) % 12 for p in pcs], fig)
                for a, b, r, pcs, fig in candidates[choice["alignment"]]]
    meta = {"segments": segments, "alignment": choice, "info": info | {"moved_measures": moved},
            "score_title": data.title, "n_parts": data.n_parts, "length_ql": data.length,
            "raw_measures": raw_measures, "measures": [r[1] for r in measures]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, notes=notes, raw_notes=table(raw), meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)
    return meta | {"notes": notes, "raw_notes": table(raw)}


# --------------------------------------------------------------------------- rendering


def note_events(notes: np.ndarray, qpm: float, program: int):
    """:class:`training.corpus_render.NoteEvents` of a note table at ``qpm``, one program for all parts."""
    from training import corpus_render as cr

    spq = 60.0 / qpm
    part = notes[:, 0].astype(int)
    on = notes[:, 1] * spq
    held = notes[:, 2] * spq
    off = on + np.where(held > 0.06, np.maximum(0.05, held * ARTICULATION), held)
    channels = np.array([c for c in range(16) if c != 9])
    events = cr.NoteEvents(onset=on, offset=off, pitch=notes[:, 3].astype(int), velocity=notes[:, 4].astype(int),
                           channel=channels[part % channels.size], program=np.full(part.size, int(program)))
    return cr.quantize_events(events, SYNTH_SR)


def render(events, seconds: float, soundfont: str) -> np.ndarray:
    """Render with FluidSynth at :data:`SYNTH_SR`, resample to 16 kHz, peak -1 dBFS."""
    import soxr

    from training import corpus_render as cr

    _, sf_path = cr.resolve_soundfont(soundfont)
    renderer = cr.FluidRenderer(sf_path, SYNTH_SR)
    y = renderer.render(events, int(round(seconds * SYNTH_SR)), cr.Effects())
    renderer.close()
    y = soxr.resample(y, SYNTH_SR, SR, quality="HQ").astype(np.float32)
    n = int(round(seconds * SR))
    y = np.pad(y, (0, max(0, n - y.size)))[:n]
    return np.clip(cr.normalize(y, 0.0), -1.0, 1.0)


def cached_render(cache: Path, piece_id: str, notes: np.ndarray, qpm: float, program: int, soundfont: str,
                  seconds: float) -> np.ndarray:
    import soundfile as sf

    slug = piece_id.replace("/", "__")
    path = cache / "audio" / f"v{RENDER_VERSION}" / soundfont / f"{slug}__p{program}__q{qpm:g}.flac"
    if path.exists():
        y, sr = sf.read(path, dtype="float32")
        if sr == SR:
            return y
    y = render(note_events(notes, qpm, program), seconds, soundfont)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.flac")
    sf.write(tmp, y, SR, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)
    return y


# --------------------------------------------------------------------------- training overlap


def corpus_clips(corpus: Path) -> Dict[str, List[dict]]:
    """Clips of the training corpus by piece id (empty when there is no metadata.csv)."""
    out: Dict[str, List[dict]] = {}
    meta = corpus / "metadata.csv"
    if not meta.exists():
        return out
    with open(meta, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["piece_id"], []).append(r)
    return out


def train_windows(clips: Sequence[dict]) -> List[Tuple[float, float]]:
    """Score spans ``[start_ql, end_ql)`` of a piece's train clips (``start_ql + duration * qpm / 60``)."""
    out = []
    for r in clips:
        if r["split"] == "train":
            start = float(r["start_ql"])
            out.append((start, start + float(r["duration"]) * float(r["qpm"]) / 60.0))
    return out


def note_fingerprint(notes: np.ndarray, n: int = 5) -> set:
    """Timing- and transposition-free fingerprint of a note table ``[k, >=4]`` (part, onset, duration, pitch).

    The set of ``(part-free) n``-grams of successive melodic intervals of each part (its
    notes in onset order, the highest first at equal onsets), so a copy of a piece is
    found even when one copy's parts drift apart in time (doubled rests) or it is
    written in another key.
    """
    out = set()
    notes = np.asarray(notes, dtype=np.float64)
    for part in np.unique(notes[:, 0]) if len(notes) else []:
        sel = notes[notes[:, 0] == part]
        pitch = sel[np.lexsort((-sel[:, 3], sel[:, 1])), 3].astype(int)
        steps = np.diff(pitch).tolist()
        out.update(tuple(steps[i:i + n]) for i in range(len(steps) - n + 1))
    return out


def note_overlap(a: set, b: set) -> float:
    """Share of the smaller fingerprint found in the other."""
    if not a or not b:
        return 0.0
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return len(small & big) / len(small)


def train_duplicates(pieces: Sequence[dict], clips: Dict[str, List[dict]], threshold: float = 0.6) -> Dict[str, List[str]]:
    """Other train pieces of the same collection whose notes match a benchmark piece's."""
    from training import corpus_sources as cs

    catalog = {p.piece_id: p for p in cs.build_catalog(sorted({p["collection"] for p in pieces}))}
    train_ids = sorted(pid for pid, rows in clips.items() if any(r["split"] == "train" for r in rows) and pid in catalog)
    prints = {}
    for pid in train_ids:
        try:
            score = cs.load_score(catalog[pid])
        except cs.ScoreError:
            continue
        prints[pid] = note_fingerprint(np.stack([score.part, score.onset, score.duration, score.pitch], axis=1)
                                       .astype(np.float64))
    out = {}
    for p in pieces:
        fp = note_fingerprint(p["raw_notes"])  # as the corpus extracted it, like the train pieces
        out[p["piece_id"]] = [pid for pid, other in prints.items()
                              if pid != p["piece_id"] and catalog[pid].collection == p["collection"]
                              and 0.5 < len(other) / max(len(fp), 1) < 2.0 and note_overlap(fp, other) >= threshold]
    return out


# --------------------------------------------------------------------------- scoring


def accuracy(pred: np.ndarray, labels: np.ndarray, mask: Optional[np.ndarray] = None) -> Tuple[int, int]:
    """``(correct, total)`` over the labelled frames (``labels >= 0``) inside ``mask``."""
    keep = labels >= 0
    if mask is not None:
        keep &= mask
    return int((pred[keep] == labels[keep]).sum()), int(keep.sum())


def summarise(per_piece: List[dict], key: str, subset=None) -> dict:
    """Frame-weighted and per-piece-mean accuracy of ``key`` (``"<sf>/<method>/<variant>"``)."""
    rows = [p for p in per_piece if (subset is None or subset(p)) and p["scores"][key]["all"][1] > 0]
    c = sum(p["scores"][key]["all"][0] for p in rows)
    n = sum(p["scores"][key]["all"][1] for p in rows)
    unseen_c = sum(p["scores"][key]["unseen"][0] for p in per_piece if p["scores"][key]["unseen"][1])
    unseen_n = sum(p["scores"][key]["unseen"][1] for p in per_piece)
    return {
        "frame_acc": c / n if n else None,
        "piece_mean_acc": float(np.mean([p["scores"][key]["all"][0] / p["scores"][key]["all"][1] for p in rows])) if rows else None,
        "pieces": len(rows), "frames": n, "minutes": n * HOP / SR / 60.0,
        **({"unseen_frame_acc": unseen_c / unseen_n if unseen_n else None, "unseen_frames": unseen_n} if subset is None else {}),
    }


def paired_difference(per_piece: List[dict], key_a: str, key_b: str, subset=None, n_boot: int = 2000) -> dict:
    """Frame-weighted accuracy of ``key_a`` minus ``key_b`` with a 95 % bootstrap interval over pieces."""
    rows = [p for p in per_piece if (subset is None or subset(p)) and p["scores"][key_a]["all"][1] > 0]
    if not rows:
        return {"diff": None, "ci95": None, "a_wins": 0, "pieces": 0}
    ca = np.array([p["scores"][key_a]["all"][0] for p in rows], dtype=np.float64)
    cb = np.array([p["scores"][key_b]["all"][0] for p in rows], dtype=np.float64)
    n = np.array([p["scores"][key_a]["all"][1] for p in rows], dtype=np.float64)
    idx = np.random.default_rng(0).integers(0, len(rows), size=(n_boot, len(rows)))
    boot = (ca[idx].sum(1) - cb[idx].sum(1)) / n[idx].sum(1)
    return {"diff": float((ca.sum() - cb.sum()) / n.sum()), "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "a_wins": int((ca / n > cb / n).sum()), "pieces": len(rows)}


def fmt(x: Optional[float]) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="/work/data/corpus", help="training corpus (its metadata.csv gives the splits)")
    parser.add_argument("--cache", default="/work/data/chords", help="cache of parsed pieces and renders")
    parser.add_argument("--max-pieces", type=int, default=0, help="at most this many pieces, alternating collections (0: all)")
    parser.add_argument("--smooth", type=int, default=9, help="median filter width in frames for the smoothed variant")
    parser.add_argument("--soundfonts", nargs="+", default=list(SOUNDFONTS), choices=SOUNDFONTS)
    parser.add_argument("--min-fit", type=float, default=0.7,
                        help="leave out pieces whose best alignment puts less than this share of the notes in the chords")
    parser.add_argument("--record", action="store_true",
                        help="write the accuracies into dense-frame's manifest entry (both copies)")
    args = parser.parse_args(argv)
    import keras
    import librosa

    import mirzoo

    t0 = time.time()
    cache = Path(args.cache)
    pairs = pair_analyses()
    unpaired = [p["rntxt"] for p in pairs if p["score"] is None]
    pairs = [p for p in pairs if p["score"] is not None]
    for i, p in enumerate(pairs):  # fixed before any subsetting, so a piece keeps its program
        p["program"] = PROGRAM_CYCLE[i % len(PROGRAM_CYCLE)]
    if args.max_pieces:
        by_coll = [[p for p in pairs if p["collection"] == c] for c in TEMPO_QPM]
        inter = [g[i] for i in range(max(map(len, by_coll))) for g in by_coll if i < len(g)]
        pairs = sorted(inter[: args.max_pieces], key=lambda d: d["piece_id"])
    print(f"{len(pairs)} analyses paired with scores ({len(unpaired)} unpaired)", flush=True)

    templates, roots, _ = chord_templates()
    clips = corpus_clips(Path(args.corpus))
    pieces, failures = [], []
    for p in pairs:
        try:
            pieces.append(p | load_piece(p, cache))
        except Exception as error:  # an analysis music21 cannot read
            failures.append({"piece_id": p["piece_id"], "error": f"{type(error).__name__}: {error}"[:300]})
            print(f"  skip {p['piece_id']}: {failures[-1]['error']}", flush=True)
    excluded = [{"piece_id": p["piece_id"], "alignment": p["alignment"]} for p in pieces if p["alignment"]["fit"] < args.min_fit]
    pieces = [p for p in pieces if p["alignment"]["fit"] >= args.min_fit]
    for e in excluded:
        print(f"  leave out {e['piece_id']}: chord-tone share {e['alignment']['fit']:.2f} < {args.min_fit}", flush=True)
    print(f"parsed {len(pieces)} pieces ({time.time() - t0:.0f} s)", flush=True)
    dups = train_duplicates(pieces, clips)

    model = mirzoo.load("dense-frame")
    per_piece = []
    shift_hits = {s: [0, 0] for s in (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)}
    frame_shifts = (-6, -3, -1, 0, 1, 3, 6)  # audio check: dense-frame (raw) against labels moved by whole frames
    frame_hits = {sf: {k: [0, 0] for k in frame_shifts} for sf in args.soundfonts}
    for p in pieces:
        pid, qpm = p["piece_id"], TEMPO_QPM[p["collection"]]
        segments = [(s[0], s[1], int(s[2])) for s in p["segments"]]
        seconds = p["length_ql"] * 60.0 / qpm + 1.0
        n_frames = 1 + int(round(seconds * SR)) // HOP
        times = frame_times_ql(n_frames, qpm)
        labels = label_frames(segments, times)
        rows = clips.get(pid, [])
        to_fixed = offset_map(p["raw_measures"], p["measures"])  # train clips were cut from the unrepaired timeline
        windows = [(to_fixed(a), to_fixed(b)) for a, b in train_windows(rows)]
        seen = np.zeros(n_frames, dtype=bool)
        for a, b in windows:
            seen |= (times >= a) & (times < b)
        if dups[pid]:
            seen[:] = True
        events = note_events(p["notes"], qpm, p["program"])
        from training import corpus_render as cr

        sounding = cr.frame_targets(events, int(round(seconds * SR)), SR, HOP)["chroma"].astype(np.float32)
        record = {
            "piece_id": pid, "title": p["title"], "collection": p["collection"], "rntxt": p["rntxt"], "score": p["score"],
            "program": p["program"], "qpm": qpm, "seconds": round(seconds, 3), "labelled_frames": int((labels >= 0).sum()),
            "chords": p["info"]["chords"], "dropped_chords": p["info"]["dropped"],
            "bar_mismatches": p["info"]["bar_mismatches"], "repaired_measures": p["info"]["moved_measures"],
            "alignment": p["alignment"],
            "corpus_splits": sorted({r["split"] for r in rows}), "train_clips": len(windows),
            "train_duplicates": dups[pid], "in_train": bool(windows or dups[pid]),
            "seen_labelled_frames": int((seen & (labels >= 0)).sum()), "scores": {},
        }
        for shift in shift_hits:
            c, n = accuracy(decode_roots(sounding, templates, roots), label_frames(segments, times + shift))
            shift_hits[shift][0] += c
            shift_hits[shift][1] += n
        for sf_name in args.soundfonts:
            y = cached_render(cache, pid, p["notes"], qpm, p["program"], sf_name, seconds)
            feats = {
                "dense-frame": model.predict(y, SR, pool=None),
                "chroma_cqt": librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=HOP, tuning=0.0).T,
                "chroma_stft": librosa.feature.chroma_stft(y=y, sr=SR, n_fft=2048, hop_length=HOP, tuning=0.0).T,
                "oracle": sounding,
            }
            for method, f in feats.items():
                f = np.asarray(f, dtype=np.float32)[:n_frames]
                f = np.pad(f, ((0, n_frames - f.shape[0]), (0, 0)))
                if method == "dense-frame":
                    pred = decode_roots(f, templates, roots)
                    for k in frame_shifts:
                        c, n = accuracy(pred, label_frames(segments, times + k * HOP / SR * qpm / 60.0))
                        frame_hits[sf_name][k][0] += c
                        frame_hits[sf_name][k][1] += n
                for variant, g in (("raw", f), ("smoothed", median_smooth(f, args.smooth))):
                    pred = decode_roots(g, templates, roots)
                    record["scores"][f"{sf_name}/{method}/{variant}"] = {
                        "all": accuracy(pred, labels), "unseen": accuracy(pred, labels, ~seen)}
        per_piece.append(record)
        acc = {m: record["scores"][f"{args.soundfonts[0]}/{m}/smoothed"]["all"] for m in METHODS}
        print(f"  {pid:38s} {record['seconds']:6.1f}s  " + "  ".join(
            f"{m} {c / max(n, 1):.2f}" for m, (c, n) in acc.items()) + ("  [train]" if record["in_train"] else ""), flush=True)

    summary = {}
    groups = {
        "all": None,
        "not_in_train": lambda r: not r["in_train"],
        "in_train": lambda r: r["in_train"],
        "bach-chorales": lambda r: r["collection"] == "bach-chorales",
        "monteverdi-madrigals": lambda r: r["collection"] == "monteverdi-madrigals",
    }
    for prog in PROGRAM_CYCLE:
        groups[f"program:{PROGRAM_NAMES[prog]}"] = lambda r, prog=prog: r["program"] == prog
    for sf_name in args.soundfonts:
        for method in METHODS:
            for variant in ("raw", "smoothed"):
                key = f"{sf_name}/{method}/{variant}"
                summary[key] = {g: summarise(per_piece, key, f) for g, f in groups.items()}
    paired = {}
    for sf_name in args.soundfonts:
        for other in ("chroma_cqt", "chroma_stft"):
            for g in ("all", "not_in_train"):
                paired[f"{sf_name}/dense-frame-vs-{other}/smoothed/{g}"] = paired_difference(
                    per_piece, f"{sf_name}/dense-frame/smoothed", f"{sf_name}/{other}/smoothed", groups[g])
    env = f"{sys.platform}-{platform.machine()}-{os.cpu_count()}cpu-py{sys.version_info.major}.{sys.version_info.minor}-{keras.backend.backend()}"
    total_minutes = sum(r["seconds"] for r in per_piece) / 60.0
    results = {
        "env": env, "pretrained": model.pretrained, "seconds": round(time.time() - t0, 1),
        "settings": {"sr": SR, "hop": HOP, "synth_sr": SYNTH_SR, "tempo_qpm": TEMPO_QPM, "smooth_frames": args.smooth,
                     "programs": {str(k): v for k, v in PROGRAM_NAMES.items()}, "articulation": ARTICULATION,
                     "templates": {k: list(v) for k, v in QUALITIES.items()}, "max_pieces": args.max_pieces,
                     "corpus": args.corpus, "min_fit": args.min_fit},
        "pieces": len(per_piece), "audio_minutes_per_soundfont": round(total_minutes, 2),
        "labelled_minutes": round(sum(r["labelled_frames"] for r in per_piece) * HOP / SR / 60.0, 2),
        "pieces_in_train": sum(r["in_train"] for r in per_piece),
        "alignment_check": {
            "oracle_frame_acc_by_label_shift_ql": {str(s): c / n if n else None for s, (c, n) in shift_hits.items()},
            "dense_frame_raw_acc_by_label_shift_frames": {sf: {str(k): c / n if n else None for k, (c, n) in h.items()}
                                                          for sf, h in frame_hits.items()}},
        "pieces_with_repaired_timeline": sum(r["repaired_measures"] > 0 for r in per_piece),
        "unpaired_analyses": unpaired, "failures": failures, "excluded": excluded, "summary": summary, "paired": paired,
        "per_piece": per_piece,
    }
    md = markdown(results, args.soundfonts)
    print()
    print(md)
    out = HERE / "results" / f"chords-{env}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(md)
    print(f"wrote {out} and .md ({time.time() - t0:.0f} s)")
    if args.record:
        record_metrics(results)
        print("recorded chord_root_accuracy in dense-frame's manifest entry")
    return 0


def record_metrics(results: dict) -> None:
    """dense-frame's manifest entry gets the smoothed frame-weighted root accuracies of every method."""
    from _record import record

    s = results["summary"]
    figures = {}
    for sf_name in ("FluidR3", "TimGM6mb"):
        for method in METHODS:
            key = f"{sf_name}/{method}/smoothed"
            if key in s:
                figures[f"{sf_name.lower()}_{method.replace('-', '_')}"] = round(s[key]["all"]["frame_acc"], 4)
    figures["n_pieces"] = results["pieces"]
    figures["n_labelled_minutes"] = results["labelled_minutes"]
    figures["how"] = ("benchmarks/chords.py: music21 RomanText chorales/madrigals rendered per soundfont; frame-wise "
                      "chord root from 48 major/minor/dim/dom7 templates on each method's chroma (9-frame median), "
                      "frame-weighted accuracy")
    record("dense-frame", "chord_root_accuracy", figures)


def markdown(results: dict, soundfonts: Sequence[str]) -> str:
    s = results["summary"]
    n_not = sum(not r["in_train"] for r in results["per_piece"])
    lines = [
        f"# Chord-root accuracy, music21 RomanText analyses ({results['env']})",
        "",
        f"{results['pieces']} pieces ({results['pieces_in_train']} with clips or a duplicate in the dense-frame train split), "
        f"{results['audio_minutes_per_soundfont']:.1f} min of audio per soundfont, "
        f"{results['labelled_minutes']:.1f} min with a chord label. Frame-weighted root accuracy "
        f"(per-piece mean in brackets); `smoothed` = {results['settings']['smooth_frames']}-frame median filter "
        "on the chroma before template decoding.",
        "",
        "| soundfont | method | raw | smoothed | smoothed, not-in-train pieces | smoothed, frames outside train clips |",
        "|---|---|---|---|---|---|",
    ]
    for sf_name in soundfonts:
        for method in METHODS:
            raw, sm = s[f"{sf_name}/{method}/raw"]["all"], s[f"{sf_name}/{method}/smoothed"]["all"]
            nt = s[f"{sf_name}/{method}/smoothed"]["not_in_train"]
            lines.append(
                f"| {sf_name} | {method} | {fmt(raw['frame_acc'])} ({fmt(raw['piece_mean_acc'])}) | "
                f"{fmt(sm['frame_acc'])} ({fmt(sm['piece_mean_acc'])}) | "
                f"{fmt(nt['frame_acc'])} ({n_not} pieces, {nt['minutes']:.1f} min) | "
                f"{fmt(sm['unseen_frame_acc'])} ({sm['unseen_frames'] * HOP / SR / 60:.1f} min) |")
    lines += ["", "dense-frame minus librosa (smoothed, frame-weighted accuracy points; 95 % bootstrap interval over "
              "pieces; pieces where dense-frame is better):", "",
              "| soundfont | vs | all pieces | not-in-train pieces |", "|---|---|---|---|"]
    for sf_name in soundfonts:
        for other in ("chroma_cqt", "chroma_stft"):
            cells = []
            for g in ("all", "not_in_train"):
                d = results["paired"][f"{sf_name}/dense-frame-vs-{other}/smoothed/{g}"]
                cells.append("-" if d["diff"] is None else
                             f"{100 * d['diff']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}], "
                             f"{d['a_wins']}/{d['pieces']}")
            lines.append(f"| {sf_name} | {other} | {cells[0]} | {cells[1]} |")
    lines += ["", "By collection (smoothed, frame-weighted):", "",
              "| soundfont | method | bach-chorales | monteverdi-madrigals |", "|---|---|---|---|"]
    for sf_name in soundfonts:
        for method in METHODS:
            g = s[f"{sf_name}/{method}/smoothed"]
            lines.append(f"| {sf_name} | {method} | {fmt(g['bach-chorales']['frame_acc'])} ({g['bach-chorales']['pieces']}) | "
                         f"{fmt(g['monteverdi-madrigals']['frame_acc'])} ({g['monteverdi-madrigals']['pieces']}) |")
    names = [PROGRAM_NAMES[p] for p in PROGRAM_CYCLE]
    lines += ["", "By GM program (smoothed, frame-weighted; pieces):", "",
              "| soundfont | method | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for sf_name in soundfonts:
        for method in METHODS:
            g = s[f"{sf_name}/{method}/smoothed"]
            lines.append(f"| {sf_name} | {method} | " + " | ".join(
                f"{fmt(g['program:' + n]['frame_acc'])} ({g['program:' + n]['pieces']})" for n in names) + " |")
    shift = results["alignment_check"]["oracle_frame_acc_by_label_shift_ql"]
    per = results["per_piece"]
    moved = [r["piece_id"].split("/")[1] for r in per if r["repaired_measures"]]
    realigned = [f"{r['piece_id'].split('/')[1]} ({r['alignment']['alignment']}, {r['alignment']['transpose']:+d} st)"
                 for r in per if r["alignment"]["alignment"] != "measure" or r["alignment"]["transpose"]]
    lines += ["", "Alignment check, oracle accuracy (raw) with the labels shifted by x quarter notes: "
              + ", ".join(f"{k}: {fmt(v)}" for k, v in shift.items()) + ".",
              "Audio alignment check, dense-frame accuracy (raw) with the labels shifted by x frames of 20 ms: "
              + "; ".join(f"{sf}: " + ", ".join(f"{k}: {fmt(v)}" for k, v in h.items())
                          for sf, h in results["alignment_check"]["dense_frame_raw_acc_by_label_shift_frames"].items()) + ".",
              f"Chord-tone share of the chosen alignments: min {min(r['alignment']['fit'] for r in per):.2f}, "
              f"median {np.median([r['alignment']['fit'] for r in per]):.2f}.",
              f"Analyses not aligned by bar number or transposed: {', '.join(realigned) or 'none'}.",
              f"Left out (chord-tone share < {results['settings']['min_fit']}): "
              + (", ".join(f"{e['piece_id']} ({e['alignment']['fit']:.2f})" for e in results["excluded"]) or "none") + ".",
              f"Scores whose parts music21 reads out of step (timeline repaired, {len(moved)}): {', '.join(moved) or 'none'}.",
              ""]
    lines += ["| piece | split(s) in corpus | train dup | min | oracle | dense-frame | chroma_cqt | chroma_stft |",
              "|---|---|---|---|---|---|---|---|"]
    sf0 = soundfonts[0]
    for r in per:
        acc = {m: r["scores"][f"{sf0}/{m}/smoothed"]["all"] for m in METHODS}
        lines.append(f"| {r['piece_id'].split('/')[1]} | {','.join(r['corpus_splits']) or '-'} | "
                     f"{','.join(d.split('/')[1] for d in r['train_duplicates']) or '-'} | {r['seconds'] / 60:.1f} | "
                     + " | ".join(fmt(acc[m][0] / max(acc[m][1], 1)) for m in ("oracle", "dense-frame", "chroma_cqt", "chroma_stft"))
                     + " |")
    lines.append(f"\n(per-piece table: {sf0}, smoothed)\n")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
