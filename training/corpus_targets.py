"""Musical targets of the public corpus, derived from the score: beats, downbeats, meter, tempo, key, chords.

Two levels:

* score level (times in quarter lengths, ``ql``), computed once per piece when it is parsed
  and cached with its note table (:mod:`training.corpus_sources`): the beat grid
  (:func:`beat_grid`), key segments (:func:`key_segments`, written key or music21's
  Krumhansl-Schmuckler analysis over windows of measures) and one chord per beat
  (:func:`beat_chords`, music21's root and chord-type naming of the notes sounding on the beat);
* clip level (times in seconds and frames), computed when a clip is rendered
  (:func:`clip_targets`): the score-level labels mapped through the clip's tempo map,
  transposition and time stretch onto the frame grid of the corpus.

Conventions
-----------
* Beat: music21's ``TimeSignature.beatDuration``: the denominator note in simple meters
  (2/4, 3/4, 4/4: quarter; 2/2, 3/2: half), the dotted note in compound meters (6/8, 9/8,
  12/8: dotted quarter; 6/4: dotted half; 3/8: one dotted-quarter beat per bar).
  Tempo in BPM counts these beats.
* Key: 24 classes ``tonic + 12 * minor`` named ``"A minor"`` (:data:`KEYS`); the JAMS value is
  ``"A:minor"``.
* Chords: ``root:quality`` in mir_eval syntax (``"G:maj"``, ``"D:7"``), qualities
  :data:`CHORD_QUALITIES`, plus ``"N"`` (no note sounds) and, in annotations, ``"X"`` for a
  masked beat (notes sound, but they do not name a chord of the vocabulary).
* Masks: a label that cannot be determined is ``-1`` in the frame arrays (``NaN`` for the
  tempo), never a guess.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Version of the target definitions (stored in every clip's ``.npz`` as ``targets_version``).
TARGETS_VERSION = 1

#: Pitch-class names used in labels (mir_eval and JAMS accept them).
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEY_MODES = ("major", "minor")
#: Key classes: index ``tonic_pc + 12 * (mode == "minor")``.
KEYS = tuple(f"{name} {mode}" for mode in KEY_MODES for name in PITCH_NAMES)
#: Where a key label comes from (``key_source`` frame values).
KEY_SOURCES = ("none", "written", "analysis")
#: Chord qualities (mir_eval shorthands).
CHORD_QUALITIES = ("maj", "min", "dim", "aug", "7", "maj7", "min7", "hdim7", "dim7")
#: Chord classes: index ``root_pc * len(CHORD_QUALITIES) + quality``, then ``"N"``.
CHORDS = tuple(f"{name}:{q}" for name in PITCH_NAMES for q in CHORD_QUALITIES) + ("N",)
NO_CHORD = len(CHORDS) - 1
#: Meter classes (time signatures); others are masked.
METERS = ("2/2", "2/4", "3/4", "4/4", "5/4", "6/4", "3/2", "4/2", "3/8", "6/8", "9/8", "12/8")
MASK = -1

# music21 chord type names (Chord.commonName) -> quality
_COMMON_NAMES = {
    "major triad": "maj", "minor triad": "min", "diminished triad": "dim", "augmented triad": "aug",
    "dominant seventh chord": "7", "incomplete dominant-seventh chord": "7", "major seventh chord": "maj7",
    "minor seventh chord": "min7", "half-diminished seventh chord": "hdim7", "diminished seventh chord": "dim7",
}

# key analysis: windows of measures and the rule that masks a window
KEY_WINDOW_MEASURES = 8
KEY_CONTEXT_MEASURES = 4
KEY_MIN_QL = 6.0          # less music than this in the window and its context: masked
KEY_MIN_PITCH_CLASSES = 5  # fewer distinct pitch classes: masked
KEY_MIN_CORRELATION = 0.6  # music21's Krumhansl-Schmuckler correlation of the best key
KEY_MIN_MARGIN = 0.02      # best minus second-best correlation

_EPS = 1e-6


# --------------------------------------------------------------------------- spelling


def fifths_of(step: str, alter: float) -> int:
    """Line-of-fifths position of a spelled pitch (C=0, G=1, F=-1, F#=6, Bb=-2)."""
    base = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}[step.upper()]
    return base + 7 * int(round(alter))


