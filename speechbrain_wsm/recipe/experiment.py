"""Experiment setup shared by the recipes: command line, DDP, hyperparameters.

A recipe's ``main`` is::

    hparams, run_opts, hparams_file, overrides = load_hparams(sys.argv[1:])
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    manifests = prepare_librispeech_manifests(hparams)  # recipe.asr

:func:`load_hparams` parses SpeechBrain's command line, joins the DDP group
when the script runs under ``torchrun`` (the ``RANK``/``LOCAL_RANK``
variables; ``--distributed_backend=gloo`` on CPU, NCCL by default), and loads
the YAML strictly: an override naming no top-level key of the file (a
misspelt ``--d_modle=32``) is an error, not a silently ignored flag.

Mistakes on the command line end the run with one line naming the key and
the fix (a :class:`~speechbrain_wsm.errors.ConfigError`, printed without a traceback by the recipe's
process) before anything is built: an override given twice, a value of the
wrong type for its key (``--lr=abc``, ``--train_splits=dev-clean`` for a
list), and a size or count that must be positive (``--seconds_per_batch=0``).

The fused encoder path: every recipe's ``MixerEncoder`` (the SM, WSM and
attention baselines alike) runs through
``torch.compile(fullgraph=True, dynamic=True)`` when ``compile_encoder`` is
on: one compilation for every utterance length, the same numbers as eager
(SpeechBrain's attention layers, which torch 2.11 compiles once per length,
with ``fullgraph=False``: eager past Dynamo's recompile limit).
Its default, ``auto``, is on for CUDA and off on CPU (where compiling takes
longer than the short CPU runs it would speed up). Set it with
``--compile_encoder=True|False|auto`` on the command line (no YAML key is
needed) or a top-level ``compile_encoder:`` key in the YAML.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Sequence

import ruamel.yaml
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import infer_device

from speechbrain_wsm.data.text import is_utf8
from speechbrain_wsm.errors import (
    ConfigError,
    install_error_hook,
    user_error_hook,
)
from speechbrain_wsm.memory import keep_freed_memory

__all__ = [
    "COMPILE_KEY",
    "compile_encoders",
    "cpu_has_native_bf16",
    "install_config_error_hook",
    "load_hparams",
]

logger = logging.getLogger(__name__)

#: Top-level keys whose value may be a number or a list of numbers, whatever
#: the file's value is (feature fusion's ``taps``: every k-th layer, or the
#: layers themselves, ``--taps=[4,8,12]``).
NUMBER_OR_LIST_KEYS = ("taps",)

#: Top-level keys that must be positive numbers when a recipe has them.
POSITIVE_KEYS = (
    "seconds_per_batch",
    "number_of_epochs",
    "grad_accumulation_factor",
    "optimizer_step_limit",
    "batch_size",
    "valid_batch_size",
    "test_batch_size",
    "lr",
    "sample_rate",
    "num_buckets",
)


#: The option that turns the fused (compiled) encoder path on or off.
COMPILE_KEY = "compile_encoder"


def install_config_error_hook() -> None:
    """Print an uncaught user error as one line (:func:`~speechbrain_wsm.errors.install_error_hook`).

    SpeechBrain's ``create_experiment_directory`` replaces ``sys.excepthook``
    by its own, which logs every exception with its traceback; that one is
    wrapped too, so a user error stays one ``error:`` line after it.
    """
    install_error_hook()
    import speechbrain.core as core

    if not getattr(core._logging_excepthook, "_user_errors", False):
        core._logging_excepthook = user_error_hook(core._logging_excepthook)


def _check_overrides(hparams_file: str, overrides: str) -> None:
    """Refuse an override given twice, or of the wrong type for its key.

    The type is that of the key's value in the file: a number must stay a
    number, a boolean a boolean, a list a list (a value referring to other
    keys, or null in the file, takes anything).
    """
    for line in (overrides or "").splitlines():
        if not is_utf8(line):  # a byte of a file name that is not UTF-8
            key, _, value = line.partition(":")
            shown = os.fsencode(value.strip()).decode("utf-8", "backslashreplace")
            raise ConfigError(
                f"--{key.strip()}={shown}: the value holds a byte that is not "
                "UTF-8, which the run's records cannot hold: rename the file or "
                "folder, or give a link to it with a UTF-8 name (ln -s)"
            )
    try:
        given = ruamel.yaml.YAML(typ="safe").load(overrides or "") or {}
    except ruamel.yaml.constructor.DuplicateKeyError as e:
        found = re.search(r'duplicate key "([^"]+)"', str(e))
        key = found.group(1) if found else "an option"
        raise ConfigError(
            f"--{key} is given more than once on the command line: keep one"
        ) from None
    with open(hparams_file, encoding="utf-8") as f:
        tree = ruamel.yaml.YAML().load(f) or {}
    for key, value in given.items():
        default = tree.get(key)
        if value is None or default is None or _tagged(default):
            continue
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, (int, float)) and key in NUMBER_OR_LIST_KEYS:
            ok = _number(value) or (
                isinstance(value, list) and all(_number(v) for v in value)
            )
            kind = f"a number or a list of numbers, e.g. --{key}=[2,4]"
        elif isinstance(default, (int, float)):
            ok = _number(value)
            kind = "a number"
        elif isinstance(default, list):
            ok, kind = isinstance(value, list), f"a list, e.g. --{key}=[{value}]"
        else:
            continue
        if not ok:
            raise ConfigError(
                f"--{key}={value!r}: {key} must be {kind} (the file has "
                f"{key}: {default})"
            )


#: Seconds per encoder frame of every front end of the project (20 ms).
FRAME_SECONDS = 0.02
#: Per-layer attention contexts (frames) that cannot usefully exceed an utterance.
CONTEXT_KEYS = ("left_context", "right_context")


def _cap_contexts(hparams_file: str, overrides: str) -> str:
    """Cap ``left_context`` / ``right_context`` to the frames of ``max_duration``.

    A context longer than the longest utterance changes nothing in the
    output, but the band attention sizes its blocks by it: 10^5-10^6 frames
    asked for 160 GB. Such a value (in the file or on the command line) is
    replaced by the frames of ``max_duration`` (20 ms frames), with a log
    line, before anything is built.
    """
    with open(hparams_file, encoding="utf-8") as f:
        tree = ruamel.yaml.YAML().load(f) or {}
    values = {k: v for k, v in tree.items() if not _tagged(v)}
    given = ruamel.yaml.YAML(typ="safe").load(overrides or "") or {}
    values.update(given)
    max_duration = values.get("max_duration")
    if not isinstance(max_duration, (int, float)) or isinstance(max_duration, bool):
        return overrides
    frames = math.ceil(max_duration / FRAME_SECONDS)
    extra = []
    for key in CONTEXT_KEYS:
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > frames:
            logger.warning(  # before the run's log exists: WARNING reaches stderr
                "%s=%d frames is longer than max_duration (%g s = %d frames of "
                "20 ms): capped to %d",
                key,
                value,
                max_duration,
                frames,
                frames,
            )
            given[key] = frames
            extra.append(key)
    if not extra:
        return overrides
    return "\n".join(f"{k}: {json.dumps(v)}" for k, v in given.items())


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tagged(node) -> bool:
    """Whether a YAML node carries a tag (``!ref``, ``!new:`` ...): any type goes."""
    if isinstance(node, ruamel.yaml.comments.TaggedScalar):
        return True
    tag = getattr(getattr(node, "tag", None), "value", None)
    return bool(tag and tag.startswith("!"))


def _check_positive(hparams: dict, hparams_file: str) -> None:
    for key in POSITIVE_KEYS:
        value = hparams.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not value > 0:
                raise ConfigError(
                    f"{key} must be positive, got {value} ({hparams_file} or "
                    f"--{key}=...)"
                )


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # no process tears down while a peer still talks
        torch.distributed.destroy_process_group()


def _check_decoders(hparams: dict) -> None:
    """A test-time decoder's LM or lexicon that is missing fails now, not after training."""
    from speechbrain_wsm.decoding import check_decoder_files

    decoders = [hparams.get("decoder"), *(hparams.get("extra_decoders") or [])]
    for decoder in (d for d in decoders if isinstance(d, str)):
        check_decoder_files(
            decoder, hparams.get("kenlm_model_path"), hparams.get("lexicon")
        )


