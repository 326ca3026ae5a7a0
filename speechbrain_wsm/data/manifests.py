"""Manifests: durable writes, reading, writing and merging SpeechBrain CSV manifests."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

#: Columns every manifest written by this package starts with.
MANIFEST_FIELDS = ("ID", "duration", "wav", "spk_id", "wrd")

_UMASK = os.umask(0)
os.umask(_UMASK)


def _publish(tmp: str, path: str) -> None:
    """Give a temporary file ordinary permissions and rename it into place."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


@contextmanager
def _atomic_open(path: str, suffix: str) -> Iterator[TextIO]:
    """A temporary text file beside ``path``, renamed to it if the block succeeds.

    On any exception (``KeyboardInterrupt`` included) the temporary file is
    removed and ``path`` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A reader (or a later run after a crash) sees either the old file or the
    complete new one, never a half-written file.

    Arguments
    ---------
    path : str
        Destination file; its folder must exist.
    text : str
        The full content.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.mkdtemp()
    >>> atomic_write_text(os.path.join(tmp, "a.txt"), "hello")
    >>> open(os.path.join(tmp, "a.txt")).read()
    'hello'
    """
    with _atomic_open(path, ".part") as f:
        f.write(text)


def write_manifest(
    path: str, rows: Iterable[dict], fields: Sequence[str] = MANIFEST_FIELDS
) -> int:
    """Write a SpeechBrain CSV manifest atomically.

    Arguments
    ---------
    path : str
        Destination ``.csv`` file.
    rows : iterable of dict
        One dict per utterance with at least the keys in ``fields``.
    fields : sequence of str
        Column names, ``ID`` first.

    Returns
    -------
    int
        The number of rows written.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> row = dict(ID="1-2-0003", duration=1.5, wav="/a.flac", spk_id="1", wrd="HI")
    >>> write_manifest(p, [row])
    1
    >>> open(p).read().splitlines()[0]
    'ID,duration,wav,spk_id,wrd'
    """
    count = 0
    with _atomic_open(path, ".csv.part") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def read_manifest(path: str) -> list[dict]:
    """Read a CSV manifest into a list of dicts (all values as strings).

    Arguments
    ---------
    path : str
        A ``.csv`` manifest.

    Returns
    -------
    list of dict
        One dict per row, keyed by column name.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> row = dict(ID="1-2-0003", duration=1.5, wav="/a.flac", spk_id="1", wrd="HI")
    >>> _ = write_manifest(p, [row])
    >>> read_manifest(p)[0]["wrd"]
    'HI'
    """
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def merge_manifests(paths: Sequence[str], out_path: str) -> str:
    """Concatenate manifests with the same columns into ``out_path``.

    Arguments
    ---------
    paths : sequence of str
        Input ``.csv`` manifests.
    out_path : str
        The merged manifest (written atomically).

    Returns
    -------
    str
        ``out_path``.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> row = dict(ID="1-2-0003", duration=1.5, wav="/a.flac", spk_id="1", wrd="HI")
    >>> _ = write_manifest(os.path.join(d, "a.csv"), [row])
    >>> _ = write_manifest(os.path.join(d, "b.csv"), [dict(row, ID="1-2-0004")])
    >>> p = merge_manifests([os.path.join(d, "a.csv"), os.path.join(d, "b.csv")],
    ...                     os.path.join(d, "ab.csv"))
    >>> len(read_manifest(p))
    2
    """
    rows = []
    fields = None
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"manifest to merge '{path}' not found")
        part = read_manifest(path)
        with open(path, encoding="utf-8") as f:
            header = f.readline().strip().split(",")
        if fields is None:
            fields = header
        elif header != fields:
            raise ValueError(f"'{path}' has columns {header}, expected {fields}")
        rows.extend(part)
    write_manifest(out_path, rows, fields or MANIFEST_FIELDS)
    return out_path
