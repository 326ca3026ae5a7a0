#!/usr/bin/env python3
"""Selective fine-tuning of a pretrained SSL model for low-resource LibriSpeech ASR.

::

    python train.py hparams/wsm.yaml --ssl_source=<local HF folder or
        pretraining output folder> --data_folder=/data/LibriSpeech \\
        --librilight_folder=/data/librispeech_finetuning --train_set=1h
    torchrun --nproc_per_node=2 train.py hparams/wsm.yaml ...

The YAML builds ``asr_model`` with
:func:`speechbrain_wsm.models.finetuning.build_finetuner`: the pretrained
model, set up for ``mode`` (``wsm``/``sm``: the top ``num_replaced_layers``
self-attention modules replaced by new blocks, only those trained;
``mhsa_top``: the original attention of those layers trained; ``full``:
everything but the CNN front end), plus a character CTC head. Training is
the shared :class:`speechbrain_wsm.recipe.CTCBrain`: the new modules (blocks
and head) and the fine-tuned pretrained parameters get their own Adam
optimiser, both on one warm-up / hold / decay schedule by step; validation
CER and WER each epoch, the best checkpoint by CER.

Data: ``train_set`` is ``10min``, ``1h`` or ``10h`` (Libri-light limited,
from ``librilight_folder``) or a LibriSpeech split (``train-clean-100``);
model selection on ``dev_splits``; every ``test_splits`` split is decoded
with the best checkpoint (greedy into ``wer_<split>.txt`` and
``cer_<split>.txt``, then each of ``extra_decoders`` into
``wer_<split>_<decoder>.txt`` ...) and ``results.md`` sums them up. The best model is also exported to ``<output_folder>/finetuned``
(:func:`~speechbrain_wsm.models.finetuning.load_finetuned` rebuilds it), and
``python -m speechbrain_wsm.evaluate <output_folder> --manifest X.csv``
scores it on any manifest. A killed run started again with the same command
resumes from its last checkpoint (end of epoch, or every
``ckpt_interval_minutes``). See README.md.
"""

import os
import sys

from speechbrain.utils.distributed import if_main_process

from speechbrain_wsm.models.ssl_ctc import save_finetuned
from speechbrain_wsm.models.surgery import count_parameters
from speechbrain_wsm.recipe import CTCBrain
from speechbrain_wsm.recipe.asr import score_asr, train_asr


class FinetuneBrain(CTCBrain):
    """CTC fine-tuning: one optimiser for the new modules, one for the pretrained."""

    def parameter_groups(self):
        model = self.model()
        new = tuple(f"{name}." for name in model.new_modules)
        groups = {"new": [], "pretrained": []}
        for name, p in model.named_parameters():
            if p.requires_grad:
                groups["new" if name.startswith(new) else "pretrained"].append(p)
        return groups


def main(argv):
    brain, hparams = train_asr(argv, FinetuneBrain)
    model = brain.model()
    trained = count_parameters(model) / 1e6
    total = count_parameters(model, trainable_only=False) / 1e6
    title = f"Selective fine-tuning on {hparams['train_set']}: CER and WER (%), no LM"
    note = (
        f"SSL model: `{hparams['ssl_source']}`; mode `{hparams['mode']}`; "
        f"{trained:.2f} M trainable of {total:.2f} M parameters."
    )
    score_asr(brain, hparams, title, note)
    if if_main_process():
        # score_asr loaded the best checkpoint: export that model
        save_finetuned(model, os.path.join(hparams["output_folder"], "finetuned"))


if __name__ == "__main__":
    main(sys.argv[1:])
