"""tcn-music: the multirate constant-Q front-end, the TCN's receptive field, and the training targets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import mirzoo
from mirzoo.audio import load_audio
from mirzoo.nn.frontend import build_frontend
from mirzoo.nn.tcn import tcn_context_frames
from training.musical import (
    NO_CHORD,
    TEMPO_MIN,
    tempo_class,
    shift_bins,
    transpose_chord,
    transpose_key,
    widen,
)

EXAMPLE = "mirzoo/data/example.flac"
CQT = dict(kind="cqt", sample_rate=16000, hop_length=320, fmin=55.0, n_bins=216, bins_per_octave=36,
           filter_scale=1.0, compression=None, top_db=None, power=1.0)


def test_octave_kernels_give_the_same_cqt_as_one_long_kernel():
    y = load_audio(EXAMPLE, 16000)[None, : 16000 * 6]
    dense = np.asarray(build_frontend(dict(CQT))(y))[0]
    multirate = np.asarray(build_frontend(dict(CQT, octave_kernels=True))(y))[0]
    assert multirate.shape == dense.shape
    rel = np.linalg.norm(multirate - dense) / np.linalg.norm(dense)
    assert rel < 0.01, rel
    # and per octave, so that no octave is silently wrong (e.g. misaligned by a frame)
    for lo in range(0, 216, 36):
        d, m = dense[:, lo : lo + 36], multirate[:, lo : lo + 36]
        assert np.linalg.norm(m - d) / np.linalg.norm(d) < 0.02, lo


def test_octave_kernels_resolve_a_sine_at_its_bin():
    sr, f = 16000, 55.0 * 2 ** (100 / 36)  # exactly on bin 100
    t = np.arange(sr * 3) / sr
    y = np.sin(2 * np.pi * f * t).astype(np.float32)[None]
    spec = np.asarray(build_frontend(dict(CQT, octave_kernels=True))(y))[0]
    assert int(np.argmax(spec[75].astype(np.float64))) == 100


def test_tcn_output_depends_on_no_frame_beyond_its_declared_context():
    m = mirzoo.load("tcn-music")
    context = m.spec.context_frames
    kernel, layers = m.spec.config["tcn_kernel"], m.spec.config["tcn_layers"]
    assert context == tcn_context_frames(kernel, layers)
    model = m.keras_model
    feats_in = model.get_layer("input_bn").input
    import keras

    net = keras.Model(feats_in, model.output["embedding"])
    rng = np.random.default_rng(0)
    n = 2 * context + 101
    x = rng.standard_normal((1, n, 216)).astype(np.float32)
    x2 = x.copy()
    t0 = n // 2
    x2[0, t0] += 5.0
    a = np.asarray(net(x))[0]
    b = np.asarray(net(x2))[0]
    changed = np.nonzero(np.abs(a - b).max(axis=1) > 1e-6)[0]
    assert changed.min() >= t0 - context and changed.max() <= t0 + context
    # the reach is used: frames near the edge of the context do change
    assert changed.min() <= t0 - context + 8 and changed.max() >= t0 + context - 8


def test_tcn_music_heads_have_readable_labels():
    m = mirzoo.load("tcn-music")
    y = load_audio(EXAMPLE, 16000)[: 16000 * 4]
    top = m.tag(y, sr=16000, head="key", top_k=3)
    assert len(top) == 3 and all(label.endswith((" major", " minor")) for label, _ in top)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 <= probs[-1] <= probs[0] <= 1
    assert m.spec.heads["chord"][-1] == "N" and m.spec.heads["chord"][0] == "C:maj"
    assert m.spec.heads["meter"][m.spec.heads["meter"].index("6/8")] == "6/8"


def test_key_and_chord_transposition():
    key = np.array([0, 11, 12, 23, -1])  # C major, B major, C minor, B minor, masked
    assert transpose_key(key, 1).tolist() == [1, 0, 13, 12, -1]
    assert transpose_key(key, -13).tolist() == [11, 10, 23, 22, -1]
    # G:7 (root 7, quality 4) up 5 -> C:7; N and masked stay
    chord = np.array([7 * 9 + 4, NO_CHORD, -1, 11 * 9 + 1])
    assert transpose_chord(chord, 5).tolist() == [0 * 9 + 4, NO_CHORD, -1, 4 * 9 + 1]


def test_tempo_classes_are_log_spaced():
    assert tempo_class(TEMPO_MIN) == 0
    assert tempo_class(2 * TEMPO_MIN) == 16
    assert tempo_class(120.0) == round(16 * math.log2(3))
    assert tempo_class(10.0) == 0 and tempo_class(1000.0) == 47
    assert tempo_class(float("nan")) == -1


def test_widen_and_shift_bins():
    e = np.array([0, 0, 1, 0, 0, 0, 1], np.uint8)
    assert widen(e).tolist() == [0, 0.5, 1, 0.5, 0, 0.5, 1]
    x = np.arange(6, dtype=np.float32)[None]
    assert shift_bins(x, 2, -1.0).tolist() == [[-1, -1, 0, 1, 2, 3]]
    assert shift_bins(x, -2, -1.0).tolist() == [[2, 3, 4, 5, -1, -1]]
    with pytest.raises(ValueError):
        build_frontend(dict(CQT, n_bins=0))


def _fake_cache(folder, clips=4, frames=600, bins=216, seed=0):
    """A feature cache in the shard layout ``training.musical cache`` writes (random features and targets)."""
    rng = np.random.default_rng(seed)
    n = clips * frames
    arrays = {
        "feats": rng.normal(-40, 10, (n, bins)).astype(np.float16),
        "offsets": np.arange(clips + 1) * frames,
        "beat": (np.arange(n) % 25 == 0).astype(np.uint8), "downbeat": (np.arange(n) % 100 == 0).astype(np.uint8),
        "beat_mask": np.ones(n, np.uint8), "key": rng.integers(0, 24, n).astype(np.int16),
        "chord": rng.integers(0, NO_CHORD + 1, n).astype(np.int16),
        "meter": np.arange(clips) % 3, "tempo_bpm": np.full(clips, 120.0),
        "clip_id": np.array([f"c{i}" for i in range(clips)]), "piece_id": np.array([f"p{i}" for i in range(clips)]),
        "split": np.array(["train"] * (clips - 1) + ["valid"]), "tags": np.array(["instrument:piano"] * clips),
        "corpus": np.array(["fake"] * clips), "split_key": np.array([f"p{i}" for i in range(clips)]),
    }
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "shard-0000.npz", **arrays)
    return folder


@pytest.mark.slow  # two training stints (25 s): CI's second step
def test_training_resumes_and_anneals(tmp_path):
    """Two short stints of ``training.musical train``: the second resumes at the saved epoch, with a cosine
    learning rate that falls over its time budget; the validation crops are rescored when they change."""
    import json

    from training import musical

    cache = _fake_cache(tmp_path / "cache")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "build_config.json").write_text(json.dumps(
        {"soundfont": "MuseScore_General_Lite", "mix_soundfonts": ["sf_GMbank"], "augment": {"p_soundfont_mix": 0.5},
         "seed": 0, "split_fractions": [0.8, 0.1, 0.1]}))
    sources = musical.record_corpus_sources(cache, [tmp_path / "fake"])
    cfg = json.loads((Path(__file__).resolve().parents[1] / "training" / "configs" / "tcn-music.json").read_text())
    cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=2, epochs=2, valid_crops=2, min_tag_count=1)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    args = ["train", "--cache", str(cache), "--config", str(tmp_path / "cfg.json"), "--out", str(run)]
    assert musical.main(args + ["--max-minutes", "5"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and state["vocabulary"] == ["instrument:piano"] and state["valid_crops"] == 2
    # hours summed over the clips, rounded once: 3 train clips of 600 frames at 50 frames/s are 0.01 h (each
    # clip's 0.00333 h rounded as the sum grew gave 0.009)
    assert state["data_hours"] == {"fake train": 0.01, "fake valid": 0.003}
    # the soundfonts of the cached corpora travel with the run, for the shipped training record
    assert state["data_sources"] == sources == {"fake": {"soundfont": "MuseScore_General_Lite", "mix_soundfonts": ["sf_GMbank"],
                                                         "p_soundfont_mix": 0.5, "seed": 0, "split_fractions": [0.8, 0.1, 0.1]}}
    # a corpus whose pieces fall in other splits (another seed) cannot join the cache
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "build_config.json").write_text(json.dumps({"soundfont": "FluidR3", "seed": 1,
                                                                      "split_fractions": [0.8, 0.1, 0.1]}))
    with pytest.raises(SystemExit, match="other: built with seed 1 .* but fake .* seed 0"):
        musical.record_corpus_sources(cache, [tmp_path / "other"])
    assert json.loads((cache / musical.CORPUS_SOURCES).read_text()) == sources
    # a corpus without a build config is recorded as unknown and blocks nothing
    (tmp_path / "bare").mkdir()
    (tmp_path / "same").mkdir()
    (tmp_path / "same" / "build_config.json").write_text(json.dumps({"soundfont": "FluidR3", "seed": 0,
                                                                     "split_fractions": [0.8, 0.1, 0.1]}))
    both = musical.record_corpus_sources(cache, [tmp_path / "bare", tmp_path / "same"])
    assert both["bare"]["seed"] is None and both["same"]["soundfont"] == "FluidR3" and both["fake"] == sources["fake"]
    assert musical.describe_corpus_sources(state["data_sources"]) == (
        "soundfonts per corpus (fake: MuseScore_General_Lite, each channel with probability 0.5 from sf_GMbank instead)")
    cfg.update(epochs=4, valid_crops=3)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert musical.main(args + ["--max-minutes", "0.4", "--resume", "--anneal"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["valid_crops"] == 3 and state["history"][1].get("rescored") is True
    assert [h["epoch"] for h in state["history"]] == list(range(state["epoch"]))
    resumed = [h["learning_rate"] for h in state["history"][2:]]
    assert len(resumed) >= 1 and all(lr <= cfg["learning_rate"] for lr in resumed)
    assert resumed == sorted(resumed, reverse=True)  # cosine decay: never rises within the stint
    assert (run / "best.weights.h5").is_file() and (run / "last.weights.h5").is_file()


def test_crop_key_mirex_scores_one_key_per_crop():
    from training.corpus_targets import KEYS
    from training.musical import crop_key_mirex

    c_major, g_major, a_minor = KEYS.index("C major"), KEYS.index("G major"), KEYS.index("A minor")
    frames = 10
    labels = np.full((4, frames), c_major)
    labels[2, :3] = a_minor  # the reference is the crop's most frequent key
    weights = np.ones((4, frames))
    weights[3] = 0  # no key known: left out
    probs = np.full((4, frames, 24), 0.01)
    probs[0, :, c_major] = 0.9  # right: 1.0
    probs[1, :, g_major] = 0.9  # a fifth above: 0.5
    probs[2, :, a_minor] = 0.9  # relative minor of the reference: 0.3
    probs[2, :2, c_major] = 2.0  # two frames say C, but the mean over frames still says A minor
    probs[2, :2, a_minor] = 0.0
    probs[3, :, g_major] = 0.9
    assert crop_key_mirex(probs, labels, weights) == pytest.approx((1.0 + 0.5 + 0.3) / 3)
    assert np.isnan(crop_key_mirex(probs[3:], labels[3:], weights[3:]))


def test_weight_average_is_the_running_mean_of_every_variable():
    from training.musical import WeightAverage

    rng = np.random.default_rng(0)
    epochs = [[rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=4).astype(np.float32)] for _ in range(5)]
    avg = WeightAverage()
    for e, w in enumerate(epochs, start=7):
        avg.add(w, e)
    assert avg.first == 7 and avg.count == 5
    for j in range(2):
        np.testing.assert_allclose(avg.weights()[j], np.mean([w[j] for w in epochs], axis=0), rtol=1e-6)
        assert avg.weights()[j].dtype == np.float32


def test_fine_tuning_from_the_shipped_weights_averages_epochs(tmp_path):
    """``--init shipped``: the run starts from the package's weights and tag vocabulary, scores them first,
    and with ``--average-from 0`` scores the running weight average after every epoch."""
    import hashlib
    import json

    from mirzoo.zoo.manifest import get_entry
    from training import musical

    entry = get_entry("tcn-music")
    cache = _fake_cache(tmp_path / "cache")
    cfg = json.loads((Path(__file__).resolve().parents[1] / "training" / "configs" / "tcn-music.json").read_text())
    cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=2, epochs=2, valid_crops=2, min_tag_count=1,
               learning_rate=1e-4)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    args = ["train", "--cache", str(cache), "--config", str(tmp_path / "cfg.json"), "--out", str(run),
            "--init", "shipped", "--anneal", "--average-from", "0", "--max-minutes", "5"]
    assert musical.main(args) == 0
    state = json.loads((run / "state.json").read_text())
    shipped = Path(musical.__file__).resolve().parents[1] / "mirzoo" / "weights" / entry["weights"]["file"]
    assert state["init"]["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest() == entry["weights"]["sha256"]
    assert state["vocabulary"] == entry["head"]["labels"]
    assert state["score_version"] == musical.SCORE_VERSION and np.isfinite(state["init"]["score"])
    assert [h["average"]["epochs"] for h in state["history"]] == [[0, 0], [0, 1]]
    # one epoch averaged is that epoch's weights: the same validation figures
    assert state["history"][0]["average"]["score"] == pytest.approx(state["history"][0]["score"], abs=1e-6)
    assert state["best"] >= state["init"]["score"]
    assert state["best_source"] in {"init", "epoch"} or state["best_source"].startswith("average of epochs 0-")
    assert (run / "average.weights.h5").is_file() and (run / "best.weights.h5").is_file()


def test_ship_refuses_a_run_that_never_beat_its_initial_weights(tmp_path):
    import json

    from training import musical

    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"epoch": 2, "best": 0.5, "best_epoch": -1, "best_source": "init",
                                                "history": [], "minutes": 1.0, "vocabulary": []}))
    with pytest.raises(SystemExit, match="no epoch scored above the run's initial weights"):
        musical.main(["ship", "--run", str(run)])


def test_average_from_outside_0_1_is_refused(capsys):
    from training import musical

    with pytest.raises(SystemExit):
        musical.main(["train", "--cache", "x", "--average-from", "1.5"])
    assert "--average-from 1.5: expected a fraction" in capsys.readouterr().err


def _synthetic_clip_key_data(n=240, seed=0):
    """Clips whose key head is noisy but whose chords are the key's I, IV and V (major) or i, iv and V (minor)."""
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 24, n)
    keys = rng.dirichlet(np.ones(24), size=n) * 0.8
    keys[np.arange(n), refs] += 0.2 * rng.random(n)  # weak evidence from the key head
    keys /= keys.sum(axis=1, keepdims=True)
    chords = np.full((n, 109), 0.01)
    for i, k in enumerate(refs):
        tonic, minor = k % 12, k // 12
        for interval, quality in ((0, minor), (5, minor), (7, 4)):  # maj/min on I and IV, a dominant 7th on V
            chords[i, ((tonic + interval) % 12) * 9 + quality] += rng.uniform(0.5, 1.0)
    chords /= chords.sum(axis=1, keepdims=True)
    return keys, chords, refs


