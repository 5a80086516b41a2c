"""The public training corpus of mirzoo: music21's corpus rendered with FluidSynth.

Usage::

    python -m training.corpus build --out corpus/ --hours 30 --seed 0
    python -m training.corpus stats corpus/
    python -m training.corpus build --out heldout/ --soundfont TimGM6mb --split test --hours 2

A build lists the pieces of the music21 corpus (:mod:`training.corpus_sources`),
assigns each to a split by a hash of the seed and the piece (so a piece is never in
two splits, whatever ``--hours``), orders them by a seeded interleaving of the
collections, and renders up to ``--max-clips-per-piece`` excerpts of at most
``--clip-seconds`` per piece until ``--hours`` of audio are reached
(:mod:`training.corpus_render`).  Every random draw of a clip comes from a generator
derived from ``(seed, piece_id, clip_index)``, so the corpus does not depend on the
number of workers or their scheduling.  ``--render-seed`` takes the seed's place in the
order and the draws but not in the splits: a fresh render of the same split (e.g. a
second test render no decision has read).

Output folder::

    build_config.json           settings that fix the content (checked on resume)
    audio/<split>/<collection>/<clip>.flac     mono, 16-bit, --sr Hz
    targets/<split>/<collection>/<clip>.npz    roll [T,128], chroma [T,12], onsets [T,128],
                                                notes [n,6], sr, hop, meta (JSON row)
    metadata.csv                one row per clip (see METADATA_COLUMNS)
    vocabulary.json             tag list and counts (overall and per split)
    failures.csv                pieces that could not be parsed or rendered

Resuming: a clip is finished once its ``.npz`` exists (it is written last, through a
temporary name and :func:`os.replace`); a rerun with the same settings skips it.
Workers run ahead of the ``--hours`` cap (the pieces in flight when it is reached, and
the later clips of the piece that reaches it); the clips a build writes but does not
list in ``metadata.csv`` are removed when it ends, so the files of a finished build do
not depend on the number of workers or their timing either.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import glob
import io
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from training import corpus_render as cr
from training import corpus_sources as cs
from training import corpus_targets as ct

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")

#: Version of the corpus content (build_config.json); a folder of another version is refused.
#: 2: score targets (beats, downbeats, meter, tempo, key, chords), drums, rooms, compression,
#: soundfont mixing.
CORPUS_VERSION = 2

#: Columns of ``metadata.csv``, in order.
METADATA_COLUMNS = (
    "clip_id", "path", "targets", "split", "tags", "piece_id", "collection", "title", "soundfont",
    "programs", "orchestration", "tempo", "beat_ql", "qpm", "transposition", "start_ql", "duration",
    "sr", "hop", "n_frames", "gain_db", "snr_db", "reverb_send", "chorus_send", "pitch_shift_cents",
    "time_stretch", "split_key", "annotation", "beat_bpm", "meter", "key", "drums", "room_rt60", "compression",
    "soundfonts",
)

#: Tune types that are dance music (drums plausible), and collections of folk songs.
DANCE_TUNES = {"reel", "jig", "slip-jig", "hornpipe", "polka", "slide", "fling", "march", "set-dance",
               "waltz", "strathspey"}
FOLK_STYLES = {"folk", "irish-folk", "scottish-folk", "ragtime"}

# fast tune types whose 4/4 bars are felt in two (tempo drawn per half note)
_FELT_IN_TWO = {"reel", "hornpipe", "fling", "strathspey", "march"}

#: Tempo ranges (beats per minute) of tune types, overriding the collection's range.
TUNE_TEMPI = {
    "reel": (104, 124), "jig": (104, 128), "slip-jig": (104, 128), "hornpipe": (76, 100),
    "strathspey": (60, 80), "fling": (84, 104), "air": (50, 80), "march": (100, 124),
    "waltz": (120, 170), "polka": (100, 130), "slide": (110, 130), "set-dance": (76, 100),
}

#: Tempo classes (``tempo:<class>``) by beats per minute.
TEMPO_CLASSES = ((72.0, "slow"), (112.0, "moderate"), (math.inf, "fast"))


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass
class AugmentConfig:
    """Ranges and probabilities of the seeded augmentation (seed section 2.3).

    Every value is drawn from the clip's generator whether or not it is used, in a
    fixed order, so changing one probability does not reshuffle the other draws.
    """

    p_transpose: float = 0.8
    transpose: Tuple[int, int] = (-5, 6)
    tempo_jitter: float = 0.15
    p_score_tempo: float = 0.7
    gain_db: Tuple[float, float] = (-18.0, 0.0)
    p_noise: float = 0.3
    snr_db: Tuple[float, float] = (10.0, 40.0)
    p_reverb: float = 0.7
    reverb_send: Tuple[int, int] = (30, 110)
    p_chorus: float = 0.3
    chorus_send: Tuple[int, int] = (20, 90)
    velocity_scale: Tuple[float, float] = (0.75, 1.1)
    velocity_jitter: float = 6.0
    articulation: Tuple[float, float] = (0.8, 1.0)
    p_pitch_shift: float = 0.0
    pitch_shift_cents: float = 40.0
    p_time_stretch: float = 0.0
    time_stretch: Tuple[float, float] = (0.9, 1.1)
    p_drums_dance: float = 0.6
    p_drums_folk: float = 0.3
    drum_gain: Tuple[float, float] = (0.5, 0.9)
    p_room: float = 0.5
    room_rt60: Tuple[float, float] = (0.2, 1.2)
    p_compress: float = 0.5
    compress_threshold_db: Tuple[float, float] = (-30.0, -8.0)
    compress_ratio: Tuple[float, float] = (2.0, 8.0)
    compress_attack_ms: Tuple[float, float] = (2.0, 30.0)
    compress_release_ms: Tuple[float, float] = (40.0, 300.0)
    p_soundfont_mix: float = 0.5


@dataclasses.dataclass
class BuildConfig:
    """Settings that fix a corpus' content (stored in ``build_config.json``).

    ``hours``, ``workers`` and the cache folder are not part of it: a rerun may change them.
    """

    seed: int = 0
    sr: int = 16000
    hop: int = 320
    synth_sr: int = 32000
    soundfont: str = "FluidR3"
    splits: Tuple[str, ...] = SPLITS
    split_fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)
    clip_seconds: float = 30.0
    min_clip_seconds: float = 4.0
    max_clips_per_piece: int = 3
    tail_seconds: float = 1.0
    audio_format: str = "flac"
    collections: Optional[Tuple[str, ...]] = None
    write_midi: bool = False
    mix_soundfonts: Tuple[str, ...] = ()
    corpus_version: int = CORPUS_VERSION
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    #: seed of the piece order, excerpts and augmentation draws; ``None``: ``seed``.  The split of a piece
    #: follows ``seed`` alone, so another render seed gives a fresh render of the same split (other
    #: excerpts, transpositions, tempi and instruments; other pieces where ``hours`` stops short of the
    #: whole split).  Left out of ``build_config.json`` when ``None``, so earlier builds resume unchanged.
    render_seed: Optional[int] = None

    @property
    def draw_seed(self) -> int:
        """The seed of everything but the splits: ``render_seed``, or ``seed`` without one."""
        return self.seed if self.render_seed is None else self.render_seed

    def validate(self) -> None:
        """Check the values; raise :class:`ValueError` naming the bad one."""
        if self.sr <= 0 or self.synth_sr <= 0 or self.hop <= 0:
            raise ValueError(f"sr={self.sr}, synth_sr={self.synth_sr} and hop={self.hop} must be positive")
        if not 8000 <= self.synth_sr <= 96000:
            raise ValueError(f"synth_sr={self.synth_sr}: FluidSynth renders at 8000..96000 Hz")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"splits={list(self.splits)}: expected a non-empty subset of {list(SPLITS)}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError(f"split_fractions={self.split_fractions}: expected 3 non-negative numbers summing to 1")
        if self.clip_seconds <= 0 or self.min_clip_seconds <= 0 or self.min_clip_seconds > self.clip_seconds:
            raise ValueError(f"clip_seconds={self.clip_seconds}, min_clip_seconds={self.min_clip_seconds}: "
                             f"expected 0 < min_clip_seconds <= clip_seconds")
        if self.max_clips_per_piece < 1:
            raise ValueError(f"max_clips_per_piece={self.max_clips_per_piece}: expected >= 1")
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"audio_format={self.audio_format!r}: expected 'flac' or 'wav'")
        if self.render_seed is not None and (isinstance(self.render_seed, bool) or not isinstance(self.render_seed, int)
                                             or self.render_seed < 0):
            raise ValueError(f"render_seed={self.render_seed!r}: expected a whole number >= 0, or None (the seed)")
        if self.corpus_version != CORPUS_VERSION:
            raise ValueError(f"corpus_version={self.corpus_version}: this builder writes version {CORPUS_VERSION}")
        for font in (self.soundfont,) + tuple(self.mix_soundfonts):
            name, _ = cr.resolve_soundfont(font)
            cr.check_soundfont_for_splits(name, self.splits)

    def to_json(self) -> dict:
        """A JSON-ready dict (tuples become lists); no ``render_seed`` key when it is ``None``."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        if data.get("render_seed") is None:
            data.pop("render_seed", None)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "BuildConfig":
        """Inverse of :meth:`to_json`; unknown keys raise :class:`ValueError`."""
        data = dict(data)
        aug = data.pop("augment", {}) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        aug_names = {f.name for f in dataclasses.fields(AugmentConfig)}
        unknown += sorted(f"augment.{k}" for k in set(aug) - aug_names)
        if unknown:
            raise ValueError(f"unknown corpus config key(s) {unknown}")
        for key in ("splits", "split_fractions", "collections", "mix_soundfonts"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        aug = {k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
        return cls(augment=AugmentConfig(**aug), **data)


# --------------------------------------------------------------------------- splits and order


def split_of(split_key: str, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """Split of a piece: a deterministic function of its split key and the seed.

    Parameters
    ----------
    split_key : str
        :attr:`~training.corpus_sources.Piece.split_key`.
    seed : int
    fractions : (train, valid, test)
    """
    u = cr.stable_int(f"split:{seed}:{split_key}") / 2.0 ** 64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "valid"
    return "test"


def build_order(pieces: Sequence[cs.Piece], seed: int) -> List[cs.Piece]:
    """Interleave the collections by their weights, each shuffled by the seed.

    The i-th piece of a collection of weight ``w`` is placed at ``(i + 0.5) / w``, so a
    build cut at any length holds the collections in about the ratio of their weights.
    """
    weights = {c.name: c.weight for c in cs.COLLECTIONS}
    by_coll: Dict[str, List[cs.Piece]] = collections.defaultdict(list)
    for piece in sorted(pieces, key=lambda p: p.piece_id):
        by_coll[piece.collection].append(piece)
    keyed = []
    for name, group in sorted(by_coll.items()):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), cr.stable_int(f"order:{name}")]))
        perm = rng.permutation(len(group))
        for rank, index in enumerate(perm):
            keyed.append(((rank + 0.5) / weights.get(name, 1.0), name, group[int(index)]))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [item[2] for item in keyed]


