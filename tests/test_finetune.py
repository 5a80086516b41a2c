"""fine_tune on small data in every input form, evaluate, save and load back."""

import numpy as np
import pytest
import soundfile as sf

import mirzoo

from conftest import SR, tone_mix


def _clip(kind: str, seed: int, seconds: float = 3.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "low":
        freqs = tuple(rng.uniform(80, 200, 2))
    elif kind == "high":
        freqs = tuple(rng.uniform(1500, 3000, 2))
    else:
        t = np.arange(int(seconds * SR)) / SR
        clicks = (np.sin(2 * np.pi * 4 * t) > 0.95).astype(np.float32) * rng.standard_normal(t.size)
        return (0.3 * clicks).astype(np.float32)
    return tone_mix(seconds, seed=seed, freqs=freqs)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    for kind in ("low", "high", "clicks"):
        (root / kind).mkdir()
        for i in range(8):
            sf.write(root / kind / f"{kind}{i}.wav", _clip(kind, 100 * i + len(kind)), SR)
    return root


def test_folder_per_label_fine_tune_evaluate_save_load(folder, tmp_path):
    base = mirzoo.load("random-cnn")
    before = [w.copy() for w in base.keras_model.get_weights()]
    clf = base.fine_tune(str(folder), epochs=60, validation=0.25, seed=0)
    assert clf.labels == ["clicks", "high", "low"]
    assert clf.entry["head"]["activation"] == "softmax"
    assert clf.history["head"]["loss"][-1] < clf.history["head"]["loss"][0]
    test = [(_clip(k, 7000 + i), k) for k in ("low", "high", "clicks") for i in range(3)]
    scores = clf.evaluate(test, sr=SR)
    assert scores["accuracy"] >= 0.8 and scores["n_clips"] == 9
    probs = clf.predict(test[0][0], sr=SR)
    assert probs.shape == (3,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert clf.tag(test[3][0], sr=SR, top_k=1)[0][0] == test[3][1] == "high"
    # embeddings of the backbone are still available, and the base model is untouched
    assert clf.extract(test[0][0], sr=SR).embeddings.shape[1] == 960
    for a, b in zip(before, base.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    out = clf.save(tmp_path / "clf")
    again = mirzoo.load(str(out))
    assert again.labels == clf.labels and again.entry["task"] == "classification"
    np.testing.assert_allclose(again.predict(test[2][0], sr=SR), clf.predict(test[2][0], sr=SR), atol=1e-6)


def test_pairs_multilabel_and_unfreeze():
    data = []
    for i in range(6):
        data.append((_clip("low", i), ["low"]))
        data.append((_clip("high", 50 + i), ["high"]))
        mix = 0.5 * (_clip("low", 90 + i) + _clip("high", 95 + i))
        data.append((mix, ["low", "high"]))
    clf = mirzoo.load("random-cnn-musical").fine_tune(data, sr=SR, epochs=30, unfreeze=1, unfreeze_epochs=1, seed=1)
    assert clf.entry["head"]["multilabel"] and clf.entry["head"]["activation"] == "sigmoid"
    assert "unfreeze" in clf.history
    # a handful of clips per class: no validation fold by default (all 18 clips train the head)
    assert "on 18 clips (0 for validation)" in clf.entry["training"]["data"]
    heldout = []  # other clips than those trained on
    for i in range(4):
        heldout.append((_clip("low", 300 + i), ["low"]))
        heldout.append((_clip("high", 350 + i), ["high"]))
        heldout.append((0.5 * (_clip("low", 390 + i) + _clip("high", 395 + i)), ["low", "high"]))
    scores = clf.evaluate(heldout, sr=SR)
    assert scores["n_clips"] == 12 and scores["roc_auc_macro"] > 0.8


def test_unfreeze_trains_the_top_backbone_block_not_the_base_head():
    # the pretrained tagger's own "tags" layer does not feed the new classifier: unfreeze=1 is block5
    base = mirzoo.load("cnn-tagging")
    data = [(_clip("low", i, 3.0), "low") for i in range(4)] + [(_clip("high", 20 + i, 3.0), "high") for i in range(4)]
    clf = base.fine_tune(data, sr=SR, epochs=1, validation=0.0, unfreeze=1, unfreeze_epochs=1, seed=0)
    assert clf.history["unfreeze"]["blocks"] == ["block5", "classes"]
    before = base.keras_model.get_layer("block5_body_conv").get_weights()[0]
    after = clf.keras_model.get_layer("block5_body_conv").get_weights()[0]
    assert not np.array_equal(before, after)
    assert np.array_equal(base.keras_model.get_layer("block4_body_conv").get_weights()[0],
                          clf.keras_model.get_layer("block4_body_conv").get_weights()[0])


def test_tf_data_input():
    tf = pytest.importorskip("tensorflow")
    xs = [_clip("low", i, 3.0) for i in range(5)] + [_clip("high", 20 + i, 3.0) for i in range(5)]
    ys = ["low"] * 5 + ["high"] * 5
    ds = tf.data.Dataset.from_tensor_slices((np.stack(xs), np.array(ys)))
    clf = mirzoo.load("random-cnn").fine_tune(ds, sr=SR, epochs=20, validation=0.2)
    assert clf.labels == ["high", "low"]
    heldout = [(_clip("low", 300 + i, 3.0), "low") for i in range(3)] + [(_clip("high", 320 + i, 3.0), "high") for i in range(3)]
    scores = clf.evaluate(heldout, sr=SR)
    assert scores["n_clips"] == 6 and scores["accuracy"] >= 0.8  # chance: 0.5


def test_fine_tune_errors(folder):
    base = mirzoo.load("random-cnn")
    with pytest.raises(mirzoo.ParameterError, match="at least 2 classes"):
        base.fine_tune([(_clip("low", 1), "low"), (_clip("low", 2), "low")], sr=SR)
    with pytest.raises(mirzoo.ParameterError, match="sr=None"):
        base.fine_tune([(_clip("low", 1), "low"), (_clip("high", 2), "high")])
    with pytest.raises(mirzoo.ParameterError, match="epochs=0"):
        base.fine_tune(str(folder), epochs=0)
    with pytest.raises(mirzoo.ParameterError, match="does not exist"):
        base.fine_tune(str(folder / "nope"))
    with pytest.raises(mirzoo.ParameterError, match="layer='all'"):
        base.fine_tune(str(folder), layer="all")
    with pytest.raises(mirzoo.ParameterError, match="no head"):
        base.evaluate(str(folder))


def test_multilabel_option_checked_against_the_data():
    base = mirzoo.load("random-cnn")
    data = [(_clip("low", 1, 3.0), ["low", "high"]), (_clip("high", 2, 3.0), ["high"])]
    with pytest.raises(mirzoo.ParameterError, match=r"multilabel=False but clip #0 has labels \['low', 'high'\]"):
        base.fine_tune(data, sr=SR, multilabel=False)
    with pytest.raises(mirzoo.ParameterError, match="multilabel='yes'"):
        base.fine_tune(data, sr=SR, multilabel="yes")
