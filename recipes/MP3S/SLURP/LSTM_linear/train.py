#!/usr/bin/env python3
"""MP3S SLURP probe: 18 scenarios by a BiLSTM, pooling and a linear layer.

``python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/slurp``
(holding ``dataset/slurp`` and ``slurp_real``): trained on the real
recordings of train, scored on test by the shared classification probe run.
See README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_classification_probe

if __name__ == "__main__":
    run_classification_probe(sys.argv[1:])
