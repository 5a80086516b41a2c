"""Tests of the public training corpus (training.corpus*): a tiny real build.

The module-scoped fixture renders a few short clips of four collections with
FluidSynth; every test then checks one property of that build.  Skipped when music21,
FluidSynth or the FluidR3 soundfont are missing (a failure under ``CI=true``, which installs them).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

# `training` is not an installed package: make the repository root importable under plain `pytest`
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

music21 = pytest.importorskip("music21")
soundfile = pytest.importorskip("soundfile")

from training import corpus as tc  # noqa: E402
from training import corpus_render as cr  # noqa: E402
from training import corpus_sources as cs  # noqa: E402
from conftest import fluidsynth_present, skip_unless_installed  # noqa: E402

# skip (fail under CI=true) only when the renderer or the soundfont is truly absent; any other
# error of the renderer fails the tests that use it
skip_unless_installed(os.path.isfile(cr.SOUNDFONTS["FluidR3"]),
                      "FluidR3 soundfont missing (apt-get install fluid-soundfont-gm)")
skip_unless_installed(fluidsynth_present(),
                      "no FluidSynth (pip install pyfluidsynth; apt-get install libfluidsynth3 or fluidsynth)")

COLLECTIONS = ("bach-chorales", "oneills-1850", "essen-folksongs", "palestrina")
HOURS = 0.012  # about 43 s of audio: 8-9 clips of up to 5 s


def tiny_config(**changes) -> tc.BuildConfig:
    """A fast configuration: 5 s clips, 2 per piece, four collections, no noise."""
    cfg = tc.BuildConfig(seed=0, clip_seconds=5.0, min_clip_seconds=2.0, max_clips_per_piece=2,
                         collections=COLLECTIONS)
    cfg.augment.p_noise = 0.0  # keep the chroma check about the notes
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("score-cache"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("corpus") / "c"
    report = tc.build(str(out), tiny_config(), hours=HOURS, workers=2, cache_dir=cache_dir)
    return out, report


def _rows(out):
    return tc.read_metadata(str(out))


def test_build_writes_outputs(built):
    out, report = built
    rows = _rows(out)
    assert report.clips == len(rows) >= 6
    assert report.rendered == len(rows) and report.skipped == 0
    # the clips rendered past the cap by workers running ahead are not left behind
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz")) == sorted(r["targets"] for r in rows)
    assert sorted(p.relative_to(out).as_posix() for p in (out / "audio").rglob("*.*")) == sorted(r["path"] for r in rows)
    assert list(rows[0]) == list(tc.METADATA_COLUMNS)
    # split_key (what keeps one tune printed twice on one side) is written and decides the split
    assert all(r["split_key"] and tc.split_of(r["split_key"], 0) == r["split"] for r in rows)
    assert HOURS * 3600 <= sum(float(r["duration"]) for r in rows) <= HOURS * 3600 + 5.0
    assert {r["collection"] for r in rows} <= set(COLLECTIONS)
    assert len({r["collection"] for r in rows}) >= 3  # interleaved collections
    vocab = json.loads((out / "vocabulary.json").read_text())
    assert vocab["n_clips"] == len(rows)
    tags = [t for r in rows for t in r["tags"].split(";")]
    assert vocab["counts"] == dict(sorted(collections.Counter(tags).items()))
    for prefix in ("instrument:", "ensemble:", "collection:", "style:", "meter:", "tempo:", "texture:"):
        assert all(any(t.startswith(prefix) for t in r["tags"].split(";")) for r in rows), prefix
    assert (out / "failures.csv").read_text().startswith("piece_id,collection,stage,error")
    assert not list(out.rglob(".*.tmp*"))


def test_score_targets_in_build(built):
    from training import corpus_targets as ct

    out, _ = built
    vocab = json.loads((out / "vocabulary.json").read_text())
    assert vocab["corpus_version"] == tc.CORPUS_VERSION and vocab["chords"] == list(ct.CHORDS)
    assert vocab["keys"][9] == "A major" and vocab["keys"][9 + 12] == "A minor"
    seen_chord = seen_key = False
    for row in _rows(out):
        with np.load(out / row["targets"]) as t:
            n = t["roll"].shape[0]
            assert int(t["targets_version"]) == ct.TARGETS_VERSION
            for name in ("beat", "downbeat", "beat_mask", "key", "key_source", "chord"):
                assert t[name].shape == (n,), name
            assert set(np.unique(t["chord"])) <= set(range(-1, len(ct.CHORDS)))
            assert set(np.unique(t["key"])) <= set(range(-1, 24))
            # a key label always has a source, a masked key never has one
            assert np.array_equal(t["key"] >= 0, t["key_source"] > 0)
            # beats only where the grid is known; downbeats are beats
            assert not (t["beat"] & ~t["beat_mask"].astype(bool)).any()
            assert not (t["downbeat"] & ~t["beat"].astype(bool)).any()
            frames = np.round(t["beat_times"] * 16000 / 320).astype(int)
            assert np.array_equal(np.flatnonzero(t["beat"]), np.unique(frames[frames < n]))
            meter = int(t["meter"])
            assert row["meter"] == (ct.METERS[meter] if meter >= 0 else "")
            seen_chord |= bool((t["chord"] >= 0).any())
            seen_key |= bool((t["key"] >= 0).any())
        doc = json.loads((out / row["annotation"]).read_text())
        assert {a["namespace"] for a in doc["annotations"]} >= {"beat", "chord", "key_mode"}
    assert seen_chord and seen_key


def test_audio_not_silent_and_format(built):
    out, _ = built
    for row in _rows(out):
        info = soundfile.info(out / row["path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert info.format == "FLAC"
        y, _ = soundfile.read(out / row["path"], dtype="float32")
        rms = float(np.sqrt(np.mean(y ** 2)))
        assert rms > 1e-3, row["clip_id"]
        assert np.max(np.abs(y)) <= 1.0


def test_targets_line_up_with_audio(built):
    out, _ = built
    for row in _rows(out):
        n = soundfile.info(out / row["path"]).frames
        assert abs(n / 16000 - float(row["duration"])) < 1e-3
        with np.load(out / row["targets"]) as t:
            assert int(t["sr"]) == 16000 and int(t["hop"]) == 320 and int(t["n_samples"]) == n
            frames = 1 + n // 320
            assert t["roll"].shape == (frames, 128) and t["onsets"].shape == (frames, 128)
            assert t["chroma"].shape == (frames, 12)
            assert int(row["n_frames"]) == frames
            notes = t["notes"]
            assert notes.shape[1] == 6 and notes.shape[0] > 0
            assert notes[:, 0].min() >= 0 and notes[:, 1].max() <= n / 16000 + 1e-3
            # chroma is the pitch-class fold of the roll, onsets lie inside the roll
            roll = t["roll"]
            folded = np.stack([roll[:, pc::12].max(axis=1) for pc in range(12)], axis=1)
            assert np.array_equal(folded, t["chroma"])
            assert np.all(roll[t["onsets"] > 0] == 1)
            # the first labelled onset is where the audio starts to sound
            y, _ = soundfile.read(out / row["path"], dtype="float32")
            first_label = int(np.argmax(roll.any(axis=1)))
            env = np.array([np.sqrt(np.mean(y[i * 320:(i + 1) * 320] ** 2) + 1e-12) for i in range(n // 320)])
            first_audio = int(np.argmax(env > 0.05 * env.max()))
            assert abs(first_audio - first_label) <= 3, row["clip_id"]
            # the programs listed are those of the notes rendered
            assert sorted({int(p) for p in notes[:, 5]}) == sorted({int(p) for p in row["programs"].split(";")})


def test_chroma_matches_score_pitch_classes(built):
    librosa = pytest.importorskip("librosa")
    out, _ = built
    true_corr, shifted_corr = [], []
    for row in _rows(out):
        y, sr = soundfile.read(out / row["path"], dtype="float32")
        audio = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=4096, hop_length=320).mean(axis=1)
        with np.load(out / row["targets"]) as t:
            label = t["chroma"].astype(np.float64).mean(axis=0)
        true_corr.append(np.corrcoef(audio, label)[0, 1])
        shifted_corr.append(np.mean([np.corrcoef(audio, np.roll(label, s))[0, 1] for s in (-1, 1)]))
    true_corr, shifted_corr = np.array(true_corr), np.array(shifted_corr)
    print("chroma correlation", true_corr.round(2), "shifted by a semitone", shifted_corr.round(2))
    assert true_corr.mean() > 0.6, true_corr
    assert true_corr.mean() > shifted_corr.mean() + 0.4, (true_corr, shifted_corr)
    assert np.mean(true_corr > shifted_corr) >= 0.8


def test_splits_disjoint_by_piece(built):
    out, _ = built
    split_of_piece = collections.defaultdict(set)
    keys = {p.piece_id: p.split_key for p in cs.build_catalog(COLLECTIONS)}
    for row in _rows(out):
        split_of_piece[row["piece_id"]].add(row["split"])
        assert row["split"] == tc.split_of(keys[row["piece_id"]], 0)
    assert all(len(s) == 1 for s in split_of_piece.values())


def test_split_assignment_over_catalog():
    catalog = cs.build_catalog()
    assert len(catalog) > 10000
    assert len({p.piece_id for p in catalog}) == len(catalog)
    splits = [tc.split_of(p.split_key, 0) for p in catalog]
    counts = collections.Counter(splits)
    assert 0.75 < counts["train"] / len(catalog) < 0.85
    assert 0.07 < counts["test"] / len(catalog) < 0.13
    # one split per split key (e.g. a tune printed in two books), another seed reshuffles
    by_key = collections.defaultdict(set)
    for p, s in zip(catalog, splits):
        by_key[p.split_key].add(s)
    assert all(len(s) == 1 for s in by_key.values())
    assert splits != [tc.split_of(p.split_key, 1) for p in catalog]


def test_rebuild_same_seed_identical_metadata(built, tmp_path, cache_dir):
    out, _ = built
    again = tmp_path / "again"
    tc.build(str(again), tiny_config(), hours=HOURS, workers=1, cache_dir=cache_dir)  # other worker count
    assert (again / "metadata.csv").read_bytes() == (out / "metadata.csv").read_bytes()
    assert (again / "vocabulary.json").read_bytes() == (out / "vocabulary.json").read_bytes()
    row = _rows(out)[0]
    a, _ = soundfile.read(out / row["path"])
    b, _ = soundfile.read(again / row["path"])
    assert np.array_equal(a, b)
    # score targets and annotations too
    for row in _rows(out):
        assert (again / row["annotation"]).read_bytes() == (out / row["annotation"]).read_bytes()
        with np.load(out / row["targets"]) as t1, np.load(again / row["targets"]) as t2:
            assert sorted(t1.files) == sorted(t2.files)
            for name in t1.files:
                assert np.array_equal(t1[name], t2[name], equal_nan=t1[name].dtype.kind == "f"), name
    other = tmp_path / "seed1"
    tc.build(str(other), tiny_config(seed=1), hours=0.003, workers=1, cache_dir=cache_dir)
    assert (other / "metadata.csv").read_bytes() != (out / "metadata.csv").read_bytes()


def test_render_seed_renders_the_same_split_afresh(built, tmp_path, cache_dir):
    out, _ = built
    assert "render_seed" not in tiny_config().to_json()  # earlier builds' build_config.json resume unchanged
    assert tc.BuildConfig.from_json(tiny_config(render_seed=3).to_json()).draw_seed == 3
    assert tiny_config(seed=2).draw_seed == 2
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="render_seed="):
            tiny_config(render_seed=bad).validate()
    fresh = tmp_path / "render1"
    tc.build(str(fresh), tiny_config(render_seed=1), hours=HOURS, workers=1, cache_dir=cache_dir)
    keys = {p.piece_id: p.split_key for p in cs.build_catalog(COLLECTIONS)}
    rows, before = _rows(fresh), _rows(out)
    assert rows and all(r["split"] == tc.split_of(keys[r["piece_id"]], 0) for r in rows)  # seed 0's splits
    old = {(r["piece_id"], r["clip_id"]): r for r in before}
    assert [(r["piece_id"], r["start_ql"], r["transposition"], r["programs"]) for r in rows] != \
        [(r["piece_id"], r["start_ql"], r["transposition"], r["programs"]) for r in before]
    same = [r for r in rows if (r["piece_id"], r["clip_id"]) in old]
    assert all((r["transposition"], r["tempo"], r["programs"]) != (old[(r["piece_id"], r["clip_id"])]["transposition"],
                                                                   old[(r["piece_id"], r["clip_id"])]["tempo"],
                                                                   old[(r["piece_id"], r["clip_id"])]["programs"])
               for r in same)  # a clip of a piece both renders hold is drawn afresh
    assert json.loads((fresh / "build_config.json").read_text())["render_seed"] == 1


def test_resume_skips_done_clips(built, tmp_path, cache_dir):
    src, _ = built
    out = tmp_path / "resume"
    shutil.copytree(src, out)
    report = tc.build(str(out), tiny_config(), hours=HOURS, workers=1, cache_dir=cache_dir)
    assert report.rendered == 0 and report.skipped == report.clips == len(_rows(src))
    before = (src / "metadata.csv").read_bytes()
    assert (out / "metadata.csv").read_bytes() == before
    # a crash mid-clip: audio written, targets not yet; a stray temporary file
    row = _rows(out)[1]
    (out / row["targets"]).unlink()
    stray = out / "audio" / ".stray.flac.123.tmp"
    stray.write_bytes(b"partial")
    report = tc.build(str(out), tiny_config(), hours=HOURS, workers=1, cache_dir=cache_dir)
    assert report.rendered == 1 and report.skipped == report.clips - 1
    assert not stray.exists()
    assert (out / "metadata.csv").read_bytes() == before
    # more hours: earlier clips reused, new ones appended
    report = tc.build(str(out), tiny_config(), hours=HOURS + 0.004, workers=1, cache_dir=cache_dir)
    assert report.clips > len(_rows(src)) and report.rendered == report.clips - len(_rows(src))
    assert (out / "metadata.csv").read_text().startswith(before.decode())


def test_resume_refuses_other_settings(built, tmp_path, cache_dir):
    src, _ = built
    out = tmp_path / "other"
    shutil.copytree(src, out)
    with pytest.raises(ValueError, match="other settings.*sr"):
        tc.build(str(out), tiny_config(sr=22050), hours=HOURS, workers=1, cache_dir=cache_dir)


def test_timgm6mb_refused_for_train_and_valid(tmp_path):
    for splits in (("train",), ("valid",), ("train", "valid", "test")):
        with pytest.raises(cr.SoundfontPolicyError, match="test"):
            tiny_config(soundfont="TimGM6mb", splits=splits).validate()
    # also when given as a path, and through the CLI
    with pytest.raises(cr.SoundfontPolicyError):
        tiny_config(soundfont=cr.SOUNDFONTS["TimGM6mb"], splits=("train",)).validate()
    code = tc.main(["build", "--out", str(tmp_path / "x"), "--hours", "0.01", "--soundfont", "TimGM6mb"])
    assert code == 2 and not (tmp_path / "x").exists()


def test_opl3_is_reserved_for_the_test_split_too():
    for splits in (("train",), ("valid",), ("train", "test")):
        with pytest.raises(cr.SoundfontPolicyError, match=r"soundfont 'OPL3' is reserved for the 'test'"):
            cr.check_soundfont_for_splits("OPL3", splits)
    cr.check_soundfont_for_splits("OPL3", ("test",))
    if os.path.isfile(cr.SOUNDFONTS["OPL3"]):  # spelt as a path it is still OPL3
        assert cr.resolve_soundfont(cr.SOUNDFONTS["OPL3"])[0] == "OPL3"
        with pytest.raises(cr.SoundfontPolicyError):
            tiny_config(soundfont=cr.SOUNDFONTS["OPL3"], splits=("valid",)).validate()


def test_heldout_test_split_with_timgm6mb(tmp_path, cache_dir):
    skip_unless_installed(os.path.isfile(cr.SOUNDFONTS["TimGM6mb"]),
                          "TimGM6mb missing (apt-get install timgm6mb-soundfont)")
    out = tmp_path / "heldout"
    cfg = tiny_config(soundfont="TimGM6mb", splits=("test",))
    report = tc.build(str(out), cfg, hours=0.003, workers=1, cache_dir=cache_dir)
    rows = _rows(out)
    assert report.clips == len(rows) >= 1
    assert {r["split"] for r in rows} == {"test"} and {r["soundfont"] for r in rows} == {"TimGM6mb"}
    y, _ = soundfile.read(out / rows[0]["path"])
    assert np.sqrt(np.mean(y ** 2)) > 1e-3


def test_stats_and_cli(built, capsys):
    out, _ = built
    stats = tc.corpus_stats(str(out))
    rows = _rows(out)
    assert stats["clips"] == len(rows)
    assert abs(stats["hours"] - sum(float(r["duration"]) for r in rows) / 3600) < 1e-3
    assert sum(s["clips"] for s in stats["splits"].values()) == len(rows)
    assert tc.main(["stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "clips" in text and "failures: 0" in text and "instrument:" in text
    assert tc.main(["stats", str(out / "nothing")]) == 2


def test_failures_are_counted_not_raised(tmp_path, cache_dir):
    bad = cs.Piece("misc-folk/broken/1", "misc-folk", "miscFolk/broken.abc", 1,
                   "X:1\nT:broken\nM:4/4\nK:C\n%% nothing here\n", "broken", ("collection:misc-folk",), "x")
    result = tc.process_piece((bad, "train", tiny_config().to_json(), str(tmp_path), cache_dir, "auto"))
    assert result.failure is not None and result.failure[0] in ("parse", "plan") and not result.rows
    # the failure is cached: a second call does not parse again and gives the same answer
    again = tc.process_piece((bad, "train", tiny_config().to_json(), str(tmp_path), cache_dir, "auto"))
    assert again.failure == result.failure


def test_frame_targets_unit():
    events = cr.NoteEvents(onset=np.array([0.0, 0.5, 0.5]), offset=np.array([0.5, 1.0, 0.51]),
                           pitch=np.array([60, 64, 67]), velocity=np.array([80, 80, 80]),
                           channel=np.zeros(3, int), program=np.zeros(3, int))
    t = cr.frame_targets(events, n_samples=16000, sr=16000, hop=320)
    assert t["roll"].shape == (51, 128)
    assert t["roll"][:25, 60].all() and not t["roll"][25:, 60].any()
    assert t["roll"][25:50, 64].all() and t["roll"][25, 67] == 1 and t["roll"][26:, 67].sum() == 0
    assert t["onsets"][0, 60] == t["onsets"][25, 64] == t["onsets"][25, 67] == 1 and t["onsets"].sum() == 3
    assert t["chroma"][0].tolist() == [1] + [0] * 11 and t["chroma"][30, 4] == 1


def test_render_is_deterministic_and_history_free():
    renderer = cr.FluidRenderer(cr.SOUNDFONTS["FluidR3"], 16000)
    on = np.arange(8) * 0.25
    a = cr.NoteEvents(on, on + 0.2, np.arange(60, 68), np.full(8, 90), np.zeros(8, int), np.full(8, 40))
    b = cr.NoteEvents(on, on + 0.25, np.arange(40, 48), np.full(8, 90), np.zeros(8, int), np.full(8, 0))
    fx = cr.Effects(reverb_send=100, room_size=0.8, chorus_send=60)
    first = renderer.render(a, 40000, fx)
    renderer.render(b, 40000, cr.Effects())
    assert np.array_equal(first, renderer.render(a, 40000, fx))
    assert first.dtype == np.float32 and first.shape == (40000,) and np.abs(first).max() > 0


def test_labels_helpers():
    assert tc.meter_class(6, 8) == "compound-duple" and tc.meter_class(3, 4) == "triple"
    assert tc.meter_class(4, 2) == "quadruple" and tc.meter_class(5, 4) == "irregular"
    assert tc.tempo_class(60) == "slow" and tc.tempo_class(100) == "moderate" and tc.tempo_class(130) == "fast"
    assert cs.abc_mode("Ador") == "dorian" and cs.abc_mode("D Mixolydian") == "mixolydian"
    assert cs.abc_mode("Em") == "minor" and cs.abc_mode("G") == "major" and cs.abc_mode("Hp") is None


def test_orchestration_draws_are_valid():
    for i in range(200):
        rng = np.random.default_rng(i)
        ranges = [(60, 79), (55, 72), (48, 65), (36, 55)][: 1 + i % 4]
        orch = cr.draw_orchestration(rng, ranges, [-1] * len(ranges), "bach-chorales")
        assert orch.voices and all(v[2] in cr.PROGRAMS for v in orch.voices)
        assert all(v[1] != 9 for v in orch.voices)  # never the GM drum channel
        assert set(orch.families) <= set(cr.FAMILIES)
        assert {v[0] for v in orch.voices} == set(range(len(ranges)))
        if orch.solo:
            assert len(set(orch.programs)) == 1
    quartet = cr.draw_orchestration(np.random.default_rng(0), [(60, 80)] * 4, [40, 40, 41, 42], "string-quartets")
    assert quartet.voices


def test_write_midi_readable_by_music21(tmp_path):
    events = cr.NoteEvents(np.array([0.0, 0.5]), np.array([0.5, 1.0]), np.array([60, 67]), np.array([90, 90]),
                           np.array([0, 1]), np.array([40, 73]))
    path = tmp_path / "x.mid"
    cr.write_midi(str(path), events, {0: {91: 40}})
    score = music21.converter.parse(str(path))
    pitches = sorted(int(n.pitch.midi) for n in score.recurse().notes)
    assert pitches == [60, 67]


def test_cli_backend_matches_pyfluidsynth():
    import shutil as _shutil

    skip_unless_installed(_shutil.which("fluidsynth") is not None,
                          "fluidsynth program missing (apt-get install fluidsynth)")
    on = np.arange(8) * 0.25
    events = cr.NoteEvents(on, on + 0.2, np.arange(60, 68), np.full(8, 90), np.zeros(8, int), np.full(8, 40))
    y_py = cr.FluidRenderer(cr.SOUNDFONTS["FluidR3"], 16000, backend="pyfluidsynth").render(events, 40000)
    y_cli = cr.FluidRenderer(cr.SOUNDFONTS["FluidR3"], 16000, backend="cli").render(events, 40000)
    assert y_cli.shape == y_py.shape == (40000,)
    env = [np.sqrt(np.mean(y.reshape(-1, 320) ** 2, axis=1)) for y in (y_py, y_cli)]
    assert np.corrcoef(env[0], env[1])[0, 1] > 0.98


def test_audio_time_stretch_and_detune_keep_targets_aligned(tmp_path, cache_dir):
    cfg = tiny_config(collections=("oneills-1850",))
    cfg.augment.p_time_stretch = 1.0
    cfg.augment.p_pitch_shift = 1.0
    out = tmp_path / "stretched"
    tc.build(str(out), cfg, hours=0.002, workers=1, cache_dir=cache_dir, max_pieces=2)
    rows = _rows(out)
    assert rows
    for row in rows:
        rate = float(row["time_stretch"])
        assert rate != 1.0 and float(row["pitch_shift_cents"]) != 0.0
        n = soundfile.info(out / row["path"]).frames
        with np.load(out / row["targets"]) as t:
            assert t["roll"].shape[0] == 1 + n // 320 == int(row["n_frames"])
            assert t["notes"][:, 1].max() <= n / 16000 + 1e-3
