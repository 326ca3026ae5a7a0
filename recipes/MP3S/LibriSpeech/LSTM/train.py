#!/usr/bin/env python3
"""MP3S CTC probe: frozen SSL encoder, weighted layer sum, BiLSTM (or other) + CTC.

::

    python train.py hparams/ssl.yaml --ssl_source=results/wav2vec2_wsm/1986 \\
        --data_folder=/data/LibriSpeech
    torchrun --nproc_per_node=2 train.py hparams/ssl.yaml ...

The YAML's ``prepare_data`` writes ``<output_folder>/<split>.csv`` for every
split; the probe trains on ``train_splits`` (model selection on
``dev_splits``), then every ``test_splits`` split is decoded with the best
checkpoint into ``wer_<split>.txt``, and ``results.md`` sums them up. The
encoder (:func:`speechbrain_wsm.models.ssl.load_ssl_encoder`) never trains;
the probe and the layer weights have their own Adam optimisers and NewBob
schedules. ``python -m speechbrain_wsm.evaluate <output_folder> --manifest
X.csv`` scores the trained probe on any other manifest. See README.md.

This script serves every MP3S CTC probe: the ContextNet, Common Voice and
Buckeye recipes run it with their own YAML (data preparation, units and probe
are YAML keys).
"""

import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_wsm.data.librispeech import merge_manifests
from speechbrain_wsm.data.mp3s import add_audio_pipeline, prepare_tokenizer
from speechbrain_wsm.evaluate import (
    build_decoder,
    evaluate_manifest,
    recover_checkpoint,
)
from speechbrain_wsm.recipe import load_hparams, manifest_dataset
from speechbrain_wsm.scoring import write_results_md


class CTCProbeBrain(sb.Brain):
    """CTC training of a probe over a frozen encoder (two optimisers)."""

    def model(self):
        """The probe model, unwrapped from DDP."""
        return getattr(self.modules.asr_model, "module", self.modules.asr_model)

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        return self.modules.asr_model(wavs, wav_lens, ids=batch.id)

    def compute_objectives(self, predictions, batch, stage):
        log_probs, lens = predictions
        tokens, token_lens = batch.tokens
        loss = sb.nnet.losses.ctc_loss(
            log_probs, tokens, lens, token_lens, blank_index=0
        )
        if stage != sb.Stage.TRAIN:
            hyps = [h.split() for h in self.greedy(log_probs.detach(), lens)]
            self.wer_metric.append(batch.id, hyps, [w.split() for w in batch.wrd])
        return loss

    def init_optimizers(self):
        model = self.model()
        self.model_optimizer = self.hparams.model_opt_class(model.head.parameters())
        self.weights_optimizer = self.hparams.weights_opt_class(
            model.weighted_sum.parameters()
        )
        self.optimizers_dict = {
            "model_optimizer": self.model_optimizer,
            "weights_optimizer": self.weights_optimizer,
        }
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("model_optimizer", self.model_optimizer)
            self.checkpointer.add_recoverable(
                "weights_optimizer", self.weights_optimizer
            )

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["WER"] = self.wer_metric.summarize("error_rate")
        if stage == sb.Stage.VALID:
            lr_model, new_model = self.hparams.lr_annealing_model(stats["WER"])
            lr_weights, new_weights = self.hparams.lr_annealing_weights(stats["WER"])
            sb.nnet.schedulers.update_learning_rate(self.model_optimizer, new_model)
            sb.nnet.schedulers.update_learning_rate(self.weights_optimizer, new_weights)
            layer_weights = self.model().weighted_sum.layer_weights()
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "epoch": epoch,
                    "lr_model": lr_model,
                    "lr_weights": lr_weights,
                    "layer_weights": [round(w, 3) for w in layer_weights.tolist()],
                },
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"WER": stats["WER"]}, min_keys=["WER"]
            )


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

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens")
    def text(wrd):
        return torch.LongTensor(tokenizer.encode(wrd))

    sb.dataio.dataset.add_dynamic_item([train, valid], text)
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
    brain.greedy = build_decoder(tokenizer, "greedy")
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
    recover_checkpoint(hparams["checkpointer"], "best")
    results = {}
    for split in hparams["test_splits"]:
        results[split] = evaluate_manifest(
            brain.model(),
            tokenizer,
            split_csv(hparams, split),
            os.path.join(hparams["output_folder"], f"wer_{split}.txt"),
            decoder=hparams["decoder"],
            beam_size=hparams["beam_size"],
            kenlm_model_path=hparams["kenlm_model_path"],
            lm_weight=hparams["lm_weight"],
            word_bonus=hparams["word_bonus"],
            sample_rate=hparams["sample_rate"],
            batch_size=hparams["test_batch_size"],
            device=brain.device,
        )
    weights = brain.model().weighted_sum.layer_weights().tolist()
    write_results_md(
        os.path.join(hparams["output_folder"], "results.md"),
        {f"{hparams['experiment']} ({hparams['decoder']})": results},
        title=f"MP3S {hparams['task']} probe: WER (%)",
        note=f"Encoder: `{hparams['ssl_source']}`. Learned layer weights "
        f"(input first): {', '.join(f'{w:.3f}' for w in weights)}.",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
