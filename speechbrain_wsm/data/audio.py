"""The one audio pipeline: training, validation, evaluation and transcription.

Every recipe, :mod:`speechbrain_wsm.evaluate` and
:mod:`speechbrain_wsm.transcribe` read audio with :func:`load_audio` (any
format soundfile reads, channels averaged to mono, resampled to the model's
rate, optionally a segment), and manifests get their ``sig`` through
:func:`add_audio_pipeline`. A file at 22.05 kHz or in stereo is therefore the
same model input in training and in scoring.

:func:`drop_unreadable` checks, before any training or scoring, that every
row of a dataset can be read (the file exists, its header decodes, it holds
samples, its manifest duration is positive) and skips the rows that cannot,
with a count and the list of them in the log, or stops at once with that list.
One missing or zero-byte file then no longer kills a run mid-epoch (and again
after every resume).

``speechbrain_wsm.recipe`` and ``speechbrain_wsm.data.mp3s`` re-export both
functions; they live here, in ``data/``, because ``recipe/`` imports ``data/``
(and not the other way round).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence

import soundfile as sf
import torch
from speechbrain.dataio.dataset import (
    DynamicItemDataset,
    FilteredSortedDynamicItemDataset,
)
from speechbrain.utils.data_pipeline import provides, takes

__all__ = [
    "AudioDecodeError",
    "add_audio_pipeline",
    "audio_problem",
    "drop_unreadable",
    "load_audio",
    "skip_undecodable",
]

logger = logging.getLogger(__name__)

#: Bad rows named in a log line or an error message (the rest are counted).
MAX_LISTED = 20


class AudioDecodeError(ValueError):
    """An audio file that cannot be decoded, or holds no sample (names the file).

    :func:`load_audio` raises it for a damaged file (a FLAC whose header reads
    but whose body is cut short: "flac decoder lost sync"); a dataset given to
    :func:`skip_undecodable` skips the row and counts it instead.
    """


def load_audio(
    path: str | os.PathLike,
    start: float | None = None,
    stop: float | None = None,
    sample_rate: int = 16000,
) -> torch.Tensor:
    """Read (a segment of) an audio file as a mono float tensor at ``sample_rate``.

    The file is read with soundfile (WAV, FLAC, OGG, MP3 ... at any rate),
    its channels are averaged, and it is resampled to ``sample_rate`` with
    :func:`torchaudio.functional.resample` when its rate differs. Pass
    ``start``/``stop``/``sample_rate`` by keyword: positionally they come in
    the order of the MP3S recipes' calls (``path, start, stop, sample_rate``).

    Arguments
    ---------
    path : str or PathLike
        The audio file.
    start, stop : float, optional
        Segment bounds in seconds, in the file's time (None: from the start /
        to the end). A ``stop`` past the end of the file stops at the end.
    sample_rate : int
        Rate of the returned waveform (Hz).

    Returns
    -------
    torch.Tensor
        ``[sample]`` float32.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file cannot be decoded, holds no sample (or none in the segment),
        or the options are invalid; the message names the file.

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(p, np.ones((22050, 2), dtype="float32"), 22050)  # 1 s, stereo
    >>> load_audio(p).shape
    torch.Size([16000])
    >>> load_audio(p, start=0.25, stop=0.75, sample_rate=8000).shape
    torch.Size([4000])
    >>> load_audio(os.path.join(os.path.dirname(p), "b.wav"))
    Traceback (most recent call last):
    ...
    FileNotFoundError: audio file '...b.wav' not found
    """
    path = os.fspath(path)
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate} ({path})")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0 s, got {start} for '{path}'")
    if start is not None and stop is not None and stop <= start:
        raise ValueError(
            f"stop ({stop} s) must be after start ({start} s) for '{path}'"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file '{path}' not found")
    try:
        with sf.SoundFile(path) as snd:
            rate = snd.samplerate
            first = int(round(start * rate)) if start else 0
            # the segment's length from its duration, so that it does not
            # depend on where rounding puts the first sample
            last = (
                snd.frames
                if stop is None
                else first + int(round((stop - (start or 0.0)) * rate))
            )
            last = min(last, snd.frames)
            if first >= last:
                data = None
            else:
                if first:
                    snd.seek(first)
                data = snd.read(last - first, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioDecodeError(f"cannot read audio file '{path}': {exc}") from exc
    if data is None or data.shape[0] == 0:
        where = "" if start is None and stop is None else f" in [{start}, {stop}] s"
        raise AudioDecodeError(f"audio file '{path}' has no sample{where}")
    wav = torch.from_numpy(data).mean(1)
    if rate != sample_rate:
        import torchaudio.functional as AF

        wav = AF.resample(wav, rate, int(sample_rate))
    return wav.contiguous()


def _seconds(value) -> float | None:
    """A manifest's ``start``/``stop`` cell as seconds (empty: None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def add_audio_pipeline(
    datasets: Sequence[DynamicItemDataset],
    output_keys: Sequence[str] = ("id", "sig"),
    sample_rate: int = 16000,
) -> None:
    """Add ``sig`` (mono, ``sample_rate``, via :func:`load_audio`) and set output keys.

    A manifest with ``start`` and ``stop`` columns (seconds; an empty cell is
    the start / end of the file) gives that segment of its ``wav``; otherwise
    the whole file.

    Arguments
    ---------
    datasets : sequence of DynamicItemDataset
        Datasets with a ``wav`` column.
    output_keys : sequence of str
        What each item returns (``id`` and ``sig`` by default; add ``wrd``,
        ``spk_id`` ... as a task needs).
    sample_rate : int
        Rate of ``sig`` (the model's ``sample_rate``).

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> sf.write(p, np.zeros(44100, dtype="float32"), 44100)
    >>> ds = DynamicItemDataset({"a": {"wav": p}, "b": {"wav": p}})
    >>> add_audio_pipeline([ds])
    >>> ds[0]["id"], ds[0]["sig"].shape
    ('a', torch.Size([16000]))
    >>> ds = DynamicItemDataset({"a": {"wav": p, "start": "0.5", "stop": ""}})
    >>> add_audio_pipeline([ds], sample_rate=8000)
    >>> ds[0]["sig"].shape
    torch.Size([4000])
    """

    @takes("wav")
    @provides("sig")
    def whole(wav):
        return load_audio(wav, sample_rate=sample_rate)

    @takes("wav", "start", "stop")
    @provides("sig")
    def segment(wav, start, stop):
        return load_audio(
            wav, start=_seconds(start), stop=_seconds(stop), sample_rate=sample_rate
        )

    for dataset in datasets:
        first = next(iter(dataset.data.values()), {})
        has_segments = "start" in first and "stop" in first
        dataset.add_dynamic_item(segment if has_segments else whole)
        dataset.set_output_keys(list(output_keys))


