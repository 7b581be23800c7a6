"""Checkpoints: portable model folders and resumable training states.

* :mod:`neurotrain.checkpoint.portable`: ``save_portable`` / ``load_portable`` (weights, model config, session
  registry, model card);
* :mod:`neurotrain.checkpoint.states`: resumable training states (``StateManager``).

Legacy VisionCore ``.ckpt`` files are read by :mod:`neurotrain.legacy`; :func:`neurotrain.from_pretrained` loads
either kind.
"""
