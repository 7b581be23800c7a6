"""``python -m neurotrain ...`` (and ``accelerate launch -m neurotrain ...``)."""

import sys

from neurotrain.cli import main

sys.exit(main())
