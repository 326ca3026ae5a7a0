#!/usr/bin/env python3
"""MP3S LibriSpeech probe: frozen SSL encoder, weighted layer sum, BiLSTM + CTC on characters.

Usage: ``python train.py hparams/ssl.yaml --ssl_source=results/wav2vec2_wsm/1986
--data_folder=/data/LibriSpeech`` (or ``torchrun --nproc_per_node=2 train.py ...``).
Trains on ``train_splits``, selects on ``dev_splits``, then decodes every
``test_splits`` split into ``wer_<split>.txt``, ``cer_<split>.txt`` and
``results.md`` (:func:`speechbrain_wsm.recipe.probe.run_ctc_probe`).
``python -m speechbrain_wsm.evaluate <output_folder> --manifest X.csv`` scores
the trained probe on any other manifest. See README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_ctc_probe

if __name__ == "__main__":
    run_ctc_probe(sys.argv[1:])
