#!/usr/bin/env python3
"""MP3S Common Voice probe (Welsh, Basque): BiLSTM + CTC on BPE units.

::

    python train.py hparams/ssl.yaml --ssl_source=... \\
        --data_folder=/data/cv-corpus-11.0-2022-09-21/cy

The training and test code is the LibriSpeech CTC probe's
(``../../LibriSpeech/LSTM/train.py``, run as is): data preparation, units and
probe are keys of ``hparams/ssl.yaml``. See README.md.
"""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(
        str(Path(__file__).resolve().parents[2] / "LibriSpeech" / "LSTM" / "train.py"),
        run_name="__main__",
    )
