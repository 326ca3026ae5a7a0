#!/usr/bin/env python3
"""MP3S utterance classification probe: frozen SSL encoder, weighted layer sum, head.

::

    python train.py hparams/ssl.yaml --ssl_source=results/wav2vec2_wsm/1986 \\
        --data_folder=/data/IEMOCAP_full_release [--test_session=1]

The YAML's ``prepare_data`` writes ``<output_folder>/<split>.csv``; each
utterance's class is its ``label_column`` (one of ``labels``). The probe
(pooling + linear here; the SLURP recipe adds a BiLSTM) trains with
cross-entropy on ``train_splits`` (model selection on the ``dev_splits``
error rate), then every ``test_splits`` split is classified with the best
checkpoint: ``predictions_<split>.txt`` (ID, reference, prediction) and the
accuracies in ``results.md``. The encoder never trains; the probe and the
layer weights have their own Adam optimisers and NewBob schedules.

This script serves the MP3S classification probes: IEMOCAP emotions and SLURP
scenarios (``../../SLURP/LSTM_linear`` runs it with its own YAML).
"""

import os
import sys

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_wsm.data.librispeech import merge_manifests
from speechbrain_wsm.data.mp3s import add_audio_pipeline
from speechbrain_wsm.evaluate import recover_checkpoint
from speechbrain_wsm.recipe import RobustBrain, load_hparams, manifest_dataset
from speechbrain_wsm.scoring import write_results_md


class ClassifierProbeBrain(RobustBrain):
    """Cross-entropy training of a probe over a frozen encoder."""

    def model(self):
        """The probe model, unwrapped from DDP."""
        return getattr(self.modules.classifier, "module", self.modules.classifier)

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        log_probs, _ = self.modules.classifier(wavs, wav_lens, ids=batch.id)
        return log_probs.reshape(log_probs.shape[0], -1)  # [batch, class]

    def compute_objectives(self, log_probs, batch, stage):
        targets = batch.label.to(self.device)
        if stage != sb.Stage.TRAIN:
            self.errors += (log_probs.argmax(-1) != targets).sum().item()
            self.count += targets.numel()
        return F.nll_loss(log_probs, targets)

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
        self.errors, self.count = 0, 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["error_rate"] = 100.0 * self.errors / max(self.count, 1)
        lr_model, new_model = self.hparams.lr_annealing_model(stats["error_rate"])
        lr_weights, new_weights = self.hparams.lr_annealing_weights(stats["error_rate"])
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
            meta={"error_rate": stats["error_rate"]}, min_keys=["error_rate"]
        )


def split_csv(hparams, split):
    """The manifest ``prepare_data`` wrote for ``split``."""
    return os.path.join(hparams["output_folder"], f"{split}.csv")


def prepare(hparams):
    """Split manifests, then the merged training and validation manifests."""
    if not hparams["skip_prep"]:
        hparams["prepare_data"]()
    for key, splits in (("train_csv", "train_splits"), ("valid_csv", "dev_splits")):
        merge_manifests([split_csv(hparams, s) for s in hparams[splits]], hparams[key])


def dataset(hparams, csv, sort=None, **durations):
    """A dataset giving ``id``, ``sig`` and the class index ``label``."""
    data = manifest_dataset(csv, sort=sort, **durations)
    index = {label: i for i, label in enumerate(hparams["labels"])}
    column = hparams["label_column"]

    @sb.utils.data_pipeline.takes(column)
    @sb.utils.data_pipeline.provides("label")
    def label(value):
        if value not in index:
            raise ValueError(
                f"{csv}: label {value!r} is not in labels {hparams['labels']}"
            )
        return index[value]

    data.add_dynamic_item(label)
    add_audio_pipeline([data], ["id", "sig", "label"], hparams["sample_rate"])
    return data


def main(argv):
    hparams, run_opts, hparams_file, overrides = load_hparams(argv)
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    run_on_main(prepare, args=[hparams])
    sort = hparams["sorting"] if hparams["sorting"] != "random" else None
    train = dataset(
        hparams,
        hparams["train_csv"],
        sort,
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
    )
    valid = dataset(hparams, hparams["valid_csv"], "descending")

    brain = ClassifierProbeBrain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
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
    recover_checkpoint(hparams["checkpointer"], "best", key="error_rate")
    brain.model().eval()
    results = {}
    for split in hparams["test_splits"]:
        data = dataset(hparams, split_csv(hparams, split), "descending")
        lines, correct = [], 0
        for batch in sb.dataio.dataloader.make_dataloader(
            data, batch_size=hparams["test_batch_size"]
        ):
            with torch.no_grad():
                log_probs = brain.compute_forward(batch, sb.Stage.TEST)
            for uid, ref, hyp in zip(
                batch.id, batch.label.tolist(), log_probs.argmax(-1).tolist()
            ):
                correct += ref == hyp
                lines.append(f"{uid} {hparams['labels'][ref]} {hparams['labels'][hyp]}")
        path = os.path.join(hparams["output_folder"], f"predictions_{split}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("# ID reference prediction\n" + "\n".join(sorted(lines)) + "\n")
        results[split] = 100.0 * correct / max(len(lines), 1)
    weights = brain.model().weighted_sum.layer_weights().tolist()
    write_results_md(
        os.path.join(hparams["output_folder"], "results.md"),
        {hparams["experiment"]: results},
        title=f"MP3S {hparams['task']} probe: accuracy (%)",
        note=f"Encoder: `{hparams['ssl_source']}`. Classes: "
        f"{', '.join(hparams['labels'])}. Learned layer weights (input first): "
        f"{', '.join(f'{w:.3f}' for w in weights)}.",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