# --------------------------------------------------------------------------- clip planning


@dataclasses.dataclass
class ClipPlan:
    """Everything drawn for one clip; :func:`render_clip` turns it into audio and targets."""

    clip_index: int
    clip_id: str
    start_ql: float
    duration: float
    bpm: float
    beat_ql: float
    transpose: int
    orchestration: cr.Orchestration
    events: cr.NoteEvents
    effects: cr.Effects
    gain_db: float
    snr_db: Optional[float]
    noise_color: str
    pitch_shift_cents: float
    time_stretch: float
    tags: List[str]
    noise_seed: int
    tempo_map: Optional[ct.TempoMap] = None
    end_ql: float = 0.0
    labels: Optional[ct.ClipLabels] = None
    fonts: Dict[int, int] = dataclasses.field(default_factory=dict)
    drums: str = ""
    drum_kit: int = -1
    room: Optional[cr.Room] = None
    compressor: Optional[cr.Compressor] = None


def meter_class(numerator: int, denominator: int) -> str:
    """Meter tag value of a time signature (``6/8`` -> ``compound-duple``)."""
    if denominator >= 8 and numerator in (6, 9, 12):
        return {6: "compound-duple", 9: "compound-triple", 12: "compound-quadruple"}[numerator]
    return {2: "duple", 3: "triple", 4: "quadruple"}.get(numerator, "irregular")


def tempo_class(bpm: float) -> str:
    """Tempo tag value of a tempo in beats per minute (see :data:`TEMPO_CLASSES`)."""
    for limit, name in TEMPO_CLASSES:
        if bpm < limit:
            return name
    return TEMPO_CLASSES[-1][1]


