"""Manifests: durable writes, reading, writing and merging SpeechBrain CSV manifests."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from speechbrain_wsm.errors import UserFileNotFoundError, UserValueError

logger = logging.getLogger(__name__)

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


def check_manifest(path: str) -> int:
    """Refuse a manifest that cannot be loaded, naming the file and the row.

    Checks what would otherwise end in a traceback deep in SpeechBrain: a
    missing file, a byte that is not UTF-8 (the line and the byte), a header
    without rows, a row with an empty ``ID``, and an ``ID`` given twice (both
    lines).

    Returns
    -------
    int
        The number of rows.

    Raises
    ------
    UserFileNotFoundError, UserValueError
        One line naming the file, the row and the fix.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> _ = open(p, "w").write("ID,duration,wav\\na,1.0,a.wav\\na,2.0,b.wav\\n")
    >>> check_manifest(p)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: manifest ...x.csv: ID 'a' is on lines 2 and 3: IDs must be unique (remove or rename one)
    """
    if not os.path.isfile(path):
        raise UserFileNotFoundError(
            f"manifest {path} not found (run the data preparation, or pass the "
            "path of an existing manifest)"
        )
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserValueError(
            f"manifest {path}, line {line}: byte {data[e.start : e.start + 1]!r} "
            "is not UTF-8: save the manifest as UTF-8 (e.g. iconv -t UTF-8)"
        ) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise UserValueError(f"manifest {path} is empty: no header, no row")
    header = [cell.strip() for cell in rows[0]]
    body = [
        (n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)
    ]
    if not body:
        raise UserValueError(
            f"manifest {path} has a header ({','.join(header)}) but no rows"
        )
    if "ID" not in header:
        raise UserValueError(f"manifest {path} has no ID column (header: {header})")
    col = header.index("ID")
    seen: dict[str, int] = {}
    for n, row in body:
        uid = row[col].strip() if col < len(row) else ""
        if not uid:
            raise UserValueError(f"manifest {path}, line {n}: the ID is empty")
        if uid in seen:
            raise UserValueError(
                f"manifest {path}: ID '{uid}' is on lines {seen[uid]} and {n}: "
                "IDs must be unique (remove or rename one)"
            )
        seen[uid] = n
    return len(body)


def merge_manifests(paths: Sequence[str], out_path: str) -> str:
    """Concatenate manifests with the same columns into ``out_path``.

    An utterance ID already in an earlier manifest (the same recording in two
    training splits) is left out, with a warning that counts and names them,
    instead of ending the run in SpeechBrain's "Duplicate id".

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
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for path in paths:
        if not os.path.isfile(path):
            raise UserFileNotFoundError(f"manifest to merge '{path}' not found")
        part = read_manifest(path)
        with open(path, encoding="utf-8") as f:
            header = f.readline().strip().split(",")
        if fields is None:
            fields = header
        elif header != fields:
            raise UserValueError(f"'{path}' has columns {header}, expected {fields}")
        for row in part:
            uid = row.get("ID")
            if uid in seen:
                duplicates.append(f"{uid} ({seen[uid]} and {path})")
                continue
            seen[uid] = path
            rows.append(row)
    if duplicates:
        logger.warning(
            "%s: %d utterance ID(s) in more than one manifest kept once: %s%s",
            out_path,
            len(duplicates),
            ", ".join(duplicates[:10]),
            " ..." if len(duplicates) > 10 else "",
        )
    write_manifest(out_path, rows, fields or MANIFEST_FIELDS)
    return out_path
