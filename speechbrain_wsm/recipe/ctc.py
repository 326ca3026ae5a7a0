"""The Brain every CTC recipe shares: training, validation CER/WER, costs, test scoring.

The from-scratch CTC recipe, the MP3S CTC probes and selective fine-tuning
all train a module ``asr_model(wavs, wav_lens) -> (log_probs, out_lens)``
(relative lengths at this edge, SpeechBrain's convention) with CTC over
units whose blank is 0. :class:`CTCBrain` holds what they have in common:

* :class:`~speechbrain_wsm.recipe.brain.RobustBrain`'s training loop (no
  epoch ends with unapplied accumulated gradients; DDP processes all get
  whole batches);
* the CTC objective, and greedy decoding of the validation set into WER and
  CER (SpeechBrain's ``ErrorRateStats``; CER with spaces counted as ``_``);
* one optimiser per parameter group (:meth:`CTCBrain.parameter_groups`; the
  optimiser of group ``g`` is built by the YAML's ``g_opt_class`` and saved
  as ``g_optimizer``), unwrapping DDP;
* an optional step schedule (``lr_schedule``, a
  :class:`~speechbrain_wsm.recipe.schedules.TriStageSchedule`): the rate
  depends on the step only, never on a validation metric that sits at 100 %
  on the blank plateau;
* checkpoints at the end of every epoch with the validation ``CER``, ``WER``
  and loss in their meta, the best kept by CER;
* ``train_cost.json`` in the output folder: optimizer steps so far, the
  model's parameters (all and trainable), mean seconds per step of the last
  epoch and peak memory (CUDA allocator peak, or
  the process's peak resident set on CPU), which sweeps and the demo read;
* :meth:`CTCBrain.score_test_sets`: the best checkpoint decodes every test
  manifest into ``wer_<split>.txt`` and ``cer_<split>.txt`` and a
  ``results.md`` table, with the same functions as
  ``python -m speechbrain_wsm.evaluate``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence

import speechbrain as sb
import torch

from speechbrain_wsm.evaluate import (
    build_decoder,
    evaluate_manifest,
    recover_checkpoint,
)
from speechbrain_wsm.recipe.brain import RobustBrain, peak_memory_mb
from speechbrain_wsm.scoring import write_results_md

__all__ = ["CTCBrain", "peak_memory_mb"]


class CTCBrain(RobustBrain):
    """CTC training of ``modules.asr_model`` with validation CER/WER.

    The recipe sets ``brain.tokenizer`` (the units, blank at 0) before
    ``fit``. Hyperparameters read: ``<group>_opt_class`` for every parameter
    group, and optionally ``lr_schedule``, ``train_logger``,
    ``epoch_counter``, ``output_folder``.
    """

    tokenizer = None

    def model(self) -> torch.nn.Module:
        """``asr_model``, unwrapped from DDP."""
        return getattr(self.modules.asr_model, "module", self.modules.asr_model)

    # -- optimisation --------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by optimiser name; one group, ``model``, by default."""
        return {"model": [p for p in self.model().parameters() if p.requires_grad]}

    def init_optimizers(self):
        self.optimizers_dict = {}
        for name, params in self.parameter_groups().items():
            if params:
                opt = getattr(self.hparams, f"{name}_opt_class")(params)
                self.optimizers_dict[f"{name}_optimizer"] = opt
        if self.checkpointer is not None:
            for key, opt in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(key, opt)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **kwargs):
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **kwargs)
        if stage == sb.Stage.TRAIN:
            self._steps_per_epoch = math.ceil(
                len(loader) / self.grad_accumulation_factor
            )
        return loader

    def on_fit_start(self):
        super().on_fit_start()  # optimisers built, last checkpoint recovered
        schedule = getattr(self.hparams, "lr_schedule", None)
        if schedule is not None:
            # the run ends at the last epoch or at --optimizer_step_limit
            epochs = self.hparams.epoch_counter.limit
            total = epochs * getattr(self, "_steps_per_epoch", 1)
            if self.optimizer_step_limit is not None:
                total = min(total, int(self.optimizer_step_limit))
            schedule.set_total_steps(total)
            schedule.apply(self.optimizers_dict.values())

    def fit_batch(self, batch):
        start = time.perf_counter()
        loss = super().fit_batch(batch)
        self._batch_seconds.append(time.perf_counter() - start)
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        schedule = getattr(self.hparams, "lr_schedule", None)
        if should_step and schedule is not None:
            schedule.advance(self.optimizers_dict.values())

    # -- forward and objective -------------------------------------------------
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        return self.modules.asr_model(wavs, wav_lens)

    def compute_objectives(self, predictions, batch, stage):
        log_probs, lens = predictions
        tokens, token_lens = batch.tokens
        loss = sb.nnet.losses.ctc_loss(
            log_probs, tokens, lens, token_lens, blank_index=0
        )
        if stage != sb.Stage.TRAIN:
            hyps = [h.split() for h in self._greedy(log_probs.detach(), lens)]
            refs = [w.split() for w in batch.wrd]
            self.wer_metric.append(batch.id, hyps, refs)
            self.cer_metric.append(batch.id, hyps, refs)
        return loss

    # -- stages ----------------------------------------------------------------
    def on_stage_start(self, stage, epoch=None):
        if stage == sb.Stage.TRAIN:
            self._batch_seconds = []
            return
        if self.tokenizer is None:
            raise RuntimeError("set brain.tokenizer before fit/evaluate")
        self._greedy = build_decoder(self.tokenizer, "greedy")
        self.wer_metric = sb.utils.metric_stats.ErrorRateStats()
        self.cer_metric = sb.utils.metric_stats.ErrorRateStats(split_tokens=True)

    def stage_stats(self, stage_loss) -> dict[str, float]:
        """Loss, CER and WER of the validation or test stage just finished."""
        return {
            "loss": stage_loss,
            "CER": self.cer_metric.summarize("error_rate"),
            "WER": self.wer_metric.summarize("error_rate"),
        }

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            self._write_cost()
            return
        stats = self.stage_stats(stage_loss)
        if stage == sb.Stage.VALID:
            meta = {"epoch": epoch, **self.epoch_meta()}
            self.hparams.train_logger.log_stats(
                stats_meta=meta, train_stats=self.train_stats, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(meta=stats, min_keys=["CER"])

    def epoch_meta(self) -> dict:
        """What the training log shows beside the epoch: rates and step time."""
        meta = {
            f"lr_{key[: -len('_optimizer')]}": opt.param_groups[0]["lr"]
            for key, opt in self.optimizers_dict.items()
        }
        if self._batch_seconds:
            meta["step_s"] = round(self._step_seconds(), 3)
        meta.update(self.nonfinite_meta())
        return meta

    def _step_seconds(self) -> float:
        # the first batch of an epoch pays for loader start-up and warm-up
        times = self._batch_seconds[1:] or self._batch_seconds
        return sum(times) / len(times) * self.grad_accumulation_factor

    def _write_cost(self) -> None:
        folder = getattr(self.hparams, "output_folder", None)
        if folder is None or not sb.utils.distributed.if_main_process():
            return
        model = self.model()
        cost = {
            "steps": self.optimizer_step,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(
                p.numel() for p in model.parameters() if p.requires_grad
            ),
            "step_seconds": round(self._step_seconds(), 4)
            if self._batch_seconds
            else None,
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "device": str(self.device),
        }
        with open(os.path.join(folder, "train_cost.json"), "w") as f:
            json.dump(cost, f, indent=1)

    # -- final test --------------------------------------------------------------
    def score_test_sets(
        self,
        manifests: Mapping[str, str],
        decoders: Sequence[str] = ("greedy",),
        row_name: str = "model",
        title: str = "CER and WER (%)",
        note: str | Callable[[], str] = "",
    ) -> dict:
        """Best checkpoint; decode each manifest; ``[cw]er_<split>.txt`` and ``results.md``.

        The first decoder writes ``wer_<split>.txt`` / ``cer_<split>.txt``,
        each further one ``wer_<split>_<decoder>.txt`` ... Options of the
        decoders (``beam_size``, ``kenlm_model_path``, ``lm_weight``,
        ``word_bonus``, ``sample_rate``, ``test_batch_size``) come from the
        hyperparameters when they define them. ``note`` (text under the
        table) may be a function, called once the best checkpoint is loaded.

        Returns
        -------
        dict
            ``{"<row_name> (<decoder>)": {split: summary}}``, the table written.
        """
        hp = self.hparams
        recover_checkpoint(self.checkpointer, "best")
        folder = hp.output_folder
        options = {
            k: getattr(hp, k)
            for k in ("beam_size", "kenlm_model_path", "lm_weight", "word_bonus")
            if hasattr(hp, k)
        }
        results = {}
        for i, decoder in enumerate(decoders):
            suffix = "" if i == 0 else f"_{decoder}"
            results[f"{row_name} ({decoder})"] = {
                split: evaluate_manifest(
                    self.model(),
                    self.tokenizer,
                    path,
                    os.path.join(folder, f"wer_{split}{suffix}.txt"),
                    decoder=decoder,
                    sample_rate=getattr(hp, "sample_rate", 16000),
                    batch_size=getattr(hp, "test_batch_size", 8),
                    device=self.device,
                    **options,
                )
                for split, path in manifests.items()
            }
        note = note() if callable(note) else note  # may read the best checkpoint
        write_results_md(os.path.join(folder, "results.md"), results, title, note)
        return results
