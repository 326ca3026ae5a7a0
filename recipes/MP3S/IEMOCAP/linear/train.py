#!/usr/bin/env python3
"""MP3S IEMOCAP probe: four emotions by mean pooling and a linear layer.

``python train.py hparams/ssl.yaml --ssl_source=results/wav2vec2_wsm/1986
--data_folder=/data/IEMOCAP_full_release [--test_session=1]``: one
leave-one-session-out fold; accuracy and ``predictions_test.txt`` from the
shared classification probe run
(:func:`speechbrain_wsm.recipe.probe.run_classification_probe`). See README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_classification_probe

if __name__ == "__main__":
    run_classification_probe(sys.argv[1:])