def test_fit_clip_key_learns_chord_evidence_and_matches_the_library_scores():
    from mirzoo.tasks.analyze import clip_key_scores
    from training.musical import clip_key_design, fit_clip_key, key_mirex

    keys, chords, refs = _synthetic_clip_key_data()
    params = fit_clip_key(keys[:160], chords[:160], refs[:160], l2=1e-3)
    assert np.asarray(params["chord"]).shape == (2, 12, 9) and params["l2"] == 1e-3
    pred = np.array([np.argmax(clip_key_scores(k[None], c[None], params)) for k, c in zip(keys[160:], chords[160:])])
    assert key_mirex(pred, refs[160:]) > 0.95 > key_mirex(keys[160:].argmax(axis=1), refs[160:])
    # the design matrix the fit uses gives the library's scores
    theta = np.r_[params["scale"], params["bias"], np.ravel(params["chord"])]
    np.testing.assert_allclose(clip_key_design(keys[:5], chords[:5]) @ theta,
                               np.stack([clip_key_scores(k[None], c[None], params) for k, c in zip(keys[:5], chords[:5])]),
                               rtol=1e-9, atol=1e-9)


def test_choose_clip_key_cross_validates_by_piece():
    from training.musical import CLIP_KEY_L2, choose_clip_key

    keys, chords, refs = _synthetic_clip_key_data(120, seed=1)
    pieces = np.array([f"p{i // 2}" for i in range(len(refs))])
    sources = np.array(["written", "analysis"] * 60, dtype=object)
    rec = choose_clip_key(keys, chords, refs, pieces, folds=3, sources=sources)
    assert rec["l2"] in CLIP_KEY_L2 and set(rec["valid"]["key_mirex_cv_by_l2"]) == {f"{x:g}" for x in CLIP_KEY_L2}
    by = rec["valid"]["key_mirex_cv_by_source"]
    assert by["written"]["clips"] == by["analysis"]["clips"] == 60
    assert (by["written"]["clip_key"] + by["analysis"]["clip_key"]) / 2 == pytest.approx(rec["valid"]["key_mirex_cv"], abs=1e-3)
    assert "key_mirex_cv_by_source" not in choose_clip_key(keys, chords, refs, pieces, folds=3)["valid"]
    assert rec["valid"]["key_mirex_cv"] == max(rec["valid"]["key_mirex_cv_by_l2"].values()) > rec["valid"]["key_mirex_head_mean"]
    assert rec["valid"]["clips"] == 120 and rec["valid"]["pieces"] == 60


def test_key_mirex_by_source_splits_the_pooled_score():
    from training.musical import key_mirex, key_mirex_by_source

    refs = np.array([0, 0, 12, 7, 9, 21])
    good, bad = refs.copy(), np.array([0, 7, 12, 0, 0, 9])
    sources = np.array(["written", "written", "analysis", "analysis", None, "analysis"], dtype=object)
    out = key_mirex_by_source({"good": good, "bad": bad}, refs, sources)
    assert out == {"analysis": {"clips": 3, "good": 1.0, "bad": round(key_mirex(bad[[2, 3, 5]], refs[[2, 3, 5]]), 4)},
                   "written": {"clips": 2, "good": 1.0, "bad": 0.75}}  # a fifth above scores 0.5


def test_choose_clip_key_reports_how_the_fit_carries_across_corpora():
    """Two renders of the same pieces: in ``b`` the chord head hears the chords a fifth above the key (a
    soundfont whose timbre fools it) while the key head is sure. A fit on ``a`` alone trusts the chords
    and is wrong by a fifth on ``b``: the cross-corpus figure says so, the pooled cross-validation not."""
    from training.musical import choose_clip_key

    keys_a, chords_a, refs = _synthetic_clip_key_data(120, seed=2)
    rng = np.random.default_rng(3)
    keys_b = rng.dirichlet(np.ones(24), size=len(refs)) * 0.2
    keys_b[np.arange(len(refs)), refs] += 0.8
    # the same chords with every root a fifth higher (roots are the slow axis of the chord vector)
    chords_b = np.c_[np.roll(chords_a[:, :108].reshape(-1, 12, 9), 7, axis=1).reshape(-1, 108), chords_a[:, 108:]]
    pieces = np.array([f"p{i // 2}" for i in range(len(refs))])
    rec = choose_clip_key(np.r_[keys_a, keys_b], np.r_[chords_a, chords_b], np.r_[refs, refs], np.r_[pieces, pieces],
                          folds=3, corpora=np.array(["a"] * len(refs) + ["b"] * len(refs)))
    by, cross = rec["valid"]["key_mirex_cv_by_corpus"], rec["valid"]["key_mirex_cross_corpus"]
    assert set(by) == set(cross) == {"a", "b"}
    assert by["b"] > 0.9 and cross["b"] < by["b"] - 0.2
    # the pooled figure is the clip-weighted mean of the per-corpus ones
    assert rec["valid"]["key_mirex_cv"] == pytest.approx((by["a"] + by["b"]) / 2, abs=1e-3)
    # one corpus: no per-corpus figures
    assert "key_mirex_cross_corpus" not in choose_clip_key(keys_a, chords_a, refs, pieces, folds=3,
                                                             corpora=np.array(["a"] * len(refs)))["valid"]


