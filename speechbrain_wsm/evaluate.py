"""Score a trained CTC recipe on any manifest: ``python -m speechbrain_wsm.evaluate``.

Usage::

    python -m speechbrain_wsm.evaluate RUN --manifest test-other.csv \\
        [--name test-other] [--decoder greedy|beam|lexicon] [--beam_size 20] \\
        [--kenlm 3gram.arpa [--lexicon lexicon.txt] --lm_weight 0.5 --word_bonus 1.0] \\
        [--checkpoint best|latest|CKPT+...] [--output_folder DIR] \\
        [--batch_size 8] [--device cuda:0] [--data_folder /data] [--KEY=VALUE ...]

``RUN`` is a recipe's output folder (its ``hyperparams.yaml`` is read) or a
YAML file. ``--data_folder`` replaces ``$data_root`` in the manifest;
any other ``--KEY=VALUE`` overrides a top-level key of the YAML (say
``--ssl_source=/new/place`` after moving the encoder). The result is
``<output_folder>/wer_<name>.txt`` and ``cer_<name>.txt`` (SpeechBrain's
format: the ``%WER`` summary line, then every utterance's alignment; word and
character error rates computed with jiwer) and both summaries on stdout. ``output_folder`` defaults to ``RUN``, ``name``
to the manifest's file stem.

The contract a recipe follows to be scored this way (the MP3S CTC probes and
the selective fine-tuning recipes do):

* its resolved ``hyperparams.yaml`` (what ``sb.create_experiment_directory``
  writes) builds everything from top-level keys, without data side effects;
* ``asr_model``: a module with ``forward(wavs, wav_lens) -> (log_probs,
  out_lens)``: ``wavs`` ``[batch, sample]`` 16 kHz, ``wav_lens`` and
  ``out_lens`` ``[batch]`` relative lengths, ``log_probs`` ``[batch, frame,
  unit]`` CTC log-probabilities with the blank at unit 0;
* ``tokenizer_file``: the units, as saved by
  :mod:`speechbrain_wsm.data.tokenizers` (a character ``.txt`` or a
  sentencepiece ``.model``; :func:`~speechbrain_wsm.data.tokenizers.load_tokenizer`
  reads it), written there by training (a ``tokenizer`` key holding a
  tokenizer object works too);
* ``checkpointer``: a SpeechBrain ``Checkpointer`` whose recoverables hold
  every trained parameter of ``asr_model`` (frozen parts may load from
  elsewhere, e.g. an SSL encoder from its own folder); checkpoints carry the
  validation ``WER`` in their meta, so ``--checkpoint best`` (default) picks
  the lowest, ``latest`` the most recent. When the run folder moved,
  checkpoints are read from ``RUN/save``;
* optional keys: ``sample_rate`` (16000), ``decoder``
  (``greedy``/``beam``/``lexicon``), ``beam_size``, ``kenlm_model_path``,
  ``lexicon``, ``lm_weight``, ``word_bonus`` (the defaults of the flags
  above; ``lexicon`` decoding needs ``--kenlm`` and ``--lexicon``, which
  ``python -m speechbrain_wsm.data.lm`` builds).

Manifests are SpeechBrain CSV files with ``ID``, ``wav`` and ``wrd``
(``start``/``stop`` columns, in seconds, select a segment of ``wav``).

This module is the command line only: it and the recipes' final test call
the same functions (:mod:`speechbrain_wsm.recipe.evaluation`:
:func:`~speechbrain_wsm.recipe.evaluation.transcribe`,
:func:`~speechbrain_wsm.recipe.evaluation.evaluate_manifest`; and
:func:`~speechbrain_wsm.decoding.build_decoder`), so a recipe's
``wer_<split>.txt`` and this command's agree.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from speechbrain_wsm.decoding import DECODERS, check_decoder_files
from speechbrain_wsm.errors import ConfigError, install_error_hook
from speechbrain_wsm.recipe.evaluation import (
    DECODING_DEFAULTS,
    decoding_options,
    evaluate_manifest,
    load_recipe,
    load_trained,
)

__all__ = [
    "decoding_args",
    "main",
    "parse_override",
    "recipe_parser",
]

logger = logging.getLogger(__name__)


def decoding_args(args: argparse.Namespace) -> dict:
    """The decoding options given on a :func:`recipe_parser` command line
    (None where not given:
    :func:`~speechbrain_wsm.recipe.evaluation.decoding_options` falls back to the recipe's)."""
    return {key: getattr(args, key) for key in DECODING_DEFAULTS}


def recipe_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The command line of a tool that runs a trained recipe.

    It takes the recipe (``run``: its output folder or YAML), ``--checkpoint``,
    ``--device``, the decoding options (``--decoder``, ``--beam_size``,
    ``--kenlm``, ``--lexicon``, ``--lm_weight``, ``--word_bonus``) and
    ``--batch_size``; other
    ``--KEY=VALUE`` arguments override top-level keys of the YAML
    (:func:`parse_override`), as ``epilog`` goes on to say.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Other --KEY=VALUE options override top-level keys of the YAML. "
        + epilog,
    )
    parser.add_argument("run", help="recipe output folder or hyperparams YAML")
    parser.add_argument(
        "--checkpoint",
        default="best",
        help="best (lowest validation CER; WER in runs from before CER), latest, "
        "or a CKPT+ folder",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decoder", choices=DECODERS)
    parser.add_argument("--beam_size", type=int)
    parser.add_argument(
        "--kenlm", dest="kenlm_model_path", help="word n-gram LM (.arpa or .bin)"
    )
    parser.add_argument(
        "--lexicon",
        help="lexicon of --decoder lexicon (python -m speechbrain_wsm.data.lm)",
    )
    parser.add_argument("--lm_weight", type=float)
    parser.add_argument("--word_bonus", type=float)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of an error in what was given "
        "(by default one 'error:' line)",
    )
    return parser


