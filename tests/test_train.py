"""training.train end to end on a tiny corpus: train, evaluate, ship into a temporary manifest, load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("music21")

import mirzoo  # noqa: E402
from mirzoo.zoo.manifest import PACKAGE_MANIFEST  # noqa: E402
from training import train as tt  # noqa: E402


@pytest.mark.parametrize("model,tag_weight", [("cnn-tagging", 0.0), ("dense-frame", 0.0), ("dense-frame", 0.5)])
def test_train_evaluate_ship_and_load(model, tag_weight, tiny_corpus, tmp_path, monkeypatch):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "steps_per_epoch": 2, "epochs": 2, "batch_size": 4,
                                  "min_tag_count": 1, "train_seconds": 2.0, "tag_weight": tag_weight}))
    manifest = tmp_path / "manifest.json"
    shutil.copy(PACKAGE_MANIFEST, manifest)
    weights = tmp_path / "weights"
    run = tmp_path / "run"
    argv = ["--model", model, "--config", str(config), "--corpus", str(tiny_corpus), "--heldout", str(tmp_path / "none"),
            "--cache", str(tmp_path / "cache"), "--out", str(run), "--ship", "--manifest", str(manifest),
            "--weights-dir", str(weights)]
    # thread settings of the run are part of how it was made: recorded and put in front of the command
    for var, value in zip(tt.THREAD_VARS, ("1", "1", "2")):
        monkeypatch.setenv(var, value)
    assert tt.main(argv) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["threads"] == dict(zip(tt.THREAD_VARS, ("1", "1", "2")))
    assert report["hardware"] == tt.hardware_text() and "CPU core" in report["hardware"]
    assert len(report["history"]) == 2 and report["best_epoch"] in (0, 1)
    entry = json.loads(manifest.read_text())["models"][model]
    assert entry["pretrained"] is True and entry["weights"]["kind"] == "file"
    assert (weights / entry["weights"]["file"]).stat().st_size == entry["weights"]["size"]
    assert entry["training"]["command"].startswith(
        f"TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=2 python -m training.train --model {model} --config ")
    if model == "cnn-tagging":
        assert entry["head"]["labels"] == report["vocabulary"]
        assert entry["layers"]["tags"] == len(report["vocabulary"])
    elif tag_weight:
        # multi-task dense-frame: pitch classes stay the primary head, tags are an extra head
        assert entry["head"]["output"] == "pitch_classes" and len(entry["head"]["labels"]) == 12
        assert entry["aux_heads"] == [{"output": "tags", "labels": report["tag_vocabulary"], "activation": "sigmoid"}]
        assert entry["layers"]["tags"] == len(report["tag_vocabulary"]) == entry["config"]["n_tags"]
        assert {"frame_f1", "tags_roc_auc_macro"} <= set(report["history"][0])
    else:
        assert "aux_heads" not in entry and "tags" not in entry["layers"] and "n_tags" not in entry["config"]
    # the shipped weights load through the normal path, verified by sha256
    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights))
    m = mirzoo.load(model)
    assert m.pretrained
    probs = m.predict(mirzoo.example_audio())
    assert probs.shape == (len(m.labels),) and np.all((probs >= 0) & (probs <= 1))
    if tag_weight:
        assert list(m.heads) == ["pitch_classes", "tags"]
        tags = m.tag(mirzoo.example_audio(), head="tags", top_k=None)
        assert [t for t, _ in tags] != [] and {t for t, _ in tags} == set(report["tag_vocabulary"])
        frames = m.predict(mirzoo.example_audio(), head="tags", pool=None)
        assert frames.shape[1] == len(report["tag_vocabulary"])
        np.testing.assert_allclose(frames.mean(axis=0), [p for _, p in sorted(tags, key=lambda tp: report["tag_vocabulary"].index(tp[0]))], rtol=1e-5)
        with pytest.raises(mirzoo.ParameterError, match="head='chords' is not one of"):
            m.tag(mirzoo.example_audio(), head="chords")
    # shipping the same run again without training writes a consistent record
    assert tt.main(argv[:4] + ["--corpus", str(tiny_corpus), "--ship", "--from-run", str(run), "--manifest",
                               str(manifest), "--weights-dir", str(weights)]) == 0
    again = json.loads(manifest.read_text())["models"][model]["weights"]
    from mirzoo.fileio import file_sha256

    assert again["sha256"] == file_sha256(weights / again["file"])
    assert tt.multi_hot([{"tags": "a;b"}, {"tags": "c"}], ["a", "c"]).tolist() == [[1, 0], [0, 1]]


def test_extra_corpora_add_train_and_valid_clips_and_refuse_held_out_soundfonts(tiny_corpus, tmp_path):
    sr = 16000
    rows = {s: tt.read_metadata(tiny_corpus, s) for s in ("train", "valid", "test")}
    audio = {s: tt.audio_cache(tiny_corpus, rows[s], tmp_path / "cache" / "c", s, sr) for s in rows if rows[s]}
    before = {s: (len(rows[s]), audio[s][1][-1]) for s in audio}
    other = tmp_path / "other"
    shutil.copytree(tiny_corpus, other)
    hours = tt.add_extra_corpora(rows, audio, [other], tmp_path / "cache", sr)
    for s in ("train", "valid"):
        if s not in before:
            continue
        n, samples = before[s]
        assert len(rows[s]) == 2 * n and audio[s][1][-1] == 2 * samples and len(audio[s][1]) == 2 * n + 1
        assert audio[s][0].shape[0] == audio[s][1][-1]
        # the second copy of each clip sits at its offset, sample for sample
        k = n  # first clip of the extra corpus
        first = np.asarray(audio[s][0][audio[s][1][k] : audio[s][1][k + 1]])
        np.testing.assert_array_equal(first, np.asarray(audio[s][0][audio[s][1][0] : audio[s][1][1]]))
        assert rows[s][k]["_root"] == str(other)
    assert rows["test"] == tt.read_metadata(tiny_corpus, "test")  # the test split is the main corpus's only
    assert set(hours) <= {"other/train", "other/valid"} and hours
    # chroma targets of extra rows are read from their own folder
    assert len(tt.load_chroma(tiny_corpus, rows["train"])) == len(rows["train"])

    meta = (other / "metadata.csv").read_text().replace(",FluidR3,", ",TimGM6mb,")
    assert ",TimGM6mb," in meta
    (other / "metadata.csv").write_text(meta)
    fresh = {s: tt.read_metadata(tiny_corpus, s) for s in ("train", "valid")}
    fresh_audio = {s: tt.audio_cache(tiny_corpus, fresh[s], tmp_path / "cache" / "c", s, sr) for s in fresh if fresh[s]}
    with pytest.raises(SystemExit, match="held-out soundfonts never go into training"):
        tt.add_extra_corpora(fresh, fresh_audio, [other], tmp_path / "cache", sr)


def test_lr_decay_config_is_checked():
    assert tt.lr_decay_config({}) is None
    assert tt.lr_decay_config({"lr_decay": {"patience": 3}}) == {"factor": 0.3, "patience": 3, "min_learning_rate": 1e-5}
    for bad, message in [({"factor": 1.5}, r"lr_decay.factor=1.5: expected a number in \(0, 1\)"),
                         ({"patience": 0}, "lr_decay.patience=0: expected >= 1"),
                         ({"min_learning_rate": -1}, "lr_decay.min_learning_rate=-1.0: expected >= 0"),
                         ({"factr": 0.5}, r"unknown keys \['factr'\]")]:
        with pytest.raises(SystemExit, match=message):
            tt.lr_decay_config({"lr_decay": bad})


def test_eq_curve_interpolates_in_log_frequency():
    gains = np.array([[0.0, 6.0, -6.0, 0.0, 3.0, -3.0], [2.0] * 6])
    n_bins = 4001
    curve = tt.eq_curve_db(n_bins, gains)
    points = np.geomspace(tt.EQ_LOWEST, 1.0, 6)
    f = np.arange(n_bins) / (n_bins - 1)
    reference = np.interp(np.log(np.maximum(f, tt.EQ_LOWEST)), np.log(points), gains[0])
    np.testing.assert_allclose(curve[0], reference, atol=1e-9)
    assert curve[0, 0] == 0.0 and curve[0, -1] == -3.0  # flat below the first point, exact at Nyquist
    np.testing.assert_allclose(curve[1], 2.0)


def test_random_eq_filters_sines_by_the_curve():
    n = 8000
    t = np.arange(n)
    bins = [40, 400, 2000, 3600]  # exact rfft bins, so each sine stays a single line
    x = np.stack([np.sin(2 * np.pi * k * t / n) for k in bins]).astype(np.float64) * 0.1
    cfg = {"eq_prob": 1.0, "eq_db": 12.0, "eq_points": 5}
    y = tt.random_eq(x.copy(), np.random.default_rng(4), cfg)
    rng = np.random.default_rng(4)
    rng.random(len(bins))  # the on/off draw
    gains = rng.uniform(-12, 12, (len(bins), 5))
    want = tt.eq_curve_db(n // 2 + 1, gains)[np.arange(len(bins)), bins]
    got = 20 * np.log10(np.abs(y).max(axis=1) / np.abs(x).max(axis=1))
    np.testing.assert_allclose(got, want, atol=0.05)
    assert np.ptp(got) > 1  # the rows got different curves
    # eq_prob=0 (the default) draws nothing: the rest of the augmentation is unchanged
    base = {"gain_db": 6.0, "noise_prob": 0.5, "snr_db": [10.0, 40.0], "polarity": True}
    a = tt.augment(x.copy(), np.random.default_rng(1), base)
    b = tt.augment(x.copy(), np.random.default_rng(1), dict(base, eq_prob=0.0))
    np.testing.assert_array_equal(a, b)
    c = tt.augment(x.copy(), np.random.default_rng(1), dict(base, eq_prob=1.0))
    assert c.shape == a.shape and c.dtype == np.float32 and not np.allclose(a, c)


def test_augment_config_is_checked():
    assert tt.augment_config({}) == {}
    good = {"augment": {"gain_db": 6.0, "eq_prob": 0.8, "eq_db": 9.0, "eq_points": 6}}
    assert tt.augment_config(good) == good["augment"]
    for bad, message in [({"eq_prob": 1.5}, r"augment.eq_prob=1.5: expected a number in \[0, 1\]"),
                         ({"eq_points": 1}, "augment.eq_points=1: expected an integer >= 2"),
                         ({"eq_points": 2.5}, "augment.eq_points=2.5"),
                         ({"gain_db": "6"}, "augment.gain_db='6'"),
                         ({"eq_prob": True}, "augment.eq_prob=True"),
                         ({"snr_db": [40, 10]}, r"augment.snr_db=\[40, 10\]: expected \[low, high\]"),
                         ({"eq_gain": 3}, r"unknown keys \['eq_gain'\]")]:
        with pytest.raises(SystemExit, match=message):
            tt.augment_config({"augment": bad})


def test_learning_rate_decays_on_a_plateau(tiny_corpus, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "steps_per_epoch": 1, "epochs": 6, "patience": 10, "batch_size": 4,
                                  "min_tag_count": 1, "learning_rate": 1e-3,
                                  "lr_decay": {"factor": 0.5, "patience": 1, "min_learning_rate": 3e-4}}))
    run = tmp_path / "run"
    assert tt.main(["--model", "cnn-tagging", "--config", str(config), "--corpus", str(tiny_corpus), "--heldout",
                    str(tmp_path / "none"), "--cache", str(tmp_path / "cache"), "--out", str(run)]) == 0
    history = json.loads((run / "report.json").read_text())["history"]
    assert len(history) == 6
    # replay the rule on the recorded scores: the rate halves after an epoch that neither beat the
    # best score nor came less than `patience` epochs after the best epoch or the last decay
    lr, best, best_epoch, last_decay = 1e-3, -np.inf, -1, -1
    for h in history:
        assert h["learning_rate"] == pytest.approx(lr, rel=1e-6)
        if h["roc_auc_macro"] > best:
            best, best_epoch = h["roc_auc_macro"], h["epoch"]
        elif h["epoch"] - max(best_epoch, last_decay) >= 1 and max(lr * 0.5, 3e-4) < lr:
            lr, last_decay = max(lr * 0.5, 3e-4), h["epoch"]
    rates = [h["learning_rate"] for h in history]
    assert rates[0] == pytest.approx(1e-3) and min(rates) < 1e-3, "the tiny run should hit a plateau"
    assert min(rates) >= 3e-4 * (1 - 1e-6)


def test_vocabulary_counts_clips_of_the_main_corpus_only():
    main = [{"tags": "a;b"}, {"tags": "a"}]
    extra = [dict(r, _root="/other") for r in main] * 3
    assert tt.choose_vocabulary(main + extra, 2, []) == ["a"]
    assert tt.choose_vocabulary(main + extra, 1, ["b"]) == ["a"]
    assert tt.choose_vocabulary(main + extra, 1, []) == ["a", "b"]


def test_save_weights_atomic_never_leaves_a_half_written_checkpoint(tmp_path):
    import keras

    from training.train import save_weights_atomic

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    target = tmp_path / "last.weights.h5"
    save_weights_atomic(model, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.weights.h5"]  # no temporary left beside it
    before = target.read_bytes()
    clone = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    clone.load_weights(target)
    for a, b in zip(model.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)

    class Interrupted(Exception):
        pass

    def broken(path):  # a write that dies half-way: some bytes on disk, then the error
        with open(path, "wb") as f:
            f.write(b"half")
        raise Interrupted

    model.layers[0].set_weights([w + 1 for w in model.layers[0].get_weights()])
    model.save_weights = broken
    with pytest.raises(Interrupted):
        save_weights_atomic(model, target)
    assert target.read_bytes() == before  # the last good checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.weights.h5"]  # and the broken temporary is gone
