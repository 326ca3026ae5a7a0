"""Writing corpora in the LibriSpeech layout (used by the corpus builders)."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import soundfile as sf

from .manifests import atomic_write_text

__all__ = [
    "link_audio",
    "utterance_path",
    "write_flac",
    "write_speakers",
    "write_transcripts",
]


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


def write_flac(path: str, audio: np.ndarray, rate: int) -> None:
    """Write 16-bit FLAC through ``<path>.part`` and a rename.

    An interrupted build leaves a ``.part`` file, never a truncated ``.flac``.

    Arguments
    ---------
    path : str
        Destination ``.flac``; its folder is created if needed.
    audio : numpy.ndarray
        ``[sample]`` mono audio, float in [-1, 1] or int16.
    rate : int
        Sample rate in Hz.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "1", "2", "1-2-0000.flac")
    >>> write_flac(p, np.zeros(160, dtype="float32"), 16000)
    >>> sf.info(p).frames, os.listdir(os.path.dirname(p))
    (160, ['1-2-0000.flac'])
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part"
    sf.write(tmp, audio, rate, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def link_audio(src: str, dst: str) -> None:
    """Hard-link ``src`` at ``dst`` (a copy across file systems), replacing it.

    Arguments
    ---------
    src : str
        An existing file.
    dst : str
        The new path; its folder is created if needed.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "a"), "w").write("x")
    >>> link_audio(os.path.join(d, "a"), os.path.join(d, "sub", "b"))
    >>> open(os.path.join(d, "sub", "b")).read()
    'x'
    """
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
