"""Tasks built on a loaded model: fine-tuning a new head (:mod:`~mirzoo.tasks.finetune`), musical
analysis from frame heads (:mod:`~mirzoo.tasks.analyze`) and its figures (:mod:`~mirzoo.tasks.plots`).

Owns training and evaluating heads on labelled audio; it builds on the runner
(:mod:`mirzoo.inference`) and the datasets (:mod:`mirzoo.datasets`), and is what
``Extractor.fine_tune`` and ``Extractor.evaluate`` call.
"""
