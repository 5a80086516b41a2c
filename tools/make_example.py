"""Render the example clip shipped with mirzoo (mirzoo/data/example.flac).

Source: J. S. Bach, chorale "Christ unser Herr zum Jordan kam" (BWV 7.7), from the
music21 corpus (``bach/bwv7.7``; the score is public domain, the music21 corpus
files are BSD-licensed).  The pickup and first four measures are exported to MIDI, all four
parts set to General MIDI program 0 (acoustic grand piano), rendered with
FluidSynth and the FluidR3_GM soundfont (MIT licence, Debian
``fluid-soundfont-gm``) at 16 kHz, mixed to mono, peak-normalised to -3 dBFS and
written as 16-bit FLAC.

Run: ``python tools/make_example.py`` (needs music21, fluidsynth and the soundfont).
"""

import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf

OUT = os.path.join(os.path.dirname(__file__), "..", "mirzoo", "data", "example.flac")
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SR = 16000


def main():
    import music21

    score = music21.corpus.parse("bach/bwv7.7").measures(0, 4)
    for part in score.parts:
        for inst in list(part.recurse().getElementsByClass(music21.instrument.Instrument)):
            part.remove(inst, recurse=True)
        part.insert(0, music21.instrument.Piano())
    score.insert(0, music21.tempo.MetronomeMark(number=84))
    with tempfile.TemporaryDirectory() as tmp:
        mid = os.path.join(tmp, "example.mid")
        wav = os.path.join(tmp, "example.wav")
        score.write("midi", fp=mid)
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-F", wav, SOUNDFONT, mid],
            check=True,
        )
        y, sr = sf.read(wav, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    nz = np.nonzero(np.abs(y) > 1e-4)[0]
    y = y[: nz[-1] + SR // 2] if nz.size else y
    y = y / max(np.abs(y).max(), 1e-9) * 10 ** (-3 / 20)
    sf.write(OUT, y, sr, subtype="PCM_16", format="FLAC")
    print(f"wrote {OUT}: {len(y) / sr:.2f} s at {sr} Hz")


if __name__ == "__main__":
    main()
