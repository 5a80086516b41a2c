"""Musical analysis from a frame model's heads: key, tempo, meter, beats, downbeats, chords.

Owns turning the frame-wise outputs of a model such as ``tcn-music`` (heads ``beats``,
``key``, ``chord``, ``meter`` and ``tempo``, one vector per frame) into clip-level answers
with times in seconds, and the :class:`Analysis` that holds them.  ``Extractor.analyze``
and ``mirzoo analyze`` call :func:`analyze`; the pieces below are public and numpy-only,
so they can be used (and are tested) on activations from anywhere.

How each answer is read (``fps`` is the model's frame rate, 50 for ``tcn-music``):

* **key**: when the model carries a ``clip_key`` record (``tcn-music`` does), the global key
  is scored from the key head's clip average *and* the chord head's (:func:`clip_key_scores`:
  the chords a key uses, weighed per interval from the tonic, fitted on the valid split, and,
  for a model with a ``mode`` head whose record has a ``mode_scale``, the mode head's clip average;
  a record of the ``"profiles"`` form weighs the key head with learnt key profiles of the ``pitch_classes``
  head, over the whole clip and over its last seconds, where a cadence usually lands on the tonic, in
  place of the chord and mode terms);
  otherwise it is the mean of the frame key probabilities.  The top three are kept with their
  probabilities.  **Local keys**: the most probable
  key path under a switching penalty (:func:`smooth_labels`, a Viterbi decode whose only
  transition cost is a fixed penalty per change), merged into segments.
* **bar lengths**: beats per bar follow the beat
  unit of the training targets (music21's ``beatDuration``): 2 in 2/2, 2/4, 6/8 and 6/4,
  3 in 3/4, 3/2 and 9/8, 4 in 4/4, 4/2 and 12/8, 5 in 5/4 and 1 in 3/8.
* **several playback rates** (``rhythm_shifts``, :func:`analyze` only; default one pass): with
  ``rhythm_shifts=RATE_ENSEMBLE`` the network also hears the audio played 1/3 and 2/3 of a semitone
  faster and slower (a tape's speed change: tempo and pitch together, :func:`mirzoo.audio.change_rate`);
  each pass's beat, tempo and meter outputs are put back on the clip's time grid (the tempo head's
  classes moved back by the rate, :func:`align_rate_frames`) and averaged with the plain pass's
  (:func:`rhythm_ensemble`) before anything below reads them.  Key, chords, mode and pitch classes come
  from the plain pass.  On the valid clips of the three training renders (821 with beats, ``tcn-music``):
  downbeat F 0.760 -> 0.782, beat F 0.915 -> 0.915, tempo Acc1 0.878 -> 0.882, time signature 0.641 ->
  0.635.  On the held-out TimGM6mb render (``benchmarks/musicality.py --rhythm-shifts``): downbeat F
  0.734 -> 0.735, beat F 0.896 -> 0.891, time signature 0.614 -> 0.595, all within the piece-bootstrap
  noise; at five passes' cost, so it is an option, not the default.
* **tempo**: the tempo head's mean distribution (interpolated onto a fine log-tempo grid)
  times the autocorrelation of the beat activation at the matching lag; the best tempo
  seeds the beat tracker, and the median spacing of the tracked beats refines it when it
  lies within 8 % of the seed.  Tempo is in *notated* beats per minute (dotted quarters in
  6/8), as the training targets are.
* **beats** (``beat_tracker="hmm"``, the default): the most probable path of a beat-period hidden
  Markov model (:func:`track_beats_hmm`; the "bar pointer" of Whiteley et al. 2006 and Krebs et al.
  2015 with one beat per bar, written here in numpy).  A state is a beat interval (whole frames,
  within ``beat_band`` of the tempo's period either way) and a position inside it; the next
  interval may differ from the last, less likely the more it differs, so the path follows tempo
  drift to the frame where a constant period cannot.  Weak beats at the two ends (activation
  below 0.3 of the median beat) are dropped.  On the valid split of corpus version 2 (448 clips,
  ``tcn-music``; band, transition cost and trimming chosen on one half, confirmed on the other),
  against the dynamic program below: beat F 0.893 -> 0.912, downbeat F 0.596 -> 0.608, meter and
  tempo unchanged (the bar phase and meter are then read from these beats as before).
  ``beat_tracker="dp"``: dynamic programming on the beat activation (:func:`track_beats`, Ellis
  2007): each frame's score is its activation plus the best earlier
  score at a distance of half to twice the beat period, penalised by
  ``tightness * log(distance / period)**2``; weak beats at the ends (below a fifth of the
  median) are dropped.
* **downbeat evidence** of a beat: its downbeat activation divided by its beat activation plus
  ``downbeat_floor`` (:func:`downbeat_evidence`), i.e. the share of the beat's salience the model
  gives to its being a downbeat.  The raw downbeat activation rises on every strong beat; the ratio
  separates bars better (on the valid split of corpus version 2, 448 clips, with ``tcn-music``:
  downbeat F 0.550 -> 0.595, bar length 0.57 -> 0.76, time signature 0.43 -> 0.55).
* **meter**: each bar length (2, 3 or 4 beats, or the meter head's best) scores the log of the
  meter head's probability for it plus ``meter_contrast`` times how much more downbeat
  evidence its best bar phase carries than the other beats (:func:`choose_meter`); the meter
  is the head's most probable meter of the winning bar length (``meter_candidates``: that meter, then
  the head's two most probable others, each with the head's clip-mean probability).
* **downbeats**: given ``b`` beats per bar, the phase ``0 <= p < b`` whose beats
  ``p, p + b, ...`` have the highest mean downbeat evidence.
* **meter and downbeats together** (a model whose entry has a ``downbeat_model`` record, fitted by
  ``python -m training.musical fit-downbeats``; no shipped model has one yet): every bar length of
  2, 3 or 4 beats and every phase is a candidate (:func:`bar_candidates`: the downbeat and beat
  activations, their ratio, how far the chord and pitch-class distributions move at each beat, and
  how much the chords vary inside the candidate's bars, summarised per bar position; plus the meter
  head's probability of that bar length), and a
  small network fitted on the train split of corpus version 2 scores them (:func:`choose_bars`); the
  meter is the meter head's most probable one of the winning bar length.  It was meant for the quarter
  of the clips whose 4/4 bars the evidence above starts on beat 3; for ``tcn-music``'s weights it
  gained 0.10 downbeat F on the training renders' valid clips but 0.017 on the held-out render.
* **bars from a recurrent network over the beats** (a model whose entry has a ``bar_model`` record,
  fitted by ``python -m training.musical fit-bars``; it takes precedence over a ``downbeat_model``): each
  tracked beat gets a row of features (:func:`bar_features`: the beat features above and the means of the
  embedding and of the pitch-class, chord and beat heads over the beat's interval); a bidirectional GRU
  (:mod:`mirzoo.tasks.bar_model`) gives every beat a distribution over (beats per bar, position), and the
  one bar length and phase that explain the clip's beats best are chosen (:func:`choose_bars_by_model`).
  It hears the whole clip, where the frame network hears about ten seconds.
* **chords**: the frame chord probabilities decoded with a switching penalty (as local
  keys, with a smaller penalty) and merged into ``[start, end, label]`` segments.

Frame ``t`` is centred at ``t / fps`` seconds, as in :meth:`mirzoo.Extractor.timestamps`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from mirzoo.audio import change_rate, warn_silent
from mirzoo.errors import ParameterError
from mirzoo.spec import BAR_MODEL_ARRAYS, BAR_MODEL_BEAT_FEATURES, BEAT_FEATURES, DOWNBEAT_BAR_LENGTHS, DOWNBEAT_MODEL_FORM, bar_candidate_width
from mirzoo.tasks.bar_model import bar_class_probabilities, decode_bars

__all__ = [
    "REQUIRED_HEADS",
    "OPTIONAL_HEADS",
    "Analysis",
    "Segment",
    "analyze",
    "analyze_frames",
    "bar_features",
    "bars_from_features",
    "choose_bars_by_model",
    "analysis_outputs",
    "check_analysis_heads",
    "RHYTHM_HEADS",
    "RHYTHM_SHIFTS",
    "RATE_ENSEMBLE",
    "BEAT_FLOOR",
    "PITCHED_SHARE",
    "NO_KEY",
    "check_rhythm_shifts",
    "shift_rate",
    "align_rate_frames",
    "rhythm_ensemble",
    "signal_rhythm_ensemble",
    "beats_per_bar",
    "global_distribution",
    "smooth_labels",
    "label_segments",
    "tempo_centres",
    "estimate_tempo",
    "track_beats",
    "downbeat_phase",
    "downbeat_evidence",
    "BEAT_FEATURES",
    "DOWNBEAT_BAR_LENGTHS",
    "DOWNBEAT_MODEL_FORM",
    "interval_means",
    "beat_features",
    "bar_candidates",
    "clip_bar_candidates",
    "bar_candidate_width",
    "bar_candidate_scores",
    "choose_bars",
    "meter_of_bar_length",
    "clip_beats",
    "check_bar_model_record",
    "METRICAL_LAYER",
    "metrical_frames",
    "metrical_inputs",
    "metrical_width",
    "clip_key_scores",
    "clip_key_distribution",
    "clip_pitch_class_features",
    "TONIC_ROTATION",
    "key_profile_correlations",
    "KRUMHANSL_KESSLER_MAJOR",
    "KRUMHANSL_KESSLER_MINOR",
]

#: the layer :func:`metrical_frames` computes from a model's outputs after the network (``tcn-music``'s
#: ``extract(layer="metrical")``; see :data:`mirzoo.spec.DERIVED_LAYERS`)
METRICAL_LAYER = "metrical"
#: heads a model needs for :func:`analyze`
REQUIRED_HEADS = ("beats", "key", "chord", "meter", "tempo")
#: heads :func:`analyze` reads when a model has them, for the clip key: ``mode`` (major, minor) and
#: ``pitch_classes`` (the 12 pitch classes sounding in each frame, a chroma)
OPTIONAL_HEADS = ("mode", "pitch_classes")

#: heads that follow the rhythm alone, which a small change of playback rate does not change (once
#: their frames are put back on the clip's time grid): :func:`analyze` averages them over the passes of
#: ``rhythm_shifts`` (:func:`rhythm_ensemble`); the pitch heads (key, chord, mode, pitch classes) come
#: from the plain pass alone
RHYTHM_HEADS = ("beats", "tempo", "meter")
#: default ``rhythm_shifts`` of :func:`analyze`, in semitones: one pass over the audio as it is
RHYTHM_SHIFTS = (0.0,)
#: a five-pass ``rhythm_shifts``: the audio as it is, and played 1/3 and 2/3 of a semitone (one and two
#: bins of a 36-bin-per-octave constant-Q) faster and slower.  Session 27: downbeat F +2.2 points on the
#: valid clips of the three training renders, but level on the held-out TimGM6mb render (beat F -0.5,
#: time signature -1.9, both within the noise), so it is not the default
RATE_ENSEMBLE = (-2.0 / 3.0, -1.0 / 3.0, 0.0, 1.0 / 3.0, 2.0 / 3.0)
#: largest ``|shift|`` :func:`check_rhythm_shifts` accepts, in semitones (the tempo then changes by 12 %)
MAX_RHYTHM_SHIFT = 2.0

#: default ``beat_floor`` of :func:`analyze_frames`: a clip whose beat activation never reaches it has no
#: beat to track (no beats, downbeats, tempo or meter).  Session 28, ``tcn-music``: the activation peaks at
#: 0.10-0.19 on digital silence, 0.19-0.25 on white noise at -70 and -80 dBFS, 0.19-0.30 at -60 dBFS and
#: 0.33-0.37 at -50 dBFS (four draws each), and at 0.48 or more on every one of the 798 rendered test clips
#: of two soundfonts (FluidR3, TimGM6mb): it tells silence and faint noise from music, not more
BEAT_FLOOR = 0.3
#: default ``pitched_share`` of :func:`analyze_frames`: a clip in which fewer than this share of the frames
#: has a pitch class sounding (the ``pitch_classes`` head above 0.5, its own decision threshold) has nothing
#: pitched to hear a key in, and its key is :data:`NO_KEY`.  Session 28, ``tcn-music``: 0 on digital silence
#: and a constant offset, at most 0.001 on white noise at -40 to -80 dBFS (two draws each), and 0.014 or
#: more on every one of the 798 rendered test clips (0.014-0.05 for a few sparse fiddle tunes and folk songs,
#: 0.91 for the median clip).  A share, not a mean, so that a long file with a few seconds of music keeps its key
PITCHED_SHARE = 0.005
#: the key label of a clip without one: mir_eval's "unknown key" (``to_jams`` writes JAMS's ``"N"``)
NO_KEY = "X"

#: ``TONIC_ROTATION[t, i]``: the pitch class ``i`` semitones above the tonic ``t`` (index a ``[..., 12]`` vector of
#: pitch classes with it to see it from each of the 12 tonics)
TONIC_ROTATION = (np.arange(12)[:, None] + np.arange(12)[None, :]) % 12
TONIC_ROTATION.flags.writeable = False

#: Krumhansl & Kessler's (1982) probe-tone ratings of the 12 pitch classes above a major and a minor
#: tonic (as in Krumhansl 1990, *Cognitive Foundations of Musical Pitch*, and music21's
#: ``KrumhanslSchmuckler`` weights, which the corpus's analysed key labels use)
KRUMHANSL_KESSLER_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KRUMHANSL_KESSLER_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)

#: beats per bar of each meter label (the beat unit of the training targets)
_BEATS_PER_BAR = {"2/2": 2, "2/4": 2, "3/4": 3, "4/4": 4, "5/4": 5, "6/4": 2, "3/2": 3, "4/2": 4,
                  "3/8": 1, "6/8": 2, "9/8": 3, "12/8": 4}


class Segment(NamedTuple):
    """A labelled span ``[start, end)`` in seconds; ``confidence`` is the label's mean probability over it."""

    start: float
    end: float
    label: str
    confidence: float


