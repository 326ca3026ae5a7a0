"""The MP3S probes: a frozen SSL encoder, a learned layer weighting, a small head.

Every MP3S task is one thin ``train.py`` and a YAML; what they share is here:

* :func:`prepare_probe_data`: the YAML's ``prepare_data`` writes one manifest
  per split in the output folder (:func:`~.asr.split_csv`); the training and
  validation splits are merged into ``train_csv`` / ``valid_csv``;
* :class:`FrozenEncoderProbe`: the two optimiser groups of a probe (``model``:
  the head; ``weights``: the layer weighting) and the learned layer weights
  in the training log and ``results.md``;
* :class:`CTCProbeBrain` and :func:`run_ctc_probe`: the CTC probes
  (LibriSpeech BiLSTM and ContextNet, Common Voice, Buckeye), on the shared
  :class:`~.ctc.CTCBrain`;
* :class:`ClassificationBrain`, :class:`ClassifierProbeBrain` and
  :func:`run_classification_probe`: utterance classification (IEMOCAP
  emotions, SLURP scenarios) with cross-entropy, validation error rate,
  best checkpoint by it, per-epoch annealing (``lr_annealing_<group>``), and
  ``predictions_<split>.txt`` + accuracies in ``results.md``. The VoxCeleb1
  speaker probe builds on :class:`ClassifierProbeBrain`.
"""

from __future__ import annotations

import os
import shutil

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_wsm.data.audio import add_audio_pipeline
from speechbrain_wsm.data.manifests import merge_manifests
from speechbrain_wsm.data.tokenizers import prepare_tokenizer
from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.recipe.asr import split_csv
from speechbrain_wsm.recipe.brain import RecipeBrain
from speechbrain_wsm.recipe.checkpoints import recover_checkpoint
from speechbrain_wsm.recipe.ctc import CTCBrain
from speechbrain_wsm.recipe.dataio import (
    add_token_pipeline,
    manifest_dataset,
)
from speechbrain_wsm.recipe.experiment import load_hparams
from speechbrain_wsm.scoring import write_results_md

__all__ = [
    "CTCProbeBrain",
    "ClassificationBrain",
    "ClassifierProbeBrain",
    "FrozenEncoderProbe",
    "fit_probe",
    "prepare_probe_data",
    "run_classification_probe",
    "run_ctc_probe",
    "setup_experiment",
]


def prepare_probe_data(hparams: dict) -> None:
    """Split manifests (unless ``skip_prep``), then ``train_csv`` and ``valid_csv``."""
    if not hparams["skip_prep"]:
        hparams["prepare_data"]()
    for key, splits in (("train_csv", "train_splits"), ("valid_csv", "dev_splits")):
        merge_manifests([split_csv(hparams, s) for s in hparams[splits]], hparams[key])


def _sorting(hparams: dict) -> str | None:
    return hparams["sorting"] if hparams["sorting"] != "random" else None


