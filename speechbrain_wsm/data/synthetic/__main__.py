"""``python -m speechbrain_wsm.data.synthetic --out DIR ...``; see ``--help``."""

import sys

from .cli import main

sys.exit(main())
