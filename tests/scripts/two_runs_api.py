"""Two runs of one recipe from the Python API in one ``accelerate launch``: the first stops at step 10
(``train.max_steps``, mid-epoch: a resumable state), the second continues it to the recipe's end; then a plain exit,
without releasing the process group. Prints both runs' last step."""

import sys

from neurotrain import load_recipe, train

first = train(load_recipe(sys.argv[1], ["train.max_steps=10"]))
second = train(load_recipe(sys.argv[1]))
print(f"RUNS global_step {first['global_step']} {second['global_step']}", flush=True)
