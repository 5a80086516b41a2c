"""The same networks and numbers on the tensorflow and jax backends (jax runs in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mirzoo
from mirzoo.nn.base import weights_sha256

from conftest import SR, tone_mix

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras, mirzoo
    from mirzoo.nn.base import weights_sha256
    assert keras.backend.backend() == "jax", keras.backend.backend()
    y = np.load(sys.argv[1])
    out = {}
    for name in mirzoo.list_models():
        m = mirzoo.load(name)
        out[name] = {"sha": weights_sha256(m.keras_model),
                     "emb": m.extract(y, sr=16000, layer="all").embeddings.tolist()}
    # nothing on the way (loading, folding, extracting) imports TensorFlow on another backend
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_jax_backend_matches_tensorflow(tmp_path):
    pytest.importorskip("jax")
    y = tone_mix(4.0, seed=21)
    np.save(tmp_path / "y.npy", y)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "y.npy")], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    jax_out = json.loads(run.stdout.split("RESULT", 1)[1])
    # TensorFlow's runtime is about 400 MB of resident memory a JAX process does not need
    assert jax_out.pop("tensorflow_imported") is False
    for name in mirzoo.list_models():
        m = mirzoo.load(name)
        assert jax_out[name]["sha"] == weights_sha256(m.keras_model), name  # identical weights
        tf_emb = m.extract(y, sr=SR, layer="all").embeddings
        jax_emb = np.asarray(jax_out[name]["emb"], dtype=np.float32)
        scale = max(1.0, float(np.abs(tf_emb).max()))
        assert np.abs(tf_emb - jax_emb).max() <= 1e-4 * scale, (name, np.abs(tf_emb - jax_emb).max(), scale)


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_onednn_is_on_by_default_and_the_user_setting_wins(preset, expected):
    """``import mirzoo`` sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow can be imported, unless it is set."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if preset is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = preset
    code = "import os, sys, mirzoo; print(os.environ['TF_ENABLE_ONEDNN_OPTS'], 'tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [expected, "False"]  # set before TensorFlow is (lazily) imported


@pytest.mark.slow
def test_torch_backend_extracts_without_structure_warnings(tmp_path):
    """On the torch backend every model extracts with UserWarnings turned into errors: the network
    that runs takes one tensor (Keras warned on every batch when it was built with a list of one)."""
    pytest.importorskip("torch")
    y = tone_mix(4.0, seed=5)
    np.save(tmp_path / "y.npy", y)
    script = textwrap.dedent(
        """
        import sys, warnings
        import numpy as np
        import keras, mirzoo
        assert keras.backend.backend() == "torch", keras.backend.backend()
        warnings.simplefilter("error", UserWarning)
        y = np.load(sys.argv[1])
        for name in ("cnn-tagging", "tcn-music"):
            e = mirzoo.load(name).extract(y, sr=16000)
            assert np.isfinite(e.embeddings).all() and e.embeddings.shape[0] > 0
        print("RESULT ok")
        """
    )
    env = dict(os.environ, KERAS_BACKEND="torch")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "y.npy")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0 and "RESULT ok" in proc.stdout, proc.stderr[-3000:]
