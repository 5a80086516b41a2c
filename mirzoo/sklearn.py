"""scikit-learn integration: :class:`EmbeddingTransformer`, clip embeddings as features.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> from mirzoo.sklearn import EmbeddingTransformer
>>> pipe = make_pipeline(EmbeddingTransformer(model="cnn-tagging", pool="mean+std"),
...                      LogisticRegression(max_iter=1000))       # doctest: +SKIP
>>> pipe.fit(train_paths, y_train).score(test_paths, y_test)     # doctest: +SKIP

The transformer is a thin, stateless wrapper around :meth:`mirzoo.Extractor.extract`:
``fit`` checks the parameters and loads the model, ``transform`` turns each clip into
one pooled embedding vector.  It works inside ``Pipeline``, ``GridSearchCV``,
``clone`` and ``pickle``:

* parameters are stored exactly as given (no validation or conversion in
  ``__init__``), so ``clone`` and ``set_params`` behave as scikit-learn expects;
* the Keras model is loaded lazily, on the first ``fit``/``transform``, through
  :func:`mirzoo.load` (which shares one built graph per model and process), and it is
  dropped when the transformer is pickled: an unpickled transformer reloads it
  (weights sha256-checked again) the first time it is used;
* embeddings are never cached between calls; wrap the pipeline with
  ``Pipeline(memory=...)`` to cache them on disk.
"""

from __future__ import annotations

import os
import numpy as np

try:
    from sklearn.base import BaseEstimator, TransformerMixin  # deferred: optional dependency (scikit-learn)
    from sklearn.utils.validation import check_is_fitted  # deferred: optional dependency (scikit-learn)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "mirzoo.sklearn needs scikit-learn: pip install 'mirzoo[sklearn]'"
    ) from exc

from mirzoo._checks import valid_choice, valid_int, valid_number, valid_precision
from mirzoo.embeddings import POOLS
from mirzoo.errors import AudioError, ParameterError
from mirzoo.loader import load

__all__ = ["EmbeddingTransformer"]

_POOLS = POOLS  # one list of pooling modes, owned by mirzoo.embeddings