def _slug(piece_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", piece_id.replace("/", "__"))


def clip_tempo_map(score: cs.ScoreData, start: float, sec_per_ql: float, follow_score: bool, factor: float,
                   beat_ql: float) -> ct.TempoMap:
    """Tempo map of a clip starting at ``start`` (ql).

    With ``follow_score`` every metronome mark of the score after ``start`` changes the tempo
    (its quarter notes per minute times ``factor``, the clip's jitter); otherwise the tempo
    stays ``sec_per_ql``.  Tempi are kept within 30..240 beats (of ``beat_ql``) per minute.
    """
    knots = [(float(start), float(sec_per_ql))]
    if follow_score:
        for off, qpm in score.tempo_marks:
            if off > start + 1e-9 and qpm > 0:
                bpm = float(np.clip(qpm * factor / beat_ql, 30.0, 240.0))
                spq = 60.0 / (bpm * beat_ql)
                if abs(off - knots[-1][0]) < 1e-9:
                    knots[-1] = (float(off), spq)
                else:
                    knots.append((float(off), spq))
    return ct.TempoMap(float(start), knots)


def drum_probability(piece: cs.Piece, aug: AugmentConfig) -> float:
    """Probability of a drum part: dance tunes, then folk songs and ragtime; never art music."""
    tune = next((t.split(":", 1)[1] for t in piece.tags if t.startswith("tune:")), None)
    style = next((t.split(":", 1)[1] for t in piece.tags if t.startswith("style:")), "")
    if tune in DANCE_TUNES:
        return aug.p_drums_dance
    if style in FOLK_STYLES and tune != "air":
        return aug.p_drums_folk
    return 0.0


def plan_piece(piece: cs.Piece, score: cs.ScoreData, cfg: BuildConfig) -> List[ClipPlan]:
    """Plan the clips of one piece (windows, tempo, transposition, instruments, effects).

    Windows start on measure starts, spread over the piece, never overlap, and last at
    most ``cfg.clip_seconds`` (music plus a ``cfg.tail_seconds`` release at the end).

    Returns
    -------
    list of ClipPlan
        Possibly empty (a piece shorter than a useful clip).
    """
    aug = cfg.augment
    coll = {c.name: c for c in cs.COLLECTIONS}[piece.collection]
    tune = next((t.split(":", 1)[1] for t in piece.tags if t.startswith("tune:")), None)
    length = score.length
    first = float(score.onset.min())
    measures = np.asarray(score.measures, dtype=np.float64)
    plans: List[ClipPlan] = []
    prev_end = first
    end_of_notes = score.onset + score.duration
    for k in range(cfg.max_clips_per_piece):
        rng = cr.clip_rng(cfg.draw_seed, piece.piece_id, k)
        target = first + k * (length - first) / cfg.max_clips_per_piece
        lower = max(target, prev_end)
        if k == 0:
            start = first
        else:
            later = measures[measures >= lower - 1e-9]
            if not later.size:
                break
            start = float(later[0])
        if start >= length - 1e-9:
            break
        # -- draws in a fixed order -------------------------------------------------
        u_tempo, u_mark, u_jitter = rng.random(3)
        u_transpose_on, transpose_draw = rng.random(), int(rng.integers(aug.transpose[0], aug.transpose[1] + 1))
        gain_db = float(rng.uniform(*aug.gain_db))
        u_noise, snr_db = rng.random(), float(rng.uniform(*aug.snr_db))
        noise_color = ("white", "pink", "brown")[int(rng.integers(3))]
        u_reverb, reverb_send = rng.random(), int(rng.integers(aug.reverb_send[0], aug.reverb_send[1] + 1))
        room, damp, width, level = rng.uniform(0.1, 0.9), rng.uniform(0.0, 0.8), rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.9)
        u_chorus, chorus_send = rng.random(), int(rng.integers(aug.chorus_send[0], aug.chorus_send[1] + 1))
        chorus_level, chorus_speed, chorus_depth = rng.uniform(1.0, 3.0), rng.uniform(0.2, 1.0), rng.uniform(3.0, 10.0)
        u_shift, cents = rng.random(), float(rng.uniform(-aug.pitch_shift_cents, aug.pitch_shift_cents))
        u_stretch, stretch = rng.random(), float(rng.uniform(*aug.time_stretch))
        articulation = float(rng.uniform(*aug.articulation))
        noise_seed = int(rng.integers(2 ** 63))
        # -- tempo ------------------------------------------------------------------
        num, den, beat_ql = score.time_signature_at(start)
        if tune in _FELT_IN_TWO and num == 4 and den in (4, 2) and beat_ql < 2:
            beat_ql = 2.0
        lo, hi = TUNE_TEMPI.get(tune, coll.tempo)
        bpm = math.exp(math.log(lo) + u_tempo * (math.log(hi) - math.log(lo)))
        marks = [q for off, q in score.tempo_marks if off <= start + 1e-9]
        if marks and u_mark < aug.p_score_tempo:
            bpm = marks[-1] / beat_ql * (1 - aug.tempo_jitter + 2 * aug.tempo_jitter * u_jitter)
        bpm = float(np.clip(bpm, 30.0, 240.0))
        sec_per_ql = 60.0 / (bpm * beat_ql)
        follow = bool(marks) and u_mark < aug.p_score_tempo
        tmap = clip_tempo_map(score, start, sec_per_ql, follow,
                              1 - aug.tempo_jitter + 2 * aug.tempo_jitter * u_jitter, beat_ql)
        duration = min(cfg.clip_seconds, float(tmap.seconds(length)) + cfg.tail_seconds)
        duration = round(duration, 3)
        if duration < (min(2.0, cfg.min_clip_seconds) if k == 0 else cfg.min_clip_seconds):
            break
        end_ql = float(tmap.ql(duration))
        prev_end = min(float(tmap.ql(cfg.clip_seconds)), length)
        sel = np.nonzero((score.onset < end_ql - 1e-9) & (end_of_notes > start + 1e-9))[0]
        if not sel.size:
            continue
        # -- transposition ------------------------------------------------------------
        pitches = score.pitch[sel].astype(int)
        transpose = transpose_draw if u_transpose_on < aug.p_transpose else 0
        if pitches.min() + transpose < 21 or pitches.max() + transpose > 108:
            allowed = [t for t in range(aug.transpose[0], aug.transpose[1] + 1)
                       if pitches.min() + t >= 21 and pitches.max() + t <= 108]
            transpose = min(allowed, key=lambda t: (abs(t - transpose), t)) if allowed else 0
        # -- instruments ---------------------------------------------------------------
        parts_present = sorted(set(int(p) for p in score.part[sel]))
        ranges = []
        for p in parts_present:
            mask = score.part[sel] == p
            ranges.append((int(pitches[mask].min()) + transpose, int(pitches[mask].max()) + transpose))
        known = [score.part_programs[p] if p < len(score.part_programs) else -1 for p in parts_present]
        orch = cr.draw_orchestration(rng, ranges, known, piece.collection)
        # -- notes as rendered -----------------------------------------------------------
        part_scale = rng.uniform(*aug.velocity_scale, size=len(parts_present))
        cols = {name: [] for name in ("onset", "offset", "pitch", "velocity", "channel", "program")}
        for local, channel, program, shift in orch.voices:
            part = parts_present[local]
            idx = sel[score.part[sel] == part]
            on = tmap.seconds(np.maximum(score.onset[idx], start))
            off = tmap.seconds(np.minimum(end_of_notes[idx], end_ql))
            held = off - on
            off = on + np.where(held > 0.06, np.maximum(0.05, held * articulation), held)
            vel = score.velocity[idx] * part_scale[local] + rng.normal(0.0, aug.velocity_jitter, size=idx.size)
            cols["onset"].append(on)
            cols["offset"].append(np.minimum(off, duration))
            cols["pitch"].append(score.pitch[idx].astype(int) + transpose + shift)
            cols["velocity"].append(np.clip(np.round(vel), 20, 127).astype(int))
            cols["channel"].append(np.full(idx.size, channel))
            cols["program"].append(np.full(idx.size, program))
        # -- realism draws (a generator of their own: the draws above stay as in version 1) ----
        rng2 = cr.clip_rng(cfg.draw_seed, piece.piece_id + "#realism", k)
        u_drums, drum_style_u, kit_u, drum_gain = rng2.random(), rng2.random(), rng2.random(), float(
            rng2.uniform(*aug.drum_gain))
        u_room = rng2.random()
        room_sim = cr.draw_room(rng2, aug.room_rt60)
        u_comp = rng2.random()
        comp = cr.Compressor(float(rng2.uniform(*aug.compress_threshold_db)), float(rng2.uniform(*aug.compress_ratio)),
                             float(rng2.uniform(*aug.compress_attack_ms)), float(rng2.uniform(*aug.compress_release_ms)))
        u_mix = rng2.random()
        fonts_u = rng2.random(16)
        drum_rng = np.random.default_rng(rng2.integers(2 ** 63))
        stretch_used = stretch if u_stretch < aug.p_time_stretch else 1.0
        labels = ct.clip_labels(score.grid, score.chords, score.keys, score.time_signatures, tmap, float(start),
                                end_ql, transpose, stretch_used)
        # -- percussion (GM channel 10) on the beat grid ---------------------------------------
        drums, kit = "", -1
        grid = score.grid
        in_clip = (grid.times >= start - 1e-9) & (grid.times < min(end_ql, length) - 1e-9)
        if grid.has_meter and in_clip.sum() >= 4 and u_drums < drum_probability(piece, aug):
            tune = next((t.split(":", 1)[1] for t in piece.tags if t.startswith("tune:")), None)
            styles = ("kit", "folk") if tune in DANCE_TUNES and tune != "waltz" else ("kit", "light") if (
                tune == "waltz") else ("folk", "light", "kit")
            drums = styles[int(drum_style_u * len(styles))]
            kits = cr.DRUM_KITS[drums]
            kit = kits[int(kit_u * len(kits))]
            beat_q = grid.times[in_clip]
            bar_beats = np.array([int(round(score.time_signature_at(q)[0] * 4.0 / score.time_signature_at(q)[1]
                                            / max(lq, 1e-9))) for q, lq in zip(beat_q, grid.length[in_clip])])
            hits = cr.drum_pattern(beat_q, grid.position[in_clip], grid.length[in_clip], bar_beats, drums, drum_rng)
            hit_q = np.array([h[0] for h in hits])
            keep_hits = hit_q < min(end_ql, length) - 1e-9
            hit_on = tmap.seconds(hit_q[keep_hits])
            n_hits = int(keep_hits.sum())
            cols["onset"].append(hit_on)
            cols["offset"].append(np.minimum(hit_on + 0.1, duration))
            cols["pitch"].append(np.array([h[1] for h in hits])[keep_hits])
            cols["velocity"].append(np.clip(np.round(np.array([h[2] for h in hits])[keep_hits] * drum_gain),
                                            1, 127).astype(int))
            cols["channel"].append(np.full(n_hits, cr.DRUM_CHANNEL))
            cols["program"].append(np.full(n_hits, kit))
        arrays = {k2: np.concatenate(v) for k2, v in cols.items()}
        order = np.lexsort((arrays["pitch"], arrays["channel"], arrays["onset"]))
        events = cr.NoteEvents(**{k2: v[order] for k2, v in arrays.items()})
        keep = (events.pitch >= 0) & (events.pitch <= 127) & (events.offset > events.onset)
        events = cr.NoteEvents(*(getattr(events, f.name)[keep] for f in dataclasses.fields(cr.NoteEvents)))
        effects = cr.Effects(
            reverb_send=reverb_send if u_reverb < aug.p_reverb else 0, room_size=float(room),
            damping=float(damp), width=float(width), reverb_level=float(level),
            chorus_send=chorus_send if u_chorus < aug.p_chorus else 0, chorus_level=float(chorus_level),
            chorus_speed=float(chorus_speed), chorus_depth=float(chorus_depth),
        )
        # -- tags ---------------------------------------------------------------------------
        tags = set(piece.tags)
        tags.update(f"instrument:{f}" for f in orch.families)
        tags.add("ensemble:solo" if orch.solo else "ensemble:ensemble")
        tags.add("texture:monophonic" if score.n_parts == 1 else "texture:polyphonic")
        tags.add(f"meter:{meter_class(num, den)}")
        tags.add(f"tempo:{tempo_class(bpm)}")
        tags.add(f"percussion:{'drums' if drums else 'none'}")
        channels = sorted(set(int(c) for c in events.channel))
        fonts: Dict[int, int] = {}
        if cfg.mix_soundfonts and u_mix < aug.p_soundfont_mix:
            n_fonts = 1 + len(cfg.mix_soundfonts)
            fonts = {c: int(fonts_u[c] * n_fonts) for c in channels}
        if coll.mode_from_score and score.mode and not any(t.startswith("mode:") for t in tags):
            tags.add(f"mode:{score.mode}")
        plans.append(ClipPlan(
            clip_index=k, clip_id=f"{_slug(piece.piece_id)}-c{k}", start_ql=float(start), duration=duration,
            bpm=bpm, beat_ql=beat_ql, transpose=transpose, orchestration=orch, events=events, effects=effects,
            gain_db=gain_db, snr_db=snr_db if u_noise < aug.p_noise else None, noise_color=noise_color,
            pitch_shift_cents=cents if u_shift < aug.p_pitch_shift else 0.0,
            time_stretch=stretch_used, tags=sorted(tags), noise_seed=noise_seed,
            tempo_map=tmap, end_ql=end_ql, labels=labels, fonts=fonts, drums=drums, drum_kit=kit,
            room=room_sim if u_room < aug.p_room else None, compressor=comp if u_comp < aug.p_compress else None,
        ))
    return plans


