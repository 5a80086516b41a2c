"""Musical analysis (mirzoo.tasks.analyze), ``mirzoo analyze`` and ``--plot``.

The analysis is checked on activations where the truth is known (a click track at 120 BPM in
3/4 with louder downbeats, constructed chord and key probabilities), then end to end on the
seeded ``tcn-music`` model (whose answers are meaningless but must be well-formed).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

import mirzoo
from mirzoo import cli
from mirzoo.errors import MissingDependencyError, ParameterError
from mirzoo.tasks import analyze as an
from mirzoo.tasks import plots

from conftest import SR, tone_mix

FPS = 50.0
KEYS = [f"{t} {m}" for m in ("major", "minor") for t in
        ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")]
METERS = ["2/2", "2/4", "3/4", "4/4", "5/4", "6/4", "3/2", "4/2", "3/8", "6/8", "9/8", "12/8"]
CHORDS = ["C:maj", "G:maj", "A:min", "F:maj", "N"]
TEMPI = [f"{40 * 2 ** (k / 16):.0f} BPM" for k in range(48)]


def click_activation(seconds=20.0, bpm=120.0, per_bar=3, first=0.3, first_downbeat=1, seed=0):
    """Beat/downbeat activations of a click track: peaks (with shoulders and noise) on every beat,
    downbeat peaks on every ``per_bar``-th beat starting at beat ``first_downbeat``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FPS)
    act = 0.02 * rng.random((n, 2))
    times = np.arange(first, seconds - 0.2, 60.0 / bpm)
    for i, t in enumerate(times):
        f = int(round(t * FPS))
        act[f, 0] = 0.9
        act[f - 1, 0] = act[f + 1, 0] = 0.35
        act[f, 1] = 0.8 if (i - first_downbeat) % per_bar == 0 else 0.1
    return act, times


