"""Every zoo model, from the registry: declared contract vs. real outputs, weights, save/load."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import mirzoo
from mirzoo.fileio import file_sha256, write_json_atomic
from mirzoo.zoo.manifest import PACKAGE_MANIFEST
from mirzoo.nn.base import seeded_weights, weights_sha256
from mirzoo.zoo.registry import build_model, get_entry

from conftest import SR, tone_mix

MODELS = mirzoo.list_models()
ROOT = Path(__file__).resolve().parents[1]


def test_zoo_has_the_four_architectures():
    families = {get_entry(n)["family"] for n in MODELS}
    assert {"dense_frame", "cnn", "crnn", "random_cnn"} <= families
    assert {"dense-frame", "cnn-tagging", "crnn-tagging", "random-cnn"} <= set(MODELS)
    variants = {get_entry(n)["config"].get("variant") for n in MODELS if get_entry(n)["family"] == "random_cnn"}
    assert variants == {"vgg", "musical"}


def test_manifest_is_shipped_inside_the_package_identically():
    assert PACKAGE_MANIFEST.read_bytes() == (ROOT / "weights_manifest.json").read_bytes()


def test_list_models_filters():
    assert mirzoo.list_models("random-*") == ["random-cnn", "random-cnn-musical"]
    assert set(mirzoo.list_models(pretrained=True)) | set(mirzoo.list_models(pretrained=False)) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_declared_contract_matches_the_built_model(name):
    m = mirzoo.load(name)
    info = mirzoo.model_info(name)
    frontend = m.keras_model.get_layer("frontend")
    assert frontend.sample_rate == info["sample_rate"] == m.sample_rate
    assert frontend.hop_length == info["config"]["frontend"]["hop_length"]
    seconds = 7.3
    y = tone_mix(seconds, seed=1)
    for layer, dim in info["layers"].items():
        e = m.extract(y, sr=SR, layer=layer)
        assert e.embeddings.shape[1] == dim, layer
        assert e.embeddings.dtype == np.float32 and np.all(np.isfinite(e.embeddings))
    e = m.extract(y, sr=SR)
    if info["output"] == "clip":
        patch, hop = info["patch_seconds"], info["patch_hop_seconds"]
        assert m.keras_model.input_shape == (None, round(patch * SR))
        expected = 1 + int(np.ceil((seconds - patch) / hop))
        assert e.embeddings.shape[0] == expected
        np.testing.assert_allclose(e.timestamps, np.arange(expected) * hop + patch / 2)
    else:
        step = frontend.hop_length / SR
        assert e.embeddings.shape[0] == 1 + len(y) // frontend.hop_length
        np.testing.assert_allclose(e.timestamps, np.arange(e.embeddings.shape[0]) * step)
    everything = m.extract(y, sr=SR, layer="all")
    assert everything.embeddings.shape[1] == sum(info["layers"][k] for k in info["all_layers"])
    assert everything.layer == "all"


@pytest.mark.parametrize("name", MODELS)
def test_seeded_weights_reproduce_manifest_hash(name):
    entry = get_entry(name)
    if entry["weights"]["kind"] != "seeded":
        pytest.skip("weights come from a file")
    model = build_model(name, entry=entry, verify=False)
    assert weights_sha256(model) == entry["weights"]["sha256"]
    # regenerating from the seed gives the same arrays; another seed does not
    again = seeded_weights(model, entry["weights"]["seed"], entry["weights"]["init"])
    for w, v in zip(model.weights, again):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), v)
    other = seeded_weights(model, entry["weights"]["seed"] + 1, entry["weights"]["init"])
    assert any(not np.array_equal(a, b) for a, b in zip(again, other) if a.size > 1)


def test_parameter_budgets():
    def count(name):
        return mirzoo.load(name).keras_model.count_params()

    # the sizes the README's model table states (0.55 M and 0.27 M params), within 10 %
    for name, stated in (("cnn-tagging", 0.55e6), ("crnn-tagging", 0.27e6)):
        assert abs(count(name) - stated) <= 0.1 * stated, (name, count(name), stated)


def test_crnn_gru_is_unrolled_for_export():
    model = mirzoo.load("crnn-tagging").keras_model
    grus = [l for l in model.layers if isinstance(l, keras.layers.GRU)]
    assert len(grus) == 2 and all(g.unroll for g in grus)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path):
    m = mirzoo.load(name)
    y = tone_mix(4.0, seed=2)
    before = m.extract(y, sr=SR, layer="all").embeddings
    out = m.save(tmp_path / "saved")
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["config.json", "metadata.json", "mirzoo.json", "model.weights.h5"]
    again = mirzoo.load(str(out))
    assert again.name == name and again.layers == m.layers
    # 1e-5, the parity the project holds folded and exported models to: under load, oneDNN (TensorFlow 2.21)
    # gave tcn-music's reloaded copy differences of up to 3e-6 on 0.7 % of the values
    np.testing.assert_allclose(again.extract(y, sr=SR, layer="all").embeddings, before, rtol=1e-5, atol=1e-5)
    # Keras reads the same directory on its own
    plain = keras.saving.load_model(str(out))
    x = np.zeros((1,) + tuple(d or 48000 for d in m.keras_model.input_shape[1:]), np.float32)
    x[0, :] = np.resize(y, x.shape[1])
    a, b = m.keras_model.predict_on_batch(x), plain.predict_on_batch(x)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-6, atol=1e-6)


def test_keras_zip_round_trip(tmp_path):
    model = mirzoo.load("crnn-tagging").keras_model
    path = tmp_path / "crnn.keras"
    model.save(path)
    clone = keras.saving.load_model(path)
    x = tone_mix(3.0, seed=3)[None]
    np.testing.assert_allclose(np.asarray(model(x)["tags"]), np.asarray(clone(x)["tags"]), atol=1e-6)


def test_save_refuses_to_overwrite_and_leaves_no_temporaries(tmp_path):
    m = mirzoo.load("random-cnn")
    m.save(tmp_path / "a")
    with pytest.raises(mirzoo.ParameterError, match="already exists"):
        m.save(tmp_path / "a")
    m.save(tmp_path / "a", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_tampered_saved_weights_raise(tmp_path):
    out = mirzoo.load("random-cnn").save(tmp_path / "m")
    with open(out / "model.weights.h5", "r+b") as f:
        f.seek(-64, 2)
        f.write(b"\x00" * 8 + b"\x01" * 8)
    with pytest.raises(mirzoo.WeightsError, match="sha256"):
        mirzoo.load(str(out))


def _manifest_with_weight_file(tmp_path, monkeypatch, corrupt: bool):
    """A manifest whose random-cnn entry points at a weight file instead of a seed."""
    source = mirzoo.load("random-cnn").keras_model
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    path = weights_dir / "random-cnn.weights.h5"
    source.save_weights(path)
    data = json.loads(PACKAGE_MANIFEST.read_text())
    entry = data["models"]["random-cnn"]
    entry["weights"] = {"kind": "file", "file": path.name, "sha256": file_sha256(path), "size": path.stat().st_size}
    entry["hub"] = {"repo_id": "mirzoo/random-cnn", "revision": "v0"}
    data["models"] = {"random-cnn-file": entry}
    write_json_atomic(tmp_path / "manifest.json", data)
    monkeypatch.setenv("MIRZOO_MANIFEST", str(tmp_path / "manifest.json"))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(weights_dir))
    if corrupt:
        raw = bytearray(path.read_bytes())
        raw[-100] ^= 0xFF
        path.write_bytes(bytes(raw))
    return source


def test_weight_file_verified_and_loaded(tmp_path, monkeypatch):
    source = _manifest_with_weight_file(tmp_path, monkeypatch, corrupt=False)
    m = mirzoo.load("random-cnn-file")
    for a, b in zip(source.weights, m.keras_model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_weight_file_sha256_mismatch_raises_never_falls_back(tmp_path, monkeypatch):
    _manifest_with_weight_file(tmp_path, monkeypatch, corrupt=True)
    with pytest.raises(mirzoo.WeightsError, match=r"random-cnn.weights.h5.*sha256.*expected [0-9a-f]{64}, got [0-9a-f]{64}"):
        mirzoo.load("random-cnn-file")


def test_missing_weight_file_offline_says_what_is_missing(tmp_path, monkeypatch):
    _manifest_with_weight_file(tmp_path, monkeypatch, corrupt=False)
    (tmp_path / "weights" / "random-cnn.weights.h5").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(mirzoo.WeightsError, match=r"random-cnn.weights.h5.*mirzoo/random-cnn.*v0"):
        mirzoo.load("random-cnn-file")


def test_changed_architecture_fails_seeded_hash(tmp_path, monkeypatch):
    data = json.loads(PACKAGE_MANIFEST.read_text())
    data["models"]["random-cnn"]["config"]["filters"][0] = 16
    data["models"]["random-cnn"]["layers"]["block1"] = 32
    data["models"]["random-cnn"]["layers"]["embedding"] = 928
    write_json_atomic(tmp_path / "m.json", data)
    monkeypatch.setenv("MIRZOO_MANIFEST", str(tmp_path / "m.json"))
    with pytest.raises(mirzoo.WeightsError, match="refresh-seeded"):
        mirzoo.load("random-cnn")


def test_unknown_model_suggests_close_matches():
    with pytest.raises(mirzoo.UnknownModelError, match="'crnn-tagging'") as info:
        mirzoo.load("crnn-taging")
    assert "Available models" in str(info.value)
    with pytest.raises(KeyError):  # also a KeyError for generic code
        mirzoo.model_info("nope")


def test_not_a_model_directory(tmp_path):
    with pytest.raises(mirzoo.ParameterError, match="mirzoo.json"):
        mirzoo.load(str(tmp_path))


def test_manifest_validation_errors(tmp_path, monkeypatch):
    data = json.loads(PACKAGE_MANIFEST.read_text())
    del data["models"]["cnn-tagging"]["sample_rate"]
    write_json_atomic(tmp_path / "m.json", data)
    monkeypatch.setenv("MIRZOO_MANIFEST", str(tmp_path / "m.json"))
    with pytest.raises(mirzoo.ManifestError, match="'cnn-tagging' lacks the required field 'sample_rate'"):
        mirzoo.list_models()


@pytest.mark.parametrize(
    "aux,message",
    [
        ([{"output": "chords", "labels": ["C"]}], "head output 'chords' is not in its layers"),
        ([{"output": "pitch_classes", "labels": ["C"]}], "1 labels for the 12-dim head 'pitch_classes'"),
        ({"output": "pitch_classes"}, "'aux_heads' must be a list"),
    ],
)
def test_manifest_rejects_bad_aux_heads(aux, message, tmp_path, monkeypatch):
    data = json.loads(PACKAGE_MANIFEST.read_text())
    data["models"]["dense-frame"]["aux_heads"] = aux
    write_json_atomic(tmp_path / "m.json", data)
    monkeypatch.setenv("MIRZOO_MANIFEST", str(tmp_path / "m.json"))
    with pytest.raises(mirzoo.ManifestError, match=message):
        mirzoo.list_models()


@pytest.mark.parametrize(
    "frontend",
    [
        {"kind": "stft", "sample_rate": SR, "hop_length": 320, "n_fft": 1024, "fmax": 4000.0},
        {"kind": "chroma", "sample_rate": SR, "hop_length": 320, "n_fft": 2048},
        {"kind": "mel", "sample_rate": SR, "hop_length": 320, "n_fft": 1024, "n_mels": 64, "normalization": "whiten"},
        {"kind": "cqt", "sample_rate": SR, "hop_length": 320, "fmin": 65.4, "n_bins": 60, "compression": "log1p"},
    ],
)
def test_dense_frame_accepts_every_representation(frontend):
    from mirzoo.nn import get_family

    config = dict(get_entry("dense-frame")["config"], frontend=frontend, units=[32, 16])
    model = get_family("dense_frame")(config, name="dense_frame_variant")
    y = tone_mix(1.3, seed=4)[None]
    out = model.predict_on_batch(y)
    frames = 1 + y.shape[1] // 320
    assert out["embedding"].shape == (1, frames, 16)
    assert out["pitch_classes"].shape == (1, frames, 12)
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict_on_batch(y)["embedding"], out["embedding"], atol=1e-6)


def test_load_builds_anew_under_another_dtype_policy():
    """The model cache is per dtype policy: a model loaded under ``mixed_bfloat16`` computes in bfloat16
    (its embeddings differ slightly from float32's), and float32 loads still share the float32 graph."""
    x = tone_mix(3.0, seed=3)
    ref = mirzoo.load("cnn-tagging")
    before = keras.config.dtype_policy()
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        mixed = mirzoo.load("cnn-tagging")
        assert mixed.keras_model is not ref.keras_model
        assert mirzoo.load("cnn-tagging").keras_model is mixed.keras_model
        assert {l.dtype_policy.name for l in mixed.keras_model.layers if l.weights} == {"mixed_bfloat16"}
        a = ref.extract(x, sr=SR).embeddings
        b = mixed.extract(x, sr=SR).embeddings
    finally:
        keras.mixed_precision.set_global_policy(before)
    assert mirzoo.load("cnn-tagging").keras_model is ref.keras_model
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert not np.array_equal(a, b)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() > 0.999
