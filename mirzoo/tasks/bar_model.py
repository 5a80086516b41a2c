"""A beat-synchronous bar model: the bar length and downbeat phase of a clip, read by a bidirectional GRU
over its tracked beats (a ``bar_model`` record in a model's entry, fitted by
``python -m training.musical fit-bars``).

The frame network hears about ten seconds at a time; a bar of 3/4 against one of 4/4 is a pattern over
many beats.  The record reads one row of features per tracked beat (what :func:`mirzoo.tasks.analyze.bar_features`
builds: the downbeat and beat evidence at the beat and the mean of chosen frame layers over the beat's
interval), runs a dense layer and one bidirectional GRU layer over the clip's beats, and gives each beat a
distribution over the joint classes ``(beats per bar, position in the bar)`` of :data:`BAR_CLASSES`.
:func:`decode_bars` then chooses the one bar length and phase that best explain every beat of the clip
(the meter is taken as constant over a clip).  After Krebs, Böck, Dorfer and Widmer, "Downbeat tracking
using beat-synchronous features with recurrent neural networks" (ISMIR 2016), which reads beat-synchronous
features with recurrent networks.

Numpy only: the record's arrays are the Keras layers' weights (``Dense``, ``Bidirectional(GRU)`` with
Keras' default ``reset_after=True`` form, ``Dense`` softmax); this module's forward pass gives what Keras
gives for the same weights (a test checks it).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mirzoo.errors import ParameterError
from mirzoo.spec import BAR_MODEL_ARRAYS
from mirzoo.tasks.clip_heads import decode_array

__all__ = ["BAR_CLASSES", "gru_sequence", "bar_class_probabilities", "decode_bars"]

#: the joint classes of a ``bar_model`` record's output, in order: ``(beats per bar, position)``, 1 = downbeat
BAR_CLASSES = ((2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3), (4, 4))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def gru_sequence(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
                 reverse: bool = False) -> np.ndarray:
    """``[steps, units]``: the outputs of a GRU layer (Keras' ``reset_after=True`` form, ``tanh`` and
    ``sigmoid``, gates in the order update, reset, candidate) over ``x`` (``[steps, inputs]``), from a zero
    state; ``reverse`` runs it from the last step and returns the outputs in the input's order.

    ``kernel`` is ``[inputs, 3 * units]``, ``recurrent`` ``[units, 3 * units]``, ``bias`` ``[2, 3 * units]``
    (input bias, recurrent bias)."""
    x = np.asarray(x, dtype=np.float64)
    units = recurrent.shape[0]
    projected = x @ kernel + bias[0]  # every step's input part at once
    h = np.zeros(units)
    out = np.zeros((x.shape[0], units))
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for t in steps:
        r_part = h @ recurrent + bias[1]
        z = _sigmoid(projected[t, :units] + r_part[:units])
        r = _sigmoid(projected[t, units:2 * units] + r_part[units:2 * units])
        candidate = np.tanh(projected[t, 2 * units:] + r * r_part[2 * units:])
        h = z * h + (1.0 - z) * candidate
        out[t] = h
    return out


def bar_class_probabilities(x: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """``[beats, len(BAR_CLASSES)]``: the record's class probabilities at each beat, from the beat features
    ``x`` (``[beats, d]``): standardised, a ``relu`` dense layer, the bidirectional GRU (forward and backward
    outputs concatenated), a softmax layer."""
    x = np.asarray(x, dtype=np.float64)
    a = {name: decode_array(record[name]) for name in BAR_MODEL_ARRAYS}
    if x.ndim != 2 or x.shape[1] != a["mean"].shape[0]:
        raise ParameterError(f"bar model features must be [beats, {a['mean'].shape[0]}], got shape {x.shape}")
    if x.shape[0] == 0:
        return np.zeros((0, a["output_bias"].shape[0]))
    h = np.maximum((x - a["mean"]) / a["scale"] @ a["dense_kernel"] + a["dense_bias"], 0.0)
    both = np.concatenate([gru_sequence(h, a["forward_kernel"], a["forward_recurrent"], a["forward_bias"]),
                           gru_sequence(h, a["backward_kernel"], a["backward_recurrent"], a["backward_bias"],
                                        reverse=True)], axis=1)
    logits = both @ a["output_kernel"] + a["output_bias"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def decode_bars(probabilities: np.ndarray, classes: Sequence[Sequence[int]] = BAR_CLASSES,
                floor: float = 1e-6) -> Optional[tuple[int, int]]:
    """``(beats per bar, phase)``: the bar length ``b`` and phase ``p`` (beat ``p`` is the first downbeat)
    whose positions ``(i - p) % b + 1`` have the largest summed log probability over the clip's beats, among
    the bar lengths of ``classes`` with at least two bars of beats; ``None`` when none has.  Ties go to the
    shorter bar, then the earlier phase."""
    probs = np.asarray(probabilities, dtype=np.float64)
    classes = [tuple(int(v) for v in c) for c in classes]
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ParameterError(f"probabilities must be [beats, {len(classes)}], got shape {probs.shape}")
    n = probs.shape[0]
    logp = np.log(probs + floor)
    index = {c: k for k, c in enumerate(classes)}
    best = None
    for b in sorted({c[0] for c in classes}):
        if n < 2 * b or any((b, j) not in index for j in range(1, b + 1)):
            continue
        for p in range(b):
            column = [index[(b, (i - p) % b + 1)] for i in range(n)]
            score = float(logp[np.arange(n), column].sum())
            if best is None or score > best[0]:
                best = (score, b, p)
    return None if best is None else (best[1], best[2])
