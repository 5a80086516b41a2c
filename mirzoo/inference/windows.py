"""Windowing plans: where a model's windows start and end on a signal of ``n`` samples.

Owns the one definition of how audio longer than a model's input is cut, used by every
path that runs a model (``Extractor.extract``, ``mirzoo.batch``, ``mirzoo.distributed``,
HEAR, sklearn, fine-tuning and ``training/``):

* **clip models** see patches of ``patch_samples`` every ``hop_samples``; the last patch
  (and a signal shorter than one patch) is padded with zeros; each patch gives one
  embedding, time-stamped at its centre (:class:`ClipPlan`);
* **frame models** see chunks of ``chunk_frames`` frames with ``margin_frames`` of real
  audio on each side, so every kept frame equals the frame of the whole signal computed
  in one piece; frame ``t`` is centred at ``t * hop_length / sample_rate`` (:class:`FramePlan`).

Numpy only: a plan is plain arithmetic on sample counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

__all__ = ["ClipPlan", "FramePlan", "FrameChunk", "WindowPlan", "cut", "clip_patches", "frame_margin", "pad_for_centres"]


def cut(y: np.ndarray, start: int, length: int) -> np.ndarray:
    """``y[start : start + length]``, zero-padded at the end to exactly ``length`` samples."""
    piece = y[start : start + length]
    if piece.shape[0] < length:
        piece = np.pad(piece, [(0, length - piece.shape[0])] + [(0, 0)] * (piece.ndim - 1))
    return piece


@dataclass(frozen=True)
class ClipPlan:
    """Patches of ``patch_samples`` every ``hop_samples`` at ``sample_rate``."""

    patch_samples: int
    hop_samples: int
    sample_rate: int

    def count(self, n: int) -> int:
        """Number of patches of a signal of ``n`` samples (at least 1)."""
        if n <= self.patch_samples:
            return 1
        return 1 + math.ceil((n - self.patch_samples) / self.hop_samples)

    def starts(self, n: int) -> np.ndarray:
        """First sample of each patch."""
        return np.arange(self.count(n)) * self.hop_samples

    def window(self, y: np.ndarray, start: int) -> np.ndarray:
        """The patch starting at ``start`` (zero-padded)."""
        return cut(y, int(start), self.patch_samples)

    def patches(self, y: np.ndarray) -> np.ndarray:
        """Every patch of ``y`` stacked: ``[count, patch_samples]`` float32."""
        return clip_patches(y, self.patch_samples, self.hop_samples)

    def timestamps(self, count: int) -> np.ndarray:
        """Centre of each of ``count`` patches, in seconds."""
        return (np.arange(count) * self.hop_samples + self.patch_samples / 2) / self.sample_rate


def clip_patches(y: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``[count, length]`` float32 patches of ``y`` every ``hop`` samples (the last zero-padded)."""
    plan = ClipPlan(int(length), int(hop), 1)
    starts = plan.starts(int(y.shape[0]))
    out = np.zeros((len(starts), int(length)), np.float32)
    for i, s in enumerate(starts):
        piece = y[s : s + length]
        out[i, : piece.shape[0]] = piece
    return out


class FrameChunk(NamedTuple):
    """Audio ``[left, right)`` to run; drop its first ``skip`` output frames and keep ``keep``."""

    left: int
    right: int
    skip: int
    keep: int