def name_of_fifths(fifths: int) -> str:
    """music21 pitch name of a line-of-fifths position (6 -> ``"F#"``, -2 -> ``"B-"``)."""
    steps = "FCGDAEB"
    index = int(fifths) + 1
    alter = index // 7
    return steps[index % 7] + ("#" * alter if alter > 0 else "-" * (-alter))


def pc_of_fifths(fifths: int) -> int:
    """Pitch class of a line-of-fifths position."""
    return (7 * int(fifths)) % 12


# --------------------------------------------------------------------------- beat grid


@dataclasses.dataclass
class BeatGrid:
    """Beats of a score (quarter lengths).

    Attributes
    ----------
    times : np.ndarray [shape=(n,), float64]
        Beat onsets.
    position : np.ndarray [shape=(n,), int16]
        1-based position of the beat in its bar (1 = downbeat).
    length : np.ndarray [shape=(n,), float64]
        Beat length (the time signature's beat in force).
    uncertain : list of (start, end)
        Spans whose measures do not fit their time signature (no beats there: masked).
    end : float
        End of the last measure.
    has_meter : bool
        False when the score declares no time signature (every beat target masked).
    """

    times: np.ndarray
    position: np.ndarray
    length: np.ndarray
    uncertain: List[Tuple[float, float]]
    end: float
    has_meter: bool


def _signature_at(signatures: Sequence[Tuple[float, int, int, float]], offset: float):
    current = None  # before the first time signature the meter is unknown
    for sig in signatures:
        if sig[0] <= offset + _EPS:
            current = sig
    return current


def beat_grid(measures: Sequence[Tuple[float, float, float]],
              signatures: Sequence[Tuple[float, int, int, float]]) -> BeatGrid:
    """Beat grid of a score from its measures and time signatures.

    Parameters
    ----------
    measures : sequence of (offset, length, padding_left)
        Measures of the first part in order (ql); ``length`` is the measure's actual
        length, ``padding_left`` music21's anacrusis padding (0 when none).
    signatures : sequence of (offset, numerator, denominator, beat_ql)

    Notes
    -----
    A measure as long as its bar has beats at ``offset + k * beat`` and a downbeat at its
    start.  A short measure is a pickup (first measure, or music21 padding: beats counted
    back from its end, no downbeat), the last measure (counted from its start), or one
    half of a bar split in two measures (as a repeat sign splits it; the halves must add up
    to a bar).  Any other measure that does not fit its bar is *uncertain*: it gets no
    beats and its span is masked.
    """
    measures = [(float(o), float(a), float(p)) for o, a, p in measures if a > _EPS]
    end = max((o + a for o, a, _ in measures), default=0.0)
    if not signatures or not measures:
        start = measures[0][0] if measures else 0.0
        return BeatGrid(np.zeros(0), np.zeros(0, np.int16), np.zeros(0), [(start, end)], end, False)
    times: List[float] = []
    position: List[int] = []
    length: List[float] = []
    uncertain: List[Tuple[float, float]] = []
    carry: Optional[float] = None  # bar position reached by the first half of a split bar
    n = len(measures)
    for i, (off, actual, padding) in enumerate(measures):
        sig = _signature_at(signatures, off)
        if sig is None:
            uncertain.append((off, off + actual))
            carry = None
            continue
        _, num, den, beat = sig
        bar = num * 4.0 / den
        count = bar / beat if beat > 0 else 0.0
        phase: Optional[float] = None
        if count >= 1 and abs(count - round(count)) < 1e-6:
            if abs(actual - bar) < _EPS:
                phase = 0.0
            elif actual < bar:
                if carry is not None and abs(carry + actual - bar) < _EPS:
                    phase = carry
                elif i == 0 or padding > _EPS:
                    phase = bar - actual
                elif i == n - 1:
                    phase = 0.0
                elif abs(actual + measures[i + 1][1] - bar) < _EPS:
                    phase = 0.0
        if phase is None:
            uncertain.append((off, off + actual))
            carry = None
            continue
        carry = phase + actual if phase + actual < bar - _EPS else None
        for k in range(int(math.ceil((phase - _EPS) / beat)), int(round(count))):
            q = off - phase + k * beat
            if q >= off + actual - _EPS:
                break
            times.append(q)
            position.append(k + 1)
            length.append(beat)
    return BeatGrid(np.asarray(times, np.float64), np.asarray(position, np.int16), np.asarray(length, np.float64),
                    uncertain, end, True)


