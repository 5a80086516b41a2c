"""Inference layer: how any model is run over audio of any length.

Owns the windowing plans (:mod:`~mirzoo.inference.windows`, numpy only) and the batched
runner (:mod:`~mirzoo.inference.runner`) that ``Extractor``, the folder and Ray engines,
HEAR, sklearn, fine-tuning and ``training/`` all use.
"""
