"""``python -m shared.scoring``: a scoring process (see :mod:`shared.scoring.child`)."""

import sys

from shared.scoring.child import main

sys.exit(main(sys.argv[1:]))
