#!/usr/bin/env python3
"""MP3S SLURP probe: scenario classification with a BiLSTM, pooling and a linear layer.

::

    python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/slurp

The probe trains with cross-entropy on ``train_splits`` (model selection
on the ``dev_splits`` error rate), then every ``test_splits`` split is
classified with the best checkpoint into ``predictions_<split>.txt`` and the
accuracies in ``results.md``
(:func:`speechbrain_wsm.recipe.probe.run_classification_probe`; data
preparation, labels and probe are keys of ``hparams/ssl.yaml``). See
README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_classification_probe

if __name__ == "__main__":
    run_classification_probe(sys.argv[1:])
