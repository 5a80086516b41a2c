"""training/distill.py: patch alignment with musicnn, teacher metrics, a smoke run, resume and ship.

Fixtures are tiny: a few generated tone clips laid out as ``training.real`` writes them, a fake teacher
cache in the npz layout of ``training/musicnn_worker.py`` (keys ``<model>/<output>``, one row per 3-s
patch) and a fake corpus with the student's own tags.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from mirzoo.fileio import write_json_atomic
from mirzoo.zoo.manifest import PACKAGE_MANIFEST, get_spec
from training import distill as td
from training import teacher as tt

SR = 16000
N_TAGS = 50
LABELS = [f"teacher-tag-{j:02d}" for j in range(N_TAGS)]


# -- alignment -----------------------------------------------------------------------------------


def test_patch_alignment_by_hand():
    # musicnn: 3 s -> floor((48000 - 256) / 256) + 1 = 187 frames; 10 s at hop 256 -> 1 + 625 = 626 frames;
    # patches start at frames 0, 187, 374 (374 + 187 = 561 <= 626; 561 + 187 > 626) -> samples 0, 47872, 95744
    assert td.MUSICNN_PATCH_FRAMES == 187 and td.MUSICNN_PATCH_HOP == 47872
    assert td.teacher_patch_count(160000) == 3
    assert td.teacher_patch_starts(160000).tolist() == [0, 47872, 95744]
    # one patch needs 187 frames: 1 + n // 256 >= 187 <=> n >= 186 * 256 = 47616 samples
    assert td.teacher_patch_count(47615) == 0 and td.teacher_patch_count(47616) == 1
    # a second patch needs 374 frames: n >= 373 * 256 = 95488
    assert td.teacher_patch_count(95487) == 1 and td.teacher_patch_count(95488) == 2
    # musicnn's loop, written out: range(0, frames - n_frames + 1, n_frames) over librosa's center=True frames
    for n in [0, 1000, 47615, 47616, 48000, 95487, 95488, 160000, 160255, 480000]:
        frames = 1 + n // 256
        assert td.teacher_patch_count(n) == len(range(0, frames - 187 + 1, 187)), n
    with pytest.raises(td.ParameterError, match="n_samples=-1"):
        td.teacher_patch_count(-1)


def test_aligned_patches_share_the_teacher_frame_centres():
    """The student's front-end on an aligned patch gives the frames of the whole clip at musicnn's
    patch frames (187 k + i), away from the patch edges where the padding differs."""
    import keras

    from mirzoo.nn.frontend import build_frontend

    spec = get_spec("cnn-tagging")
    y = np.random.default_rng(0).standard_normal(160000).astype(np.float32) * 0.1
    patches = td.aligned_patches(y, spec.patch_samples)
    assert patches.shape == (3, 48000)
    np.testing.assert_array_equal(patches[1], y[47872 : 47872 + 48000])
    fe = build_frontend(dict(spec.frontend))
    whole = np.asarray(keras.ops.convert_to_numpy(fe(y[None])))[0]
    parts = np.asarray(keras.ops.convert_to_numpy(fe(patches)))
    assert parts.shape[1] == 188  # 1 + 48000 // 256: the teacher's 187 frames and one more
    for k in range(3):
        np.testing.assert_allclose(parts[k, 2:185], whole[187 * k + 2 : 187 * k + 185], atol=1e-3)
    with pytest.raises(td.ParameterError, match=r"shape \(2, 10\)"):
        td.aligned_patches(np.zeros((2, 10)), 48000)


def test_cnn_extra_heads_cannot_shadow_an_output():
    from mirzoo.errors import ManifestError
    from mirzoo.nn import get_family

    config = dict(get_spec("cnn-tagging").config, extra_heads={"embedding": 3})
    with pytest.raises(ManifestError, match="extra_heads names 'embedding'"):
        get_family("cnn")(config)


def test_a_head_name_that_is_a_layer_is_refused_unless_it_is_the_same_teacher_head():
    spec = get_spec("cnn-tagging")
    with pytest.raises(td.DistillError, match="head='embedding' is already a layer of 'cnn-tagging'"):
        td.build_student("cnn-tagging", "embedding", 50, 200, "cosine", 0)
    own = dict(spec.config.get("extra_heads") or {})
    if own:  # the shipped student carries a teacher head: a new run goes on training it, with its width only
        name, width = next(iter(own.items()))
        with pytest.raises(td.DistillError, match=f"head='{name}' is already a layer .*not a teacher head of 7"):
            td.build_student("cnn-tagging", name, 7, 200, "cosine", 0)
        full, _, config, _ = td.build_student("cnn-tagging", name, width, 200, "cosine", 0)
        assert config["extra_heads"] == own
        from mirzoo.zoo.registry import build_from_spec
        np.testing.assert_array_equal(full.get_layer(name).get_weights()[0],
                                      build_from_spec(spec).get_layer(name).get_weights()[0])


def test_soft_roc_auc_matches_hand_values():
    from sklearn.metrics import roc_auc_score

    # 0/1 labels: the ordinary ROC-AUC
    y = np.array([0, 1, 1, 0, 1.0])
    s = np.array([0.1, 0.8, 0.3, 0.4, 0.9])
    assert td.soft_roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    # soft labels by hand: p = [0.8, 0.2], s = [0.9, 0.1]; pairs (i pos, j neg) weight p_i (1 - p_j):
    # (0,0) 0.8*0.2 tie, (0,1) 0.8*0.8 right, (1,0) 0.2*0.2 wrong, (1,1) 0.2*0.8 tie
    num = 0.8 * 0.8 + 0.5 * (0.8 * 0.2 + 0.2 * 0.8)
    den = (0.8 + 0.2) * (0.2 + 0.8)
    assert td.soft_roc_auc(np.array([0.8, 0.2]), np.array([0.9, 0.1])) == pytest.approx(num / den)
    assert np.isnan(td.soft_roc_auc(np.zeros(4), np.arange(4.0)))
    m = td.teacher_agreement(np.array([[0.9, 0.0], [0.1, 0.0]]), np.array([[0.9, 0.5], [0.1, 0.5]]), ["a", "b"])
    assert m["n_tags_hard"] == 1 and m["auc_hard_macro"] == 1.0 and m["n_tags_soft"] == 1
    t = np.array([0.9, 0.1])
    entropy = -np.mean(t * np.log(t) + (1 - t) * np.log(1 - t)) / 2  # tag b: teacher 0 has no entropy
    assert m["kl"] == pytest.approx(m["bce"] - entropy, abs=1e-5)


# -- fixtures ------------------------------------------------------------------------------------


def tone(freq: float, seconds: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def teacher_outputs(high: bool, n_patches: int) -> dict:
    """Fake musicnn outputs: tag 0 on for high tones, tag 1 for low ones, the rest near 0."""
    tags = np.full((n_patches, N_TAGS), 0.02, np.float32)
    tags[:, 0] = 0.9 if high else 0.1
    tags[:, 1] = 0.1 if high else 0.9
    feats = np.zeros((n_patches, 200), np.float32)
    feats[:, :100] = 1.0 if high else 0.0
    feats[:, 100:] = 0.0 if high else 1.0
    out = {}
    for model in tt.MODELS:
        out[f"{model}/tags"] = tags
        out[f"{model}/penultimate"] = feats
        out[f"{model}/mean_pool"] = np.zeros((n_patches, 753), np.float32)
        out[f"{model}/max_pool"] = np.zeros((n_patches, 753), np.float32)
    return out


@pytest.fixture(scope="module")
def distill_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    real, cache, corpus = root / "real", root / "teacher", root / "corpus"
    fields = ["path", "split", "package", "version", "source", "track", "group", "offset_s", "duration_s", "sr",
              "licence", "licence_files", "licence_ambiguous", "commercial", "source_sha256", "sha256"]
    rows = []
    clips = [("train", 1800.0, True), ("train", 220.0, False), ("train", 2500.0, True), ("train", 300.0, False),
             ("valid", 2000.0, True), ("valid", 250.0, False), ("test", 900.0, True), ("valid", 2200.0, True),
             ("valid", 270.0, False)]
    for i, (split, freq, high) in enumerate(clips):
        rel = f"audio/{split}/pkg-data/track{i}-00000.flac"
        (real / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(real / rel, tone(freq, 10.0, i), SR, subtype="PCM_16")
        sha = tt.file_sha256(real / rel)
        if split != "test" and i < 7:  # the test clip has no teacher targets: it must be skipped, and so are
            # the last two valid clips (read only by runs without a teacher)
            target = tt.cache_file(cache, sha)
            target.parent.mkdir(parents=True, exist_ok=True)
            np.savez(target, **teacher_outputs(high, 3))
        # two packages, high and low tones: the package probe can tell them apart by pitch
        rows.append({"path": rel, "split": split, "package": "pkg-hi" if high else "pkg-lo", "version": "1.0-1",
                     "source": f"/x/{i}.ogg",
                     "track": f"track{i}", "group": f"track{i}", "offset_s": "0", "duration_s": "10", "sr": "16000",
                     "licence": "GPL-2+" if i % 2 else "CC-BY-SA-3.0", "licence_files": "*",
                     "licence_ambiguous": "0", "commercial": "yes", "source_sha256": "0" * 64, "sha256": sha})
    with open(real / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    write_json_atomic(cache / tt.TEACHER / "meta.json",
                      {"teacher": tt.TEACHER, "labels": {m: LABELS for m in tt.MODELS}, "licence": tt.LICENCE})
    vocab = list(get_spec("cnn-tagging").head.labels)
    crow = []
    for i, (split, tags) in enumerate([("train", "instrument:piano;mode:major"), ("train", "instrument:organ"),
                                       ("train", "instrument:piano;tempo:fast"), ("valid", "instrument:piano"),
                                       ("valid", "instrument:organ")]):
        assert set(tags.split(";")) <= set(vocab)
        rel = f"audio/{split}/c{i}.flac"
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(corpus / rel, tone(440.0 * (i + 1), 4.0, 100 + i), SR, subtype="PCM_16")
        crow.append({"clip_id": f"c{i}", "path": rel, "split": split, "tags": tags, "duration": "4.0",
                     "soundfont": "FluidR3"})
    with open(corpus / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(crow[0]))
        w.writeheader()
        w.writerows(crow)
    return root


def write_config(path, root, **over):
    cfg = {"seed": 3, "student": "cnn-tagging", "teacher_model": "MTT_musicnn", "head": "mtt_tags",
           "real": str(root / "real"), "teacher_cache": str(root / "teacher"), "corpus": str(root / "corpus"),
           "cache": str(root / "audio-cache"), "batch_size": 8, "real_fraction": 0.75, "steps_per_epoch": 6,
           "epochs": 2, "patience": 5, "learning_rate": 0.003, "feature_loss": "cosine",
           "loss_weights": {"distill": 1.0, "features": 0.5, "corpus": 1.0},
           "augment": {"gain_db": 0.0, "noise_prob": 0.0, "polarity": False},
           "min_real_valid_clips": 2, "max_minutes": 10, "max_corpus_auc_drop": 1.0}
    cfg.update(over)
    path.write_text(json.dumps(cfg))
    return path


# -- runs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(distill_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = write_config(out.parent / "cfg.json", distill_data)
    assert td.main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    return out, cfg


def test_smoke_run_learns_the_teacher_and_records_its_data(smoke_run):
    out, _ = smoke_run
    state = json.loads((out / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [-1, 0, 1] and state["epoch"] == 2
    before, after = state["history"][0]["real_valid"], state["history"][-1]["real_valid"]
    # 2 valid clips x 3 aligned patches, tags 0 and 1 evaluated (the rest are constant: no soft/hard classes)
    assert before["n_patches"] == 6 and after["n_patches"] == 6
    # the student learns the teacher's ordering of the patches (its head may start from an earlier
    # distillation, whose BCE on these fake targets is already low: the ordering is what is learnt)
    assert after["auc_hard_macro"] >= before["auc_hard_macro"] + 0.3, (before, after)
    # clip level (means over each clip's 3 patches): 2 clips, one high and one low tone -> tags 0 and 1
    # are evaluated hard (teacher 0.9 vs 0.1) and the student orders the two clips like the teacher
    assert after["clip_auc_hard_macro"] == 1.0
    assert {"tags_loss", "mtt_tags_loss", "features_loss"} <= set(state["history"][1]["loss"])
    assert state["history"][0]["corpus_valid"]["n_clips"] == 2
    assert state["labels"] == LABELS and state["model_config"]["extra_heads"] == {"mtt_tags": 50}
    real = state["data"]["real"]
    # 4 train clips (the test clip without teacher targets is not read), 10 s each
    assert real["clips_train"] == 4 and real["hours_train"] == pytest.approx(40 / 3600, abs=1e-3)
    assert real["clips_valid"] == 2 and real["commercial_use"] == "yes"
    assert set(real["licences_hours"]) == {"GPL-2+", "CC-BY-SA-3.0"}
    assert state["data"]["teacher"]["licence"] == "ISC" and "CPU core" in state["hardware"]
    assert (out / "best.weights.h5").exists() and (out / "last.optimizer.npz").exists()


@pytest.mark.slow  # training runs of a minute on 2 cores: CI's second step, `pytest -m slow`
def test_resume_continues_from_the_saved_epoch_exactly(smoke_run, distill_data, tmp_path):
    """One epoch, then --resume up to two: the same history and weights as the uninterrupted smoke run
    (the optimizer state and dropout random state are checkpointed; each epoch has its own generator)."""
    import h5py

    out, cfg = smoke_run
    run = tmp_path / "r"
    one = write_config(tmp_path / "one.json", distill_data, epochs=1)
    assert td.main(["train", "--config", str(one), "--out", str(run)]) == 0
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert td.main(["train", "--config", str(cfg), "--out", str(run), "--resume"]) == 0
    state, whole = json.loads((run / "state.json").read_text()), json.loads((out / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [-1, 0, 1] and state["epoch"] == 2 and state["steps"] == 12
    for a, b in zip(state["history"], whole["history"]):
        assert a.get("loss") == b.get("loss") and a["real_valid"] == b["real_valid"], a["epoch"]

    def arrays(path):
        with h5py.File(path, "r") as f:
            found = {}
            f.visititems(lambda k, v: found.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
            return found

    a, b = arrays(run / "last.weights.h5"), arrays(out / "last.weights.h5")
    assert a.keys() == b.keys() and len(a) > 30
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_ship_into_a_temporary_manifest_loads_with_the_teacher_head(smoke_run, tmp_path, monkeypatch):
    import mirzoo
    from mirzoo.spec import ModelSpec

    out, _ = smoke_run
    manifest = tmp_path / "manifest.json"
    manifest.write_text(PACKAGE_MANIFEST.read_text())
    weights = tmp_path / "weights"
    assert td.main(["ship", "--run", str(out), "--name", "cnn-tagging-distilled", "--manifest", str(manifest),
                    "--weights-dir", str(weights)]) == 0
    data = json.loads(manifest.read_text())
    entry = data["models"]["cnn-tagging-distilled"]
    spec = ModelSpec.from_entry("cnn-tagging-distilled", entry)
    assert spec.heads["mtt_tags"] == LABELS and spec.head.output == "tags"
    assert data["models"]["cnn-tagging"] == json.loads(PACKAGE_MANIFEST.read_text())["models"]["cnn-tagging"]
    assert "ISC" in entry["training"]["notes"]
    previous = json.loads(PACKAGE_MANIFEST.read_text())["models"]["cnn-tagging"]["training"]
    assert entry["training"]["started_from"]["train_minutes"] == previous["train_minutes"]
    assert entry["training"]["data"][0].startswith("initial weights (cnn-tagging as shipped before): ")
    assert entry["training"]["licences"]["commercial_use_of_recordings"] == "yes"
    assert entry["metrics"]["distill_valid_real"]["n_patches"] == 6
    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights))
    m = mirzoo.load("cnn-tagging-distilled")
    y = tone(2000.0, 6.0, 0)
    tags = m.tag(y, sr=SR, head="mtt_tags", top_k=None)
    assert {t for t, _ in tags} == set(LABELS)
    assert len(m.tag(y, sr=SR, top_k=None)) == len(spec.labels)  # the corpus head is still the primary one
    with pytest.raises(td.DistillError, match="holds no best student"):
        td.ship(type("A", (), {"run": str(tmp_path), "name": None, "manifest": [str(manifest)],
                               "weights_dir": str(weights)})())


def layer_drift(run, inputs) -> dict:
    """1 - cosine between each extract() layer of the run's best student and of the pretrained
    cnn-tagging, per layer, averaged over ``inputs`` (3-s patches)."""
    import keras

    from mirzoo.nn import get_family
    from mirzoo.zoo.registry import build_from_spec

    spec = get_spec("cnn-tagging")
    state = json.loads((run / "state.json").read_text())
    student = get_family(spec.family)(state["model_config"], name="cnn_tagging")
    student.load_weights(run / "best.weights.h5")
    base = build_from_spec(spec)
    names = [n for n in spec.layers if n != "tags"]
    a = keras.Model(student.input, [student.get_layer(n).output for n in names]).predict_on_batch(inputs)
    b = keras.Model(base.input, [base.get_layer(n).output for n in names]).predict_on_batch(inputs)
    out = {}
    for n, u, v in zip(names, a, b):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-12)
        out[n] = float(np.mean(1 - cos))
    return out


@pytest.mark.slow  # an anchored distillation run (20 s): CI's second step
def test_anchor_holds_the_probed_layers_near_the_pretrained_student(smoke_run, distill_data, tmp_path):
    """The same run as the smoke run plus the anchor objective (every row, a large weight): its layers
    stay nearer the frozen pretrained student's than the plain run's, the loss is logged per layer,
    and ship names the objective."""
    out, _ = smoke_run
    run = tmp_path / "anchored"
    cfg = write_config(tmp_path / "a.json", distill_data,
                       loss_weights={"distill": 1.0, "features": 0.5, "corpus": 1.0, "anchor": 50.0},
                       anchor={"rows": "all"}, freeze_batchnorm=True)
    assert td.main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    state = json.loads((run / "state.json").read_text())
    names = [n for n in get_spec("cnn-tagging").layers if n != "tags"]
    assert {f"anchor_{n}_loss" for n in names} <= set(state["history"][1]["loss"])
    assert state["objectives"]["anchor"] == 50.0
    x = np.stack([tone(f, 3.0, 7)[:48000] for f in (220.0, 660.0, 1500.0)]).astype(np.float32)
    plain, anchored = layer_drift(out, x), layer_drift(run, x)
    assert sum(anchored.values()) < 0.5 * sum(plain.values()), (plain, anchored)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(PACKAGE_MANIFEST.read_text())
    assert td.main(["ship", "--run", str(run), "--name", "cnn-tagging-anchored", "--manifest", str(manifest),
                    "--weights-dir", str(tmp_path / "w")]) == 0
    notes = json.loads(manifest.read_text())["models"]["cnn-tagging-anchored"]["training"]["notes"]
    assert "frozen copy of the pretrained cnn-tagging" in notes and "embedding" in notes
    assert "inference mode with its pretrained statistics" in notes


def test_frozen_batchnorm_keeps_its_pretrained_statistics(distill_data, tmp_path):
    import keras

    from mirzoo.nn import get_family
    from mirzoo.zoo.registry import build_from_spec

    run = tmp_path / "bn"
    cfg = write_config(tmp_path / "bn.json", distill_data, epochs=1, freeze_batchnorm=True)
    assert td.main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    spec = get_spec("cnn-tagging")
    state = json.loads((run / "state.json").read_text())
    student = get_family(spec.family)(state["model_config"], name="cnn_tagging")
    student.load_weights(run / "best.weights.h5")
    base = build_from_spec(spec)
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) >= 5
    for layer in bns:
        for a, b in zip(layer.get_weights(), student.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    conv = student.get_layer("block1_body_conv").get_weights()[0]
    assert not np.array_equal(conv, base.get_layer("block1_body_conv").get_weights()[0])  # the rest trains
    with pytest.raises(td.DistillError, match="freeze_batchnorm='yes' must be true or false"):
        td.load_config(write_config(tmp_path / "c.json", distill_data, freeze_batchnorm="yes"))


@pytest.mark.slow  # a CRNN distillation run (25 s): CI's second step
def test_crnn_student_distills_ships_and_tags_with_the_teacher_head(distill_data, tmp_path, monkeypatch):
    """crnn-tagging as the student (the crnn family builds ``extra_heads`` too)."""
    import mirzoo
    from mirzoo.nn import get_family

    config = dict(get_spec("crnn-tagging").config, extra_heads={"mtt_tags": 5})
    net = get_family("crnn")(config, name="crnn")
    assert net.output["mtt_tags"].shape[-1] == 5 and "tags" in net.output
    out = tmp_path / "crnn"
    cfg = write_config(tmp_path / "crnn.json", distill_data, student="crnn-tagging", epochs=1)
    assert td.main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["student"] == "crnn-tagging" and state["model_config"]["gru_units"]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(PACKAGE_MANIFEST.read_text())
    weights = tmp_path / "weights"
    assert td.main(["ship", "--run", str(out), "--name", "crnn-tagging-distilled", "--manifest", str(manifest),
                    "--weights-dir", str(weights)]) == 0
    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights))
    m = mirzoo.load("crnn-tagging-distilled")
    tags = m.tag(tone(500.0, 6.0, 2), sr=SR, head="mtt_tags", top_k=None)
    assert {t for t, _ in tags} == set(LABELS)
    e = m.extract(tone(500.0, 6.0, 2), sr=SR)
    assert e.embeddings.shape[-1] == get_spec("crnn-tagging").embedding_dim


def test_model_selection_keeps_the_corpus_auc():
    before = {"corpus_valid": {"roc_auc_macro": 0.90}}
    assert td.corpus_auc_kept({"corpus_valid": {"roc_auc_macro": 0.8905}}, before, {})
    assert not td.corpus_auc_kept({"corpus_valid": {"roc_auc_macro": 0.8895}}, before, {})
    assert td.corpus_auc_kept({"corpus_valid": {"roc_auc_macro": 0.85}}, before, {"max_corpus_auc_drop": 0.06})
    m = {"real_valid": {"auc_soft_macro": 0.8}, "corpus_valid": {"roc_auc_macro": 0.9}}
    assert td.selection_score(m, {}) == pytest.approx(0.85)
    assert td.selection_score(m, {"selection": {"real": 1.0, "corpus": 0.0}}) == pytest.approx(0.8)


def test_bad_config_and_missing_teacher_targets_are_named(distill_data, tmp_path, capsys):
    bad = write_config(tmp_path / "bad.json", distill_data, real_fraction=1.5)
    with pytest.raises(td.DistillError, match="real_fraction=1.5"):
        td.load_config(bad)
    bad = write_config(tmp_path / "bad2.json", distill_data, epochz=3)
    with pytest.raises(td.DistillError, match="epochz"):
        td.load_config(bad)
    empty = tmp_path / "empty-cache"
    rows, missing = td.real_rows(distill_data / "real", "valid", empty)
    assert rows == [] and missing == 4
    cfg = write_config(tmp_path / "c.json", distill_data, teacher_cache=str(distill_data / "teacher"),
                       min_real_valid_clips=3, cache=str(tmp_path / "audio"))
    with pytest.raises(td.DistillError, match="only 2 valid clips .* --split valid"):
        td.train(type("A", (), {"config": str(cfg), "real": None, "teacher_cache": None, "corpus": None,
                                "cache": None, "out": str(tmp_path / "o"), "max_minutes": None, "resume": False})())
    assert not (tmp_path / "audio").exists()  # refused before any audio was decoded
    # the command line reports it as an error with exit status 2
    with pytest.raises(SystemExit) as exit_info:
        td.main(["train", "--config", str(cfg), "--teacher-cache", str(empty)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no ") and "meta.json: run `python -m training.teacher` first" in err


# -- self-supervised (contrastive) ---------------------------------------------------------------


def nt_xent_reference(z, pair, group, t):
    """NT-Xent written out row by row in numpy (see training.distill.nt_xent)."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    out = np.zeros(len(z))
    for i in range(len(z)):
        if pair[i] < 0:
            continue
        pos = [j for j in range(len(z)) if j != i and pair[j] == pair[i]]
        neg = [j for j in range(len(z)) if pair[j] >= 0 and group[j] != group[i]]
        s = z @ z[i] / t
        log_norm = np.log(np.sum(np.exp(s[pos + neg])))
        out[i] = log_norm - np.mean(s[pos])
    return out


