"""The zoo: which models exist, where their weights live, how they are built.

From the bottom: :mod:`~mirzoo.zoo.manifest` (the catalogue: names -> checked entries and
specs, no Keras) and :mod:`~mirzoo.zoo.transport` (the Hugging Face Hub and its cache, knows
no model names); :mod:`~mirzoo.zoo.hub` (references and manifest weight files: joins the
two); :mod:`~mirzoo.zoo.registry` (spec + family builder -> Keras model with verified weights).
"""
