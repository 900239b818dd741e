"""``python -m shared.datasets FILE``: see :mod:`shared.datasets.cli`."""

import sys

from shared.datasets.cli import main

sys.exit(main())