def test_nt_xent_matches_a_row_by_row_reference():
    import keras

    rng = np.random.default_rng(0)
    z = rng.standard_normal((10, 5)).astype(np.float32)
    # 3 pairs (rows 0-5; row i pairs with row i + 3); pairs 1 and 2 come from the same group, so their rows
    # are neither positives nor negatives of each other; rows 6-9 are corpus rows
    pair = np.array([0, 1, 2, 0, 1, 2, -1, -1, -1, -1], np.float32)
    group = np.array([7, 4, 4, 7, 4, 4, -1, -1, -1, -1], np.float32)
    got = np.asarray(keras.ops.convert_to_numpy(td.nt_xent(0.5)(np.stack([pair, group], 1), z)))
    np.testing.assert_allclose(got, nt_xent_reference(z, pair, group, 0.5), rtol=1e-5, atol=1e-5)
    assert np.all(got[6:] == 0) and np.all(got[:6] > 0)
    # identical views of a pair with orthogonal negatives: the loss is log(1 + n_neg * exp(-1 / t)) (small)
    e = np.eye(4, dtype=np.float32)
    z2 = np.stack([e[0], e[1], e[0], e[1]])
    ids = np.array([[0, 0], [1, 1], [0, 0], [1, 1]], np.float32)
    got = np.asarray(keras.ops.convert_to_numpy(td.nt_xent(0.1)(ids, z2)))
    np.testing.assert_allclose(got, np.log(1 + 2 * np.exp(-10.0)), atol=1e-6)  # float32: 10.00009 - 10


