"""SLURP preparation for scenario classification (MP3S SLU, 18 scenarios).

Reads SLURP as distributed (the text of the ``pswietojanski/slurp`` repository
and the ``slurp_real`` audio archive extracted beside it)::

    <data_folder>/dataset/slurp/train.jsonl, devel.jsonl, test.jsonl
    <data_folder>/slurp_real/audio-1434542201-headset.flac, ...   16 kHz

Each JSON line is one prompt (``slurp_id``, ``sentence``, ``scenario``,
``action``, ``intent``) with its ``recordings`` (a list of ``{"file": ...}``);
every recording is one utterance. ``<split>.jsonl`` becomes ``<split>.csv``
with ``ID, duration, wav, spk_id, wrd, scenario, action, intent`` (``ID``
is the recording's file stem, ``spk_id`` the prompt's ``slurp_id``: SLURP
has no speaker field there, ``wrd`` the normalised sentence). MP3S trains on
the real recordings of ``train`` only (``train_synthetic`` is not read
unless listed in ``splits``, its audio in ``slurp_synth``).

Bad input (lines that are not JSON or lack a field, missing or unreadable
audio, repeated recordings) is skipped, counted, listed in
``slurp_skipped.txt`` and summarised in one log line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence

from .._prep import Outputs, Prepared, PrepOptions, split_list
from .._probe import AUDIO_KINDS
from ._common import add_splits, normalize_words, require_file, require_folder

__all__ = ["SCENARIOS", "SKIP_KINDS", "prepare_slurp"]

logger = logging.getLogger(__name__)

#: The 18 SLURP scenarios.
SCENARIOS = (
    "alarm", "audio", "calendar", "cooking", "datetime", "email", "general",
    "iot", "lists", "music", "news", "play", "qa", "recommendation", "social",
    "takeaway", "transport", "weather",
)  # fmt: skip

SKIP_KINDS = ("malformed_line", *AUDIO_KINDS, "duplicate_id")

FIELDS = ("ID", "duration", "wav", "spk_id", "wrd", "scenario", "action", "intent")

_OUTPUTS = Outputs(FIELDS, SKIP_KINDS, "slurp_skipped.txt", logger)

_LAYOUT = (
    "the SLURP folder holding dataset/slurp/<split>.jsonl (from the SLURP "
    "repository) and slurp_real/*.flac (the slurp_real archive)"
)


def _read_jsonl(path: str, audio_folder: str, prepared: Prepared) -> Iterator[dict]:
    """Rows of one split: one per recording, without its duration."""
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{name}:{lineno}"
            try:
                entry = json.loads(line)
                prompt = {
                    k: entry[k] for k in ("slurp_id", "sentence", "scenario", "intent")
                }
                recordings = entry["recordings"]
                files = [r["file"] for r in recordings]
            except (ValueError, KeyError, TypeError) as exc:
                detail = (
                    f"missing field {exc}" if isinstance(exc, KeyError) else "not JSON"
                )
                prepared.skip("malformed_line", where, path, detail)
                continue
            action = entry.get("action") or prompt["intent"].split("_", 1)[-1]
            for file in files:
                yield {
                    "ID": os.path.splitext(os.path.basename(file))[0],
                    "wav": os.path.join(audio_folder, file),
                    "spk_id": str(prompt["slurp_id"]),
                    "wrd": normalize_words(str(prompt["sentence"])),
                    "scenario": str(prompt["scenario"]),
                    "action": str(action),
                    "intent": str(prompt["intent"]),
                }


def prepare_slurp(
    data_folder: str,
    save_folder: str,
    splits: Sequence[str] = ("train", "devel", "test"),
    **options,
) -> dict[str, str]:
    """Write one manifest per SLURP split.

    ``data_folder`` holds ``dataset/slurp`` and ``slurp_real`` (and
    ``slurp_synth`` for ``train_synthetic``); ``save_folder`` gets one
    ``<split>.csv`` per split and ``slurp_skipped.txt``.
    What every preparation shares (the folders, ``**options``, the result):
    :class:`~speechbrain_wsm.data._prep.PrepOptions`.

    Arguments
    ---------
    splits : sequence of str
        JSONL names without extension (``train``, ``devel``, ``test``, or
        ``train_synthetic``).

    Example
    -------
    >>> prepare_slurp("/data/slurp", "/tmp/out", splits=[])
    Traceback (most recent call last):
    ...
    ValueError: prepare_slurp: no split given
    """
    opts = PrepOptions.from_kwargs("prepare_slurp", options)
    if opts.skip_prep:
        return {}
    splits = split_list(splits, "prepare_slurp")
    require_folder(data_folder, "SLURP data_folder", _LAYOUT)
    root = os.path.abspath(data_folder)
    text_folder = os.path.join(root, "dataset", "slurp")
    require_folder(text_folder, "SLURP text folder", _LAYOUT)
    for split in splits:
        require_file(
            os.path.join(text_folder, f"{split}.jsonl"), "SLURP split file", _LAYOUT
        )
        audio = "slurp_synth" if split == "train_synthetic" else "slurp_real"
        require_folder(os.path.join(root, audio), "SLURP audio folder", _LAYOUT)
    recorded = opts.record(source=root, splits=splits)
    if kept := opts.finished(save_folder, splits, recorded, "SLURP manifests", logger):
        return kept

    prepared = Prepared()

    def read_split(split):
        audio = "slurp_synth" if split == "train_synthetic" else "slurp_real"
        path = os.path.join(text_folder, f"{split}.jsonl")
        return _read_jsonl(path, os.path.join(root, audio), prepared)

    add_splits(prepared, splits, read_split, opts, "slurp")
    return _OUTPUTS.write(save_folder, prepared, recorded, f"SLURP from {root}")
