"""Rendering of the public corpus: orchestration, FluidSynth, frame targets and augmentation.

A clip is rendered from a note table that this module builds itself (after the
transposition, tempo, octave shifts and instrument draw of the clip), so the frame
targets are computed from exactly the notes the synthesiser played.  FluidSynth is
driven through a persistent ``pyfluidsynth`` synth (float output, no dither); the
``fluidsynth`` command line is the fall-back, fed a Standard MIDI File written here.

Everything random is drawn from a :class:`numpy.random.Generator` made per clip by
:func:`clip_rng`, so a clip's content does not depend on which worker renders it or
in which order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import shutil
import struct
import subprocess
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- soundfonts

SOUNDFONT_DIR = "/usr/share/sounds/sf2"

#: Soundfonts known by name.  FluidR3 is Debian's ``fluid-soundfont-gm``; TimGM6mb is
#: ``timgm6mb-soundfont``, whose samples share nothing with FluidR3.
SOUNDFONTS = {
    "FluidR3": os.path.join(SOUNDFONT_DIR, "FluidR3_GM.sf2"),
    "TimGM6mb": os.path.join(SOUNDFONT_DIR, "TimGM6mb.sf2"),
    # Debian musescore-general-soundfont-small (MIT) and csound-soundfont (public domain)
    "MuseScore_General_Lite": "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
    "sf_GMbank": os.path.join(SOUNDFONT_DIR, "sf_GMbank.sf2"),
    # Debian opl3-soundfont (GPL-3+): FM synthesis after the OPL3 chip, a timbre no sample-based font has
    "OPL3": os.path.join(SOUNDFONT_DIR, "OPL-3_FM_128M.sf2"),
}

#: Soundfonts reserved for the ``test`` generalisation split: never train on them.  TimGM6mb renders the
#: musicality benchmark; OPL3 a second held-out render, far from every training timbre.
TEST_ONLY_SOUNDFONTS = frozenset({"TimGM6mb", "OPL3"})

#: Soundfonts never used at all by the corpus builder (reserved for evaluation elsewhere).
FORBIDDEN_SOUNDFONT_WORDS = ("freepats", "hydrogen")


class SoundfontPolicyError(ValueError):
    """A test-only soundfont was asked for a train or valid split."""


def resolve_soundfont(soundfont: str) -> Tuple[str, str]:
    """Resolve a soundfont name or path to ``(name, path)``.

    Parameters
    ----------
    soundfont : str
        ``"FluidR3"``, ``"TimGM6mb"`` or a path to an ``.sf2`` file.  A path to a file
        named like a known soundfont (``TimGM6mb.sf2``) gets that name, so the
        test-only rule cannot be bypassed by spelling out the path.

    Raises
    ------
    ValueError
        If the name is unknown or the file does not exist.
    """
    if soundfont in SOUNDFONTS:
        name, path = soundfont, SOUNDFONTS[soundfont]
    else:
        path = os.path.expanduser(soundfont)
        stem = os.path.splitext(os.path.basename(path))[0].lower()
        name = next((n for n, p in SOUNDFONTS.items()
                     if stem == os.path.splitext(os.path.basename(p))[0].lower() or stem == n.lower()),
                    os.path.splitext(os.path.basename(path))[0])
        if not path.lower().endswith((".sf2", ".sf3")) and not os.path.isfile(path):
            raise ValueError(
                f"soundfont={soundfont!r} is neither a known name ({', '.join(SOUNDFONTS)}) "
                f"nor a path to an .sf2 file"
            )
    if any(word in path.lower() for word in FORBIDDEN_SOUNDFONT_WORDS):
        raise SoundfontPolicyError(f"soundfont '{path}' is reserved for evaluation (freepats, hydrogen-drumkits): "
                                   f"the corpus never renders with it")
    if not os.path.isfile(path):
        hint = (" (apt-get install fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small "
                "csound-soundfont opl3-soundfont)" if name in SOUNDFONTS else "")
        raise ValueError(f"soundfont file not found: '{path}'{hint}")
    return name, path


def check_soundfont_for_splits(name: str, splits: Sequence[str]) -> None:
    """Refuse a test-only soundfont for any split but ``test``.

    Raises
    ------
    SoundfontPolicyError
        If ``name`` is test-only and ``splits`` holds ``train`` or ``valid``.
    """
    bad = [s for s in splits if s != "test"]
    if name in TEST_ONLY_SOUNDFONTS and bad:
        raise SoundfontPolicyError(
            f"soundfont {name!r} is reserved for the 'test' generalisation split and must never be "
            f"used for training data, but splits {bad} were requested: use --split test with it, "
            f"or --soundfont FluidR3 for train/valid"
        )


# --------------------------------------------------------------------------- instruments

#: GM programs used, as ``program: (family, name, lowest, highest MIDI pitch)``.
PROGRAMS: Dict[int, Tuple[str, str, int, int]] = {
    0: ("piano", "acoustic grand piano", 21, 108), 1: ("piano", "bright acoustic piano", 21, 108),
    2: ("piano", "electric grand piano", 21, 108), 4: ("piano", "electric piano 1", 28, 103),
    5: ("piano", "electric piano 2", 28, 103), 6: ("harpsichord", "harpsichord", 29, 89),
    8: ("mallet", "celesta", 60, 108), 9: ("mallet", "glockenspiel", 79, 108),
    11: ("mallet", "vibraphone", 53, 89), 12: ("mallet", "marimba", 45, 96),
    13: ("mallet", "xylophone", 65, 108), 16: ("organ", "drawbar organ", 24, 96),
    19: ("organ", "church organ", 21, 108), 20: ("organ", "reed organ", 36, 96),
    21: ("accordion", "accordion", 41, 89), 22: ("accordion", "harmonica", 60, 84),
    23: ("accordion", "tango accordion", 41, 89), 24: ("guitar", "nylon guitar", 40, 84),
    25: ("guitar", "steel guitar", 40, 84), 26: ("guitar", "jazz guitar", 40, 86),
    27: ("guitar", "clean electric guitar", 40, 86), 32: ("bass", "acoustic bass", 28, 60),
    33: ("bass", "finger bass", 28, 67), 34: ("bass", "pick bass", 28, 67),
    35: ("bass", "fretless bass", 28, 67), 40: ("strings", "violin", 55, 103),
    41: ("strings", "viola", 48, 91), 42: ("strings", "cello", 36, 76),
    43: ("strings", "contrabass", 28, 60), 45: ("strings", "pizzicato strings", 28, 96),
    48: ("strings", "string ensemble 1", 28, 103), 49: ("strings", "string ensemble 2", 28, 103),
    15: ("plucked", "dulcimer", 48, 96), 46: ("plucked", "harp", 24, 103),
    105: ("plucked", "banjo", 48, 84), 107: ("plucked", "koto", 48, 96),
    52: ("choir", "choir aahs", 40, 84), 53: ("choir", "voice oohs", 40, 84),
    56: ("brass", "trumpet", 54, 86), 57: ("brass", "trombone", 34, 74),
    58: ("brass", "tuba", 26, 58), 60: ("brass", "french horn", 34, 77),
    61: ("brass", "brass section", 34, 86), 64: ("reed", "soprano sax", 56, 88),
    65: ("reed", "alto sax", 49, 81), 66: ("reed", "tenor sax", 44, 76),
    67: ("reed", "baritone sax", 36, 69), 68: ("reed", "oboe", 58, 91),
    69: ("reed", "english horn", 52, 81), 70: ("reed", "bassoon", 34, 75),
    71: ("reed", "clarinet", 50, 94), 72: ("pipe", "piccolo", 74, 108), 73: ("pipe", "flute", 60, 96),
    74: ("pipe", "recorder", 60, 96), 75: ("pipe", "pan flute", 60, 96), 78: ("pipe", "whistle", 60, 96),
    79: ("pipe", "ocarina", 60, 84),
}

#: Instrument families (``instrument:<family>`` tags).
FAMILIES = tuple(sorted({family for family, _, _, _ in PROGRAMS.values()}))

_FAMILY_PROGRAMS: Dict[str, List[int]] = {f: sorted(p for p, v in PROGRAMS.items() if v[0] == f) for f in FAMILIES}

# family weights of the orchestration modes
_KEYBOARD = {"piano": 0.45, "organ": 0.25, "harpsichord": 0.15, "accordion": 0.05, "mallet": 0.1}
_PLUCKED = {"guitar": 0.7, "plucked": 0.3}
_SECTION = {"strings": 0.35, "choir": 0.2, "brass": 0.15, "reed": 0.15, "pipe": 0.1, "organ": 0.05}
_MIXED = {"strings": 0.2, "brass": 0.12, "reed": 0.16, "pipe": 0.12, "choir": 0.08, "piano": 0.1,
          "guitar": 0.08, "organ": 0.05, "plucked": 0.05, "mallet": 0.04}
_SOLO = {"piano": 0.12, "harpsichord": 0.04, "organ": 0.06, "accordion": 0.08, "guitar": 0.1,
         "strings": 0.14, "plucked": 0.06, "choir": 0.06, "brass": 0.08, "reed": 0.12, "pipe": 0.1,
         "mallet": 0.04}

#: MIDI channel index of GM percussion (channel 10).
DRUM_CHANNEL = 9
_CHANNELS = [c for c in range(16) if c != DRUM_CHANNEL]


def _choice(rng: np.random.Generator, weights: Dict[str, float]) -> str:
    keys = sorted(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _fit_program(rng: np.random.Generator, family: str, lo: int, hi: int, allow_shift: bool) -> Tuple[int, int]:
    """Pick a program of ``family`` for a part spanning ``lo..hi``; return ``(program, octave_shift)``.

    Programs whose range covers the part are preferred; failing that, the part may be
    shifted by octaves (the shift is part of the rendered notes, so labels follow).
    """
    best: List[Tuple[float, int, int]] = []
    shifts = (0, -12, 12, -24, 24) if allow_shift else (0,)
    for program in _FAMILY_PROGRAMS[family]:
        _, _, low, high = PROGRAMS[program]
        for shift in shifts:
            cost = max(0, low - (lo + shift)) + max(0, (hi + shift) - high) + 0.5 * abs(shift) / 12
            if lo + shift < 0 or hi + shift > 127:
                continue
            best.append((cost, program, shift))
    floor = min(c for c, _, _ in best)
    candidates = sorted({(p, s) for c, p, s in best if c <= floor + 1e-9})
    program, shift = candidates[int(rng.integers(len(candidates)))]
    return program, shift


@dataclasses.dataclass
class Orchestration:
    """Instrument draw of a clip.

    Attributes
    ----------
    mode : str
        ``keyboard``, ``plucked``, ``section``, ``mixed``, ``original``, ``solo`` or ``doubled``.
    voices : list of (part, channel, program, octave_shift)
        One entry per rendered voice; a part may be played by several voices (doubling).
    """

    mode: str
    voices: List[Tuple[int, int, int, int]]

    @property
    def programs(self) -> List[int]:
        """GM program per voice."""
        return [v[2] for v in self.voices]

    @property
    def families(self) -> List[str]:
        """Sorted instrument families present."""
        return sorted({PROGRAMS[v[2]][0] for v in self.voices})

    @property
    def solo(self) -> bool:
        """True when one instrument plays everything (one program, no doubling)."""
        return self.mode in ("keyboard", "plucked", "solo")


def draw_orchestration(rng: np.random.Generator, part_ranges: Sequence[Tuple[int, int]],
                       known_programs: Sequence[int], collection: str) -> Orchestration:
    """Draw instruments for the parts of a clip.

    Parameters
    ----------
    rng : np.random.Generator
        The clip's generator.
    part_ranges : sequence of (lowest, highest) MIDI pitch
        Range of each part inside the clip (after transposition); ``None``-free.
    known_programs : sequence of int
        GM program music21 knows for each part (-1 when unknown).
    collection : str
        Collection name (string quartets get their own instruments more often).
    """
    n = len(part_ranges)
    if n == 1:
        lo, hi = part_ranges[0]
        if rng.random() < 0.8:
            program, shift = _fit_program(rng, _choice(rng, _SOLO), lo, hi, True)
            return Orchestration("solo", [(0, 0, program, shift)])
        first = _choice(rng, _SOLO)
        second = _choice(rng, {k: v for k, v in _SOLO.items() if k != first})
        p1, s1 = _fit_program(rng, first, lo, hi, True)
        p2, s2 = _fit_program(rng, second, lo - 12, hi - 12, True)
        return Orchestration("doubled", [(0, 0, p1, s1), (0, 1, p2, s2 - 12)])
    channels = [_CHANNELS[i % len(_CHANNELS)] for i in range(n)]
    original_ok = all(p in PROGRAMS for p in known_programs) and len(set(known_programs)) > 1
    p_original = 0.5 if collection == "string-quartets" else 0.1
    u = rng.random()
    if original_ok and u < p_original:
        return Orchestration("original", [(i, channels[i], int(known_programs[i]), 0) for i in range(n)])
    u = rng.random()
    if u < 0.25:
        family = _choice(rng, _KEYBOARD)
        lo = min(r[0] for r in part_ranges)
        hi = max(r[1] for r in part_ranges)
        program, shift = _fit_program(rng, family, lo, hi, True)
        return Orchestration("keyboard", [(i, channels[i], program, shift) for i in range(n)])
    if u < 0.35:
        family = _choice(rng, _PLUCKED)
        lo = min(r[0] for r in part_ranges)
        hi = max(r[1] for r in part_ranges)
        program, shift = _fit_program(rng, family, lo, hi, True)
        return Orchestration("plucked", [(i, channels[i], program, shift) for i in range(n)])
    voices = []
    if u < 0.75:
        family = _choice(rng, _SECTION)
        for i, (lo, hi) in enumerate(part_ranges):
            program, shift = _fit_program(rng, family, lo, hi, True)
            voices.append((i, channels[i], program, shift))
        return Orchestration("section", voices)
    lowest = int(np.argmin([r[0] for r in part_ranges]))
    for i, (lo, hi) in enumerate(part_ranges):
        family = "bass" if (i == lowest and rng.random() < 0.4) else _choice(rng, _MIXED)
        program, shift = _fit_program(rng, family, lo, hi, True)
        voices.append((i, channels[i], program, shift))
    return Orchestration("mixed", voices)


# --------------------------------------------------------------------------- seeds


def stable_int(text: str) -> int:
    """A 64-bit integer from ``text`` that is the same on every run and machine."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def clip_rng(seed: int, piece_id: str, clip_index: int) -> np.random.Generator:
    """Generator of one clip, derived from the build seed, the piece and the clip index."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), stable_int(piece_id), int(clip_index)]))


# --------------------------------------------------------------------------- notes


@dataclasses.dataclass
class NoteEvents:
    """Notes as rendered, times in seconds from the clip start.

    Attributes
    ----------
    onset, offset : np.ndarray [shape=(n,), float64]
    pitch, velocity, channel, program : np.ndarray [shape=(n,), int]
    """

    onset: np.ndarray
    offset: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    channel: np.ndarray
    program: np.ndarray

    def __len__(self) -> int:
        return int(self.onset.size)

    def table(self) -> np.ndarray:
        """``float64 [n, 6]``: onset, offset, pitch, velocity, channel, program."""
        return np.stack([self.onset, self.offset, self.pitch, self.velocity, self.channel,
                         self.program], axis=1).astype(np.float64).reshape(-1, 6)

    def scaled(self, factor: float) -> "NoteEvents":
        """The same notes with all times multiplied by ``factor``."""
        return dataclasses.replace(self, onset=self.onset * factor, offset=self.offset * factor)


def quantize_events(events: NoteEvents, synth_sr: int) -> NoteEvents:
    """Round note times to whole synthesiser samples (the times actually rendered)."""
    onset = np.round(events.onset * synth_sr) / synth_sr
    offset = np.maximum(np.round(events.offset * synth_sr) / synth_sr, onset + 1.0 / synth_sr)
    return dataclasses.replace(events, onset=onset, offset=offset)


# --------------------------------------------------------------------------- frame targets


def n_frames_for(n_samples: int, hop: int) -> int:
    """Frames of a centred frame grid (librosa ``center=True``): ``1 + n_samples // hop``."""
    return 1 + int(n_samples) // int(hop)


