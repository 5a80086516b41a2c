"""Score-derived targets of the corpus (training.corpus_targets) on tiny scores built with music21.

Expected beats come from music21's own tempo mapping (``secondsMap``) of notes placed on
the beats, expected keys and chords from the scores' construction (I-IV-V7-I in C).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

music21 = pytest.importorskip("music21")

from music21 import chord, duration, key, meter, note, stream, tempo  # noqa: E402

from training import corpus as tc  # noqa: E402
from training import corpus_render as cr  # noqa: E402
from training import corpus_sources as cs  # noqa: E402
from training import corpus_targets as ct  # noqa: E402


# --------------------------------------------------------------------------- score builders


def _part(measures, *, ts=None, marks=(), keys=(), pickup=None):
    """A one-part score: ``measures`` are lists of music21 notes/chords/rests, ``marks``
    ``(measure index, MetronomeMark)``, ``keys`` ``(measure index, Key)``."""
    part = stream.Part()
    for i, content in enumerate(measures):
        m = stream.Measure(number=i + (0 if pickup else 1))
        if i == 0 and ts is not None:
            m.insert(0, meter.TimeSignature(ts))
        for index, mark in marks:
            if index == i:
                m.insert(0, mark)
        for index, k in keys:
            if index == i:
                m.insert(0, k)
        for element in content:
            m.append(element)
        if i == 0 and pickup:
            m.paddingLeft = pickup
        part.append(m)
    score = stream.Score()
    score.insert(0, part)
    return score


def _notes(pitch, *durations):
    out = []
    for d in durations:
        n = note.Note(pitch)
        n.quarterLength = d
        out.append(n)
    return out


def _chord(pitches, ql):
    c = chord.Chord(pitches)
    c.quarterLength = ql
    return c


def _reference_seconds(score):
    """music21's own clock time of every note (an independent tempo map)."""
    return sorted(float(e["offsetSeconds"]) for e in score.flatten().secondsMap
                  if isinstance(e["element"], note.NotRest))


# --------------------------------------------------------------------------- beats and tempo


def test_beats_three_four_with_tempo_change():
    marks = [(0, tempo.MetronomeMark(number=120)), (2, tempo.MetronomeMark(number=60))]
    score = _part([_notes("C4", 1, 1, 1) for _ in range(4)], ts="3/4", marks=marks)
    sd = cs.extract_score(score)
    assert sd.grid.has_meter and sd.grid.uncertain == []
    np.testing.assert_allclose(sd.grid.times, np.arange(12.0))
    assert sd.grid.position.tolist() == [1, 2, 3] * 4
    tmap = tc.clip_tempo_map(sd, 0.0, 0.5, True, 1.0, 1.0)
    labels = ct.clip_labels(sd.grid, sd.chords, sd.keys, sd.time_signatures, tmap, 0.0, 12.0, 0)
    reference = _reference_seconds(score)  # a note on every beat
    np.testing.assert_allclose(labels.beat_times, reference, atol=1e-9)
    np.testing.assert_allclose(labels.beat_times, [0, .5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8])
    mir_eval = pytest.importorskip("mir_eval")
    assert mir_eval.beat.f_measure(np.asarray(reference), labels.beat_times) == 1.0
    assert labels.meter_label == "3/4" and ct.METERS[labels.meter] == "3/4"
    assert math.isnan(labels.tempo_bpm)  # two tempi in the clip: masked, not averaged
    # a clip inside the first tempo has one: 120 quarter notes per minute
    first = ct.clip_labels(sd.grid, sd.chords, sd.keys, sd.time_signatures,
                           tc.clip_tempo_map(sd, 0.0, 0.5, True, 1.0, 1.0), 0.0, 6.0, 0)
    assert first.tempo_bpm == pytest.approx(120.0)
    frames = ct.frame_labels(labels, 1 + int(9.0 * 50), 16000, 320)
    assert np.flatnonzero(frames["beat"]).tolist() == [int(round(t * 50)) for t in reference]
    assert np.flatnonzero(frames["downbeat"]).tolist() == [0, 75, 150, 300]
    assert frames["beat_mask"][: 9 * 50].all()