def _synthetic_profile_inputs(n, seed, final_frames=40):
    """Clips whose pitch classes are the notes of their key's scale (the same for relative keys), one triad of
    it, any, louder, then an ending on the tonic triad, and whose key head is only sometimes right: what ``clip_key_profile_inputs`` returns, and the frames."""
    from mirzoo.tasks.analyze import clip_pitch_class_features

    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 24, size=n)
    out = {k: [] for k in ("key", "chord", "mode", "pcs", "whole", "final", "ref", "piece", "frames")}
    for i, ref in enumerate(refs):
        tonic, minor = int(ref % 12), int(ref // 12)
        major_tonic = (tonic + 3 * minor) % 12  # a minor key's notes are its relative major's
        frames = np.full((400, 12), 0.05)
        scale = (major_tonic + np.array([0, 2, 4, 5, 7, 9, 11])) % 12
        frames[:, scale] = 0.6
        frames[:, scale[(rng.integers(7) + np.array([0, 2, 4])) % 7]] = 0.95  # a triad of the scale, any
        frames = np.clip(frames + rng.normal(0, 0.2, size=frames.shape), 0, 1)
        frames[-final_frames:] = 0.05
        frames[-final_frames:, [tonic, (tonic + 7) % 12, (tonic + 3 + (not minor)) % 12]] = 0.6
        whole, final = clip_pitch_class_features(frames, final_frames)
        key = rng.dirichlet(np.ones(24))
        if rng.uniform() < 0.4:
            key = 0.3 * key + 0.7 * np.eye(24)[ref]
        out["key"].append(key)
        out["chord"].append(rng.dirichlet(np.ones(109)))
        out["mode"].append(rng.dirichlet(np.ones(2)))
        out["pcs"].append(frames.mean(axis=0))
        out["whole"].append(whole)
        out["final"].append(final)
        out["ref"].append(int(ref))
        out["piece"].append(f"p{seed}-{i // 2}")
        out["frames"].append(frames)  # the pitch_classes frames, for the library's own reading
    out["source"] = ["written", "analysis"] * (n // 2) + ["written"] * (n % 2)
    return {k: np.array(v, dtype=object if k == "source" else None) for k, v in out.items()}


def test_fit_clip_key_profiles_learns_profiles_and_matches_the_library_scores():
    """Profiles fitted on training clips, blended with a key head that is right 40 % of the time: the
    record the library reads finds the keys of new clips, and cross-validation prefers it to the
    key-and-chord regression on the same folds."""
    from mirzoo.spec import ModelSpec
    from mirzoo.tasks.analyze import clip_key_scores
    from mirzoo.zoo.manifest import get_entry
    from training.musical import fit_clip_key_profiles, key_mirex, profile_design

    train, valid, test = (_synthetic_profile_inputs(n, seed) for n, seed in ((300, 0), (120, 1), (100, 2)))
    rec = fit_clip_key_profiles(train, valid, 40, folds=3, corpora=np.array(["a", "b"] * 60))
    assert rec["form"] == "profiles" and rec["final_frames"] == 40 and np.shape(rec["final_profile"]) == (2, 12)
    ModelSpec.from_entry("tcn-music", dict(get_entry("tcn-music"), clip_key=rec))  # a record the manifest accepts
    v = rec["valid"]
    assert v["clips"] == 120 and v["pieces"] == 60 and v["train_clips"] == 300
    assert v["key_mirex_cv"] > 0.9 and v["key_mirex_cv"] > v["key_mirex_cv_heads_form"] and v["key_mirex_head_mean"] < 0.7
    assert set(v["key_mirex_cv_by_corpus"]) == {"a", "b"}
    assert v["key_mirex_cv_by_source"]["written"]["clips"] == v["key_mirex_cv_by_source"]["analysis"]["clips"] == 60
    assert set(v["key_mirex_cv_by_source"]["written"]) == {"clips", "profiles", "heads_form", "profiles_alone"}
    lo, hi = v["gain_over_heads_form_95"]
    assert 0 < lo <= v["key_mirex_cv"] - v["key_mirex_cv_heads_form"] <= hi
    # what the library scores from the frames is what the fit's designs give: new clips' keys are found
    pred = [int(np.argmax(clip_key_scores(k[None], c[None], rec, chroma_probs=frames)))
            for k, c, frames in zip(test["key"], test["chord"], test["frames"])]
    assert key_mirex(pred, test["ref"]) > 0.9
    theta = np.r_[rec["bias"], np.ravel(rec["pitch_class_profile"]), np.ravel(rec["final_profile"])]
    want = np.array(rec["scale"]).repeat(12) * np.log(test["key"][:5] + 1e-6) + profile_design(test["whole"][:5], test["final"][:5]) @ theta
    np.testing.assert_allclose([clip_key_scores(k[None], c[None], rec, chroma_probs=f) for k, c, f in
                                zip(test["key"][:5], test["chord"][:5], test["frames"][:5])], want, rtol=1e-9, atol=1e-9)
    with pytest.raises(SystemExit, match="needs at least 24 training and 20 valid clips"):
        fit_clip_key_profiles({k: v[:10] for k, v in train.items()}, valid, 40)


def test_clip_key_profile_inputs_read_the_clips_as_the_library_does(tiny_corpus, tmp_path):
    """``fit-key --profile-corpus`` reads each clip as ``analyze()`` would: the pitch-class features of the
    forward pass's frames, the most frequent labelled frame key; and refuses a corpus too small to fit."""
    from collections import Counter

    from mirzoo.tasks.analyze import clip_pitch_class_features
    from training import musical
    from training.corpus import load_clip_targets

    m = mirzoo.load("tcn-music")
    rows = musical.clip_key_profile_inputs(m, Path(tiny_corpus), "train", 100)
    files = [f for f in musical.target_files(Path(tiny_corpus), "train") if (load_clip_targets(f)["key"] >= 0).any()]
    assert len(rows["ref"]) == len(files) > 0
    assert rows["whole"].shape == rows["final"].shape == (len(files), 12) and rows["key"].shape == (len(files), 24)
    t = load_clip_targets(files[0])
    y, _ = m.load_input(str(Path(tiny_corpus) / t["meta"]["path"]), None)
    out = m.forward([y], ["key", "pitch_classes"], 16)[0]
    whole, final = clip_pitch_class_features(out["pitch_classes"], 100)
    np.testing.assert_allclose(rows["whole"][0], whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows["final"][0], final, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows["key"][0], out["key"].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert rows["ref"][0] == Counter(t["key"][t["key"] >= 0].tolist()).most_common(1)[0][0]
    assert rows["piece"][0] == t["meta"]["piece_id"]
    from training.corpus_targets import KEY_SOURCES

    codes = Counter(t["key_source"][t["key"] == rows["ref"][0]].tolist())
    assert rows["source"][0] == KEY_SOURCES[codes.most_common(1)[0][0]] and rows["source"][0] in ("written", "analysis")
    with pytest.raises(SystemExit, match="needs at least 24 training and 20 valid clips"):
        musical.main(["fit-key", "--corpus", str(tiny_corpus), "--split", "train", "--profile-corpus", str(tiny_corpus),
                      "--out", str(tmp_path / "clip_key.json")])
    assert not (tmp_path / "clip_key.json").exists()


def test_freeze_through_the_embedding_trains_the_heads_alone(tmp_path):
    """``freeze_through: "embedding"``: a fine-tune from the shipped weights changes the heads and leaves
    every layer up to the embedding (all that ``extract()`` returns) bit-identical; a name that is not a
    layer is refused with the list of layers."""
    import json

    import keras

    from mirzoo.zoo.manifest import get_entry
    from training import musical

    entry = get_entry("tcn-music")
    cache = _fake_cache(tmp_path / "cache")
    cfg = json.loads((Path(__file__).resolve().parents[1] / "training" / "configs" / "tcn-music-finetune.json").read_text())
    cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=2, epochs=1, valid_crops=2, min_tag_count=1,
               learning_rate=1e-2, freeze_through="embedding")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    args = ["train", "--cache", str(cache), "--config", str(tmp_path / "cfg.json"), "--out", str(run),
            "--init", "shipped", "--max-minutes", "5"]
    assert musical.main(args) == 0
    shipped, _, _ = musical.build_training_model(entry, len(entry["head"]["labels"]))
    shipped.load_weights(musical.init_weights_path("shipped", entry))
    trained, _, _ = musical.build_training_model(entry, len(entry["head"]["labels"]))
    trained.load_weights(run / "last.weights.h5")
    names = [layer.name for layer in shipped.layers]
    cut = names.index("embedding")
    changed = set()
    for i, (a, b) in enumerate(zip(shipped.layers, trained.layers)):
        for wa, wb in zip(a.weights, b.weights):
            same = np.array_equal(keras.ops.convert_to_numpy(wa), keras.ops.convert_to_numpy(wb))
            if i <= cut:
                assert same, f"frozen layer {a.name} changed ({wa.path})"
            elif not same:
                changed.add(a.name)
    assert {"key", "beats", "tags"} <= changed
    full, _, _ = musical.build_training_model(entry, 3)
    with pytest.raises(SystemExit, match="freeze_through='nope' is not a layer of tcn-music; its layers: .*embedding"):
        musical.freeze_through(full, "nope")
    assert musical.freeze_through(full, None) == [] and all(layer.trainable for layer in full.layers)


@pytest.mark.slow  # training runs of a minute on 2 cores: CI's second step, `pytest -m slow`
def test_anchor_and_frozen_batchnorm_keep_the_probed_layers_near_the_initial_weights(tmp_path):
    """``anchor`` + ``freeze_batchnorm``: the same short fine-tune with and without them; with them the
    anchored layers' outputs (a head's among them) stay nearer the shipped model's, every batch norm is
    bit-identical, and the anchor needs ``--init`` and real layer names."""
    import json

    import keras

    from mirzoo.zoo.manifest import get_entry
    from training import musical

    entry = get_entry("tcn-music")
    cache = _fake_cache(tmp_path / "cache")
    base_cfg = json.loads((Path(__file__).resolve().parents[1] / "training" / "configs" / "tcn-music-finetune.json").read_text())
    base_cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=30, epochs=1, valid_crops=2, min_tag_count=1,
                    learning_rate=1e-3)
    layers = ["tcn2", "tcn6", "embedding", "key"]  # "key": a head's output, which is also a loss output
    runs = {}
    for name, extra in (("plain", {}), ("anchored", {"anchor": {"layers": layers, "weight": 50.0},
                                                     "freeze_batchnorm": True})):
        (tmp_path / f"{name}.json").write_text(json.dumps(dict(base_cfg, **extra)))
        runs[name] = tmp_path / name
        assert musical.main(["train", "--cache", str(cache), "--config", str(tmp_path / f"{name}.json"), "--out",
                             str(runs[name]), "--init", "shipped", "--max-minutes", "5"]) == 0
    n_tags = len(entry["head"]["labels"])
    shipped, shipped_in, _ = musical.build_training_model(entry, n_tags, tuple(layers))
    shipped.load_weights(musical.init_weights_path("shipped", entry))
    x = np.random.default_rng(5).normal(-40, 10, (2, 200, 216)).astype(np.float32)
    ref = shipped_in.predict_on_batch(x)
    drift = {}
    for name, run in runs.items():
        full, model, _ = musical.build_training_model(entry, n_tags, tuple(layers))
        full.load_weights(run / "last.weights.h5")
        out = model.predict_on_batch(x)
        drift[name] = 0.0
        for layer in layers:
            a, b = np.asarray(out[f"anchor_{layer}"], np.float64), np.asarray(ref[f"anchor_{layer}"], np.float64)
            cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
            drift[name] += float(np.mean(1 - cos))
        if name == "anchored":
            for layer in full.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    for wa, wb in zip(layer.get_weights(), shipped.get_layer(layer.name).get_weights()):
                        np.testing.assert_array_equal(wa, wb, err_msg=layer.name)
    assert drift["anchored"] < 0.5 * drift["plain"], drift
    state = json.loads((runs["anchored"] / "state.json").read_text())
    assert state["config"]["anchor"]["layers"] == layers
    with pytest.raises(SystemExit, match="anchor.layers=\\['tcn9'\\] must be a non-empty list of layers"):
        musical.anchor_settings({"anchor": {"layers": ["tcn9"]}}, entry)
    assert musical.anchor_settings({"anchor": {"layers": ["key", "chord"], "weight": 2}}, entry) == (("key", "chord"), 2.0)
    with pytest.raises(SystemExit, match="anchor.weight=0 must be a number > 0"):
        musical.anchor_settings({"anchor": {"layers": ["tcn1"], "weight": 0}}, entry)
    assert musical.anchor_settings({}, entry) == ((), 0.0)
    (tmp_path / "noinit.json").write_text(json.dumps(dict(base_cfg, anchor={"layers": ["tcn1"], "weight": 1.0})))
    with pytest.raises(SystemExit, match="it needs --init"):
        musical.main(["train", "--cache", str(cache), "--config", str(tmp_path / "noinit.json"), "--out",
                      str(tmp_path / "noinit"), "--max-minutes", "5"])


@pytest.mark.slow  # training runs of a minute on 2 cores: CI's second step, `pytest -m slow`
def test_anchor_of_one_channel_holds_its_activation_curve(tmp_path):
    """``"beats:0"`` anchors the beat channel alone: the training model outputs its curve over the
    crop's frames, a short fine-tune keeps that curve nearer the shipped one than the same run
    without the anchor, and a channel past the head's width or not a number is refused."""
    import json

    from mirzoo.zoo.manifest import get_entry
    from training import musical

    entry = get_entry("tcn-music")
    assert musical.split_anchor("beats:0") == ("beats", 0) and musical.split_anchor("key") == ("key", None)
    assert musical.anchor_key("beats:0") == "anchor_beats_0" and musical.anchor_key("key") == "anchor_key"
    assert musical.anchor_settings({"anchor": {"layers": ["key", "beats:0"], "weight": 2}}, entry) == (("key", "beats:0"), 2.0)
    for bad in ("beats:2", "beats:x", "beats:", "beats:-1", "tcn9:0"):
        with pytest.raises(SystemExit, match="or 'layer:channel' with a channel below the layer's width"):
            musical.anchor_settings({"anchor": {"layers": [bad]}}, entry)
    n_tags = len(entry["head"]["labels"])
    shipped, shipped_in, _ = musical.build_training_model(entry, n_tags, ("beats:0",))
    shipped.load_weights(musical.init_weights_path("shipped", entry))
    x = np.random.default_rng(6).normal(-40, 10, (2, 200, 216)).astype(np.float32)
    ref = shipped_in.predict_on_batch(x)
    assert ref["anchor_beats_0"].shape == (2, 200)
    np.testing.assert_allclose(ref["anchor_beats_0"], np.asarray(ref["beats"])[..., 0], rtol=1e-6)

    cache = _fake_cache(tmp_path / "cache")
    cfg = json.loads((Path(__file__).resolve().parents[1] / "training" / "configs" / "tcn-music-finetune.json").read_text())
    cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=30, epochs=1, valid_crops=2, min_tag_count=1,
               learning_rate=3e-3, loss_weights={"beats": 20.0})
    drift = {}
    for name, extra in (("plain", {}), ("anchored", {"anchor": {"layers": ["beats:0"], "weight": 50.0}})):
        (tmp_path / f"{name}.json").write_text(json.dumps(dict(cfg, **extra)))
        run = tmp_path / name
        assert musical.main(["train", "--cache", str(cache), "--config", str(tmp_path / f"{name}.json"), "--out",
                             str(run), "--init", "shipped", "--max-minutes", "5"]) == 0
        full, model, _ = musical.build_training_model(entry, n_tags, ("beats:0",))
        full.load_weights(run / "last.weights.h5")
        a = np.asarray(model.predict_on_batch(x)["anchor_beats_0"], np.float64)
        b = np.asarray(ref["anchor_beats_0"], np.float64)
        drift[name] = float(np.mean(1 - (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))))
    # the anchor about halves the drift: 0.54 of the plain run's from the session-30 weights, 0.50 with a weight of
    # 200 instead of 50 (a floor near one half on these random crops); a run with no anchor gives 1
    assert drift["anchored"] < 0.65 * drift["plain"], drift


def test_meter_weights_balance_the_meters_and_keep_a_mean_of_one():
    from training.musical import meter_weights

    clips = [{"meter": m} for m in [3] * 8 + [2] * 2 + [-1] * 3]  # 4/4 eight times, 3/4 twice, unknown
    w = meter_weights(clips, 1.0)
    assert w[2] == pytest.approx(4 * w[3])  # full balance: each meter weighs the same in all
    assert (8 * w[3] + 2 * w[2]) / 10 == pytest.approx(1.0)
    half = meter_weights(clips, 0.5)
    assert half[2] == pytest.approx(2 * half[3])
    assert meter_weights(clips, 0.0) == {3: pytest.approx(1.0), 2: pytest.approx(1.0)}
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(SystemExit, match="meter_balance=.* must be a number in \\[0, 1\\]"):
            meter_weights(clips, bad)


def test_crop_sampler_derives_the_mode_target_from_the_key_and_weighs_meters():
    from training.musical import CropSampler

    frames = 50
    key = np.full(frames, 21, np.int16)  # A minor ...
    key[:10] = -1  # ... unknown at first ...
    key[30:] = 7  # ... then G major
    clip = {"feats": np.zeros((frames, 216), np.float16), "beat": np.zeros(frames, np.uint8),
            "downbeat": np.zeros(frames, np.uint8), "beat_mask": np.ones(frames, np.uint8), "key": key,
            "chord": np.full(frames, NO_CHORD, np.int16), "meter": 9, "tempo_bpm": 100.0, "tags": ""}
    sampler = CropSampler([clip], [], 60, np.random.default_rng(0), augment={}, heads=("mode",),
                          meter_weight={9: 2.5})
    for shift in (0, 4, -3):  # transposition moves the key, never the mode
        _, y, w = sampler.crop(0, 0, shift=shift)
        assert y["mode"][:frames].tolist() == [0] * 10 + [1] * 20 + [0] * 20
        assert w["mode"].tolist() == [0] * 10 + [1] * 40 + [0] * 10  # unknown key, padding: no mode loss
        assert w["meter"].tolist() == [2.5] * frames + [0] * 10
    plain = CropSampler([clip], [], 60, np.random.default_rng(0), augment={})
    _, y, w = plain.crop(0, 0)
    assert "mode" not in y and w["meter"].max() == 1.0
    # mode_balance: minor frames (20 of 40 known here) weighed by the mode's class weight, masks kept
    balanced = CropSampler([clip], [], 60, np.random.default_rng(0), augment={}, heads=("mode",),
                           mode_weight={0: 0.5, 1: 3.0})
    _, y, w = balanced.crop(0, 0)
    assert w["mode"].tolist() == [0] * 10 + [3.0] * 20 + [0.5] * 20 + [0] * 10


def test_mode_weights_balance_major_and_minor_key_frames():
    from training.musical import mode_weights

    major, minor, unknown = np.full(30, 7), np.full(10, 21), np.full(5, -1)  # G major, A minor
    clips = [{"key": np.concatenate([major, unknown])}, {"key": minor}]
    w = mode_weights(clips, 1.0)
    assert w[1] == pytest.approx(3 * w[0])  # 30 major frames against 10 minor: each mode weighs the same
    assert (30 * w[0] + 10 * w[1]) / 40 == pytest.approx(1.0)
    half = mode_weights(clips, 0.5)
    assert half[1] == pytest.approx(np.sqrt(3) * half[0])
    assert mode_weights(clips, 0.0) == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert mode_weights([{"key": major}], 1.0) == {}  # one mode only: nothing to balance
    for bad in (2, -0.5, False, "1"):
        with pytest.raises(SystemExit, match="mode_balance=.* must be a number in \\[0, 1\\]"):
            mode_weights(clips, bad)


