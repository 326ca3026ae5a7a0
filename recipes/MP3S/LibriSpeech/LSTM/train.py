#!/usr/bin/env python3
"""MP3S LibriSpeech probe: frozen SSL encoder, weighted layer sum, BiLSTM + CTC on characters.

::

    python train.py hparams/ssl.yaml --ssl_source=results/wav2vec2_wsm/1986 \\
        --data_folder=/data/LibriSpeech
    torchrun --nproc_per_node=2 train.py hparams/ssl.yaml ...

The probe trains on ``train_splits`` (model selection on ``dev_splits``),
then every ``test_splits`` split is decoded with the best checkpoint into
``wer_<split>.txt``, ``cer_<split>.txt`` and ``results.md``
(:func:`speechbrain_wsm.recipe.probe.run_ctc_probe`; data preparation,
units and probe are keys of ``hparams/ssl.yaml``). See README.md.
``python -m speechbrain_wsm.evaluate <output_folder> --manifest X.csv``
scores the trained probe on any other manifest.
"""

import sys

from speechbrain_wsm.recipe.probe import run_ctc_probe

if __name__ == "__main__":
    run_ctc_probe(sys.argv[1:])