# --------------------------------------------------------------------------- rendering


def render_clip(plan: ClipPlan, renderer: cr.FluidRenderer, cfg: BuildConfig):
    """Render a planned clip.

    Returns
    -------
    y : np.ndarray [shape=(n,), float32]
        Mono audio at ``cfg.sr``.
    events : NoteEvents
        The notes as rendered (times after quantisation and any time stretch).
    targets : dict
        See :func:`training.corpus_render.frame_targets`.

    Raises
    ------
    RuntimeError
        If the render is silent.
    """
    events = cr.quantize_events(plan.events, cfg.synth_sr)
    n_synth = int(round(plan.duration * cfg.synth_sr))
    y = renderer.render(events, n_synth, plan.effects, plan.fonts)
    if cfg.synth_sr != cfg.sr:
        import soxr

        y = soxr.resample(y, cfg.synth_sr, cfg.sr, quality="HQ").astype(np.float32)
    n = int(round(plan.duration * cfg.sr))
    y = np.pad(y, (0, max(0, n - y.size)))[:n]
    if plan.pitch_shift_cents:
        import librosa

        y = librosa.effects.pitch_shift(y, sr=cfg.sr, n_steps=plan.pitch_shift_cents / 100.0).astype(np.float32)
    if plan.time_stretch != 1.0:
        import librosa

        y = librosa.effects.time_stretch(y, rate=plan.time_stretch).astype(np.float32)
        events = events.scaled(1.0 / plan.time_stretch)
    if not np.any(np.abs(y) > 1e-5):
        raise RuntimeError("silent render")
    if plan.room is not None:
        y = cr.convolve_room(y, cr.room_impulse_response(plan.room, cfg.sr))
    if plan.compressor is not None:
        y = cr.compress(y, cfg.sr, plan.compressor)
    fade = min(y.size, int(0.01 * cfg.sr))
    y[y.size - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    y = cr.normalize(y, plan.gain_db)
    if plan.snr_db is not None:
        y = cr.add_noise(y, np.random.default_rng(plan.noise_seed), plan.snr_db, plan.noise_color)
    y = cr.limit(y) if plan.compressor is not None else np.clip(y, -1.0, 1.0)
    y = y.astype(np.float32)
    targets = cr.frame_targets(events, y.size, cfg.sr, cfg.hop)
    if plan.labels is not None:
        targets.update(ct.frame_labels(plan.labels, targets["roll"].shape[0], cfg.sr, cfg.hop))
    return y, events, targets


def clip_paths(out: Path, split: str, piece: cs.Piece, plan_id: str, cfg: BuildConfig) -> Tuple[Path, Path]:
    """Audio and targets paths of a clip."""
    audio = out / "audio" / split / piece.collection / f"{plan_id}.{cfg.audio_format}"
    targets = out / "targets" / split / piece.collection / f"{plan_id}.npz"
    return audio, targets


def annotation_path(out: Path, split: str, collection: str, clip_id: str) -> Path:
    """JAMS annotation of a clip: ``annotations/<split>/<collection>/<clip>.jams``."""
    return out / "annotations" / split / collection / f"{clip_id}.jams"


def _soundfont_names(cfg: BuildConfig) -> List[str]:
    return [cr.resolve_soundfont(f)[0] for f in (cfg.soundfont,) + tuple(cfg.mix_soundfonts)]


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _write_clip(out: Path, split: str, piece: cs.Piece, plan: ClipPlan, y: np.ndarray, events: cr.NoteEvents,
                targets: Dict[str, np.ndarray], cfg: BuildConfig, soundfont: str) -> dict:
    import soundfile as sf

    audio_path, target_path = clip_paths(out, split, piece, plan.clip_id, cfg)
    ann_path = annotation_path(out, split, piece.collection, plan.clip_id)
    names = _soundfont_names(cfg)
    used = sorted({names[plan.fonts.get(int(c), 0)] for c in events.channel}) if len(events) else [names[0]]
    labels = plan.labels
    first_key = next((k for _, _, k, _ in labels.keys if k >= 0), -1) if labels is not None else -1
    audio_path.parent.mkdir(parents=True, exist_ok=True)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "clip_id": plan.clip_id, "path": audio_path.relative_to(out).as_posix(),
        "targets": target_path.relative_to(out).as_posix(), "split": split, "tags": ";".join(plan.tags),
        "piece_id": piece.piece_id, "collection": piece.collection, "title": piece.title,
        "soundfont": soundfont, "programs": ";".join(str(p) for p in plan.orchestration.programs),
        "orchestration": plan.orchestration.mode, "tempo": _fmt(plan.bpm, 2), "beat_ql": _fmt(plan.beat_ql, 4),
        "qpm": _fmt(plan.bpm * plan.beat_ql, 2), "transposition": str(plan.transpose),
        "start_ql": _fmt(plan.start_ql, 4), "duration": _fmt(y.size / cfg.sr, 4), "sr": str(cfg.sr),
        "hop": str(cfg.hop), "n_frames": str(targets["roll"].shape[0]), "gain_db": _fmt(plan.gain_db, 2),
        "snr_db": "" if plan.snr_db is None else _fmt(plan.snr_db, 2),
        "reverb_send": str(plan.effects.reverb_send), "chorus_send": str(plan.effects.chorus_send),
        "pitch_shift_cents": _fmt(plan.pitch_shift_cents, 2), "time_stretch": _fmt(plan.time_stretch, 4),
        "split_key": piece.split_key,
        "annotation": ann_path.relative_to(out).as_posix(),
        "beat_bpm": "" if labels is None or math.isnan(labels.tempo_bpm) else _fmt(labels.tempo_bpm, 2),
        "meter": "" if labels is None else labels.meter_label, "key": ct.KEYS[first_key] if first_key >= 0 else "",
        "drums": f"{plan.drums}:{plan.drum_kit}" if plan.drums else "",
        "room_rt60": "" if plan.room is None else _fmt(plan.room.rt60, 3),
        "compression": "" if plan.compressor is None else _fmt(plan.compressor.ratio, 2),
        "soundfonts": ";".join(used),
    }
    if used != [names[0]]:
        row["soundfont"] = "+".join(used)
    tmp_audio = audio_path.with_name(f".{audio_path.name}.{os.getpid()}.tmp")
    if cfg.audio_format == "flac":
        sf.write(tmp_audio, y, cfg.sr, format="FLAC", subtype="PCM_16")
    else:
        sf.write(tmp_audio, y, cfg.sr, format="WAV", subtype="PCM_16")
    os.replace(tmp_audio, audio_path)
    if cfg.write_midi:
        midi_path = out / "midi" / split / piece.collection / f"{plan.clip_id}.mid"
        midi_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_midi = midi_path.with_name(f".{midi_path.name}.{os.getpid()}.tmp")
        controls = {int(c): {7: 100, 91: plan.effects.reverb_send, 93: plan.effects.chorus_send}
                    for c in sorted(set(int(c) for c in events.channel))}
        cr.write_midi(str(tmp_midi), events, controls)
        os.replace(tmp_midi, midi_path)
    extra = {}
    if labels is not None:
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        doc = ct.annotation(labels, y.size / cfg.sr, {"clip_id": plan.clip_id, "title": piece.title,
                                                      "piece_id": piece.piece_id, "transposition": plan.transpose})
        _atomic_write_text(ann_path, json.dumps(doc, sort_keys=True))
        extra = {name: targets[name] for name in ("beat", "downbeat", "beat_mask", "key", "key_source", "chord")}
        extra.update(beat_times=labels.beat_times.astype(np.float64),
                     beat_position=labels.beat_position.astype(np.int16),
                     beat_chords=labels.chords.astype(np.int16), meter=np.int16(labels.meter),
                     tempo_bpm=np.float32(labels.tempo_bpm), targets_version=np.int64(ct.TARGETS_VERSION))
    tmp_targets = target_path.with_name(f".{target_path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(
        tmp_targets, roll=targets["roll"], chroma=targets["chroma"], onsets=targets["onsets"],
        notes=events.table().astype(np.float32), sr=np.int64(cfg.sr), hop=np.int64(cfg.hop),
        n_samples=np.int64(y.size), meta=np.array(json.dumps(row, sort_keys=True)), **extra,
    )
    os.replace(tmp_targets, target_path)  # the clip is finished once this file exists
    return row


