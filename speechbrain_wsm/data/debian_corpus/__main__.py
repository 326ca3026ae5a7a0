"""``python -m speechbrain_wsm.data.debian_corpus --out DIR ...``; see ``--help``."""

import sys

from .cli import main

sys.exit(main())
