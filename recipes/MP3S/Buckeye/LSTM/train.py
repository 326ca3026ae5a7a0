#!/usr/bin/env python3
"""MP3S Buckeye probe: BiLSTM + CTC on characters, utterances cut at pauses.

::

    python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/Buckeye

The probe trains on ``train_splits`` (model selection on ``dev_splits``),
then every ``test_splits`` split is decoded with the best checkpoint into
``wer_<split>.txt``, ``cer_<split>.txt`` and ``results.md``
(:func:`speechbrain_wsm.recipe.probe.run_ctc_probe`; data preparation,
units and probe are keys of ``hparams/ssl.yaml``). See README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_ctc_probe

if __name__ == "__main__":
    run_ctc_probe(sys.argv[1:])