def test_beats_six_eight_pickup_and_tempo_change():
    dotted = duration.Duration(1.5)
    marks = [(0, tempo.MetronomeMark(number=80, referent=dotted)),
             (3, tempo.MetronomeMark(number=120, referent=duration.Duration(1.5)))]
    bars = [_notes("G4", 0.5)] + [_notes("A4", 1.5, 1.5) for _ in range(4)]
    score = _part(bars, ts="6/8", marks=marks, pickup=2.5)
    sd = cs.extract_score(score)
    assert sd.time_signatures[0][1:] == (6, 8, 1.5)
    # the eighth-note pickup holds no beat; beats are dotted quarters from the first full bar
    np.testing.assert_allclose(sd.grid.times, [0.5, 2.0, 3.5, 5.0, 6.5, 8.0, 9.5, 11.0])
    assert sd.grid.position.tolist() == [1, 2] * 4
    qpm = [m[1] for m in sd.tempo_marks]
    assert qpm == [120.0, 180.0]  # dotted quarter = 80 and 120
    tmap = tc.clip_tempo_map(sd, 0.0, 60.0 / qpm[0], True, 1.0, 1.5)
    labels = ct.clip_labels(sd.grid, sd.chords, sd.keys, sd.time_signatures, tmap, 0.0, 12.5, 0)
    reference = _reference_seconds(score)[1:]  # every note after the pickup sits on a beat
    np.testing.assert_allclose(labels.beat_times, reference, atol=1e-9)
    np.testing.assert_allclose(labels.beat_times, [0.25, 1.0, 1.75, 2.5, 3.25, 3.75, 4.25, 4.75])
    assert labels.meter_label == "6/8"
    # tempo counts dotted quarters: 80 in the first two bars
    bars12 = ct.clip_labels(sd.grid, sd.chords, sd.keys, sd.time_signatures,
                            tc.clip_tempo_map(sd, 0.5, 0.5, True, 1.0, 1.5), 0.5, 6.5, 0)
    assert bars12.tempo_bpm == pytest.approx(80.0)
    # time stretch: every time divided by the rate, tempo multiplied
    stretched = ct.clip_labels(sd.grid, sd.chords, sd.keys, sd.time_signatures,
                               tc.clip_tempo_map(sd, 0.5, 0.5, True, 1.0, 1.5), 0.5, 6.5, 0, 1.25)
    np.testing.assert_allclose(stretched.beat_times, bars12.beat_times / 1.25)
    assert stretched.tempo_bpm == pytest.approx(100.0)


def test_beat_grid_split_bars_and_uncertain_measures():
    sig = [(0.0, 4, 4, 1.0)]
    # a bar split in two measures (as a repeat sign splits it) keeps counting
    grid = ct.beat_grid([(0, 4, 0), (4, 1, 0), (5, 3, 0), (8, 4, 0)], sig)
    np.testing.assert_allclose(grid.times, np.arange(12.0))
    assert grid.position.tolist() == [1, 2, 3, 4] * 3
    assert grid.uncertain == []
    # a measure that fits nothing gets no beats and is masked
    grid = ct.beat_grid([(0, 4, 0), (4, 3, 0), (7, 4, 0)], sig)
    np.testing.assert_allclose(grid.times, [0, 1, 2, 3, 7, 8, 9, 10])
    assert grid.uncertain == [(4.0, 7.0)]
    # music before the first time signature is not guessed
    grid = ct.beat_grid([(0, 4, 0), (4, 4, 0)], [(4.0, 4, 4, 1.0)])
    assert grid.uncertain == [(0.0, 4.0)] and grid.times.tolist() == [4, 5, 6, 7]
    # last measure completing a pickup: counted from its start
    grid = ct.beat_grid([(0, 1, 0), (1, 3, 0), (4, 3, 0)], [(0.0, 3, 4, 1.0)])
    assert grid.position.tolist() == [3, 1, 2, 3, 1, 2, 3]


def test_no_time_signature_masks_beats_meter_and_tempo():
    part = stream.Part()
    for n in _notes("C4", 1, 1, 1, 1, 1, 1):
        part.append(n)
    score = stream.Score()
    score.insert(0, part)
    sd = cs.extract_score(score)
    assert not sd.grid.has_meter and sd.grid.times.size == 0
    tmap = tc.clip_tempo_map(sd, 0.0, 0.5, False, 1.0, 1.0)
    labels = ct.clip_labels(sd.grid, sd.chords, sd.keys, sd.time_signatures, tmap, 0.0, 6.0, 0)
    assert labels.meter == ct.MASK and labels.meter_label == "" and math.isnan(labels.tempo_bpm)
    frames = ct.frame_labels(labels, 151, 16000, 320)
    assert not frames["beat_mask"].any() and not frames["beat"].any()
    assert (frames["chord"] == ct.MASK).all()


