"""Single-channel convolutions as matmuls (mirzoo.nn.banded): the layer against keras.ops.conv,
the replacement rule, the model copy, and the runner using it on jax only."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import mirzoo
from mirzoo.errors import ParameterError
from mirzoo.nn.banded import BAND_MAX_OVERHEAD, MatmulConv2D, banded_matrix, convs_as_matmul, matmul_plan

# (input rows, cols), kernel, filters, form, banded axis
LAYER_CASES = [
    ((20, 12), (7, 1), 3, "banded", 1),  # a temporal filter, like random-cnn-musical's (k, 1)
    ((20, 12), (8, 1), 2, "banded", 1),  # even length: 'same' puts the odd zero at the end
    ((9, 16), (1, 5), 4, "banded", 2),
    ((11, 10), (3, 6), 2, "banded", 2),  # a 2D kernel: shifted copies along the other axis
    ((10, 11), (4, 3), 3, "banded", 1),
    ((13, 9), (3, 3), 5, "patches", None),
    ((8, 10), (2, 4), 3, "patches", None),
]


def _reference(x, kernel, bias, padding):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.conv(x, kernel, strides=1, padding=padding))) + bias


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("shape,kernel_size,filters,form,axis", LAYER_CASES)
def test_matmul_conv_equals_conv(shape, kernel_size, filters, form, axis, padding):
    rng = np.random.default_rng(sum(shape) + sum(kernel_size) + (padding == "same"))
    x = rng.standard_normal((3,) + shape + (1,)).astype(np.float32)
    kernel = rng.standard_normal(kernel_size + (1, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    layer = MatmulConv2D(filters, kernel_size, padding=padding, form=form, axis=axis,
                         axis_length=None if axis is None else shape[axis - 1])
    layer.build((None,) + shape + (1,))
    layer.set_kernel(kernel, bias)
    out = np.asarray(keras.ops.convert_to_numpy(layer(x)))
    ref = _reference(x, kernel, bias, padding)
    assert out.shape == ref.shape == layer.compute_output_shape((3,) + shape + (1,))
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_matmul_conv_activation_and_batch_independence():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 15, 6, 1)).astype(np.float32)
    kernel = rng.standard_normal((5, 1, 1, 2)).astype(np.float32)
    layer = MatmulConv2D(2, (5, 1), padding="same", form="banded", axis=1, axis_length=15, activation="elu")
    layer.build((None, 15, 6, 1))
    layer.set_kernel(kernel)  # no bias: zeros
    out = np.asarray(keras.ops.convert_to_numpy(layer(x)))
    ref = np.asarray(keras.ops.convert_to_numpy(keras.activations.elu(keras.ops.conv(x, kernel, padding="same"))))
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    alone = np.asarray(keras.ops.convert_to_numpy(layer(x[2:3])))
    assert np.array_equal(alone[0], out[2])


def test_banded_matrix_layout():
    # kernel [k_band=3, k_other=1, filters=1] = [1, 2, 3] on an axis of 4, 'same' (one zero each side)
    matrix = banded_matrix(np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1), 4, "same")
    expected = np.array([[2, 1, 0, 0], [3, 2, 1, 0], [0, 3, 2, 1], [0, 0, 3, 2]], dtype=float)
    assert np.array_equal(matrix, expected)  # out[a] = sum_i in[i] * M[i, a] = 1*in[a-1] + 2*in[a] + 3*in[a+1]
    assert banded_matrix(np.ones((3, 1, 1)), 4, "valid").shape == (4, 2)


def test_matmul_conv_rejects_bad_arguments():
    with pytest.raises(ParameterError, match=r"padding='causal'.*'same' or 'valid'"):
        MatmulConv2D(2, (3, 1), padding="causal")
    with pytest.raises(ParameterError, match=r"form='toeplitz'"):
        MatmulConv2D(2, (3, 1), form="toeplitz")
    with pytest.raises(ParameterError, match=r"axis=3"):
        MatmulConv2D(2, (3, 1), form="banded", axis=3, axis_length=10)
    layer = MatmulConv2D(2, (3, 1), padding="same", form="banded", axis=1, axis_length=10)
    with pytest.raises(ParameterError, match=r"one input channel"):
        layer.build((None, 10, 4, 2))
    with pytest.raises(ParameterError, match=r"axis 1 of the input is 12, the banded matrix was built for 10"):
        layer.build((None, 12, 4, 1))
    layer.build((None, 10, 4, 1))
    with pytest.raises(ParameterError, match=r"kernel of shape \(3, 1, 1, 3\): expected \(3, 1, 1, 2\)"):
        layer.set_kernel(np.zeros((3, 1, 1, 3)))
    with pytest.raises(ParameterError, match=r"axis of 2 is shorter than the kernel's 3 taps"):
        banded_matrix(np.ones((3, 1, 1)), 2, "valid")


def _conv(kernel_size, **kwargs):
    return keras.layers.Conv2D(4, kernel_size, **kwargs)


@pytest.mark.parametrize("conv,input_shape,expected", [
    (_conv((128, 1), padding="same"), (None, 188, 96, 1), {"form": "banded", "axis": 1, "axis_length": 188}),
    (_conv((32, 1), padding="same"), (None, 188, 96, 1), {"form": "banded", "axis": 1, "axis_length": 188}),
    (_conv((1, 20), padding="valid"), (None, 50, 96, 1), {"form": "banded", "axis": 2, "axis_length": 96}),
    (_conv((3, 3), padding="same"), (None, 188, 96, 1), None),  # a 2D kernel: XLA's conv is as fast
    (_conv((7, 86), padding="valid"), (None, 194, 96, 1), None),
    (_conv((1, 1)), (None, 188, 96, 1), None),  # a single tap
    (_conv((16, 1), padding="same"), (None, 188, 96, 1), None),  # 188 / 16 > BAND_MAX_OVERHEAD
    (_conv((128, 1), padding="same"), (None, 188, 96, 2), None),  # two input channels
    (_conv((128, 1), padding="same"), (None, None, 96, 1), None),  # a time axis of unknown length
    (_conv((128, 1), padding="same", strides=(2, 1)), (None, 188, 96, 1), None),
    (_conv((32, 1), padding="same", dilation_rate=(2, 1)), (None, 188, 96, 1), None),
    (_conv((32, 1), padding="valid"), (None, 20, 96, 1), None),  # shorter than the kernel
    (keras.layers.DepthwiseConv2D((128, 1), padding="same"), (None, 188, 96, 1), None),
    (keras.layers.Conv1D(4, 32, padding="same"), (None, 188, 1), None),
])
def test_matmul_plan_rule(conv, input_shape, expected):
    assert BAND_MAX_OVERHEAD == 8.0
    assert matmul_plan(conv, input_shape) == expected


def _toy_model():
    inputs = keras.Input((40, 12, 1))
    a = keras.layers.Conv2D(3, (16, 1), padding="same", activation="elu", name="temporal")(inputs)
    b = keras.layers.Conv2D(2, (1, 5), padding="valid", use_bias=False, name="spectral")(inputs)
    c = keras.layers.Conv2D(2, (3, 3), padding="same", name="square")(inputs)
    out = keras.layers.Concatenate()([keras.layers.Flatten()(t) for t in (a, b, c)])
    model = keras.Model(inputs, {"out": out, "temporal": a})
    rng = np.random.default_rng(7)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def test_convs_as_matmul_copy():
    model = _toy_model()
    before = [w.copy() for w in model.get_weights()]
    copy = convs_as_matmul(model)
    assert isinstance(copy.get_layer("temporal"), MatmulConv2D) and copy.get_layer("temporal").axis == 1
    assert isinstance(copy.get_layer("spectral"), MatmulConv2D) and copy.get_layer("spectral").axis == 2
    assert copy.get_layer("square") is model.get_layer("square")  # kept and shared, not copied
    assert type(model.get_layer("temporal")) is keras.layers.Conv2D  # the original is untouched
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    x = np.random.default_rng(8).standard_normal((5, 40, 12, 1)).astype(np.float32)
    want, got = model.predict_on_batch(x), copy.predict_on_batch(x)
    for key in want:
        ref = np.asarray(want[key])
        assert np.abs(np.asarray(got[key]) - ref).max() <= 1e-5 * np.abs(ref).max(), key


def test_convs_as_matmul_without_candidates_returns_the_model():
    inputs = keras.Input((10, 6, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, (3, 3))(inputs))
    assert convs_as_matmul(model) is model


def test_runner_does_not_replace_on_tensorflow():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks the tensorflow backend")
    m = mirzoo.load("random-cnn-musical")
    assert not any(isinstance(layer, MatmulConv2D) for layer in m.inference_model.layers)


JAX_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras, mirzoo
    from mirzoo.nn.banded import MatmulConv2D
    assert keras.backend.backend() == "jax", keras.backend.backend()
    rng = np.random.default_rng(5)
    out = {}
    for name in mirzoo.list_models():
        m = mirzoo.load(name)
        shape = m.keras_model.input.shape
        samples = shape[1] if shape[1] is not None else 3 * m.sample_rate
        x = rng.uniform(-0.5, 0.5, (2, samples)).astype(np.float32)
        want = m.keras_model.predict_on_batch(x)  # the model as loaded: no folding, no matmuls
        got = m.inference_model.predict_on_batch(x)
        errors = {k: float(np.abs(np.asarray(got[k]) - np.asarray(want[k])).max() / max(np.abs(np.asarray(want[k])).max(), 1e-30))
                  for k in want}
        replaced = sorted(l.name for l in m.inference_model.layers if isinstance(l, MatmulConv2D))
        kept = sorted(l.name for l in m.keras_model.layers if isinstance(l, MatmulConv2D))
        out[name] = {"errors": errors, "replaced": replaced, "in_loaded_model": kept}
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_jax_zoo_outputs_equal_with_matmul_convs():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", JAX_SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    assert result.pop("tensorflow_imported") is False
    assert set(result) == set(mirzoo.list_models())
    assert result["random-cnn-musical"]["replaced"] == ["temporal0_conv", "temporal1_conv", "temporal2_conv"]
    for name, r in result.items():
        assert r["in_loaded_model"] == [], name  # the loaded model is not changed
        for key, error in r["errors"].items():
            assert error <= 1e-5, (name, key, error)


def test_temporal_conv_on_the_swapped_map_equals_conv2d():
    """TemporalConv2D over the (batch, freq, time, ch) map gives Conv2D (length, 1)'s output on the
    (batch, time, freq, ch) map, swapped, with a kernel of the same shape and name (so seeded
    weights and their sha256 do not change); FrequencyMax(axis=1) reads the swapped output."""
    from mirzoo.nn.base import FrequencyMax, TemporalConv2D

    x = np.random.default_rng(3).standard_normal((3, 40, 12, 1)).astype(np.float32)
    for length in (16, 7, 1):
        conv = keras.layers.Conv2D(4, (length, 1), padding="same", activation="elu", name="t")
        temporal = TemporalConv2D(4, (length, 1), padding="same", activation="elu", name="t")
        want = np.asarray(conv(x))
        temporal.build((None, 12, 40, 1))
        assert tuple(temporal.kernel.shape) == tuple(conv.kernel.shape) == (length, 1, 1, 4)
        assert temporal.kernel.path == conv.kernel.path
        temporal.set_weights(conv.get_weights())
        got = np.asarray(temporal(np.transpose(x, (0, 2, 1, 3))))
        np.testing.assert_allclose(np.transpose(got, (0, 2, 1, 3)), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        pooled = np.asarray(FrequencyMax(axis=1)(got))
        np.testing.assert_allclose(pooled, np.asarray(FrequencyMax()(want)), rtol=1e-5, atol=1e-6)
    restored = FrequencyMax.from_config(FrequencyMax(axis=1, name="f").get_config())
    assert restored.axis == 1 and restored.compute_output_shape((None, 12, 40, 4)) == (None, 40, 4)
    with pytest.raises(ParameterError, match="axis=3"):
        FrequencyMax(axis=3)
    with pytest.raises(ParameterError, match=r"kernel_size=\(3, 3\)"):
        TemporalConv2D(4, (3, 3), padding="same")
    with pytest.raises(ParameterError, match="padding='valid'"):
        TemporalConv2D(4, (5, 1), padding="valid")


def test_banded_plan_reads_temporal_conv_along_the_swapped_axis():
    from mirzoo.nn.base import TemporalConv2D

    inputs = keras.Input((12, 40, 1))  # swapped: 12 bands, 40 frames
    model = keras.Model(inputs, TemporalConv2D(3, (16, 1), padding="same", activation="elu", name="t")(inputs))
    rng = np.random.default_rng(9)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    assert matmul_plan(model.get_layer("t"), (None, 12, 40, 1)) == {"form": "banded", "axis": 2, "axis_length": 40}
    copy = convs_as_matmul(model)
    assert isinstance(copy.get_layer("t"), MatmulConv2D)
    x = rng.standard_normal((2, 12, 40, 1)).astype(np.float32)
    want = np.asarray(model.predict_on_batch(x))
    assert np.abs(np.asarray(copy.predict_on_batch(x)) - want).max() <= 1e-5 * np.abs(want).max()