def _read_done(target_path: Path, audio_path: Path) -> Optional[dict]:
    if not (target_path.exists() and audio_path.exists()):
        return None
    try:
        with np.load(target_path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except Exception as error:  # damaged: render again
        logger.warning("cannot read %s (%s): rendering it again", target_path, error)
        return None


# --------------------------------------------------------------------------- workers

_RENDERERS: Dict[Tuple[str, Tuple[str, ...], int], cr.FluidRenderer] = {}


def _renderer(path: str, synth_sr: int, backend: str, extra: Tuple[str, ...] = ()) -> cr.FluidRenderer:
    key = (path, tuple(extra), synth_sr)
    if key not in _RENDERERS:
        _RENDERERS[key] = cr.FluidRenderer(path, synth_sr, backend=backend, extra_soundfonts=extra)
    return _RENDERERS[key]


@dataclasses.dataclass
class PieceResult:
    """What a worker returns for one piece."""

    piece_id: str
    collection: str
    rows: List[dict]
    failure: Optional[Tuple[str, str]] = None  # (stage, message)
    rendered: int = 0
    skipped: int = 0
    fresh: List[bool] = dataclasses.field(default_factory=list)  # per row: rendered now (not reused)


def process_piece(task) -> PieceResult:
    """Parse (or read from cache), plan and render the clips of one piece; never raises.

    Parameters
    ----------
    task : tuple
        ``(piece, split, config_json, out_dir, cache_dir, backend)``.
    """
    piece, split, cfg_json, out_dir, cache_dir, backend = task
    cfg = BuildConfig.from_json(cfg_json)
    out = Path(out_dir)
    result = PieceResult(piece.piece_id, piece.collection, [])
    try:
        score = cs.load_score(piece, cache_dir)
    except cs.ScoreError as error:
        result.failure = ("parse", str(error))
        return result
    except Exception as error:  # music21 can fail in many ways
        result.failure = ("parse", f"{type(error).__name__}: {error}")
        return result
    try:
        plans = plan_piece(piece, score, cfg)
    except Exception as error:
        logger.debug("planning %s failed", piece.piece_id, exc_info=True)
        result.failure = ("plan", f"{type(error).__name__}: {error}")
        return result
    if not plans:
        result.failure = ("plan", "no clip long enough")
        return result
    sf_name, sf_path = cr.resolve_soundfont(cfg.soundfont)
    mix_paths = tuple(cr.resolve_soundfont(f)[1] for f in cfg.mix_soundfonts)
    for plan in plans:
        audio_path, target_path = clip_paths(out, split, piece, plan.clip_id, cfg)
        row = _read_done(target_path, audio_path)
        if row is not None:
            result.rows.append(row)
            result.fresh.append(False)
            result.skipped += 1
            continue
        try:
            y, events, targets = render_clip(plan, _renderer(sf_path, cfg.synth_sr, backend, mix_paths), cfg)
            result.rows.append(_write_clip(out, split, piece, plan, y, events, targets, cfg, sf_name))
            result.fresh.append(True)
            result.rendered += 1
        except Exception as error:
            logger.debug("rendering %s failed", plan.clip_id, exc_info=True)
            result.failure = ("render", f"{plan.clip_id}: {type(error).__name__}: {error}")
            break  # later clips of a piece that fails to render are skipped too
    return result


def _init_worker() -> None:
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("music21").setLevel(logging.ERROR)


# --------------------------------------------------------------------------- build


@dataclasses.dataclass
class BuildReport:
    """Summary of a :func:`build` run.

    ``rendered`` and ``skipped`` count the clips of the corpus (``rendered + skipped ==
    clips``): rendered by this run, or found finished and reused.  ``discarded`` counts
    the clips this run rendered past the ``hours`` cap (workers run ahead) and removed.
    """

    clips: int
    rendered: int
    skipped: int
    seconds: float
    failures: int
    wall_seconds: float
    pieces: int
    discarded: int = 0


def _check_config(out: Path, cfg: BuildConfig) -> None:
    path = out / "build_config.json"
    new = cfg.to_json()
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("corpus_version", 1) != new.get("corpus_version"):
            raise ValueError(
                f"'{out}' holds a corpus of version {old.get('corpus_version', 1)}, this builder writes version "
                f"{new.get('corpus_version')} (score targets, drums, rooms): build into a new --out folder"
            )
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"'{out}' holds a corpus built with other settings (differences in {diff}): "
                f"resume with the same settings, or build into a new --out folder"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".build_config.json.tmp")
    tmp.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_outputs(out: Path, rows: List[dict], failures: List[Tuple[str, str, str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in METADATA_COLUMNS})
    _atomic_write_text(out / "metadata.csv", buf.getvalue())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["piece_id", "collection", "stage", "error"])
    writer.writerows(failures)
    _atomic_write_text(out / "failures.csv", buf.getvalue())
    counts: collections.Counter = collections.Counter()
    by_split: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        for tag in row["tags"].split(";"):
            if tag:
                counts[tag] += 1
                by_split[row["split"]][tag] += 1
    first = rows[0] if rows else {}
    vocab = {
        "tags": sorted(counts),
        "counts": {t: counts[t] for t in sorted(counts)},
        "counts_by_split": {s: {t: c[t] for t in sorted(c)} for s, c in sorted(by_split.items())},
        "n_clips": len(rows),
        "frame_targets": {"roll": 128, "chroma": 12, "onsets": 128, "sr": int(first.get("sr", 0) or 0),
                          "hop": int(first.get("hop", 0) or 0),
                          "frames": "frame t is centred on sample t*hop; T = 1 + n_samples // hop",
                          "beat": 1, "downbeat": 1, "beat_mask": 1, "key": 1, "key_source": 1, "chord": 1},
        "corpus_version": CORPUS_VERSION,
        "targets_version": ct.TARGETS_VERSION,
        "keys": list(ct.KEYS),
        "key_sources": list(ct.KEY_SOURCES),
        "chords": list(ct.CHORDS),
        "chord_qualities": list(ct.CHORD_QUALITIES),
        "meters": list(ct.METERS),
        "mask": ct.MASK,
        "beat_convention": "music21 TimeSignature.beatDuration: quarter in 2/4 3/4 4/4, half in 2/2 3/2, "
                           "dotted quarter in 3/8 6/8 9/8 12/8, dotted half in 6/4; tempo counts these beats",
    }
    _atomic_write_text(out / "vocabulary.json", json.dumps(vocab, indent=2) + "\n")