class EmbeddingTransformer(TransformerMixin, BaseEstimator):
    """Turn audio clips into fixed-size embedding vectors with a mirzoo model.

    Parameters
    ----------
    model : str or os.PathLike
        Anything :func:`mirzoo.load` accepts: a zoo name (``"cnn-tagging"``),
        ``"name@revision"``, ``"hf://owner/repo@rev"`` or a directory written by
        :meth:`mirzoo.Extractor.save`.  An in-memory :class:`~mirzoo.Extractor` is not
        accepted, because ``clone`` deep-copies parameters: save it and pass the directory.
    pool : {"mean", "max", "mean+std"}
        How each clip's per-patch (or per-frame) embeddings are pooled over time.
        ``"mean+std"`` doubles the dimension and usually helps linear classifiers.
    layer : str or None
        Embedding layer (default: the model's ``default_layer``), or ``"all"`` for the
        multi-layer feature of Choi et al. (2017).
    sr : int > 0 or None
        Sample rate of array input.  Required when ``X`` holds arrays; ignored for
        paths (files are decoded and resampled to the model's rate).
    batch_size : int > 0
        Patches per forward pass.
    hop : float > 0 or None
        Clip models: seconds between patch starts (default: the model's, half a patch);
        ``hop=3.0`` on a 3 s-patch model gives non-overlapping patches at half the cost.
    precision : {"float32", "bfloat16", "float16"} or None
        Compute dtype after the front-end, as in :func:`mirzoo.load` (``"bfloat16"``: faster on
        CPUs with AMX/AVX512-BF16 units, embeddings within ~3e-4 in cosine of float32).

    Input ``X``
    -----------
    * a list (or 1-D array, or pandas Series) of file paths;
    * a list of 1-D waveforms (any lengths, float or integer PCM) with ``sr``;
    * a 2-D numeric array ``[n_clips, n_samples]`` with ``sr``: each **row** is one
      mono waveform (this is how scikit-learn's generic estimator checks, which feed
      2-D numeric arrays, exercise the transformer);
    * a mixed list of paths and waveforms, or a one-column DataFrame of paths.

    Output: ``np.ndarray [shape=(n_clips, D), dtype=float32]``, with ``D`` the layer's
    dimension (twice that for ``"mean+std"``).

    Attributes
    ----------
    n_features_out_ : int
        Dimension of the output vectors.
    model_name_ : str
        Name of the loaded model.
    layer_ : str
        The layer actually used (``layer`` resolved against the model).
    """

    def __init__(self, model="cnn-tagging", pool="mean+std", layer=None, sr=None, batch_size=16, hop=None,
                 precision=None):
        self.model = model
        self.pool = pool
        self.layer = layer
        self.sr = sr
        self.batch_size = batch_size
        self.hop = hop
        self.precision = precision

    # -- parameters and the lazily loaded model ---------------------------------------------
    def _check_params(self) -> None:
        if not isinstance(self.model, (str, os.PathLike)):
            raise ParameterError(
                f"model={self.model!r} must be a model name, reference or saved-model directory "
                f"(str or path), got {type(self.model).__name__}; save an in-memory Extractor with "
                f".save(dir) and pass the directory"
            )
        valid_choice("pool", self.pool, _POOLS)
        if self.layer is not None and not isinstance(self.layer, str):
            raise ParameterError(f"layer={self.layer!r} must be a layer name, 'all' or None")
        valid_number("sr", self.sr, unit="Hz", allow_none=True)
        valid_int("batch_size", self.batch_size)
        valid_number("hop", self.hop, unit="seconds", allow_none=True)
        valid_precision(self.precision)

    def _get_extractor(self):
        """The Extractor for ``self.model``, loaded on first use and kept until pickling."""
        cached = self.__dict__.get("_extractor")
        if cached is not None and cached[0] == (self.model, self.precision):
            return cached[1]
        extractor = load(self.model, precision=self.precision)
        self.__dict__["_extractor"] = ((self.model, self.precision), extractor)
        return extractor

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_extractor", None)  # the Keras model is rebuilt (and re-verified) on first use
        return state

    # -- input handling ---------------------------------------------------------------------
    def _items(self, X) -> list:
        """``X`` as a list of paths and 1-D/2-D arrays, checked once."""
        if isinstance(X, (str, bytes, os.PathLike)):
            raise ParameterError(
                f"X={X!r} is a single path: pass a list of paths (one clip per element)"
            )
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise ParameterError(
                f"X is a {type(X).__name__}: sparse input is not supported; expected paths or dense waveforms"
            )
        if not isinstance(X, (np.ndarray, list, tuple)) and (hasattr(X, "iloc") or hasattr(X, "__array__")):
            X = np.asarray(X)  # pandas Series/DataFrame, array-likes
        if isinstance(X, np.ndarray):
            if X.ndim == 2 and X.dtype.kind == "O" and X.shape[1] == 1:
                X = X[:, 0]
            if X.ndim == 2 and X.dtype.kind == "O":
                try:
                    X = X.astype(np.float64)
                except (TypeError, ValueError) as exc:
                    raise ParameterError(
                        f"X is a 2-D object array of shape {X.shape} whose values are not all numbers "
                        f"({exc}): expected a 2-D numeric array [n_clips, n_samples] of waveforms, "
                        f"or a list of paths/arrays"
                    ) from exc
            if X.dtype.kind == "c":
                raise ParameterError(f"X has dtype {X.dtype}: Complex data not supported, expected real waveforms")
            if X.ndim == 2:
                if X.dtype.kind not in "fiu":
                    raise ParameterError(
                        f"X is a 2-D array of dtype {X.dtype}: expected numeric waveforms "
                        f"[n_clips, n_samples] or a list of paths"
                    )
                if self.sr is None:
                    raise ParameterError(
                        f"X is a 2-D numeric array of shape {X.shape}, read as {X.shape[0]} waveforms of "
                        f"{X.shape[1]} samples: pass sr=<Hz> to EmbeddingTransformer (or give file paths)"
                    )
                items = list(X)
            elif X.ndim == 1 and X.dtype.kind in "OUS":
                items = list(X)
            elif X.ndim == 1:
                raise ParameterError(
                    f"X is a 1-D numeric array of shape {X.shape} (a single waveform?): expected a "
                    f"collection of clips: a list of paths or arrays, or a 2-D array "
                    f"[n_clips, n_samples] with sr=<Hz>. Reshape your data: wrap one waveform as [y]"
                )
            else:
                raise ParameterError(
                    f"X has shape {X.shape}: expected a list of paths or waveforms, or a 2-D array "
                    f"[n_clips, n_samples]"
                )
        elif isinstance(X, (list, tuple)):
            items = list(X)
        else:
            raise ParameterError(
                f"X of type {type(X).__name__} is not supported: expected a list of paths or waveforms, "
                f"or a 2-D array [n_clips, n_samples] with sr=<Hz>"
            )
        if len(items) == 0:
            raise ParameterError("X is empty (0 clips): expected at least one path or waveform")
        out = []
        for i, item in enumerate(items):
            if isinstance(item, np.str_):
                item = str(item)
            if isinstance(item, (str, os.PathLike)):
                out.append(item)
                continue
            if isinstance(item, (list, tuple)) or hasattr(item, "__array__"):
                item = np.asarray(item)
            if not isinstance(item, np.ndarray) or item.dtype.kind not in "fiu":
                raise ParameterError(
                    f"X[{i}] of type {type(item).__name__} is not a path or a numeric waveform"
                )
            if item.size == 0:
                raise AudioError(f"X[{i}] is an empty waveform (shape {item.shape}): expected at least one sample")
            if item.dtype.kind == "f" and not np.all(np.isfinite(item)):
                raise AudioError(f"X[{i}] contains NaN or inf samples: expected finite values")
            if self.sr is None:
                raise ParameterError(
                    f"X[{i}] is a waveform of shape {item.shape}: pass sr=<Hz> to EmbeddingTransformer"
                )
            out.append(item)
        return out

    # -- scikit-learn API -------------------------------------------------------------------
    def fit(self, X, y=None):
        """Check parameters and input, load the model.  Nothing is learnt.

        ``X`` is checked (types, shapes, ``sr`` when arrays are given) but not
        embedded: a pretrained extractor has nothing to fit.
        """
        self._check_params()
        self._items(X)
        extractor = self._get_extractor()
        layer, keys = extractor.resolve_layers(self.layer)
        extractor.plan_for(self.hop)  # a frame model with a hop is refused here
        dim = sum(int(extractor.layers[k]) for k in keys)
        self.model_name_ = extractor.name
        self.layer_ = layer
        self.n_features_out_ = dim * (2 if self.pool == "mean+std" else 1)
        return self

    def transform(self, X) -> np.ndarray:
        """Pooled embeddings, one row per clip: ``[n_clips, n_features_out_]`` float32."""
        check_is_fitted(self, "n_features_out_")
        self._check_params()
        items = self._items(X)
        extractor = self._get_extractor()
        vectors = extractor.extract(
            items,
            sr=self.sr,
            layer=self.layer,
            pool=self.pool,
            batch_size=int(self.batch_size),
            hop=self.hop,
        )
        out = np.stack(vectors).astype(np.float32, copy=False)
        if out.shape[1] != self.n_features_out_:
            raise ParameterError(
                f"model {self.model!r} now gives {out.shape[1]} features, but this transformer was fitted "
                f"with {self.n_features_out_}: refit it"
            )
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output feature names: ``"<layer>_<stat><index>"``, e.g. ``embedding_mean0``, ``embedding_std0``.

        With ``layer="all"`` each component layer is named separately
        (``block1_mean0`` ... ``block5_mean255``).  ``input_features`` is ignored:
        inputs are clips, not named columns.
        """
        check_is_fitted(self, "n_features_out_")
        extractor = self._get_extractor()
        _, keys = extractor.resolve_layers(self.layer)
        stats = ("mean", "std") if self.pool == "mean+std" else (self.pool,)
        names = [f"{k}_{stat}{i}" for stat in stats for k in keys for i in range(int(extractor.layers[k]))]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32 whatever the input
        tags.input_tags.two_d_array = True  # rows of a 2-D array are waveforms (with sr)
        tags.input_tags.string = True  # paths
        tags.input_tags.allow_nan = False
        return tags