def test_mode_head_is_added_to_the_shipped_weights_and_served_by_tag(tmp_path):
    """``add_heads: ["mode"]``: the run starts from every shipped layer (the new head alone is fresh),
    trains and scores the head, and its weights load as a model whose ``tag(head="mode")`` says
    major or minor."""
    import json

    from mirzoo.extractor import Extractor
    from mirzoo.zoo.manifest import get_entry
    from training import musical

    entry = get_entry("tcn-music")
    n_tags = len(entry["head"]["labels"])
    shipped_path = musical.init_weights_path("shipped", entry)
    # weights without a mode head (as tcn-music's were before session 13): the shipped ones less that head
    core, init = _weights_without_mode(tmp_path, entry, n_tags)
    without, _, _ = musical.build_training_model(core, n_tags)
    without.load_weights(init)
    full, model, config = musical.build_training_model(core, n_tags, add_heads=("mode",))
    assert "mode" in model.output and config["heads"]["mode"] == 2
    assert musical.load_initial_weights(full, init, core, n_tags) == ["mode"]
    for layer in without.layers:
        for a, b in zip(layer.get_weights(), full.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    # weights with one (the shipped ones since session 13) load whole
    with_mode, _, _ = musical.build_training_model(entry, n_tags)
    assert "mode" in musical.derived_heads_of(entry["config"])
    assert musical.load_initial_weights(with_mode, shipped_path, entry, n_tags) == []
    with pytest.raises(SystemExit, match="add_heads=\\['tonality'\\] must be a list of heads from \\['mode'\\]"):
        musical.added_heads({"add_heads": ["tonality"]})

    cache = _fake_cache(tmp_path / "cache")
    cfg = json.loads((Path(__file__).resolve().parents[1] / "training" / "configs" / "tcn-music-finetune-mode.json").read_text())
    cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=2, epochs=1, valid_crops=2, min_tag_count=1,
               beat_channel_weights=[1, 3])  # the weighted beats loss trains in the same run
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    assert musical.main(["train", "--cache", str(cache), "--config", str(tmp_path / "cfg.json"), "--out", str(run),
                         "--init", "shipped", "--max-minutes", "5"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert 0.0 <= state["history"][0]["mode_acc"] <= 1.0 and 0.0 <= state["history"][0]["meter_bacc"] <= 1.0
    assert state["model_config"]["heads"]["mode"] == 2 and state["config"]["meter_balance"] == 0.5

    run_entry = json.loads(json.dumps(dict(entry, name="tcn-music", config=state["model_config"])))
    run_entry.pop("clip_key", None)
    musical.describe_derived_heads(run_entry)
    assert run_entry["layers"]["mode"] == 2
    assert [a for a in run_entry["aux_heads"] if a["output"] == "mode"] == [
        {"output": "mode", "labels": ["major", "minor"], "activation": "softmax"}]
    trained, _, _ = musical.build_training_model(entry, n_tags, add_heads=("mode",))
    trained.load_weights(run / "last.weights.h5")
    m = Extractor(trained, run_entry)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000 * 2) / 16000).astype(np.float32)
    top = m.tag(tone, 16000, head="mode", top_k=None)
    assert sorted(label for label, _ in top) == ["major", "minor"]
    assert sum(p for _, p in top) == pytest.approx(1.0, abs=1e-4)


def test_clip_key_fit_weighs_a_mode_head_that_separates_relative_keys():
    """Key heads that cannot tell a key from its relative (C major / A minor share their notes and, here,
    their chord evidence) and a mode head that can: with the mode head's clip means the fit learns a
    positive ``mode_scale``, the mode is right, and the library scores what the fit's design matrix does."""
    from mirzoo.tasks.analyze import clip_key_scores
    from training.musical import choose_clip_key, clip_key_design, fit_clip_key, mode_balanced_accuracy

    rng = np.random.default_rng(3)
    n = 240
    refs = rng.integers(0, 24, n)
    relative = np.where(refs < 12, (refs + 9) % 12 + 12, (refs - 12 + 3) % 12)  # C major <-> A minor
    keys = np.full((n, 24), 0.02)
    keys[np.arange(n), refs] += 0.4
    keys[np.arange(n), relative] += 0.4 + 0.05 * rng.random(n)  # the relative key a little more often
    keys /= keys.sum(axis=1, keepdims=True)
    chords = np.full((n, 109), 1 / 109)
    modes = np.stack([np.where(refs < 12, 0.8, 0.2), np.where(refs < 12, 0.2, 0.8)], axis=1)
    modes = np.clip(modes + rng.normal(0, 0.05, modes.shape), 0.05, 0.95)
    modes /= modes.sum(axis=1, keepdims=True)
    tr, te = slice(0, 160), slice(160, None)
    without = fit_clip_key(keys[tr], chords[tr], refs[tr], 1e-3)
    params = fit_clip_key(keys[tr], chords[tr], refs[tr], 1e-3, modes[tr])
    assert "mode_scale" not in without and params["mode_scale"] > 1.0
    pred = np.array([np.argmax(clip_key_scores(k[None], c[None], params, m[None]))
                     for k, c, m in zip(keys[te], chords[te], modes[te])])
    blind = np.array([np.argmax(clip_key_scores(k[None], c[None], without)) for k, c in zip(keys[te], chords[te])])
    assert mode_balanced_accuracy(pred, refs[te]) > 0.95 and mode_balanced_accuracy(blind, refs[te]) < 0.8
    theta = np.r_[params["scale"], params["bias"], np.ravel(params["chord"]), params["mode_scale"]]
    np.testing.assert_allclose(clip_key_design(keys[:5], chords[:5], modes[:5]) @ theta,
                               np.stack([clip_key_scores(k[None], c[None], params, m[None])
                                         for k, c, m in zip(keys[:5], chords[:5], modes[:5])]), rtol=1e-9, atol=1e-9)
    with pytest.raises(Exception, match="weighs a mode head \\(mode_scale\\): give mode_probs"):
        clip_key_scores(keys[:1], chords[:1], params)
    rec = choose_clip_key(keys, chords, refs, np.array([f"p{i // 2}" for i in range(n)]), folds=3, mode_means=modes)
    assert rec["mode_scale"] > 1.0 and rec["valid"]["mode_balanced_accuracy_cv"] > 0.95


def test_beat_channel_loss_weighs_beats_and_downbeats():
    import keras

    from training.musical import beat_channel_loss

    rng = np.random.default_rng(0)
    y_true = (rng.random((2, 30, 2)) > 0.8).astype(np.float32)
    y_pred = rng.uniform(0.05, 0.95, (2, 30, 2)).astype(np.float32)
    plain = np.asarray(keras.losses.binary_crossentropy(y_true, y_pred))
    np.testing.assert_allclose(np.asarray(beat_channel_loss([1, 1])(y_true, y_pred)), plain, rtol=1e-5)
    eps = 1e-7
    p = np.clip(y_pred.astype(np.float64), eps, 1 - eps)
    bce = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))  # per channel
    np.testing.assert_allclose(np.asarray(beat_channel_loss([1, 3])(y_true, y_pred)),
                               0.25 * bce[..., 0] + 0.75 * bce[..., 1], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(beat_channel_loss([0, 2])(y_true, y_pred)), bce[..., 1], rtol=1e-4)
    for bad in ([1], [0, 0], [1, -1], "1,3", [True, 1]):
        with pytest.raises(SystemExit, match="beat_channel_weights=.* must be two numbers >= 0"):
            beat_channel_loss(bad)


def _bar_targets(frames, beat_frames, downbeat_frames):
    """``beats`` targets of one crop as :class:`training.musical.CropSampler` writes them."""
    from training.musical import widen

    beat, down = np.zeros(frames, np.float32), np.zeros(frames, np.float32)
    beat[beat_frames], down[downbeat_frames] = 1, 1
    return np.stack([widen(beat), widen(down)], axis=-1)


def test_bar_phase_loss_ranks_the_first_beat_of_each_bar():
    """``bar_phase_nll`` against a direct reading of its definition: per bar (downbeat to the frame before
    the next), minus the log-softmax of the downbeat logits at the bar's beats, on its first beat; bars of
    one beat and the beats before the first downbeat left out; then the mean over the crop's bars."""
    import keras

    from training.musical import bar_phase_accuracy, bar_phase_nll, beat_channel_loss

    rng = np.random.default_rng(1)
    beats = np.arange(3, 118, 10)                       # 12 beats; the first two before any downbeat
    downs = np.array([23, 63, 103])                      # bars of 4, 4 and 2 beats
    crops = [_bar_targets(120, beats, downs), _bar_targets(120, [5, 15, 25], [15]), _bar_targets(120, [50], [50])]
    y_true = np.stack(crops)
    y_pred = rng.uniform(0.02, 0.98, (3, 120, 2)).astype(np.float32)
    got = np.asarray(bar_phase_nll(y_true, y_pred))

    def expected(bars, p):
        logit = np.log(p) - np.log1p(-p)
        nll = [np.logaddexp.reduce(logit[b]) - logit[b[0]] for b in bars if len(b) >= 2]
        return float(np.mean(nll)) if nll else 0.0

    p = y_pred[..., 1].astype(np.float64)
    want = [expected([[23, 33, 43, 53], [63, 73, 83, 93], [103, 113]], p[0]), expected([[15, 25]], p[1]), 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # the downbeat output on every first beat and nowhere else: loss near 0, every bar right
    sharp = np.full((3, 120, 2), 0.01, np.float32)
    sharp[0, downs, 1] = sharp[1, 15, 1] = 0.99
    assert np.asarray(bar_phase_nll(y_true, sharp)).max() < 0.04
    weights = np.ones((3, 120), np.float32)
    assert bar_phase_accuracy(y_true, sharp[..., 1], weights) == 1.0
    # the same on beat 3 of the four-beat bars (the shipped head's mistake): those bars wrong, high loss
    third = np.full((3, 120, 2), 0.01, np.float32)
    third[0, [43, 83, 103], 1] = third[1, 15, 1] = 0.99
    assert bar_phase_accuracy(y_true, third[..., 1], weights) == pytest.approx(2 / 4)
    assert np.asarray(bar_phase_nll(y_true, third))[0] > 5
    weights[0, 63] = 0  # a bar whose downbeat frame carries no weight (beats masked) is not counted
    assert bar_phase_accuracy(y_true, third[..., 1], weights) == pytest.approx(2 / 3)
    assert np.isnan(bar_phase_accuracy(y_true[2:], third[2:, :, 1], weights[2:]))
    # in the beats loss: the channel loss plus the weighted bar term on every frame of the crop
    plain = np.asarray(beat_channel_loss([1, 2])(y_true, y_pred))
    both = np.asarray(beat_channel_loss([1, 2], 0.5)(y_true, y_pred))
    np.testing.assert_allclose(both - plain, np.repeat(0.5 * got[:, None], 120, axis=1), rtol=1e-4, atol=1e-6)
    # and it trains: a gradient step on the downbeat logits moves the first beats up
    logits = keras.Variable(np.zeros((1, 120), np.float32))
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = keras.ops.stack([keras.ops.sigmoid(logits), keras.ops.sigmoid(logits)], axis=-1)
        loss = keras.ops.sum(bar_phase_nll(y_true[:1], out))
    grad = np.asarray(tape.gradient(loss, logits.value))[0]
    assert (grad[downs] < 0).all() and (grad[[33, 43, 53, 113]] > 0).all() and grad[[3, 13]].tolist() == [0, 0]
    for bad in (-1, True, float("inf"), "0.5"):
        with pytest.raises(SystemExit, match="bar_phase_weight=.* must be a finite number >= 0"):
            beat_channel_loss([1, 1], bad)


def test_meter_bar_length_loss_adds_the_cross_entropy_of_the_bar_length():
    """The meter loss plus ``weight`` times minus the log of the head's probability summed over the meters
    of the target's beats per bar; masked targets (-1) add nothing; weight 0 is the plain loss; and its
    gradient moves probability between bar lengths, not within one."""
    import keras

    from mirzoo.tasks.analyze import beats_per_bar
    from training.musical import meter_bar_length_loss

    labels = ["2/2", "2/4", "3/4", "4/4", "5/4", "6/4", "3/2", "4/2", "3/8", "6/8", "9/8", "12/8"]
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(len(labels)), size=(3, 7)).astype(np.float32)
    y = rng.integers(-1, len(labels), size=(3, 7))
    y[0, 0] = -1
    length = np.array([beats_per_bar(m) for m in labels])
    want = np.zeros(y.shape)
    for i, j in np.ndindex(*y.shape):
        if y[i, j] >= 0:
            want[i, j] = -np.log(p[i, j, y[i, j]]) - 0.7 * np.log(p[i, j, length == length[y[i, j]]].sum())
    np.testing.assert_allclose(np.asarray(meter_bar_length_loss(labels, 0.7)(y, p)), want, rtol=1e-5, atol=1e-6)
    known = np.clip(y, 0, None)
    np.testing.assert_allclose(np.asarray(meter_bar_length_loss(labels, 0.0)(known, p)),
                               np.asarray(keras.losses.sparse_categorical_crossentropy(known, p)), rtol=1e-5)
    # a 3/4 target: the bar-length term alone raises every three-beat meter and lowers every other
    import tensorflow as tf

    logits = keras.Variable(np.zeros((1, len(labels)), np.float32))
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(meter_bar_length_loss(labels, 1.0)(np.array([2]), keras.ops.softmax(logits))
                             - meter_bar_length_loss(labels, 0.0)(np.array([2]), keras.ops.softmax(logits)))
    grad = np.asarray(tape.gradient(loss, logits.value))[0]
    assert (grad[length == 3] < 0).all() and (grad[length != 3] > 0).all()
    for bad in (-1, True, float("nan"), "1"):
        with pytest.raises(SystemExit, match="meter_bar_length_weight=.* must be a finite number >= 0"):
            meter_bar_length_loss(labels, bad)