def test_positives_are_other_segments_of_the_same_group(distill_data, tmp_path):
    data = td.RealData(distill_data / "real", "train", None, tmp_path / "cache", SR, None)
    assert data.tags.shape == (12, 0) and len(data.groups) == 4 and data.n_patches == 12
    anchors = np.arange(data.n_patches).repeat(20)
    pos = data.positives(anchors, np.random.default_rng(0))
    assert np.all(data.group_of_patch[pos] == data.group_of_patch[anchors]) and np.all(pos != anchors)
    # every other patch of the group is drawn (3 patches per clip, one clip per group)
    for a in range(3):
        assert set(pos[anchors == a].tolist()) == {0, 1, 2} - {a}


def test_group_probe_by_hand():
    # two packages (0, 1), four groups; clips of the same package point the same way
    e = np.array([[1, 0.1], [1, -0.1], [-1, 0.1], [-1, -0.1], [0.9, 0]])
    group = np.array([0, 1, 2, 3, 0])
    label = np.array([0, 0, 1, 1, 0])
    m = td.group_probe(e, group, label)
    assert m["balanced_accuracy"] == 1.0 and m["n_clips"] == 5 and m["n_groups"] == 4
    # a clip may not match its own group: with its package's only other clip in its group it goes wrong
    m = td.group_probe(e[[0, 2, 3, 4]], np.array([0, 2, 3, 0]), np.array([0, 1, 1, 0]))
    assert m["balanced_accuracy"] == 0.5  # package 0: both clips go to package 1 (recall 0); package 1: recall 1
    assert np.isnan(td.group_probe(e, group, np.zeros(5, int))["balanced_accuracy"])