def audio_problem(path, start=None, stop=None) -> str | None:
    """Why the audio of a manifest row cannot be read, or None if it can.

    Reads the file's header only (fast): catches missing, empty and
    non-audio files (a renamed text file) and files or segments without a
    sample; a file whose body is damaged after a valid header still fails
    later, in :func:`load_audio`.

    Arguments
    ---------
    path : str or PathLike
        The audio file.
    start, stop : float, optional
        Segment bounds (seconds), as in :func:`load_audio`.

    Returns
    -------
    str or None
        A short reason.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "empty.wav")
    >>> _ = open(p, "wb").close()
    >>> audio_problem(p).startswith("not readable as audio")
    True
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return f"file not found: {path}"
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"not readable as audio: {path} ({reason})"
    if info.frames <= 0:
        return f"no sample in {path}"
    if start is not None and start * info.samplerate >= info.frames:
        return f"segment starts at {start} s, after the end of {path}"
    return None


def drop_unreadable(
    dataset: DynamicItemDataset, source: str = "", on_error: str = "skip"
) -> tuple[DynamicItemDataset, list[tuple[str, str]]]:
    """Leave out the rows whose audio cannot be read, or stop naming them.

    Every row's ``wav`` (and ``start``/``stop`` segment when the manifest has
    them) is checked with :func:`audio_problem`, and a ``duration`` column
    must be positive. Datasets without a ``wav`` column are returned as they
    are.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Rows with ``wav`` (``$data_root`` already replaced).
    source : str
        What to call the dataset in messages (its manifest path).
    on_error : str
        ``"skip"``: drop the bad rows, log their number and list (warning);
        ``"stop"``: raise before anything is trained or scored.

    Returns
    -------
    dataset : DynamicItemDataset
        The readable rows, in the same order (``dataset`` itself if all are).
    bad : list of (str, str)
        ``(ID, reason)`` of each row left out.

    Raises
    ------
    ValueError
        With ``on_error="stop"`` when a row cannot be read (listing them), or
        when no row at all can be read.

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> sf.write(os.path.join(d, "a.wav"), np.zeros(800, dtype="float32"), 16000)
    >>> ds = DynamicItemDataset({
    ...     "a": {"wav": os.path.join(d, "a.wav")},
    ...     "b": {"wav": os.path.join(d, "gone.wav")}})
    >>> kept, bad = drop_unreadable(ds)
    >>> kept.data_ids, [i for i, _ in bad]
    (['a'], ['b'])
    """
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    rows = [(uid, dataset.data[uid]) for uid in dataset.data_ids]
    if not rows or "wav" not in rows[0][1]:
        return dataset, []
    bad = []
    for uid, row in rows:
        duration = row.get("duration")
        try:
            if duration is not None and float(duration) <= 0:
                bad.append((uid, f"duration {duration} s in the manifest"))
                continue
            problem = audio_problem(
                row["wav"], _seconds(row.get("start")), _seconds(row.get("stop"))
            )
        except (TypeError, ValueError) as exc:  # a non-numeric cell
            problem = f"bad manifest cell ({exc})"
        if problem is not None:
            bad.append((uid, problem))
    if not bad:
        return dataset, []
    where = f" of {source}" if source else ""
    listed = "\n  ".join(f"{uid}: {why}" for uid, why in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    if on_error == "stop" or len(bad) == len(rows):
        raise ValueError(
            f"{len(bad)} of {len(rows)} rows{where} cannot be read (fix or "
            f"remove them from the manifest, then rerun):\n  {listed}{more}"
        )
    logger.warning(
        "skipping %d of %d rows%s whose audio cannot be read:\n  %s%s",
        len(bad),
        len(rows),
        where,
        listed,
        more,
    )
    dropped = {uid for uid, _ in bad}
    kept = dataset.filtered_sorted(key_test={"id": lambda uid: uid not in dropped})
    return kept, bad


class _SkipUndecodable:
    """What :func:`skip_undecodable` adds to a dataset class (copied into each:
    a mixin base would change the object layout that ``__class__`` assignment
    needs unchanged)."""

    def __getitems__(self, indices):
        items = [item for i in indices if (item := self._read_or_skip(i)) is not None]
        if items:
            return items
        # every item of the batch failed: the next readable item stands in,
        # so that the batch is not empty (a collate function needs one)
        n = len(self)
        for step in range(1, n):
            item = self._read_or_skip((indices[0] + step) % n)
            if item is not None:
                return [item]
        from speechbrain_wsm.errors import UserValueError

        raise UserValueError(
            f"no audio file of the {n} rows of this dataset can be decoded "
            "(see the warnings above)"
        )

    def _read_or_skip(self, index):
        try:
            return self[index]
        except (AudioDecodeError, FileNotFoundError) as exc:
            uid = self.data_ids[index]
            with self.decode_failures.get_lock():
                self.decode_failures.value += 1
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.undecodable.append((uid, reason))  # this process's (no workers)
            logger.warning("skipping utterance %s: %s", uid, reason)
            return None

    @property
    def left_out(self) -> dict:
        counts = dict(self.__dict__.get("_left_out", {}))
        failed = self.decode_failures.value
        if failed:
            counts["undecodable"] = failed
        return counts

    @left_out.setter
    def left_out(self, value: dict) -> None:
        self._left_out = dict(value)


_ADDED = {
    name: _SkipUndecodable.__dict__[name]
    for name in ("__getitems__", "_read_or_skip", "left_out")
}


class _SkippingDynamicItemDataset(DynamicItemDataset):
    locals().update(_ADDED)


class _SkippingFilteredDataset(FilteredSortedDynamicItemDataset):
    locals().update(_ADDED)


_SKIPPING = {
    DynamicItemDataset: _SkippingDynamicItemDataset,
    FilteredSortedDynamicItemDataset: _SkippingFilteredDataset,
}


def skip_undecodable(dataset):
    """Make a dataset's loader skip (and count) items whose audio fails to decode.

    :func:`drop_unreadable` reads headers only: a file whose header reads but
    whose body is damaged (a truncated FLAC) passes it and fails when the
    loader decodes it, mid-epoch. A dataset given here skips such an item
    (logging its ID and the reason; ``(ID, reason)`` in its ``undecodable``
    list when the loader has no workers), counts it in
    ``left_out["undecodable"]`` (which the run summary lists; counted across
    data-loader workers), and the epoch goes on with the rest of the batch; a
    batch left empty gets the next readable item instead. Only
    :class:`AudioDecodeError` and ``FileNotFoundError`` are skipped: any other
    error of the pipeline still stops the run. The recipes' Brains
    (:class:`~speechbrain_wsm.recipe.brain.RobustBrain`) apply it to every
    dataset they load; a dataset of another class is returned unchanged.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Changed in place (its class), and returned.

    Example
    -------
    >>> import tempfile, os, numpy as np, soundfile as sf
    >>> d = tempfile.mkdtemp()
    >>> sf.write(os.path.join(d, "a.flac"), np.zeros(8000, dtype="float32"), 16000)
    >>> data = open(os.path.join(d, "a.flac"), "rb").read()
    >>> _ = open(os.path.join(d, "b.flac"), "wb").write(data[:60])  # cut short
    >>> ds = DynamicItemDataset({u: {"wav": os.path.join(d, f"{u}.flac")} for u in "ab"})
    >>> add_audio_pipeline([ds])
    >>> ds = skip_undecodable(ds)
    >>> [item["id"] for item in ds.__getitems__([0, 1])], ds.left_out
    (['a'], {'undecodable': 1})
    """
    cls = _SKIPPING.get(type(dataset))
    if cls is None:
        return dataset
    left_out = dict(getattr(dataset, "left_out", {}) or {})
    dataset.__class__ = cls
    dataset.decode_failures = multiprocessing.Value("i", 0)  # shared with workers
    dataset.undecodable = []
    dataset.left_out = left_out
    return dataset
