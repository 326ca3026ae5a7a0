"""Experiment setup shared by the recipes: command line, DDP, hyperparameters, data.

A recipe's ``main`` is::

    hparams, run_opts, hparams_file, overrides = load_hparams(sys.argv[1:])
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    manifests = prepare_librispeech_manifests(hparams)

:func:`load_hparams` parses SpeechBrain's command line, joins the DDP group
when the script runs under ``torchrun`` (the ``RANK``/``LOCAL_RANK``
variables; ``--distributed_backend=gloo`` on CPU, NCCL by default), and loads
the YAML strictly: an override naming no top-level key of the file (a
misspelt ``--d_modle=32``) is an error, not a silently ignored flag.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import infer_device, run_on_main

from speechbrain_wsm.data.librispeech import merge_manifests, prepare_librispeech

__all__ = ["load_hparams", "prepare_librispeech_manifests"]

logger = logging.getLogger(__name__)


def load_hparams(argv: Sequence[str] | None = None):
    """Parse a recipe's command line, start DDP if launched by torchrun, load the YAML.

    Arguments
    ---------
    argv : sequence of str, optional
        ``[hparams.yaml, --key=value, ...]`` (default ``sys.argv[1:]``).
        SpeechBrain run options (``--device``, ``--precision``,
        ``--distributed_backend``, ``--ckpt_interval_minutes``, ``--debug``
        ...) go to ``run_opts``; every other ``--key=value`` overrides a
        top-level key of the YAML file and must name one.

    Returns
    -------
    hparams : dict
        The loaded hyperparameters (objects built).
    run_opts : speechbrain.RunOptions
        SpeechBrain's run options.
    hparams_file : str
        The YAML path.
    overrides : str
        The overrides, as YAML text (for ``create_experiment_directory``).

    Raises
    ------
    ValueError
        If an override names no top-level key of the YAML file.

    Notes
    -----
    Mixed precision is a GPU setting: when the YAML asks for ``fp16`` or
    ``bf16`` and the run is on CPU without ``--precision`` on the command
    line, the run uses fp32 (and says so in the log).
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(list(argv or []))
    run_opts, overrides = _sync_run_options(hparams_file, run_opts, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        try:
            hparams = load_hyperpyyaml(fin, overrides, overrides_must_match=True)
        except KeyError as e:
            if "not found in" not in str(e):
                raise
            raise ValueError(
                f"unknown command-line override for {hparams_file}: {e.args[0]}"
            ) from None
    device = run_opts["device"] or infer_device()
    if (
        device.startswith("cpu")
        and "precision" not in run_opts.overridden_args
        and hparams.get("precision", "fp32") != "fp32"
    ):
        logger.info(
            "precision %s in %s is for GPUs; running on CPU in fp32 "
            "(pass --precision to force it)",
            hparams["precision"],
            hparams_file,
        )
        hparams["precision"] = "fp32"
    return hparams, run_opts, hparams_file, overrides


def _sync_run_options(hparams_file: str, run_opts, overrides: str):
    """Make a run option given on the command line reach the YAML too.

    SpeechBrain's parser takes ``--optimizer_step_limit``, ``--precision``,
    ``--max_grad_norm`` ... as run options, not as YAML overrides: a YAML key
    of the same name (which other entries may reference, like the learning
    rate schedule's length) would keep its file value. Such options are added
    to the overrides. ``--optimizer_step_limit`` also comes back from the
    parser as a string, and is made an int.
    """
    if isinstance(run_opts.optimizer_step_limit, str):
        limit = int(run_opts.optimizer_step_limit)
        run_opts = dataclasses.replace(run_opts, optimizer_step_limit=limit)
    with open(hparams_file, encoding="utf-8") as f:
        top_level = set(ruamel.yaml.YAML().load(f) or {})
    given = set(ruamel.yaml.YAML(typ="safe").load(overrides or "") or {})
    extra = [
        f"{name}: {json.dumps(run_opts[name])}"
        for name in sorted(run_opts.overridden_args)
        if name in top_level and name not in given
    ]
    return run_opts, "\n".join(filter(None, [overrides, *extra]))


def _split_csvs(save_folder: str, splits: Sequence[str]) -> list[str]:
    return [os.path.join(save_folder, f"{split}.csv") for split in splits]


def _prepare(hparams: dict, save_folder: str, merges: dict) -> None:
    prepare_librispeech(
        data_folder=hparams["data_folder"],
        save_folder=save_folder,
        tr_splits=hparams.get("train_splits") or (),
        dev_splits=hparams.get("dev_splits") or (),
        te_splits=hparams.get("test_splits") or (),
    )
    for out_path, splits in merges.items():
        merge_manifests(_split_csvs(save_folder, splits), out_path)


def prepare_librispeech_manifests(
    hparams: dict,
    save_folder: str | None = None,
    train_key: str = "train_csv",
    valid_key: str = "valid_csv",
) -> dict[str, str]:
    """Write the LibriSpeech manifests a recipe reads (on the main process only).

    Reads ``data_folder``, ``train_splits``, ``dev_splits``, ``test_splits``
    and ``skip_prep`` from ``hparams``. Each split becomes
    ``<save_folder>/<split>.csv``; the training splits are merged into
    ``hparams[train_key]`` and the dev splits into ``hparams[valid_key]``
    (when those keys exist). With ``skip_prep`` nothing is written: the
    manifest keys may then point at any manifests (``ID, duration, wav``).

    Arguments
    ---------
    hparams : dict
        The recipe's hyperparameters.
    save_folder : str, optional
        Where the per-split manifests go (default ``hparams["output_folder"]``).
    train_key, valid_key : str
        Keys of ``hparams`` naming the merged training and validation
        manifests.

    Returns
    -------
    dict
        Split name (and ``train_key`` / ``valid_key``) to manifest path.
    """
    save_folder = save_folder or hparams["output_folder"]
    groups = {
        train_key: hparams.get("train_splits") or [],
        valid_key: hparams.get("dev_splits") or [],
    }
    merges = {hparams[k]: v for k, v in groups.items() if k in hparams and v}
    splits = list(
        dict.fromkeys(
            (hparams.get("train_splits") or [])
            + (hparams.get("dev_splits") or [])
            + (hparams.get("test_splits") or [])
        )
    )
    out = {k: hparams[k] for k in (train_key, valid_key) if k in hparams}
    if hparams.get("skip_prep"):
        return out
    run_on_main(_prepare, args=[hparams, save_folder, merges])
    out.update(zip(splits, _split_csvs(save_folder, splits), strict=True))
    return out