def test_uncertain_measure_masked_in_frames():
    grid = ct.beat_grid([(0, 4, 0), (4, 3, 0), (7, 4, 0)], [(0.0, 4, 4, 1.0)])
    tmap = ct.TempoMap(0.0, [(0.0, 0.5)])
    labels = ct.clip_labels(grid, np.full(grid.times.size, ct.NO_CHORD, np.int16), [], [(0.0, 4, 4, 1.0)],
                            tmap, 0.0, 11.0, 0)
    frames = ct.frame_labels(labels, 1 + int(5.5 * 50), 16000, 320)
    t = np.arange(frames["beat_mask"].size) / 50
    assert not frames["beat_mask"][(t >= 2.0) & (t < 3.5)].any()
    assert frames["beat_mask"][(t < 1.98) | ((t > 3.52) & (t < 5.5))].all()


# --------------------------------------------------------------------------- key and chords


def _cadence(repeats=4):
    bars = []
    for _ in range(repeats):
        bars.append([_chord(["C3", "E4", "G4", "C5"], 2), _chord(["F3", "F4", "A4", "C5"], 2)])
        bars.append([_chord(["G3", "F4", "B4", "D5"], 2), _chord(["C3", "E4", "G4", "C5"], 2)])
    return bars


def test_chords_one_four_five7_one_exact_labels():
    score = _part(_cadence(1), ts="4/4")
    sd = cs.extract_score(score)
    labels = [ct.chord_label(c) for c in sd.chords]
    assert labels == ["C:maj", "C:maj", "F:maj", "F:maj", "G:7", "G:7", "C:maj", "C:maj"]
    mir_eval = pytest.importorskip("mir_eval")
    roots = [mir_eval.chord.encode(lab)[0] for lab in labels]
    assert roots == [0, 0, 5, 5, 7, 7, 0, 0]
    # transposed up a whole tone
    up = [ct.chord_label(ct.transpose_chord(int(c), 2)) for c in sd.chords]
    assert up == ["D:maj", "D:maj", "G:maj", "G:maj", "A:7", "A:7", "D:maj", "D:maj"]


def test_chords_no_chord_and_masks():
    rest = note.Rest()
    rest.quarterLength = 1
    bars = [[_chord(["C4", "E4"], 1), _chord(["C4", "F4", "G4"], 1), rest, _chord(["B3", "D4", "F4", "A-4"], 1)],
            [_chord(["C4", "E4", "G#4"], 1), _chord(["B3", "D4", "F4", "A4"], 1), _chord(["C4", "E-4", "G4"], 1),
             _chord(["C4", "E4", "G4", "B4"], 1)]]
    sd = cs.extract_score(_part(bars, ts="4/4"))
    labels = [ct.chord_label(c) for c in sd.chords]
    # dyad and sus4 are not in the vocabulary: masked ("X"), never guessed; a rest is "N"
    assert labels == ["X", "X", "N", "B:dim7", "C:aug", "B:hdim7", "C:min", "C:maj7"]
    assert sd.chords[0] == ct.MASK


def test_passing_tone_uses_the_slice_on_the_beat():
    # beat 1: C major held, an upper voice moves E -> F (passing); the slice on the beat is C major
    bars = [[_chord(["C3", "G3"], 4)], ]
    score = _part(bars, ts="4/4")
    upper = stream.Part()
    m = stream.Measure(number=1)
    for p, ql in (("E4", 0.5), ("F4", 0.5), ("E4", 3.0)):
        m.append(_notes(p, ql)[0])
    upper.append(m)
    score.insert(0, upper)
    sd = cs.extract_score(score)
    assert [ct.chord_label(c) for c in sd.chords] == ["C:maj"] * 4