#: Folders of per-clip files (``<folder>/<split>/<collection>/<clip>.<ext>``).
_CLIP_DIRS = ("audio", "targets", "midi", "annotations")


def _clip_files(out: Path) -> set:
    """Paths (relative to ``out``, POSIX) of the per-clip files now in ``out``, temporaries excluded."""
    found = set()
    for sub in _CLIP_DIRS:
        for root, _, names in os.walk(out / sub):
            for name in names:
                if not name.startswith("."):
                    found.add((Path(root) / name).relative_to(out).as_posix())
    return found


def _remove_unlisted(out: Path, rows: List[dict], before: set) -> int:
    """Remove the clip files written by this run but not listed in ``rows``.

    Workers render ahead of the ``hours`` cap, so a build writes a few clips that it
    does not take; which ones depends on scheduling.  Files present before the run (an
    earlier build with more hours, a crashed clip) are kept.

    Returns
    -------
    int
        The number of finished clips (``.npz``) removed.
    """
    keep = set()
    for row in rows:
        keep.add(row["path"])
        keep.add(row["targets"])
        keep.add(f"midi/{row['split']}/{row['collection']}/{row['clip_id']}.mid")
        if row.get("annotation"):
            keep.add(row["annotation"])
    removed = 0
    parents = set()
    for rel in sorted(_clip_files(out) - before - keep):
        try:
            os.remove(out / rel)
        except OSError:
            continue
        removed += rel.endswith(".npz")
        parents.add((out / rel).parent)
    # folders emptied by the removal (deepest first), up to audio/, targets/, midi/
    stops = {out / sub for sub in _CLIP_DIRS} | {out}
    for folder in sorted(parents, key=lambda f: len(f.parts), reverse=True):
        while folder not in stops:
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = folder.parent
    return removed


def _clean_tmp(out: Path) -> None:
    for path in glob.glob(str(out / "**" / ".*.tmp*"), recursive=True):
        try:
            os.remove(path)
        except OSError:
            pass


