"""Common Voice preparation (MP3S low-resource ASR: Welsh ``cy``, Basque ``eu``).

Reads one language folder of a Common Voice release as distributed::

    cv-corpus-11.0-2022-09-21/<lang>/train.tsv, dev.tsv, test.tsv, ...
    cv-corpus-11.0-2022-09-21/<lang>/clips/common_voice_<lang>_<n>.mp3

Each ``<split>.tsv`` (tab-separated, with a header naming at least ``path``
and ``sentence``; ``client_id`` is the speaker) becomes ``<split>.csv`` with
the columns ``ID, duration, wav, spk_id, wrd``: ``ID`` is the clip's file
stem, ``wav`` the absolute ``.mp3`` path (48 kHz MP3: the recipes' audio
pipeline decodes and resamples it to 16 kHz), ``wrd`` the sentence with
punctuation removed, upper-cased (:func:`~._common.normalize_words`).
Durations come from the MP3 headers.

Bad input (a row with too few fields, a missing or unreadable clip, an empty
sentence after normalisation, a repeated clip) is skipped, counted, listed in
``commonvoice_skipped.txt`` and summarised in one log line.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence

from speechbrain_wsm.errors import UserFileNotFoundError, UserValueError

from .._prep import Outputs, Prepared, PrepOptions, split_list
from ._common import add_splits, normalize_words, require_folder

__all__ = ["SKIP_KINDS", "prepare_commonvoice"]

logger = logging.getLogger(__name__)

SKIP_KINDS = (
    "malformed_row",
    "missing_audio",
    "unreadable_audio",
    "truncated_audio",
    "empty_transcript",
    "duplicate_id",
)

FIELDS = ("ID", "duration", "wav", "spk_id", "wrd")

_OUTPUTS = Outputs(FIELDS, SKIP_KINDS, "commonvoice_skipped.txt", logger)

_LAYOUT = (
    "a Common Voice language folder (cv-corpus-*/<lang>) holding <split>.tsv "
    "files and clips/*.mp3"
)


def _read_tsv(path: str, clips: str, prepared: Prepared) -> Iterator[dict]:
    """Rows of one split: ``ID``, ``wav`` (the mp3), ``spk_id``, ``wrd``."""
    # Sentences hold quotes: no quoting; rows are split on tabs only.
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or "path" not in header or "sentence" not in header:
            raise UserValueError(
                f"'{path}' has no header with 'path' and 'sentence' columns "
                f"(header: {header})"
            )
        col = {name: i for i, name in enumerate(header)}
        for lineno, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(col["path"], col["sentence"]):
                prepared.skip(
                    "malformed_row",
                    f"{os.path.basename(path)}:{lineno}",
                    path,
                    f"{len(row)} fields, header has {len(header)}",
                )
                continue
            clip = row[col["path"]].strip()
            if not clip.endswith(".mp3"):
                clip += ".mp3"  # early releases list the stem only
            uid = os.path.splitext(os.path.basename(clip))[0]
            speaker = row[col["client_id"]] if "client_id" in col else ""
            words = normalize_words(row[col["sentence"]])
            if not words:
                prepared.skip(
                    "empty_transcript",
                    uid,
                    path,
                    f"line {lineno}: {row[col['sentence']]!r}",
                )
                continue
            yield {
                "ID": uid,
                "wav": os.path.join(clips, clip),
                "spk_id": speaker,
                "wrd": words,
            }


def prepare_commonvoice(
    data_folder: str,
    save_folder: str,
    splits: Sequence[str] = ("train", "dev", "test"),
    **options,
) -> dict[str, str]:
    """Write one manifest per Common Voice split of one language.

    ``data_folder`` is the language folder, e.g.
    ``.../cv-corpus-11.0-2022-09-21/cy``, holding ``clips/`` and the split
    TSVs; ``save_folder`` gets one ``<split>.csv`` per split and
    ``commonvoice_skipped.txt``.
    What every preparation shares (the folders, ``**options``, the result):
    :class:`~speechbrain_wsm.data._prep.PrepOptions`.
    ``sample_rate`` is not an option here: clips at any rate are kept (the
    audio pipeline resamples them).

    Arguments
    ---------
    splits : sequence of str
        TSV names without ``.tsv`` (``train``, ``dev``, ``test``,
        ``validated`` ...).

    Example
    -------
    >>> prepare_commonvoice("/data/cv-corpus-11.0-2022-09-21/cy", "/tmp/out",
    ...                     sample_rate=16000)
    Traceback (most recent call last):
    ...
    TypeError: prepare_commonvoice() got an unexpected keyword argument 'sample_rate' ...
    """
    opts = PrepOptions.from_kwargs(
        "prepare_commonvoice", options, fixed={"sample_rate": None}
    )
    if opts.skip_prep:
        return {}
    splits = split_list(splits, "prepare_commonvoice")
    require_folder(data_folder, "Common Voice data_folder", _LAYOUT)
    clips = os.path.join(data_folder, "clips")
    if not os.path.isdir(clips):
        languages = sorted(
            d
            for d in os.listdir(data_folder)
            if os.path.isdir(os.path.join(data_folder, d, "clips"))
        )
        hint = f" (language folders found: {languages})" if languages else ""
        raise UserFileNotFoundError(
            f"Common Voice clips folder '{clips}' not found: data_folder must be "
            f"{_LAYOUT}{hint}"
        )
    for split in splits:
        tsv = os.path.join(data_folder, f"{split}.tsv")
        if not os.path.isfile(tsv):
            found = sorted(f for f in os.listdir(data_folder) if f.endswith(".tsv"))
            raise UserFileNotFoundError(
                f"Common Voice split file '{tsv}' not found; TSV files in "
                f"'{data_folder}': {found}"
            )
    root = os.path.abspath(data_folder)
    recorded = {"source": root, "splits": splits, "audio_check": opts.audio_check}
    if kept := opts.finished(
        save_folder, splits, recorded, "Common Voice manifests", logger
    ):
        return kept

    prepared = Prepared()

    def read_split(split):
        tsv = os.path.join(root, f"{split}.tsv")
        return _read_tsv(tsv, os.path.join(root, "clips"), prepared)

    add_splits(prepared, splits, read_split, opts, "commonvoice")
    return _OUTPUTS.write(save_folder, prepared, recorded, f"Common Voice from {root}")
