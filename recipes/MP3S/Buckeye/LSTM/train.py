#!/usr/bin/env python3
"""MP3S Buckeye probe: BiLSTM + CTC on characters, utterances cut at pauses.

``python train.py hparams/ssl.yaml --ssl_source=... --data_folder=/data/Buckeye``
(the speaker folders extracted); dev and test are held-out speakers. See
README.md.
"""

import sys

from speechbrain_wsm.recipe.probe import run_ctc_probe

if __name__ == "__main__":
    run_ctc_probe(sys.argv[1:])
