"""Figures: an analysis over a constant-Q spectrogram, and a taggram (tags over time).

Owns drawing what ``mirzoo analyze --plot`` and ``mirzoo tag --plot`` write.  matplotlib
and ``librosa.display`` are optional (``pip install "mirzoo[plot]"``); without them a
:class:`~mirzoo.MissingDependencyError` names the install command.  Figures are drawn with
matplotlib's object interface and the Agg canvas (no ``pyplot``, no global backend
change) and saved atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from mirzoo.errors import MissingDependencyError, ParameterError
from mirzoo.fileio import atomic_file
from mirzoo.tasks.analyze import NO_KEY

__all__ = ["require_matplotlib", "check_plot_path", "plot_analysis", "plot_taggram", "PLOT_SUFFIXES"]

#: file suffixes a figure can be written to
PLOT_SUFFIXES = (".png", ".pdf", ".svg")

_INSTALL = 'pip install "mirzoo[plot]"'


def require_matplotlib():
    """``(Figure, FigureCanvasAgg)``, or a :class:`MissingDependencyError` naming the install command."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: optional dependency
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(f"plotting needs matplotlib ({exc}); install it with: {_INSTALL}") from exc
    return Figure, FigureCanvasAgg


def check_plot_path(path: Union[str, os.PathLike]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it ends in .png, .pdf or .svg (any case); else a
    :class:`ParameterError` naming it.  Needs no matplotlib, so a command can check it first."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ParameterError(f"plot file '{path}' must end in .png, .pdf or .svg")
    return path


def _save(fig, canvas_cls, path: Union[str, os.PathLike]) -> Path:
    path = check_plot_path(path)
    canvas_cls(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower()[1:], dpi=110, bbox_inches="tight")
    return path


def plot_analysis(analysis, y: np.ndarray, sr: int, path: Union[str, os.PathLike], *,
                  hop_length: int = 512) -> Path:
    """Draw a log-frequency (constant-Q) spectrogram of ``y`` with the analysis on top.

    Beats are thin dashed lines, downbeats solid ones; chord segments are labelled in a strip
    under the spectrogram; the title gives the key, tempo and meter.  Written to ``path``
    (``.png``, ``.pdf`` or ``.svg``) atomically.
    """
    Figure, Canvas = require_matplotlib()
    import librosa  # deferred: slow to import (numba), and only plots need its display helpers here
    try:
        import librosa.display  # deferred: imports matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib present but librosa.display broken
        raise MissingDependencyError(f"plotting needs librosa.display ({exc}); install with: {_INSTALL}") from exc

    y = np.asarray(y, dtype=np.float32)
    n_bins, fmin = 72, librosa.note_to_hz("C2")
    if y.size < hop_length * 2:
        y = np.pad(y, (0, hop_length * 2 - y.size))
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=hop_length, fmin=fmin, n_bins=n_bins, bins_per_octave=12))
    db = librosa.amplitude_to_db(cqt, ref=np.max)
    width = float(np.clip(analysis.duration / 3.0, 8.0, 30.0))
    fig = Figure(figsize=(width, 5.0))
    ax, strip = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    librosa.display.specshow(db, sr=sr, hop_length=hop_length, x_axis="time", y_axis="cqt_note", fmin=fmin,
                             bins_per_octave=12, ax=ax, cmap="magma")
    for t in analysis.beats:
        ax.axvline(float(t), color="white", lw=0.6, ls="--", alpha=0.6)
    for t in analysis.downbeats:
        ax.axvline(float(t), color="cyan", lw=1.2, alpha=0.9)
    ax.set_xlabel("")
    key = "none" if analysis.key == NO_KEY else analysis.key
    rhythm = "no beats" if analysis.tempo is None else f"{analysis.tempo:.1f} BPM, {analysis.meter}"
    ax.set_title(f"{Path(analysis.source).name if analysis.source else 'audio'}: key {key}, "
                 f"{rhythm}   (dashed: beats, cyan: downbeats)")
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    for i, seg in enumerate(analysis.chords):
        strip.axvspan(seg.start, seg.end, color=("#dde6f0" if i % 2 else "#f0e6dd"), lw=0)
        if seg.end - seg.start >= 0.25:
            strip.text((seg.start + seg.end) / 2, 0.5, seg.label, ha="center", va="center", fontsize=7,
                       rotation=90 if seg.end - seg.start < 1.0 else 0)
    strip.set_ylabel("chords", rotation=0, ha="right", va="center")
    strip.set_xlabel("time (s)")
    strip.set_xlim(0, max(analysis.duration, 1e-3))
    return _save(fig, Canvas, path)


def plot_taggram(probs: np.ndarray, labels: Sequence[str], times: np.ndarray, path: Union[str, os.PathLike], *,
                 title: Optional[str] = None, max_tags: int = 30) -> Path:
    """Draw a taggram: probability of each tag (rows) over time (columns).

    ``probs [T, K]`` are per patch or frame, centred at ``times [T]`` seconds.  With more than
    ``max_tags`` labels, the ``max_tags`` with the highest mean are shown (in label order).
    """
    Figure, Canvas = require_matplotlib()
    probs = np.asarray(probs, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(labels) or probs.shape[0] != times.shape[0] or probs.shape[0] == 0:
        raise ParameterError(f"probs must be [frames, {len(labels)}] with one time per frame, got "
                             f"{probs.shape} and {times.shape[0]} times")
    keep = np.arange(len(labels))
    if len(labels) > max_tags:
        keep = np.sort(np.argsort(-probs.mean(axis=0), kind="stable")[:max_tags])
    step = float(np.median(np.diff(times))) if times.size > 1 else 1.0
    extent = (times[0] - step / 2, times[-1] + step / 2, len(keep) - 0.5, -0.5)
    fig = Figure(figsize=(float(np.clip(times[-1] / 3.0, 8.0, 30.0)), 0.25 * len(keep) + 1.5))
    ax = fig.subplots()
    image = ax.imshow(probs[:, keep].T, aspect="auto", interpolation="nearest", cmap="Blues", vmin=0.0, vmax=1.0,
                      extent=extent)
    ax.set_yticks(range(len(keep)))
    ax.set_yticklabels([labels[i] for i in keep], fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_title(title or "taggram")
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01, label="probability")
    return _save(fig, Canvas, path)