def test_fine_tune_with_the_bar_length_term_and_mode_balance_runs_end_to_end(tmp_path, caplog):
    """``meter_bar_length_weight`` and ``mode_balance`` as ``train`` reads them from a config: a short
    fine-tune of the heads runs, logs the mode class weights of the training frames, and trains the meter
    and mode heads."""
    import json
    import logging

    import keras

    from mirzoo.zoo.manifest import get_entry
    from training import musical

    entry = get_entry("tcn-music")
    cache = _fake_cache(tmp_path / "cache")
    root = Path(__file__).resolve().parents[1] / "training" / "configs"
    cfg = json.loads((root / "tcn-music-finetune-mode-balanced.json").read_text())
    assert cfg["mode_balance"] == 1.0
    cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=2, epochs=1, valid_crops=2, min_tag_count=1,
               learning_rate=1e-2, freeze_through="embedding", anchor=None,
               meter_bar_length_weight=json.loads((root / "tcn-music-finetune-barlength.json").read_text())["meter_bar_length_weight"])
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger=musical.log.name):
        assert musical.main(["train", "--cache", str(cache), "--config", str(tmp_path / "cfg.json"), "--out", str(run),
                             "--init", "shipped", "--max-minutes", "5"]) == 0
    # the class weights of the training clips' key frames (the fake cache's last clip is its valid split)
    shard = np.load(cache / "shard-0000.npz")
    train_keys = shard["key"][:shard["offsets"][-2]]
    major, minor = int((train_keys < 12).sum()), int((train_keys >= 12).sum())
    w_major, w_minor = (major + minor) / (2 * major), (major + minor) / (2 * minor)
    assert f"mode loss weights (major, minor): {w_major:.3f}, {w_minor:.3f}" in caplog.text
    shipped, _, _ = musical.build_training_model(entry, len(entry["head"]["labels"]))
    shipped.load_weights(musical.init_weights_path("shipped", entry))
    trained, _, _ = musical.build_training_model(entry, len(entry["head"]["labels"]))
    trained.load_weights(run / "last.weights.h5")
    for head in ("meter", "mode"):
        a, b = shipped.get_layer(head).weights[0], trained.get_layer(head).weights[0]
        assert not np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), head


def _weights_without_mode(tmp_path, entry, n_tags):
    """The shipped ``tcn-music`` weights less the mode head (as they were before session 13): ``(entry
    without the head, weights file)``."""
    import json

    from training import musical

    core = json.loads(json.dumps(entry))
    core["config"]["heads"].pop("mode", None)
    without, _, _ = musical.build_training_model(core, n_tags)
    assert musical.load_initial_weights(without, musical.init_weights_path("shipped", entry), core, n_tags) == []
    path = tmp_path / "without-mode.weights.h5"
    without.save_weights(path)
    return core, path


@pytest.mark.slow  # training runs of a minute on 2 cores: CI's second step, `pytest -m slow`
def test_interpolate_mixes_a_fine_tune_with_its_initial_weights(tmp_path):
    """``interpolate --alpha a``: every layer the initial weights have is ``a * run + (1 - a) * initial``, a
    head the run added is the run's, and the new folder's state names it as the best, scored."""
    import json

    from mirzoo.zoo.manifest import get_entry
    from training import musical

    entry = get_entry("tcn-music")
    n_tags = len(entry["head"]["labels"])
    cache = _fake_cache(tmp_path / "cache")
    cfg = json.loads((Path(__file__).resolve().parents[1] / "training" / "configs" / "tcn-music-finetune-mode.json").read_text())
    cfg.update(crop_seconds=2.0, batch_size=2, steps_per_epoch=3, epochs=1, valid_crops=2, min_tag_count=1,
               learning_rate=1e-2)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run, mixed = tmp_path / "run", tmp_path / "mixed"
    core, init = _weights_without_mode(tmp_path, entry, n_tags)  # initial weights without the head the run adds
    assert musical.main(["train", "--cache", str(cache), "--config", str(tmp_path / "cfg.json"), "--out", str(run),
                         "--init", str(init), "--max-minutes", "5"]) == 0
    state = json.loads((run / "state.json").read_text())
    if state["best_source"] == "init":  # the interpolation reads the run's best: make it the epoch's
        (run / "best.weights.h5").write_bytes((run / "last.weights.h5").read_bytes())
    assert musical.main(["interpolate", "--run", str(run), "--alpha", "0.25", "--cache", str(cache),
                         "--out", str(mixed)]) == 0
    ft, _, _ = musical.build_training_model(core, n_tags, add_heads=("mode",))
    ft.load_weights(run / "best.weights.h5")
    out, _, _ = musical.build_training_model(core, n_tags, add_heads=("mode",))
    out.load_weights(mixed / "best.weights.h5")
    shipped, _, _ = musical.build_training_model(core, n_tags)
    shipped.load_weights(init)
    moved = 0
    for layer in shipped.layers:
        for a, b, c in zip(layer.get_weights(), ft.get_layer(layer.name).get_weights(), out.get_layer(layer.name).get_weights()):
            np.testing.assert_allclose(c, 0.75 * a + 0.25 * b, rtol=1e-5, atol=1e-6, err_msg=layer.name)
            moved += int(not np.array_equal(a, b))
    assert moved > 0  # the fine-tune changed something to mix
    for a, b in zip(ft.get_layer("mode").get_weights(), out.get_layer("mode").get_weights()):
        np.testing.assert_array_equal(a, b)
    new = json.loads((mixed / "state.json").read_text())
    assert new["best_epoch"] == len(new["history"]) - 1 and new["history"][-1]["interpolation"]["alpha"] == 0.25
    assert new["best_source"].startswith("interpolation: 0.25 x") and np.isfinite(new["best"])
    for alpha in ("0", "1.5"):
        with pytest.raises(SystemExit, match=f"--alpha {float(alpha)}: expected a fraction in \\(0, 1\\)"):
            musical.main(["interpolate", "--run", str(run), "--alpha", alpha, "--cache", str(cache), "--out", str(mixed)])
    # --weights last: the run's last epoch instead of its best, and the record says so
    assert musical.main(["interpolate", "--run", str(run), "--alpha", "0.5", "--weights", "last", "--cache", str(cache),
                         "--out", str(tmp_path / "mixed-last")]) == 0
    ft.load_weights(run / "last.weights.h5")
    out.load_weights(tmp_path / "mixed-last" / "best.weights.h5")
    for a, b, c in zip(shipped.get_layer("embedding").get_weights(), ft.get_layer("embedding").get_weights(),
                       out.get_layer("embedding").get_weights()):
        np.testing.assert_allclose(c, 0.5 * a + 0.5 * b, rtol=1e-5, atol=1e-6)
    last = json.loads((tmp_path / "mixed-last" / "state.json").read_text())
    assert last["history"][-1]["interpolation"]["run_weights"] == "last"
    assert last["best_source"] == f"interpolation: 0.5 x (last epoch {state['epoch'] - 1} of run) + 0.5 x initial weights"


def test_the_shipped_command_names_the_config_file_a_run_was_trained_with():
    import json

    from training import musical

    root = Path(musical.__file__).resolve().parent.parent
    cfg = json.loads((root / "training" / "configs" / "tcn-music-finetune-mode-tcn4-downbeat.json").read_text())
    assert musical.config_file_of(cfg, "fallback") == "training/configs/tcn-music-finetune-mode-tcn4-downbeat.json"
    assert musical.config_file_of(dict(cfg, seed=12345), "fallback") == "fallback"


# -- the pitch-class head and the clip key it feeds ------------------------------------------------
def _chroma_of_keys(refs, rng, noise=0.15):
    """Clip-mean pitch-class activities of clips in the keys ``refs``: the key's scale, its tonic triad more."""
    out = np.full((len(refs), 12), 0.05)
    for i, k in enumerate(refs):
        tonic, minor = k % 12, k // 12
        scale = (0, 2, 3, 5, 7, 8, 10) if minor else (0, 2, 4, 5, 7, 9, 11)
        triad = (0, 3, 7) if minor else (0, 4, 7)
        out[i, [(tonic + s) % 12 for s in scale]] = 0.5
        out[i, [(tonic + s) % 12 for s in triad]] = 0.9
    return np.clip(out + rng.normal(0, noise, out.shape), 0.0, 1.0)


def test_clip_key_fit_weighs_the_pitch_class_head_and_chooses_its_form_by_cross_validation():
    """Key and chord heads that know nothing and a pitch-class head that hears each clip's scale: both
    forms learn a positive ``chroma_scale`` and find the keys, the cross-validation picks the better
    form, and the library scores what each fit's design matrix does."""
    from mirzoo.tasks.analyze import clip_key_scores
    from training.musical import choose_clip_key, clip_key_design, fit_clip_key, key_mirex

    rng = np.random.default_rng(7)
    n = 180
    refs = rng.integers(0, 24, n)
    keys = rng.dirichlet(np.ones(24), size=n)
    chords = rng.dirichlet(np.ones(109), size=n)
    modes = rng.dirichlet(np.ones(2), size=n)
    chroma = _chroma_of_keys(refs, rng)
    tr, te = slice(0, 120), slice(120, None)
    heads = fit_clip_key(keys[tr], chords[tr], refs[tr], 1e-3, modes[tr], chroma[tr])
    pcs = fit_clip_key(keys[tr], chords[tr], refs[tr], 1e-3, modes[tr], chroma[tr], form="pitch-classes")
    assert min(heads["chroma_scale"]) > 1.0 and heads["form"] == "heads" and "mode_scale" in heads
    assert pcs["form"] == "pitch-classes" and "mode_scale" not in pcs and pcs["l2"] == 0.0
    assert pcs["scale"] == [0.0, 0.0] and not np.any(pcs["chord"]) and min(pcs["chroma_scale"]) > 1.0
    for params, m in ((heads, modes), (pcs, None)):
        theta = np.r_[params["scale"], params["bias"], np.ravel(params["chord"]),
                      [params["mode_scale"]] if "mode_scale" in params else [], params["chroma_scale"]]
        np.testing.assert_allclose(
            clip_key_design(keys[:5], chords[:5], None if m is None else m[:5], chroma[:5]) @ theta,
            np.stack([clip_key_scores(keys[j][None], chords[j][None], params, None if m is None else m[j][None],
                                      chroma[j][None]) for j in range(5)]), rtol=1e-9, atol=1e-9)
    pred = np.array([np.argmax(clip_key_scores(keys[j][None], chords[j][None], pcs, None, chroma[j][None]))
                     for j in range(120, n)])
    assert key_mirex(pred, refs[te]) > 0.85 > 0.3 > key_mirex(keys[te].argmax(axis=1), refs[te])
    with pytest.raises(ValueError, match="form='pitch-classes' needs chroma_means"):
        fit_clip_key(keys, chords, refs, 1e-3, form="pitch-classes")
    rec = choose_clip_key(keys, chords, refs, np.array([f"p{i // 2}" for i in range(n)]), folds=3,
                          mode_means=modes, chroma_means=chroma)
    v = rec["valid"]
    best_heads = max(v["key_mirex_cv_by_l2"].values())
    assert v["key_mirex_cv_pitch_classes"] > 0.85 and v["key_mirex_cv"] == max(best_heads, v["key_mirex_cv_pitch_classes"])
    assert rec["form"] == ("pitch-classes" if v["key_mirex_cv_pitch_classes"] >= best_heads else "heads")
    assert 0.85 < v["key_mirex_pitch_classes_unfitted"] <= 1  # the Krumhansl-Schmuckler argmax alone
    # without a pitch-class head the heads form is the only one
    assert choose_clip_key(keys, chords, refs, np.array([f"p{i // 2}" for i in range(n)]), folds=3)["form"] == "heads"


def test_fit_binary_logistic_recovers_independent_logistic_models():
    from training.musical import fit_binary_logistic

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 5)) * np.array([1.0, 10.0, 0.1, 1.0, 100.0]) + 3.0
    w_true = rng.normal(size=(5, 3)) / np.array([1.0, 10.0, 0.1, 1.0, 100.0])[:, None]
    z = x @ w_true - (3.0 * w_true.sum(axis=0))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(float)
    w, b = fit_binary_logistic(x, y, l2=1e-6)
    assert w.shape == (5, 3) and b.shape == (3,)
    np.testing.assert_allclose(w, w_true, rtol=0.25, atol=0.15 * np.abs(w_true).max())
    p = 1 / (1 + np.exp(-(x @ w + b)))
    p_true = 1 / (1 + np.exp(-z))
    assert np.abs(p - p_true).mean() < 0.03
    # features rescaled: the same probabilities (the fit standardises, the weights map back)
    w2, b2 = fit_binary_logistic(x * 1000.0, y, l2=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-(x * 1000.0 @ w2 + b2))), p, atol=1e-4)


def test_frame_heads_read_the_frame_vector():
    import keras

    from mirzoo.nn.tcn import build_tcn
    from mirzoo.zoo.manifest import get_entry

    config = dict(get_entry("tcn-music")["config"], n_tags=3, frame_heads={"pitch_classes": 12})
    model = build_tcn(config)
    assert model.output["pitch_classes"].shape[-1] == 12
    rng = np.random.default_rng(1)
    head = model.get_layer("pitch_classes")
    head.set_weights([rng.normal(size=(config["frame_units"], 12)).astype(np.float32) * 0.1,
                      rng.normal(size=12).astype(np.float32)])
    y = rng.standard_normal((1, 16000)).astype(np.float32) * 0.1
    out = model(y)
    w, b = head.get_weights()
    want = 1 / (1 + np.exp(-(np.asarray(out["frame"])[0] @ w + b)))
    np.testing.assert_allclose(np.asarray(out["pitch_classes"])[0], want, rtol=1e-4, atol=1e-5)
    assert isinstance(model.get_layer("pitch_classes"), keras.layers.Dense)


