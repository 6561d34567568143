"""``python -m bench.limits MEASURE ...``: see :mod:`bench.limits`."""

import sys

from bench.limits.cli import main

if __name__ == "__main__":
    sys.exit(main())