def test_written_key_and_analysis_with_sources():
    bars = _cadence(4)
    written = _part(bars, ts="4/4", keys=[(0, key.Key("a"))])
    sd = cs.extract_score(written, trust_written_key=True)
    assert [(ct.KEYS[k.key], k.source) for k in sd.keys] == [("A minor", "written")]
    # the same score from a collection whose written keys are not trusted: analysed
    sd = cs.extract_score(written, trust_written_key=False)
    assert {(ct.KEYS[k.key], k.source) for k in sd.keys} == {("C major", "analysis")}
    assert sd.keys[0].start == 0.0 and sd.keys[-1].end == pytest.approx(32.0)
    # a modal written key is not a major/minor label: analysed too
    sd = cs.extract_score(_part(bars, ts="4/4", keys=[(0, key.Key("d", "dorian"))]), trust_written_key=True)
    assert {k.source for k in sd.keys} == {"analysis"}
    # transposition moves the tonic; frames carry the source
    sd = cs.extract_score(written, trust_written_key=True)
    tmap = ct.TempoMap(0.0, [(0.0, 0.5)])
    labels = ct.clip_labels(sd.grid, sd.chords, sd.keys, sd.time_signatures, tmap, 0.0, 32.0, 2)
    frames = ct.frame_labels(labels, 16 * 50, 16000, 320)
    assert set(frames["key"].tolist()) == {ct.KEYS.index("B minor")}
    assert set(frames["key_source"].tolist()) == {ct.KEY_SOURCES.index("written")}


def test_key_analysis_masks_thin_or_ambiguous_material():
    assert ct.analyse_key(np.eye(12)[0] * 3.0) is None          # too little music
    assert ct.analyse_key(np.ones(12) * 4.0) is None            # chromatic: every key alike
    c_major = np.array([6, 0, 2, 0, 4, 2, 0, 5, 0, 2, 0, 1], dtype=float)
    assert ct.KEYS[ct.analyse_key(c_major)] == "C major"
    # a masked window is recorded as such, with no label
    sd = cs.extract_score(_part([_notes("C4", 1, 1, 1, 1)], ts="4/4"))
    assert [(k.key, k.source) for k in sd.keys] == [(ct.MASK, "none")]


def test_spelling_helpers_round_trip():
    for name in ("C", "G", "F#", "B-", "E--", "A#"):
        p = music21.pitch.Pitch(name)
        f = ct.fifths_of(p.step, p.accidental.alter if p.accidental else 0.0)
        assert ct.name_of_fifths(f) == name and ct.pc_of_fifths(f) == p.pitchClass


# --------------------------------------------------------------------------- clip planning


def _jig_piece():
    bars = [_notes("D4", 0.5)] + [_notes(p, 1.5, 1.5) for p in ("D4", "F#4", "A4", "G4", "E4", "D4", "A4", "D4")]
    score = _part(bars, ts="6/8", pickup=2.5, keys=[(0, key.Key("D"))])
    sd = cs.extract_score(score, trust_written_key=True)
    piece = cs.Piece("oneills-1850/99999", "oneills-1850", "x.abc", tags=(
        "collection:oneills-1850", "style:irish-folk", "tune:jig"), split_key="t")
    return piece, sd


def test_drums_follow_the_beat_grid():
    piece, sd = _jig_piece()
    cfg = tc.BuildConfig(clip_seconds=30.0, max_clips_per_piece=1)
    cfg.augment.p_drums_dance = 1.0
    plans = tc.plan_piece(piece, sd, cfg)
    assert plans
    plan = plans[0]
    drums = plan.events.channel == cr.DRUM_CHANNEL
    assert drums.any() and plan.drums in cr.DRUM_KITS and plan.drum_kit in cr.DRUM_KITS[plan.drums]
    assert "percussion:drums" in plan.tags
    beats, pos = plan.labels.beat_times, plan.labels.beat_position
    assert beats.size == 16 and pos.tolist() == [1, 2] * 8
    hits = plan.events.onset[drums]
    # every beat has a hit, every hit is on a beat or a third of one (6/8: beats divided in three)
    assert np.min(np.abs(beats[:, None] - hits[None, :]), axis=1).max() < 1e-9
    beat_len = np.diff(beats).mean()
    grid = (beats[:, None] + np.arange(3)[None, :] * beat_len / 3).ravel()
    assert np.min(np.abs(hits[:, None] - grid[None, :]), axis=1).max() < 1e-6
    # drums are not pitched notes: the pitch targets ignore them
    targets = cr.frame_targets(plan.events, int(plan.duration * 16000), 16000, 320)
    pitched = cr.frame_targets(cr.NoteEvents(*(getattr(plan.events, f)[~drums] for f in (
        "onset", "offset", "pitch", "velocity", "channel", "program"))), int(plan.duration * 16000), 16000, 320)
    assert np.array_equal(targets["roll"], pitched["roll"])
    # never drums on art music
    bach = cs.Piece("bach-chorales/x", "bach-chorales", "x", tags=("collection:bach-chorales", "style:baroque"))
    assert tc.drum_probability(bach, cfg.augment) == 0.0