def build(out: str, cfg: BuildConfig, *, hours: float, workers: Optional[int] = None,
          cache_dir: Optional[str] = None, backend: str = "auto", progress: bool = False,
          max_pieces: Optional[int] = None) -> BuildReport:
    """Build (or resume) a corpus in ``out``.

    Parameters
    ----------
    out : str
        Output folder (created).
    cfg : BuildConfig
        Content settings; must match ``build_config.json`` when resuming.
    hours : float > 0
        Audio to render: clips are taken in build order while the total is below it.
    workers : int, optional
        Processes; all cores by default.  The content does not depend on it.
    cache_dir : str, optional
        Score cache (see :func:`training.corpus_sources.cache_dir_default`).
    backend : {"auto", "pyfluidsynth", "cli"}
    progress : bool
        Show a tqdm progress bar (seconds of audio).
    max_pieces : int, optional
        Stop after this many pieces of the build order (tests, benchmarks).

    Returns
    -------
    BuildReport

    Raises
    ------
    ValueError
        On bad settings, a test-only soundfont for train/valid, or an ``out`` folder
        built with other settings.
    """
    if not hours > 0:
        raise ValueError(f"hours={hours}: expected a positive number of hours of audio")
    cfg.validate()
    out_path = Path(out)
    _check_config(out_path, cfg)
    _clean_tmp(out_path)
    existing = _clip_files(out_path)
    cache_dir = cache_dir or cs.cache_dir_default()
    workers = max(1, int(workers or os.cpu_count() or 1))
    t0 = time.perf_counter()
    catalog = cs.build_catalog(cfg.collections)
    wanted = set(cfg.splits)
    chosen = [(p, split_of(p.split_key, cfg.seed, cfg.split_fractions)) for p in build_order(catalog, cfg.draw_seed)]
    chosen = [(p, s) for p, s in chosen if s in wanted]
    if max_pieces is not None:
        chosen = chosen[: int(max_pieces)]
    cfg_json = cfg.to_json()
    tasks = ((p, s, cfg_json, str(out_path), cache_dir, backend) for p, s in chosen)
    cap = hours * 3600.0
    rows: List[dict] = []
    failures: List[Tuple[str, str, str, str]] = []
    total = 0.0
    rendered = skipped = pieces = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=round(cap), unit="s", desc=f"rendering {out_path.name or out}", dynamic_ncols=True)
    pool = None
    try:
        if workers > 1:
            # fork is cheapest, but a child forked from a process that has loaded TensorFlow can
            # abort when the garbage collector frees TensorFlow functions it inherited (seen in the
            # test suite): start clean workers through a fork server then
            method = "forkserver" if "tensorflow" in sys.modules else "fork"
            pool = multiprocessing.get_context(method).Pool(workers, initializer=_init_worker)
            results: Iterator[PieceResult] = pool.imap(process_piece, tasks, chunksize=1)
        else:
            results = map(process_piece, tasks)
        for result in results:
            pieces += 1
            if result.failure is not None:
                failures.append((result.piece_id, result.collection, *result.failure))
            for row, fresh in zip(result.rows, result.fresh):
                if total >= cap:
                    break
                rows.append(row)
                total += float(row["duration"])
                rendered += fresh
                skipped += not fresh
                if bar is not None:
                    bar.update(min(round(total), round(cap)) - bar.n)
            if bar is not None:
                bar.set_postfix(clips=len(rows), failed=len(failures), refresh=False)
            if total >= cap:
                break
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    _clean_tmp(out_path)
    discarded = _remove_unlisted(out_path, rows, existing)
    _write_outputs(out_path, rows, failures)
    report = BuildReport(len(rows), rendered, skipped, total, len(failures), time.perf_counter() - t0, pieces,
                         discarded)
    logger.info("corpus %s: %d clips, %.2f h, %d rendered, %d reused, %d rendered past the cap and removed, "
                "%d failed pieces, %.1f s", out, report.clips, total / 3600, rendered, skipped, discarded,
                len(failures), report.wall_seconds)
    return report


# --------------------------------------------------------------------------- stats


