"""Audio headers: an audio file's length, and whether it is usable.

:func:`probe_audio` reads one file's header (and, by default, decodes its last
0.1 s to catch truncated files); :func:`probe_files` does it for many files
with a pool of threads behind a progress bar.  Both report an unusable file as
an :class:`AudioError` whose ``kind`` names a kind of skipped input.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf
from tqdm import tqdm

__all__ = ["AUDIO_KINDS", "AudioError", "default_workers", "probe_audio", "probe_files"]

#: The kinds of :class:`AudioError`, in the order the preparations report them.
AUDIO_KINDS = (
    "missing_audio",
    "unreadable_audio",
    "truncated_audio",
    "wrong_sample_rate",
)

_TAIL_FRAMES = 1600
# Futures submitted at once: 281k pending ones would cost memory for nothing.
_BATCH = 4096


class AudioError(Exception):
    """An audio file that cannot be used; ``kind`` is one of the kinds of skipped input.

    Arguments
    ---------
    kind : str
        One of :data:`AUDIO_KINDS`.
    detail : str
        What was wrong, for the report.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _wav_is_short(path: str) -> str | None:
    """For RIFF/WAVE files: a message if the data chunk ends past end of file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                available = size - f.tell()
                if csize != 0xFFFFFFFF and csize > available:
                    return f"header declares {csize} data bytes, file holds {available}"
                return None
            f.seek(csize + (csize & 1), os.SEEK_CUR)


def probe_audio(
    path: str, check: str = "tail", sample_rate: int | None = None
) -> tuple[int, int]:
    """Read an audio file's length from its header and check it is usable.

    Arguments
    ---------
    path : str
        An audio file soundfile can open (FLAC, WAV, ...).
    check : str
        ``"header"``: the header only; ``"tail"`` (default): also decode the
        last 0.1 s, which catches truncated FLAC files at little cost;
        ``"full"``: decode everything.
    sample_rate : int, optional
        Expected sample rate; another rate raises ``wrong_sample_rate``.

    Returns
    -------
    frames : int
        Number of samples per channel.
    samplerate : int
        Sample rate in Hz.

    Raises
    ------
    AudioError
        With ``kind`` ``unreadable_audio``, ``truncated_audio`` or
        ``wrong_sample_rate``.

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> sf.write(p, np.zeros(8000, dtype="float32"), 16000)
    >>> probe_audio(p)
    (8000, 16000)
    """
    if check not in ("header", "tail", "full"):
        raise ValueError(f"check must be 'header', 'tail' or 'full', got {check!r}")
    try:
        with sf.SoundFile(path) as snd:
            frames, rate = snd.frames, snd.samplerate
            if frames <= 0:
                raise AudioError("unreadable_audio", "no audio frames in header")
            if sample_rate is not None and rate != sample_rate:
                raise AudioError(
                    "wrong_sample_rate", f"{rate} Hz, expected {sample_rate} Hz"
                )
            if check in ("tail", "full"):
                start = 0 if check == "full" else max(0, frames - _TAIL_FRAMES)
                try:
                    if start:
                        snd.seek(start)
                    got = 0
                    for block in snd.blocks(blocksize=1 << 16):
                        got += len(block)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(
                        "truncated_audio", f"cannot decode up to the end ({exc})"
                    ) from None
                if start + got < frames:
                    raise AudioError(
                        "truncated_audio",
                        f"decoded {start + got} of {frames} frames",
                    )
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError("unreadable_audio", str(exc).strip()) from None
    short = _wav_is_short(path)
    if short:
        raise AudioError("truncated_audio", short)
    return frames, rate


def default_workers() -> int:
    """Threads reading audio headers by default: ``min(16, 2 * cpu_count)``."""
    return min(16, 2 * (os.cpu_count() or 1))


def probe_files(
    items: Sequence,
    path_of: Callable[[object], str],
    audio_check: str = "tail",
    sample_rate: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    desc: str = "audio",
) -> Iterator[tuple[object, tuple[int, int] | None, AudioError | None]]:
    """Probe the audio of many items with a pool of threads, in order.

    Arguments
    ---------
    items : sequence
        Anything; ``path_of(item)`` is its audio file.
    path_of : callable
        Item to audio path.
    audio_check : str
        See :func:`probe_audio`.
    sample_rate : int, optional
        Expected sample rate; ``None`` accepts any.
    num_workers : int, optional
        Threads (default :func:`default_workers`).
    progress : bool
        Show a tqdm progress bar.
    desc : str
        Progress bar label.

    Yields
    ------
    tuple
        ``(item, (frames, rate), None)`` for a usable file, ``(item, None,
        AudioError)`` otherwise (a missing file is ``missing_audio``).

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> sf.write(p, np.zeros(1600, dtype="float32"), 16000)
    >>> [(info, err.kind if err else None) for _, info, err in
    ...  probe_files([p, p + "x"], str, progress=False)]
    [((1600, 16000), None), (None, 'missing_audio')]
    """

    def probe(item):
        path = path_of(item)
        if not os.path.isfile(path):
            return item, None, AudioError("missing_audio", "no such file")
        try:
            return item, probe_audio(path, audio_check, sample_rate), None
        except AudioError as exc:
            return item, None, exc

    def probe_all(pool):
        for start in range(0, len(items), _BATCH):
            yield from pool.map(probe, items[start : start + _BATCH])

    workers = num_workers or default_workers()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from tqdm(
            probe_all(pool),
            total=len(items),
            desc=desc,
            unit="file",
            disable=not progress,
            mininterval=0.5,
        )