def fit_probe(
    brain_class,
    hparams: dict,
    run_opts: dict,
    train,
    valid,
    train_loader: dict | None = None,
    valid_loader: dict | None = None,
    **attributes,
):
    """Build the probe's Brain (with ``attributes`` set on it) and train it.

    Both loaders take the YAML's ``batch_size`` and ``num_workers``; training
    shuffles unless ``sorting`` sorts. ``train_loader`` / ``valid_loader``:
    loader options added to or replacing those (``drop_last``, ``shuffle``).

    Returns
    -------
    Brain
        The trained ``brain_class``.
    """
    brain = brain_class(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    for name, value in attributes.items():
        setattr(brain, name, value)
    loader = {
        "batch_size": hparams["batch_size"],
        "num_workers": hparams["num_workers"],
    }
    train_options = {**loader, **(train_loader or {})}
    if "shuffle" not in train_options:
        train_options["shuffle"] = hparams["sorting"] == "random"
    brain.fit(
        hparams["epoch_counter"],
        train,
        valid,
        train_loader_kwargs=train_options,
        valid_loader_kwargs={**loader, **(valid_loader or {})},
    )
    return brain


def setup_experiment(argv) -> tuple[dict, dict]:
    """Parse the command line and create the output folder: ``(hparams, run_opts)``."""
    hparams, run_opts, hparams_file, overrides = load_hparams(argv)
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    return hparams, run_opts


class FrozenEncoderProbe:
    """Mixin of the probes: optimiser groups and the learned layer weights.

    The probe model has ``weighted_sum`` (the layer weighting of the frozen
    encoder's hidden states) and ``head`` (the rest).
    """

    def parameter_groups(self):
        model = self.model()
        return {
            "model": list(model.head.parameters()),
            "weights": list(model.weighted_sum.parameters()),
        }

    def layer_weights(self) -> list[float]:
        """The learned weight of every hidden state, input first."""
        return self.model().weighted_sum.layer_weights().tolist()

    def layer_weights_text(self) -> str:
        return ", ".join(f"{w:.3f}" for w in self.layer_weights())

    def epoch_meta(self):
        weights = [round(w, 3) for w in self.layer_weights()]
        return {**super().epoch_meta(), "layer_weights": weights}


# --------------------------------------------------------------------------- #
# CTC probes
# --------------------------------------------------------------------------- #


class CTCProbeBrain(FrozenEncoderProbe, CTCBrain):
    """CTC training of a probe over a frozen encoder (probe and layer weights)."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        return self.modules.asr_model(wavs, wav_lens, ids=batch.id)


def run_ctc_probe(argv) -> None:
    """Prepare, train and score an MP3S CTC probe (the whole of its ``train.py``)."""
    hparams, run_opts = setup_experiment(argv)

    def prepare():
        prepare_probe_data(hparams)
        prepare_tokenizer(
            hparams["train_csv"],
            hparams["tokenizer_file"],
            hparams["unit"],
            hparams["output_neurons"],
            max_units=hparams["output_neurons"],
        )

    run_on_main(prepare)
    tokenizer = prepare_tokenizer(
        hparams["train_csv"], hparams["tokenizer_file"], hparams["unit"]
    )
    train = manifest_dataset(
        hparams["train_csv"],
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
        sort=_sorting(hparams),
    )
    valid = manifest_dataset(hparams["valid_csv"], sort="descending")
    add_token_pipeline([train, valid], tokenizer)
    add_audio_pipeline(
        [train, valid], ["id", "sig", "wrd", "tokens"], hparams["sample_rate"]
    )

    brain = fit_probe(
        CTCProbeBrain, hparams, run_opts, train, valid, tokenizer=tokenizer
    )
    if not if_main_process():
        return
    phones = hparams["unit"] == "phone"
    brain.score_test_sets(
        {split: split_csv(hparams, split) for split in hparams["test_splits"]},
        [hparams["decoder"]],
        row_name=hparams["experiment"],
        title=f"MP3S {hparams['task']} probe: "
        + ("PER (%) = the WER column, over phones" if phones else "CER and WER (%)"),
        # the best checkpoint's layer weights, loaded by then
        note=lambda: (
            f"Encoder: `{hparams['ssl_source']}`. Learned layer "
            f"weights (input first): {brain.layer_weights_text()}."
        ),
    )
    if phones:  # the phone error rate, in SpeechBrain's WER format
        out = hparams["output_folder"]
        for split in hparams["test_splits"]:
            shutil.copyfile(
                os.path.join(out, f"wer_{split}.txt"),
                os.path.join(out, f"per_{split}.txt"),
            )


# --------------------------------------------------------------------------- #
# Classification probes
# --------------------------------------------------------------------------- #


class ClassificationBrain(RecipeBrain):
    """Classification of ``modules.classifier``: cross-entropy, validation error rate.

    ``compute_forward`` returns log-probabilities ``[batch, class]``; the
    targets are ``batch.label``. Each validation ends with the epoch's log
    line, :meth:`anneal`, and a checkpoint whose meta holds ``error_rate``
    (the best kept). Hyperparameters read, besides :class:`RecipeBrain`'s:
    ``lr_annealing_<group>`` (optional, called with the validation error
    rate: SpeechBrain's ``NewBobScheduler``), ``train_logger``.
    """

    model_key = "classifier"

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        log_probs, _ = self.modules.classifier(wavs, wav_lens, ids=batch.id)
        return log_probs.reshape(log_probs.shape[0], -1)  # [batch, class]

    def compute_objectives(self, log_probs, batch, stage):
        targets = batch.label.to(self.device)
        if stage != sb.Stage.TRAIN:
            self.count_errors(log_probs.argmax(-1), targets)
        return F.nll_loss(log_probs, targets)

    def count_errors(self, predicted: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch's errors to the stage's error rate."""
        self.errors += (predicted != targets).sum().item()
        self.count += targets.numel()

    def on_stage_start(self, stage, epoch=None):
        super().on_stage_start(stage, epoch)
        self.errors, self.count = 0, 0

    def anneal(self, stats: dict, epoch: int) -> None:
        """Update the rate of every group that has an ``lr_annealing_<group>``."""
        for key, optimizer in self.optimizers_dict.items():
            group = key[: -len("_optimizer")]
            scheduler = getattr(self.hparams, f"lr_annealing_{group}", None)
            if scheduler is not None:
                _, new_lr = scheduler(stats["error_rate"])
                sb.nnet.schedulers.update_learning_rate(optimizer, new_lr)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.end_train_stage(stage_loss)
            return
        stats = {
            "loss": stage_loss,
            "error_rate": 100.0 * self.errors / max(self.count, 1),
        }
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, **self.epoch_meta()},
            train_stats=self.train_stats,
            valid_stats=stats,
        )
        self.anneal(stats, epoch)
        self.checkpointer.save_and_keep_only(
            meta={"error_rate": stats["error_rate"]}, min_keys=["error_rate"]
        )


