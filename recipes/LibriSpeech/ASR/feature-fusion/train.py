#!/usr/bin/env python3
"""Hierarchical feature fusion (HFF) with adapters for low-resource LibriSpeech ASR.

A reconstruction, not from the paper, of Huo et al., "Resource-efficient
transfer learning from speech foundation model using hierarchical feature
fusion" (ICASSP 2023; only its abstract is available). It runs as the
selective fine-tuning recipe does::

    python train.py hparams/hff_adapters.yaml --ssl_source=<SSL folder> ...
    torchrun --nproc_per_node=2 train.py hparams/hff.yaml ...

The YAML builds ``asr_model`` with
:func:`speechbrain_wsm.models.fusion.build_fusion_model`: the pretrained
model through the one SSL upstream, frozen, read by ``method`` (``hff``:
taps on every ``taps``-th layer fused bottom-up by small blocks;
``weighted_sum``: the MP3S featuriser; ``last_layer``), with ``adapters``
after every encoder layer or not, and a character CTC head. Without adapters
the encoder runs without autograd: no backward pass through it at all.
Training is the shared :class:`speechbrain_wsm.recipe.CTCBrain` (one Adam
optimiser for everything that trains, warm-up / hold / decay by step,
validation CER and WER each epoch, best checkpoint by CER); data options,
outputs (``wer_<split>.txt``, ``cer_<split>.txt``, ``results.md``,
``train_cost.json``), resuming and ``torchrun`` are those of the selective
fine-tuning recipe. ``python -m speechbrain_wsm.evaluate <output_folder>
--manifest X.csv`` scores the best checkpoint on any manifest. See README.md.
"""

import sys

from speechbrain_wsm.models.surgery import count_parameters
from speechbrain_wsm.recipe import CTCBrain
from speechbrain_wsm.recipe.asr import score_asr, train_asr


def trained_note(hparams, model) -> str:
    """What the model trains: encoder parameters (adapters) and the rest."""
    encoder = sum(p.numel() for p in model.encoder_parameters())
    adapters = count_parameters(model.upstream)
    taps = f"; taps {model.taps}" if model.method == "hff" else ""
    return (
        f"SSL model: `{hparams['ssl_source']}`; method `{model.method}`"
        f"{' + adapters' if hparams['adapters'] else ''}{taps}. Trained: "
        f"{adapters / 1e6:.3f} M adapter parameters ({100 * adapters / encoder:.2f} % "
        f"of the encoder's {encoder / 1e6:.2f} M), "
        f"{(count_parameters(model) - adapters) / 1e6:.3f} M fusion and head "
        "parameters. Design: a reconstruction, not from the paper."
    )


def main(argv):
    brain, hparams = train_asr(argv, CTCBrain)
    title = (
        f"Feature fusion on {hparams['train_set']} (reconstruction, not from the "
        "paper): CER and WER (%), no LM"
    )
    score_asr(brain, hparams, title, trained_note(hparams, brain.model()))


if __name__ == "__main__":
    main(sys.argv[1:])