def test_contrastive_run_without_a_teacher_trains_ships_and_loads(distill_data, tmp_path, monkeypatch):
    import mirzoo

    out = tmp_path / "ssl"
    cfg = write_config(tmp_path / "ssl.json", distill_data, head=None, teacher_cache=str(tmp_path / "no-teacher"),
                       feature_loss="none", loss_weights={"distill": 0, "features": 0, "corpus": 1.0,
                                                          "contrastive": 1.0},
                       contrastive={"temperature": 0.2, "hidden": 16, "dim": 8},
                       selection={"real": 0.0, "probe": 0.5, "corpus": 0.5})
    assert td.main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    state = json.loads((out / "state.json").read_text())
    # no teacher head is added: the student keeps exactly the heads of the zoo model it starts from
    assert state["head"] is None and state["labels"] == []
    assert state["model_config"].get("extra_heads") == get_spec("cnn-tagging").config.get("extra_heads")
    assert state["objectives"] == {"corpus": 1.0, "contrastive": 1.0} and state["data"]["teacher"] is None
    # no teacher needed: all 4 valid clips are read (2 have no teacher targets), 2 packages x 2 groups
    assert state["data"]["real"]["clips_valid"] == 4
    for h in state["history"]:
        assert "real_valid" not in h and h["real_probe"]["n_clips"] == 4 and h["real_probe"]["n_groups"] == 4
    assert state["history"][-1]["real_probe"]["balanced_accuracy"] == 1.0  # high vs low tones
    assert "ssl_loss" in state["history"][1]["loss"] and "mtt_tags_loss" not in state["history"][1]["loss"]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(PACKAGE_MANIFEST.read_text())
    weights = tmp_path / "weights"
    assert td.main(["ship", "--run", str(out), "--name", "cnn-tagging-ssl", "--manifest", str(manifest),
                    "--weights-dir", str(weights)]) == 0
    entry = json.loads(manifest.read_text())["models"]["cnn-tagging-ssl"]
    base_entry = json.loads(PACKAGE_MANIFEST.read_text())["models"]["cnn-tagging"]
    assert (entry.get("aux_heads") or []) == (base_entry.get("aux_heads") or [])
    assert "NT-Xent" in entry["training"]["notes"] and "teacher" not in entry["training"]["licences"]
    # no teacher reference is added by this run (the zoo model's own references stay)
    added = [r for r in entry["references"] if r not in base_entry.get("references", [])]
    assert not any("musicnn" in r for r in added) and any("SimCLR" in r for r in added)
    assert entry["training"]["objectives"] == {"corpus": 1.0, "contrastive": 1.0}
    assert "teacher" not in entry["metrics"]["how"] and entry["metrics"]["valid_real_package_probe"]["n_clips"] == 4
    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights))
    m = mirzoo.load("cnn-tagging-ssl")
    assert m.extract(tone(300.0, 4.0, 1), sr=SR).embeddings.shape[-1] == get_spec("cnn-tagging").embedding_dim