@dataclass(frozen=True, eq=False)
class Analysis:
    """Clip-level musical analysis of one input; times in seconds.

    Attributes
    ----------
    key : str
        Global key, e.g. ``"A minor"``, or :data:`NO_KEY` (``"X"``) where nothing pitched sounds (silence,
        noise); ``key_candidates`` the best three ``(label, probability)`` of the key heads either way.
    local_keys : tuple of Segment
        Key segments after smoothing (one ``"X"`` segment for a clip without a key).
    tempo : float or None
        Notated beats per minute; None where the clip has no beat (:data:`BEAT_FLOOR`);
        ``tempo_candidates`` the tempo head's best three classes either way.
    meter : str or None
        Time signature, e.g. ``"6/8"`` (None without beats); ``meter_candidates`` three ``(label, probability)``:
        the reported meter first, then the meter head's most probable others, each with the meter head's
        clip-mean probability (the bars, not the head alone, choose the meter, so the first need not be the
        most probable; the meter row of :meth:`to_rows` and JAMS carry the reported meter's).  Without beats,
        the head's best three.
    beats : np.ndarray [shape=(n,)]
        Beat times; ``beat_positions`` their position in the bar (1 = downbeat).
    downbeats : np.ndarray [shape=(m,)]
        Downbeat times (the beats at position 1).
    chords : tuple of Segment
        Chord segments, mir_eval labels (``"G:maj"``, ``"D:7"``, ``"N"``).
    """

    source: Optional[str]
    model: str
    duration: float
    key: str
    key_candidates: tuple
    local_keys: tuple
    tempo: Optional[float]
    tempo_candidates: tuple
    meter: Optional[str]
    meter_candidates: tuple
    beats: np.ndarray
    beat_positions: np.ndarray
    downbeats: np.ndarray
    chords: tuple
    frame_rate: float = field(default=50.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (floats rounded to milliseconds / 4 decimals)."""

        def seg(s: Segment) -> dict:
            return {"start": round(s.start, 3), "end": round(s.end, 3), "label": s.label,
                    "confidence": round(s.confidence, 4)}

        def cands(c) -> list:
            return [{"label": lab, "probability": round(p, 4)} for lab, p in c]

        return {
            "source": self.source,
            "model": self.model,
            "duration": round(self.duration, 3),
            "key": self.key,
            "key_candidates": cands(self.key_candidates),
            "local_keys": [seg(s) for s in self.local_keys],
            "tempo": None if self.tempo is None else round(self.tempo, 2),
            "tempo_candidates": cands(self.tempo_candidates),
            "meter": self.meter,
            "meter_candidates": cands(self.meter_candidates),
            "beats": [round(float(t), 3) for t in self.beats],
            "beat_positions": [int(p) for p in self.beat_positions],
            "downbeats": [round(float(t), 3) for t in self.downbeats],
            "chords": [seg(s) for s in self.chords],
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """Long-format rows ``{type, start, end, label, confidence}`` for CSV output.

        Types: ``key``, ``tempo``, ``meter`` (whole clip; no tempo and meter rows for a clip without
        beats), ``local_key``, ``chord`` (segments), ``beat`` (label = position in the bar;
        ``start == end``), ``downbeat``.
        """
        rows = [{"type": "key", "start": 0.0, "end": self.duration, "label": self.key,
                 "confidence": self.key_candidates[0][1] if self.key != NO_KEY else ""}]
        if self.tempo is not None:
            rows.append({"type": "tempo", "start": 0.0, "end": self.duration, "label": f"{self.tempo:.2f}",
                         "confidence": ""})
        if self.meter is not None:
            rows.append({"type": "meter", "start": 0.0, "end": self.duration, "label": self.meter,
                         "confidence": self.meter_candidates[0][1]})
        rows += [{"type": "local_key", **s._asdict()} for s in self.local_keys]
        rows += [{"type": "beat", "start": float(t), "end": float(t), "label": str(int(p)), "confidence": ""}
                 for t, p in zip(self.beats, self.beat_positions)]
        rows += [{"type": "downbeat", "start": float(t), "end": float(t), "label": "1", "confidence": ""}
                 for t in self.downbeats]
        rows += [{"type": "chord", **s._asdict()} for s in self.chords]
        for r in rows:
            for k in ("start", "end"):
                r[k] = round(float(r[k]), 3)
            if r["confidence"] != "":
                r["confidence"] = round(float(r["confidence"]), 4)
        return rows

    def to_jams(self) -> dict[str, Any]:
        """A JAMS 0.3 document as a plain dict (``json.dump`` it; ``jams.load`` reads it).

        Namespaces: ``beat`` (value = position in the bar), ``chord`` (mir_eval labels),
        ``key_mode`` (``"A:minor"``, ``"N"`` for no key; local keys), ``tempo`` and ``tag_open`` (the meter;
        both left out for a clip without beats).
        """
        meta = {"curator": {"name": "", "email": ""}, "annotator": {"model": self.model},
                "version": "", "corpus": "", "annotation_tools": "mirzoo.analyze",
                "annotation_rules": "", "validation": "", "data_source": "machine prediction"}

        def ann(namespace, data):
            return {"annotation_metadata": meta, "namespace": namespace, "data": data, "sandbox": {},
                    "time": 0.0, "duration": float(self.duration)}

        def obs(time, duration, value, confidence):
            return {"time": float(time), "duration": float(duration), "value": value, "confidence": confidence}

        return {
            "file_metadata": {"title": self.source or "", "artist": "", "release": "",
                              "duration": float(self.duration), "identifiers": {}, "jams_version": "0.3.4"},
            "annotations": [
                ann("beat", [obs(t, 0.0, int(p), None) for t, p in zip(self.beats, self.beat_positions)]),
                ann("chord", [obs(s.start, s.end - s.start, s.label, s.confidence) for s in self.chords]),
                ann("key_mode", [obs(s.start, s.end - s.start, "N" if s.label == NO_KEY else s.label.replace(" ", ":"),
                                     s.confidence) for s in self.local_keys]),
            ] + ([ann("tempo", [obs(0.0, self.duration, float(self.tempo), 1.0)])] if self.tempo is not None else [])
              + ([ann("tag_open", [obs(0.0, self.duration, self.meter, self.meter_candidates[0][1])])]
                 if self.meter is not None else []),
            "sandbox": {"mirzoo": {"key": self.key, "meter": self.meter, "tempo": self.tempo}},
        }


# -- building blocks (numpy only) ---------------------------------------------------------------
def beats_per_bar(meter: str) -> int:
    """Beats per bar of a meter label (``"6/8"`` -> 2); unknown ``n/d`` labels: ``n`` (``n / 3`` if compound)."""
    if meter in _BEATS_PER_BAR:
        return _BEATS_PER_BAR[meter]
    match = re.fullmatch(r"(\d+)/(\d+)", str(meter).strip())
    if not match:
        raise ParameterError(f"meter={meter!r} is not a time signature such as '3/4' or '6/8'")
    num, den = int(match.group(1)), int(match.group(2))
    return num // 3 if den >= 8 and num % 3 == 0 and num > 3 else max(num, 1)


def global_distribution(probs: np.ndarray, labels: Sequence[str], top_k: int = 3) -> list[tuple[str, float]]:
    """The best ``top_k`` labels of the mean of frame probabilities ``probs [T, K]``: ``[(label, p), ...]``."""
    probs = _frames(probs, len(labels), "probs")
    mean = probs.mean(axis=0)
    order = np.argsort(-mean, kind="stable")[:top_k]
    return [(labels[i], float(mean[i])) for i in order]


def clip_key_scores(key_probs: np.ndarray, chord_probs: np.ndarray, params: Mapping[str, Any],
                    mode_probs: Optional[np.ndarray] = None, chroma_probs: Optional[np.ndarray] = None) -> np.ndarray:
    """Unnormalised log-scores of the 24 keys of a clip, from its frame key and chord probabilities.

    For the key with tonic ``t`` and mode ``m`` (0 major, 1 minor)::

        score = scale[m] * log(mean_frames key_probs)[t + 12 m]
                + sum_{r, q} chord[m][r][q] * mean_frames chord_probs[(t + r) % 12, q] + bias[m]

    ``chord[m][r][q]`` weighs a chord of quality ``q`` whose root lies ``r`` semitones above the tonic,
    the same for every tonic, so the score is transposition-equivariant: the key head's clip average
    plus what the chord head heard (the chords a key uses), with a bias per mode.  A record with a
    ``mode_scale`` adds ``mode_scale * log(mean_frames mode_probs)[m]``, the clip average of a ``mode``
    head ``[T, 2]`` (major, minor), which must then be given.  Keys are indexed
    ``tonic + 12 * minor`` and chords ``root * 9 + quality`` (then ``N``, unused), as ``tcn-music``'s heads.
    A record with a ``chroma_scale`` (two numbers: major, minor) adds
    ``chroma_scale[m] * key_profile_correlations(mean_frames chroma_probs)[t + 12 m]``: the
    Krumhansl-Schmuckler reading of a ``pitch_classes`` head ``[T, 12]`` (the pitch classes sounding in
    each frame, C first), which must then be given as ``chroma_probs``.  A record with a
    ``pitch_class_profile`` (``[2, 12]``: major, minor; interval above the tonic) adds
    ``sum_i pitch_class_profile[m][i] * c[(t + i) % 12]``, and one with a ``final_profile`` (``[2, 12]``, with
    ``final_frames``) adds ``sum_i final_profile[m][i] * f[(t + i) % 12]``: learnt key profiles of the
    ``pitch_classes`` head's clip mean ``c`` and of its last ``final_frames`` frames ``f``, where the
    cadence that ends a piece usually lands on the tonic (:func:`clip_pitch_class_features`).  A weight
    of 0 leaves a term out.  The parameters are fitted by ``python -m training.musical fit-key``.
    """
    key_probs = _frames(key_probs, 24, "key_probs")
    chord_probs = _frames(chord_probs, 12 * 9 + 1, "chord_probs")
    scale = np.asarray(params["scale"], dtype=np.float64)
    bias = np.asarray(params["bias"], dtype=np.float64)
    weights = np.asarray(params["chord"], dtype=np.float64)  # [mode, interval, quality]
    log_key, rel = clip_key_features(key_probs.mean(axis=0), chord_probs.mean(axis=0))
    scores = scale[:, None] * log_key + np.einsum("trq,mrq->mt", rel, weights) + bias[:, None]
    if params.get("mode_scale") is not None:
        if mode_probs is None:
            raise ParameterError("this clip_key record weighs a mode head (mode_scale): give mode_probs [frames, 2]")
        mode_mean = _frames(mode_probs, 2, "mode_probs").mean(axis=0)
        scores = scores + float(params["mode_scale"]) * np.log(mode_mean + 1e-6)[:, None]
    if params.get("chroma_scale") is not None:
        if chroma_probs is None:
            raise ParameterError("this clip_key record weighs a pitch_classes head (chroma_scale): give chroma_probs [frames, 12]")
        corr = key_profile_correlations(_frames(chroma_probs, 12, "chroma_probs").mean(axis=0))
        scores = scores + np.asarray(params["chroma_scale"], dtype=np.float64)[:, None] * corr.reshape(2, 12)
    if params.get("pitch_class_profile") is not None or params.get("final_profile") is not None:
        if chroma_probs is None:
            raise ParameterError("this clip_key record weighs a pitch_classes head (pitch_class_profile, final_profile): "
                                 "give chroma_probs [frames, 12]")
        whole, final = clip_pitch_class_features(chroma_probs, int(params.get("final_frames") or 1))
        for name, feature in (("pitch_class_profile", whole), ("final_profile", final)):
            if params.get(name) is not None:
                scores = scores + np.einsum("mi,ti->mt", np.asarray(params[name], dtype=np.float64), feature[TONIC_ROTATION])
    return scores.reshape(24)


def clip_pitch_class_features(chroma_probs: np.ndarray, final_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """What a ``clip_key`` record's ``pitch_class_profile`` and ``final_profile`` weigh, from the frames of a
    ``pitch_classes`` head ``[T, 12]`` (C first): ``(whole, final)``, each ``[12]``.

    ``whole`` is the clip mean, centred on its own mean and scaled to unit norm (what a correlation with a
    key profile reads; all zeros for a flat or silent clip).  ``final`` is the mean of the last
    ``final_frames`` frames (all of them in a shorter clip), centred, and divided by the norm of the centred
    clip mean, not by its own: an ending that fades out or falls silent weighs little, where a unit norm
    would blow its noise up into a confident profile.
    """
    chroma_probs = _frames(chroma_probs, 12, "chroma_probs").astype(np.float64)
    if isinstance(final_frames, bool) or not isinstance(final_frames, (int, np.integer)) or final_frames < 1:
        raise ParameterError(f"final_frames={final_frames!r}: expected a positive whole number of frames")
    whole = chroma_probs.mean(axis=0)
    whole = whole - whole.mean()
    norm = float(np.linalg.norm(whole))
    final = chroma_probs[-int(final_frames):].mean(axis=0)
    final = final - final.mean()
    if norm <= 1e-9:
        return np.zeros(12), np.zeros(12)
    return whole / norm, final / norm


def key_profile_correlations(chroma: np.ndarray) -> np.ndarray:
    """Pearson correlations of a pitch-class distribution ``[..., 12]`` (C first) with the 24 rotations
    of the Krumhansl-Kessler profiles, ``[..., 24]`` indexed ``tonic + 12 * minor``: the
    Krumhansl-Schmuckler key-finding scores (the best is the key).  A flat distribution correlates 0
    with every key."""
    chroma = np.asarray(chroma, dtype=np.float64)
    if chroma.shape[-1:] != (12,):
        raise ParameterError(f"chroma must have 12 pitch classes on its last axis, got shape {chroma.shape}")
    c = chroma - chroma.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(c, axis=-1, keepdims=True)
    c = np.divide(c, norm, out=np.zeros_like(c), where=norm > 1e-12)
    profiles = []
    for weights in (KRUMHANSL_KESSLER_MAJOR, KRUMHANSL_KESSLER_MINOR):
        p = np.asarray(weights) - np.mean(weights)
        p /= np.linalg.norm(p)
        profiles += [np.roll(p, tonic) for tonic in range(12)]
    return c @ np.stack(profiles, axis=1)


def clip_key_features(key_mean: np.ndarray, chord_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`clip_key_scores` weighs, from clip means (leading batch axes allowed):
    ``log(key_mean)`` as ``[..., mode, tonic]`` and the chord means seen from each tonic,
    ``rel[..., t, r, q] = chord_mean[..., ((t + r) % 12) * 9 + q]`` (``N`` left out)."""
    key_mean = np.asarray(key_mean, dtype=np.float64)
    chord_mean = np.asarray(chord_mean, dtype=np.float64)
    log_key = np.log(key_mean + 1e-6).reshape(key_mean.shape[:-1] + (2, 12))
    chords = chord_mean[..., :108].reshape(chord_mean.shape[:-1] + (12, 9))  # [..., root, quality]
    rel = chords[..., TONIC_ROTATION, :]
    return log_key, rel


def clip_key_distribution(key_probs: np.ndarray, chord_probs: np.ndarray, params: Mapping[str, Any],
                          mode_probs: Optional[np.ndarray] = None, chroma_probs: Optional[np.ndarray] = None) -> np.ndarray:
    """The clip's 24 key probabilities: the softmax of :func:`clip_key_scores`."""
    s = clip_key_scores(key_probs, chord_probs, params, mode_probs, chroma_probs)
    e = np.exp(s - s.max())
    return e / e.sum()


def smooth_labels(probs: np.ndarray, switch_penalty: float) -> np.ndarray:
    """Most probable label path of ``probs [T, K]`` when each change of label costs ``switch_penalty`` nats.

    A Viterbi decode of ``log p`` with a transition matrix that is uniform off the diagonal: at
    each frame a path either keeps its label or takes the best previous path minus the penalty.
    ``switch_penalty=0`` gives the frame-wise argmax.  Returns ``[T]`` int indices.
    """
    if not switch_penalty >= 0:
        raise ParameterError(f"switch_penalty={switch_penalty!r} must be >= 0 (nats per change of label)")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ParameterError(f"probs must be a non-empty [frames, labels] array, got shape {probs.shape}")
    logp = np.log(np.clip(probs, 1e-12, None))
    n_frames, n_labels = logp.shape
    # A path that changes label at frame t comes from that frame's best path, so the back-pointers reduce
    # to one best label per frame and a stay/switch bit per label (an hour of chords: 20 MB, not 40), and
    # each frame costs four in-place array operations (half the time of building the pointers with np.where)
    stay = np.empty((n_frames, n_labels), dtype=bool)
    best = np.zeros(n_frames, dtype=np.int64)
    score = logp[0].copy()
    for t in range(1, n_frames):
        b = int(score.argmax())
        switch = score[b] - switch_penalty
        np.greater_equal(score, switch, out=stay[t])
        best[t] = b
        np.maximum(score, switch, out=score)  # kept where it stays, the best path's score less the penalty where not
        score += logp[t]
    path = np.empty(n_frames, dtype=np.int64)
    k = int(score.argmax())
    path[-1] = k
    for t in range(n_frames - 1, 0, -1):
        if not stay[t, k]:
            k = int(best[t])
        path[t - 1] = k
    return path


def label_segments(path: np.ndarray, labels: Sequence[str], fps: float, duration: float,
                   probs: Optional[np.ndarray] = None) -> list[Segment]:
    """Merge a frame label path ``[T]`` into segments; a boundary lies half-way between two frames.

    Frame ``t`` is centred at ``t / fps``; the first segment starts at 0 and the last ends at
    ``duration``.  ``confidence`` is the mean of ``probs[:, label]`` over the segment (1.0 without ``probs``).
    """
    path = np.asarray(path)
    if path.size == 0:
        return []
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [path.size]])
    out = []
    for a, b in zip(starts, ends):
        label = int(path[a])
        t0 = 0.0 if a == 0 else (a - 0.5) / fps
        t1 = float(duration) if b == path.size else (b - 0.5) / fps
        conf = 1.0 if probs is None else float(np.mean(probs[a:b, label]))
        out.append(Segment(float(t0), float(max(t1, t0)), labels[label], conf))
    return out