def parse_override(item: str) -> tuple[str, object] | None:
    """``("key", value)`` of a ``--KEY=VALUE`` argument (value read as YAML), else None.

    Example
    -------
    >>> parse_override("--beam_size=4"), parse_override("--ssl_source=/m"), parse_override("a.wav")
    (('beam_size', 4), ('ssl_source', '/m'), None)
    """
    if not item.startswith("--") or "=" not in item:
        return None
    import yaml

    key, value = item[2:].split("=", 1)
    return key, yaml.safe_load(value)


def _parse(argv: Sequence[str]):
    parser = recipe_parser(
        "python -m speechbrain_wsm.evaluate",
        __doc__.split("\n\n", 1)[0],
        "See the module docstring for the contract a recipe follows.",
    )
    parser.add_argument(
        "--manifest",
        required=True,
        action="append",
        help="CSV manifest (ID, wav, wrd); repeatable",
    )
    parser.add_argument(
        "--name",
        action="append",
        help="name of each manifest's wer file (default: stem)",
    )
    parser.add_argument("--output_folder", help="where wer_<name>.txt goes")
    parser.add_argument("--data_folder", help="replaces $data_root in manifests")
    args, rest = parser.parse_known_args(list(argv))
    overrides = {}
    for item in rest:
        override = parse_override(item)
        if override is None:
            parser.error(f"unrecognised argument {item!r} (overrides are --KEY=VALUE)")
        overrides.update([override])
    if args.name and len(args.name) != len(args.manifest):
        parser.error("give one --name per --manifest, or none")
    return args, overrides


def _check_writable(folder: Path) -> None:
    """Fail before computing when the score files cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"cannot write the scores to {folder} ({e.strerror or e}): pass "
            "--output_folder=<a writable folder>"
        ) from None


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    """Command line entry point; returns ``{name: WER summary}``."""
    install_error_hook()
    args, overrides = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    hparams, run_folder = load_recipe(args.run, overrides)
    out_folder = Path(args.output_folder or run_folder)
    _check_writable(out_folder)  # before any decoding, not after
    decoding = decoding_options(hparams, **decoding_args(args))
    check_decoder_files(  # a missing LM or lexicon: one line, before loading
        decoding["decoder"], decoding["kenlm_model_path"], decoding["lexicon"]
    )
    model, tokenizer = load_trained(hparams, run_folder, args.checkpoint, args.device)
    results = {}
    names = args.name or [Path(m).stem for m in args.manifest]
    for manifest, name in zip(args.manifest, names, strict=True):
        summary = evaluate_manifest(
            model,
            tokenizer,
            manifest,
            str(out_folder / f"wer_{name}.txt"),
            **decoding,
            data_folder=args.data_folder,
            sample_rate=hparams.get("sample_rate", 16000),
            batch_size=args.batch_size,
            device=args.device,
        )
        results[name] = summary
        cer = summary["cer_summary"]
        print(
            f"{name}: %CER {cer['WER']:.2f} [ {cer['num_edits']} / "
            f"{cer['num_scored_tokens']} ], %WER {summary['WER']:.2f} [ "
            f"{summary['num_edits']} / {summary['num_scored_tokens']} ] -> "
            f"{out_folder / f'cer_{name}.txt'}, {out_folder / f'wer_{name}.txt'}"
        )
        if summary["unreadable"]:
            print(
                f"{name}: {len(summary['unreadable'])} utterance(s) not scored, "
                "see why in "
                f"{out_folder / f'unreadable_{name}.txt'}"
            )
    return results


if __name__ == "__main__":
    main()
