"""Embeddings as results: the :class:`Embeddings` record and pooling over time (numpy only).

Owns the result type every path returns (``Extractor.extract``, ``mirzoo.batch``,
``mirzoo.distributed``, HEAR, sklearn) and the one list of pooling modes, :data:`POOLS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from mirzoo.errors import ParameterError

__all__ = ["Embeddings", "POOLS", "pool_embeddings"]

POOLS = ("mean", "max", "mean+std")


def pool_embeddings(embeddings: np.ndarray, pool: str) -> np.ndarray:
    """Pool ``[T, D]`` embeddings over time: ``"mean"``/``"max"`` -> ``[D]``, ``"mean+std"`` -> ``[2D]``."""
    if pool not in POOLS:
        raise ParameterError(f"pool={pool!r} is not one of {POOLS}")
    e = np.asarray(embeddings, dtype=np.float32)
    if pool == "mean":
        return e.mean(axis=0)
    if pool == "max":
        return e.max(axis=0)
    return np.concatenate([e.mean(axis=0), e.std(axis=0)]).astype(np.float32)


@dataclass
class Embeddings:
    """Embeddings of one input.

    Attributes
    ----------
    embeddings : np.ndarray [shape=(T, D), dtype=float32]
        One vector per patch (clip models) or per frame (frame models).
    timestamps : np.ndarray [shape=(T,), dtype=float64]
        Centre of each patch or frame, in seconds from the start of the input.
    layer : str
        The layer the embeddings come from (``"all"`` for the multi-layer feature).
    model : str
        Name of the model that produced them.
    source : str or None
        The input's path, when it was a file.
    """

    embeddings: np.ndarray
    timestamps: np.ndarray
    layer: str
    model: str = ""
    source: Optional[str] = None
    duration: float = 0.0
    extra: dict = field(default_factory=dict, repr=False)

    def pooled(self, pool: str = "mean") -> np.ndarray:
        """Clip-level vector: ``"mean"``, ``"max"`` (``[D]``) or ``"mean+std"`` (``[2D]``)."""
        return pool_embeddings(self.embeddings, pool)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.embeddings.shape)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])
