"""Training tools of mirzoo: the public training corpus (:mod:`training.corpus`) and friends.

Nothing here is imported by the :mod:`mirzoo` package itself; these modules need the
``corpus`` extra (``music21``, ``pyfluidsynth``) and the FluidSynth soundfonts.
"""
