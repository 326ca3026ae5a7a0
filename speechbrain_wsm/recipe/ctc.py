"""The Brain every CTC recipe shares: training, validation CER/WER, costs, test scoring.

The from-scratch CTC recipe, the MP3S CTC probes and selective fine-tuning
all train a module ``asr_model(wavs, wav_lens) -> (log_probs, out_lens)``
(relative lengths at this edge, SpeechBrain's convention) with CTC over
units whose blank is 0. :class:`CTCBrain` holds what they have in common:

* waveform augmentation of training batches when the YAML has a
  ``wav_augment`` (SpeechBrain's ``Augmenter``) with augmentations enabled;
* the CTC objective, mixed with the intermediate CTC losses by
  ``inter_ctc_weight`` when the model returns them in training (validation
  scores the last layer alone), and greedy decoding of the validation set
  into WER and CER (SpeechBrain's ``ErrorRateStats``; CER with spaces
  counted as ``_``);
* from :class:`~.brain.RecipeBrain`: one optimiser per parameter group, an
  optional step schedule (``lr_schedule``: the rate depends on the step
  only, never on a validation metric that sits at 100 % on the blank
  plateau), ``train_cost.json``;
* checkpoints at the end of every epoch with the validation ``CER``, ``WER``
  and loss in their meta, the best kept by CER;
* :meth:`CTCBrain.score_test_sets`: the best checkpoint decodes every test
  manifest into ``wer_<split>.txt`` and ``cer_<split>.txt`` and a
  ``results.md`` table, with the same functions as
  ``python -m speechbrain_wsm.evaluate``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import speechbrain as sb

from speechbrain_wsm.decoding import build_decoder
from speechbrain_wsm.errors import ConfigError
from speechbrain_wsm.recipe.brain import RecipeBrain
from speechbrain_wsm.recipe.checkpoints import recover_checkpoint
from speechbrain_wsm.recipe.evaluation import evaluate_manifest
from speechbrain_wsm.scoring import write_results_md

__all__ = ["CTCBrain"]


class CTCBrain(RecipeBrain):
    """CTC training of ``modules.asr_model`` with validation CER/WER.

    The recipe sets ``brain.tokenizer`` (the units, blank at 0) before
    ``fit``. Hyperparameters read: ``<group>_opt_class`` for every parameter
    group, and optionally ``lr_schedule``, ``train_logger``,
    ``epoch_counter``, ``output_folder``.
    """

    model_key = "asr_model"
    tokenizer = None

    # -- forward and objective -------------------------------------------------
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        augment = getattr(self.hparams, "wav_augment", None)
        if stage == sb.Stage.TRAIN and augment is not None and augment.augmentations:
            wavs, wav_lens = augment(wavs, wav_lens)
        return self.modules.asr_model(wavs, wav_lens)

    def compute_objectives(self, predictions, batch, stage):
        log_probs, lens, *intermediate = predictions
        tokens, token_lens = batch.tokens

        def ctc(lp):
            return sb.nnet.losses.ctc_loss(lp, tokens, lens, token_lens, blank_index=0)

        loss = ctc(log_probs)
        if intermediate:  # intermediate CTC heads, in training (FbankCTC)
            weight = getattr(self.hparams, "inter_ctc_weight", None)
            if weight is None or not 0.0 <= weight <= 1.0:
                raise ConfigError(
                    "inter_ctc_layers needs inter_ctc_weight in [0, 1] in the "
                    f"YAML, got {weight!r}"
                )
            inter = sum(ctc(lp) for lp in intermediate[0]) / len(intermediate[0])
            loss = (1 - weight) * loss + weight * inter
        if stage != sb.Stage.TRAIN:
            hyps = [h.split() for h in self._greedy(log_probs.detach(), lens)]
            refs = [w.split() for w in batch.wrd]
            self.wer_metric.append(batch.id, hyps, refs)
            self.cer_metric.append(batch.id, hyps, refs)
        return loss

    # -- stages ----------------------------------------------------------------
    def on_stage_start(self, stage, epoch=None):
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
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
            self.end_train_stage(stage_loss)
            return
        stats = self.stage_stats(stage_loss)
        if stage == sb.Stage.VALID:
            meta = {"epoch": epoch, **self.epoch_meta()}
            self.hparams.train_logger.log_stats(
                stats_meta=meta, train_stats=self.train_stats, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(meta=stats, min_keys=["CER"])

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
        decoders (``beam_size``, ``kenlm_model_path``, ``lexicon``,
        ``lm_weight``, ``word_bonus``, ``sample_rate``, ``test_batch_size``)
        come from the hyperparameters when they define them. ``note`` (text under the
        table) may be a function, called once the best checkpoint is loaded.

        Returns
        -------
        dict
            ``{"<row_name> (<decoder>)": {split: summary}}``, the table written.
        """
        hp = self.hparams
        recover_checkpoint(self.checkpointer, "best")
        folder = hp.output_folder
        keys = ("beam_size", "kenlm_model_path", "lexicon", "lm_weight", "word_bonus")
        options = {k: getattr(hp, k) for k in keys if getattr(hp, k, None) is not None}
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