def _check_reverb(hparams: dict) -> None:
    """``add_reverb`` without a readable ``rir_csv`` fails now, in one line."""
    if not hparams.get("add_reverb"):
        return
    rirs = hparams.get("rir_csv")
    if not rirs or not os.path.isfile(rirs):
        raise ConfigError(
            f"add_reverb needs rir_csv, a CSV of room impulse responses "
            f"(got {rirs!r}): python -m speechbrain_wsm.data.rirs OUT writes "
            "OUT/rirs.csv"
        )


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
    ConfigError
        A ``ValueError``, before anything is built: an override naming no
        top-level key of the YAML file, given twice, or of the wrong type for
        its key; or a non-positive size or count (:data:`POSITIVE_KEYS`).

    Notes
    -----
    Mixed precision is a GPU setting: when the YAML asks for ``fp16`` or
    ``bf16`` and the run is on CPU without ``--precision`` on the command
    line, the run uses fp32 (and says so in the log).
    """
    install_config_error_hook()
    hparams_file, run_opts, overrides = sb.parse_arguments(list(argv or []))
    compile_choice, overrides = _pop_compile_option(hparams_file, overrides)
    _check_overrides(hparams_file, overrides)
    run_opts, overrides = _sync_run_options(hparams_file, run_opts, overrides)
    overrides = _cap_contexts(hparams_file, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    if torch.distributed.is_initialized():
        # A process group left to interpreter shutdown can abort the process
        # ("terminate called without an active exception") after a good run.
        atexit.register(_destroy_process_group)
    with open(hparams_file, encoding="utf-8") as fin:
        try:
            hparams = load_hyperpyyaml(fin, overrides, overrides_must_match=True)
        except KeyError as e:
            if "not found in" not in str(e):
                raise
            raise ConfigError(
                f"unknown command-line override for {hparams_file}: {e.args[0]}"
            ) from None
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
            # a constructor refusing a value of the YAML or an override
            # (e.g. --fbank_norm=utterance): the user's configuration
            raise ConfigError(f"{hparams_file}: {e}") from None
    _check_positive(hparams, hparams_file)
    _check_decoders(hparams)
    _check_reverb(hparams)
    device = run_opts["device"] or infer_device()
    if device.startswith("cpu"):
        keep_freed_memory()  # activations' pages are reused, not faulted in anew
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
    if compile_choice is None:
        compile_choice = hparams.get(COMPILE_KEY, "auto")
    if _compile_wanted(compile_choice, device):
        precision = (
            run_opts["precision"]
            if "precision" in run_opts.overridden_args
            else hparams.get("precision", "fp32")
        )
        if device.startswith("cpu") and precision != "fp32":
            raise ConfigError(
                f"--{COMPILE_KEY}=True with --precision={precision} on CPU: the "
                "compiled Conformer layers (relpos MHSA, WSM) fail in Inductor's "
                "CPU backward once the utterance length changes (torch 2.11), "
                "and on CPU they were no faster than eager; drop "
                f"--{COMPILE_KEY} or train in fp32"
            )
        compiled = compile_encoders(hparams)
        logger.info(
            "%s: the layers of %d MixerEncoder(s) compiled with torch.compile("
            "dynamic=True, backend=compile_backend) (MixerEncoder.compile_layers; "
            "--%s=False turns it off)",
            COMPILE_KEY,
            compiled,
            COMPILE_KEY,
        )
    return hparams, run_opts, hparams_file, overrides


def _pop_compile_option(hparams_file: str, overrides: str):
    """``--compile_encoder`` from the command line, and the other overrides.

    Taken out of the overrides unless the YAML has the key itself, so that
    every recipe accepts it without a line in its YAML.
    """
    if COMPILE_KEY not in (overrides or ""):
        return None, overrides
    with open(hparams_file, encoding="utf-8") as f:
        if COMPILE_KEY in (ruamel.yaml.YAML().load(f) or {}):
            return None, overrides
    try:
        given = ruamel.yaml.YAML(typ="safe").load(overrides) or {}
    except ruamel.yaml.constructor.DuplicateKeyError:
        return None, overrides  # _check_overrides names the repeated key
    if COMPILE_KEY not in given:
        return None, overrides
    kept = [
        line
        for line in (overrides or "").splitlines()
        if not line.startswith(f"{COMPILE_KEY}:")
    ]
    return given[COMPILE_KEY], "\n".join(kept)


def _compile_wanted(choice, device: str) -> bool:
    if isinstance(choice, str) and choice.lower() == "auto":
        return device.startswith("cuda")
    if isinstance(choice, bool):
        return choice
    raise ConfigError(
        f"--{COMPILE_KEY}={choice!r}: {COMPILE_KEY} must be True, False or auto"
    )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX).

    Where it does, ``--precision=bf16`` (SpeechBrain's autocast, on CPU too)
    trains the small CTC models about 1.5x faster than fp32 (the CTC README's
    "Settings for small data"); elsewhere bf16 is emulated and slower.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def compile_encoders(hparams: dict) -> int:
    """Compile, in place, the layers of every ``MixerEncoder`` among the modules.

    :meth:`~speechbrain_wsm.nnet.encoders.MixerEncoder.compile_layers`:
    ``torch.compile(fullgraph=True, dynamic=True)`` per layer through
    :func:`~speechbrain_wsm.nnet.lean_mixing.compile_backend` (Inductor,
    keeping only what the lean SM / WSM layers keep), one graph for
    every layer, length and batch size (SpeechBrain's attention layers:
    ``fullgraph=False``, one graph per length); parameter names, checkpoints and DDP
    wrapping are unchanged. Streaming encoders, whose state changes between
    chunks, stay eager.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters: ``modules`` and every top-level module
        are searched.

    Returns
    -------
    int
        How many encoders were compiled.
    """
    from speechbrain_wsm.nnet.encoders import MixerEncoder

    roots = [v for v in hparams.values() if isinstance(v, torch.nn.Module)]
    modules = hparams.get("modules")
    if isinstance(modules, dict):
        roots += [m for m in modules.values() if isinstance(m, torch.nn.Module)]
    done = set()
    for root in roots:
        for sub in root.modules():
            if type(sub) is MixerEncoder and id(sub) not in done:
                done.add(id(sub))
                sub.compile_layers()
    return len(done)


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
