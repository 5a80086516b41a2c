"""Pure helpers of benchmarks/chords.py (templates, labels, alignment); no rendering, no model."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import chords as ch


def test_templates_shape_and_roots():
    templates, roots, names = ch.chord_templates()
    assert templates.shape == (48, 12) and roots.shape == (48,)
    np.testing.assert_allclose(np.linalg.norm(templates, axis=1), 1.0)
    assert names[0] == "C:maj" and names[12 + 9] == "A:min" and names[36 + 7] == "G:dom7"
    assert np.count_nonzero(templates[36 + 7]) == 4


@pytest.mark.parametrize("pcs,root", [((0, 4, 7), 0), ((9, 0, 4), 9), ((7, 11, 2, 5), 7), ((11, 2, 5), 11), ((6, 9, 1), 6)])
def test_decode_roots_picks_the_chord(pcs, root):
    templates, roots, _ = ch.chord_templates()
    chroma = np.zeros((2, 12))
    chroma[0, list(pcs)] = 1.0
    chroma[0] += 0.05  # a little energy everywhere
    pred = ch.decode_roots(chroma, templates, roots)
    assert pred[0] == root
    assert pred[1] == -1  # silent frame: no root


def test_median_smooth_removes_a_one_frame_blip():
    c = np.zeros((9, 12), dtype=np.float32)
    c[:, 0] = 1.0
    c[4, 0], c[4, 5] = 0.0, 1.0
    out = ch.median_smooth(c, 3)
    assert out[4, 0] == 1.0 and out[4, 5] == 0.0
    assert ch.median_smooth(c, 1) is c


def test_label_frames_half_open_segments():
    times = ch.frame_times_ql(11, qpm=60.0, sr=100, hop=50)  # 0.5 s frames = 0.5 quarter notes
    labels = ch.label_frames([(0.5, 2.0, 7), (2.0, 3.0, 0)], times)
    assert labels.tolist() == [-1, 7, 7, 7, 0, 0, -1, -1, -1, -1, -1]


def test_bar_starts_pickup_and_split_bars():
    # pickup of 1 beat in 3/4 with padding recorded, bar 7 split 2 + 1 around a repeat sign
    rows = [(0, 0.0, 2.0, 1.0, 3.0), (1, 1.0, 0.0, 3.0, 3.0), (7, 19.0, 0.0, 2.0, 3.0), (7, 21.0, 0.0, 1.0, 3.0),
            (8, 22.0, 0.0, 3.0, 3.0)]
    starts = ch.bar_starts(rows)
    assert starts == {0: -2.0, 1: 1.0, 7: 19.0, 8: 22.0}
    # same pickup without recorded padding
    assert ch.bar_starts([(0, 0.0, 0.0, 1.0, 3.0), (1, 1.0, 0.0, 3.0, 3.0)])[0] == -2.0


def test_bach_score_candidates():
    assert ch.bach_score_candidates("269") == ["bwv269"]
    assert ch.bach_score_candidates("248(2).12") == ["bwv248.12-2", "bwv248.12", "bwv248"]
    assert ch.bach_score_candidates("41.6s") == ["bwv41.6", "bwv41"]
    assert ch.bach_score_candidates("?") == []


def test_nominal_offsets_fix_a_doubled_rest_bar():
    good = [(4.0, 4.0)] * 4
    bad = [(4.0, 4.0), (8.0, 4.0), (4.0, 4.0), (4.0, 4.0)]
    np.testing.assert_allclose(ch.nominal_offsets([good, bad, good]), [0.0, 4.0, 8.0, 12.0])
    np.testing.assert_allclose(ch.nominal_offsets([bad, bad]), [0.0, 4.0, 8.0, 12.0])  # capped at the bar
    pickup = [(1.0, 3.0), (3.0, 3.0)]
    np.testing.assert_allclose(ch.nominal_offsets([pickup, pickup]), [0.0, 1.0])
    assert ch.nominal_offsets([good, good[:3]]) is None


def test_offset_map():
    f = ch.offset_map([0.0, 4.0, 12.0], [0.0, 4.0, 8.0])
    assert f(2.0) == 2.0 and f(13.0) == 9.0 and f(12.0) == 8.0


def test_expanded_order_skips_the_repeated_pickup():
    d = [1.0, 4.0, 4.0, 4.0]
    bars = [4.0] * 4
    assert ch.expanded_order(d, bars, [False, False, True, False], [False] * 4) == [0, 1, 2, 1, 2, 3]
    assert ch.expanded_order([4.0] * 4, bars, [False, True, False, True], [False, False, True, False]) == [0, 1, 0, 1, 2, 3, 2, 3]


def test_chord_segments_and_tone_share():
    chords = [(4.0, 8.0, 7, [7, 11, 2], "V"), (0.0, 4.0, 0, [0, 4, 7], "I")]
    segs = ch.chord_segments(chords, end=6.0)
    assert [(s[0], s[1], s[2]) for s in segs] == [(0.0, 4.0, 0), (4.0, 6.0, 7)]
    notes = np.array([[0, 0.0, 4.0, 60, 80], [0, 0.0, 4.0, 64, 80], [0, 4.0, 2.0, 67, 80], [1, 4.0, 2.0, 59, 80]], float)
    share, labelled = ch.chord_tone_share(segs, notes)
    assert share == pytest.approx(1.0) and labelled == pytest.approx(1.0)
    assert ch.chord_tone_share(segs, notes, transpose=2)[0] < 0.5


def test_note_fingerprint_ignores_key_and_timing():
    pitches = [60, 62, 64, 65, 67, 65, 64, 62, 60]
    a = np.array([[0, float(i), 1, p] for i, p in enumerate(pitches)])
    b = np.array([[0, 3.0 + 2 * i, 1, p + 5] for i, p in enumerate(pitches)])  # later, slower, a fourth up
    fa, fb = ch.note_fingerprint(a), ch.note_fingerprint(b)
    assert len(fa) == 4 and ch.note_overlap(fa, fb) == 1.0
    c = a.copy()
    c[::2, 3] += 1
    assert ch.note_overlap(fa, ch.note_fingerprint(c)) == 0.0
    assert ch.note_overlap(fa, set()) == 0.0


def test_accuracy_counts_labelled_frames_only():
    pred = np.array([0, 1, 2, 3])
    labels = np.array([0, -1, 5, 3])
    assert ch.accuracy(pred, labels) == (2, 3)
    assert ch.accuracy(pred, labels, np.array([True, True, True, False])) == (1, 2)
