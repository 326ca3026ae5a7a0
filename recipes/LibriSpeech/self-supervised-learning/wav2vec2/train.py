#!/usr/bin/env python3
"""wav2vec 2.0 self-supervised pretraining with an MHSA, SummaryMixing or WSM encoder.

One GPU, CPU, or many GPUs through torchrun::

    python train.py hparams/wav2vec2_wsm.yaml --data_folder=/path/LibriSpeech
    torchrun --nproc_per_node=4 train.py hparams/wav2vec2_sm.yaml --data_folder=...

Restarting the same command resumes from the last checkpoint. The model lives
in ``speechbrain_wsm.models.wav2vec2`` (``load_pretrained_encoder`` reads the
output folder back), the data helpers in ``speechbrain_wsm.recipe``; see
README.md.
"""

import sys

import speechbrain as sb

from speechbrain_wsm.data.audio import add_audio_pipeline
from speechbrain_wsm.recipe import (
    RobustBrain,
    SpanMaskCollate,
    dynamic_batch_sampler,
    load_hparams,
    manifest_dataset,
    prepare_librispeech_manifests,
    set_schedule_length,
)


class W2V2Brain(RobustBrain):
    """Masked contrastive pretraining; the inherited ``fit_batch`` does AMP,
    gradient accumulation (applied at every epoch end) and clipping, and the
    inherited loader wiring splits the batches under DDP and re-seeds them
    every epoch (so a resumed run batches as a straight run); these hooks the
    rest."""

    model_key = "wav2vec2"

    def on_fit_start(self):
        super().on_fit_start()
        # the schedule spans the steps this run will take (--number_of_epochs
        # or --optimizer_step_limit, whichever stops it first)
        set_schedule_length(self, self.hparams.lr_scheduler)

    def compute_forward(self, batch, stage):
        wavs, wav_lens, mask = (t.to(self.device) for t in batch)
        return self.modules.wav2vec2(wavs, wav_lens, mask)

    def compute_objectives(self, outputs, batch, stage):
        stats = self.hparams.loss(outputs)
        self.batch_stats = {k: v.detach() for k, v in stats.items()}
        self.batch_stats.update(
            prob_perplex=outputs["prob_perplex"].detach(), temp=outputs["temp"]
        )
        if stage != sb.Stage.TRAIN:
            self.accuracies.append(float(stats["accuracy"]))
        return stats["loss"]

    def on_fit_batch_start(self, batch, should_step):
        if should_step:  # the learning rate and temperature of this update
            self.hparams.lr_scheduler(self.optimizer, self.optimizer_step + 1)
            self.model().update_temperature(self.optimizer_step)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        # every process calls the loggers: they write on the main one only
        if should_step and self.optimizer_step % self.hparams.log_interval == 0:
            stats = {k: float(v) for k, v in self.batch_stats.items()}
            self.hparams.train_steps_logger.log_stats(
                stats_meta={
                    "step": self.optimizer_step,
                    "lr": self.optimizer.param_groups[0]["lr"],
                },
                train_stats=stats,
            )

    def on_stage_start(self, stage, epoch=None):
        self.accuracies = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if self.accuracies:
            stats["accuracy"] = sum(self.accuracies) / len(self.accuracies)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
        elif stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "epoch": epoch,
                    "steps": self.optimizer_step,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    **self.nonfinite_meta(),
                },
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"valid_loss": stage_loss}, num_to_keep=2
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"test set": self.test_name}, test_stats=stats
            )


def main(argv=None):
    hparams, run_opts, hparams_file, overrides = load_hparams(
        sys.argv[1:] if argv is None else argv
    )
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    manifests = prepare_librispeech_manifests(hparams)

    # every split within [min_duration, max_duration] (a counted report in the
    # log): a 0.05 s clip has no room for a masked span, a 40-minute file no
    # room in memory
    limits = (hparams["data_folder"], hparams["min_duration"], hparams["max_duration"])
    datasets = {
        "train": manifest_dataset(hparams["train_csv"], *limits),
        "valid": manifest_dataset(hparams["valid_csv"], *limits),
    }
    for split in hparams["test_splits"] if not hparams["skip_prep"] else []:
        datasets[split] = manifest_dataset(manifests[split], *limits)
    add_audio_pipeline(list(datasets.values()))

    collate = SpanMaskCollate(
        hparams["wav2vec2"].output_lengths, hparams["mask_prob"], hparams["mask_length"]
    )
    sampler = dynamic_batch_sampler(
        datasets["train"],
        hparams["seconds_per_batch"],
        hparams["num_buckets"],
        seed=hparams["seed"],
    )
    loader = {"collate_fn": collate, "num_workers": hparams["num_workers"]}
    eval_loader = {**loader, "batch_size": hparams["valid_batch_size"]}

    brain = W2V2Brain(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        datasets.pop("train"),
        datasets.pop("valid"),
        train_loader_kwargs={**loader, "batch_sampler": sampler},
        valid_loader_kwargs=eval_loader,
    )
    for name, dataset in datasets.items():  # masked-prediction accuracy on test sets
        brain.test_name = name
        brain.evaluate(dataset, min_key="valid_loss", test_loader_kwargs=eval_loader)


if __name__ == "__main__":
    main()