def test_plans_are_deterministic_and_seeded():
    piece, sd = _jig_piece()
    cfg = tc.BuildConfig(max_clips_per_piece=1)
    a, b = tc.plan_piece(piece, sd, cfg)[0], tc.plan_piece(piece, sd, cfg)[0]
    assert np.array_equal(a.events.table(), b.events.table())
    assert np.array_equal(a.labels.beat_times, b.labels.beat_times) and a.labels.keys == b.labels.keys
    assert (a.room, a.compressor, a.drums, a.fonts) == (b.room, b.compressor, b.drums, b.fonts)
    other = [tc.plan_piece(piece, sd, tc.BuildConfig(seed=s, max_clips_per_piece=1))[0] for s in range(1, 6)]
    assert any(o.transpose != a.transpose or o.bpm != a.bpm for o in other)
    # labels follow the clip's transposition and tempo
    for plan in [a] + other:
        expected_key = (ct.KEYS.index("D major") + plan.transpose) % 12
        assert {k for _, _, k, _ in plan.labels.keys} == {expected_key}
        assert plan.labels.tempo_bpm == pytest.approx(plan.bpm * plan.beat_ql / 1.5)


# --------------------------------------------------------------------------- room, dynamics, files


def test_room_response_is_aligned_and_seeded():
    pytest.importorskip("pyroomacoustics")
    room = cr.draw_room(np.random.default_rng(3), (0.3, 0.8))
    assert room == cr.draw_room(np.random.default_rng(3), (0.3, 0.8))
    h = cr.room_impulse_response(room, 16000)
    assert np.argmax(np.abs(h)) == 0 and h[0] == pytest.approx(1.0)
    assert np.array_equal(h, cr.room_impulse_response(room, 16000))
    y = np.zeros(16000, np.float32)
    y[4000] = 1.0
    wet = cr.convolve_room(y, h)
    assert wet.shape == y.shape and int(np.argmax(np.abs(wet))) == 4000  # no delay against the labels
    assert np.count_nonzero(np.abs(wet[4001:]) > 1e-4) > 100  # a reverberant tail


def test_every_drawn_room_is_feasible():
    """A large room with a short drawn RT60 (absorption above 1) is raised to Sabine's floor; others keep their draw."""
    pra = pytest.importorskip("pyroomacoustics")
    raised = kept = 0
    for seed in range(300):
        room = cr.draw_room(np.random.default_rng(seed), (0.2, 1.2))
        floor = cr.min_rt60(room.dims)
        assert room.rt60 >= floor
        absorption, _ = pra.inverse_sabine(room.rt60, list(room.dims))  # raised "room may be too large" before
        assert 0 < absorption <= 1
        rng = np.random.default_rng(seed)
        length = rng.uniform(3.0, 20.0)
        rng.uniform(3.0, min(15.0, length)), rng.uniform(2.5, 8.0)  # the draws before the RT60
        drawn = float(rng.uniform(0.2, 1.2))
        if drawn < floor:
            raised += 1
            assert room.rt60 == pytest.approx(1.01 * floor)
            big = room
        else:
            kept += 1
            assert room.rt60 == drawn
    assert raised > 0 and kept > 0
    h = cr.room_impulse_response(big, 16000)  # a raised room renders
    assert h[0] == pytest.approx(1.0) and np.all(np.isfinite(h))


def test_compressor_reduces_dynamics():
    t = np.arange(32000) / 16000
    y = np.sin(2 * np.pi * 220 * t).astype(np.float32) * np.where(t < 1.0, 0.05, 0.8).astype(np.float32)
    out = cr.compress(y, 16000, cr.Compressor(threshold_db=-20.0, ratio=4.0, attack_ms=5.0, release_ms=100.0))
    ratio_in = np.abs(y[20000:30000]).max() / np.abs(y[4000:14000]).max()
    ratio_out = np.abs(out[20000:30000]).max() / np.abs(out[4000:14000]).max()
    assert ratio_in == pytest.approx(16.0, rel=1e-3) and ratio_out < ratio_in / 2
    assert np.array_equal(out[4000:14000], y[4000:14000]) or np.allclose(out[4000:14000], y[4000:14000], rtol=1e-3)
    limited = cr.limit(np.linspace(-3, 3, 101).astype(np.float32))
    assert np.abs(limited).max() <= 0.98 and np.all(np.diff(limited) >= 0)


