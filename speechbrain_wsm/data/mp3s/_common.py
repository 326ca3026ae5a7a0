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
from collections.abc import Callable, Iterable, Sequence

from speechbrain_wsm.errors import UserFileNotFoundError

from .._prep import Prepared, PrepOptions

__all__ = [
    "add_splits",
    "hash_fraction",
    "normalize_words",
    "require_file",
    "require_folder",
]


def require_folder(path: str, what: str, expected: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` and the expected layout."""
    if not os.path.isdir(path):
        raise UserFileNotFoundError(f"{what} '{path}' not found: expected {expected}")


def require_file(path: str, what: str, expected: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` and what it should be."""
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"{what} '{path}' not found: expected {expected}")


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


def add_splits(
    prepared: Prepared,
    splits: Sequence[str],
    read_split: Callable[[str], Iterable[dict]],
    opts: PrepOptions,
    desc: str,
) -> None:
    """Add one manifest per split, for corpora that list each split in a file.

    ``read_split(split)`` gives the split's rows without their duration
    (``ID`` and ``wav`` at least).  A row whose ``ID`` an earlier split
    listed is skipped (``duplicate_id``); the audio is probed with ``opts``
    and unusable files are skipped; the other rows get their ``duration``
    and go to ``prepared``'s manifest ``split``.

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> wav = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(wav, np.zeros(8000, dtype="float32"), 16000)
    >>> listed = {"train": [{"ID": "a", "wav": wav}], "dev": [{"ID": "a", "wav": wav}]}
    >>> p = Prepared()
    >>> add_splits(p, ["train", "dev"], listed.get, PrepOptions(progress=False), "x")
    >>> [(s, [r["duration"] for r in rows]) for s, rows in p.manifests.items()]
    [('train', ['0.5000']), ('dev', [])]
    >>> p.skipped[0][3]
    "already in split 'train'"
    """
    seen: dict[str, str] = {}
    for split in splits:
        prepared.manifests[split] = []
        candidates = []
        for row in read_split(split):
            if row["ID"] in seen:
                detail = f"already in split {seen[row['ID']]!r}"
                prepared.skip("duplicate_id", row["ID"], row["wav"], detail)
                continue
            seen[row["ID"]] = split
            candidates.append(row)
        for row, seconds in opts.probe(
            candidates,
            lambda r: r["wav"],
            lambda r: r["ID"],
            prepared,
            f"{desc} {split}",
        ):
            prepared.add(split, dict(row, duration=f"{seconds:.4f}"))
