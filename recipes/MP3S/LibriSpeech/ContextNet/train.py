#!/usr/bin/env python3
"""MP3S LibriSpeech probe with a ContextNet head instead of the BiLSTM.

::

    python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/LibriSpeech

The training and test code is the BiLSTM recipe's (``../LSTM/train.py``,
run as is): only the probe in ``hparams/ssl.yaml`` differs, so the two
recipes cannot drift apart. See ../LSTM/README.md.
"""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(
        str(Path(__file__).resolve().parents[1] / "LSTM" / "train.py"),
        run_name="__main__",
    )