# --------------------------------------------------------------------------- chords


@functools.lru_cache(maxsize=65536)
def label_pitch_set(fifths: Tuple[int, ...]) -> Optional[Tuple[int, int]]:
    """Chord of a set of spelled pitch classes, named by music21.

    Parameters
    ----------
    fifths : tuple of int
        Sorted distinct line-of-fifths positions (see :func:`fifths_of`).

    Returns
    -------
    (root_pc, quality_index) or None
        None when music21's chord type is not in :data:`CHORD_QUALITIES` (fewer than three
        pitch classes, suspensions, added notes...): the caller masks it.
    """
    if len({pc_of_fifths(f) for f in fifths}) < 3:
        return None
    from music21 import chord

    c = chord.Chord([name_of_fifths(f) for f in fifths])
    quality = _COMMON_NAMES.get(c.commonName)
    if quality is None:
        return None
    return int(c.root().pitchClass), CHORD_QUALITIES.index(quality)


def _chord_index(fifths_values) -> Optional[int]:
    unique: Dict[int, int] = {}
    for f in sorted(int(v) for v in fifths_values):
        unique.setdefault(pc_of_fifths(f), f)  # one spelling per pitch class
    label = label_pitch_set(tuple(sorted(unique.values())))
    if label is None:
        return None
    root, quality = label
    return root * len(CHORD_QUALITIES) + quality


def beat_chords(onset: np.ndarray, duration: np.ndarray, fifths: np.ndarray, beats: np.ndarray,
                lengths: np.ndarray, *, min_share: float = 0.25) -> np.ndarray:
    """One chord per beat from the notes of a score (the vertical slices of music21's chordify).

    For each beat ``[b, b + length)``: the pitches sounding at ``b`` (the chordify slice on
    the beat) if music21 names a chord of the vocabulary; else the pitches sounding for at
    least ``min_share`` of the beat; ``"N"`` when no note sounds; else masked.

    Parameters
    ----------
    onset, duration : np.ndarray [shape=(n,)]
        Notes in ql.
    fifths : np.ndarray [shape=(n,)]
        Spelling of each note (line-of-fifths position).
    beats, lengths : np.ndarray [shape=(b,)]
        Beat onsets and lengths in ql.

    Returns
    -------
    np.ndarray [shape=(b,), int16]
        Index into :data:`CHORDS` (``NO_CHORD`` for ``"N"``), or :data:`MASK`.
    """
    out = np.full(len(beats), MASK, dtype=np.int16)
    if not len(beats):
        return out
    order = np.argsort(onset, kind="stable")
    onset, duration, fifths = onset[order], duration[order], fifths[order]
    ends = onset + duration
    longest = float(duration.max()) if duration.size else 0.0
    for i, (b, length) in enumerate(zip(beats, lengths)):
        e = b + length
        lo = int(np.searchsorted(onset, b - longest - _EPS, side="left"))
        hi = int(np.searchsorted(onset, e - _EPS, side="left"))
        on, end, spell = onset[lo:hi], ends[lo:hi], fifths[lo:hi]
        overlap = np.minimum(end, e) - np.maximum(on, b)
        live = overlap > _EPS
        if not live.any():
            out[i] = NO_CHORD
            continue
        at_beat = (on <= b + _EPS) & (end > b + _EPS)
        label = _chord_index(spell[at_beat]) if at_beat.any() else None
        if label is None:
            label = _chord_index(spell[overlap >= min_share * length - _EPS])
        if label is not None:
            out[i] = label
    return out


# --------------------------------------------------------------------------- keys


@dataclasses.dataclass
class KeySegment:
    """A key over ``[start, end)`` (ql); ``key`` is an index into :data:`KEYS` or :data:`MASK`."""

    start: float
    end: float
    key: int
    source: str  # "written", "analysis" or "none" (masked)