def frame_targets(events: NoteEvents, n_samples: int, sr: int, hop: int) -> Dict[str, np.ndarray]:
    """Frame-level targets of the rendered pitched notes (channel 10 drums are left out).

    Frame ``t`` is centred on sample ``t * hop`` (``t * hop / sr`` seconds), as in
    ``librosa.feature.*(center=True)``.  A note is active in the frames whose centre
    lies in ``[onset, offset)`` (at least its onset frame); its onset frame is
    ``round(onset * sr / hop)``.

    Parameters
    ----------
    events : NoteEvents
    n_samples : int > 0
        Length of the audio at ``sr``.
    sr : int > 0
    hop : int > 0

    Returns
    -------
    dict
        ``roll`` uint8 [T, 128], ``chroma`` uint8 [T, 12], ``onsets`` uint8 [T, 128] with
        ``T = 1 + n_samples // hop``.
    """
    n_frames = n_frames_for(n_samples, hop)
    roll = np.zeros((n_frames, 128), dtype=np.uint8)
    onsets = np.zeros((n_frames, 128), dtype=np.uint8)
    rate = sr / hop
    for on, off, pitch, channel in zip(events.onset, events.offset, events.pitch, events.channel):
        f_on = int(round(on * rate))
        if f_on >= n_frames or not 0 <= pitch <= 127 or channel == DRUM_CHANNEL:
            continue
        f_off = min(n_frames, max(f_on + 1, int(math.ceil(off * rate - 1e-9))))
        roll[f_on:f_off, int(pitch)] = 1
        onsets[f_on, int(pitch)] = 1
    chroma = np.zeros((n_frames, 12), dtype=np.uint8)
    for pc in range(12):
        chroma[:, pc] = roll[:, pc::12].max(axis=1)
    return {"roll": roll, "chroma": chroma, "onsets": onsets}


