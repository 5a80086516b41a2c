"""``mirzoo.load(..., precision=...)``: a bfloat16/float16 copy after a float32 front-end, outputs close
to float32's and returned as float32, cached apart from the float32 graph, errors named."""

import json

import keras
import numpy as np
import pytest

import mirzoo
from mirzoo.batch import extract_files
from mirzoo.cli import main
from mirzoo.nn.fold import FoldedBatchNorm
from mirzoo.nn.frontend import SpectralFrontend
from mirzoo.nn.precision import precision_of, with_precision

from conftest import SR, tone_mix


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_bfloat16_copy_keeps_the_frontend_float32_and_leaves_float32_alone():
    f32 = mirzoo.load("cnn-tagging")
    bf16 = mirzoo.load("cnn-tagging", precision="bfloat16")
    assert f32.precision == "float32" and bf16.precision == "bfloat16"
    assert bf16.model is not f32.model
    assert mirzoo.load("cnn-tagging", precision="bfloat16").model is bf16.model  # cached
    assert mirzoo.load("cnn-tagging", precision="float32").model is f32.model  # already float32: no copy
    weighted = [layer for layer in bf16.model.layers if layer.weights]
    assert weighted and all(layer.dtype_policy.compute_dtype == "bfloat16" for layer in weighted)
    assert all(v.dtype == "float32" for v in bf16.model.weights)  # weights stay float32
    frontend = bf16.model.get_layer("frontend")
    assert isinstance(frontend, SpectralFrontend) and frontend.dtype_policy.compute_dtype == "float32"
    for a, b in zip(f32.model.weights, bf16.model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # batch-norm folding keeps the policy: a float32 identity between bfloat16 layers would cast twice
    folded = [layer for layer in bf16.inference_model.layers if isinstance(layer, FoldedBatchNorm)]
    assert folded and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in folded)
    assert with_precision(f32.model, None) is f32.model and precision_of(f32.model) == "float32"


@pytest.mark.parametrize("name, precision", [("cnn-tagging", "bfloat16"), ("tcn-music", "bfloat16"),
                                             ("crnn-tagging", "float16")])
def test_reduced_precision_outputs_are_float32_and_close_to_float32(name, precision):
    f32 = mirzoo.load(name)
    low = mirzoo.load(name, precision=precision)
    clip = tone_mix(12.0, seed=5)
    a = f32.extract(clip, sr=SR).embeddings
    b = low.extract(clip, sr=SR).embeddings
    assert b.dtype == np.float32 and b.shape == a.shape
    assert _cosines(a, b).min() > 0.999
    assert not np.array_equal(a, b)  # it did compute in another precision
    for head in f32.heads:
        pa, pb = f32.predict(clip, sr=SR, head=head), low.predict(clip, sr=SR, head=head)
        assert pb.dtype == np.float32
        assert np.abs(pa - pb).max() < 0.05, head


def test_bfloat16_same_clip_alone_or_in_a_batch():
    m = mirzoo.load("crnn-tagging", precision="bfloat16")
    clip = tone_mix(5.0, seed=11)
    others = [tone_mix(s, seed=i, freqs=(110.0 * i,)) for i, s in enumerate((2.0, 9.5), start=2)]
    alone = m.extract(clip, sr=SR).embeddings
    batch = m.extract(others + [clip], sr=SR)
    assert _cosines(alone, batch[2].embeddings).min() > 0.9999


def test_precision_reaches_saved_directories_and_extract_files(tmp_path, audio_dir):
    saved = mirzoo.load("random-cnn").save(tmp_path / "saved")
    m = mirzoo.load(saved, precision="bfloat16")
    assert m.precision == "bfloat16" and m.name == "random-cnn"
    assert mirzoo.load(saved).precision == "float32"
    out = tmp_path / "e.npz"
    report = extract_files("random-cnn", [audio_dir], out, pool="mean", precision="bfloat16")
    assert report.written == 3 and not report.failed
    ref = tmp_path / "f.npz"
    extract_files("random-cnn", [audio_dir], ref, pool="mean")
    with np.load(out) as a, np.load(ref) as b:
        np.testing.assert_array_equal(a["paths"], b["paths"])
        assert a["embeddings"].dtype == np.float32
        assert _cosines(a["embeddings"], b["embeddings"]).min() > 0.999
        assert str(a["precision"]) == "bfloat16" and "precision" not in b.files  # float32: as before
    # a resume never mixes precisions in one file
    with pytest.raises(mirzoo.ParameterError, match="precision='bfloat16'.*precision=''"):
        extract_files("random-cnn", [audio_dir], out, pool="mean", resume=True)


def test_bad_precision_is_named():
    for bad in ("bf16", "int8", 16):
        with pytest.raises(mirzoo.ParameterError, match=r"precision=.*must be one of \['bfloat16', 'float16', 'float32'\]"):
            mirzoo.load("random-cnn", precision=bad)
    with pytest.raises(mirzoo.ParameterError, match="precision='half'"):
        extract_files("random-cnn", [], "x.npz", precision="half")


def test_cli_precision(capsys):
    assert main(["tag", "cnn-tagging", mirzoo.example_audio(), "--top-k", "3", "--json"]) == 0
    want = {t["tag"]: t["probability"] for t in json.loads(capsys.readouterr().out.strip())["tags"]}
    assert main(["tag", "cnn-tagging", mirzoo.example_audio(), "--top-k", "3", "--json", "--precision", "bfloat16"]) == 0
    got = {t["tag"]: t["probability"] for t in json.loads(capsys.readouterr().out.strip())["tags"]}
    top = max(want, key=want.get)
    assert top in got and abs(got[top] - want[top]) < 0.05
    with pytest.raises(SystemExit):
        main(["tag", "cnn-tagging", mirzoo.example_audio(), "--precision", "bf16"])


def test_sklearn_transformer_precision():
    from mirzoo.sklearn import EmbeddingTransformer

    clips = [tone_mix(4.0, seed=s) for s in range(3)]
    a = EmbeddingTransformer(model="crnn-tagging", sr=SR, pool="mean").fit_transform(clips)
    t = EmbeddingTransformer(model="crnn-tagging", sr=SR, pool="mean", precision="bfloat16")
    b = t.fit_transform(clips)
    assert t.get_params()["precision"] == "bfloat16" and b.dtype == np.float32
    assert _cosines(a, b).min() > 0.999 and not np.array_equal(a, b)
