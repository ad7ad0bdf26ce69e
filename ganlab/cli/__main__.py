"""``python -m ganlab.cli``: the same as the ``ganlab`` console script."""

import sys

from ganlab.cli import main

sys.exit(main())