def test_annotation_is_valid_jams(tmp_path):
    jams = pytest.importorskip("jams")
    piece, sd = _jig_piece()
    plan = tc.plan_piece(piece, sd, tc.BuildConfig(max_clips_per_piece=1))[0]
    doc = ct.annotation(plan.labels, plan.duration, {"clip_id": plan.clip_id, "title": "t"})
    path = tmp_path / "a.jams"
    path.write_text(json.dumps(doc))
    j = jams.load(str(path), validate=True)
    beats = j.search(namespace="beat")[0]
    assert [o.time for o in beats.data] == pytest.approx(plan.labels.beat_times.tolist())
    assert j.search(namespace="tag_open")[0].data[0].value == "6/8"
    k = j.search(namespace="key_mode")[0].data[0].value
    assert k == ct.KEYS[plan.labels.keys[0][2]].replace(" ", ":")


def test_old_corpus_version_refused(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    old = tc.BuildConfig().to_json()
    old.pop("corpus_version")
    old.pop("mix_soundfonts")
    (out / "build_config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="version 1.*version 2"):
        tc.build(str(out), tc.BuildConfig(), hours=0.001, workers=1)


def test_forbidden_soundfonts_refused():
    with pytest.raises(cr.SoundfontPolicyError, match="reserved"):
        cr.resolve_soundfont("/usr/share/sounds/sf2/freepats-general-midi.sf2")
    with pytest.raises(cr.SoundfontPolicyError, match="test"):
        tc.BuildConfig(mix_soundfonts=("TimGM6mb",)).validate()


def test_load_clip_targets_refuses_version_one(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, roll=np.zeros((3, 128), np.uint8), meta=np.array("{}"))
    with pytest.raises(ValueError, match="no score targets.*version 1"):
        tc.load_clip_targets(str(path))
    np.savez(path, roll=np.zeros((3, 128), np.uint8), meta=np.array('{"a": 1}'), targets_version=np.int64(1))
    assert tc.load_clip_targets(str(path))["meta"] == {"a": 1}


def test_drums_audible_on_the_beats():
    """Render only the drum part of a planned clip: the attacks fall on the beat targets."""
    if not Path(cr.SOUNDFONTS["FluidR3"]).is_file():
        pytest.skip("FluidR3 missing")
    try:
        renderer = cr.FluidRenderer(cr.SOUNDFONTS["FluidR3"], 16000)
    except (ImportError, RuntimeError) as error:  # pragma: no cover - environment
        pytest.skip(f"no FluidSynth: {error}")
    piece, sd = _jig_piece()
    cfg = tc.BuildConfig(max_clips_per_piece=1)
    cfg.augment.p_drums_dance = 1.0
    plan = tc.plan_piece(piece, sd, cfg)[0]
    drums = plan.events.channel == cr.DRUM_CHANNEL
    events = cr.NoteEvents(*(getattr(plan.events, f)[drums] for f in (
        "onset", "offset", "pitch", "velocity", "channel", "program")))
    y = renderer.render(events, int(plan.duration * 16000), cr.Effects())
    y = y.astype(np.float64)

    def rise(times):
        """RMS of the 25 ms after each time over the RMS of the 25 ms before it."""
        out = []
        for t in times:
            i = int(round(t * 16000))
            before = np.sqrt(np.mean(y[max(0, i - 400):i] ** 2) + 1e-12)
            out.append(np.sqrt(np.mean(y[i:i + 400] ** 2) + 1e-12) / before)
        return np.array(out)

    beats = plan.labels.beat_times[1:]  # the first has silence before it
    assert rise(beats).min() > 3.0 and np.median(rise(beats)) > 20.0  # an attack on every beat
    # the same measure 40 ms off the beats finds none: it is the beat that is heard
    assert np.median(rise(beats + 0.04)) < 1.0 and np.median(rise(beats - 0.04)) < 1.0