# --------------------------------------------------------------------------- MIDI file


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def write_midi(path: str, events: NoteEvents, controls: Dict[int, Dict[int, int]], *,
               ticks_per_second: int = 960) -> None:
    """Write ``events`` as a type-0 Standard MIDI File (120 qpm, 480 ticks per quarter).

    Parameters
    ----------
    path : str
        Output ``.mid`` path.
    events : NoteEvents
        Times in seconds.
    controls : dict
        ``{channel: {controller: value}}`` sent at time 0 after the program changes
        (programs come from ``events.program``).
    ticks_per_second : int
        960 = 480 ticks per quarter at 120 qpm.
    """
    timed: List[Tuple[int, int, bytes]] = []
    programs = {}
    for ch, prog in zip(events.channel, events.program):
        programs.setdefault(int(ch), int(prog))
    for ch in sorted(set(programs) | set(controls)):
        if ch in programs:
            timed.append((0, 0, bytes([0xC0 | ch, programs[ch] & 0x7F])))
        for ctrl, value in sorted(controls.get(ch, {}).items()):
            timed.append((0, 1, bytes([0xB0 | ch, ctrl & 0x7F, int(value) & 0x7F])))
    for on, off, pitch, vel, ch in zip(events.onset, events.offset, events.pitch, events.velocity, events.channel):
        timed.append((int(round(on * ticks_per_second)), 3, bytes([0x90 | int(ch), int(pitch), int(vel)])))
        timed.append((int(round(off * ticks_per_second)), 2, bytes([0x80 | int(ch), int(pitch), 0])))
    timed.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(b"\x00\xff\x51\x03\x07\xa1\x20")  # tempo 500000 us per quarter
    last = 0
    for tick, _, data in timed:
        track += _varlen(tick - last) + data
        last = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_second // 2)
    with open(path, "wb") as f:
        f.write(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


# --------------------------------------------------------------------------- synthesis


@dataclasses.dataclass
class Effects:
    """FluidSynth effect settings of a clip (reverb/chorus sends are MIDI CC 91/93)."""

    reverb_send: int = 0
    room_size: float = 0.2
    damping: float = 0.0
    width: float = 0.5
    reverb_level: float = 0.9
    chorus_send: int = 0
    chorus_level: float = 2.0
    chorus_speed: float = 0.3
    chorus_depth: float = 8.0


_BLOCK = 64  # FluidSynth renders in blocks of 64 samples


class FluidRenderer:
    """Render :class:`NoteEvents` with FluidSynth.

    Every clip is rendered by a freshly created synthesiser (soundfont samples are
    loaded on demand, about 35 ms for FluidR3), so the output of a clip is a pure
    function of its notes and effects: it does not depend on the clips rendered
    before it in the same process.

    Parameters
    ----------
    soundfont_path : str
        ``.sf2`` file.
    sample_rate : int
        Synthesis rate in Hz.
    backend : {"auto", "pyfluidsynth", "cli"}
        ``auto`` uses pyfluidsynth when importable, else the ``fluidsynth`` program.
    gain : float
        Master gain of the synthesiser (the corpus normalises each clip afterwards).
    """

    def __init__(self, soundfont_path: str, sample_rate: int, *, backend: str = "auto", gain: float = 0.3,
                 extra_soundfonts: Sequence[str] = ()):
        self.soundfont_path = soundfont_path
        self.extra_soundfonts = tuple(extra_soundfonts)
        self.sample_rate = int(sample_rate)
        self.gain = float(gain)
        if backend not in ("auto", "pyfluidsynth", "cli"):
            raise ValueError(f"backend={backend!r}: expected 'auto', 'pyfluidsynth' or 'cli'")
        self._synth = None
        if backend in ("auto", "pyfluidsynth"):
            try:
                import fluidsynth  # noqa: F401  (pyfluidsynth)

                self.backend = "pyfluidsynth"
            except (ImportError, OSError) as error:
                if backend == "pyfluidsynth":
                    raise ImportError(
                        "backend='pyfluidsynth' needs pyfluidsynth and libfluidsynth: "
                        "pip install pyfluidsynth; apt-get install libfluidsynth3"
                    ) from error
                backend = "cli"
        if backend == "cli":
            if shutil.which("fluidsynth") is None:
                raise RuntimeError("neither pyfluidsynth nor the fluidsynth program is available: "
                                   "pip install pyfluidsynth, or apt-get install fluidsynth")
            self.backend = "cli"

    # -- pyfluidsynth ------------------------------------------------------
    def _open(self):
        import fluidsynth

        synth = fluidsynth.Synth(gain=self.gain, samplerate=float(self.sample_rate))
        synth.setting("synth.reverb.active", 1)
        synth.setting("synth.chorus.active", 1)
        synth.setting("synth.polyphony", 512)
        synth.setting("synth.cpu-cores", 1)
        synth.setting("synth.dynamic-sample-loading", 1)
        self._sfids = []
        for path in (self.soundfont_path,) + self.extra_soundfonts:
            sfid = synth.sfload(path)
            if sfid < 0:
                raise RuntimeError(f"FluidSynth cannot load soundfont '{path}'")
            self._sfids.append(sfid)
        self._sfid = self._sfids[0]
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._synth = synth

    def _render_into(self, left: np.ndarray, right: np.ndarray, start: int, stop: int) -> None:
        import ctypes

        n = stop - start
        if n <= 0:
            return
        lp = left.ctypes.data_as(ctypes.c_void_p)
        rp = right.ctypes.data_as(ctypes.c_void_p)
        self._write(ctypes.c_void_p(self._synth.synth), ctypes.c_int(n), lp, ctypes.c_int(start), ctypes.c_int(1),
                    rp, ctypes.c_int(start), ctypes.c_int(1))

    def _select(self, channel: int, font: int, program: int) -> None:
        """Select ``program`` (a drum kit on channel 10) from soundfont ``font``; fall back to
        the first soundfont, then to kit/program 0, when the preset is missing."""
        bank = 128 if channel == DRUM_CHANNEL else 0
        for sfid, prog in ((self._sfids[font], program), (self._sfid, program), (self._sfid, 0)):
            if self._synth.program_select(channel, sfid, bank, prog) == 0:
                return
        raise RuntimeError(f"no preset bank={bank} program={program} in '{self.soundfont_path}'")

    def _render_py(self, events: NoteEvents, n_samples: int, effects: Effects,
                   fonts: Optional[Dict[int, int]] = None) -> np.ndarray:
        # A fresh synthesiser per clip: a reused one carries state (voice and effect
        # history) from clip to clip, so the same clip would render differently
        # depending on what the worker rendered before.  With dynamic sample loading
        # opening FluidR3 costs about 35 ms.
        self.close()
        self._open()
        synth = self._synth
        synth.set_reverb(roomsize=effects.room_size, damping=effects.damping, width=effects.width,
                         level=effects.reverb_level)
        synth.set_chorus(nr=3, level=effects.chorus_level, speed=effects.chorus_speed,
                         depth=effects.chorus_depth, type=0)
        programs = {}
        for ch, prog in zip(events.channel, events.program):
            programs.setdefault(int(ch), int(prog))
        for ch, prog in sorted(programs.items()):
            self._select(ch, int((fonts or {}).get(ch, 0)), prog)
            synth.cc(ch, 7, 100)
            synth.cc(ch, 91, effects.reverb_send)
            synth.cc(ch, 93, effects.chorus_send)
        total = int(math.ceil(n_samples / _BLOCK) * _BLOCK)
        left = np.zeros(total, dtype=np.float32)
        right = np.zeros(total, dtype=np.float32)
        sr = self.sample_rate
        timeline = []
        for on, off, pitch, vel, ch in zip(events.onset, events.offset, events.pitch, events.velocity, events.channel):
            s_on, s_off = int(round(on * sr)), int(round(off * sr))
            if s_on >= n_samples:
                continue
            timeline.append((s_on, 1, int(ch), int(pitch), int(vel)))
            if s_off < n_samples:
                timeline.append((s_off, 0, int(ch), int(pitch), 0))
        timeline.sort()
        pos = 0
        for sample, kind, ch, pitch, vel in timeline:
            self._render_into(left, right, pos, sample)
            pos = max(pos, sample)
            if kind:
                synth.noteon(ch, pitch, vel)
            else:
                synth.noteoff(ch, pitch)
        self._render_into(left, right, pos, total)
        self.close()
        return (0.5 * (left + right))[:n_samples]

    # -- command line --------------------------------------------------------
    def _render_cli(self, events: NoteEvents, n_samples: int, effects: Effects) -> np.ndarray:
        import soundfile as sf

        controls = {int(ch): {7: 100, 91: effects.reverb_send, 93: effects.chorus_send}
                    for ch in sorted(set(int(c) for c in events.channel))}
        keep = events.onset * self.sample_rate < n_samples
        kept = NoteEvents(*(getattr(events, f.name)[keep] for f in dataclasses.fields(NoteEvents)))
        kept.offset = np.minimum(kept.offset, n_samples / self.sample_rate)
        with tempfile.TemporaryDirectory(prefix="mirzoo-fs-") as tmp:
            mid, wav = os.path.join(tmp, "clip.mid"), os.path.join(tmp, "clip.wav")
            write_midi(mid, kept, controls)
            cmd = [
                "fluidsynth", "-ni", "-q", "-g", str(self.gain), "-r", str(self.sample_rate), "-T", "wav",
                "-O", "float", "-F", wav,
                "-o", f"synth.reverb.room-size={effects.room_size}", "-o", f"synth.reverb.damp={effects.damping}",
                "-o", f"synth.reverb.width={effects.width}", "-o", f"synth.reverb.level={effects.reverb_level}",
                "-o", f"synth.chorus.level={effects.chorus_level}", "-o", f"synth.chorus.speed={effects.chorus_speed}",
                "-o", f"synth.chorus.depth={effects.chorus_depth}", "-o", "synth.cpu-cores=1",
                self.soundfont_path, mid,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0 or not os.path.exists(wav):
                raise RuntimeError(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
            y, _ = sf.read(wav, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        out = np.zeros(n_samples, dtype=np.float32)
        out[: min(n_samples, y.size)] = y[:n_samples]
        return out

    def render(self, events: NoteEvents, n_samples: int, effects: Optional[Effects] = None,
               fonts: Optional[Dict[int, int]] = None) -> np.ndarray:
        """Render ``events`` to a mono float32 waveform of ``n_samples`` at :attr:`sample_rate`.

        Notes still sounding at the end are cut there; notes starting after it are dropped.
        ``fonts`` maps a channel to the soundfont playing it (0: ``soundfont_path``, ``i``: the
        i-th of ``extra_soundfonts``); every channel uses the first soundfont by default.
        Channel 10 (index 9) plays drum kits (bank 128).
        """
        effects = effects or Effects()
        if any(int(v) for v in (fonts or {}).values()) and self.backend != "pyfluidsynth":
            raise RuntimeError("mixing soundfonts within a clip needs the pyfluidsynth backend")
        if self.backend == "pyfluidsynth":
            return self._render_py(events, int(n_samples), effects, fonts)
        return self._render_cli(events, int(n_samples), effects)

    def close(self) -> None:
        """Free the synthesiser."""
        if self._synth is not None:
            self._synth.delete()
            self._synth = None


# --------------------------------------------------------------------------- audio effects


def colored_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """Unit-RMS noise: ``white`` (flat), ``pink`` (1/f power) or ``brown`` (1/f^2 power)."""
    white = rng.standard_normal(n)
    if color != "white":
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size, dtype=np.float64)
        f[0] = 1.0
        spectrum /= f ** (0.5 if color == "pink" else 1.0)
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n)
    rms = float(np.sqrt(np.mean(white ** 2))) or 1.0
    return (white / rms).astype(np.float32)


def add_noise(y: np.ndarray, rng: np.random.Generator, snr_db: float, color: str) -> np.ndarray:
    """Add noise at ``snr_db`` relative to the RMS of ``y``'s non-silent part."""
    power = np.mean(y.astype(np.float64) ** 2)
    if power <= 0:
        return y
    noise = colored_noise(rng, y.size, color) * math.sqrt(power / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def normalize(y: np.ndarray, gain_db: float, peak_db: float = -1.0) -> np.ndarray:
    """Scale ``y`` so its peak sits at ``peak_db + gain_db`` dBFS (silence stays silent)."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak <= 0:
        return y.astype(np.float32)
    return (y * (10 ** ((peak_db + gain_db) / 20) / peak)).astype(np.float32)


# --------------------------------------------------------------------------- percussion

#: Drum styles and the GM kits (bank 128 programs) each may use.
DRUM_KITS = {"kit": (0, 8, 16), "folk": (0, 8), "light": (32, 40)}

# GM percussion keys
_KICK, _BASS_DRUM, _SIDE_STICK, _SNARE, _CLOSED_HAT, _PEDAL_HAT = 36, 35, 37, 38, 42, 44
_LOW_FLOOR_TOM, _LOW_TOM, _CRASH, _RIDE, _TAMBOURINE = 41, 45, 49, 51, 54


def drum_pattern(beats: np.ndarray, positions: np.ndarray, lengths: np.ndarray, bar_beats: np.ndarray,
                 style: str, rng: np.random.Generator) -> List[Tuple[float, int, int]]:
    """Drum hits that follow a beat grid.

    Parameters
    ----------
    beats, lengths : np.ndarray [shape=(b,)]
        Beat onsets and lengths (any time unit; hits come back in the same unit).
    positions : np.ndarray [shape=(b,), int]
        1-based position of each beat in its bar (1 = downbeat).
    bar_beats : np.ndarray [shape=(b,), int]
        Beats in the bar of each beat.
    style : {"kit", "folk", "light"}
        ``kit``: kick on the downbeat (and beat 3 of four), snare on the back beats, closed
        hi-hat on every subdivision; ``folk``: a frame-drum-like low tom on the downbeat, low
        tom on the other beats, tambourine on the subdivisions; ``light``: ride on the beats,
        side stick on the back beats, pedal hi-hat between.  Compound beats (dotted) are
        divided in three, simple beats in two.
    rng : np.random.Generator
        Velocity jitter.

    Returns
    -------
    list of (time, GM drum key, velocity)
    """
    if style not in DRUM_KITS:
        raise ValueError(f"style={style!r}: expected one of {sorted(DRUM_KITS)}")
    hits: List[Tuple[float, int, int]] = []
    for i, (t, pos, length, n) in enumerate(zip(beats, positions, lengths, bar_beats)):
        pos, n = int(pos), int(n)
        sub = 3 if abs(length / 1.5 - round(length / 1.5)) < 1e-6 and abs(length - round(length)) > 1e-6 else 2
        back = (n in (2, 4) and pos % 2 == 0) or (n == 3 and pos > 1) or (n not in (2, 3, 4) and pos == n)
        down = pos == 1
        if style == "kit":
            if down or (n == 4 and pos == 3) or (n == 1):
                hits.append((t, _KICK, 100 if down else 88))
            if back:
                hits.append((t, _SNARE, 92 if n != 3 else 70))
            for k in range(sub):
                hits.append((t + k * length / sub, _CLOSED_HAT, 72 if k == 0 else 55))
            if i == 0 and down:
                hits.append((t, _CRASH, 90))
        elif style == "folk":
            hits.append((t, _LOW_FLOOR_TOM if down else _LOW_TOM, 100 if down else 80))
            for k in range(1, sub):
                hits.append((t + k * length / sub, _TAMBOURINE, 60))
        else:
            hits.append((t, _RIDE, 80 if down else 66))
            if back:
                hits.append((t, _SIDE_STICK, 75))
            if down:
                hits.append((t, _BASS_DRUM, 70))
            hits.append((t + length * (sub - 1) / sub, _PEDAL_HAT, 50))
    jitter = rng.normal(0.0, 6.0, size=len(hits))
    return [(float(t), key, int(np.clip(round(v + j), 20, 127))) for (t, key, v), j in zip(hits, jitter)]


# --------------------------------------------------------------------------- room and dynamics


@dataclasses.dataclass
class Room:
    """A simulated shoebox room (pyroomacoustics image sources), all lengths in metres."""

    dims: Tuple[float, float, float]
    rt60: float
    source: Tuple[float, float, float]
    mic: Tuple[float, float, float]
    max_order: int = 40


SABINE = 24 * np.log(10.0) / 343.0  # s/m: RT60 = SABINE * V / (S * absorption), as pyroomacoustics uses


def min_rt60(dims: Tuple[float, float, float]) -> float:
    """The shortest RT60 a shoebox of ``dims`` can have (Sabine's formula with absorption 1)."""
    l, w, h = dims
    return float(SABINE * l * w * h / (2 * (l * w + l * h + w * h)))


def draw_room(rng: np.random.Generator, rt60_range: Tuple[float, float]) -> Room:
    """Draw a room (3-20 m long, 2.5-8 m high), an RT60 and source/microphone positions."""
    length = float(rng.uniform(3.0, 20.0))
    width = float(rng.uniform(3.0, min(15.0, length)))
    height = float(rng.uniform(2.5, 8.0))
    rt60 = float(rng.uniform(*rt60_range))
    u = rng.uniform(0.15, 0.85, size=(2, 3))
    dims = (length, width, height)
    # Sabine: a large room cannot decay faster than with fully absorbing walls (absorption 1), so an RT60
    # drawn below that floor (pyroomacoustics refused 22 pieces of corpus v2 for it) is raised to just above
    # it; every room that was feasible keeps its draw, so the clips already built do not change
    if rt60 < min_rt60(dims):
        rt60 = 1.01 * min_rt60(dims)
    source = tuple(float(x) for x in u[0] * dims)
    mic = tuple(float(x) for x in u[1] * dims)
    return Room(dims, rt60, source, mic)


def room_impulse_response(room: Room, sr: int) -> np.ndarray:
    """Impulse response of ``room`` at ``sr``, starting at the direct sound and peak-normalised.

    The propagation delay (and pyroomacoustics' fractional-delay filter) are cut, so the
    convolved audio stays aligned with its labels.

    Raises
    ------
    ImportError
        If pyroomacoustics is missing (``pip install pyroomacoustics``).
    """
    try:
        import pyroomacoustics as pra
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("room reverb needs pyroomacoustics: pip install 'mirzoo[corpus]'") from error
    absorption, max_order = pra.inverse_sabine(room.rt60, list(room.dims))
    shoebox = pra.ShoeBox(list(room.dims), fs=int(sr), materials=pra.Material(absorption),
                          max_order=int(min(max_order, room.max_order)))
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    h = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    peak = int(np.argmax(np.abs(h)))
    h = h[peak:]
    return (h / (np.abs(h[0]) or 1.0)).astype(np.float32)


def convolve_room(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``y`` convolved with the impulse response ``h``, cut to ``y``'s length, RMS kept."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(y.astype(np.float64), h.astype(np.float64))[: y.size]
    rms_in = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    rms_out = float(np.sqrt(np.mean(wet ** 2)))
    if rms_out > 0:
        wet *= rms_in / rms_out
    return wet.astype(np.float32)


@dataclasses.dataclass
class Compressor:
    """Feed-forward compressor settings (threshold relative to the clip's peak level)."""

    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float


def compress(y: np.ndarray, sr: int, comp: Compressor, *, block: int = 64) -> np.ndarray:
    """Compress ``y``: RMS envelope in blocks of ``block`` samples, static curve above the
    threshold, gain smoothed with attack/release time constants, then interpolated per sample.

    The threshold is relative to the loudest block, so it does not depend on the clip's gain.
    """
    x = y.astype(np.float64)
    n_blocks = int(math.ceil(x.size / block))
    padded = np.pad(x, (0, n_blocks * block - x.size))
    rms = np.sqrt(np.mean(padded.reshape(n_blocks, block) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(rms)
    threshold = float(level.max()) + comp.threshold_db
    over = np.maximum(level - threshold, 0.0)
    target = -over * (1.0 - 1.0 / comp.ratio)  # gain in dB, <= 0
    a_att = math.exp(-block / (sr * comp.attack_ms / 1000.0))
    a_rel = math.exp(-block / (sr * comp.release_ms / 1000.0))
    gain = np.empty_like(target)
    g = 0.0
    for i, t in enumerate(target):
        a = a_att if t < g else a_rel
        g = a * g + (1 - a) * t
        gain[i] = g
    centres = (np.arange(n_blocks) + 0.5) * block
    per_sample = np.interp(np.arange(x.size), centres, gain)
    return (x * 10 ** (per_sample / 20)).astype(np.float32)


def limit(y: np.ndarray, ceiling: float = 0.98) -> np.ndarray:
    """Soft limiter: ``tanh`` above 70 % of ``ceiling``, identity below (continuous slope)."""
    knee = 0.7 * ceiling
    a = np.abs(y)
    out = np.where(a <= knee, a, knee + (ceiling - knee) * np.tanh((a - knee) / (ceiling - knee)))
    return (np.sign(y) * out).astype(np.float32)
