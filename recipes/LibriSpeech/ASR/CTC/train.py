#!/usr/bin/env python3
"""Supervised CTC speech recognition from scratch: the "no pretraining" baseline.

::

    python train.py hparams/conformer_wsm.yaml --data_folder=/data/LibriSpeech
    python train.py hparams/conformer_mhsa.yaml --data_folder=/data/LibriSpeech \\
        --librilight_folder=/data/librispeech_finetuning --train_splits=[1h]
    torchrun --nproc_per_node=8 train.py hparams/conformer_sm.yaml ...

The YAML builds ``asr_model``
(:class:`speechbrain_wsm.models.ctc_asr.FbankCTC`: fbank, convolutional
subsampling, the encoder of the shared fragment the YAML includes, a
character CTC head). Training uses :class:`speechbrain_wsm.recipe.CTCBrain`
(AdamW, warm-up / hold / decay by step, validation CER and WER each epoch,
best checkpoint by CER); every ``test_splits`` split is then decoded into
``wer_<split>.txt`` and ``cer_<split>.txt`` and summed up in ``results.md``;
``train_cost.json`` has the step time and peak memory. A killed run started
again with the same command resumes from its last checkpoint. See README.md.
"""

import sys

from speechbrain_wsm.models.surgery import count_parameters
from speechbrain_wsm.recipe.asr import score_asr, train_asr


def main(argv):
    brain, hparams = train_asr(argv)
    params = count_parameters(brain.model()) / 1e6
    splits = ", ".join(hparams["train_splits"])
    title = f"CTC from scratch on {splits}: CER and WER (%), no LM"
    note = (
        f"Encoder: {hparams['arch']} with `{hparams['mixer_name']}`, "
        f"{hparams['num_layers']} x {hparams['d_model']}; {params:.2f} M parameters."
    )
    score_asr(brain, hparams, title, note)


if __name__ == "__main__":
    main(sys.argv[1:])
