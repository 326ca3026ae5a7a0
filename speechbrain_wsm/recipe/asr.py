"""Data side of the LibriSpeech CTC recipes (from scratch, selective fine-tuning).

Both recipes read the same keys: ``train_splits`` (Libri-light limited folds,
``10min``/``1h``/``10h``, from ``librilight_folder``, and/or LibriSpeech
splits such as ``train-clean-100`` from ``data_folder``; merged into
``train_csv``), ``dev_splits`` (model selection, merged into ``valid_csv``),
``test_splits`` (scored at the end), ``skip_prep``, ``tokenizer_file``, ``output_neurons``, ``min_duration``,
``max_duration``, ``seconds_per_batch``, ``num_buckets``, ``num_workers``,
``test_batch_size``, ``seed``. A recipe's ``main`` is then::

    brain, hparams = train_asr(argv, brain_class)  # prepare, train
    score_asr(brain, hparams, title, note)  # on the main process
"""

from __future__ import annotations

import os

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_wsm.data.librispeech import (
    merge_manifests,
    prepare_librilight_limited,
    prepare_librispeech,
)
from speechbrain_wsm.data.tokenizers import CharTokenizer, load_tokenizer
from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.recipe.ctc import CTCBrain
from speechbrain_wsm.recipe.dataio import (
    PackedBatchSampler,
    add_audio_pipeline,
    add_token_pipeline,
    manifest_dataset,
)
from speechbrain_wsm.recipe.experiment import load_hparams

__all__ = [
    "LIBRILIGHT_SETS",
    "LIBRISPEECH_UNITS",
    "asr_datasets",
    "fit_ctc",
    "prepare_asr_data",
    "split_csv",
    "score_asr",
    "scoring_manifests",
    "train_asr",
]

LIBRILIGHT_SETS = ("10min", "1h", "10h")
#: LibriSpeech transcripts: blank, unknown, space, apostrophe, 26 letters.
LIBRISPEECH_UNITS = ["<blank>", "<unk>", "<space>", "'"] + [
    chr(c) for c in range(65, 91)
]


def split_csv(hparams: dict, split: str) -> str:
    """The manifest of a LibriSpeech split or Libri-light fold, in ``manifest_folder``.

    ``manifest_folder`` (default: the run's ``output_folder``) is where the
    preparation writes one manifest per split; runs that share it (a sweep,
    the demo) prepare the data once.

    Example
    -------
    >>> split_csv({"manifest_folder": "m"}, "1h"), split_csv({"output_folder": "o"}, "dev-clean")
    ('m/librilight-1h.csv', 'o/dev-clean.csv')
    """
    name = f"librilight-{split}" if split in LIBRILIGHT_SETS else split
    return os.path.join(_manifest_folder(hparams), f"{name}.csv")


def _manifest_folder(hparams: dict) -> str:
    return hparams.get("manifest_folder") or hparams["output_folder"]


def scoring_manifests(hparams: dict) -> dict[str, str]:
    """``{split: manifest}`` for every ``test_splits`` split (scored at the end)."""
    return {split: split_csv(hparams, split) for split in hparams["test_splits"]}


def prepare_asr_data(hparams: dict) -> None:
    """Split manifests, the merged training and validation manifests, the units.

    With ``skip_prep`` the split manifests must exist in ``manifest_folder``
    already.
    """
    folder = _manifest_folder(hparams)
    train = list(hparams["train_splits"])
    folds = [s for s in train if s in LIBRILIGHT_SETS]
    if not hparams["skip_prep"]:
        if folds:
            if not hparams.get("librilight_folder"):
                raise UserValueError(
                    f"train_splits {folds} are Libri-light folds: pass "
                    "--librilight_folder=<the extracted librispeech_finetuning folder>"
                )
            prepare_librilight_limited(hparams["librilight_folder"], folder)
        prepare_librispeech(
            hparams["data_folder"],
            folder,
            tr_splits=[s for s in train if s not in LIBRILIGHT_SETS],
            dev_splits=hparams["dev_splits"],
            te_splits=hparams["test_splits"],
        )
    for key, splits in (("train_csv", train), ("valid_csv", hparams["dev_splits"])):
        merge_manifests([split_csv(hparams, s) for s in splits], hparams[key])
    units = CharTokenizer(LIBRISPEECH_UNITS)
    if len(units) != hparams["output_neurons"]:
        raise UserValueError(
            f"output_neurons is {hparams['output_neurons']}, the units are {len(units)}"
        )
    units.save(hparams["tokenizer_file"])


def asr_datasets(hparams: dict, tokenizer):
    """Training and validation datasets with audio (``sig``) and CTC targets (``tokens``)."""
    train = manifest_dataset(
        hparams["train_csv"],
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
    )
    # validation too: a clip too short for the model, or a file too long for
    # memory, would stop the run after a whole epoch of training
    valid = manifest_dataset(
        hparams["valid_csv"],
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
        sort="descending",
    )
    add_token_pipeline([train, valid], tokenizer)
    add_audio_pipeline([train, valid], ["id", "sig", "wrd", "tokens"])
    return train, valid


def fit_ctc(brain, hparams: dict, train, valid) -> None:
    """Train with packed batches (``seconds_per_batch`` of padded audio per process)."""
    sampler = PackedBatchSampler(
        train, hparams["seconds_per_batch"], seed=hparams["seed"]
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


def train_asr(argv, brain_class: type[CTCBrain] = CTCBrain):
    """A LibriSpeech CTC recipe up to the end of training.

    Parses the command line (:func:`~speechbrain_wsm.recipe.load_hparams`),
    creates the experiment folder, prepares the data on the main process,
    builds ``brain_class`` around the YAML's ``asr_model`` and
    ``checkpointer`` and trains it (resuming from the last checkpoint).

    Returns
    -------
    brain : CTCBrain
        The trained Brain, its ``tokenizer`` set.
    hparams : dict
        The loaded hyperparameters.
    """
    hparams, run_opts, hparams_file, overrides = load_hparams(argv)
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    run_on_main(prepare_asr_data, args=[hparams])
    tokenizer = load_tokenizer(hparams["tokenizer_file"])
    train, valid = asr_datasets(hparams, tokenizer)
    brain = brain_class(
        modules={"asr_model": hparams["asr_model"]},
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.tokenizer = tokenizer
    fit_ctc(brain, hparams, train, valid)
    return brain, hparams


def score_asr(brain: CTCBrain, hparams: dict, title: str, note="") -> dict:
    """The best checkpoint on every ``test_splits`` split, with the YAML's decoders.

    ``decoder`` writes ``wer_<split>.txt`` / ``cer_<split>.txt``, each of
    ``extra_decoders`` its own files; ``results.md`` has one row per decoder
    named after ``experiment`` (see :meth:`CTCBrain.score_test_sets`). Only
    the main process scores (the others return an empty dict at once).
    """
    if not if_main_process():
        return {}
    return brain.score_test_sets(
        scoring_manifests(hparams),
        [hparams["decoder"], *hparams["extra_decoders"]],
        row_name=hparams["experiment"],
        title=title,
        note=note,
    )