def read_metadata(folder: str) -> List[dict]:
    """Rows of ``<folder>/metadata.csv``.

    Raises
    ------
    FileNotFoundError
        If the folder holds no ``metadata.csv``.
    """
    path = Path(folder) / "metadata.csv"
    if not path.exists():
        raise FileNotFoundError(f"no corpus at '{folder}': '{path}' not found (run `python -m training.corpus build`)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


#: Arrays of a version-2 clip's ``.npz`` beyond version 1's.
SCORE_TARGETS = ("beat", "downbeat", "beat_mask", "key", "key_source", "chord", "beat_times", "beat_position",
                 "beat_chords", "meter", "tempo_bpm")


def load_clip_targets(path: str) -> Dict[str, np.ndarray]:
    """Read a clip's ``targets/...npz`` with its score targets.

    Returns
    -------
    dict
        Every array of the file (see the corpus README), ``meta`` decoded to a dict.

    Raises
    ------
    ValueError
        If the file comes from a corpus without score targets (version 1) or of another
        targets version.
    """
    with np.load(path, allow_pickle=False) as data:
        out = {name: data[name] for name in data.files}
    version = int(out["targets_version"]) if "targets_version" in out else None
    if version != ct.TARGETS_VERSION:
        found = "no score targets (corpus version 1)" if version is None else f"targets version {version}"
        raise ValueError(f"'{path}' holds {found}; expected targets version {ct.TARGETS_VERSION} "
                         f"(corpus version {CORPUS_VERSION}): rebuild with `python -m training.corpus build`")
    out["meta"] = json.loads(str(out["meta"]))
    return out


def corpus_stats(folder: str) -> dict:
    """Counts per split and tag, hours, pieces and failures of a built corpus."""
    rows = read_metadata(folder)
    stats: dict = {"folder": str(folder), "clips": len(rows), "hours": 0.0, "splits": {}, "collections": {},
                   "tags": {}, "failures": {"total": 0, "by_stage": {}, "by_collection": {}}}
    per_split: Dict[str, dict] = {}
    tags: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        dur = float(row["duration"])
        stats["hours"] += dur / 3600
        s = per_split.setdefault(row["split"], {"clips": 0, "hours": 0.0, "pieces": set()})
        s["clips"] += 1
        s["hours"] += dur / 3600
        s["pieces"].add(row["piece_id"])
        c = stats["collections"].setdefault(row["collection"], {"clips": 0, "hours": 0.0})
        c["clips"] += 1
        c["hours"] += dur / 3600
        for tag in filter(None, row["tags"].split(";")):
            tags[tag][row["split"]] += 1
    stats["splits"] = {k: {"clips": v["clips"], "hours": round(v["hours"], 4), "pieces": len(v["pieces"])}
                       for k, v in sorted(per_split.items())}
    stats["hours"] = round(stats["hours"], 4)
    for c in stats["collections"].values():
        c["hours"] = round(c["hours"], 4)
    stats["tags"] = {t: dict(sorted(c.items())) for t, c in sorted(tags.items())}
    fail_path = Path(folder) / "failures.csv"
    if fail_path.exists():
        with open(fail_path, newline="", encoding="utf-8") as f:
            fails = list(csv.DictReader(f))
        stats["failures"]["total"] = len(fails)
        stats["failures"]["by_stage"] = dict(collections.Counter(r["stage"] for r in fails))
        stats["failures"]["by_collection"] = dict(collections.Counter(r["collection"] for r in fails))
        stats["failures"]["examples"] = [f"{r['piece_id']}: {r['error'][:120]}" for r in fails[:5]]
    return stats


def format_stats(stats: dict) -> str:
    """Human-readable text of :func:`corpus_stats`."""
    lines = [f"corpus {stats['folder']}: {stats['clips']} clips, {stats['hours']:.3f} h"]
    lines.append("splits:")
    for name, s in stats["splits"].items():
        lines.append(f"  {name:<6} {s['clips']:>6} clips {s['hours']:>8.3f} h {s['pieces']:>6} pieces")
    lines.append("collections:")
    for name, c in sorted(stats["collections"].items()):
        lines.append(f"  {name:<22} {c['clips']:>6} clips {c['hours']:>8.3f} h")
    splits = list(stats["splits"])
    lines.append("tags:" + "".join(f" {s:>7}" for s in splits))
    for tag, counts in stats["tags"].items():
        lines.append(f"  {tag:<30}" + "".join(f" {counts.get(s, 0):>7}" for s in splits))
    f = stats["failures"]
    lines.append(f"failures: {f['total']} pieces " + (f"by stage {f['by_stage']}" if f["total"] else ""))
    for example in f.get("examples", []):
        lines.append(f"  {example}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="render (or resume) a corpus")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--hours", type=float, required=True, help="hours of audio to render")
    b.add_argument("--seed", type=int, default=None, help="build seed (default 0)")
    b.add_argument("--render-seed", type=int, default=None,
                   help="seed of the piece order, excerpts and augmentation (default: --seed); the splits keep "
                        "--seed's, so another value renders the same split afresh")
    b.add_argument("--soundfont", default=None,
                   help="FluidR3 (default), TimGM6mb (test split only) or a path to an .sf2")
    b.add_argument("--mix-soundfonts", default=None,
                   help="comma-separated further training soundfonts (names or .sf2/.sf3 paths); a clip mixes "
                        "them per channel with probability augment.p_soundfont_mix (pyfluidsynth only)")
    b.add_argument("--split", default=None,
                   help="comma-separated splits to render (default train,valid,test); "
                        "the split of a piece depends only on --seed")
    b.add_argument("--split-fractions", default=None, help="train,valid,test fractions of pieces (default 0.8,0.1,0.1)")
    b.add_argument("--sr", type=int, default=None, help="output sample rate in Hz (default 16000)")
    b.add_argument("--synth-sr", type=int, default=None,
                   help="FluidSynth rate (default max(sr, 32000): synthesis at 16 kHz can alias)")
    b.add_argument("--hop", type=int, default=None, help="hop of the frame targets in samples at --sr (default 320)")
    b.add_argument("--clip-seconds", type=float, default=None, help="longest clip (default 30)")
    b.add_argument("--min-clip-seconds", type=float, default=None, help="shortest clip (default 4)")
    b.add_argument("--max-clips-per-piece", type=int, default=None, help="excerpts per piece (default 3)")
    b.add_argument("--format", choices=("flac", "wav"), default=None, help="audio format, 16-bit (default flac)")
    b.add_argument("--collections", default=None, help="comma-separated collection names (default all; "
                                                         "see the `collections` command)")
    b.add_argument("--pitch-shift-prob", type=float, default=None, help="probability of an audio detune (+-40 cents)")
    b.add_argument("--time-stretch-prob", type=float, default=None, help="probability of an audio time stretch")
    b.add_argument("--write-midi", action="store_true", help="also write the rendered MIDI of each clip")
    b.add_argument("--config", default=None, help="JSON file of BuildConfig fields (command-line flags win)")
    b.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    b.add_argument("--cache-dir", default=None, help="parsed-score cache (default $MIRZOO_CORPUS_CACHE or "
                                                      "~/.cache/mirzoo/corpus-scores)")
    b.add_argument("--backend", choices=("auto", "pyfluidsynth", "cli"), default="auto")
    b.add_argument("--max-pieces", type=int, default=None, help=argparse.SUPPRESS)
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = sub.add_parser("stats", help="counts per tag and split, hours, failures")
    s.add_argument("folder")
    s.add_argument("--json", action="store_true", help="print JSON")
    c = sub.add_parser("collections", help="list the collections of the music21 corpus and their sizes")
    c.add_argument("--seed", type=int, default=0)
    return parser


def _config_from_args(args) -> BuildConfig:
    """BuildConfig from ``--config`` (if any), then the flags given on the command line."""
    data = {}
    if args.config:
        data = json.loads(Path(args.config).read_text())
    cfg = BuildConfig.from_json(data)
    simple = {"seed": "seed", "render_seed": "render_seed", "sr": "sr", "hop": "hop", "soundfont": "soundfont",
              "clip_seconds": "clip_seconds", "min_clip_seconds": "min_clip_seconds", "max_clips_per_piece": "max_clips_per_piece",
              "format": "audio_format", "synth_sr": "synth_sr"}
    for flag, field in simple.items():
        if getattr(args, flag) is not None:
            setattr(cfg, field, getattr(args, flag))
    if args.synth_sr is None and "synth_sr" not in data:
        cfg.synth_sr = max(cfg.sr, 32000)
    cfg.min_clip_seconds = min(cfg.min_clip_seconds, cfg.clip_seconds)
    if args.split is not None:
        cfg.splits = tuple(s.strip() for s in args.split.split(",") if s.strip())
    if args.split_fractions is not None:
        cfg.split_fractions = tuple(float(x) for x in args.split_fractions.split(","))
    if args.mix_soundfonts is not None:
        cfg.mix_soundfonts = tuple(f.strip() for f in args.mix_soundfonts.split(",") if f.strip())
    if args.collections:
        cfg.collections = tuple(c.strip() for c in args.collections.split(",") if c.strip())
    cfg.write_midi = bool(args.write_midi or cfg.write_midi)
    if args.pitch_shift_prob is not None:
        cfg.augment.p_pitch_shift = args.pitch_shift_prob
    if args.time_stretch_prob is not None:
        cfg.augment.p_time_stretch = args.time_stretch_prob
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "build":
            cfg = _config_from_args(args)
            report = build(args.out, cfg, hours=args.hours, workers=args.workers, cache_dir=args.cache_dir,
                           backend=args.backend, progress=not args.no_progress, max_pieces=args.max_pieces)
            print(f"{report.clips} clips, {report.seconds / 3600:.3f} h of audio "
                  f"({report.rendered} rendered, {report.skipped} already done), "
                  f"{report.failures} failed pieces, {report.wall_seconds:.1f} s wall; "
                  f"see `python -m training.corpus stats {args.out}`")
        elif args.command == "stats":
            stats = corpus_stats(args.folder)
            print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        else:
            catalog = cs.build_catalog()
            counts = collections.Counter(p.collection for p in catalog)
            splits = collections.Counter((p.collection, split_of(p.split_key, args.seed)) for p in catalog)
            for coll in cs.COLLECTIONS:
                print(f"{coll.name:<22} {counts[coll.name]:>6} pieces  weight {coll.weight:<4} "
                      + " ".join(f"{s}={splits[(coll.name, s)]}" for s in SPLITS))
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`
        sys.stdout = open(os.devnull, "w")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
