"""Data side of the LibriSpeech recipes, and the CTC recipes' training and scoring.

:func:`prepare_librispeech_manifests` is the one LibriSpeech / Libri-light
preparation of every recipe (pretraining and LASER call it directly). The
CTC recipes (from scratch, selective fine-tuning, feature fusion) read the same keys: ``train_splits`` (Libri-light limited folds,
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

from speechbrain_wsm.data.audio import add_audio_pipeline
from speechbrain_wsm.data.librispeech import (
    prepare_librilight_limited,
    prepare_librispeech,
)
from speechbrain_wsm.data.manifests import merge_manifests
from speechbrain_wsm.data.tokenizers import CharTokenizer, load_tokenizer
from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.recipe.ctc import CTCBrain
from speechbrain_wsm.recipe.dataio import (
    PackedBatchSampler,
    add_token_pipeline,
    manifest_dataset,
)
from speechbrain_wsm.recipe.experiment import load_hparams

__all__ = [
    "LIBRILIGHT_SETS",
    "LIBRISPEECH_UNITS",
    "asr_datasets",
    "fit_ctc",
    "prepare_librispeech_manifests",
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


def prepare_librispeech_manifests(
    hparams: dict,
    train_key: str = "train_csv",
    valid_key: str = "valid_csv",
    skip_prep_reads: str = "merged",
) -> dict[str, str]:
    """Write the LibriSpeech / Libri-light manifests a recipe reads (on the main process).

    The one preparation of the LibriSpeech recipes (pretraining, LASER, CTC
    from scratch, selective fine-tuning, feature fusion). Reads
    ``data_folder``, ``train_splits`` (LibriSpeech splits and Libri-light
    limited folds, ``10min``/``1h``/``10h``, from ``librilight_folder``),
    ``dev_splits``, ``test_splits`` and ``skip_prep``. Each split becomes
    its manifest (:func:`split_csv`, in ``manifest_folder``, default the
    run's ``output_folder``); the training splits are merged into
    ``hparams[train_key]`` and the dev splits into ``hparams[valid_key]``
    (when those keys exist and the splits are not empty). Called by every
    process: the main one writes, the others wait.

    With ``skip_prep`` nothing is prepared, and ``skip_prep_reads`` says
    what the recipe reads: ``"merged"`` (pretraining, LASER): the merged
    manifests as given, which may be any manifests (``ID, duration, wav``);
    ``"splits"`` (the CTC recipes): the split manifests, which must exist in
    ``manifest_folder`` already, merged as above.

    Arguments
    ---------
    hparams : dict
        The recipe's hyperparameters.
    train_key, valid_key : str
        Keys of ``hparams`` naming the merged training and validation
        manifests.
    skip_prep_reads : str
        ``"merged"`` or ``"splits"``, see above.

    Returns
    -------
    dict
        Split name (and ``train_key`` / ``valid_key``) to manifest path.
    """
    if skip_prep_reads not in ("merged", "splits"):
        raise ValueError(
            f"skip_prep_reads must be 'merged' or 'splits', got {skip_prep_reads!r}"
        )
    train = list(hparams.get("train_splits") or [])
    dev = list(hparams.get("dev_splits") or [])
    test = list(hparams.get("test_splits") or [])
    merges = {
        hparams[key]: splits
        for key, splits in ((train_key, train), (valid_key, dev))
        if key in hparams and splits
    }
    out = {k: hparams[k] for k in (train_key, valid_key) if k in hparams}
    skip = bool(hparams.get("skip_prep"))
    if skip and skip_prep_reads == "merged":
        return out
    run_on_main(_prepare, args=[hparams, train, dev, test, merges, skip])
    splits = list(dict.fromkeys(train + dev + test))
    out.update((split, split_csv(hparams, split)) for split in splits)
    return out


def _prepare(hparams, train, dev, test, merges, skip) -> None:
    """The main process's part of :func:`prepare_librispeech_manifests`."""
    folder = _manifest_folder(hparams)
    if not skip:
        folds = [s for s in train if s in LIBRILIGHT_SETS]
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
            dev_splits=dev,
            te_splits=test,
        )
    for out_path, splits in merges.items():
        merge_manifests([split_csv(hparams, s) for s in splits], out_path)


def _save_units(hparams: dict) -> None:
    """The character units of LibriSpeech transcripts, in ``tokenizer_file``."""
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
    # RobustBrain makes the batch sampler its train_sampler: set_epoch(epoch)
    # every epoch, so a resumed run sees the batches a straight run would
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
    prepare_librispeech_manifests(hparams, skip_prep_reads="splits")
    run_on_main(_save_units, args=[hparams])
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