def frame_margin(kernel_length: int, hop_length: int, context_frames: int = 0) -> int:
    """Frames of real audio needed each side of a chunk so that its kept frames are exact.

    ``kernel_length`` is the front-end's analysis window (its reach is the half after the
    frame centre), ``context_frames`` the frames a frame model looks at on each side.
    """
    return math.ceil((kernel_length - kernel_length // 2) / hop_length) + int(context_frames) + 1


@dataclass(frozen=True)
class FramePlan:
    """Chunks of ``chunk_frames`` frames with ``margin_frames`` of context, hop ``hop_length``.

    Window lengths are kept to a few, because TensorFlow's oneDNN kernels build (and keep) new
    primitives for every input shape they meet: about 130 MB and 0.3 s per new length for
    ``tcn-music`` on a 2-core CPU, so a folder of files of different lengths grew without bound.
    (Most of that was the constant-Q front-end's one-channel strided convolutions; since they run
    over blocks of samples, :class:`mirzoo.nn.frontend.ConstantQ`, a new length costs about 6 MB
    and 0.03 s, which still adds up over thousands of lengths.)
    A window that ends at the signal's end (in a signal longer than one window) spans as many frames
    as the first window, or as the windows between when it must (it starts earlier than it needs to,
    which only adds context to the frames it keeps); and with ``pad_constant`` (a front-end that
    pads the signal with zeros) a window whose length is not a whole number of hops (one that ends
    at the signal's end) is zero-padded to the last sample before its next frame would begin, which
    adds no frame and changes no value.  Every signal longer than one window then runs in windows
    of the same few (at most four) lengths.  (Padding every window instead raised the peak memory
    of a 1-hour file by 670 MB with ``tcn-music``: oneDNN's kernels for the odd lengths need more.)
    ``share_lengths=False`` gives the earlier plan (the last window as short as it can be, no
    padding), for comparison (``benchmarks/frame_lengths.py``).
    """

    hop_length: int
    chunk_frames: int
    margin_frames: int
    min_samples: int
    sample_rate: int
    pad_constant: bool = False
    share_lengths: bool = True

    def n_frames(self, n: int) -> int:
        """Frames of a signal of ``n`` samples (centred frames: ``1 + n // hop``)."""
        return 1 + n // self.hop_length

    def count(self, n: int) -> int:
        """Number of chunks of a signal of ``n`` samples."""
        return len(self.chunks(n))

    def chunks(self, n: int) -> list[FrameChunk]:
        """The chunks covering every frame of a signal of ``n`` samples, in order."""
        hop = self.hop_length
        total = self.n_frames(n)
        margin = self.margin_frames
        edge = self.chunk_frames + margin + 1  # frames of the first window of a long signal
        middle = self.chunk_frames + 2 * margin + 1  # frames of the windows between
        out = []
        for first in range(0, total, self.chunk_frames):
            keep = min(self.chunk_frames, total - first)
            left = max(0, (first - margin) * hop)
            right = min(n, (first + keep + margin) * hop)
            if self.share_lengths and right == n and left > 0:
                # a window that ends at the signal's end: as many frames as the first window when they
                # hold its margin and kept frames, else as many as the windows between (they always do)
                span = edge if first - margin >= total - edge else middle
                left = max(0, min(left, (total - span) * hop))
            out.append(FrameChunk(left, right, first - left // hop, keep))
        return out

    def window(self, y: np.ndarray, chunk: FrameChunk) -> np.ndarray:
        """The audio of ``chunk``, zero-padded to the front-end's minimum length, and with
        ``pad_constant``, when it ends between two frames, to one sample short of a further frame
        (see the class)."""
        piece = y[chunk.left : chunk.right]
        size = piece.shape[0]
        if self.pad_constant and self.share_lengths and size % self.hop_length:
            size = (size // self.hop_length + 1) * self.hop_length - 1
        size = max(size, self.min_samples)  # too short for the front-end's padding
        if piece.shape[0] < size:
            piece = np.pad(piece, (0, size - piece.shape[0]))
        return piece

    def first_frame(self, chunk: FrameChunk) -> int:
        """Index, in the whole signal, of the first frame ``chunk`` keeps."""
        return chunk.left // self.hop_length + chunk.skip

    def timestamps(self, count: int) -> np.ndarray:
        """Centre of each of ``count`` frames, in seconds."""
        return np.arange(count) * self.hop_length / self.sample_rate


def pad_for_centres(x: np.ndarray, length: int) -> np.ndarray:
    """Pad ``x`` [..., n] with zeros so that the ``length``-sample window *centred* on sample ``c``
    is ``padded[..., c : c + length]`` (HEAR's timestamp embeddings of clip models)."""
    half = length // 2
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, length - half)])


WindowPlan = Union[ClipPlan, FramePlan]
