#!/usr/bin/env python3
"""LASER: soft-DTW self-supervised fine-tuning of HuBERT, WavLM or a project encoder.

::

    python train.py hparams/laser_hubert.yaml --ssl_source=/models/hubert-base \\
        --data_folder=/data/LibriSpeech

Each step takes one utterance (``batch_size``), makes a perturbed copy (speed,
then pitch, :class:`~speechbrain_wsm.models.laser.ViewPerturbation`), runs both
views through the same upstream (top layers trainable) and the projection
head in random order, and minimises the soft-DTW divergence plus the IDM
regulariser (:class:`~speechbrain_wsm.models.laser.LASERModel`); ``score:
True`` gives the SCORE baseline. Updates accumulate ``grad_accumulation_factor``
steps and stop after ``optimizer_step_limit`` updates; AdamW with linear
warm-up and decay. The fine-tuned upstream is written to
``<output_folder>/model``, a folder every ``ssl_source`` accepts (MP3S probes,
selective fine-tuning). Restarting the same command resumes from the last
checkpoint. See README.md.
"""

import logging
import random
import sys
from pathlib import Path

import speechbrain as sb
from speechbrain.utils.data_pipeline import provides, takes
from speechbrain.utils.distributed import if_main_process

from speechbrain_wsm.data.audio import add_audio_pipeline
from speechbrain_wsm.models.laser import save_laser_model
from speechbrain_wsm.models.lengths import relative_to_absolute
from speechbrain_wsm.models.surgery import count_parameters, trainable_parameter_names
from speechbrain_wsm.recipe import (
    RecipeBrain,
    load_hparams,
    manifest_dataset,
    prepare_librispeech_manifests,
    set_schedule_length,
)

logger = logging.getLogger(__name__)


class LASERBrain(RecipeBrain):
    """One (clean, perturbed) pair per step; the loss is the model's.

    :class:`~speechbrain_wsm.recipe.RecipeBrain` gives the optimiser of the
    trainable parameters (``model_opt_class``) and ``train_cost.json``; the
    rate follows ``lr_warmup_decay`` by update.
    """

    model_key = "laser"

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        views = [batch.sig, batch.perturbed]
        if not self.model().score and random.random() < 0.5:
            views.reverse()  # both views through the same model, random order
        (w1, r1), (w2, r2) = views
        return self.modules.laser(
            w1,
            relative_to_absolute(r1, w1.shape[1]),
            w2,
            relative_to_absolute(r2, w2.shape[1]),
        )

    def compute_objectives(self, outputs, batch, stage):
        self.last = {k: float(v) for k, v in outputs.items()}
        return outputs["loss"]

    def on_fit_start(self):
        super().on_fit_start()
        # the schedule spans the steps this run will take (logged)
        set_schedule_length(self, self.hparams.lr_warmup_decay)

    def on_fit_batch_start(self, batch, should_step):
        if should_step:  # the learning rate of this update
            lr = self.hparams.lr_warmup_decay.calculate_lr(self.optimizer_step + 1)
            for opt in self.optimizers_dict.values():
                for group in opt.param_groups:
                    group["lr"] = lr

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if should_step and self.optimizer_step % self.hparams.log_interval == 0:
            self.hparams.train_logger.log_stats(
                stats_meta={"step": self.optimizer_step, **self.epoch_meta()},
                train_stats=self.last,
            )

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.end_train_stage(stage_loss)
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "epoch": epoch,
                    "steps": self.optimizer_step,
                    **self.epoch_meta(),
                },
                train_stats=self.train_stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"steps": self.optimizer_step}, num_to_keep=1
            )


def perturbed_pipeline(perturb):
    @takes("sig")
    @provides("perturbed")
    def pipeline(sig):
        return perturb(sig)

    return pipeline


#: Seconds of the shortest perturbed view every upstream takes (a HuBERT
#: front end needs 400 samples, the project's fbank front end more than 800).
SHORTEST_VIEW = 0.3


def shortest_clip(hparams) -> float:
    """``min_duration``, raised so that the fastest view still lasts ``SHORTEST_VIEW`` s."""
    floor = SHORTEST_VIEW * max(hparams["perturbation"].speed_factors)
    if hparams["min_duration"] < floor:
        logger.info(
            "min_duration %.2f s raised to %.2f s: a shorter clip sped up by %g "
            "is too short for the model",
            hparams["min_duration"],
            floor,
            max(hparams["perturbation"].speed_factors),
        )
        return floor
    return hparams["min_duration"]


def main(argv):
    hparams, run_opts, hparams_file, overrides = load_hparams(argv)
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    prepare_librispeech_manifests(hparams)
    # too short and too long clips are left out here and counted (log, run
    # summary), not found mid-epoch by the model
    train = manifest_dataset(
        hparams["train_csv"],
        hparams["data_folder"],
        shortest_clip(hparams),
        hparams["max_duration"],
    )
    add_audio_pipeline([train], output_keys=("id", "sig"))
    train.add_dynamic_item(perturbed_pipeline(hparams["perturbation"]))
    train.set_output_keys(["id", "sig", "perturbed"])

    laser = hparams["laser"]
    brain = LASERBrain(
        modules={"laser": laser},
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    if if_main_process():
        names = trainable_parameter_names(laser.upstream.model)
        (Path(hparams["output_folder"]) / "trainable.txt").write_text(
            "\n".join(names) + "\n"
        )
        print(
            f"LASER: {count_parameters(laser.upstream) / 1e6:.2f} M trainable upstream "
            f"parameters of {count_parameters(laser.upstream, False) / 1e6:.2f} M, "
            f"head {count_parameters(laser.head) / 1e6:.3f} M"
        )
    brain.fit(
        hparams["epoch_counter"],
        train,
        train_loader_kwargs={
            "batch_size": hparams["batch_size"],
            "shuffle": True,
            "num_workers": hparams["num_workers"],
        },
    )
    if if_main_process():
        save_laser_model(
            brain.model().upstream, hparams["ssl_source"], hparams["export_folder"]
        )


if __name__ == "__main__":
    main(sys.argv[1:])
