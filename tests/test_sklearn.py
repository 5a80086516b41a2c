"""mirzoo.sklearn.EmbeddingTransformer: scikit-learn's estimator checks, pipelines, grid search,
clone and pickle, on tiny synthetic audio with the cheap random-weight model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import mirzoo  # noqa: E402
from conftest import SR, tone_mix  # noqa: E402
from mirzoo.errors import ParameterError  # noqa: E402
from mirzoo.sklearn import EmbeddingTransformer  # noqa: E402

MODEL = "random-cnn"

# scikit-learn's generic checks feed 2-D numeric arrays; with sr set, each row is read as one
# waveform.  The checks below assume that the number of columns is a number of *features*
# that must stay the same between fit and transform; for waveforms it is a clip length, and
# clips of any length are valid input, so these fail on purpose:
EXPECTED_FAILED_CHECKS = {
    "check_n_features_in": "columns are waveform samples, not features: n_features_in_ is not set",
    "check_n_features_in_after_fitting": "clips of any length are accepted: no n_features_in_ to enforce",
    "check_transformer_general": "transform accepts waveforms of another length than those seen in fit",
    "check_estimators_empty_data_messages": "a 0-sample clip raises AudioError (a ValueError) that names "
    "the empty clip, not scikit-learn's '0 feature(s)' wording",
    # A clip's embedding does not depend on its batch mates, but different batch *shapes* run
    # different (oneDNN) kernels: entries agree to ~1e-6 of the embedding's scale, which can miss
    # this check's rtol=1e-4 / atol=1e-7 on entries close to zero.  Often passes (not strict).
    "check_methods_subset_invariance": "float32 rounding differs between batch shapes near zero",
}


@parametrize_with_checks(
    [EmbeddingTransformer(model=MODEL, sr=SR, pool="mean")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Twelve 1 s clips, two classes (low vs high notes), half as files, half as arrays."""
    d = tmp_path_factory.mktemp("clips")
    waves, labels = [], []
    for i in range(12):
        label = i % 2
        freqs = (110.0, 165.0) if label == 0 else (1760.0, 2637.0)
        waves.append(tone_mix(1.0, seed=i, freqs=freqs))
        labels.append(label)
    paths = []
    for i, y in enumerate(waves):
        p = d / f"clip{i:02d}.wav"
        sf.write(p, y, SR, subtype="FLOAT")  # exact: files and arrays give the same embeddings
        paths.append(str(p))
    return paths, waves, np.array(labels)


def test_transform_paths_arrays_and_2d(dataset):
    paths, waves, _ = dataset
    t = EmbeddingTransformer(model=MODEL, pool="mean+std", sr=SR).fit(paths)
    from_paths = t.transform(paths[:4])
    dim = mirzoo.load(MODEL).layers["embedding"]
    assert from_paths.shape == (4, 2 * dim) and from_paths.dtype == np.float32
    assert t.n_features_out_ == 2 * dim and t.layer_ == "embedding" and t.model_name_ == MODEL
    np.testing.assert_allclose(t.transform(waves[:4]), from_paths, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.transform(np.stack(waves[:4])), t.transform(waves[:4]), rtol=1e-5, atol=1e-5)
    mixed = t.transform([paths[0], waves[1]])
    np.testing.assert_allclose(mixed[1], t.transform(waves[1:2])[0], rtol=1e-5, atol=1e-5)
    ref = mirzoo.load(MODEL).extract(paths[0], pool="mean+std")
    np.testing.assert_allclose(from_paths[0], ref, rtol=1e-5, atol=1e-5)
    names = t.get_feature_names_out()
    assert names.shape == (2 * dim,) and names[0] == "embedding_mean0" and names[-1] == f"embedding_std{dim - 1}"


def test_layer_all_feature_names():
    t = EmbeddingTransformer(model="random-cnn-musical", pool="mean", layer="all", sr=SR)
    x = t.fit_transform([tone_mix(0.5, seed=1)])
    names = t.get_feature_names_out()
    assert x.shape == (1, len(names)) and names[0] == "timbral_mean0" and names[-1] == "temporal_mean95"


def test_pipeline_grid_search_clone_pickle(dataset, tmp_path):
    paths, _, labels = dataset
    paths, y = paths[:8], labels[:8]  # trained on 8 clips, scored on other clips and other notes
    heldout, y_heldout = [], []
    for i, freqs in enumerate([(98.0, 147.0), (123.0, 185.0), (1568.0, 2349.0), (1976.0, 2960.0)]):
        path = tmp_path / f"heldout{i}.wav"
        sf.write(path, tone_mix(1.0, seed=100 + i, freqs=freqs), SR, subtype="FLOAT")
        heldout.append(str(path))
        y_heldout.append(int(freqs[0] > 1000))
    heldout += dataset[0][8:]
    y_heldout = np.concatenate([y_heldout, labels[8:]])
    pipe = make_pipeline(EmbeddingTransformer(model=MODEL, pool="mean"), LogisticRegression(max_iter=2000))
    grid = GridSearchCV(
        pipe,
        {"embeddingtransformer__pool": ["mean", "mean+std"], "logisticregression__C": [0.1, 10.0]},
        cv=2,
    )
    grid.fit(paths, y)
    assert set(grid.best_params_) == {"embeddingtransformer__pool", "logisticregression__C"}
    assert grid.score(heldout, y_heldout) >= 0.85  # low vs high notes, 8 held-out clips: at most one miss

    fitted = grid.best_estimator_
    clone_ = clone(fitted)
    assert clone_.get_params()["embeddingtransformer__model"] == MODEL
    assert not hasattr(clone_.named_steps["embeddingtransformer"], "n_features_out_")

    blob = pickle.dumps(fitted)
    assert len(blob) < 200_000  # the Keras model is not in the pickle
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.predict(paths), fitted.predict(paths))


def test_parameters_are_stored_as_given_and_checked_at_fit(dataset):
    paths, waves, _ = dataset
    t = EmbeddingTransformer(model=MODEL, pool="median", batch_size="16", sr=-5)
    assert t.get_params() == {"model": MODEL, "pool": "median", "layer": None, "sr": -5, "batch_size": "16",
                              "hop": None, "precision": None}
    with pytest.raises(ParameterError, match="pool='median'"):
        t.fit(paths)
    with pytest.raises(ParameterError, match="sr=-5"):
        t.set_params(pool="mean").fit(paths)
    with pytest.raises(ParameterError, match="batch_size='16'"):
        t.set_params(sr=None).fit(paths)
    with pytest.raises(ParameterError, match="valid layers"):
        EmbeddingTransformer(model=MODEL, layer="nope").fit(paths)
    with pytest.raises(ParameterError, match="sr=<Hz>"):
        EmbeddingTransformer(model=MODEL).fit(waves)
    with pytest.raises(ParameterError, match="single path"):
        EmbeddingTransformer(model=MODEL).fit(paths[0])
    with pytest.raises(ParameterError, match="Extractor"):
        EmbeddingTransformer(model=mirzoo.load(MODEL)).fit(paths)
    with pytest.raises(mirzoo.UnknownModelError, match="random-cnn"):
        EmbeddingTransformer(model="random-cn").fit(paths)