def tempo_centres(labels: Sequence[str]) -> np.ndarray:
    """BPM of each tempo class from labels such as ``"120 BPM"``.

    Labels are rounded; when they lie on a geometric grid (within rounding), the geometric grid
    through the first and last label is returned instead (within 0.2 % of the unrounded one).
    """
    values = []
    for lab in labels:
        match = re.match(r"\s*([0-9]+(?:\.[0-9]*)?)", str(lab))
        if not match:
            raise ParameterError(f"tempo label {lab!r} does not start with a number of beats per minute")
        values.append(float(match.group(1)))
    values = np.asarray(values)
    if len(values) > 2 and np.all(values > 0):
        grid = values[0] * (values[-1] / values[0]) ** (np.arange(len(values)) / (len(values) - 1))
        if np.all(np.abs(grid - values) <= 0.5 + 2e-3 * values):  # only the rounding differs
            return grid
    return values


def _autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64) - float(np.mean(x))
    n = x.size
    size = 1 << int(math.ceil(math.log2(max(2 * n, 2))))
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[: max_lag + 1]
    return acf / max(n, 1)  # biased: long lags weigh less, as fewer beats support them


def estimate_tempo(tempo_probs: Optional[np.ndarray], centres: Optional[np.ndarray], beat_activation: np.ndarray,
                   fps: float, *, bpm_range: tuple[float, float] = (40.0, 310.0)) -> float:
    """Tempo (BPM) from a tempo head's mean distribution and the periodicity of the beat activation.

    On a log-tempo grid (1/96 octave) the score is the head's mean probability (linearly
    interpolated in log tempo; without a head, a log-normal prior around 120 BPM, one octave
    wide) times ``0.05 + acf``, where ``acf`` is the beat activation's (biased) autocorrelation
    at the matching lag (linearly interpolated, negative values set to 0, scaled to a maximum
    of 1).  Returns the best grid tempo.
    """
    lo, hi = bpm_range
    grid = lo * 2.0 ** (np.arange(int(96 * math.log2(hi / lo)) + 1) / 96.0)
    act = np.asarray(beat_activation, dtype=np.float64).ravel()
    lags = 60.0 * fps / grid
    max_lag = int(math.ceil(lags.max())) + 1
    if act.size > 2 * int(math.ceil(lags.min())) + 1:
        acf = _autocorrelation(act, max_lag)
        acf = np.pad(acf, (0, max(0, max_lag + 1 - acf.size)))
        salience = np.interp(lags, np.arange(acf.size), np.maximum(acf, 0.0))
        salience = salience / salience.max() if salience.max() > 0 else np.zeros_like(salience)
    else:
        salience = np.zeros_like(grid)
    if tempo_probs is not None and centres is not None:
        mean = _frames(tempo_probs, len(centres), "tempo_probs").mean(axis=0)
        prior = np.interp(np.log2(grid), np.log2(centres), mean, left=0.0, right=0.0)
    else:  # no head: a log-normal prior around 120 BPM, one octave wide
        prior = np.exp(-0.5 * np.log2(grid / 120.0) ** 2)
    return float(grid[int(np.argmax(prior * (0.05 + salience)))])


