#!/usr/bin/env python3
"""MP3S CTC probe: frozen SSL encoder, weighted layer sum, BiLSTM (or other) + CTC.

::

    python train.py hparams/ssl.yaml --ssl_source=results/wav2vec2_wsm/1986 \\
        --data_folder=/data/LibriSpeech
    torchrun --nproc_per_node=2 train.py hparams/ssl.yaml ...

The YAML's ``prepare_data`` writes ``<output_folder>/<split>.csv`` for every
split; the probe trains on ``train_splits`` (model selection on
``dev_splits``), then every ``test_splits`` split is decoded with the best
checkpoint into ``wer_<split>.txt`` and ``cer_<split>.txt``, and
``results.md`` sums them up. The encoder
(:func:`speechbrain_wsm.models.ssl.load_ssl_encoder`) never trains; the probe
and the layer weights have their own Adam optimisers on one warm-up / hold /
decay schedule by step (the shared :class:`speechbrain_wsm.recipe.CTCBrain`). ``python -m speechbrain_wsm.evaluate <output_folder> --manifest
X.csv`` scores the trained probe on any other manifest. See README.md.

This script serves every MP3S CTC probe: the ContextNet, Common Voice and
Buckeye recipes run it with their own YAML (data preparation, units and probe
are YAML keys).
"""

import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_wsm.data.librispeech import merge_manifests
from speechbrain_wsm.data.mp3s import add_audio_pipeline, prepare_tokenizer
from speechbrain_wsm.recipe import (
    CTCBrain,
    add_token_pipeline,
    load_hparams,
    manifest_dataset,
)


class CTCProbeBrain(CTCBrain):
    """CTC training of a probe over a frozen encoder (probe and layer weights)."""

    def parameter_groups(self):
        model = self.model()
        return {
            "model": list(model.head.parameters()),
            "weights": list(model.weighted_sum.parameters()),
        }

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        return self.modules.asr_model(wavs, wav_lens, ids=batch.id)

    def epoch_meta(self):
        weights = self.model().weighted_sum.layer_weights().tolist()
        return {**super().epoch_meta(), "layer_weights": [round(w, 3) for w in weights]}


def dataio_prepare(hparams, tokenizer):
    """Training and validation datasets with audio and CTC targets."""
    sort = hparams["sorting"] if hparams["sorting"] != "random" else None
    train = manifest_dataset(
        hparams["train_csv"],
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
        sort=sort,
    )
    valid = manifest_dataset(hparams["valid_csv"], sort="descending")
    add_token_pipeline([train, valid], tokenizer)
    add_audio_pipeline(
        [train, valid], ["id", "sig", "wrd", "tokens"], hparams["sample_rate"]
    )
    return train, valid


def split_csv(hparams, split):
    """The manifest ``prepare_data`` wrote for ``split``."""
    return os.path.join(hparams["output_folder"], f"{split}.csv")


def prepare(hparams):
    """Split manifests, merged training/validation manifests, then the units."""
    if not hparams["skip_prep"]:
        hparams["prepare_data"]()
    for key, splits in (("train_csv", "train_splits"), ("valid_csv", "dev_splits")):
        merge_manifests([split_csv(hparams, s) for s in hparams[splits]], hparams[key])
    prepare_tokenizer(
        hparams["train_csv"],
        hparams["tokenizer_file"],
        hparams["unit"],
        hparams["output_neurons"],
        max_units=hparams["output_neurons"],
    )


def main(argv):
    hparams, run_opts, hparams_file, overrides = load_hparams(argv)
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    run_on_main(prepare, args=[hparams])
    tokenizer = prepare_tokenizer(
        hparams["train_csv"], hparams["tokenizer_file"], hparams["unit"]
    )
    train, valid = dataio_prepare(hparams, tokenizer)

    brain = CTCProbeBrain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.tokenizer = tokenizer
    loader = {
        "batch_size": hparams["batch_size"],
        "num_workers": hparams["num_workers"],
    }
    brain.fit(
        hparams["epoch_counter"],
        train,
        valid,
        train_loader_kwargs=dict(loader, shuffle=hparams["sorting"] == "random"),
        valid_loader_kwargs=loader,
    )
    if not if_main_process():
        return

    def note():  # the best checkpoint's layer weights, loaded by then
        weights = brain.model().weighted_sum.layer_weights().tolist()
        return (
            f"Encoder: `{hparams['ssl_source']}`. Learned layer weights "
            f"(input first): {', '.join(f'{w:.3f}' for w in weights)}."
        )

    brain.score_test_sets(
        {split: split_csv(hparams, split) for split in hparams["test_splits"]},
        [hparams["decoder"]],
        row_name=hparams["experiment"],
        title=f"MP3S {hparams['task']} probe: CER and WER (%)",
        note=note,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