def test_fit_pitch_classes_adds_a_head_and_changes_nothing_else(tmp_path, tiny_corpus, monkeypatch):
    """On a copy of the package: the head is fitted on the frozen frame vector (every other output
    the same up to float rounding), the manifest entry names it with readable labels, its weights' sha256 and the
    fit, drops the clip key fitted without it, and the head predicts the score's pitch classes
    better than their base rate on the clips it was fitted on."""
    import hashlib
    import json
    import shutil

    from training import musical
    from training.corpus import load_clip_targets

    repo = Path(musical.__file__).resolve().parents[1]
    root = tmp_path / "pkg"
    (root / "mirzoo" / "weights").mkdir(parents=True)
    shutil.copy(repo / "weights_manifest.json", root / "weights_manifest.json")
    shutil.copy(repo / "mirzoo" / "weights_manifest.json", root / "mirzoo" / "weights_manifest.json")
    name = json.loads((repo / "mirzoo" / "weights_manifest.json").read_text())["models"]["tcn-music"]["weights"]["file"]
    shutil.copy(repo / "mirzoo" / "weights" / name, root / "mirzoo" / "weights" / name)
    args = ["fit-pitch-classes", "--corpus", str(tiny_corpus), "--split", "train", "--clips", "0", "--step", "2", "--l2", "1e-3",
            "--valid-split", "", "--root", str(root)]
    assert musical.main(args) == 0
    entry = json.loads((root / "mirzoo" / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert json.loads((root / "weights_manifest.json").read_text())["models"]["tcn-music"] == entry
    data = (root / "mirzoo" / "weights" / name).read_bytes()
    assert entry["weights"]["sha256"] == hashlib.sha256(data).hexdigest() and entry["weights"]["size"] == len(data)
    assert entry["config"]["frame_heads"] == {"pitch_classes": 12} and entry["layers"]["pitch_classes"] == 12
    assert {"output": "pitch_classes", "labels": ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"],
            "activation": "sigmoid"} in entry["aux_heads"]
    files = sorted((Path(tiny_corpus) / "targets" / "train").rglob("*.npz"))
    assert "clip_key" not in entry and entry["training"]["pitch_classes"]["clips"] == len(files) > 2
    assert "bar_model" not in entry and "downbeat_model" not in entry  # they read the head: refitted after it
    assert "fit-pitch-classes" in entry["training"]["command"]

    monkeypatch.setenv("MIRZOO_MANIFEST", str(root / "mirzoo" / "weights_manifest.json"))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(root / "mirzoo" / "weights"))
    new = mirzoo.load("tcn-music")
    monkeypatch.delenv("MIRZOO_MANIFEST")
    monkeypatch.delenv("MIRZOO_WEIGHTS_DIR")
    old = mirzoo.load("tcn-music")
    assert "pitch_classes" in new.heads and new.spec.clip_key is None
    t = load_clip_targets(str(files[0]))
    y, _ = new.load_input(str(Path(tiny_corpus) / t["meta"]["path"]), None)
    keys = ["embedding", "key", "beats", "tags"]
    b = old.forward([y], keys, 16)[0]
    # the same weights: equal up to float rounding (oneDNN's kernels may sum in another order in another
    # graph or process state; in a fresh process and for the same outputs they are bit for bit equal)
    for request in (keys, keys + ["pitch_classes"]):
        a = new.forward([y], request, 16)[0]
        for k in keys:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5 * float(np.abs(b[k]).max()))
    # fitted: better than the base rate of each pitch class, in cross-entropy, on the training clips
    probs, truth = [], []
    for f in files:
        t = load_clip_targets(str(f))
        y, _ = new.load_input(str(Path(tiny_corpus) / t["meta"]["path"]), None)
        p = new.forward([y], ["pitch_classes"], 16)[0]["pitch_classes"]
        n = min(len(p), len(t["chroma"]))
        probs.append(p[:n])
        truth.append(t["chroma"][:n] > 0)
    p, truth = np.clip(np.concatenate(probs), 1e-6, 1 - 1e-6), np.concatenate(truth)
    rate = np.clip(truth.mean(axis=0), 1e-3, 1 - 1e-3)

    def bce(q):
        return -np.mean(truth * np.log(q) + (~truth) * np.log(1 - q))

    assert bce(p) < 0.8 * bce(np.broadcast_to(rate, p.shape))


def test_fit_tags_refits_the_tag_head_on_more_layers_and_changes_nothing_else(tmp_path, tiny_corpus, monkeypatch):
    """On a copy of the package: the tags head is refitted on conv3 + frame + embedding (every other
    output the same up to float rounding), kept only because its clip ROC-AUC is better on the scored
    clips, and the entry names its inputs, the fit and the new weights; a worse refit writes nothing."""
    import hashlib
    import json

    from training import musical
    from training.corpus import load_clip_targets

    root = tmp_path / "pkg"
    entry = _package_copy(root, with_weights=True)
    weights = root / "mirzoo" / "weights" / entry["weights"]["file"]
    manifests = [root / "weights_manifest.json", root / "mirzoo" / "weights_manifest.json"]
    before = [weights.read_bytes()] + [m.read_bytes() for m in manifests]
    common = ["--corpus", str(tiny_corpus), "--split", "train", "--clips", "0", "--step", "2", "--valid-split", "train",
              "--root", str(root)]
    # refused before any work: a head, or the derived tonal layer, is not a layer the head may read
    for bad in ("key", "tonal"):
        with pytest.raises(SystemExit, match="expected distinct layers"):
            musical.main(["fit-tags", *common, "--sources", "frame", bad])
    # a refit that cannot rank the clips (one probability for all) is not better: nothing written
    with monkeypatch.context() as patch:
        patch.setattr(musical, "fit_binary_logistic", lambda x, y, l2: (np.zeros((x.shape[1], y.shape[1])), np.zeros(y.shape[1])))
        with pytest.raises(SystemExit, match="not better on the train clips"):
            musical.main(["fit-tags", *common])
    assert [weights.read_bytes()] + [m.read_bytes() for m in manifests] == before

    assert musical.main(["fit-tags", *common, "--l2", "1e-3"]) == 0
    new_entry = json.loads(manifests[1].read_text())["models"]["tcn-music"]
    assert json.loads(manifests[0].read_text())["models"]["tcn-music"] == new_entry
    data = weights.read_bytes()
    assert new_entry["weights"]["sha256"] == hashlib.sha256(data).hexdigest() != entry["weights"]["sha256"]
    assert new_entry["config"]["tags_from"] == ["conv3", "frame", "embedding"]
    record = new_entry["training"]["tags_head"]
    assert record["valid"]["roc_auc"] > record["valid"]["roc_auc_before"] and record["sources"] == ["conv3", "frame", "embedding"]
    assert "clip_key" not in new_entry and "fit-tags" in new_entry["training"]["command"]
    # a clip_tags record that reads the refitted head is dropped with it; one on trunk layers stays
    assert ("clip_tags" in new_entry) == ("tags" not in (entry.get("clip_tags") or {}).get("sources", ["tags"]))
    from mirzoo.publish import model_card
    from mirzoo.spec import ModelSpec

    card = model_card(ModelSpec.from_entry("tcn-music", new_entry), "mirzoo/tcn-music")
    assert "Tags head refitted on the frozen `conv3` + `frame` + `embedding`" in card
    assert f"clip tag ROC-AUC {record['valid']['roc_auc_before']} -> {record['valid']['roc_auc']}" in card

    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifests[1]))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights.parent))
    new = mirzoo.load("tcn-music")
    monkeypatch.delenv("MIRZOO_MANIFEST")
    monkeypatch.delenv("MIRZOO_WEIGHTS_DIR")
    old = mirzoo.load("tcn-music")
    files = sorted((Path(tiny_corpus) / "targets" / "train").rglob("*.npz"))
    t = load_clip_targets(str(files[0]))
    y, _ = new.load_input(str(Path(tiny_corpus) / t["meta"]["path"]), None)
    keys = ["embedding", "key", "chord", "beats", "pitch_classes", "tonal"]
    a, b = new.forward([y], keys + ["tags"], 16)[0], old.forward([y], keys + ["tags"], 16)[0]
    for k in keys:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5 * float(np.abs(b[k]).max()))
    assert np.abs(a["tags"] - b["tags"]).max() > 1e-3
    # the head reads the three layers: its output is the logistic of their concatenation
    layers = new.forward([y], ["conv3", "frame", "embedding"], 16)[0]
    kernel, bias = new.keras_model.get_layer("tags").get_weights()
    x = np.concatenate([layers["conv3"], layers["frame"], layers["embedding"]], axis=1)
    np.testing.assert_allclose(a["tags"], 1 / (1 + np.exp(-(x @ kernel + bias))), atol=1e-4)


def test_fits_over_clips_of_many_lengths_run_without_onednn_unless_told():
    from training.musical import onednn_off_for_fits

    env: dict = {}
    assert onednn_off_for_fits("fit-pitch-classes", env, {}) and env == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    env = {}
    assert onednn_off_for_fits("fit-key", env, {"numpy": None}) and env["TF_ENABLE_ONEDNN_OPTS"] == "0"
    env = {"TF_ENABLE_ONEDNN_OPTS": "1"}  # the user's choice wins
    assert not onednn_off_for_fits("fit-key", env, {}) and env["TF_ENABLE_ONEDNN_OPTS"] == "1"
    env = {}
    assert not onednn_off_for_fits("fit-key", env, {"tensorflow": None}) and env == {}  # too late to matter
    assert not onednn_off_for_fits("train", env, {}) and env == {}  # crops of one length: left as it is


def test_fit_clip_tags_writes_a_record_that_tag_reads_and_leaves_the_weights_alone(tmp_path, tiny_corpus, monkeypatch):
    """On a copy of the package: ``fit-clip-tags`` fits the logistic regression on the clips' pooled layers
    (the same fit, redone here on features computed independently), picks its L2 on the scored clips, writes
    the record and its fit into both manifests with the weights untouched, and ``tag()`` then reads it; a fit
    no better than the tags head's frame mean writes nothing."""
    import json

    from training import musical
    from training.corpus import load_clip_targets

    from mirzoo.tasks.clip_heads import decode_array

    root = tmp_path / "pkg"
    entry = _package_copy(root, with_weights=True)
    weights = root / "mirzoo" / "weights" / entry["weights"]["file"]
    manifests = [root / "weights_manifest.json", root / "mirzoo" / "weights_manifest.json"]
    before = [weights.read_bytes()] + [m.read_bytes() for m in manifests]
    common = ["--corpus", str(tiny_corpus), "--split", "train", "--clips", "0", "--valid-split", "train",
              "--sources", "embedding", "tags", "--root", str(root)]
    for bad in ("genre", "tonal"):  # a head's output may be read (tags), the derived tonal layer may not
        with pytest.raises(SystemExit, match="expected distinct layers"):
            musical.main(["fit-clip-tags", *common[:-5], "--sources", "frame", bad, "--root", str(root)])
    with monkeypatch.context() as patch:  # a fit that ranks nothing
        patch.setattr(musical, "fit_binary_logistic", lambda x, y, l2: (np.zeros((x.shape[1], y.shape[1])), np.zeros(y.shape[1])))
        with pytest.raises(SystemExit, match="not better on the train clips than the tags head's frame mean"):
            musical.main(["fit-clip-tags", *common])
    assert [weights.read_bytes()] + [m.read_bytes() for m in manifests] == before

    fits = []
    real_fit = musical.fit_binary_logistic
    monkeypatch.setattr(musical, "fit_binary_logistic", lambda x, y, l2: fits.append((x, y, l2)) or real_fit(x, y, l2))
    assert musical.main(["fit-clip-tags", *common, "--l2", "0.1", "1"]) == 0
    assert weights.read_bytes() == before[0]
    new_entry = json.loads(manifests[1].read_text())["models"]["tcn-music"]
    assert json.loads(manifests[0].read_text())["models"]["tcn-music"] == new_entry
    assert new_entry["clip_key"] == entry["clip_key"] and new_entry["weights"] == entry["weights"]
    record, fit = new_entry["clip_tags"], new_entry["training"]["clip_tags"]
    assert record["sources"] == ["embedding", "tags"] and record["pool"] == musical.CLIP_TAG_POOL and record["head"] == "tags"
    assert set(fit["l2_scores"]) == {"0.1", "1"} and fit["l2_scores"][f"{fit['l2']:g}"] == max(fit["l2_scores"].values())
    assert fit["valid"]["roc_auc"] > fit["valid"]["roc_auc_frame_mean"] and "fit-clip-tags" in new_entry["training"]["command"]

    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifests[1]))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights.parent))
    new = mirzoo.load("tcn-music")
    files = sorted((Path(tiny_corpus) / "targets" / "train").rglob("*.npz"))
    feats, truth = [], []
    for f in files:
        t = load_clip_targets(str(f))
        y, _ = new.load_input(str(Path(tiny_corpus) / t["meta"]["path"]), None)
        frames = new.forward([y], ["embedding", "tags"], 16)[0]  # the tags head's own frame probabilities too
        x = np.concatenate([frames["embedding"], frames["tags"]], axis=1).astype(np.float32)
        feats.append(np.concatenate([x.mean(axis=0), x.std(axis=0), x.max(axis=0)]))  # the default pool, by hand
        truth.append([lab in set(t["meta"]["tags"].split(";")) for lab in new.heads["tags"]])
    feats = np.array(feats)
    x_fit, y_fit, l2 = fits[[f[2] for f in fits].index(fit["l2"])]
    mean, scale = decode_array(record["mean"]), decode_array(record["scale"])
    np.testing.assert_allclose(mean, feats.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x_fit, (feats - mean) / scale, atol=1e-3)
    np.testing.assert_array_equal(y_fit, np.array(truth, dtype=np.float32))
    w, b = real_fit(x_fit, y_fit, l2)
    np.testing.assert_allclose(decode_array(record["weights"]), w, atol=2e-3 * np.abs(w).max())
    np.testing.assert_allclose(record["bias"], b, atol=1e-5)
    # tag() reads the record
    probs = dict(new.tag(y, new.sample_rate, top_k=None))
    z = (feats[-1] - mean) / scale
    want = 1 / (1 + np.exp(-(z @ decode_array(record["weights"]) + np.array(record["bias"]))))
    np.testing.assert_allclose([probs[lab] for lab in new.heads["tags"]], want, rtol=1e-4)

    from mirzoo.publish import model_card
    from mirzoo.spec import ModelSpec

    card = model_card(ModelSpec.from_entry("tcn-music", new_entry), "mirzoo/tcn-music")
    assert (f"Clip-level tags (`tag()`): a logistic regression on the mean, standard deviation and maximum over the clip's frames of "
            f"`embedding` + `tags`, fitted on {fit['clips']} train clips of c") in card