def one_hot_probs(path, n_labels, p=0.7, seed=0):
    """Frame probabilities whose argmax follows ``path`` (``p`` on the true label, the rest spread)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((len(path), n_labels))
    probs = (1 - p) * noise / noise.sum(axis=1, keepdims=True)
    probs[np.arange(len(path)), path] += p
    return probs


def test_beats_and_downbeats_of_a_click_track_in_three_four():
    act, times = click_activation(bpm=120.0, per_bar=3, first_downbeat=1)
    tempo = an.estimate_tempo(None, None, act[:, 0], FPS)
    assert abs(tempo - 120.0) < 1.5
    frames = an.track_beats(act[:, 0], FPS, tempo)
    np.testing.assert_allclose(frames / FPS, times, atol=1e-9)
    phase, positions = an.downbeat_phase(frames, act[:, 1], 3)
    assert phase == 1
    np.testing.assert_array_equal(positions[:7], [3, 1, 2, 3, 1, 2, 3])
    np.testing.assert_allclose((frames / FPS)[positions == 1], times[1::3])


def test_beat_tracker_follows_the_given_tempo_through_a_gap():
    act, times = click_activation(bpm=100.0, per_bar=4)
    gap = (times > 8.0) & (times < 11.0)
    for t in times[gap]:  # three silent beats: the tracker keeps the pulse
        f = int(round(t * FPS))
        act[f - 1 : f + 2, 0] = 0.02
    frames = an.track_beats(act[:, 0], FPS, 100.0)
    np.testing.assert_allclose(frames / FPS, times, atol=0.021)


def test_hmm_beat_tracker_finds_every_click_and_keeps_the_pulse_through_a_gap():
    act, times = click_activation(bpm=117.0, per_bar=4)  # a period of 25.6 frames: not a whole number
    frames = an.track_beats_hmm(act[:, 0], FPS, 117.0)
    # whole-frame intervals of 25 and 26 frames: every beat on its click or one frame beside it
    np.testing.assert_allclose(frames / FPS, times, atol=1.01 / FPS)
    assert np.mean(frames == np.round(times * FPS)) > 0.5
    gap = (times > 8.0) & (times < 11.0)
    for t in times[gap]:
        f = int(round(t * FPS))
        act[f - 1 : f + 2, 0] = 0.02
    frames = an.track_beats_hmm(act[:, 0], FPS, 117.0)
    # through the gap the path keeps one whole-frame interval: it may drift by up to two frames there
    np.testing.assert_allclose(frames / FPS, times, atol=2.01 / FPS)
    np.testing.assert_allclose(frames[~gap] / FPS, times[~gap], atol=1.01 / FPS)


def test_hmm_beat_tracker_follows_an_accelerando_that_a_fixed_period_misses():
    # intervals shrink from 30 to 20 frames (100 -> 150 BPM) over 40 beats; the seed tempo is the mean
    intervals = np.linspace(30, 20, 40)
    beats = np.round(10 + np.concatenate([[0.0], np.cumsum(intervals)])).astype(int)
    act = 0.02 * np.random.default_rng(1).random(beats[-1] + 20)
    act[beats] = 0.9
    seed = 60 * FPS / float(np.mean(intervals))
    hmm = an.track_beats_hmm(act, FPS, seed)
    np.testing.assert_array_equal(hmm, beats)
    with pytest.raises(AssertionError):  # the same seed, narrower band: the fastest beats fall outside it
        np.testing.assert_array_equal(an.track_beats_hmm(act, FPS, seed, band=1.05), beats)


def test_hmm_beat_tracker_drops_beats_in_silence_at_the_ends_and_checks_its_options():
    act, times = click_activation(seconds=20.0, bpm=120.0)
    act[: int(4 * FPS)] = 0.0  # the first four seconds are silent
    frames = an.track_beats_hmm(act[:, 0], FPS, 120.0)
    assert frames[0] / FPS >= 4.0 - 1e-9
    np.testing.assert_allclose(frames / FPS, times[times >= 4.0], atol=1e-9)
    untrimmed = an.track_beats_hmm(act[:, 0], FPS, 120.0, trim=0.0)
    # untrimmed, the path may start up to one longest interval (35 frames) before the music
    assert 4.3 - 36 / FPS <= untrimmed[0] / FPS < 4.3 and untrimmed[1] / FPS == pytest.approx(4.3)
    assert an.track_beats_hmm(np.zeros(100), FPS, 120.0).size == 0
    for kwargs, match in ((dict(tempo=0.0), "tempo=0.0"), (dict(tempo=120.0, band=0.9), "band=0.9"),
                          (dict(tempo=120.0, trim=1.0), "trim=1.0"), (dict(tempo=120.0, off_beat_share=1.0), "off_beat_share")):
        with pytest.raises(ParameterError, match=match):
            an.track_beats_hmm(act[:, 0], FPS, **kwargs)


def test_tempo_head_breaks_the_octave_ambiguity():
    act, _ = click_activation(bpm=80.0)
    centres = an.tempo_centres(TEMPI)
    np.testing.assert_allclose(centres, 40 * 2 ** (np.arange(48) / 16), rtol=2e-3)
    head = np.zeros((act.shape[0], 48))
    head[:, int(round(16 * np.log2(160 / 40)))] = 1.0  # the head says 160 BPM: the double of the pulse
    assert abs(an.estimate_tempo(head, centres, act[:, 0], FPS) - 160.0) < 2.0
    head[:] = 0
    head[:, int(round(16 * np.log2(80 / 40)))] = 1.0
    assert abs(an.estimate_tempo(head, centres, act[:, 0], FPS) - 80.0) < 1.5


def test_smoothing_removes_short_chord_flickers_and_keeps_real_changes():
    path = np.array([0] * 60 + [1] * 2 + [0] * 40 + [2] * 50 + [4] * 30)  # a 2-frame flicker to G
    probs = one_hot_probs(path, len(CHORDS), p=0.5)
    np.testing.assert_array_equal(an.smooth_labels(probs, 0.0), path)  # no penalty: the frame argmax
    smooth = an.smooth_labels(probs, 8.0)
    expected = np.array([0] * 102 + [2] * 50 + [4] * 30)
    np.testing.assert_array_equal(smooth, expected)
    segs = an.label_segments(smooth, CHORDS, FPS, duration=182 / FPS, probs=probs)
    assert [s.label for s in segs] == ["C:maj", "A:min", "N"]
    assert segs[0].start == 0.0 and segs[-1].end == pytest.approx(3.64)
    assert segs[1].start == pytest.approx(101.5 / FPS) and segs[1].end == pytest.approx(151.5 / FPS)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    assert 0.5 < segs[1].confidence <= 1.0


def test_smooth_labels_is_the_viterbi_path_of_a_uniform_switch_penalty():
    # against a plain Viterbi with the full transition matrix (0 to stay, -penalty to change), on random
    # frames, ties included (probabilities rounded to a few values)
    rng = np.random.default_rng(7)
    for n_labels, penalty, levels in ((5, 0.0, None), (5, 1.5, None), (24, 4.0, None), (9, 2.0, 4), (109, 8.0, None)):
        probs = rng.dirichlet(np.ones(n_labels) * 0.4, size=120)
        if levels:
            probs = np.round(probs * levels) / levels + 1e-3
        logp = np.log(np.clip(probs, 1e-12, None))
        trans = np.where(np.eye(n_labels, dtype=bool), 0.0, -penalty)
        delta, back = logp[0].copy(), []
        for t in range(1, len(logp)):
            cand = delta[:, None] + trans  # [from, to]
            back.append(cand.argmax(axis=0))
            delta = cand.max(axis=0) + logp[t]
        want = [int(delta.argmax())]
        for pointers in reversed(back):
            want.append(int(pointers[want[-1]]))
        got = an.smooth_labels(probs, penalty)
        path_score = lambda path: logp[np.arange(len(path)), path].sum() - penalty * np.count_nonzero(np.diff(path))
        assert path_score(got) == pytest.approx(path_score(np.array(want[::-1])), abs=1e-9)
        if levels is None:  # no ties: the path itself is unique
            np.testing.assert_array_equal(got, want[::-1])


def test_smooth_labels_checks_its_input():
    with pytest.raises(ParameterError, match="switch_penalty=-1"):
        an.smooth_labels(np.ones((3, 2)) / 2, -1)
    with pytest.raises(ParameterError, match=r"shape \(3,\)"):
        an.smooth_labels(np.ones(3), 1.0)


def test_global_key_is_the_mean_of_frame_probabilities():
    path = np.array([KEYS.index("A minor")] * 70 + [KEYS.index("C major")] * 30)
    probs = one_hot_probs(path, 24, p=0.8)
    top = an.global_distribution(probs, KEYS)
    assert [k for k, _ in top[:2]] == ["A minor", "C major"]
    assert top[0][1] == pytest.approx(probs[:, KEYS.index("A minor")].mean())
    assert len(top) == 3 and top[0][1] > top[1][1] > top[2][1]


def test_beats_per_bar_of_compound_and_simple_meters():
    assert [an.beats_per_bar(m) for m in METERS] == [2, 2, 3, 4, 5, 2, 3, 4, 1, 2, 3, 4]
    assert an.beats_per_bar("7/8") == 7 and an.beats_per_bar("15/8") == 5
    with pytest.raises(ParameterError, match="'waltz' is not a time signature"):
        an.beats_per_bar("waltz")


def fake_frames(seconds=20.0):
    act, times = click_activation(seconds, bpm=120.0, per_bar=3, first_downbeat=2)
    n = act.shape[0]
    key = one_hot_probs(np.full(n, KEYS.index("G major")), 24)
    chord_path = np.repeat(np.arange(4), int(np.ceil(n / 4)))[:n]
    chord = one_hot_probs(chord_path, len(CHORDS))
    meter = one_hot_probs(np.full(n, METERS.index("3/4")), 12)
    tempo = np.zeros((n, 48))
    tempo[:, int(round(16 * np.log2(120 / 40)))] = 1.0
    frames = {"beats": act, "key": key, "chord": chord, "meter": meter, "tempo": tempo}
    heads = {"key": KEYS, "chord": CHORDS, "meter": METERS, "tempo": TEMPI, "beats": ["beat", "downbeat"]}
    return frames, heads, times


def test_analyze_frames_chooses_its_beat_tracker():
    frames, heads, times = fake_frames()
    hmm = an.analyze_frames(frames, heads, FPS)
    np.testing.assert_array_equal(np.round(hmm.beats * FPS), an.track_beats_hmm(frames["beats"][:, 0], FPS, 120.0))
    dp = an.analyze_frames(frames, heads, FPS, beat_tracker="dp")
    np.testing.assert_array_equal(np.round(dp.beats * FPS), an.track_beats(frames["beats"][:, 0], FPS, 120.0))
    np.testing.assert_allclose(dp.downbeats, hmm.downbeats)  # a click track: both find every click
    with pytest.raises(ParameterError, match="beat_tracker='madmom': expected 'hmm' or 'dp'"):
        an.analyze_frames(frames, heads, FPS, beat_tracker="madmom")
    with pytest.raises(ParameterError, match="band=0.5 must be >= 1"):
        an.analyze_frames(frames, heads, FPS, beat_band=0.5)


def test_analyze_frames_end_to_end_and_jams(tmp_path):
    frames, heads, times = fake_frames()
    a = an.analyze_frames(frames, heads, FPS, duration=20.0, source="x.wav", model="fake")
    assert a.key == "G major" and a.meter == "3/4"
    assert abs(a.tempo - 120.0) < 0.5
    np.testing.assert_allclose(a.beats, times, atol=1e-9)
    np.testing.assert_allclose(a.downbeats, times[2::3], atol=1e-9)
    assert [c.label for c in a.chords] == CHORDS[:4]
    assert [s.label for s in a.local_keys] == ["G major"]
    d = a.to_dict()
    json.dumps(d)
    assert d["downbeats"][0] == pytest.approx(times[2], abs=1e-3) and d["key_candidates"][0]["label"] == "G major"
    rows = a.to_rows()
    assert sum(r["type"] == "beat" for r in rows) == len(times)
    assert {r["type"] for r in rows} == {"key", "tempo", "meter", "local_key", "beat", "downbeat", "chord"}
    jams = pytest.importorskip("jams")
    path = tmp_path / "a.jams"
    path.write_text(json.dumps(a.to_jams()))
    doc = jams.load(str(path), validate=True)
    assert len(doc.annotations.search(namespace="beat")[0].data) == len(times)
    assert doc.annotations.search(namespace="key_mode")[0].data[0].value == "G:major"


def test_no_beat_evidence_gives_no_beats_tempo_or_meter(tmp_path):
    frames, heads, times = fake_frames()
    quiet = dict(frames, beats=frames["beats"] * 0.25)  # peaks at 0.25: below the floor everywhere
    a = an.analyze_frames(quiet, heads, FPS, duration=20.0)
    assert a.beats.size == 0 and a.beat_positions.size == 0 and a.downbeats.size == 0
    assert a.tempo is None and a.meter is None
    assert a.key == "G major" and [c.label for c in a.chords] == CHORDS[:4]  # the pitch reading is unchanged
    assert a.tempo_candidates[0][0] == TEMPI[25] and a.meter_candidates[0][0] == "3/4"  # what the heads say
    d = a.to_dict()
    assert d["tempo"] is None and d["meter"] is None and d["beats"] == [] and json.loads(json.dumps(d)) == d
    assert {r["type"] for r in a.to_rows()} == {"key", "local_key", "chord"}
    # the floor is a parameter: below the activation's peak, or off, the clicks are tracked again
    tracked = an.analyze_frames(quiet, heads, FPS, duration=20.0, beat_floor=None)
    assert tracked.meter == "3/4" and abs(tracked.tempo - 120.0) < 3.0 and abs(tracked.beats.size - len(times)) <= 1
    for floor in (0.2, 0.0):
        again = an.analyze_frames(quiet, heads, FPS, duration=20.0, beat_floor=floor)
        np.testing.assert_array_equal(again.beats, tracked.beats)
        assert again.tempo == tracked.tempo and again.meter == tracked.meter
    for bad in (1.0, -0.1, "0.3", True):
        with pytest.raises(ParameterError, match=r"beat_floor=.* must be a number in \[0, 1\)"):
            an.analyze_frames(frames, heads, FPS, beat_floor=bad)
    jams = pytest.importorskip("jams")
    path = tmp_path / "a.jams"
    path.write_text(json.dumps(a.to_jams()))
    doc = jams.load(str(path), validate=True)
    assert not doc.annotations.search(namespace="tempo") and not doc.annotations.search(namespace="tag_open")
    assert len(doc.annotations.search(namespace="beat")[0].data) == 0


def test_no_pitched_content_gives_no_key(tmp_path):
    frames, heads, _ = fake_frames()
    n = frames["chord"].shape[0]
    rng = np.random.default_rng(1)
    quiet_pcs = rng.uniform(0.0, 0.05, (n, 12))  # no pitch class sounds anywhere
    nothing = dict(frames, pitch_classes=quiet_pcs)
    a = an.analyze_frames(nothing, heads, FPS, duration=20.0)
    assert a.key == an.NO_KEY == "X"
    assert [(s.start, s.end, s.label) for s in a.local_keys] == [(0.0, 20.0, "X")]
    assert a.local_keys[0].confidence == 1.0  # the share of frames without a pitch class above 0.5
    assert a.key_candidates[0][0] == "G major"  # the key heads' reading stays visible
    assert a.meter == "3/4" and a.beats.size > 0  # the rhythm reading is unchanged
    import mir_eval

    assert mir_eval.key.weighted_score("G major", a.key) == 0.0  # "X" is mir_eval's unknown key
    assert a.to_rows()[0] == {"type": "key", "start": 0.0, "end": 20.0, "label": "X", "confidence": ""}
    # a few seconds of pitched sound in a long silent clip keep the key: 1 % of the frames here
    melody = quiet_pcs.copy()
    melody[: max(1, n // 100), 7] = 0.9
    kept = an.analyze_frames(dict(frames, pitch_classes=melody), heads, FPS)
    assert kept.key == "G major" and kept.local_keys[0].label == "G major"
    # below the share (one frame in 1000 of a longer clip), or the check off, or no pitch-class head
    few = quiet_pcs.copy()
    few[0, 7] = 0.9
    assert an.analyze_frames(dict(frames, pitch_classes=few), heads, FPS, pitched_share=0.01).key == "X"
    assert an.analyze_frames(nothing, heads, FPS, pitched_share=None).key == "G major"
    assert an.analyze_frames(nothing, heads, FPS, pitched_share=0).key == "G major"
    assert an.analyze_frames(frames, heads, FPS).key == "G major"
    for bad in (1.0, -0.5, "0.2"):
        with pytest.raises(ParameterError, match=r"pitched_share=.* must be a number in \[0, 1\)"):
            an.analyze_frames(frames, heads, FPS, pitched_share=bad)
    with pytest.raises(ParameterError, match=r"frames\['pitch_classes'\] must be a non-empty \[frames, 12\]"):
        an.analyze_frames(dict(frames, pitch_classes=quiet_pcs[:, :11]), heads, FPS)
    jams = pytest.importorskip("jams")
    path = tmp_path / "a.jams"
    path.write_text(json.dumps(a.to_jams()))
    doc = jams.load(str(path), validate=True)
    assert [o.value for o in doc.annotations.search(namespace="key_mode")[0].data] == ["N"]


def test_silence_and_quiet_noise_have_no_beats_and_no_key(tcn, tmp_path):
    rng = np.random.default_rng(0)
    for y in (np.zeros(8 * SR, np.float32), (rng.standard_normal(8 * SR) * 1e-4).astype(np.float32)):  # -80 dBFS
        a = tcn.analyze(y, sr=SR)
        assert a.beats.size == 0 and a.tempo is None and a.meter is None
        assert a.key == "X" and {c.label for c in a.chords} == {"N"}
    pytest.importorskip("matplotlib")  # the figure of a clip without beats or key
    out = tmp_path / "silence.png"
    plots.plot_analysis(a, np.zeros(8 * SR, np.float32), SR, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_frames_rejects_missing_heads_and_bad_shapes():
    frames, heads, _ = fake_frames(5.0)
    with pytest.raises(ParameterError, match=r"lack the head output\(s\) \['tempo'\]"):
        an.analyze_frames({k: v for k, v in frames.items() if k != "tempo"}, heads, FPS)
    frames["key"] = frames["key"][:, :12]
    with pytest.raises(ParameterError, match=r"frames\['key'\] must be a non-empty \[frames, 24\]"):
        an.analyze_frames(frames, heads, FPS)


@pytest.fixture(scope="module")
def tcn():
    return mirzoo.load("tcn-music")


def test_models_without_the_heads_cannot_analyze():
    with pytest.raises(ParameterError, match=r"'random-cnn' cannot analyze audio: it lacks the head\(s\) "
                                             r"\['beats', 'key', 'chord', 'meter', 'tempo'\]"):
        mirzoo.load("random-cnn").analyze(tone_mix(2.0), sr=SR)


def test_every_head_of_the_frame_model_has_readable_labels(tcn):
    y = tone_mix(3.0)
    top = tcn.tag(y, sr=SR, head="key", top_k=3)
    assert len(top) == 3 and all(k in KEYS for k, _ in top) and top[0][1] >= top[1][1] >= top[2][1]
    probs = tcn.predict(y, sr=SR, head="key")
    assert probs.shape == (24,) and probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert tcn.tag(y, sr=SR, head="meter", top_k=1)[0][0] in METERS
    assert tcn.tag(y, sr=SR, head="tempo", top_k=1)[0][0].endswith(" BPM")
    assert ":" in tcn.tag(y, sr=SR, head="chord", top_k=1)[0][0] or tcn.tag(y, sr=SR, head="chord", top_k=1)[0][0] == "N"


def test_extractor_analyze_is_well_formed_and_list_in_list_out(tcn):
    y1, y2 = tone_mix(6.0, seed=1), tone_mix(4.0, seed=2)
    one = tcn.analyze(y1, sr=SR)
    both = tcn.analyze([y1, y2], sr=SR)
    assert isinstance(both, list) and len(both) == 2
    assert one.duration == pytest.approx(6.0) and both[1].duration == pytest.approx(4.0)
    np.testing.assert_allclose(both[0].beats, one.beats)  # same clip alone or in a list
    assert one.key in KEYS and one.meter in METERS and 40 <= one.tempo <= 310
    assert np.all(np.diff(one.beats) > 0) and np.all((one.beats >= 0) & (one.beats <= 6.0))
    assert set(np.round(one.downbeats, 6)) <= set(np.round(one.beats, 6))
    assert one.chords[0].start == 0.0 and one.chords[-1].end == pytest.approx(6.0)


def test_extractor_analyze_computes_the_layers_a_bar_model_reads(tcn):
    # a record reading the embedding layer: analyze() runs that layer too, and reads what analyze_frames reads
    from mirzoo.tasks.clip_heads import encode_array

    d = len(an.BEAT_FEATURES) + 128
    rng = np.random.default_rng(5)
    record = _rigged_bar_record(["beat_features", "embedding"], d)
    record["dense_kernel"] = encode_array(rng.normal(size=(d, 1)))
    y = tone_mix(8.0, seed=3)
    got = tcn.analyze(y, sr=SR, bar_model=record)
    keys = list(an.REQUIRED_HEADS) + [h for h in an.OPTIONAL_HEADS if h in tcn.heads] + ["embedding"]
    frames = tcn.forward([tcn.load_input(y, SR)[0]], keys, 16)[0]
    want = an.analyze_frames(frames, tcn.heads, tcn.sample_rate / tcn.hop_length, duration=8.0, bar_model=record,
                             clip_key=tcn.spec.clip_key)
    assert got.meter == want.meter
    np.testing.assert_allclose(got.downbeats, want.downbeats)
    np.testing.assert_array_equal(got.beat_positions, want.beat_positions)


def test_cli_analyze_json_csv_with_a_bad_file(tmp_path, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, tone_mix(4.0, seed=4), SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    out = tmp_path / "out.json"
    code = cli.main(["analyze", str(good), str(bad), "-o", str(out), "-q"])
    assert code == 1
    assert f"FAILED {bad}" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert [f["source"] for f in doc["files"]] == [str(good)]
    assert doc["failed"][0]["path"] == str(bad)
    assert doc["files"][0]["model"] == "tcn-music" and doc["files"][0]["duration"] == pytest.approx(4.0)
    out_csv = tmp_path / "out.csv"
    assert cli.main(["analyze", "tcn-music", str(good), "-o", str(out_csv), "-q"]) == 0
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["path"] for r in rows} == {str(good)}
    assert [r["type"] for r in rows[:3]] == ["key", "tempo", "meter"]
    assert sum(r["type"] == "beat" for r in rows) == len(doc["files"][0]["beats"])
    # every input bad: nothing written, exit 2
    out2 = tmp_path / "none.json"
    assert cli.main(["analyze", str(bad), "-o", str(out2), "-q"]) == 2
    assert not out2.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_cli_analyze_usage_errors(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_mix(2.0), SR)
    assert cli.main(["analyze", str(wav), "-o", str(tmp_path / "out.txt")]) == 2
    assert "must end in .json, .csv or .jams" in capsys.readouterr().err
    assert cli.main(["analyze", "cnn-tagging", str(wav), "-o", str(tmp_path / "o.json")]) == 2
    assert "'cnn-tagging' cannot analyze audio: it lacks the head(s)" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
    other = tmp_path / "b.wav"
    sf.write(other, tone_mix(2.0, seed=5), SR)
    assert cli.main(["analyze", str(wav), str(other), "-o", str(tmp_path / "o.jams")]) == 2
    assert "a .jams output holds one file's analysis, got 2 inputs" in capsys.readouterr().err


def test_plot_names_for_several_inputs():
    names = cli._plot_paths("figs/out.png", ["a/x.wav", "b/x.flac", "c/y.wav"])
    assert [str(p) for p in names.values()] == ["figs/out-x.png", "figs/out-x-2.png", "figs/out-y.png"]
    assert cli._plot_paths("one.png", ["a/x.wav"]) == {"a/x.wav": cli.Path("one.png")}


def test_cli_analyze_writes_valid_jams(tmp_path):
    jams = pytest.importorskip("jams")
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_mix(3.0), SR)
    out = tmp_path / "a.jams"
    assert cli.main(["analyze", str(wav), "-o", str(out), "-q"]) == 0
    doc = jams.load(str(out), validate=True)
    assert doc.file_metadata.duration == pytest.approx(3.0)
    assert {a.namespace for a in doc.annotations} == {"beat", "chord", "key_mode", "tempo", "tag_open"}


def test_cli_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, tone_mix(3.0, seed=1), SR)
    sf.write(b, tone_mix(2.0, seed=2), SR)
    png = tmp_path / "fig.png"
    assert cli.main(["analyze", str(a), str(b), "-o", str(tmp_path / "o.json"), "--plot", str(png), "-q"]) == 0
    for name in ("fig-a.png", "fig-b.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tg = tmp_path / "tags.png"
    assert cli.main(["tag", "tcn-music", str(a), "--head", "key", "--plot", str(tg)]) == 0
    assert tg.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and tg.stat().st_size > 5000


def test_tag_frames_are_the_heads_frames_from_one_pass(monkeypatch):
    """tag(frames=[]) fills each input's [T, n_labels] head outputs (what predict(pool=None) gives),
    from the forward pass that scores the tags, on every tag() path: the clip-tags record (tags), the
    clip key (key) and the frame mean (chord)."""
    m = mirzoo.load("tcn-music")
    clips = [tone_mix(4.0, seed=3), tone_mix(2.5, seed=4)]
    passes = []
    real = type(m).run_inputs
    monkeypatch.setattr(type(m), "run_inputs", lambda self, items, *a, **k: passes.append(len(items))
                        or real(self, items, *a, **k))
    for head in ("tags", "key", "chord"):
        frames: list = []
        passes.clear()
        tags = m.tag(clips, sr=SR, head=head, top_k=None, frames=frames)
        assert passes == [2]  # one pass over both clips
        assert len(frames) == 2 and [len(t) for t in tags] == [len(m.heads[head])] * 2
        for f, clip in zip(frames, clips):
            ref = m.predict(clip, sr=SR, pool=None, head=head)
            assert f.shape == ref.shape and f.shape[1] == len(m.heads[head])
            np.testing.assert_allclose(f, ref, rtol=1e-5, atol=1e-6)
        if head == "chord":  # the frame-mean path: the tags are the frames' mean
            top, p = tags[0][0]
            assert p == pytest.approx(float(frames[0].mean(axis=0)[m.heads[head].index(top)]), rel=1e-5)
    assert m.tag(clips[0], sr=SR, top_k=3) == m.tag(clips[0], sr=SR, top_k=3, frames=[])
    with pytest.raises(ParameterError, match=r"frames=\(\) must be a list"):
        m.tag(clips[0], sr=SR, frames=())


def test_cli_tag_plot_runs_the_model_once(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_mix(3.0, seed=5), SR)
    m = mirzoo.load("cnn-tagging")
    passes = []
    real = type(m).run_inputs
    monkeypatch.setattr(type(m), "run_inputs", lambda self, items, *a, **k: passes.append(len(items))
                        or real(self, items, *a, **k))
    png = tmp_path / "t.png"
    assert cli.main(["tag", "cnn-tagging", str(wav), "--plot", str(png)]) == 0
    assert passes == [1] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(MissingDependencyError, match=r'pip install "mirzoo\[plot\]"'):
        plots.plot_taggram(np.zeros((3, 2)), ["a", "b"], np.arange(3.0), tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


def test_taggram_checks_shapes(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ParameterError, match=r"probs must be \[frames, 2\]"):
        plots.plot_taggram(np.zeros((3, 3)), ["a", "b"], np.arange(3.0), tmp_path / "t.png")
    with pytest.raises(ParameterError, match="must end in .png, .pdf or .svg"):
        plots.plot_taggram(np.zeros((3, 2)), ["a", "b"], np.arange(3.0), tmp_path / "t.jpg")


# -- clip key: key and chord heads together ---------------------------------------------------------
FULL_CHORDS = [f"{r}:{q}" for r in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
               for q in ("maj", "min", "dim", "aug", "7", "maj7", "min7", "hdim7", "dim7")] + ["N"]


def _clip_key_params(seed=0, scale=(1.0, 1.0), bias=(0.0, 0.0)):
    rng = np.random.default_rng(seed)
    return {"scale": list(scale), "bias": list(bias), "chord": rng.normal(size=(2, 12, 9)).tolist()}


def test_clip_key_scores_match_their_definition_and_follow_transposition():
    rng = np.random.default_rng(3)
    key = rng.dirichlet(np.ones(24), size=40)
    chord = rng.dirichlet(np.ones(109), size=40)
    params = _clip_key_params(1, scale=(0.7, 1.3), bias=(0.2, -0.4))
    s = an.clip_key_scores(key, chord, params)
    W, km, cm = np.asarray(params["chord"]), key.mean(0), chord.mean(0)
    for m in range(2):
        for t in range(12):
            want = params["scale"][m] * np.log(km[12 * m + t] + 1e-6) + params["bias"][m]
            want += sum(W[m, r, q] * cm[((t + r) % 12) * 9 + q] for r in range(12) for q in range(9))
            assert s[12 * m + t] == pytest.approx(want, rel=1e-9, abs=1e-9)
    # everything moved up 5 semitones: the scores move with it, mode by mode
    up_key = np.concatenate([np.roll(key[:, :12], 5, axis=1), np.roll(key[:, 12:], 5, axis=1)], axis=1)
    up_chord = np.concatenate([np.roll(chord[:, :108].reshape(-1, 12, 9), 5, axis=1).reshape(-1, 108), chord[:, 108:]], axis=1)
    s_up = an.clip_key_scores(up_key, up_chord, params).reshape(2, 12)
    np.testing.assert_allclose(s_up, np.roll(s.reshape(2, 12), 5, axis=1), rtol=1e-10, atol=1e-10)
    p = an.clip_key_distribution(key, chord, params)
    assert p.shape == (24,) and p.sum() == pytest.approx(1.0) and p.argmax() == s.argmax()
    with pytest.raises(ParameterError, match=r"chord_probs must be a non-empty \[frames, 109\]"):
        an.clip_key_scores(key, chord[:, :108], params)


def test_clip_key_reads_the_key_from_the_chords_when_the_key_head_is_unsure():
    frames, heads, _ = fake_frames()
    heads = dict(heads, chord=FULL_CHORDS)
    n = frames["key"].shape[0]
    frames = dict(frames, key=np.full((n, 24), 1 / 24))  # a key head that cannot tell
    path = np.array([FULL_CHORDS.index(c) for c in ("D:maj", "G:maj", "A:7", "D:maj")]).repeat(n // 4 + 1)[:n]
    frames["chord"] = one_hot_probs(path, len(FULL_CHORDS))
    # a major key weighs its I, IV and V7; nothing else
    w = np.zeros((2, 12, 9))
    w[0, 0, 0], w[0, 5, 0], w[0, 7, 4] = 3.0, 2.0, 2.0
    params = {"scale": [1.0, 1.0], "bias": [0.0, 0.0], "chord": w.tolist()}
    a = an.analyze_frames(frames, heads, FPS, clip_key=params)
    assert a.key == "D major"
    probs = [p for _, p in a.key_candidates]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    want = an.clip_key_distribution(frames["key"], frames["chord"], params)
    assert probs[0] == pytest.approx(float(want.max()))
    # without the record the global key is the flat key head's (the first label on a tie)
    assert an.analyze_frames(frames, heads, FPS).key == "C major"


def test_tag_key_and_analyze_agree_and_use_the_clip_key(tcn):
    import copy

    assert tcn.spec.clip_key is not None  # the shipped model carries its fitted record
    y = tone_mix(4.0, seed=4)
    m = mirzoo.load("tcn-music")
    rec = copy.deepcopy(dict(m.spec.clip_key))
    rec["bias"] = [0.0, 50.0]  # a record that forces a minor key: both readings must follow it
    m.update_entry(clip_key=rec)
    top = m.tag(y, sr=SR, head="key", top_k=3)
    assert top[0][0].endswith("minor") and m.analyze(y, sr=SR).key == top[0][0]
    frames = m.forward([y], ["key", "chord"] + [h for h in an.OPTIONAL_HEADS if h in m.heads], 16)[0]
    want = an.clip_key_distribution(frames["key"], frames["chord"], rec, frames.get("mode"), frames.get("pitch_classes"))
    assert top[0][1] == pytest.approx(float(want.max()), rel=1e-6)
    both = m.tag([y, tone_mix(3.0, seed=5)], sr=SR, head="key", top_k=1)
    assert isinstance(both, list) and both[0] == top[:1]
    # predict() stays the head's own clip mean
    np.testing.assert_allclose(m.predict(y, sr=SR, head="key"), frames["key"].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_manifest_clip_key_records_are_checked():
    from mirzoo.errors import ManifestError
    from mirzoo.spec import ModelSpec
    from mirzoo.zoo.manifest import get_entry

    entry = dict(get_entry("tcn-music"))
    entry["clip_key"] = _clip_key_params()
    assert ModelSpec.from_entry("tcn-music", entry).clip_key["scale"] == [1.0, 1.0]
    bad = dict(entry, clip_key=dict(_clip_key_params(), chord=[[0.0] * 9] * 12))
    with pytest.raises(ManifestError, match=r"clip_key\['chord'\] must be numbers of shape \(2, 12, 9\)"):
        ModelSpec.from_entry("tcn-music", bad)
    with pytest.raises(ManifestError, match=r"clip_key needs the 24-label 'key' head"):
        ModelSpec.from_entry("cnn-tagging", dict(get_entry("cnn-tagging"), clip_key=_clip_key_params()))

    # an entry without a mode head (tcn-music's before session 13) cannot weigh one
    no_mode = dict(entry, aux_heads=[a for a in entry["aux_heads"] if a["output"] != "mode"],
                   layers={k: v for k, v in entry["layers"].items() if k != "mode"})
    with_mode = dict(no_mode, clip_key=dict(_clip_key_params(), mode_scale=2.0))
    with pytest.raises(ManifestError, match=r"clip_key\['mode_scale'\] needs a 'mode' head labelled \['major', 'minor'\]"):
        ModelSpec.from_entry("tcn-music", with_mode)
    with_mode["aux_heads"] = list(no_mode["aux_heads"]) + [{"output": "mode", "labels": ["major", "minor"],
                                                            "activation": "softmax"}]
    with_mode["layers"] = dict(no_mode["layers"], mode=2)
    assert ModelSpec.from_entry("tcn-music", with_mode).clip_key["mode_scale"] == 2.0
    with pytest.raises(ManifestError, match=r"clip_key\['mode_scale'\] must be a number, got 'big'"):
        ModelSpec.from_entry("tcn-music", dict(with_mode, clip_key=dict(_clip_key_params(), mode_scale="big")))


def test_clip_key_with_a_mode_head_follows_the_mode_head_between_relative_keys():
    frames, heads, _ = fake_frames()
    heads = dict(heads, chord=FULL_CHORDS)
    n = frames["key"].shape[0]
    key = np.full((n, 24), 0.01)
    key[:, 0], key[:, 21] = 0.5, 0.4  # the key head: C major, A minor a close second
    frames = dict(frames, key=key / key.sum(axis=1, keepdims=True), chord=np.full((n, 109), 1 / 109))
    params = dict(_clip_key_params(), chord=np.zeros((2, 12, 9)).tolist(), mode_scale=1.0)
    minor = np.tile([0.1, 0.9], (n, 1))  # a mode head sure of minor
    a = an.analyze_frames(dict(frames, mode=minor), heads, FPS, clip_key=params)
    assert a.key == "A minor"
    assert an.analyze_frames(dict(frames, mode=minor[:, ::-1]), heads, FPS, clip_key=params).key == "C major"
    want = an.clip_key_distribution(frames["key"], frames["chord"], params, minor)
    assert a.key_candidates[0][1] == pytest.approx(float(want.max()))
    with pytest.raises(ParameterError, match=r"mode_probs must be a non-empty \[frames, 2\]"):
        an.analyze_frames(dict(frames, mode=minor[:, :1]), heads, FPS, clip_key=params)
    with pytest.raises(ParameterError, match="weighs a mode head"):
        an.analyze_frames(frames, heads, FPS, clip_key=params)


def test_key_profile_correlations_are_krumhansl_schmuckler():
    rng = np.random.default_rng(5)
    chroma = rng.random((6, 12))
    corr = an.key_profile_correlations(chroma)
    assert corr.shape == (6, 24)
    for i in range(6):
        for k in range(24):
            profile = np.roll(an.KRUMHANSL_KESSLER_MINOR if k >= 12 else an.KRUMHANSL_KESSLER_MAJOR, k % 12)
            assert corr[i, k] == pytest.approx(np.corrcoef(chroma[i], profile)[0, 1], rel=1e-9, abs=1e-12)
    # the notes of a scale point at its key; transposing them moves the key with them
    c_major = np.zeros(12)
    c_major[[0, 2, 4, 5, 7, 9, 11]] = 1.0
    c_major[[0, 4, 7]] += 1.0  # the tonic triad weighs more
    assert an.key_profile_correlations(c_major).argmax() == 0
    assert an.key_profile_correlations(np.roll(c_major, 9)).argmax() == 9  # A major
    a_minor = np.zeros(12)
    a_minor[[9, 11, 0, 2, 4, 5, 8]] = 1.0
    a_minor[[9, 0, 4]] += 1.0
    assert an.key_profile_correlations(a_minor).argmax() == 12 + 9
    np.testing.assert_array_equal(an.key_profile_correlations(np.full(12, 0.3)), np.zeros(24))  # no evidence
    with pytest.raises(ParameterError, match=r"chroma must have 12 pitch classes on its last axis, got shape \(11,\)"):
        an.key_profile_correlations(np.ones(11))


def test_clip_key_with_a_pitch_class_head_reads_the_notes():
    """A key head and chords that say nothing and a pitch-class head hearing the notes of E minor: a record
    with a ``chroma_scale`` finds E minor, scored as its definition says; without the head it cannot."""
    frames, heads, _ = fake_frames()
    heads = dict(heads, chord=FULL_CHORDS)
    n = frames["key"].shape[0]
    frames = dict(frames, key=np.full((n, 24), 1 / 24), chord=np.full((n, 109), 1 / 109))
    e_minor = np.full((n, 12), 0.05)
    e_minor[:, [4, 6, 7, 9, 11, 0, 2]] = 0.6  # the notes of E natural minor
    e_minor[:, [4, 7, 11]] = 0.95  # its tonic triad more often
    params = {"scale": [1.0, 1.0], "bias": [0.0, 0.1], "chord": np.zeros((2, 12, 9)).tolist(), "chroma_scale": [8.0, 9.0]}
    a = an.analyze_frames(dict(frames, pitch_classes=e_minor), heads, FPS, clip_key=params)
    assert a.key == "E minor"
    s = an.clip_key_scores(frames["key"], frames["chord"], params, chroma_probs=e_minor)
    corr = an.key_profile_correlations(e_minor.mean(axis=0))
    want = np.log(1 / 24 + 1e-6) + np.r_[np.zeros(12), np.full(12, 0.1)] + np.r_[8.0 * corr[:12], 9.0 * corr[12:]]
    np.testing.assert_allclose(s, want, rtol=1e-12, atol=1e-12)
    assert a.key_candidates[0][1] == pytest.approx(float(an.clip_key_distribution(
        frames["key"], frames["chord"], params, None, e_minor).max()))
    # the notes moved up 3 semitones: G minor
    assert an.analyze_frames(dict(frames, pitch_classes=np.roll(e_minor, 3, axis=1)), heads, FPS,
                             clip_key=params).key == "G minor"
    with pytest.raises(ParameterError, match=r"weighs a pitch_classes head \(chroma_scale\): give chroma_probs"):
        an.analyze_frames(frames, heads, FPS, clip_key=params)
    with pytest.raises(ParameterError, match=r"chroma_probs must be a non-empty \[frames, 12\]"):
        an.analyze_frames(dict(frames, pitch_classes=e_minor[:, :11]), heads, FPS, clip_key=params)


def test_manifest_clip_key_chroma_scale_needs_a_pitch_class_head():
    from mirzoo.errors import ManifestError
    from mirzoo.spec import PITCH_CLASS_LABELS, ModelSpec
    from mirzoo.zoo.manifest import get_entry

    entry = json.loads(json.dumps(get_entry("tcn-music")))
    entry["aux_heads"] = [a for a in entry["aux_heads"] if a["output"] != "pitch_classes"]
    entry["layers"].pop("pitch_classes", None)
    entry["config"].pop("frame_heads", None)
    entry["clip_key"] = dict(_clip_key_params(), chroma_scale=[1.0, 2.0])
    with pytest.raises(ManifestError, match=r"clip_key\['chroma_scale'\] needs a 'pitch_classes' head labelled \['C', 'C#'"):
        ModelSpec.from_entry("tcn-music", entry)
    entry["aux_heads"].append({"output": "pitch_classes", "labels": list(PITCH_CLASS_LABELS), "activation": "sigmoid"})
    entry["layers"]["pitch_classes"] = 12
    assert ModelSpec.from_entry("tcn-music", entry).clip_key["chroma_scale"] == [1.0, 2.0]
    entry["clip_key"]["chroma_scale"] = [1.0]
    with pytest.raises(ManifestError, match=r"clip_key\['chroma_scale'\] must be 2 numbers \(major, minor\), got \[1.0\]"):
        ModelSpec.from_entry("tcn-music", entry)


def test_clip_pitch_class_features_centre_and_scale_the_clip_and_its_ending():
    rng = np.random.default_rng(5)
    pcs = rng.uniform(size=(300, 12))
    whole, final = an.clip_pitch_class_features(pcs, 50)
    c = pcs.mean(0) - pcs.mean()
    np.testing.assert_allclose(whole, c / np.linalg.norm(c), rtol=1e-12)
    f = pcs[-50:].mean(0) - pcs[-50:].mean()
    np.testing.assert_allclose(final, f / np.linalg.norm(c), rtol=1e-12)  # scaled by the clip's norm, not its own
    # a clip shorter than the ending: the ending is the whole clip
    w, f = an.clip_pitch_class_features(pcs[:20], 50)
    np.testing.assert_allclose(f, w, rtol=1e-12)
    # a silent ending weighs nothing, where a unit norm would blow its noise up
    quiet = np.concatenate([pcs, 1e-4 * rng.uniform(size=(50, 12))])
    assert np.linalg.norm(an.clip_pitch_class_features(quiet, 50)[1]) < 1e-3
    # silence: no profile at all
    assert not np.any(an.clip_pitch_class_features(np.zeros((40, 12)), 10)[0])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ParameterError, match=r"final_frames=.*expected a positive whole number of frames"):
            an.clip_pitch_class_features(pcs, bad)
    with pytest.raises(ParameterError, match=r"chroma_probs must be a non-empty \[frames, 12\]"):
        an.clip_pitch_class_features(pcs[:, :11], 10)


def test_clip_key_profiles_read_the_whole_clip_and_its_cadence():
    """A key head that says nothing, pitch classes of the notes C D E F G A B throughout (C major or A minor:
    the same notes) and an ending on A and E: the final profile names the tonic A, scored as the definition
    says; a whole-clip profile that weighs thirds decides the mode (A minor; moved up 2 semitones, B minor)."""
    frames, heads, _ = fake_frames()
    heads = dict(heads, chord=FULL_CHORDS)
    n = frames["key"].shape[0]
    frames = dict(frames, key=np.full((n, 24), 1 / 24), chord=np.full((n, 109), 1 / 109))
    pcs = np.full((n, 12), 0.05)
    pcs[:, [0, 2, 4, 5, 7, 9, 11]] = 0.6
    pcs[-60:] = 0.05
    pcs[-60:, [9, 4]] = 0.9  # the ending: A and E
    tonic_weight = np.zeros((2, 12))
    tonic_weight[:, 0], tonic_weight[:, 7] = 3.0, 1.0  # the tonic, then the fifth
    params = {"scale": [1.0, 1.0], "bias": [0.0, 0.0], "chord": np.zeros((2, 12, 9)).tolist(),
              "pitch_class_profile": np.zeros((2, 12)).tolist(), "final_profile": tonic_weight.tolist(), "final_frames": 60}
    a = an.analyze_frames(dict(frames, pitch_classes=pcs), heads, FPS, clip_key=params)
    s = an.clip_key_scores(frames["key"], frames["chord"], params, chroma_probs=pcs)
    assert a.key.split()[0] == "A" and s[9] == pytest.approx(s[21])  # the ending names the tonic, not the mode
    whole, final = an.clip_pitch_class_features(pcs, 60)
    want = np.log(1 / 24 + 1e-6) + np.array([[sum(tonic_weight[m, i] * final[(t + i) % 12] for i in range(12))
                                               for t in range(12)] for m in range(2)]).reshape(24)
    np.testing.assert_allclose(s, want, rtol=1e-12, atol=1e-12)
    # a learnt whole-clip profile that prefers minor thirds decides the mode
    prof = np.zeros((2, 12))
    prof[1, 3] = prof[0, 4] = 2.0
    a = an.analyze_frames(dict(frames, pitch_classes=pcs), heads, FPS, clip_key=dict(params, pitch_class_profile=prof.tolist()))
    assert a.key == "A minor"
    up = an.analyze_frames(dict(frames, pitch_classes=np.roll(pcs, 2, axis=1)), heads, FPS,
                           clip_key=dict(params, pitch_class_profile=prof.tolist()))
    assert up.key == "B minor"
    with pytest.raises(ParameterError, match=r"weighs a pitch_classes head \(pitch_class_profile, final_profile\)"):
        an.analyze_frames(frames, heads, FPS, clip_key=params)


def test_manifest_clip_key_profiles_are_checked():
    from mirzoo.errors import ManifestError
    from mirzoo.spec import ModelSpec
    from mirzoo.zoo.manifest import get_entry

    entry = json.loads(json.dumps(get_entry("tcn-music")))
    good = dict(_clip_key_params(), pitch_class_profile=np.zeros((2, 12)).tolist(),
                final_profile=np.ones((2, 12)).tolist(), final_frames=200, form="profiles")
    assert ModelSpec.from_entry("tcn-music", dict(entry, clip_key=good)).clip_key["final_frames"] == 200
    with pytest.raises(ManifestError, match=r"clip_key\['final_profile'\] must be numbers of shape \(2, 12\)"):
        ModelSpec.from_entry("tcn-music", dict(entry, clip_key=dict(good, final_profile=[[1.0] * 12])))
    for frames in (None, 0, 2.5, True):
        with pytest.raises(ManifestError, match=r"clip_key\['final_frames'\]=.*positive whole number of frames"):
            ModelSpec.from_entry("tcn-music", dict(entry, clip_key=dict(good, final_frames=frames)))
    entry["aux_heads"] = [a for a in entry["aux_heads"] if a["output"] != "pitch_classes"]
    entry["layers"].pop("pitch_classes", None)
    entry["config"].pop("frame_heads", None)
    with pytest.raises(ManifestError, match=r"clip_key\['pitch_class_profile'\] needs a 'pitch_classes' head"):
        ModelSpec.from_entry("tcn-music", dict(entry, clip_key=good))


# -- meter: the meter head and the downbeat activation together ----------------------------------
def test_bar_contrast_measures_the_downbeat_pattern():
    act, times = click_activation(20.0, bpm=120.0, per_bar=3, first_downbeat=1)
    beats = np.round(times * FPS).astype(int)
    c3 = an.bar_contrast(beats, act[:, 1], 3)
    assert c3 == pytest.approx(0.8 - 0.1, abs=0.01)  # downbeats 0.8, other beats 0.1
    assert c3 > an.bar_contrast(beats, act[:, 1], 4) and c3 > an.bar_contrast(beats, act[:, 1], 2)
    assert an.bar_contrast(beats, act[:, 1], 1) == 0.0 and an.bar_contrast(beats[:5], act[:, 1], 3) == 0.0


def test_downbeat_evidence_is_the_downbeat_share_of_each_beat():
    """A 4/4 click whose third beat is accented: the raw downbeat activation peaks there (0.5 against
    0.45 on the true downbeat), but relative to each beat's activation the first beat stands out, so
    the bar phase and the downbeats follow the ratio; ``downbeat_floor=None`` keeps the raw reading."""
    act, times = click_activation(16.0, bpm=120.0, per_bar=4, first_downbeat=0)
    beats = np.round(times * FPS).astype(int)
    for i, f in enumerate(beats):
        position = i % 4
        act[f - 1 : f + 2, 0] = {0: 0.5, 1: 0.5, 2: 0.95, 3: 0.5}[position]
        act[f - 1 : f + 2, 1] = {0: 0.45, 1: 0.05, 2: 0.5, 3: 0.05}[position]
    ev = an.downbeat_evidence(beats, act[:, 1], act[:, 0], floor=0.05)
    np.testing.assert_allclose(ev[:4], [0.45 / 0.55, 0.05 / 0.55, 0.5 / 1.0, 0.05 / 0.55])
    np.testing.assert_array_equal(an.downbeat_evidence(beats, act[:, 1]), an._activation_at_beats(beats, act[:, 1]))
    assert an.downbeat_phase(beats, act[:, 1], 4)[0] == 2  # the raw activation: the accent wins
    assert an.downbeat_phase(beats, act[:, 1], 4, act[:, 0], 0.05)[0] == 0
    first = np.arange(ev.size) % 4 == 0
    assert an.bar_contrast(beats, act[:, 1], 4, act[:, 0]) == pytest.approx(ev[first].mean() - ev[~first].mean())
    with pytest.raises(ParameterError, match=r"floor=0 must be > 0"):
        an.downbeat_evidence(beats, act[:, 1], act[:, 0], floor=0)
    frames, heads, _ = fake_frames()
    n = frames["beats"].shape[0]
    frames["beats"] = act[:n]
    probs = np.full((n, len(METERS)), 0.02)
    probs[:, METERS.index("4/4")] = 0.8
    frames["meter"] = probs / probs.sum(axis=1, keepdims=True)
    now = an.analyze_frames(frames, heads, FPS)
    assert now.meter == "4/4"
    np.testing.assert_allclose(now.downbeats, times[(times < n / FPS - 0.2)][0::4][: len(now.downbeats)], atol=0.021)
    raw = an.analyze_frames(frames, heads, FPS, downbeat_floor=None, meter_contrast=0.0)  # 4/4 from the head
    assert raw.meter == "4/4"
    assert abs(raw.downbeats[0] - now.downbeats[0]) == pytest.approx(1.0, abs=0.021)  # two beats at 120 BPM
    for bad in (0, -0.1, "0.05"):
        with pytest.raises(ParameterError, match="downbeat_floor=.* must be a number > 0, or None"):
            an.analyze_frames(frames, heads, FPS, downbeat_floor=bad)


def test_choose_meter_weighs_the_downbeats_against_the_meter_head():
    act, times = click_activation(20.0, bpm=120.0, per_bar=3, first_downbeat=0)
    beats = np.round(times * FPS).astype(int)
    n = act.shape[0]
    probs = np.full((n, len(METERS)), 0.02)
    probs[:, METERS.index("4/4")] = 0.6  # the head leans to 4/4 ...
    probs[:, METERS.index("3/4")] = 0.15  # ... but the downbeats recur every 3 beats
    probs /= probs.sum(axis=1, keepdims=True)
    assert an.choose_meter(probs, METERS, beats, act[:, 1], 0.0) == "4/4"
    assert an.choose_meter(probs, METERS, beats, act[:, 1], 300.0) == "3/4"
    # a flat downbeat activation leaves the head's answer
    assert an.choose_meter(probs, METERS, beats, np.full(n, 0.3), 300.0) == "4/4"
    with pytest.raises(ParameterError, match=r"contrast_weight=-1 must be >= 0"):
        an.choose_meter(probs, METERS, beats, act[:, 1], -1)
    # and analyze_frames places the downbeats with that bar length
    frames, heads, _ = fake_frames()
    frames["meter"] = probs[: frames["beats"].shape[0]]
    frames["beats"] = act[: frames["beats"].shape[0]]
    a = an.analyze_frames(frames, heads, FPS)
    assert a.meter == "3/4" and [c[0] for c in a.meter_candidates[:2]] == ["3/4", "4/4"]  # the reported one first
    mean = frames["meter"].mean(axis=0)
    assert [p for _, p in a.meter_candidates[:2]] == pytest.approx([mean[METERS.index("3/4")], mean[METERS.index("4/4")]])
    assert len(a.meter_candidates) == 3 and a.meter_candidates[2][1] <= a.meter_candidates[1][1]
    meter_row = next(r for r in a.to_rows() if r["type"] == "meter")  # its confidence is the reported meter's
    assert meter_row["label"] == "3/4" and meter_row["confidence"] == pytest.approx(mean[METERS.index("3/4")], abs=1e-4)
    np.testing.assert_allclose(a.downbeats, times[0::3], atol=0.021)
    assert an.analyze_frames(frames, heads, FPS, meter_contrast=0.0).meter == "4/4"


# -- bar length and downbeat phase chosen together (downbeat_model) ------------------------------------
def _one_unit_record(column: int, bar_lengths=(2, 3, 4)) -> dict:
    """A ``downbeat_model`` record whose single tanh unit reads one column of the candidate rows."""
    from mirzoo.spec import BEAT_FEATURES, DOWNBEAT_MODEL_FORM, bar_candidate_width

    width = bar_candidate_width(len(BEAT_FEATURES), bar_lengths)
    weights = np.zeros((width, 1))
    weights[column, 0] = 0.5
    return {"form": DOWNBEAT_MODEL_FORM, "features": list(BEAT_FEATURES), "bar_lengths": list(bar_lengths),
            "mean": [0.0] * width, "scale": [1.0] * width, "hidden_weights": weights.tolist(), "hidden_bias": [0.0],
            "output_weights": [1.0], "hidden": 1}


def test_interval_means_and_beat_features_follow_their_definition():
    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    beats = np.array([2, 9, 9, 20, 39])
    means = an.interval_means(x, beats)
    expected = [x[2:9].mean(0), x[9:10].mean(0), x[9:20].mean(0), x[20:39].mean(0), x[39:40].mean(0)]
    np.testing.assert_allclose(means, expected)
    np.testing.assert_allclose(an.interval_means(x[:, 0], beats)[:, 0], means[:, 0])  # a 1-D series
    assert an.interval_means(x, np.array([], dtype=int)).shape == (0, 3)

    act = rng.random((40, 2))
    chord, pcs = rng.random((40, 5)), rng.random((40, 12))
    f = an.beat_features(beats, act, chord, pcs)
    assert f.shape == (5, len(an.BEAT_FEATURES))
    down, beat = an._activation_at_beats(beats, act[:, 1]), an._activation_at_beats(beats, act[:, 0])
    np.testing.assert_allclose(f[:, 0], np.log(down + 1e-3))
    np.testing.assert_allclose(f[:, 2], np.log(down / (beat + 0.05) + 1e-3))
    cm = an.interval_means(chord, beats)
    change = 0.5 * np.abs(np.diff(cm, axis=0)).sum(axis=1)
    np.testing.assert_allclose(f[1:, 3], change)
    assert f[0, 3] == pytest.approx(change.mean())  # the first beat has no interval before it
    np.testing.assert_array_equal(an.beat_features(beats, act, chord, pcs, chord_means=cm), f)  # the caller's means
    np.testing.assert_allclose(f[:, 5], np.log(an.interval_means(act[:, 1], beats)[:, 0] + 1e-3))
    with pytest.raises(ParameterError, match=r"beats must be a \[frames, 2\]"):
        an.beat_features(beats, act[:, 0], chord, pcs)


def test_bar_candidates_cover_each_bar_length_with_two_bars_and_every_phase():
    rng = np.random.default_rng(1)
    k = len(an.BEAT_FEATURES)
    feats, chords = rng.random((9, k)), rng.random((9, 5))
    meter_mean = np.full(len(METERS), 1.0 / len(METERS))
    x, labels = an.bar_candidates(feats, chords, meter_mean, METERS)
    assert labels == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2), (4, 3)]
    assert x.shape == (9, an.bar_candidate_width(k)) == (9, 71)
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    # candidate (3, 1): downbeats at beats 1, 4, 7
    row = x[labels.index((3, 1))]
    m = [z[[1, 4, 7]].mean(0), z[[2, 5, 8]].mean(0), z[[0, 3, 6]].mean(0)]
    np.testing.assert_allclose(row[:k], m[0] - (m[1] + m[2]) / 2)
    np.testing.assert_array_equal(row[k:2 * k], 0.0)  # no half bar in three beats
    per_bar = np.array([an.beats_per_bar(mt) for mt in METERS])
    assert row[2 * k + 1] == pytest.approx(np.log(meter_mean[per_bar == 3].sum() + 1e-3))
    np.testing.assert_array_equal(row[2 * k + 2:2 * k + 5], [0, 1, 0])
    block3 = row[2 * k + 5 + 2 * k:2 * k + 5 + 5 * k]
    np.testing.assert_allclose(block3, np.ravel(m))
    np.testing.assert_array_equal(row[2 * k + 5:2 * k + 5 + 2 * k], 0.0)  # the two-beat block stays empty
    # (4, 1): the half bar is beat 3 of the bar, i.e. beats 3 and 7
    row4 = x[labels.index((4, 1))]
    np.testing.assert_allclose(row4[k:2 * k], z[[1, 5]].mean(0) - z[[3, 7]].mean(0))
    # the chord spread inside bars, centred over the phases of one bar length
    assert x[[0, 1], 2 * k].sum() == pytest.approx(0.0, abs=1e-12)
    # five beats: only two-beat bars have two whole bars
    assert an.bar_candidates(feats[:5], chords[:5], meter_mean, METERS)[1] == [(2, 0), (2, 1)]
    x0, none = an.bar_candidates(feats[:3], chords[:3], meter_mean, METERS)
    assert none == [] and x0.shape == (0, 71)
    # a clip's frame outputs at its beats: the same composition for choose_bars and fit-downbeats
    frames = {"beats": rng.random((90, 2)), "chord": rng.random((90, 5)), "pitch_classes": rng.random((90, 12)),
              "meter": rng.dirichlet(np.ones(len(METERS)), 90)}
    beats = np.arange(3, 90, 10)
    got, got_labels = an.clip_bar_candidates(beats, frames, METERS)
    want, want_labels = an.bar_candidates(
        an.beat_features(beats, frames["beats"], frames["chord"], frames["pitch_classes"]),
        an.interval_means(frames["chord"], beats), frames["meter"].mean(axis=0), METERS)
    assert got_labels == want_labels and len(got_labels) == 9
    np.testing.assert_allclose(got, want)


def _frames_with_pitch_classes(per_bar: int, first_downbeat: int, meter_lean: str, seconds: float = 16.0):
    act, times = click_activation(seconds, bpm=120.0, per_bar=per_bar, first_downbeat=first_downbeat)
    frames, heads, _ = fake_frames(seconds)
    n = frames["beats"].shape[0]
    frames["beats"] = act[:n]
    probs = np.full((n, len(METERS)), 0.02)
    probs[:, METERS.index(meter_lean)] = 0.6
    frames["meter"] = probs / probs.sum(axis=1, keepdims=True)
    frames["pitch_classes"] = np.full((n, 12), 0.5)
    return frames, heads, times


def test_analyze_frames_with_a_downbeat_model_chooses_bar_length_and_phase_together():
    # downbeats every third beat from beat 1, a meter head leaning to 4/4: a record that reads the
    # downbeat evidence at the candidate's downbeats against the other positions finds 3/4 and the phase
    frames, heads, times = _frames_with_pitch_classes(3, 1, "4/4")
    k = len(an.BEAT_FEATURES)
    record = _one_unit_record(column=an.BEAT_FEATURES.index("log_evidence"))
    beats = np.round(times * FPS).astype(int)
    assert an.choose_bars(beats, frames, METERS, record) == ("3/4", 3, 1)
    a = an.analyze_frames(frames, heads, FPS, downbeat_model=record)
    assert a.meter == "3/4"
    np.testing.assert_allclose(a.downbeats, times[1::3][: len(a.downbeats)], atol=0.021)
    np.testing.assert_array_equal(a.beat_positions[:5], [3, 1, 2, 3, 1])
    # no beat evidence: nothing to choose bars from, and no error
    quiet = an.analyze_frames(dict(frames, beats=frames["beats"] * 0.2), heads, FPS, downbeat_model=record)
    assert quiet.beats.size == 0 and quiet.meter is None and quiet.downbeats.size == 0
    # a record that reads only the meter head's prior keeps the head's bar length
    prior = _one_unit_record(column=2 * k + 1)
    assert an.choose_bars(beats, frames, METERS, prior)[:2] == ("4/4", 4)
    # a record that is not one of fit-downbeats' says so
    with pytest.raises(ParameterError, match=r"downbeat_model lacks \['hidden_weights'\]"):
        an.analyze_frames(frames, heads, FPS, downbeat_model={k: v for k, v in record.items() if k != "hidden_weights"})
    with pytest.raises(ParameterError, match=r"downbeat_model\['mean'\] has shape \(71,\); \(2, 3\) bar lengths need \(46,\)"):
        an.analyze_frames(frames, heads, FPS, downbeat_model=dict(record, bar_lengths=[2, 3]))
    with pytest.raises(ParameterError, match="must be a record of fit-downbeats"):
        an.analyze_frames(frames, heads, FPS, downbeat_model=[1, 2])
    # without pitch classes the record cannot read its features
    frames.pop("pitch_classes")
    with pytest.raises(ParameterError, match="downbeat_model reads the 'pitch_classes' head"):
        an.analyze_frames(frames, heads, FPS, downbeat_model=record)


def test_choose_bars_leaves_bar_lengths_it_does_not_know_and_short_clips_to_the_evidence():
    frames, heads, times = _frames_with_pitch_classes(3, 1, "5/4")
    probs = np.full_like(frames["meter"], 0.01)
    probs[:, METERS.index("5/4")] = 0.9
    frames["meter"] = probs / probs.sum(axis=1, keepdims=True)
    record = _one_unit_record(column=an.BEAT_FEATURES.index("log_evidence"))
    beats = np.round(times * FPS).astype(int)
    assert an.choose_bars(beats, frames, METERS, record) is None
    with_model = an.analyze_frames(frames, heads, FPS, downbeat_model=record)
    without = an.analyze_frames(frames, heads, FPS)
    assert with_model.meter == without.meter
    np.testing.assert_array_equal(with_model.downbeats, without.downbeats)
    assert an.choose_bars(beats[:3], frames, METERS, record) is None  # under two bars of any length


def test_manifest_downbeat_model_records_are_checked():
    from mirzoo.errors import ManifestError
    from mirzoo.spec import ModelSpec
    from mirzoo.zoo.manifest import get_entry

    entry = dict(get_entry("tcn-music"))
    good = _one_unit_record(0)
    spec = ModelSpec.from_entry("tcn-music", dict(entry, downbeat_model=good))
    assert spec.downbeat_model["hidden"] == 1
    cases = [
        (dict(good, form="mlp"), r"downbeat_model\['form'\]='mlp': expected 'listwise-mlp-v1'"),
        (dict(good, features=["log_downbeat"]), r"downbeat_model\['features'\]=\['log_downbeat'\] must be"),
        (dict(good, bar_lengths=[1, 2]), r"downbeat_model\['bar_lengths'\]=\[1, 2\] must be distinct whole numbers >= 2"),
        (dict(good, mean=[0.0] * 70), r"downbeat_model\['mean'\] must be numbers of shape \(71,\)"),
        (dict(good, hidden_weights=[[0.0, 0.0]] * 71), r"downbeat_model\['hidden_weights'\] must be numbers of shape \(71, 1\)"),
        (dict(good, scale=[0.0] * 71), r"downbeat_model\['scale'\] must be > 0 everywhere"),
        (dict(good, hidden_bias=[]), r"downbeat_model\['hidden_bias'\] must be a non-empty list"),
        ("big", r"downbeat_model='big' must be an object"),
    ]
    for record, message in cases:
        with pytest.raises(ManifestError, match=message):
            ModelSpec.from_entry("tcn-music", dict(entry, downbeat_model=record))
    with pytest.raises(ManifestError, match=r"downbeat_model reads the heads \['beats', 'chord', 'meter', 'pitch_classes'\]"):
        ModelSpec.from_entry("cnn-tagging", dict(get_entry("cnn-tagging"), downbeat_model=good))


# -- the beat-synchronous bar model (bar_model records) ------------------------------------------------
def _rigged_bar_record(sources=("beat_features", "pitch_classes"), width=18) -> dict:
    """A ``bar_model`` record whose GRU passes one feature through: the beat's downbeat evidence
    (``log_evidence``) lifts every "position 1" class and lowers the others, so a beat with downbeat
    evidence reads as a downbeat of any bar length, and only the bar length and phase whose downbeats fall
    on those beats explain the clip."""
    from mirzoo.spec import BAR_MODEL_FORM
    from mirzoo.tasks.bar_model import BAR_CLASSES
    from mirzoo.tasks.clip_heads import encode_array

    dense = np.zeros((width, 1))
    dense[an.BEAT_FEATURES.index("log_evidence"), 0] = 1.0
    kernel = np.array([[0.0, 0.0, 2.0]])  # update gate shut by its bias: the state is the candidate, tanh(2 h - 3.5)
    bias = np.array([[-20.0, 0.0, -3.5], [0.0, 0.0, 0.0]])
    first = np.array([1.0 if j == 1 else -1.0 for _, j in BAR_CLASSES])
    arrays = {"mean": np.zeros(width), "scale": np.ones(width), "dense_kernel": dense, "dense_bias": [3.0],
              "forward_kernel": kernel, "forward_recurrent": np.zeros((1, 3)), "forward_bias": bias,
              "backward_kernel": kernel, "backward_recurrent": np.zeros((1, 3)), "backward_bias": bias,
              "output_kernel": np.stack([3 * first, 3 * first]), "output_bias": np.zeros(len(BAR_CLASSES))}
    return {"form": BAR_MODEL_FORM, "sources": list(sources), "classes": [list(c) for c in BAR_CLASSES],
            **{k: encode_array(np.asarray(v, dtype=float)) for k, v in arrays.items()}}


def test_decode_bars_finds_the_bar_length_and_phase_that_explain_every_beat():
    from mirzoo.tasks.bar_model import BAR_CLASSES, decode_bars

    def probs(n, b, p, right=0.6):
        out = np.full((n, len(BAR_CLASSES)), (1 - right) / (len(BAR_CLASSES) - 1))
        for i in range(n):
            out[i, BAR_CLASSES.index((b, (i - p) % b + 1))] = right
        return out

    assert decode_bars(probs(12, 4, 2)) == (4, 2)
    assert decode_bars(probs(12, 3, 0)) == (3, 0)
    assert decode_bars(probs(9, 2, 1)) == (2, 1)
    # one beat read wrong does not move the answer
    noisy = probs(16, 3, 2)
    noisy[5] = noisy[5][::-1]
    assert decode_bars(noisy) == (3, 2)
    # seven beats are under two bars of four: four is not a candidate
    assert decode_bars(probs(7, 4, 0))[0] in (2, 3)
    assert decode_bars(probs(3, 2, 0)) is None  # under two bars of any length
    # a vocabulary of two-beat bars alone
    assert decode_bars(probs(8, 2, 1)[:, :2], [(2, 1), (2, 2)]) == (2, 1)
    with pytest.raises(ParameterError, match=r"probabilities must be \[beats, 9\], got shape \(5, 4\)"):
        decode_bars(np.ones((5, 4)))


def test_bar_features_are_the_beat_features_then_interval_means_of_each_source():
    rng = np.random.default_rng(2)
    frames = {"beats": rng.random((90, 2)), "chord": rng.random((90, 5)), "pitch_classes": rng.random((90, 12)),
              "embedding": rng.random((90, 4))}
    beats = np.arange(3, 90, 10)
    got = an.bar_features(beats, frames, ["beat_features", "embedding", "beats"])
    want = np.concatenate([an.beat_features(beats, frames["beats"], frames["chord"], frames["pitch_classes"]),
                           an.interval_means(frames["embedding"], beats), an.interval_means(frames["beats"], beats)], axis=1)
    assert got.shape == (9, len(an.BEAT_FEATURES) + 4 + 2)
    np.testing.assert_allclose(got, want)
    with pytest.raises(ParameterError, match=r"the bar model reads \['tcn4'\], which the frames lack"):
        an.bar_features(beats, frames, ["beat_features", "tcn4"])
    with pytest.raises(ParameterError, match=r"the bar model reads \['pitch_classes'\]"):
        an.bar_features(beats, {k: v for k, v in frames.items() if k != "pitch_classes"}, ["beat_features"])


def test_analyze_frames_with_a_bar_model_reads_bar_length_and_phase_over_the_beats():
    # downbeats every third beat from beat 1, a meter head leaning to 4/4: the record reads 3/4 and the phase
    frames, heads, times = _frames_with_pitch_classes(3, 1, "4/4")
    record = _rigged_bar_record()
    beats = np.round(times * FPS).astype(int)
    assert an.choose_bars_by_model(beats, frames, METERS, record) == ("3/4", 3, 1)
    a = an.analyze_frames(frames, heads, FPS, bar_model=record)
    assert a.meter == "3/4"
    np.testing.assert_allclose(a.downbeats, times[1::3][: len(a.downbeats)], atol=0.021)
    np.testing.assert_array_equal(a.beat_positions[:5], [3, 1, 2, 3, 1])
    # it takes precedence over a downbeat_model (one that keeps the meter head's four beats)
    k = len(an.BEAT_FEATURES)
    prior = _one_unit_record(column=2 * k + 1)
    assert an.analyze_frames(frames, heads, FPS, downbeat_model=prior).meter == "4/4"
    assert an.analyze_frames(frames, heads, FPS, downbeat_model=prior, bar_model=record).meter == "3/4"
    # no beat evidence: no beats, and no error; too few beats: the record cannot choose
    quiet = an.analyze_frames(dict(frames, beats=frames["beats"] * 0.2), heads, FPS, bar_model=record)
    assert quiet.beats.size == 0 and quiet.meter is None and quiet.downbeats.size == 0
    assert an.choose_bars_by_model(beats[:3], frames, METERS, record) is None
    # a bar length no meter of the vocabulary has: the evidence reading is kept
    two_only = [m for m in METERS if an.beats_per_bar(m) != 3]
    assert an.choose_bars_by_model(beats, dict(frames, meter=frames["meter"][:, :len(two_only)]), two_only, record) is None
    with pytest.raises(ParameterError, match="must be a record of fit-bars"):
        an.analyze_frames(frames, heads, FPS, bar_model=[1, 2])
    with pytest.raises(ParameterError, match=r"bar_model lacks \['classes', 'output_bias'\]; expected a fit-bars record"):
        an.analyze_frames(frames, heads, FPS, bar_model={k: v for k, v in record.items() if k not in ("classes", "output_bias")})
    with pytest.raises(ParameterError, match=r"the bar model reads \['pitch_classes'\]"):
        an.analyze_frames({k: v for k, v in frames.items() if k != "pitch_classes"}, heads, FPS, bar_model=record)


def test_manifest_bar_model_records_are_checked():
    from mirzoo.errors import ManifestError
    from mirzoo.spec import ModelSpec
    from mirzoo.tasks.clip_heads import encode_array
    from mirzoo.zoo.manifest import get_entry

    entry = dict(get_entry("tcn-music"))
    sources = ["beat_features", "embedding", "pitch_classes"]
    d, hidden, units = len(an.BEAT_FEATURES) + 128 + 12, 3, 2
    good = _rigged_bar_record(sources, d)
    shapes = {"dense_kernel": (d, hidden), "dense_bias": (hidden,), "output_kernel": (2 * units, 9)}
    for side in ("forward", "backward"):
        shapes.update({f"{side}_kernel": (hidden, 3 * units), f"{side}_recurrent": (units, 3 * units),
                       f"{side}_bias": (2, 3 * units)})
    good.update({name: encode_array(np.zeros(shape)) for name, shape in shapes.items()})
    spec = ModelSpec.from_entry("tcn-music", dict(entry, bar_model=good))
    assert spec.bar_model["sources"] == sources
    assert ModelSpec.from_entry("tcn-music", dict(entry, bar_model=dict(good, mean=encode_array(np.zeros(d), "float16")))).bar_model
    cases = [
        (dict(good, form="gru"), r"bar_model\['form'\]='gru': expected 'beat-bigru-v1'"),
        (dict(good, sources=["beat_features", "nope"]), r"bar_model\['sources'\]=\['beat_features', 'nope'\] must be distinct"),
        (dict(good, sources=["embedding", "embedding"]), r"bar_model\['sources'\]=\['embedding', 'embedding'\] must be distinct"),
        (dict(good, classes=[[2, 1], [3, 1], [3, 2]]), r"bar_model\['classes'\]=.* every position of each bar length"),
        (dict(good, classes=[[True, 1], [2, 2]]), r"bar_model\['classes'\]"),
        (dict(good, mean=encode_array(np.zeros(d - 1))), r"bar_model\['mean'\] must be .*'shape': \[146\]"),
        (dict(good, output_kernel=encode_array(np.zeros((2 * units, 8)))), r"bar_model\['output_kernel'\] must be"),
        ({k: v for k, v in good.items() if k != "dense_bias"}, r"bar_model lacks a 'dense_bias' or 'forward_recurrent'"),
        ("big", r"bar_model='big' must be an object \(python -m training.musical fit-bars\)"),
    ]
    for record, message in cases:
        with pytest.raises(ManifestError, match=message):
            ModelSpec.from_entry("tcn-music", dict(entry, bar_model=record))
    with pytest.raises(ManifestError, match=r"bar_model\['sources'\]"):
        ModelSpec.from_entry("cnn-tagging", dict(get_entry("cnn-tagging"), bar_model=good))


# -- the rhythm heads averaged over playback rates (rhythm_shifts) -----------------------------------
def test_align_rate_frames_puts_a_faster_pass_back_on_the_clip_grid():
    rate = 2 ** (1 / 16)  # one class of TEMPI's geometric grid
    _, times = click_activation(seconds=20.0, bpm=120.0)
    fast, fast_times = click_activation(seconds=20.0 / rate, bpm=120.0 * rate, first=0.3 / rate)
    n = int(20.0 * FPS)
    tempo = np.zeros((fast.shape[0], len(TEMPI)))
    tempo[:, 17] = 1.0  # the faster pass hears about 2 ** (17 / 16) * 40 BPM
    aligned = an.align_rate_frames({"beats": fast, "tempo": tempo}, rate, n, TEMPI)
    assert aligned["beats"].shape == (n, 2) and aligned["tempo"].shape == (n, len(TEMPI))
    peaks = np.flatnonzero(aligned["beats"][:, 0] > 0.5)
    want = np.round(fast_times * rate * FPS)
    assert peaks.size >= want.size - 1 and np.all(np.min(np.abs(peaks[:, None] - want[None, :]), axis=1) <= 1)
    # a tempo of c BPM sounded as c * rate: class 17 of the faster pass is class 16 of the clip (the
    # labels are rounded BPM, so the grid read from them is within 0.1 % of 2 ** (1 / 16) per class)
    np.testing.assert_allclose(aligned["tempo"][:, 16], 1.0, atol=1e-3)
    assert np.abs(np.delete(aligned["tempo"], 16, axis=1)).max() < 1e-3
    # rate 1 and the identity grid give the frames back; beyond the end the last frame is held
    same = an.align_rate_frames({"beats": fast}, 1.0, fast.shape[0])
    np.testing.assert_array_equal(same["beats"], fast)
    longer = an.align_rate_frames({"beats": fast}, 1.0, fast.shape[0] + 3)
    np.testing.assert_array_equal(longer["beats"][-4:], np.repeat(fast[-1:], 4, axis=0))
    with pytest.raises(ParameterError, match=r"rate=0.0 must be a positive number"):
        an.align_rate_frames({"beats": fast}, 0.0, n)
    with pytest.raises(ParameterError, match=r"frames\['tempo'\] has shape \(\d+, 3\): expected \[frames, 48\]"):
        an.align_rate_frames({"tempo": tempo[:, :3]}, rate, n, TEMPI)


def test_rhythm_ensemble_averages_the_rhythm_heads_only():
    frames, _, _ = fake_frames(seconds=10.0)
    n = frames["beats"].shape[0]
    up, down = 2 ** (1 / 18), 2 ** (-1 / 18)
    rng = np.random.default_rng(3)
    shifted = {s: {h: rng.random((int(round(n / r)),) + frames[h].shape[1:]) for h in ("beats", "tempo", "meter", "key")}
               for s, r in ((2 / 3, up), (-2 / 3, down))}
    out = an.rhythm_ensemble(frames, shifted, (-2 / 3, 0, 2 / 3), TEMPI)
    for h in ("beats", "tempo", "meter"):
        parts = [frames[h]] + [an.align_rate_frames({h: shifted[s][h]}, an.shift_rate(s), n, TEMPI)[h] for s in (2 / 3, -2 / 3)]
        np.testing.assert_allclose(out[h], np.mean(parts, axis=0), rtol=1e-12)
    for h in ("key", "chord"):  # pitch heads: the plain pass's own
        assert out[h] is frames[h]
    assert an.shift_rate(2 / 3) == pytest.approx(up) and an.shift_rate(-12) == 0.5
    # without 0 the plain pass's rhythm heads are left out of the mean
    only = an.rhythm_ensemble(frames, shifted, (2 / 3,), TEMPI)
    np.testing.assert_allclose(only["beats"], an.align_rate_frames({"beats": shifted[2 / 3]["beats"]}, up, n)["beats"])
    assert an.rhythm_ensemble(frames, {}, (0,))["beats"] is frames["beats"]
    with pytest.raises(ParameterError, match=r"no outputs for the pass at \+1 semitones"):
        an.rhythm_ensemble(frames, shifted, (0, 1))
    with pytest.raises(ParameterError, match=r"the pass at \+0.667 semitones lacks the head output\(s\) \['meter'\]"):
        an.rhythm_ensemble(frames, {2 / 3: {h: v for h, v in shifted[2 / 3].items() if h != "meter"}}, (0, 2 / 3))


@pytest.mark.parametrize("bad, message", [
    ((), r"rhythm_shifts is empty"),
    ((0, 2.5), r"2.5 is not a number of semitones within \+-2"),
    ((0, float("nan")), r"nan is not a number of semitones"),
    ((0, True), r"True is not a number of semitones"),
    ((0, 0.5, 0.5), r"repeats a shift: expected distinct values"),
    ("0", r"expected a sequence of shifts in semitones"),
    (0.5, r"expected a sequence of shifts in semitones"),
])
def test_rhythm_shifts_are_checked(bad, message):
    with pytest.raises(ParameterError, match=message):
        an.check_rhythm_shifts(bad)


def test_analyze_with_rhythm_shifts_is_the_plain_reading_with_averaged_rhythm_heads(tcn, tmp_path, monkeypatch):
    from mirzoo.audio import change_rate
    from mirzoo.inference import runner

    y = tone_mix(6.0, seed=7)
    fps = tcn.sample_rate / tcn.hop_length
    keys = list(an.REQUIRED_HEADS) + [h for h in an.OPTIONAL_HEADS if h in tcn.heads]
    plain = tcn.forward([y], keys, 16)[0]
    one = tcn.analyze(y, sr=SR, rhythm_shifts=(0,))
    records = {"clip_key": tcn.spec.clip_key, "downbeat_model": tcn.spec.downbeat_model, "bar_model": tcn.spec.bar_model}
    want = an.analyze_frames(plain, tcn.heads, fps, duration=6.0, model=tcn.name, **records)
    np.testing.assert_allclose(one.beats, want.beats)
    assert (one.key, one.meter, one.tempo) == (want.key, want.meter, want.tempo)
    default = tcn.analyze(y, sr=SR)  # the default is the one-pass reading
    np.testing.assert_array_equal(default.beats, one.beats)
    assert (default.meter, default.tempo) == (one.meter, one.tempo) and an.RHYTHM_SHIFTS == (0.0,)
    assert len(an.RATE_ENSEMBLE) == 5 and an.check_rhythm_shifts(an.RATE_ENSEMBLE) == an.RATE_ENSEMBLE
    shifts = (-1 / 3, 0.0, 1 / 3)
    shifted = {s: tcn.forward([change_rate(y, SR, an.shift_rate(s))], list(an.RHYTHM_HEADS), 16)[0] for s in shifts if s}
    frames = an.rhythm_ensemble(plain, shifted, shifts, tcn.heads["tempo"])
    helper = an.signal_rhythm_ensemble(tcn, y, plain, shifts)
    for h in an.RHYTHM_HEADS:
        np.testing.assert_array_equal(helper[h], frames[h])
    three = tcn.analyze(y, sr=SR, rhythm_shifts=shifts)
    want3 = an.analyze_frames(frames, tcn.heads, fps, duration=6.0, model=tcn.name, **records)
    np.testing.assert_allclose(three.beats, want3.beats)
    assert (three.meter, three.tempo) == (want3.meter, want3.tempo)
    assert three.key_candidates == one.key_candidates and three.chords == one.chords  # pitch heads: the plain pass
    # a file streamed block by block (a long file) gives the same passes as the file decoded whole
    path = tmp_path / "clip.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    whole = tcn.run_inputs([str(path)], None, list(an.RHYTHM_HEADS), 16, rate=an.shift_rate(1 / 3))[0]
    monkeypatch.setattr(runner, "STREAM_MIN_SAMPLES", 1)
    monkeypatch.setattr(mirzoo.audio, "_BLOCK_FRAMES", 7919)
    streamed = tcn.run_inputs([str(path)], None, list(an.RHYTHM_HEADS), 16, rate=an.shift_rate(1 / 3))[0]
    assert streamed[2] == whole[2] == y.size  # the input's own length
    for h in an.RHYTHM_HEADS:
        np.testing.assert_allclose(streamed[0][h], whole[0][h], rtol=1e-4, atol=1e-5)
    with pytest.raises(ParameterError, match=r"rate=3.0: expected a playback-rate factor between 0.5 and 2"):
        tcn.run_inputs([y], SR, ["beats"], 16, rate=3.0)


def test_cli_analyze_rhythm_shifts(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_mix(3.0), SR)
    assert cli.main(["analyze", str(wav), "-o", str(tmp_path / "o.json"), "--rhythm-shifts", "0", "3"]) == 2
    assert "--rhythm-shifts: rhythm_shifts=(0.0, 3.0): 3.0 is not a number of semitones within +-2" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
    assert cli.main(["analyze", str(wav), "-o", str(tmp_path / "o.json"), "-q", "--rhythm-shifts", "0", "0.5"]) == 0
    doc = json.loads((tmp_path / "o.json").read_text())
    want = mirzoo.load("tcn-music").analyze(str(wav), rhythm_shifts=(0, 0.5))
    np.testing.assert_allclose(doc["files"][0]["beats"], want.beats, atol=1e-6)