def key_index(tonic_pc: int, mode: str) -> int:
    """Index in :data:`KEYS` of a tonic pitch class and ``"major"``/``"minor"``."""
    return int(tonic_pc) % 12 + 12 * KEY_MODES.index(mode)


def analyse_key(pc_weights: np.ndarray) -> Optional[int]:
    """music21's Krumhansl-Schmuckler key of a pitch-class duration histogram, or None (masked).

    The histogram is handed to music21 as a stream of one note per pitch class lasting its
    weight (the analyser weighs pitch classes by duration, so this is what it sees of the
    real notes).  Masked: less than :data:`KEY_MIN_QL` of music, fewer than
    :data:`KEY_MIN_PITCH_CLASSES` pitch classes, a best correlation below
    :data:`KEY_MIN_CORRELATION`, or a runner-up within :data:`KEY_MIN_MARGIN`.
    """
    weights = np.asarray(pc_weights, dtype=np.float64)
    if weights.sum() < KEY_MIN_QL or np.count_nonzero(weights > _EPS) < KEY_MIN_PITCH_CLASSES:
        return None
    from music21 import analysis, note, stream

    s = stream.Stream()
    for pc in range(12):
        if weights[pc] > _EPS:
            n = note.Note(60 + pc)
            n.quarterLength = float(round(weights[pc] * 48) / 48) or 1.0 / 48
            s.append(n)
    solution = analysis.discrete.KrumhanslSchmuckler().getSolution(s)
    best = float(solution.correlationCoefficient)
    others = [float(k.correlationCoefficient) for k in solution.alternateInterpretations
              if (k.tonic.pitchClass, k.mode) != (solution.tonic.pitchClass, solution.mode)]
    if best < KEY_MIN_CORRELATION or (others and best - max(others) < KEY_MIN_MARGIN):
        return None
    if solution.mode not in KEY_MODES:
        return None
    return key_index(solution.tonic.pitchClass, solution.mode)


def key_segments(written: Sequence[Tuple[float, Optional[int], Optional[str]]], measure_offsets: Sequence[float],
                 end: float, onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, *,
                 trust_written: bool) -> List[KeySegment]:
    """Key segments of a score.

    Parameters
    ----------
    written : sequence of (offset, tonic_pc or None, mode or None)
        Key signatures of the first part; a mode of ``major``/``minor`` with a tonic is a
        written key.
    measure_offsets : sequence of float
        Measure starts (analysis windows are :data:`KEY_WINDOW_MEASURES` measures with
        :data:`KEY_CONTEXT_MEASURES` of context each side, inside the segment).
    end : float
        End of the score.
    onset, duration, pitch : np.ndarray
        The notes (ql, MIDI).
    trust_written : bool
        Whether the collection's written keys are trusted (Essen's ``K:`` only gives a
        key signature, so its "major" is not a statement about the tonic).

    Returns
    -------
    list of KeySegment
        Covering ``[first measure, end)``; a written key where trusted and stated with
        a major or minor mode, music21's windowed analysis elsewhere (masked windows
        get ``source="none"``).
    """
    start = float(measure_offsets[0]) if len(measure_offsets) else 0.0
    marks = sorted(((max(start, float(o)), t, m) for o, t, m in written), key=lambda x: x[0])
    bounds: List[Tuple[float, float, Optional[int]]] = []  # (start, end, written key or None)
    cuts = [(start, None, None)] + marks
    merged: List[Tuple[float, Optional[int], Optional[str]]] = []
    for o, t, m in cuts:
        if merged and abs(merged[-1][0] - o) < _EPS:
            merged[-1] = (o, t, m)
        else:
            merged.append((o, t, m))
    for i, (o, t, m) in enumerate(merged):
        seg_end = merged[i + 1][0] if i + 1 < len(merged) else end
        if seg_end <= o + _EPS:
            continue
        label = key_index(t, m) if (trust_written and t is not None and m in KEY_MODES) else None
        bounds.append((o, seg_end, label))
    offsets = np.asarray(sorted(set(float(x) for x in measure_offsets)), dtype=np.float64)
    ends = onset + duration
    pcs = np.asarray(pitch, dtype=np.int64) % 12
    segments: List[KeySegment] = []
    for s0, s1, label in bounds:
        if label is not None:
            segments.append(KeySegment(float(s0), float(s1), label, "written"))
            continue
        inside = offsets[(offsets >= s0 - _EPS) & (offsets < s1 - _EPS)]
        if not inside.size or inside[0] > s0 + _EPS:
            inside = np.concatenate([[s0], inside])
        edges = list(inside) + [s1]
        for w in range(0, len(inside), KEY_WINDOW_MEASURES):
            w0, w1 = edges[w], edges[min(w + KEY_WINDOW_MEASURES, len(edges) - 1)]
            c0 = edges[max(0, w - KEY_CONTEXT_MEASURES)]
            c1 = edges[min(w + KEY_WINDOW_MEASURES + KEY_CONTEXT_MEASURES, len(edges) - 1)]
            overlap = np.clip(np.minimum(ends, c1) - np.maximum(onset, c0), 0.0, None)
            weights = np.bincount(pcs, weights=overlap, minlength=12)
            key = analyse_key(weights)
            segments.append(KeySegment(float(w0), float(w1), MASK if key is None else key, "none" if key is None else "analysis"))
    return segments