def _package_copy(root, with_weights=False):
    """Both manifests of the package (and its ``tcn-music`` weights) copied under ``root``, for commands
    that write the package (``--root``); returns the ``tcn-music`` entry."""
    import json
    import shutil

    from training import musical

    repo = Path(musical.__file__).resolve().parents[1]
    (root / "mirzoo" / "weights").mkdir(parents=True)
    entry = json.loads((repo / "mirzoo" / "weights_manifest.json").read_text())["models"]["tcn-music"]
    extra = (f"mirzoo/weights/{entry['weights']['file']}",) if with_weights else ()
    for rel in ("weights_manifest.json", "mirzoo/weights_manifest.json", *extra):
        shutil.copy(repo / rel, root / rel)
    return entry


def _ship_fake_run(run, config, entry, root):
    """``ship`` a run folder whose model config is ``config`` (its weights bytes stand in, ship does not read
    them) into the package copy at ``root``."""
    import json

    from training import musical

    run.mkdir()
    (run / "best.weights.h5").write_bytes(b"not read by ship")
    (run / "state.json").write_text(json.dumps({
        "epoch": 3, "best_epoch": 1, "best_source": "epoch", "minutes": 2.0, "model_config": config,
        "vocabulary": entry["head"]["labels"], "history": [{}, {"key_mirex": 0.7, "beat_f1": 0.8}, {}]}))
    assert musical.main(["ship", "--run", str(run), "--root", str(root)]) == 0


def test_shipping_a_run_without_the_pitch_class_head_drops_it_from_the_entry(tmp_path):
    """A run whose model has no ``pitch_classes`` head (trained before it existed) shipped over weights
    that had one: the entry no longer lists the head or its layer, so it still parses and loads."""
    import json

    from mirzoo.spec import ModelSpec

    root = tmp_path / "pkg"
    entry = _package_copy(root)
    assert "pitch_classes" in entry["config"].get("frame_heads", {})  # the shipped weights have it
    config = {k: v for k, v in entry["config"].items() if k != "frame_heads"}
    _ship_fake_run(tmp_path / "run", config, entry, root)
    for rel in ("weights_manifest.json", "mirzoo/weights_manifest.json"):
        e = json.loads((root / rel).read_text())["models"]["tcn-music"]
        assert "pitch_classes" not in e["layers"] and "frame_heads" not in e["config"]
        assert all(a["output"] != "pitch_classes" for a in e["aux_heads"])
        assert "clip_key" not in e  # fitted on other weights
        assert "pitch_classes" not in ModelSpec.from_entry("tcn-music", e).heads
        # and the tonal layer, which reads that head
        assert "tonal" not in e["layers"] and "tonal" not in e["config"] and "tonal" not in e["all_layers"]
    assert (root / "mirzoo" / "weights" / "tcn-music.weights.h5").read_bytes() == b"not read by ship"


def test_ship_keeps_the_entry_s_tonal_layer_over_a_run_started_without_it(tmp_path):
    """The ``tonal`` layer has no weights and is the entry's choice: a run whose recorded config
    predates it ships with it still promised, in the config as in the layers."""
    import json

    from mirzoo.spec import ModelSpec

    root = tmp_path / "pkg"
    entry = _package_copy(root)
    assert entry["config"].get("tonal") is True and entry["layers"]["tonal"] == 123
    config = {k: v for k, v in entry["config"].items() if k != "tonal"}
    _ship_fake_run(tmp_path / "run", config, entry, root)
    for rel in ("weights_manifest.json", "mirzoo/weights_manifest.json"):
        e = json.loads((root / rel).read_text())["models"]["tcn-music"]
        assert e["config"]["tonal"] is True and e["layers"]["tonal"] == 123 and "tonal" in e["all_layers"]
        assert dict(e["config"], tonal=None) == dict(config, tonal=None)  # the run's config otherwise
        assert ModelSpec.from_entry("tcn-music", e).layers["tonal"] == 123


def test_ship_drops_a_clip_tags_record_fitted_on_the_replaced_weights(tmp_path, caplog):
    """The record reads trunk layers a run retrains: shipping the run removes it and its fit, and says so."""
    import json

    from mirzoo.spec import ModelSpec

    root = tmp_path / "pkg"
    entry = _package_copy(root)
    if "clip_tags" not in entry:  # the package's entry may predate the record: give the copy one
        labels = entry["head"]["labels"]
        d = 2 * (entry["layers"]["frame"] + entry["layers"]["embedding"])
        from mirzoo.tasks.clip_heads import encode_array

        entry["clip_tags"] = {"form": "pooled-logistic-v1", "head": "tags", "sources": ["frame", "embedding"],
                              "pool": "mean+std", "mean": encode_array(np.zeros(d)), "scale": encode_array(np.ones(d)),
                              "weights": encode_array(np.zeros((d, len(labels))), "float16"), "bias": [0.0] * len(labels)}
        entry["training"]["clip_tags"] = {"clips": 1}
        for rel in ("weights_manifest.json", "mirzoo/weights_manifest.json"):
            manifest = json.loads((root / rel).read_text())
            manifest["models"]["tcn-music"] = entry
            (root / rel).write_text(json.dumps(manifest))
    assert ModelSpec.from_entry("tcn-music", entry).clip_tags is not None
    with caplog.at_level("WARNING"):
        _ship_fake_run(tmp_path / "run", dict(entry["config"]), entry, root)
    for rel in ("weights_manifest.json", "mirzoo/weights_manifest.json"):
        e = json.loads((root / rel).read_text())["models"]["tcn-music"]
        assert "clip_tags" not in e and "clip_tags" not in e["training"]
        assert ModelSpec.from_entry("tcn-music", e).clip_tags is None
    assert "clip_tags record was fitted on the layers of the weights this run replaces" in caplog.text


def test_a_fit_that_changes_a_head_drops_the_clip_tags_record_reading_it(caplog):
    from training.musical import drop_clip_tags_reading

    entry = {"clip_tags": {"sources": ["frame", "tags"]}, "training": {"clip_tags": {"clips": 1}, "tags_head": {}}}
    drop_clip_tags_reading(entry, ["pitch_classes"])  # a head it does not read: kept
    assert entry["clip_tags"] and entry["training"]["clip_tags"]
    with caplog.at_level("WARNING"):
        drop_clip_tags_reading(entry, ["tags"])
    assert "clip_tags" not in entry and entry["training"] == {"tags_head": {}}
    assert "reads ['tags'], which this fit changed: dropped" in caplog.text