def track_beats(activation: np.ndarray, fps: float, tempo: float, *, tightness: float = 100.0,
                trim: bool = True) -> np.ndarray:
    """Beat frames ``[n]`` (int, increasing) by dynamic programming on a beat activation ``[T]``.

    ``tempo`` (BPM) sets the expected period ``P = 60 * fps / tempo`` frames; ``tightness``
    how much a beat interval may differ from it (see the module docstring).
    """
    act = np.asarray(activation, dtype=np.float64).ravel()
    if not (np.isfinite(tempo) and tempo > 0):
        raise ParameterError(f"tempo={tempo!r} must be a positive number of beats per minute")
    n = act.size
    if n == 0 or float(act.max(initial=0.0)) <= 0:
        return np.zeros(0, dtype=np.int64)
    period = 60.0 * fps / float(tempo)
    local = act / (act.std() + 1e-9)
    lo, hi = max(1, int(round(period / 2))), max(2, int(round(2 * period)))
    offsets = np.arange(lo, hi + 1)
    penalty = -tightness * np.log(offsets / period) ** 2
    cum = np.zeros(n)
    back = -np.ones(n, dtype=np.int64)
    for t in range(n):
        prev = t - offsets
        ok = prev >= 0
        if ok.any():
            cand = cum[prev[ok]] + penalty[ok]
            j = int(np.argmax(cand))
            if cand[j] > 0:
                cum[t] = local[t] + cand[j]
                back[t] = prev[ok][j]
                continue
        cum[t] = local[t]
    # last beat: the latest local maximum of the cumulative score that is > half the median of them
    padded = np.concatenate([[-np.inf], cum, [-np.inf]])  # a beat on the first or last frame counts too
    peaks = np.flatnonzero((padded[1:-1] >= padded[:-2]) & (padded[1:-1] > padded[2:]))
    if peaks.size == 0:
        peaks = np.array([int(np.argmax(cum))])
    tail = peaks[cum[peaks] >= 0.5 * np.median(cum[peaks])]
    beats = [int(tail[-1])]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    beats = np.asarray(beats[::-1], dtype=np.int64)
    return _trim_weak_ends(beats, act, 0.2) if trim else beats


def _trim_weak_ends(beats: np.ndarray, act: np.ndarray, fraction: float) -> np.ndarray:
    """``beats`` less the leading and trailing ones whose activation is below ``fraction`` of the median beat's."""
    if not beats.size:
        return beats
    strength = act[beats]
    keep = np.flatnonzero(strength >= fraction * float(np.median(strength)))
    return beats[keep[0] : keep[-1] + 1] if keep.size else beats[:0]


def track_beats_hmm(activation: np.ndarray, fps: float, tempo: float, *, band: float = 1.4,
                    transition_lambda: float = 30.0, off_beat_share: float = 16.0, trim: float = 0.3) -> np.ndarray:
    """Beat frames ``[n]`` (int, increasing): Viterbi decoding of a beat-period HMM on a beat activation ``[T]``.

    The states are ``(p, k)``: a beat interval of ``p`` frames, every whole ``p`` from
    ``period / band`` to ``period * band`` (``period = 60 * fps / tempo``), and the frame ``k < p``
    since the last beat.  Each frame ``k`` advances by one; after ``k = p - 1`` a beat starts
    with an interval ``p'`` drawn with probability proportional to ``exp(-transition_lambda *
    |p' / p - 1|)``.  A beat frame (``k = 0``) explains the activation ``a`` with likelihood
    ``a``, any other frame with ``(1 - a) / (off_beat_share - 1)``.  The path starts anywhere
    (uniform); frames more than one longest interval before the first activation above a tenth
    of the maximum, or after the last, are left out (silence at the ends).  Beats at the two ends
    whose activation is below ``trim`` times the median beat's are dropped (``trim=0`` keeps all).
    """
    act = np.asarray(activation, dtype=np.float64).ravel()
    if not (np.isfinite(tempo) and tempo > 0):
        raise ParameterError(f"tempo={tempo!r} must be a positive number of beats per minute")
    if not (np.isfinite(band) and band >= 1.0):
        raise ParameterError(f"band={band!r} must be >= 1 (how far beat intervals may stray from the tempo's, as a ratio)")
    if not transition_lambda >= 0:
        raise ParameterError(f"transition_lambda={transition_lambda!r} must be >= 0")
    if not off_beat_share > 1:
        raise ParameterError(f"off_beat_share={off_beat_share!r} must be > 1")
    if not 0 <= trim < 1:
        raise ParameterError(f"trim={trim!r} must be in [0, 1) (a fraction of the median beat's activation)")
    n_frames = act.size
    if n_frames == 0 or float(act.max(initial=0.0)) <= 0:
        return np.zeros(0, dtype=np.int64)
    period = 60.0 * fps / float(tempo)
    intervals = np.arange(max(1, int(math.floor(period / band))), max(1, int(math.ceil(period * band))) + 1)
    # decode only from one longest interval before the first clear activation (a tenth of the
    # strongest) to one after the last: silence at the ends would otherwise pull the path to the
    # longest intervals, which it leaves too late for the first beat
    active = np.flatnonzero(act >= 0.1 * float(act.max()))
    offset = max(0, int(active[0]) - int(intervals[-1]))
    act = act[offset : min(n_frames, int(active[-1]) + int(intervals[-1]) + 1)]
    n_frames = act.size
    starts = np.concatenate([[0], np.cumsum(intervals)[:-1]])  # state of (p, 0) in the flat layout
    ends = starts + intervals - 1                                # state of (p, p - 1)
    n_states = int(intervals.sum())
    on_beat = np.zeros(n_states, dtype=bool)
    on_beat[starts] = True
    ratio = intervals[None, :] / intervals[:, None]             # [from p, to p']
    log_trans = -float(transition_lambda) * np.abs(ratio - 1.0)
    log_trans -= np.logaddexp.reduce(log_trans, axis=1, keepdims=True)
    act = np.clip(act, 0.0, 1.0)
    log_beat = np.log(act + 1e-6)
    log_off = np.log((1.0 - act) / (off_beat_share - 1.0) + 1e-6)
    delta = np.where(on_beat, log_beat[0], log_off[0]) - math.log(n_states)
    back = np.zeros((n_frames, intervals.size), dtype=np.int16 if intervals.size < 32768 else np.int32)
    shifted = np.empty(n_states)
    for t in range(1, n_frames):
        shifted[1:] = delta[:-1]
        cand = delta[ends][:, None] + log_trans                  # [from, to]
        best = cand.argmax(axis=0)
        back[t] = best
        shifted[starts] = cand[best, np.arange(intervals.size)]
        delta = shifted + np.where(on_beat, log_beat[t], log_off[t])
    # read the path back: inside an interval the previous state is the one before; at a beat, the
    # end of the interval the back pointer names
    state_interval = np.repeat(np.arange(intervals.size), intervals)
    s = int(np.argmax(delta))
    beats = []
    for t in range(n_frames - 1, -1, -1):
        if on_beat[s]:
            beats.append(t)
            if t:
                s = int(ends[back[t][state_interval[s]]])
        else:
            s -= 1
    beats = np.asarray(beats[::-1], dtype=np.int64)
    if trim:
        beats = _trim_weak_ends(beats, act, trim)
    return beats + offset


def _activation_at_beats(beat_frames: np.ndarray, downbeat_activation: np.ndarray) -> np.ndarray:
    """The downbeat activation at each beat: the maximum over the beat's frame and its two neighbours."""
    act = np.asarray(downbeat_activation, dtype=np.float64).ravel()
    padded = np.pad(act, 1, mode="edge")
    return np.max(np.stack([padded[beat_frames], padded[beat_frames + 1], padded[beat_frames + 2]]), axis=0)


def downbeat_evidence(beat_frames: np.ndarray, downbeat_activation: np.ndarray,
                      beat_activation: Optional[np.ndarray] = None, floor: float = 0.05) -> np.ndarray:
    """How much each beat looks like a downbeat: ``d / (b + floor)``, where ``d`` and ``b`` are the
    downbeat and beat activations at the beat (each the maximum over its frame and the two
    neighbours); without ``beat_activation``, ``d`` alone."""
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    at_beat = _activation_at_beats(beat_frames, downbeat_activation)
    if beat_activation is None:
        return at_beat
    if not floor > 0:
        raise ParameterError(f"floor={floor!r} must be > 0 (added to the beat activation before dividing)")
    return at_beat / (_activation_at_beats(beat_frames, beat_activation) + float(floor))