# --------------------------------------------------------------------------- tempo map


@dataclasses.dataclass
class TempoMap:
    """Piecewise-constant tempo of a clip: score time (ql) to clip time (seconds).

    Attributes
    ----------
    start : float
        Score offset (ql) at clip time 0.
    knots : list of (ql, seconds per ql)
        From ``start`` on; each tempo lasts until the next knot.
    """

    start: float
    knots: List[Tuple[float, float]]

    def _tables(self):
        qs = [self.start]
        ts = [0.0]
        for (q0, spq), (q1, _) in zip(self.knots, self.knots[1:]):
            ts.append(ts[-1] + (q1 - q0) * spq)
            qs.append(q1)
        return np.asarray(qs), np.asarray(ts), np.asarray([k[1] for k in self.knots])

    def seconds(self, ql) -> np.ndarray:
        """Clip time of score offsets (extrapolated with the first and last tempo)."""
        q = np.asarray(ql, dtype=np.float64)
        qs, ts, spq = self._tables()
        index = np.clip(np.searchsorted(qs, q, side="right") - 1, 0, len(qs) - 1)
        return ts[index] + (q - qs[index]) * spq[index]

    def ql(self, seconds) -> np.ndarray:
        """Score offset of clip times (inverse of :meth:`seconds`)."""
        t = np.asarray(seconds, dtype=np.float64)
        qs, ts, spq = self._tables()
        index = np.clip(np.searchsorted(ts, t, side="right") - 1, 0, len(ts) - 1)
        return qs[index] + (t - ts[index]) / spq[index]

    def sec_per_ql_at(self, ql: float) -> float:
        """Seconds per quarter note at a score offset."""
        qs, _, spq = self._tables()
        return float(spq[int(np.clip(np.searchsorted(qs, ql, side="right") - 1, 0, len(qs) - 1))])


# --------------------------------------------------------------------------- clip targets


@dataclasses.dataclass
class ClipLabels:
    """Score labels of a clip, in clip seconds (after tempo map, transposition, time stretch)."""

    beat_times: np.ndarray        # float64 [b]
    beat_position: np.ndarray     # int16 [b], 1 = downbeat
    beat_ends: np.ndarray         # float64 [b]
    chords: np.ndarray            # int16 [b], index into CHORDS or MASK
    keys: List[Tuple[float, float, int, str]]       # (start s, end s, key index or MASK, source)
    uncertain: List[Tuple[float, float]]            # beat grid masked here (seconds)
    grid_end: float               # seconds; no beat labels after it
    meter: int                    # index into METERS or MASK
    meter_label: str              # "6/8", or "" when masked
    tempo_bpm: float              # beats per minute, NaN when masked
    has_meter: bool


