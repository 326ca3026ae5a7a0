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
everything but the CNN front end), plus a character CTC head. The new
modules (blocks and head) and the fine-tuned pretrained parameters get their
own Adam optimiser and NewBob schedule.

Data: ``train_set`` is ``10min``, ``1h`` or ``10h`` (Libri-light limited,
from ``librilight_folder``) or a LibriSpeech split (``train-clean-100``);
model selection on ``dev_splits``; every ``test_splits`` split is decoded
with the best checkpoint (greedy into ``wer_<split>.txt``, then each of
``extra_decoders`` into ``wer_<split>_<decoder>.txt``) and ``results.md``
sums them up. The best model is also exported to ``<output_folder>/finetuned``
(:func:`~speechbrain_wsm.models.finetuning.load_finetuned` rebuilds it), and
``python -m speechbrain_wsm.evaluate <output_folder> --manifest X.csv``
scores it on any manifest. A killed run started again with the same command
resumes from its last checkpoint (end of epoch, or every
``ckpt_interval_minutes``). See README.md.
"""

import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_wsm.data.librispeech import (
    merge_manifests,
    prepare_librilight_limited,
    prepare_librispeech,
)
from speechbrain_wsm.data.tokenizers import CharTokenizer, load_tokenizer
from speechbrain_wsm.evaluate import (
    build_decoder,
    evaluate_manifest,
    recover_checkpoint,
)
from speechbrain_wsm.models.finetuning import save_finetuned
from speechbrain_wsm.models.surgery import count_parameters
from speechbrain_wsm.recipe import (
    add_audio_pipeline,
    dynamic_batch_sampler,
    load_hparams,
    manifest_dataset,
)
from speechbrain_wsm.scoring import write_results_md

LIBRILIGHT_SETS = ("10min", "1h", "10h")
#: LibriSpeech transcripts: 26 letters, apostrophe, space.
UNITS = ["<blank>", "<unk>", "<space>", "'"] + [chr(c) for c in range(65, 91)]


class FinetuneBrain(sb.Brain):
    """CTC fine-tuning with one optimiser for the new modules, one for the pretrained."""

    def model(self):
        """The fine-tuner, unwrapped from DDP."""
        return getattr(self.modules.asr_model, "module", self.modules.asr_model)

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
            hyps = [h.split() for h in self.greedy(log_probs.detach(), lens)]
            self.wer_metric.append(batch.id, hyps, [w.split() for w in batch.wrd])
        return loss

    def init_optimizers(self):
        model = self.model()
        new = tuple(f"{name}." for name in model.new_modules)
        groups = {"new": [], "pretrained": []}
        for name, p in model.named_parameters():
            if p.requires_grad:
                groups["new" if name.startswith(new) else "pretrained"].append(p)
        self.optimizers_dict = {
            "new_optimizer": self.hparams.new_opt_class(groups["new"])
        }
        if groups["pretrained"]:
            self.optimizers_dict["pretrained_optimizer"] = (
                self.hparams.pretrained_opt_class(groups["pretrained"])
            )
        if self.checkpointer is not None:
            for key, opt in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(key, opt)

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
            lrs = {}
            for key, opt in self.optimizers_dict.items():
                scheduler = self.hparams.lr_annealing[key.split("_")[0]]
                old, new = scheduler(stats["WER"])
                sb.nnet.schedulers.update_learning_rate(opt, new)
                lrs[f"lr_{key.split('_')[0]}"] = old
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, **lrs},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"WER": stats["WER"]}, min_keys=["WER"]
            )


def split_csv(hparams, split):
    """The manifest prepared for a LibriSpeech split or Libri-light set."""
    name = f"librilight-{split}" if split in LIBRILIGHT_SETS else split
    return os.path.join(hparams["output_folder"], f"{name}.csv")


def prepare(hparams):
    """Manifests (training set, dev and test splits) and the character units."""
    train_set = hparams["train_set"]
    if not hparams["skip_prep"]:
        if train_set in LIBRILIGHT_SETS:
            prepare_librilight_limited(
                hparams["librilight_folder"], hparams["output_folder"]
            )
        prepare_librispeech(
            hparams["data_folder"],
            hparams["output_folder"],
            tr_splits=[] if train_set in LIBRILIGHT_SETS else [train_set],
            dev_splits=hparams["dev_splits"],
            te_splits=hparams["test_splits"],
        )
    merge_manifests(
        [split_csv(hparams, s) for s in hparams["dev_splits"]], hparams["valid_csv"]
    )
    units = CharTokenizer(UNITS)
    if len(units) != hparams["output_neurons"]:
        raise ValueError(
            f"output_neurons is {hparams['output_neurons']}, the units are {len(units)}"
        )
    units.save(hparams["tokenizer_file"])


def dataio_prepare(hparams, tokenizer):
    """Training and validation datasets with audio and CTC targets."""
    train = manifest_dataset(
        split_csv(hparams, hparams["train_set"]),
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
    )
    valid = manifest_dataset(hparams["valid_csv"], sort="descending")

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens")
    def text(wrd):
        return torch.LongTensor(tokenizer.encode(wrd))

    sb.dataio.dataset.add_dynamic_item([train, valid], text)
    add_audio_pipeline([train, valid], ["id", "sig", "wrd", "tokens"])
    return train, valid


def test(brain, hparams, tokenizer):
    """Decode every test split with the best checkpoint; wer files, results.md, export."""
    recover_checkpoint(hparams["checkpointer"], "best")
    model = brain.model()
    out = hparams["output_folder"]
    save_finetuned(model, os.path.join(out, "finetuned"))
    results = {}
    for decoder in [hparams["decoder"], *hparams["extra_decoders"]]:
        row = {}
        for split in hparams["test_splits"]:
            suffix = "" if decoder == hparams["decoder"] else f"_{decoder}"
            row[split] = evaluate_manifest(
                model,
                tokenizer,
                split_csv(hparams, split),
                os.path.join(out, f"wer_{split}{suffix}.txt"),
                decoder=decoder,
                beam_size=hparams["beam_size"],
                batch_size=hparams["test_batch_size"],
                device=brain.device,
            )
        results[f"{hparams['experiment']} ({decoder})"] = row
    write_results_md(
        os.path.join(out, "results.md"),
        results,
        title=f"Selective fine-tuning on {hparams['train_set']}: WER (%), no LM",
        note=f"SSL model: `{hparams['ssl_source']}`; mode `{hparams['mode']}`; "
        f"{count_parameters(model) / 1e6:.2f} M trainable of "
        f"{count_parameters(model, trainable_only=False) / 1e6:.2f} M parameters.",
    )
    return results


def main(argv):
    hparams, run_opts, hparams_file, overrides = load_hparams(argv)
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    run_on_main(prepare, args=[hparams])
    tokenizer = load_tokenizer(hparams["tokenizer_file"])
    train, valid = dataio_prepare(hparams, tokenizer)

    brain = FinetuneBrain(
        modules={"asr_model": hparams["asr_model"]},
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.greedy = build_decoder(tokenizer, "greedy")
    sampler = dynamic_batch_sampler(
        train,
        hparams["seconds_per_batch"],
        hparams["num_buckets"],
        seed=hparams["seed"],
    )
    # Brain then calls sampler.set_epoch(epoch) every epoch: the batches of an
    # epoch depend on its number only, so a resumed run sees what a straight
    # run would have (Brain does not do this for a batch_sampler by itself).
    brain.train_sampler = sampler
    brain.fit(
        hparams["epoch_counter"],
        train,
        valid,
        train_loader_kwargs={
            "batch_sampler": sampler,
            "num_workers": hparams["num_workers"],
        },
        valid_loader_kwargs={
            "batch_size": hparams["test_batch_size"],
            "num_workers": hparams["num_workers"],
        },
    )
    if if_main_process():
        test(brain, hparams, tokenizer)


if __name__ == "__main__":
    main(sys.argv[1:])
