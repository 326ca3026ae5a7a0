"""Text sources of the synthetic corpus, and their split by chapter."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import numpy as np

from .._system import require_executable
from ..text import normalize_text

__all__ = ["Sentence", "read_bible_verses", "read_text_file", "split_sentences"]

_BIBLE_RANGE = "Genesis 1:1-Revelation 22:21"


@dataclass(frozen=True)
class Sentence:
    """A line of source text: its chapter (for splitting) and its words."""

    chapter: int
    text: str
    words: str


def _tts_text(text: str) -> str:
    """Text for a synthesiser: upper case words (LORD) would be spelled out."""
    return re.sub(r"\b[A-Z]{2,}\b", lambda m: m.group(0).capitalize(), text)


def read_bible_verses(
    min_words: int = 5, max_words: int = 45, passage: str = _BIBLE_RANGE
) -> list[Sentence]:
    """King James Bible verses from Debian's ``bible-kjv``.

    Arguments
    ---------
    min_words, max_words : int
        Keep verses with this many words (about 2 to 16 s of speech).
    passage : str
        A ``bible -f`` reference range.

    Returns
    -------
    list of Sentence
        One per verse; ``chapter`` numbers chapters across the whole Bible.

    Example
    -------
    >>> import shutil
    >>> if shutil.which("bible"):
    ...     print(read_bible_verses(passage="Genesis 1:3-1:3")[0].words)
    ... else:
    ...     print("AND GOD SAID LET THERE BE LIGHT AND THERE WAS LIGHT")
    AND GOD SAID LET THERE BE LIGHT AND THERE WAS LIGHT
    """
    bible = require_executable("bible", "bible-kjv")
    proc = subprocess.run(
        [bible, "-f", passage], check=True, capture_output=True, text=True
    )
    sentences, chapters = [], {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^(\S+?)(\d+):(\d+)\s+(.*)$", line.strip())
        if not match:
            continue
        book, chap, _, text = match.groups()
        key = (book, chap)
        chapters.setdefault(key, len(chapters) + 1)
        words = normalize_text(text)
        if min_words <= len(words.split()) <= max_words:
            sentences.append(Sentence(chapters[key], _tts_text(text), words))
    return sentences


def read_text_file(
    path: str, min_words: int = 5, max_words: int = 45, lines_per_chapter: int = 50
) -> list[Sentence]:
    """Sentences from a text file, one per line.

    Arguments
    ---------
    path : str
        UTF-8 text, one sentence per line.
    min_words, max_words : int
        Keep lines with this many words.
    lines_per_chapter : int
        Consecutive lines grouped into one chapter (the unit of the split).

    Returns
    -------
    list of Sentence
        The usable lines.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> _ = open(p, "w").write("It is 5 o'clock now, my friend.\\nToo short.\\n")
    >>> [s.words for s in read_text_file(p)]
    ["IT IS FIVE O'CLOCK NOW MY FRIEND"]
    """
    sentences = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            words = normalize_text(line)
            if min_words <= len(words.split()) <= max_words:
                text = line.strip() if not re.search(r"\d", line) else words.lower()
                sentences.append(
                    Sentence(i // lines_per_chapter + 1, _tts_text(text), words)
                )
    return sentences


def split_sentences(sentences: list[Sentence], seed: int) -> dict[str, list[Sentence]]:
    """Assign whole chapters to dev (5 %), test (5 %) and train (the rest)."""
    chapters = sorted({s.chapter for s in sentences})
    if len(chapters) < 3:
        raise ValueError(
            f"the text source is too small: {len(chapters)} chapter(s), need at "
            "least three (train, dev and test take whole chapters)"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(chapters))
    n_eval = max(1, round(0.05 * len(chapters)))
    where = {}
    for rank, i in enumerate(order):
        split = "dev" if rank < n_eval else "test" if rank < 2 * n_eval else "train"
        where[chapters[i]] = split
    pools: dict[str, list[Sentence]] = {"train": [], "dev": [], "test": []}
    for s in sentences:
        pools[where[s.chapter]].append(s)
    return pools