class ClassifierProbeBrain(FrozenEncoderProbe, ClassificationBrain):
    """Cross-entropy training of a probe over a frozen encoder."""


def label_dataset(hparams: dict, csv: str, sort=None, **durations):
    """A dataset giving ``id``, ``sig`` and the class index ``label``.

    Each row's class is its ``label_column``; a value outside ``labels`` is
    a ``ValueError`` naming the manifest.
    """
    data = manifest_dataset(csv, sort=sort, **durations)
    index = {label: i for i, label in enumerate(hparams["labels"])}

    @sb.utils.data_pipeline.takes(hparams["label_column"])
    @sb.utils.data_pipeline.provides("label")
    def label(value):
        if value not in index:
            raise UserValueError(
                f"{csv}: label {value!r} is not in labels {hparams['labels']}"
            )
        return index[value]

    data.add_dynamic_item(label)
    add_audio_pipeline([data], ["id", "sig", "label"], hparams["sample_rate"])
    return data


@torch.no_grad()
def classify_split(brain: ClassificationBrain, hparams: dict, split: str) -> float:
    """Classify a test split: ``predictions_<split>.txt``; returns the accuracy (%)."""
    data = label_dataset(hparams, split_csv(hparams, split), "descending")
    labels = hparams["labels"]
    lines, correct = [], 0
    for batch in sb.dataio.dataloader.make_dataloader(
        data, batch_size=hparams["test_batch_size"]
    ):
        predicted = brain.compute_forward(batch, sb.Stage.TEST).argmax(-1)
        for uid, ref, hyp in zip(batch.id, batch.label.tolist(), predicted.tolist()):
            correct += ref == hyp
            lines.append(f"{uid} {labels[ref]} {labels[hyp]}")
    path = os.path.join(hparams["output_folder"], f"predictions_{split}.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("# ID reference prediction\n" + "\n".join(sorted(lines)) + "\n")
    return 100.0 * correct / max(len(lines), 1)


def run_classification_probe(argv) -> None:
    """Prepare, train and score an MP3S classification probe (its whole ``train.py``)."""
    hparams, run_opts = setup_experiment(argv)
    run_on_main(prepare_probe_data, args=[hparams])
    train = label_dataset(
        hparams,
        hparams["train_csv"],
        _sorting(hparams),
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
    )
    valid = label_dataset(hparams, hparams["valid_csv"], "descending")

    brain = fit_probe(ClassifierProbeBrain, hparams, run_opts, train, valid)
    if not if_main_process():
        return
    recover_checkpoint(hparams["checkpointer"], "best", key="error_rate")
    brain.model().eval()
    results = {
        split: classify_split(brain, hparams, split) for split in hparams["test_splits"]
    }
    write_results_md(
        os.path.join(hparams["output_folder"], "results.md"),
        {hparams["experiment"]: results},
        title=f"MP3S {hparams['task']} probe: accuracy (%)",
        note=f"Encoder: `{hparams['ssl_source']}`. Classes: "
        f"{', '.join(hparams['labels'])}. Learned layer weights (input first): "
        f"{brain.layer_weights_text()}.",
    )
