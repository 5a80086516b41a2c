"""mirzoo.export: SavedModel, TFLite (builtin ops only) and ONNX exports, front-end included, agree
with the Keras model on the same waveforms (<= 1e-4, relative to the layer's scale)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import mirzoo
from mirzoo.cli import main
from mirzoo.errors import ParameterError
from mirzoo.export import export, read_tflite_metadata

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":  # pragma: no cover - export is tensorflow-only
    pytest.skip("export needs the tensorflow backend", allow_module_level=True)
tf = pytest.importorskip("tensorflow")

TOL = 1e-4


@pytest.fixture(scope="module")
def crnn():
    return mirzoo.load("crnn-tagging")


def _waveforms(n: int, samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    tones = np.sin(2 * np.pi * rng.uniform(100, 2000, (n, 1)) * t)
    return (0.3 * tones + 0.05 * rng.standard_normal((n, samples))).astype(np.float32)


def _assert_parity(outputs: dict, reference: dict, layers):
    for k in layers:
        ref = np.asarray(reference[k])
        got = np.asarray(outputs[k])
        assert got.shape == ref.shape, k
        scale = max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(got - ref).max())
        assert err <= TOL * scale, f"{k}: max abs difference {err} (scale {scale})"


def _reference(extractor, x, layers):
    out = extractor.keras_model.predict_on_batch(x)
    return {k: keras.ops.convert_to_numpy(out[k]) for k in layers}


def _no_leftovers(folder, *expected):
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


def test_savedmodel_parity(crnn, tmp_path):
    path = export(crnn, "savedmodel", tmp_path / "crnn")
    _no_leftovers(tmp_path, "crnn")
    from mirzoo.batch import default_mode

    assert path.stat().st_mode & 0o777 == default_mode(directory=True)
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    layers = list(crnn.layers)
    for n in (3, 1):  # dynamic batch
        x = _waveforms(n, crnn.patch_samples, seed=n)
        out = {k: v.numpy() for k, v in serve(waveform=tf.constant(x)).items()}
        assert set(out) == set(layers)
        _assert_parity(out, _reference(crnn, x, layers), layers)
    info = json.loads((path / "mirzoo.json").read_text())
    assert info["input"]["shape"] == [None, crnn.patch_samples] and info["sample_rate"] == 16000
    assert info["labels"]["tags"] == crnn.labels and info["outputs"]["embedding"] == [None, 64]


def _tflite_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return Interpreter(model_path=str(path))


def test_tflite_builtin_ops_parity(crnn, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    layers = ["embedding", "tags"]
    path = export(crnn, "tflite", tmp_path / "crnn.tflite", layers=layers)
    _no_leftovers(tmp_path, "crnn.tflite")
    model = flatbuffer_utils.read_model(str(path))
    custom = [op.customCode for op in model.operatorCodes if op.customCode]
    assert custom == [], f"non-builtin (Flex/custom) ops: {custom}"
    from tensorflow.lite.python import schema_py_generated as schema

    op_names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    # newer flatbuffers keep codes >= 127 in builtinCode only, older ones in deprecatedBuiltinCode
    builtins = {op_names[max(op.builtinCode, op.deprecatedBuiltinCode)] for op in model.operatorCodes}
    assert "CONV_2D" in builtins  # the front-end is a convolution with fixed Fourier kernels ...
    assert not any("FFT" in name for name in builtins), sorted(builtins)  # ... not an RFFT2D
    runner = _tflite_interpreter(path).get_signature_runner("serving_default")
    x = _waveforms(2, crnn.patch_samples, seed=7)
    out = runner(waveform=x)
    assert set(out) == set(layers)
    _assert_parity(out, _reference(crnn, x, layers), layers)
    info = read_tflite_metadata(path)
    assert info["model"] == "crnn-tagging" and list(info["outputs"]) == layers


def test_onnx_parity(crnn, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    path = export(crnn, "onnx", tmp_path / "crnn.onnx")
    _no_leftovers(tmp_path, "crnn.onnx")
    from mirzoo.batch import default_mode

    assert path.stat().st_mode & 0o777 == default_mode()
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"DFT", "STFT", "RFFT", "Loop", "Scan"}, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "waveform" and inp.shape == ["batch", crnn.patch_samples]
    names = [o.name for o in session.get_outputs()]
    assert set(names) == set(crnn.layers)
    for n in (2, 1):
        x = _waveforms(n, crnn.patch_samples, seed=10 + n)
        out = dict(zip(names, session.run(None, {"waveform": x})))
        _assert_parity(out, _reference(crnn, x, names), names)
    info = json.loads(session.get_modelmeta().custom_metadata_map["mirzoo"])
    assert info["model"] == "crnn-tagging" and info["format"] == "onnx"


def test_frame_model_onnx_fixed_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    m = mirzoo.load("dense-frame")
    path = export(m, None, tmp_path / "frames.onnx", layers=["embedding", "pitch_classes"], samples=16000)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _waveforms(2, 16000, seed=3)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"waveform": x})))
    assert out["embedding"].shape == (2, 51, 256)
    _assert_parity(out, _reference(m, x, ["embedding", "pitch_classes"]), ["embedding", "pitch_classes"])
    # the in-file description says how to feed it
    info = json.loads(session.get_modelmeta().custom_metadata_map["mirzoo"])
    assert info["input"]["shape"] == [None, 16000] and info["outputs"]["pitch_classes"] == [None, 51, 12]


@pytest.mark.parametrize("name", mirzoo.list_models())
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_every_model_exports_with_parity(name, fmt, tmp_path):
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("tf2onnx")
    m = mirzoo.load(name)
    layers = [m.default_layer] + ([m.head_output] if m.head_output else [])
    samples = m.patch_samples if m.output_kind == "clip" else 8000
    path = export(m, fmt, tmp_path / f"model.{fmt}", layers=layers, samples=None if m.output_kind == "clip" else samples)
    x = _waveforms(2, samples, seed=21)
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"waveform": x})))
    else:
        out = _tflite_interpreter(path).get_signature_runner("serving_default")(waveform=x)
    _assert_parity(out, _reference(m, x, layers), layers)


def test_errors_and_atomicity(crnn, tmp_path, monkeypatch):
    with pytest.raises(ParameterError, match="'pb'"):
        export(crnn, "pb", tmp_path / "x")
    with pytest.raises(ParameterError, match="cannot tell the export format"):
        export(crnn, None, tmp_path / "x.bin")
    with pytest.raises(ParameterError, match="valid layers"):
        export(crnn, "onnx", tmp_path / "x.onnx", layers=["nope"])
    with pytest.raises(ParameterError, match="samples=1000"):
        export(crnn, "onnx", tmp_path / "x.onnx", samples=1000)
    (tmp_path / "exists.onnx").write_bytes(b"old")
    with pytest.raises(ParameterError, match="already exists"):
        export(crnn, "onnx", tmp_path / "exists.onnx")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ParameterError, match="directory"):
        export(crnn, "tflite", tmp_path / "adir", overwrite=True)

    import mirzoo.export as export_module

    def fail(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(export_module, "_write_savedmodel", fail)
    for fmt, name in (("savedmodel", "sm"), ("tflite", "m.tflite")):
        with pytest.raises(RuntimeError, match="converter crashed"):
            export(crnn, fmt, tmp_path / name)
    _no_leftovers(tmp_path, "exists.onnx", "adir")
    assert (tmp_path / "exists.onnx").read_bytes() == b"old"


def test_cli_export(tmp_path, capsys):
    pytest.importorskip("tf2onnx")
    out = tmp_path / "musical.onnx"
    assert main(["export", "random-cnn-musical", "-o", str(out), "--layers", "embedding"]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert main(["export", "random-cnn-musical", "-o", str(out), "--layers", "embedding"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "random-cnn-musical", "--format", "tflite", "-o", str(tmp_path / "m.tflite"),
                 "--layers", "timbral", "-q"]) == 0
    assert read_tflite_metadata(tmp_path / "m.tflite")["outputs"] == {"timbral": [None, 192]}


def test_description_labels_every_exported_head():
    from mirzoo.export import export_description

    m = mirzoo.load("dense-frame")
    info = export_description(m, ["embedding", *m.heads], 16000, "onnx")
    assert info["labels"] == m.heads and len(info["labels"]["pitch_classes"]) == 12
    assert export_description(m, ["embedding"], 16000, "onnx")["labels"] == {}


@pytest.mark.parametrize(
    "quantize, min_cosine", [("float16", 0.9999), pytest.param("int8", 0.99, marks=pytest.mark.slow)]
)
def test_quantized_tflite_is_smaller_and_close_to_the_float_model(quantize, min_cosine, tmp_path):
    m = mirzoo.load("cnn-tagging")
    plain = export(m, "tflite", tmp_path / "f32.tflite", layers=["embedding"])
    path = export(m, "tflite", tmp_path / f"{quantize}.tflite", layers=["embedding"], quantize=quantize)
    _no_leftovers(tmp_path, "f32.tflite", f"{quantize}.tflite")
    assert path.stat().st_size < 0.6 * plain.stat().st_size  # float16 halves the weights; int8 the network's
    assert read_tflite_metadata(path)["quantize"] == quantize
    # the example clip is the calibration set: test on other audio too (seeded tones + noise)
    x = np.concatenate([m.plan.patches(m.load_input(mirzoo.example_audio(), None)[0])[1:3],
                        _waveforms(2, m.patch_samples, seed=3)])
    ref = np.asarray(_reference(m, x, ["embedding"])["embedding"])
    runner = _tflite_interpreter(path).get_signature_runner("serving_default")
    got = np.stack([np.asarray(runner(waveform=w[None])["embedding"])[0] for w in x])
    cos = np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= min_cosine, cos
    if quantize == "int8":
        assert not np.allclose(got, ref, atol=1e-6)  # really quantised, not a float copy


def test_quantize_errors_and_cli(tmp_path, capsys):
    with pytest.raises(ParameterError, match="quantize='int4'"):
        export("random-cnn", "tflite", tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(ParameterError, match="tflite format only"):
        export("random-cnn", "onnx", tmp_path / "m.onnx", quantize="int8")
    assert not list(tmp_path.iterdir())
    out = tmp_path / "m.tflite"
    assert main(["export", "random-cnn", "--format", "tflite", "--quantize", "float16", "-o", str(out), "-q"]) == 0
    assert read_tflite_metadata(out)["quantize"] == "float16"
    with pytest.raises(SystemExit):
        main(["export", "random-cnn", "--format", "tflite", "--quantize", "int4", "-o", str(out)])


def test_description_carries_the_clip_tags_record_when_its_layers_are_exported():
    """A user of an exported tcn-music reads the same clip tags as tag(): the description holds the record,
    and following its 'how' on the frames (decoded here with plain numpy, not mirzoo) gives tag()'s values."""
    import base64
    import json

    from mirzoo.export import export_description

    m = mirzoo.load("tcn-music")
    record = m.spec.clip_tags
    sources = list(record["sources"])
    info = json.loads(json.dumps(export_description(m, [*sources, "tags"], 160000, "tflite")))
    got = info["clip_tags"]
    assert {k: v for k, v in got.items() if k != "how"} == json.loads(json.dumps(dict(record)))
    assert "sigmoid" in got["how"] and got["head"] == "tags"
    assert export_description(m, ["embedding", "tags"], 160000, "tflite")["clip_tags"] is None  # conv2, conv3 not exported
    assert export_description(mirzoo.load("dense-frame"), ["embedding"], 16000, "onnx")["clip_tags"] is None

    def array(a):
        return np.frombuffer(base64.b64decode(a["base64"]), dtype={"float16": "<f2", "float32": "<f4"}[a["dtype"]]
                             ).reshape(a["shape"]).astype(np.float64)

    y = _waveforms(1, 4 * m.sample_rate, seed=7)[0]
    frames = m.forward([y], sources, 4)[0]
    x = np.concatenate([np.asarray(frames[s], np.float64).reshape(len(frames[s]), -1) for s in sources], axis=1)
    stats = {"mean": x.mean(axis=0), "std": x.std(axis=0), "max": x.max(axis=0)}
    pooled = np.concatenate([stats[name] for name in got["pool"].split("+")])
    z = (pooled - array(got["mean"])) / array(got["scale"])
    probs = 1.0 / (1.0 + np.exp(-(z @ array(got["weights"]) + np.asarray(got["bias"]))))
    tagged = dict(m.tag(y, sr=m.sample_rate, top_k=None))
    np.testing.assert_allclose(probs, [tagged[label] for label in m.heads["tags"]], rtol=1e-4, atol=1e-6)
