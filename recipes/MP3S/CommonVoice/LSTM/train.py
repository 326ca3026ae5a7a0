#!/usr/bin/env python3
"""MP3S Common Voice probe (Welsh, Basque): BiLSTM + CTC on BPE units.

Run per language folder, e.g.
``python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/cv-corpus-11.0-2022-09-21/cy``;
the Common Voice preparation and the BPE units are keys of the YAML. See
README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_ctc_probe

if __name__ == "__main__":
    run_ctc_probe(sys.argv[1:])
