"""Evaluation of trained twins: per-neuron metrics, noise ceilings, figures and reports.

Data flow: a model and a :class:`~neurotrain.data.build.DataBundle` -> predictions per session
(:mod:`.predictions`) -> metrics (:mod:`.metrics_table`, :mod:`.noise_ceiling`) -> JSON/CSV and PNG
figures (:mod:`.plots`, :mod:`.report`).
"""