def test_contrastive_and_teacher_settings_are_checked(distill_data, tmp_path):
    cases = [
        ({"head": None}, "head=null .* distill 0"),
        ({"head": None, "feature_loss": "none", "loss_weights": {"distill": 0}}, "nothing to learn"),
        ({"loss_weights": {"contrastive": 1.0}, "batch_size": 6, "real_fraction": 0.5},
         "= 3 must be even and at least 4"),
        ({"loss_weights": {"contrastive": -1}}, "'contrastive': -1"),
        ({"loss_weights": {"ssl": 1}}, "'ssl': 1"),
        ({"contrastive": {"temp": 0.1}}, "contrastive=.*'temp'"),
        ({"anchor": {"layer": ["embedding"]}}, "anchor=.*'layer'"),
        ({"anchor": {"rows": "real"}}, "anchor.rows='real' must be one of"),
        ({"loss_weights": {"anchor": 1.0}, "anchor": {"layers": ["block9"]}}, r"\['block9'\] are not layers"),
        ({"loss_weights": {"anchor": 1.0}, "anchor": {"layers": "embedding"}}, "non-empty list"),
    ]
    for over, message in cases:
        with pytest.raises(td.DistillError, match=message):
            td.load_config(write_config(tmp_path / "c.json", distill_data, **over))