def test_ship_takes_the_last_epoch_when_asked(tmp_path):
    """``ship --weights last``: the run's last weights and that epoch's figures go into the entry (an
    annealed run's end, chosen on measures beyond the crops' score); ``best`` stays the default."""
    import json

    from training import musical

    root = tmp_path / "pkg"
    entry = _package_copy(root)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.weights.h5").write_bytes(b"epoch 1")
    (run / "last.weights.h5").write_bytes(b"epoch 2")
    config = {k: v for k, v in entry["config"].items() if k != "frame_heads"}  # no head to check: bytes stand in
    (run / "state.json").write_text(json.dumps({
        "epoch": 3, "best_epoch": 1, "best_source": "epoch", "minutes": 2.0, "model_config": config,
        "vocabulary": entry["head"]["labels"], "init": {"sha256": "0" * 64, "training": None},
        "schedule": {"anneal": True, "average_from": None},
        "history": [{}, {"key_mirex": 0.7, "bar_phase_acc": 0.6}, {"key_mirex": 0.68, "bar_phase_acc": 0.8}]}))
    target = root / "mirzoo" / "weights" / "tcn-music.weights.h5"
    assert musical.main(["ship", "--run", str(run), "--root", str(root), "--weights", "last"]) == 0
    e = json.loads((root / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert target.read_bytes() == b"epoch 2" and e["weights"]["size"] == 7
    assert e["training"]["best_epoch"] == 2 and e["training"]["best_weights"] == "last epoch 2"
    assert "the run's last epoch shipped (ship --weights last)" in e["training"]["data"]
    assert e["training"]["valid"] == {"key_mirex": 0.68, "bar_phase_acc": 0.8}
    # the recipe as the run went: its schedule flags (no weight averaging here) and the epoch shipped
    assert e["training"]["command"].endswith(
        "--init shipped --anneal --max-minutes M && python -m training.musical ship --run RUN --weights last")
    assert musical.main(["ship", "--run", str(run), "--root", str(root)]) == 0
    e = json.loads((root / "mirzoo" / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert target.read_bytes() == b"epoch 1" and e["training"]["best_epoch"] == 1
    assert e["training"]["valid"] == {"key_mirex": 0.7, "bar_phase_acc": 0.6}
    assert e["training"]["command"].endswith("--anneal --max-minutes M && python -m training.musical ship --run RUN")
    # an interpolated run with its clip key: the recipe in the order it ran
    import hashlib

    state = json.loads((run / "state.json").read_text())
    state["best_source"] = "interpolation: 0.5 x (epoch 1 of run) + 0.5 x initial weights"
    state["history"][1]["interpolation"] = {"alpha": 0.5}
    (run / "state.json").write_text(json.dumps(state))
    (run / "clip_key.json").write_text(json.dumps({"weights_sha256": hashlib.sha256(b"epoch 1").hexdigest()}))
    assert musical.main(["ship", "--run", str(run), "--root", str(root)]) == 0
    e = json.loads((root / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert e["training"]["command"].endswith(
        "--anneal --max-minutes M && python -m training.musical interpolate --run RUN --alpha 0.5 --cache CACHE "
        "--out RUN2 && python -m training.musical fit-key --corpus CORPUS --weights RUN2/best.weights.h5 "
        "&& python -m training.musical ship --run RUN2")
    assert e["clip_key"]["weights_sha256"] == e["weights"]["sha256"]
    state["history"][1]["interpolation"] = {"alpha": 0.5, "run_weights": "last"}  # interpolate --weights last
    (run / "state.json").write_text(json.dumps(state))
    assert musical.main(["ship", "--run", str(run), "--root", str(root)]) == 0
    e = json.loads((root / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert "interpolate --run RUN --alpha 0.5 --cache CACHE --out RUN2 --weights last && " in e["training"]["command"]
    with pytest.raises(SystemExit):  # argparse refuses anything else
        musical.main(["ship", "--run", str(run), "--root", str(root), "--weights", "average"])


def test_ship_keeps_the_pitch_class_record_only_when_the_head_reads_the_same_weights(tmp_path, caplog):
    """A run frozen below the pitch-class head (``train`` has no loss on it) ships with the head's record
    kept; a run whose frame vector moved drops it and warns to refit."""
    import json
    import logging
    import shutil

    import keras

    from training import musical

    repo = Path(musical.__file__).resolve().parents[1]
    entry = json.loads((repo / "mirzoo" / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert "pitch_classes" in entry["training"]  # the package's fit of the head
    n_tags = len(entry["head"]["labels"])
    shipped = repo / "mirzoo" / "weights" / entry["weights"]["file"]
    full, _, _ = musical.build_training_model(entry, n_tags)
    full.load_weights(shipped)
    above = tmp_path / "above.weights.h5"   # a layer above the frame vector moved: the head is untouched
    layer = full.get_layer("tcn8_conv")
    layer.set_weights([w + 0.01 for w in layer.get_weights()])
    full.save_weights(above)
    below = tmp_path / "below.weights.h5"   # the frame vector itself moved
    layer = keras.Model(full.input, full.output["pitch_classes"]).layers[-2]
    layer.set_weights([w + 0.01 for w in layer.get_weights()])
    full.save_weights(below)
    assert musical.pitch_class_head_unchanged(entry, entry["config"], n_tags, shipped, above)
    assert not musical.pitch_class_head_unchanged(entry, entry["config"], n_tags, shipped, below)
    (tmp_path / "junk.weights.h5").write_bytes(b"not an HDF5 file")  # what does not load is not known unchanged
    assert not musical.pitch_class_head_unchanged(entry, entry["config"], n_tags, tmp_path / "junk.weights.h5", above)

    for weights, kept in ((above, True), (below, False)):
        root = tmp_path / f"pkg-{kept}"
        _package_copy(root, with_weights=True)
        run = tmp_path / f"run-{kept}"
        run.mkdir()
        shutil.copy(weights, run / "last.weights.h5")
        (run / "state.json").write_text(json.dumps({
            "epoch": 2, "best_epoch": -1, "best_source": "init", "minutes": 1.0, "model_config": entry["config"],
            "vocabulary": entry["head"]["labels"], "history": [{}, {"key_mirex": 0.7}]}))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert musical.main(["ship", "--run", str(run), "--root", str(root), "--weights", "last"]) == 0
        e = json.loads((root / "weights_manifest.json").read_text())["models"]["tcn-music"]
        assert ("pitch_classes" in e["training"]) is kept
        assert ("run fit-pitch-classes" in caplog.text) is not kept
        if kept:
            assert e["training"]["pitch_classes"] == entry["training"]["pitch_classes"]


def test_fits_append_their_step_to_the_recorded_command_once():
    from training.musical import append_command

    entry = {"training": {"command": "python -m training.musical train --cache C && python -m training.musical ship --run R"}}
    step = "python -m training.musical fit-key --corpus CORPUS --weights shipped --out manifest"
    append_command(entry, step)
    append_command(entry, step.replace("CORPUS", "OTHER"))  # a refit: the recipe already says it
    assert entry["training"]["command"] == ("python -m training.musical train --cache C && python -m training.musical "
                                            f"ship --run R && {step}")
    fresh: dict = {}
    append_command(fresh, step)
    assert fresh == {"training": {"command": step}}


def _synthetic_bar_candidates(n=300, seed=0):
    """Clips of 5-9 candidate rows (71 columns, as bar_candidates gives for 6 beat features); the bar is
    the candidate whose column 2 (downbeat evidence) plus half its column 5 is largest, seen through noise."""
    rng = np.random.default_rng(seed)
    xs, targets, rows = [], [], []
    for i in range(n):
        x = rng.normal(size=(int(rng.integers(5, 10)), 71))
        signal = x[:, 2] + 0.5 * x[:, 5]
        best = int(np.argmax(signal + 0.3 * rng.normal(size=len(x))))
        xs.append(x)
        targets.append(best)
        f = np.where(np.arange(len(x)) == best, 1.0, 0.2)
        rows.append({"x": x, "labels": [(4, j % 4) for j in range(len(x))], "f": f, "base_f": 0.2 + 0.8 * (i % 2),
                     "piece": f"p{i}", "meter": "4/4", "base_meter": "3/4", "meter_mean": np.eye(12)[3]})
    return xs, np.array(targets), rows


def test_fit_downbeat_model_learns_which_candidate_is_the_bar_and_the_library_reads_it():
    from mirzoo.spec import BEAT_FEATURES, DOWNBEAT_MODEL_FORM, ModelSpec
    from mirzoo.tasks.analyze import bar_candidate_scores
    from mirzoo.zoo.manifest import get_entry
    from training.musical import downbeat_choice_figures, fit_downbeat_model

    xs, targets, rows = _synthetic_bar_candidates()
    fitted = fit_downbeat_model(xs[:200], targets[:200], hidden=8, l2=1e-3, seed=0)
    assert fitted == fit_downbeat_model(xs[:200], targets[:200], hidden=8, l2=1e-3, seed=0)  # deterministic
    held_out = np.mean([np.argmax(bar_candidate_scores(x, fitted)) == t for x, t in zip(xs[200:], targets[200:])])
    # the rule that made the labels (noise-free) reads 0.81 on these clips, chance 1 in 5-9; the fit lands within
    # 10 points of the rule (the L-BFGS fit reads 0.75 on one of our machines, more on another: rounding paths differ)
    oracle = np.mean([np.argmax(x[:, 2] + 0.5 * x[:, 5]) == t for x, t in zip(xs[200:], targets[200:])])
    assert oracle == pytest.approx(0.81) and held_out >= oracle - 0.10
    record = {"form": DOWNBEAT_MODEL_FORM, "features": list(BEAT_FEATURES), "bar_lengths": [2, 3, 4], **fitted}
    spec = ModelSpec.from_entry("tcn-music", dict(get_entry("tcn-music"), downbeat_model=record))
    assert spec.downbeat_model["hidden"] == 8
    from training.corpus_targets import METERS

    figures = downbeat_choice_figures(rows[200:], fitted, list(METERS))
    assert figures["clips"] == 100 and figures["downbeat_f"] == pytest.approx(0.2 + 0.8 * held_out)
    assert figures["downbeat_f_evidence"] == pytest.approx(0.6) and figures["time_signature"] == 1.0
    assert figures["time_signature_evidence"] == 0.0


def _loadable_package_copy(tmp_path, monkeypatch) -> Path:
    """:func:`_package_copy` with the weights under ``tmp_path / "pkg"``, which ``mirzoo.load`` then reads
    (``MIRZOO_MANIFEST``, ``MIRZOO_WEIGHTS_DIR``)."""
    root = tmp_path / "pkg"
    _package_copy(root, with_weights=True)
    monkeypatch.setenv("MIRZOO_MANIFEST", str(root / "mirzoo" / "weights_manifest.json"))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(root / "mirzoo" / "weights"))
    return root


def test_fit_downbeats_writes_a_checked_record_into_the_package_entry(tmp_path, monkeypatch):
    import json

    from training import musical

    root = _loadable_package_copy(tmp_path, monkeypatch)
    _, _, rows = _synthetic_bar_candidates(120, seed=3)
    calls = []

    def fake_inputs(extractor, corpus, split, limit=0):  # the model's pass over the corpus, done elsewhere
        calls.append(split)
        return rows[:90] if split == "train" else rows[90:]

    monkeypatch.setattr(musical, "downbeat_inputs", fake_inputs)
    assert musical.main(["fit-downbeats", "--corpus", "c", "--out", "manifest", "--root", str(root)]) == 0
    assert calls == ["train", "valid"]
    entry = json.loads((root / "mirzoo" / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert json.loads((root / "weights_manifest.json").read_text())["models"]["tcn-music"] == entry
    record = entry["downbeat_model"]
    assert record["weights_sha256"] == entry["weights"]["sha256"]
    assert (record["hidden"], record["l2"]) in musical.DOWNBEAT_GRID and len(record["grid"]) == len(musical.DOWNBEAT_GRID)
    assert record["valid"]["clips"] == 30 and record["train"]["clips"] == 90
    assert "fit-downbeats" in entry["training"]["command"]
    assert mirzoo.load("tcn-music").spec.downbeat_model["form"] == "listwise-mlp-v1"  # the loader accepts it
    # a package copy whose weights are not the ones fitted on: refused before either manifest is written
    before = (root / "mirzoo" / "weights_manifest.json").read_bytes()
    other = json.loads((root / "weights_manifest.json").read_text())
    other["models"]["tcn-music"]["weights"]["sha256"] = "0" * 64
    (root / "weights_manifest.json").write_text(json.dumps(other))
    stale = (root / "weights_manifest.json").read_bytes()
    with pytest.raises(SystemExit, match="weights are not the ones fitted on: nothing written"):
        musical.main(["fit-downbeats", "--corpus", "c", "--out", "manifest", "--root", str(root)])
    assert (root / "mirzoo" / "weights_manifest.json").read_bytes() == before
    assert (root / "weights_manifest.json").read_bytes() == stale
    # too few clips with reference downbeats: refused, nothing written
    monkeypatch.setattr(musical, "downbeat_inputs", lambda *a, **k: rows[:5])
    with pytest.raises(SystemExit, match="split 'train': 5 clips with reference downbeats, need at least 20"):
        musical.main(["fit-downbeats", "--corpus", "c", "--out", "manifest", "--root", str(root)])
    assert (root / "mirzoo" / "weights_manifest.json").read_bytes() == before


# -- fit-bars: the beat-synchronous bar model ------------------------------------------------------------
def test_bar_model_forward_pass_in_numpy_is_the_keras_networks():
    import keras

    from mirzoo.tasks.bar_model import bar_class_probabilities, gru_sequence
    from training.musical import bar_network, bar_network_arrays

    keras.utils.set_random_seed(1)
    net, layers = bar_network(7, 5, 4, dropout=0.2)
    rng = np.random.default_rng(0)
    for cell in (layers["gru"].forward_layer.cell, layers["gru"].backward_layer.cell):
        cell.bias.assign(rng.normal(size=tuple(cell.bias.shape)).astype("float32"))  # Keras starts them at 0
    mean, scale = rng.normal(size=7), rng.uniform(0.5, 2.0, size=7)
    record = bar_network_arrays(layers, mean, scale)
    x = rng.normal(size=(13, 7))
    batch = np.zeros((2, 20, 7), np.float32)  # the clip padded (masked) beside a longer one, as in training
    batch[0, :13] = (x - mean) / scale
    batch[1] = rng.normal(size=(20, 7))
    want = net.predict(batch, verbose=0)
    np.testing.assert_allclose(bar_class_probabilities(x, record), want[0, :13], atol=1e-5)
    np.testing.assert_allclose(bar_class_probabilities(batch[1] * scale + mean, record), want[1], atol=1e-5)
    assert bar_class_probabilities(np.zeros((0, 7)), record).shape == (0, 9)
    # the backward direction is the forward one run on the reversed steps
    cell = layers["gru"].forward_layer.cell
    k, r, b = (np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
    h = rng.normal(size=(6, 5))
    np.testing.assert_allclose(gru_sequence(h, k, r, b, reverse=True), gru_sequence(h[::-1], k, r, b)[::-1])
    with pytest.raises(mirzoo.ParameterError, match=r"bar model features must be \[beats, 7\], got shape \(13, 6\)"):
        bar_class_probabilities(x[:, :6], record)


def _synthetic_bar_rows(n_clips, seed=0):
    """Clips of 24 beats in three or four beats per bar, at a random phase; column 0 of the features marks the
    downbeats, column 1 the bar length (with noise): what fit-bars' network has to learn to read."""
    from mirzoo.tasks.bar_model import BAR_CLASSES
    from training.musical import BAR_SOURCES

    rng = np.random.default_rng(seed)
    meters = mirzoo.load("tcn-music").heads["meter"]
    width = 6 + 12 + 109 + 2 + 12
    assert list(BAR_SOURCES) == ["beat_features", "pitch_classes", "chord", "beats", "meter"]
    rows = []
    for c in range(n_clips):
        b, p = int(rng.choice([3, 4])), int(rng.integers(0, 4)) % 3
        pos = (np.arange(24) - p) % b + 1
        x = np.zeros((24, width), np.float32)
        x[:, 0] = 2.0 * (pos == 1) + rng.normal(scale=0.3, size=24)
        x[:, 1] = (1.0 if b == 3 else -1.0) + rng.normal(scale=0.3, size=24)
        beats = 0.5 * np.arange(24)
        mean = np.full(len(meters), 0.01)
        mean[meters.index("3/4")] = mean[meters.index("4/4")] = 0.4
        rows.append({"x": x, "label": np.array([BAR_CLASSES.index((b, j)) for j in pos]), "beats": beats,
                     "in_grid": np.ones(24, bool), "reference": beats[pos == 1], "base_f": 0.5,
                     "meter": "3/4" if b == 3 else "4/4", "base_meter": "4/4", "meter_mean": mean,
                     "piece": f"p{c // 2}"})
    return rows


def test_fit_bars_writes_a_checked_record_into_the_package_entry(tmp_path, monkeypatch):
    import json

    from training import musical

    root = _loadable_package_copy(tmp_path, monkeypatch)
    rows = _synthetic_bar_rows(160, seed=4)
    calls = []

    def fake_inputs(extractor, corpus, split, sources, every=1, limit=0):  # the model's pass, done elsewhere
        calls.append((split, tuple(sources), every))
        return rows[:120] if split == "train" else rows[120:]

    monkeypatch.setattr(musical, "bar_inputs", fake_inputs)
    base = ["fit-bars", "--corpus", "c", "--out", "manifest", "--root", str(root)]
    args = base + ["--epochs", "60", "--hidden", "8", "--units", "4", "--patience", "60"]
    assert musical.main(args) == 0
    assert calls == [("train", musical.BAR_SOURCES, 3), ("valid", musical.BAR_SOURCES, 1)]
    entry = json.loads((root / "mirzoo" / "weights_manifest.json").read_text())["models"]["tcn-music"]
    assert json.loads((root / "weights_manifest.json").read_text())["models"]["tcn-music"] == entry
    record = entry["bar_model"]
    assert record["weights_sha256"] == entry["weights"]["sha256"] and "fit-bars" in entry["training"]["command"]
    assert record["valid"]["clips"] == 40 and record["settings"] == {"hidden": 8, "units": 4, "dropout": 0.2, "seed": 0}
    assert record["fitted_on"] == "c split train, one clip in 3: 120 clips (python -m training.musical fit-bars)"
    # the features say where the bars are: the record finds them, well above the evidence reading's 0.5
    assert record["valid"]["downbeat_f"] > 0.9 and record["valid"]["time_signature"] > 0.9
    assert record["valid"]["downbeat_f_evidence"] == 0.5
    assert record["valid"]["time_signature_evidence"] == round(float(np.mean([r["meter"] == "4/4" for r in rows[120:]])), 4)
    loaded = mirzoo.load("tcn-music").spec.bar_model  # the loader accepts it
    assert loaded["form"] == "beat-bigru-v1" and loaded["sources"] == list(musical.BAR_SOURCES)
    # a record no better than the evidence reading is not written
    before = (root / "mirzoo" / "weights_manifest.json").read_bytes()
    blind = [dict(r, x=np.zeros_like(r["x"])) for r in rows]
    monkeypatch.setattr(musical, "bar_inputs", lambda e, c, split, *a, **k: blind[:120] if split == "train" else blind[120:])
    assert musical.main(base + ["--epochs", "2", "--hidden", "2", "--units", "2"]) == 0
    assert (root / "mirzoo" / "weights_manifest.json").read_bytes() == before
    # too few clips: refused
    monkeypatch.setattr(musical, "bar_inputs", lambda *a, **k: rows[:5])
    with pytest.raises(SystemExit, match="split 'train': 5 clips with a reference meter, need at least 20"):
        musical.main(args)
