"""What the MP3S preparations share beyond the bookkeeping: folders, text, units.

Every preparation follows the rules of :mod:`speechbrain_wsm.data._prep`,
as LibriSpeech's does: bad input (unreadable or missing audio, empty
transcripts, malformed lines, duplicate IDs ...) is skipped, counted by kind,
listed in a report file beside the manifests and summarised in one log line;
a finished manifest is kept on later calls unless its options changed or
``redo=True``.  Here: a missing folder is an error naming the path and the
expected layout, transcripts are normalised in any script, and split choices
are stable hashes.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata

# The bookkeeping lived here; these names stay importable from this module.
from .._prep import Prepared, is_finished, write_outputs, write_report
from .._probe import probe_files

__all__ = [
    "Prepared",
    "hash_fraction",
    "is_finished",
    "normalize_words",
    "probe_files",
    "require_file",
    "require_folder",
    "write_outputs",
    "write_report",
]


def require_folder(path: str, what: str, expected: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` and the expected layout."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} '{path}' not found: expected {expected}")


def require_file(path: str, what: str, expected: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` and what it should be."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} '{path}' not found: expected {expected}")


_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})


def normalize_words(text: str) -> str:
    """Upper-case words of letters, digits and inner apostrophes (any script).

    Unicode is NFKC-normalised; every other character (punctuation, symbols)
    becomes a word boundary.

    Example
    -------
    >>> normalize_words("Mae'n  braf, heddiw! — ‘Ydy’?")
    "MAE'N BRAF HEDDIW YDY"
    >>> normalize_words("Kaixo, zer moduz?")
    'KAIXO ZER MODUZ'
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    chars = []
    for c in text:
        cat = unicodedata.category(c)
        if cat[0] in "LN" or c == "'" or cat == "Mn":
            chars.append(c)
        else:
            chars.append(" ")
    words = []
    for word in "".join(chars).upper().split():
        word = word.strip("'")
        if word:
            words.append(word)
    return " ".join(words)


def hash_fraction(key: str, seed: int = 0) -> float:
    """A stable pseudo-random number in ``[0, 1)`` for ``key`` (split choices).

    Example
    -------
    >>> hash_fraction("a") == hash_fraction("a"), 0 <= hash_fraction("b") < 1
    (True, True)
    """
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