def transpose_chord(index: int, semitones: int) -> int:
    """Chord index after transposing by ``semitones`` (``N`` and masks unchanged)."""
    if index < 0 or index == NO_CHORD:
        return int(index)
    q = len(CHORD_QUALITIES)
    return ((index // q + semitones) % 12) * q + index % q


def transpose_key(index: int, semitones: int) -> int:
    """Key index after transposing by ``semitones`` (masks unchanged)."""
    if index < 0:
        return int(index)
    return (index % 12 + semitones) % 12 + 12 * (index // 12)


def clip_labels(grid: BeatGrid, chords: np.ndarray, keys: Sequence[KeySegment],
                signatures: Sequence[Tuple[float, int, int, float]], tempo: TempoMap, start_ql: float,
                end_ql: float, transpose: int, time_stretch: float = 1.0, *,
                tempo_tolerance: float = 0.04) -> ClipLabels:
    """Map score labels over ``[start_ql, end_ql)`` into clip time.

    Meter is masked when the clip holds more than one time signature, none, or one outside
    :data:`METERS`; tempo when the clip's tempo varies by more than ``tempo_tolerance`` or
    its beat unit changes.
    """
    def sec(q):
        return tempo.seconds(q) / time_stretch

    sel = (grid.times >= start_ql - _EPS) & (grid.times < end_ql - _EPS)
    beat_q = grid.times[sel]
    beat_t = sec(beat_q)
    beat_e = sec(np.minimum(beat_q + grid.length[sel], end_ql))
    chord = np.array([transpose_chord(int(c), transpose) for c in chords[sel]], dtype=np.int16)
    key_rows = []
    for seg in keys:
        s0, s1 = max(seg.start, start_ql), min(seg.end, end_ql)
        if s1 > s0 + _EPS:
            key_rows.append((float(sec(s0)), float(sec(s1)), transpose_key(seg.key, transpose), seg.source))
    uncertain = [(float(sec(max(a, start_ql))), float(sec(min(b, end_ql))))
                 for a, b in grid.uncertain if min(b, end_ql) > max(a, start_ql) + _EPS]
    grid_end = float(sec(min(grid.end, end_ql)))
    # meter of the clip
    inside = [s for s in signatures if start_ql - _EPS < s[0] < end_ql - _EPS]
    current = [s for s in signatures if s[0] <= start_ql + _EPS]
    sigs = ([current[-1]] if current else []) + inside
    labels = sorted({f"{s[1]}/{s[2]}" for s in sigs})
    meter, meter_label = MASK, ""
    if grid.has_meter and len(labels) == 1 and labels[0] in METERS:
        meter_label = labels[0]
        meter = METERS.index(meter_label)
    # tempo of the clip, in beats per minute of the notated beat
    bpm = float("nan")
    beat_units = {round(float(s[3]), 6) for s in sigs}
    if grid.has_meter and len(beat_units) == 1:
        beat_ql = beat_units.pop()
        rates = [spq for q, spq in tempo.knots if q < end_ql - _EPS]
        if rates and max(rates) <= min(rates) * (1 + tempo_tolerance):
            bpm = 60.0 * time_stretch / (float(np.mean(rates)) * beat_ql)
    return ClipLabels(beat_t, grid.position[sel].copy(), beat_e, chord, key_rows, uncertain, grid_end, meter,
                      meter_label, bpm, grid.has_meter)


def frame_labels(labels: ClipLabels, n_frames: int, sr: int, hop: int) -> Dict[str, np.ndarray]:
    """Frame arrays of :class:`ClipLabels` on the corpus grid (frame ``t`` centred on ``t * hop / sr``).

    Returns
    -------
    dict
        ``beat``, ``downbeat`` uint8 [T] (1 on the frame nearest each beat / downbeat);
        ``beat_mask`` uint8 [T] (1 where the beat grid is known: inside the score's grid, not in
        an uncertain measure, the score has a meter); ``key`` int16 [T] (index into
        :data:`KEYS`, -1 masked); ``key_source`` uint8 [T] (index into :data:`KEY_SOURCES`);
        ``chord`` int16 [T] (index into :data:`CHORDS`, -1 masked or outside the beats).
    """
    rate = sr / hop
    centres = np.arange(n_frames) / rate
    beat = np.zeros(n_frames, np.uint8)
    downbeat = np.zeros(n_frames, np.uint8)
    mask = np.zeros(n_frames, np.uint8)
    if labels.has_meter:
        mask[centres < labels.grid_end] = 1
        for a, b in labels.uncertain:
            mask[(centres >= a - 0.5 / rate) & (centres < b + 0.5 / rate)] = 0
        frames = np.round(labels.beat_times * rate).astype(np.int64)
        ok = (frames >= 0) & (frames < n_frames)
        beat[frames[ok]] = 1
        mask[frames[ok]] = 1  # a beat next to an uncertain measure is still known
        down = ok & (labels.beat_position == 1)
        downbeat[frames[down]] = 1
    key = np.full(n_frames, MASK, np.int16)
    source = np.zeros(n_frames, np.uint8)
    for s0, s1, k, src in labels.keys:
        span = (centres >= s0) & (centres < s1)
        key[span] = k
        source[span] = KEY_SOURCES.index(src) if k >= 0 else 0
    chord = np.full(n_frames, MASK, np.int16)
    for t0, t1, c in zip(labels.beat_times, labels.beat_ends, labels.chords):
        chord[(centres >= t0) & (centres < t1)] = c
    return {"beat": beat, "downbeat": downbeat, "beat_mask": mask, "key": key, "key_source": source,
            "chord": chord}


# --------------------------------------------------------------------------- annotations


def chord_label(index: int) -> str:
    """mir_eval label of a chord index (``"X"`` for a mask)."""
    return "X" if index < 0 else CHORDS[int(index)]


def annotation(labels: ClipLabels, duration: float, meta: dict) -> dict:
    """A JAMS document (as a dict) of a clip's labels, times in seconds.

    Namespaces: ``beat`` (value = position in the bar), ``chord`` (mir_eval labels, ``X`` masked),
    ``key_mode`` (``"A:minor"``; masked segments left out, ``sandbox.source`` per segment),
    ``tempo`` (left out when masked) and ``tag_open`` for the meter (``"6/8"``, left out when
    masked).  ``sandbox`` holds the masked spans and the clip metadata.
    """
    def ann(namespace, data, sandbox=None):
        return {"namespace": namespace, "data": data, "time": 0.0, "duration": duration,
                "annotation_metadata": {"annotator": {}, "annotation_tools": "mirzoo training.corpus",
                                        "data_source": "score", "version": str(TARGETS_VERSION), "corpus": "",
                                        "curator": {"name": "", "email": ""}, "validation": "",
                                        "annotation_rules": ""},
                "sandbox": sandbox or {}}

    def obs(time, dur, value, confidence=None):
        return {"time": float(time), "duration": float(dur), "value": value, "confidence": confidence}

    anns = []
    anns.append(ann("beat", [obs(t, 0.0, int(p)) for t, p in zip(labels.beat_times, labels.beat_position)],
                    {"uncertain_spans": [list(s) for s in labels.uncertain], "grid_end": labels.grid_end,
                     "has_meter": labels.has_meter}))
    anns.append(ann("chord", [obs(t0, max(0.0, t1 - t0), chord_label(c))
                              for t0, t1, c in zip(labels.beat_times, labels.beat_ends, labels.chords)]))
    key_obs, sources = [], []
    for s0, s1, k, src in labels.keys:
        if k >= 0:
            tonic, mode = KEYS[k].split(" ")
            key_obs.append(obs(s0, s1 - s0, f"{tonic}:{mode}"))
            sources.append(src)
    anns.append(ann("key_mode", key_obs, {"sources": sources,
                                          "masked_spans": [[s0, s1] for s0, s1, k, _ in labels.keys if k < 0]}))
    if not math.isnan(labels.tempo_bpm):
        anns.append(ann("tempo", [obs(0.0, duration, float(labels.tempo_bpm), 1.0)]))
    if labels.meter >= 0:
        anns.append(ann("tag_open", [obs(0.0, duration, labels.meter_label)], {"kind": "meter"}))
    return {"file_metadata": {"title": meta.get("title", ""), "artist": "", "release": "", "duration": duration,
                              "identifiers": {"clip_id": meta.get("clip_id", "")}, "jams_version": "0.3.5"},
            "annotations": anns, "sandbox": {"mirzoo": meta}}