def bar_contrast(beat_frames: np.ndarray, downbeat_activation: np.ndarray, per_bar: int,
                 beat_activation: Optional[np.ndarray] = None, floor: float = 0.05) -> float:
    """How much more downbeat evidence (:func:`downbeat_evidence`) the best bar phase's beats carry
    than the other beats.

    ``max over phases p`` of the mean evidence at beats ``p, p + per_bar, ...`` minus the mean at
    the rest; 0 for one beat per bar or fewer than two bars of beats.
    """
    per_bar = int(per_bar)
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    if per_bar < 2 or beat_frames.size < 2 * per_bar:
        return 0.0
    at_beat = downbeat_evidence(beat_frames, downbeat_activation, beat_activation, floor)
    index = np.arange(at_beat.size)
    return max(float(at_beat[index % per_bar == p].mean() - at_beat[index % per_bar != p].mean()) for p in range(per_bar))


def meter_of_bar_length(meter_mean: np.ndarray, labels: Sequence[str], per_bar: int) -> Optional[str]:
    """The meter head's most probable meter (``meter_mean``: its clip mean over ``labels``) among those of
    ``per_bar`` beats per bar (:func:`beats_per_bar`), or ``None`` when no meter has that bar length."""
    of_bar = np.flatnonzero(np.array([beats_per_bar(m) for m in labels]) == int(per_bar))
    if of_bar.size == 0:
        return None
    return labels[int(of_bar[np.argmax(np.asarray(meter_mean)[of_bar])])]


def choose_meter(meter_probs: np.ndarray, labels: Sequence[str], beat_frames: np.ndarray,
                 downbeat_activation: np.ndarray, contrast_weight: float,
                 beat_activation: Optional[np.ndarray] = None, floor: float = 0.05) -> str:
    """The clip's meter from the meter head and the downbeat evidence together.

    Each bar length ``b`` (2, 3, 4 beats, and that of the meter head's best meter) scores
    ``log P(b) + contrast_weight * bar_contrast(b)``, where ``P(b)`` sums the meter head's clip
    mean over the meters of ``b`` beats per bar; the answer is the most probable meter of the best
    bar length.  ``contrast_weight=0`` gives the meter head's own best meter.  ``beat_activation``
    and ``floor`` as in :func:`downbeat_evidence`.
    """
    if not contrast_weight >= 0:
        raise ParameterError(f"contrast_weight={contrast_weight!r} must be >= 0")
    mean = _frames(meter_probs, len(labels), "meter_probs").mean(axis=0)
    per_bar = np.array([beats_per_bar(m) for m in labels])
    best = int(np.argmax(mean))
    if contrast_weight == 0:
        return labels[best]
    scores = {}
    for b in sorted({2, 3, 4, int(per_bar[best])}):
        prior = float(mean[per_bar == b].sum())
        contrast = bar_contrast(beat_frames, downbeat_activation, b, beat_activation, floor)
        scores[b] = math.log(prior + 1e-3) + contrast_weight * contrast
    b = max(scores, key=lambda k: (scores[k], k == per_bar[best]))
    meter = meter_of_bar_length(mean, labels, b)
    return labels[best] if meter is None else meter  # None: a bar length no meter of the vocabulary has


def downbeat_phase(beat_frames: np.ndarray, downbeat_activation: np.ndarray, per_bar: int,
                   beat_activation: Optional[np.ndarray] = None, floor: float = 0.05) -> tuple[int, np.ndarray]:
    """``(phase, positions)``: the bar phase with the highest mean downbeat evidence, and each beat's position.

    ``positions[i] = (i - phase) % per_bar + 1`` (1 = downbeat).  The evidence at a beat is
    :func:`downbeat_evidence` (the downbeat activation alone without ``beat_activation``).
    """
    per_bar = int(per_bar)
    if per_bar < 1:
        raise ParameterError(f"per_bar={per_bar!r} must be >= 1 beat per bar")
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    if beat_frames.size == 0:
        return 0, np.zeros(0, dtype=np.int64)
    at_beat = downbeat_evidence(beat_frames, downbeat_activation, beat_activation, floor)
    means = [float(at_beat[p::per_bar].mean()) if at_beat[p::per_bar].size else -np.inf for p in range(per_bar)]
    phase = int(np.argmax(means))
    positions = (np.arange(beat_frames.size) - phase) % per_bar + 1
    return phase, positions.astype(np.int64)


