#!/usr/bin/env python3
"""MP3S SLURP probe: scenario classification with a BiLSTM, pooling and a linear layer.

::

    python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/slurp

The training and test code is the classification probe's
(``../../IEMOCAP/linear/train.py``, run as is): data preparation, labels and
probe are keys of ``hparams/ssl.yaml``. See README.md.
"""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(
        str(Path(__file__).resolve().parents[2] / "IEMOCAP" / "linear" / "train.py"),
        run_name="__main__",
    )
