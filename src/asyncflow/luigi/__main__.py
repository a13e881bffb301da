"""``python -m asyncflow.luigi``: Luigi's command line on asyncflow's engine."""

import sys

from .cmdline import main

sys.exit(main())