def interval_means(x: np.ndarray, beat_frames: np.ndarray) -> np.ndarray:
    """``[beats, D]``: the mean of the frames ``[beat_i, beat_{i+1})`` of ``x`` (``[T, D]``; the last
    interval runs to the end), each interval at least its first frame."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    starts = np.clip(np.asarray(beat_frames, dtype=np.int64), 0, max(n - 1, 0))
    if starts.size == 0:
        return np.zeros((0, x.shape[1]))
    ends = np.append(starts[1:], n)
    ends = np.minimum(np.maximum(ends, starts + 1), n)
    cums = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    return (cums[ends] - cums[starts]) / (ends - starts)[:, None]


def _changes(means: np.ndarray) -> np.ndarray:
    """Total-variation distance of each interval's mean distribution from the one before (the first
    gets the mean of the others, 0 for a single interval)."""
    out = np.zeros(means.shape[0])
    if means.shape[0] > 1:
        out[1:] = 0.5 * np.abs(np.diff(means, axis=0)).sum(axis=1)
        out[0] = out[1:].mean()
    return out


def beat_features(beat_frames: np.ndarray, beats: np.ndarray, chord: np.ndarray,
                  pitch_classes: np.ndarray, chord_means: Optional[np.ndarray] = None) -> np.ndarray:
    """``[beats, len(BEAT_FEATURES)]``: what a ``downbeat_model`` reads at each tracked beat.

    ``beats`` is the ``[T, 2]`` (beat, downbeat) activation; ``chord`` and ``pitch_classes`` the frame
    probabilities of those heads.  Columns (:data:`BEAT_FEATURES`): the log downbeat and beat activations at
    the beat (maxima over its frame and the two neighbours, as :func:`downbeat_evidence`), the log of their
    evidence ratio (floor 0.05), how far the chord and the pitch-class distributions of the beat interval
    (to the next beat) moved from the previous interval's (total variation), and the log mean downbeat
    activation over the interval.  ``chord_means``: :func:`interval_means` of ``chord`` at these beats, when
    the caller already has it (computed here otherwise).
    """
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    act = np.asarray(beats, dtype=np.float64)
    if act.ndim != 2 or act.shape[1] < 2:
        raise ParameterError(f"beats must be a [frames, 2] (beat, downbeat) activation, got shape {act.shape}")
    down = _activation_at_beats(beat_frames, act[:, 1])
    beat = _activation_at_beats(beat_frames, act[:, 0])
    columns = [
        np.log(down + 1e-3),
        np.log(beat + 1e-3),
        np.log(down / (beat + 0.05) + 1e-3),
        _changes(interval_means(chord, beat_frames) if chord_means is None else chord_means),
        _changes(interval_means(pitch_classes, beat_frames)),
        np.log(interval_means(act[:, 1], beat_frames)[:, 0] + 1e-3),
    ]
    return np.stack(columns, axis=1)


def bar_candidates(features: np.ndarray, chord_means: np.ndarray, meter_mean: np.ndarray,
                   meter_labels: Sequence[str], bar_lengths: Sequence[int] = DOWNBEAT_BAR_LENGTHS
                   ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``(X, [(bar length, phase), ...])``: one row of features for every bar length ``b`` that has at
    least two bars of beats and every phase ``p < b`` (beat ``p`` is the first downbeat).

    ``features`` is :func:`beat_features` (``[beats, k]``), ``chord_means`` the chord head's mean over each
    beat interval (:func:`interval_means`) and ``meter_mean`` the meter head's clip mean.  With ``Z`` the
    features standardised over the clip's beats and ``m_j`` their mean at the ``j``-th beat of the
    candidate's bars (``m_0``: at its downbeats), a row holds: ``m_0`` minus the mean of the other
    ``m_j`` (``k``); ``m_0`` minus the half-bar beat's ``m_{b/2}``, for even ``b`` (``k``, zeros for
    odd); how much the chord distribution varies inside the candidate's bars, less its mean over
    the ``b`` phases (1); the log of the meter head's probability of ``b`` beats per bar (1); ``b`` one-hot
    (``len(bar_lengths)``); and ``m_0 .. m_{b-1}``, in a block of its own for each bar length
    (``sum(bar_lengths) * k``).
    """
    f = np.asarray(features, dtype=np.float64)
    n, k = f.shape
    z = (f - f.mean(axis=0)) / (f.std(axis=0) + 1e-6) if n else f
    chords = np.asarray(chord_means, dtype=np.float64)
    per_bar = np.array([beats_per_bar(m) for m in meter_labels])
    meter_mean = np.asarray(meter_mean, dtype=np.float64)
    bar_lengths = [int(b) for b in bar_lengths]
    blocks = np.cumsum([0] + [b * k for b in bar_lengths])
    index = np.arange(n)
    rows, labels = [], []
    for bi, b in enumerate(bar_lengths):
        if n < 2 * b:
            continue
        position_means = np.array([z[index % b == j].mean(axis=0) for j in range(b)])  # [b, k]
        spread = []
        for p in range(b):
            bars = [chords[max(s, 0):s + b] for s in range(p - b if p > 0 else 0, n, b)]
            inside = [0.5 * np.abs(c - c.mean(axis=0)).sum(axis=1).mean() for c in bars if len(c) >= 2]
            spread.append(float(np.mean(inside)) if inside else 0.0)
        spread = np.array(spread) - np.mean(spread)
        prior = math.log(float(meter_mean[per_bar == b].sum()) + 1e-3)
        for p in range(b):
            here = position_means[p]
            half = here - position_means[(p + b // 2) % b] if b % 2 == 0 else np.zeros(k)
            one_hot = np.zeros(len(bar_lengths))
            one_hot[bi] = 1.0
            profile = np.zeros(blocks[-1])
            profile[blocks[bi]:blocks[bi + 1]] = np.roll(position_means, -p, axis=0).ravel()
            others = np.delete(position_means, p, axis=0).mean(axis=0)
            rows.append(np.concatenate([here - others, half, [spread[p], prior], one_hot, profile]))
            labels.append((b, p))
    width = bar_candidate_width(k, bar_lengths)
    return (np.array(rows) if rows else np.zeros((0, width))), labels


def clip_bar_candidates(beat_frames: np.ndarray, frames: Mapping[str, np.ndarray], meter_labels: Sequence[str],
                        bar_lengths: Sequence[int] = DOWNBEAT_BAR_LENGTHS) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """:func:`bar_candidates` of one clip's frame outputs (``beats``, ``chord``, ``meter``, ``pitch_classes``)
    at its tracked beats: what :func:`choose_bars` scores and ``fit-downbeats`` fits on, built one way for both."""
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    chord_means = interval_means(frames["chord"], beat_frames)  # read twice: chord changes, and the bars' spread
    feats = beat_features(beat_frames, frames["beats"], frames["chord"], frames["pitch_classes"], chord_means)
    meter_mean = _frames(frames["meter"], len(meter_labels), "frames['meter']").mean(axis=0)
    return bar_candidates(feats, chord_means, meter_mean, meter_labels, bar_lengths)


def bar_candidate_scores(x: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """Scores of :func:`bar_candidates` rows under a ``downbeat_model`` record: standardised with its
    ``mean`` and ``scale``, one tanh layer (``hidden_weights``, ``hidden_bias``), then ``output_weights``.
    The best-scoring candidate is the bar (a softmax over a clip's candidates was fitted)."""
    x = (np.asarray(x, dtype=np.float64) - np.asarray(record["mean"])) / np.asarray(record["scale"])
    hidden = np.tanh(x @ np.asarray(record["hidden_weights"], dtype=np.float64) + np.asarray(record["hidden_bias"]))
    return hidden @ np.asarray(record["output_weights"], dtype=np.float64)


def choose_bars(beat_frames: np.ndarray, frames: Mapping[str, np.ndarray], meter_labels: Sequence[str],
                record: Mapping[str, Any]) -> Optional[tuple[str, int, int]]:
    """``(meter, beats per bar, phase)`` chosen jointly by a ``downbeat_model`` record, or ``None`` when it
    cannot choose (fewer than two bars of beats for every bar length it knows; or the meter head's best
    meter has a bar length the record does not know, such as 5/4, and over half the head's mass).

    ``frames`` holds the ``beats``, ``chord``, ``meter`` and ``pitch_classes`` frame outputs.  The meter is the
    meter head's most probable meter of the chosen bar length.
    """
    if not isinstance(record, Mapping):
        raise ParameterError(f"downbeat_model={record!r:.80} must be a record of fit-downbeats (a mapping)")
    missing = [k for k in ("mean", "scale", "hidden_weights", "hidden_bias", "output_weights") if k not in record]
    if missing or tuple(record.get("features") or ()) != BEAT_FEATURES:
        raise ParameterError(f"downbeat_model lacks {missing} or reads features {record.get('features')!r:.120}; "
                             f"expected a fit-downbeats record over {list(BEAT_FEATURES)}")
    bar_lengths = tuple(int(b) for b in record.get("bar_lengths", DOWNBEAT_BAR_LENGTHS))
    width = bar_candidate_width(len(BEAT_FEATURES), bar_lengths)
    if np.shape(record["mean"]) != (width,):
        raise ParameterError(f"downbeat_model['mean'] has shape {np.shape(record['mean'])}; {bar_lengths} bar lengths "
                             f"need ({width},)")
    meter_probs = _frames(frames["meter"], len(meter_labels), "frames['meter']")
    mean = meter_probs.mean(axis=0)
    per_bar = np.array([beats_per_bar(m) for m in meter_labels])
    best = int(np.argmax(mean))
    if per_bar[best] not in bar_lengths and mean[per_bar == per_bar[best]].sum() > 0.5:
        return None
    x, labels = clip_bar_candidates(beat_frames, frames, meter_labels, bar_lengths)
    if not labels:
        return None
    b, p = labels[int(np.argmax(bar_candidate_scores(x, record)))]
    meter = meter_of_bar_length(mean, meter_labels, b)
    return None if meter is None else (meter, b, p)


def bar_features(beat_frames: np.ndarray, frames: Mapping[str, np.ndarray], sources: Sequence[str]) -> np.ndarray:
    """``[beats, d]``: what a ``bar_model`` record reads at each tracked beat, one block per entry of ``sources``:
    :data:`~mirzoo.spec.BAR_MODEL_BEAT_FEATURES` gives :func:`beat_features` (reading ``frames``' ``beats``,
    ``chord`` and ``pitch_classes``), any other name the mean of that frame output over each beat's interval
    (:func:`interval_means`; a layer such as ``embedding``, or a head)."""
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    missing = sorted({s for s in sources if s != BAR_MODEL_BEAT_FEATURES} - set(frames)
                     | ({"beats", "chord", "pitch_classes"} - set(frames) if BAR_MODEL_BEAT_FEATURES in sources else set()))
    if missing:
        raise ParameterError(f"the bar model reads {missing}, which the frames lack (they have {sorted(frames)})")
    blocks = []
    for s in sources:
        if s == BAR_MODEL_BEAT_FEATURES:
            blocks.append(beat_features(beat_frames, frames["beats"], frames["chord"], frames["pitch_classes"]))
        else:
            x = np.asarray(frames[s], dtype=np.float64)
            blocks.append(interval_means(x.reshape(x.shape[0], -1), beat_frames))
    return np.concatenate(blocks, axis=1)


def check_bar_model_record(record: Any) -> None:
    """A :class:`ParameterError` unless ``record`` is a ``bar_model`` record of ``fit-bars``: a mapping with its
    ``sources``, ``classes`` and every array of :data:`~mirzoo.spec.BAR_MODEL_ARRAYS`."""
    if not isinstance(record, Mapping):
        raise ParameterError(f"bar_model={record!r:.80} must be a record of fit-bars (a mapping)")
    missing = [k for k in ("sources", "classes", *BAR_MODEL_ARRAYS) if k not in record]
    if missing:
        raise ParameterError(f"bar_model lacks {missing}; expected a fit-bars record (python -m training.musical fit-bars)")


def choose_bars_by_model(beat_frames: np.ndarray, frames: Mapping[str, np.ndarray], meter_labels: Sequence[str],
                         record: Mapping[str, Any]) -> Optional[tuple[str, int, int]]:
    """``(meter, beats per bar, phase)`` read by a ``bar_model`` record (:mod:`mirzoo.tasks.bar_model`): the
    class probabilities of every tracked beat from :func:`bar_features`, the bar length and phase that explain
    them best (:func:`~mirzoo.tasks.bar_model.decode_bars`), and the meter head's most probable meter of that
    bar length.  ``None`` when it cannot choose: fewer than two bars of beats, or no meter of the vocabulary
    has the chosen bar length."""
    check_bar_model_record(record)
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    if beat_frames.size < 2 * min(int(c[0]) for c in record["classes"]):
        return None
    meter_mean = _frames(frames["meter"], len(meter_labels), "frames['meter']").mean(axis=0)
    return bars_from_features(bar_features(beat_frames, frames, record["sources"]), meter_mean, meter_labels, record)


def bars_from_features(x: np.ndarray, meter_mean: np.ndarray, meter_labels: Sequence[str],
                       record: Mapping[str, Any]) -> Optional[tuple[str, int, int]]:
    """``(meter, beats per bar, phase)`` a ``bar_model`` record reads from one clip's :func:`bar_features` rows
    ``x`` and the meter head's clip mean (``meter_mean`` over ``meter_labels``), or ``None`` (no bar length of
    two bars of beats, or none of the vocabulary's meters has the chosen one): what :func:`choose_bars_by_model`
    returns once the features are built."""
    chosen = decode_bars(bar_class_probabilities(x, record), [tuple(c) for c in record["classes"]])
    if chosen is None:
        return None
    b, p = chosen
    meter = meter_of_bar_length(meter_mean, meter_labels, b)
    return None if meter is None else (meter, b, p)


def _frames(x: np.ndarray, n_labels: int, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_labels or x.shape[0] == 0:
        raise ParameterError(f"{name} must be a non-empty [frames, {n_labels}] array, got shape {x.shape}")
    return x


# -- several playback rates: an ensemble for the rhythm heads ------------------------------------
def check_rhythm_shifts(shifts) -> tuple[float, ...]:
    """``shifts`` (semitones) as a tuple of floats: a non-empty sequence of distinct finite numbers within
    :data:`MAX_RHYTHM_SHIFT` of 0 (``0``: the audio as it is); else a :class:`ParameterError`."""
    if isinstance(shifts, (str, bytes, Mapping)) or not isinstance(shifts, (Sequence, np.ndarray)):
        raise ParameterError(f"rhythm_shifts={shifts!r}: expected a sequence of shifts in semitones, e.g. (0,) "
                             f"for the audio as it is or {tuple(round(v, 3) for v in RATE_ENSEMBLE)}")
    values = []
    for v in shifts:
        ok = (not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
              and math.isfinite(float(v)) and abs(float(v)) <= MAX_RHYTHM_SHIFT)
        if not ok:
            raise ParameterError(f"rhythm_shifts={shifts!r}: {v!r} is not a number of semitones within "
                                 f"+-{MAX_RHYTHM_SHIFT:g}")
        values.append(float(v))
    if not values:
        raise ParameterError("rhythm_shifts is empty: expected at least one shift in semitones (0: the audio as it is)")
    if len(set(values)) != len(values):
        raise ParameterError(f"rhythm_shifts={shifts!r} repeats a shift: expected distinct values")
    return tuple(values)


def shift_rate(shift: float) -> float:
    """Playback rate of a shift of ``shift`` semitones: ``2 ** (shift / 12)`` (tempo and pitch together)."""
    return 2.0 ** (float(shift) / 12.0)


def _rows_at(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Rows of ``x`` linearly interpolated at fractional row ``positions`` (held at the first and last row)."""
    pos = np.clip(positions, 0.0, x.shape[0] - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, x.shape[0] - 1)
    w = (pos - i0)[:, None]
    return x[i0] * (1.0 - w) + x[i1] * w


def _classes_at(p: np.ndarray, centres: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Columns of ``p`` as a function of the increasing ``centres``, read at ``where`` (linear; 0 outside)."""
    j = np.clip(np.searchsorted(centres, where, side="right") - 1, 0, centres.size - 2)
    w = np.clip((where - centres[j]) / (centres[j + 1] - centres[j]), 0.0, 1.0)
    inside = (where >= centres[0]) & (where <= centres[-1])
    return (p[:, j] * (1.0 - w) + p[:, j + 1] * w) * inside


def align_rate_frames(frames: Mapping[str, np.ndarray], rate: float, n_frames: int,
                      tempo_labels: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
    """Outputs of a pass over the audio played ``rate`` times faster, put on the plain pass's grid of ``n_frames``.

    What the clip holds at frame ``t`` (``t / fps`` seconds) was heard at ``t / rate`` seconds, i.e. at frame
    ``t / rate`` of the faster pass: each output is linearly interpolated there (held at the last frame past
    the end).  With ``tempo_labels``, the ``tempo`` head is moved back along its classes too: a tempo of ``c``
    BPM sounded as ``c * rate`` (read in log tempo, linearly, 0 beyond the head's range).
    """
    rate = float(rate)
    if not (math.isfinite(rate) and rate > 0):
        raise ParameterError(f"rate={rate!r} must be a positive number")
    n_frames = int(n_frames)
    positions = np.arange(n_frames) / rate
    out = {}
    for name, value in frames.items():
        v = np.asarray(value, dtype=np.float64)
        if v.ndim < 1 or v.shape[0] == 0:
            raise ParameterError(f"frames[{name!r}] has shape {v.shape}: expected at least one frame")
        aligned = _rows_at(v.reshape(v.shape[0], -1), positions).reshape((n_frames,) + v.shape[1:])
        if name == "tempo" and tempo_labels is not None and rate != 1.0:
            centres = np.log2(tempo_centres(tempo_labels))
            if aligned.ndim != 2 or aligned.shape[1] != centres.size or centres.size < 2:
                raise ParameterError(f"frames['tempo'] has shape {aligned.shape}: expected [frames, {centres.size}] "
                                     "for its labels")
            aligned = _classes_at(aligned, centres, centres + math.log2(rate))
        out[name] = aligned
    return out


def rhythm_ensemble(frames: Mapping[str, np.ndarray], shifted: Mapping[float, Mapping[str, np.ndarray]],
                    shifts: Sequence[float], tempo_labels: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
    """``frames`` (the plain pass's outputs) with each of :data:`RHYTHM_HEADS` it holds replaced by its mean
    over the passes of ``shifts`` (semitones): ``0`` is ``frames`` itself, any other ``s`` the outputs
    ``shifted[s]`` of a pass over the audio played :func:`shift_rate` ``(s)`` times faster, aligned by
    :func:`align_rate_frames`.  The other heads are ``frames``' own.
    """
    shifts = check_rhythm_shifts(shifts)
    out = dict(frames)
    heads = [h for h in RHYTHM_HEADS if h in frames]
    if shifts == (0.0,) or not heads:
        return out
    n = int(np.asarray(frames[heads[0]]).shape[0])
    passes = []
    for s in shifts:
        if s == 0.0:
            passes.append({h: np.asarray(frames[h], dtype=np.float64) for h in heads})
            continue
        if s not in shifted:
            raise ParameterError(f"no outputs for the pass at {s:+.3g} semitones; passes given: {sorted(shifted)}")
        missing = [h for h in heads if h not in shifted[s]]
        if missing:
            raise ParameterError(f"the pass at {s:+.3g} semitones lacks the head output(s) {missing}")
        passes.append(align_rate_frames({h: shifted[s][h] for h in heads}, shift_rate(s), n, tempo_labels))
    for h in heads:
        out[h] = np.mean([p[h] for p in passes], axis=0)
    return out


def signal_rhythm_ensemble(model, y: np.ndarray, frames: Mapping[str, np.ndarray],
                           shifts: Sequence[float] = RHYTHM_SHIFTS, batch_size: int = 16) -> dict[str, np.ndarray]:
    """:func:`rhythm_ensemble` of a decoded signal ``y`` (mono, at ``model.sample_rate``) whose plain-pass
    outputs ``frames`` the caller already has: the passes of the nonzero ``shifts`` run here on ``y`` played
    faster or slower (:func:`mirzoo.audio.change_rate`).  What :func:`analyze` reads, for code that runs
    ``model.forward`` itself (benchmarks, training scripts)."""
    shifts = check_rhythm_shifts(shifts)
    heads = [h for h in RHYTHM_HEADS if h in frames]
    shifted = {s: model.forward([change_rate(y, model.sample_rate, shift_rate(s))], heads, batch_size)[0]
               for s in shifts if s != 0.0}
    return rhythm_ensemble(frames, shifted, shifts, model.heads["tempo"])


# -- the whole analysis -------------------------------------------------------------------------
def analyze_frames(
    frames: Mapping[str, np.ndarray],
    heads: Mapping[str, Sequence[str]],
    fps: float,
    *,
    duration: Optional[float] = None,
    source: Optional[str] = None,
    model: str = "",
    chord_penalty: float = 8.0,
    key_penalty: float = 60.0,
    tightness: float = 100.0,
    clip_key: Optional[Mapping[str, Any]] = None,
    meter_contrast: float = 30.0,
    downbeat_floor: Optional[float] = 0.05,
    beat_tracker: str = "hmm",
    beat_band: float = 1.4,
    downbeat_model: Optional[Mapping[str, Any]] = None,
    beat_floor: Optional[float] = BEAT_FLOOR,
    bar_model: Optional[Mapping[str, Any]] = None,
    pitched_share: Optional[float] = PITCHED_SHARE,
) -> Analysis:
    """An :class:`Analysis` from frame-wise head outputs.

    Parameters
    ----------
    frames : mapping
        ``{"beats": [T, 2] (beat, downbeat), "key": [T, 24], "chord": [T, C], "meter": [T, M],
        "tempo": [T, B]}`` (probabilities, frames at ``fps``); optionally ``"mode": [T, 2]`` and
        ``"pitch_classes": [T, 12]``, read by a ``clip_key`` record with a ``mode_scale`` or ``chroma_scale``.
    heads : mapping
        Labels of each head (``Extractor.heads``); ``tempo`` labels start with the BPM.
    fps : float > 0
        Frames per second.
    duration : float, optional
        Length of the audio in seconds (default: ``T / fps``).
    chord_penalty, key_penalty : float >= 0
        Switching penalties (nats per change) of the chord and local-key decodes; at 50 frames per
        second the defaults ask for about 0.3 s (chords) and 2 s (keys) of clear evidence.
    beat_tracker : {"hmm", "dp"}
        ``"hmm"``: :func:`track_beats_hmm` (beat intervals within ``beat_band`` of the tempo's,
        free to drift from beat to beat); ``"dp"``: :func:`track_beats`, the reading before session 13.
    beat_band : float >= 1
        How far beat intervals may stray from the tempo's period, as a ratio (``"hmm"`` only).
    tightness : float > 0
        How strictly beat intervals follow the tempo (``"dp"`` only, :func:`track_beats`).
    clip_key : mapping, optional
        Parameters of :func:`clip_key_distribution` (the model's ``clip_key`` record): the global key
        and its candidates come from the key and chord heads together.  Without it, from the mean of
        the frame key probabilities.  Local keys always come from the key head alone.
    meter_contrast : float >= 0
        Weight of the downbeat evidence in the meter (:func:`choose_meter`); 0 takes the meter head's
        best meter.
    downbeat_floor : float > 0 or None
        Added to the beat activation before the downbeat activation is divided by it
        (:func:`downbeat_evidence`); ``None`` weighs the downbeat activation alone (the earlier
        reading).  Both defaults were chosen on half of the valid split of corpus version 2
        (``tcn-music``) and confirmed on the other half.
    downbeat_model : mapping, optional
        A ``downbeat_model`` record (the model's, fitted by ``python -m training.musical fit-downbeats``):
        the bar length and phase are chosen together by :func:`choose_bars` from the downbeat, beat, chord
        and pitch-class evidence at the tracked beats and the meter head (``frames`` then needs
        ``"pitch_classes"``); ``meter_contrast`` and ``downbeat_floor`` are not used.  Where it cannot
        choose (too few beats, or a 5/4-like meter it does not know), the reading above is used.
    bar_model : mapping, optional
        A ``bar_model`` record (the model's, fitted by ``python -m training.musical fit-bars``): the bar
        length and phase are read by a bidirectional GRU over the tracked beats (:func:`choose_bars_by_model`),
        from the frames its ``sources`` name (``tcn-music``'s: the ``beats``, ``chord`` and ``pitch_classes``
        heads and the ``embedding`` layer, which :func:`analyze` then also computes).  It takes precedence
        over ``downbeat_model``; where it cannot choose, the evidence reading is used.
    beat_floor : float in [0, 1) or None
        A clip whose beat activation stays below it everywhere (silence, noise) has no beats, downbeats,
        tempo or meter (:data:`BEAT_FLOOR`); ``None`` or 0 tracks beats in any activation.
    pitched_share : float in [0, 1) or None
        A clip in which fewer than this share of the frames has a pitch class of the ``pitch_classes`` head
        (when ``frames`` have it) above 0.5 has the key :data:`NO_KEY` (:data:`PITCHED_SHARE`); ``None`` or 0
        always reads a key.
    """
    if beat_floor is not None and not (isinstance(beat_floor, (int, float)) and 0 <= beat_floor < 1):
        raise ParameterError(f"beat_floor={beat_floor!r} must be a number in [0, 1) (a beat activation), or None")
    if pitched_share is not None and not (isinstance(pitched_share, (int, float)) and 0 <= pitched_share < 1):
        raise ParameterError(f"pitched_share={pitched_share!r} must be a number in [0, 1) (a share of the frames), "
                             "or None")
    missing = [h for h in REQUIRED_HEADS if h not in frames]
    if missing:
        raise ParameterError(f"frames lack the head output(s) {missing}; expected {list(REQUIRED_HEADS)}")
    if not fps > 0:
        raise ParameterError(f"fps={fps!r} must be > 0")
    beats_act = np.asarray(frames["beats"], dtype=np.float64)
    if beats_act.ndim != 2 or beats_act.shape[1] < 2:
        raise ParameterError(f"frames['beats'] must be [frames, 2] (beat, downbeat), got shape {beats_act.shape}")
    n_frames = beats_act.shape[0]
    duration = float(n_frames / fps if duration is None else duration)
    key_probs = _frames(frames["key"], len(heads["key"]), "frames['key']")
    chord_probs = _frames(frames["chord"], len(heads["chord"]), "frames['chord']")
    meter_probs = _frames(frames["meter"], len(heads["meter"]), "frames['meter']")
    tempo_probs = _frames(frames["tempo"], len(heads["tempo"]), "frames['tempo']")

    if clip_key is None:
        key_top = global_distribution(key_probs, heads["key"])
    else:
        dist = clip_key_distribution(key_probs, chord_probs, clip_key, frames.get("mode"), frames.get("pitch_classes"))
        key_top = [(heads["key"][i], float(dist[i])) for i in np.argsort(-dist, kind="stable")[:3]]
    local_keys = label_segments(smooth_labels(key_probs, key_penalty), heads["key"], fps, duration, key_probs)
    key = key_top[0][0]
    if pitched_share and "pitch_classes" in frames:
        pitched = _frames(frames["pitch_classes"], 12, "frames['pitch_classes']").max(axis=1) > 0.5
        if float(pitched.mean()) < pitched_share:  # (almost) nothing pitched sounds: no key to hear
            key, local_keys = NO_KEY, [Segment(0.0, duration, NO_KEY, float(1.0 - pitched.mean()))]
    meter_top = global_distribution(meter_probs, heads["meter"])
    tempo_top = global_distribution(tempo_probs, heads["tempo"])
    beat_frames, seed, beatless = clip_beats(beats_act, tempo_probs, heads["tempo"], fps, beat_tracker=beat_tracker,
                                             beat_band=beat_band, tightness=tightness, beat_floor=beat_floor)
    tempo = seed
    if beat_frames.size >= 3:
        refined = 60.0 * fps / float(np.median(np.diff(beat_frames)))
        if abs(refined / seed - 1.0) <= 0.08:
            tempo = refined
    if downbeat_floor is not None and not (isinstance(downbeat_floor, (int, float)) and downbeat_floor > 0):
        raise ParameterError(f"downbeat_floor={downbeat_floor!r} must be a number > 0, or None for the downbeat "
                             "activation alone")
    evidence = {} if downbeat_floor is None else {"beat_activation": beats_act[:, 0], "floor": downbeat_floor}
    chosen = None
    if bar_model is not None:
        if not beatless:
            chosen = choose_bars_by_model(beat_frames, frames, heads["meter"], bar_model)
    elif downbeat_model is not None:
        if "pitch_classes" not in frames:
            raise ParameterError("downbeat_model reads the 'pitch_classes' head, which frames lack; "
                                 f"frames have {sorted(frames)}")
        if not beatless:
            chosen = choose_bars(beat_frames, frames, heads["meter"], downbeat_model)
    if beatless:
        tempo, meter, positions = None, None, np.zeros(0, dtype=np.int64)
    elif chosen is not None:
        meter, per_bar, phase = chosen
        positions = ((np.arange(beat_frames.size) - phase) % per_bar + 1).astype(np.int64)
    else:
        meter = choose_meter(meter_probs, heads["meter"], beat_frames, beats_act[:, 1], meter_contrast, **evidence)
        _, positions = downbeat_phase(beat_frames, beats_act[:, 1], beats_per_bar(meter), **evidence)
    if meter is not None and meter_top and meter_top[0][0] != meter:
        # the reported meter first, with the meter head's probability of it (what the meter row's confidence
        # reads), then the head's most probable others: the bar reading, not the head alone, chose it
        ranked = global_distribution(meter_probs, heads["meter"], top_k=len(heads["meter"]))
        meter_top = [c for c in ranked if c[0] == meter] + [c for c in ranked if c[0] != meter][: len(meter_top) - 1]
    beat_times = beat_frames / fps
    chords = label_segments(smooth_labels(chord_probs, chord_penalty), heads["chord"], fps, duration, chord_probs)
    return Analysis(
        source=source, model=model, duration=duration,
        key=key, key_candidates=tuple(key_top), local_keys=tuple(local_keys),
        tempo=None if tempo is None else float(tempo), tempo_candidates=tuple(tempo_top),
        meter=meter, meter_candidates=tuple(meter_top),
        beats=beat_times, beat_positions=positions, downbeats=beat_times[positions == 1],
        chords=tuple(chords), frame_rate=float(fps),
    )


def clip_beats(beats: np.ndarray, tempo_probs: np.ndarray, tempo_labels: Sequence[str], fps: float, *,
               beat_tracker: str = "hmm", beat_band: float = 1.4, tightness: float = 100.0,
               beat_floor: Optional[float] = BEAT_FLOOR) -> tuple[np.ndarray, float, bool]:
    """``(beat frames, tempo seed in BPM, beatless)``: the beats :func:`analyze_frames` tracks in a clip's
    ``beats`` activation (``[T, 2]``, beat and downbeat) from the tempo head's estimate (``tempo_probs``
    ``[T, len(tempo_labels)]``, :func:`estimate_tempo`); no beats when the beat activation stays below
    ``beat_floor`` everywhere (``beatless``).  The options are :func:`analyze_frames`'s."""
    if beat_tracker not in ("hmm", "dp"):
        raise ParameterError(f"beat_tracker={beat_tracker!r}: expected 'hmm' or 'dp'")
    act = np.asarray(beats, dtype=np.float64)[:, 0]
    seed = estimate_tempo(tempo_probs, tempo_centres(tempo_labels), act, fps)
    beatless = bool(beat_floor) and float(act.max(initial=0.0)) < beat_floor
    if beatless:
        beat_frames = np.zeros(0, dtype=np.int64)
    elif beat_tracker == "hmm":
        beat_frames = track_beats_hmm(act, fps, seed, band=beat_band)
    else:
        beat_frames = track_beats(act, fps, seed, tightness=tightness)
    return beat_frames, seed, beatless


def metrical_inputs(bar_model: Mapping[str, Any]) -> list[str]:
    """The network outputs :func:`metrical_frames` reads: the ``beats``, ``tempo`` and ``meter`` heads and the
    frames the ``bar_model`` record's ``sources`` name (all but the beat features it builds itself)."""
    keys = ["beats", "tempo", "meter"]
    return keys + [s for s in dict.fromkeys(bar_model["sources"]) if s != BAR_MODEL_BEAT_FEATURES and s not in keys]


def metrical_width(bar_model: Mapping[str, Any], heads: Mapping[str, Sequence[str]]) -> int:
    """Width of the :data:`METRICAL_LAYER`: the ``bar_model`` record's classes and the meter head's labels."""
    return len(bar_model["classes"]) + len(heads["meter"])


def metrical_frames(frames: Mapping[str, np.ndarray], heads: Mapping[str, Sequence[str]], fps: float,
                    bar_model: Mapping[str, Any], **beat_options) -> np.ndarray:
    """The :data:`METRICAL_LAYER` of a clip, ``[T, n_classes + n_meters]`` float32: for each frame, the
    ``bar_model`` record's probabilities of each (beats per bar, position in the bar) of its ``classes``
    (:func:`~mirzoo.tasks.bar_model.bar_class_probabilities`) at the tracked beat that holds the frame (the
    last beat at or before it; frames before the first beat take the first beat's), then the meter head's
    probabilities of the frame.  The beats are the ones :func:`analyze_frames` reports (:func:`clip_beats`,
    ``beat_options`` as there); a clip without beats has the same probability for every class.

    Where :data:`tonal <mirzoo.nn.tcn.TonicAligned>` sees pitch relative to the tonic, this sees each frame
    relative to the bar: pooled over a clip (mean and spread), it says how the clip's bars are built, which
    the network's own layers, pooled, do not (``benchmarks/musicality.py``'s meter probe)."""
    check_bar_model_record(bar_model)
    lacking = [k for k in metrical_inputs(bar_model) if k not in frames]
    if lacking:
        raise ParameterError(f"frames lack {lacking}, which the metrical layer reads; frames have {sorted(frames)}")
    beats = np.asarray(frames["beats"], dtype=np.float64)
    if beats.ndim != 2 or beats.shape[1] < 2:
        raise ParameterError(f"frames['beats'] must be [frames, 2] (beat, downbeat), got shape {beats.shape}")
    n = beats.shape[0]
    meter = _frames(frames["meter"], len(heads["meter"]), "frames['meter']")
    tempo = _frames(frames["tempo"], len(heads["tempo"]), "frames['tempo']")
    if meter.shape[0] != n or tempo.shape[0] != n:
        raise ParameterError(f"frames['meter'] {meter.shape} and frames['tempo'] {tempo.shape} must have the "
                             f"{n} frames of frames['beats']")
    n_classes = len(bar_model["classes"])
    beat_frames, _, _ = clip_beats(beats, tempo, heads["tempo"], fps, **beat_options)
    beat_frames = beat_frames[beat_frames < n]
    if beat_frames.size == 0:
        per_frame = np.full((n, n_classes), 1.0 / n_classes)
    else:
        probs = bar_class_probabilities(bar_features(beat_frames, frames, bar_model["sources"]), bar_model)
        holder = np.searchsorted(beat_frames, np.arange(n), side="right") - 1
        per_frame = probs[np.clip(holder, 0, beat_frames.size - 1)]
    return np.ascontiguousarray(np.concatenate([per_frame, meter], axis=1), dtype=np.float32)


def analysis_outputs(heads: Mapping[str, Any], sources: Sequence[str] = ()) -> list[str]:
    """The outputs :func:`analyze` runs the model for: :data:`REQUIRED_HEADS`, the :data:`OPTIONAL_HEADS` in
    ``heads``, and the layers among ``sources`` (a ``bar_model`` record's) that are neither of those nor the beat
    features (e.g. ``embedding``)."""
    keys = list(REQUIRED_HEADS) + [h for h in OPTIONAL_HEADS if h in heads]
    return keys + [s for s in sources if s != BAR_MODEL_BEAT_FEATURES and s not in keys]


def check_analysis_heads(model) -> None:
    """A :class:`ParameterError` naming the missing heads unless ``model`` is a frame model with all of
    :data:`REQUIRED_HEADS`."""
    heads = dict(getattr(model, "heads", {}) or {})
    missing = [h for h in REQUIRED_HEADS if h not in heads]
    if missing or getattr(model, "output_kind", None) != "frame":
        why = (f"it lacks the head(s) {missing}" if missing else
               f"its heads are {getattr(model, 'output_kind', '?')}-level, not frame-wise")
        raise ParameterError(
            f"model {getattr(model, 'name', '?')!r} cannot analyze audio: {why} (it has {list(heads)}); "
            f"analysis needs frame-wise heads {list(REQUIRED_HEADS)}, e.g. model 'tcn-music'"
        )


def analyze(model, audio, sr: Optional[int] = None, *, batch_size: int = 16, progress: bool = False,
            rhythm_shifts: Sequence[float] = RHYTHM_SHIFTS, **options):
    """Key, tempo, meter, beats, downbeats and chords of one input (or a list of inputs).

    ``model`` is a loaded frame model with the heads of :data:`REQUIRED_HEADS` (a
    :class:`mirzoo.Extractor`); ``audio`` and ``sr`` as in ``Extractor.extract``; ``options``
    go to :func:`analyze_frames`.  Returns an :class:`Analysis`, or a list for list input.

    ``rhythm_shifts`` (semitones): the network also hears the audio played faster or slower by each
    nonzero shift (a tape's speed change, :func:`shift_rate`), and the rhythm heads
    (:data:`RHYTHM_HEADS`: beats, tempo, meter) are averaged over those passes and the plain one
    (:func:`rhythm_ensemble`) before the beats, downbeats, tempo and meter are read; key and chords
    come from the plain pass.  The default, :data:`RHYTHM_SHIFTS` ``(0,)``, is one pass;
    :data:`RATE_ENSEMBLE` (0 and +-1/3, +-2/3 of a semitone) costs four more (see the module notes for
    what it changes).

    A silent input (every sample below :data:`mirzoo.audio.SILENCE_PEAK`, -80 dBFS) is still analysed,
    with a :class:`~mirzoo.SilentAudioWarning` naming it, as :meth:`mirzoo.Extractor.tag` does.
    """
    check_analysis_heads(model)
    shifts = check_rhythm_shifts(rhythm_shifts)
    options.setdefault("clip_key", model.spec.clip_key)
    options.setdefault("downbeat_model", model.spec.downbeat_model)
    options.setdefault("bar_model", model.spec.bar_model)
    from mirzoo.inference.runner import as_list  # deferred: it imports Keras; the rest here is numpy only

    items, is_list = as_list(audio)
    bar_model = options["bar_model"]
    keys = analysis_outputs(model.heads, bar_model["sources"] if isinstance(bar_model, Mapping) else ())
    fps = model.sample_rate / model.hop_length
    peaks: list[float] = []
    plain = model.run_inputs(items, sr, keys, batch_size, progress, peaks=peaks)
    warn_silent(items, peaks, indexed=is_list, what="its key, beats, chords and the rest", stacklevel=3)
    rhythm = [h for h in RHYTHM_HEADS if h in keys]
    shifted = {s: model.run_inputs(items, sr, rhythm, batch_size, progress, rate=shift_rate(s))
               for s in shifts if s != 0.0}
    results = []
    for i, (out, path, samples) in enumerate(plain):
        frames = rhythm_ensemble(out, {s: passes[i][0] for s, passes in shifted.items()}, shifts, model.heads["tempo"])
        results.append(analyze_frames(frames, model.heads, fps, duration=samples / model.sample_rate, source=path,
                                      model=model.name, **options))
    return results if is_list else results[0]
