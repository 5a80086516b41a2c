"""Argument checks shared by every layer: one ``valid_*`` function per kind of check.

Owns the wording of "bad argument" messages, so that a positive integer, a pooling mode or
a number in a range is refused the same way everywhere: the message names the argument,
quotes the value received and says what was expected, and the error is
:class:`~mirzoo.errors.ParameterError`.  Each function returns the checked value (as a
plain Python ``int``/``float`` where that applies) so callers can write
``batch_size = valid_int("batch_size", batch_size)``.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Optional, Sequence

import numpy as np

from mirzoo.errors import ParameterError

__all__ = ["valid_int", "valid_number", "valid_choice", "valid_pool", "valid_precision", "check_tag_options",
           "PRECISIONS"]

#: ``precision`` argument of ``mirzoo.load`` -> Keras dtype policy of the layers after the front-end
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def _int_phrase(minimum: int) -> str:
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    return f"an integer >= {minimum}"


def valid_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> Optional[int]:
    """``value`` as an ``int`` if it is an integer (not a bool) ``>= minimum``; ``None`` passes with ``allow_none``.

    >>> valid_int("batch_size", 16)
    16
    >>> valid_int("batch_size", 0)
    Traceback (most recent call last):
    ...
    mirzoo.errors.ParameterError: batch_size=0 must be a positive integer
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)) or value < minimum:
        raise ParameterError(f"{name}={value!r} must be {_int_phrase(minimum)}{' or None' if allow_none else ''}")
    return int(value)


def check_tag_options(top_k: Any, threshold: Any) -> None:
    """The ``top_k`` and ``threshold`` of ``tag()``: a positive integer or None, a number in [0, 1] or None.

    Here, not in the extractor, so that the command line can refuse them before it loads a model.
    """
    valid_int("top_k", top_k, allow_none=True)
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (Real, np.integer, np.floating))
        or not 0.0 <= float(threshold) <= 1.0
    ):
        raise ParameterError(f"threshold={threshold!r} must be a number in [0, 1] or None")


def valid_number(
    name: str, value: Any, *, low: float = 0.0, strict: bool = True, unit: str = "", allow_none: bool = False
) -> Optional[float]:
    """``value`` as a ``float`` if it is a finite real number (not a bool) ``> low`` (``>= low`` if not ``strict``)."""
    if value is None and allow_none:
        return None
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (Real, np.integer, np.floating))
        and np.isfinite(value)
        and (value > low if strict else value >= low)
    )
    if not ok:
        bound = f"{'>' if strict else '>='} {low:g}"
        what = "a positive number" if (strict and low == 0) else f"a number {bound}"
        raise ParameterError(
            f"{name}={value!r} must be {what}{' of ' + unit if unit else ''}{' or None' if allow_none else ''}"
        )
    return float(value)


def valid_choice(name: str, value: Any, choices: Sequence, *, allow_none: bool = False, none_means: str = "") -> Any:
    """``value`` if it is one of ``choices`` (or ``None`` with ``allow_none``; ``none_means`` says what ``None`` does)."""
    if value is None and allow_none:
        return None
    if value not in tuple(choices):
        hint = f" (or None for {none_means})" if allow_none and none_means else (" (or None)" if allow_none else "")
        raise ParameterError(f"{name}={value!r} is not one of {tuple(choices)}{hint}")
    return value


def valid_pool(pool: Any, pools: Sequence[str], *, allow_none: bool = True) -> Optional[str]:
    """A pooling mode from ``pools`` (:data:`mirzoo.embeddings.POOLS` or a subset), or ``None`` for no pooling."""
    return valid_choice("pool", pool, pools, allow_none=allow_none, none_means="per-patch embeddings")


def valid_precision(precision: Any) -> Optional[str]:
    """``precision`` itself if it is ``None`` or a key of :data:`PRECISIONS`, else a ParameterError."""
    if precision is None or (isinstance(precision, str) and precision in PRECISIONS):
        return precision
    raise ParameterError(f"precision={precision!r} must be one of {sorted(PRECISIONS)} (or None for the "
                         f"global Keras dtype policy, float32 unless changed)")
