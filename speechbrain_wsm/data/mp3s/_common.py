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
import shutil
import unicodedata

# The bookkeeping lived here; these names stay importable from this module.
from .._prep import Prepared, is_finished, write_outputs, write_report
from .._probe import probe_files

__all__ = [
    "Prepared",
    "hash_fraction",
    "is_finished",
    "normalize_words",
    "prepare_tokenizer",
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


def prepare_tokenizer(
    train_csv: str,
    tokenizer_file: str,
    unit: str = "char",
    vocab_size: int = 100,
    max_units: int | None = None,
):
    """Train the CTC units on ``train_csv`` once; save them at ``tokenizer_file``.

    The units live at a fixed path (the recipe's ``tokenizer_file``) so that
    evaluation rebuilds exactly what training used; a later call loads them.

    Arguments
    ---------
    train_csv : str
        Training manifest (``wrd`` column).
    tokenizer_file : str
        ``.txt`` (characters) or ``.model`` (sentencepiece) destination.
    unit : str
        ``"char"`` or ``"bpe"``.
    vocab_size : int
        BPE vocabulary size (blank included).
    max_units : int, optional
        The size of the model's output layer: more units is an error.

    Returns
    -------
    CharTokenizer or SentencePieceTokenizer
    """
    from speechbrain_wsm.data._io import read_manifest
    from speechbrain_wsm.data.tokenizers import (
        CharTokenizer,
        load_tokenizer,
        train_bpe_tokenizer,
    )

    if unit not in ("char", "bpe"):
        raise ValueError(f"unit must be 'char' or 'bpe', got {unit!r}")
    if not os.path.isfile(tokenizer_file):
        folder = os.path.dirname(os.path.abspath(tokenizer_file))
        os.makedirs(folder, exist_ok=True)
        if unit == "char":
            if not os.path.isfile(train_csv):
                raise FileNotFoundError(f"training manifest '{train_csv}' not found")
            texts = [r["wrd"] for r in read_manifest(train_csv) if r["wrd"].strip()]
            CharTokenizer.from_texts(texts).save(tokenizer_file)
        else:
            tok = train_bpe_tokenizer(
                train_csv, vocab_size=vocab_size, save_folder=folder, redo=True
            )
            if os.path.abspath(tok.model_path) != os.path.abspath(tokenizer_file):
                shutil.copyfile(tok.model_path, tokenizer_file)
    tok = load_tokenizer(tokenizer_file)
    if max_units is not None and len(tok) > max_units:
        raise ValueError(
            f"{tokenizer_file} has {len(tok)} units but the model outputs "
            f"{max_units}: raise output_neurons to at least {len(tok)}"
        )
    return tok
