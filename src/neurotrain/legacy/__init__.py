"""Everything VisionCore: what a lab's Lightning-era files need to keep working.

In the order data flows:

* :mod:`.dataset_config`, :mod:`.transforms`, :mod:`.datafilters`: legacy dataset YAMLs (parent + session files)
  and their ops, read as they are;
* :mod:`.data_source`: such a YAML as a data source of neurotrain session folders (``data.legacy_config``);
* :mod:`.reader`: the restricted reader of Lightning ``.ckpt`` files (nothing in the file runs);
* :mod:`.convert`: every checkpoint layout era mapped onto today's model (``neurotrain convert``);
* :mod:`.resume`: continuing a legacy run (its weights, AdamW moments, epoch and step);
* :mod:`.cli`: the legacy training command lines, translated into recipes.

The core reaches this package only through :mod:`neurotrain.sources` (data, weights, the starting state) and the
command line (``neurotrain train --model_config ...``).
"""
