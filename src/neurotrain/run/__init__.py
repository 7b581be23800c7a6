"""One training run, from a recipe: :func:`~neurotrain.run.setup.setup` builds the run context,
:func:`~neurotrain.run.train.train` runs it, :func:`~neurotrain.run.check.check_recipe` checks a recipe without
data (``neurotrain validate``)."""
