#!/usr/bin/env python3
"""MP3S LibriSpeech probe with a ContextNet head instead of the BiLSTM.

``python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/LibriSpeech``:
the BiLSTM recipe's training (the shared CTC probe run) with another
``probe`` in the YAML. See ../LSTM/README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_ctc_probe

if __name__ == "__main__":
    run_ctc_probe(sys.argv[1:])
