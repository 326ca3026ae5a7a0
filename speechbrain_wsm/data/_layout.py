"""Writing corpora in the LibriSpeech layout (used by the corpus builders)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable

from ._io import atomic_write_text


def utterance_path(split_dir: str, uid: str, ext: str = ".flac") -> str:
    """``<split_dir>/<speaker>/<chapter>/<uid><ext>`` for ``uid = spk-chap-utt``.

    Arguments
    ---------
    split_dir : str
        The split folder (``.../LibriSpeech/test-real``).
    uid : str
        Utterance ID ``<speaker>-<chapter>-<utt>``.
    ext : str
        Audio extension.

    Returns
    -------
    str
        The audio path.

    Example
    -------
    >>> utterance_path("/c/test", "12-3-0004")
    '/c/test/12/3/12-3-0004.flac'
    """
    spk, chap, _ = uid.split("-")
    return os.path.join(split_dir, spk, chap, uid + ext)


def write_transcripts(split_dir: str, items: Iterable[tuple[str, str]]) -> int:
    """Write ``<spk>-<chap>.trans.txt`` files for ``(uid, words)`` pairs.

    Arguments
    ---------
    split_dir : str
        The split folder; chapter folders are created when needed.
    items : iterable of (str, str)
        Utterance IDs and their normalised transcripts.

    Returns
    -------
    int
        Number of transcript files written.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> write_transcripts(d, [("7-1-0001", "HELLO"), ("7-1-0000", "HI")])
    1
    >>> open(os.path.join(d, "7", "1", "7-1.trans.txt")).read()
    '7-1-0000 HI\\n7-1-0001 HELLO\\n'
    """
    chapters: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for uid, words in items:
        spk, chap, _ = uid.split("-")
        chapters[(spk, chap)].append((uid, words))
    for (spk, chap), lines in chapters.items():
        folder = os.path.join(split_dir, spk, chap)
        os.makedirs(folder, exist_ok=True)
        text = "".join(f"{uid} {words}\n" for uid, words in sorted(lines))
        atomic_write_text(os.path.join(folder, f"{spk}-{chap}.trans.txt"), text)
    return len(chapters)


def write_speakers(path: str, rows: Iterable[tuple[str, str, str, float, str]]) -> None:
    """Write a LibriSpeech-style ``SPEAKERS.TXT``.

    Arguments
    ---------
    path : str
        Destination file.
    rows : iterable of tuple
        ``(speaker_id, sex, subset, minutes, name)`` per speaker.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "SPEAKERS.TXT")
    >>> write_speakers(p, [("10", "F", "test-real", 1.5, "someone")])
    >>> open(p).read().splitlines()[-1]
    '10    | F | test-real        |  1.50 | someone'
    """
    lines = ["; ID    |SEX| SUBSET           |MINUTES| NAME"]
    for spk, sex, subset, minutes, name in rows:
        lines.append(f"{spk:<6}| {sex} | {subset:<16} | {minutes:5.2f} | {name}")
    atomic_write_text(path, "\n".join(lines) + "\n")
