"""Data pipelines shared by the recipes: manifests to SpeechBrain datasets and loaders.

A recipe's data side is usually::

    train = manifest_dataset(hparams["train_csv"], min_duration=1.0, max_duration=30.0)
    valid = manifest_dataset(hparams["valid_csv"], sort="descending")
    add_audio_pipeline([train, valid])            # "sig": 16 kHz mono float
    sampler = dynamic_batch_sampler(train, max_batch_length=360.0, num_buckets=70)
    brain.fit(counter, train, valid,
              train_loader_kwargs={"batch_sampler": sampler, "collate_fn": ...})

Manifests are the CSV files of :mod:`speechbrain_wsm.data` (``ID, duration,
wav, spk_id, wrd``); ``$data_root`` in a manifest is replaced by
``data_folder``. Batches carry relative lengths, and models turn them into
padding masks with :mod:`speechbrain_wsm.models.lengths`.

:func:`~speechbrain_wsm.data.audio.add_audio_pipeline` and
:func:`~speechbrain_wsm.data.audio.load_audio` are the project's one audio
pipeline (import them from :mod:`speechbrain_wsm.data.audio`): training,
validation, ``python -m speechbrain_wsm.evaluate`` and
``python -m speechbrain_wsm.transcribe`` read and resample audio alike.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.data_pipeline import provides, takes
from speechbrain.utils.data_utils import batch_pad_right
from torch.utils.data import Sampler

from speechbrain_wsm.data.audio import drop_unreadable
from speechbrain_wsm.data.manifests import check_manifest
from speechbrain_wsm.errors import UserValueError

__all__ = [
    "SpanMaskCollate",
    "span_mask",
    "add_token_pipeline",
    "dynamic_batch_sampler",
    "PackedBatchSampler",
    "manifest_dataset",
]

logger = logging.getLogger(__name__)


def manifest_dataset(
    csv_path: str,
    data_folder: str | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    sort: str | None = None,
    unreadable: str = "skip",
) -> DynamicItemDataset:
    """A :class:`DynamicItemDataset` over a CSV manifest, filtered by duration.

    Rows whose audio cannot be read (missing, empty or non-audio file, no
    sample, duration <= 0) are found before training and left out with a
    warning that counts and lists them, or stop the run at once
    (``unreadable="stop"``); see :func:`~speechbrain_wsm.data.audio.drop_unreadable`.
    The rows left out are kept in the dataset's ``unreadable`` attribute
    (``[(ID, reason)]``), and the number of rows left out by cause in
    ``left_out`` (``too_short``, ``too_long``, ``unreadable``). How many utterances the duration limits leave out
    is logged (every split: validation and test sets too, where a clip too
    short for the model or a file too long for memory would otherwise stop
    the run after a whole epoch).

    Arguments
    ---------
    csv_path : str
        The manifest (needs ``ID`` and ``duration``; ``wav`` for audio).
    data_folder : str, optional
        Replaces ``$data_root`` in the manifest's values.
    min_duration, max_duration : float, optional
        Keep utterances with ``min_duration <= duration <= max_duration`` (s).
    sort : str, optional
        ``"ascending"`` or ``"descending"`` by duration; None keeps file order.
    unreadable : str
        ``"skip"`` (default) or ``"stop"``: what to do with rows whose audio
        cannot be read.

    Returns
    -------
    DynamicItemDataset

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "m.csv"), "w") as f:
    ...     _ = f.write("ID,duration,spk_id\\na,0.5,x\\nb,2.0,y\\nc,9.0,z\\n")
    >>> ds = manifest_dataset(os.path.join(d, "m.csv"), min_duration=1.0, max_duration=5.0)
    >>> ds.data_ids
    ['b']
    """
    check_manifest(csv_path)  # missing, not UTF-8, no rows, an ID twice
    if sort not in (None, "ascending", "descending"):
        raise UserValueError(
            f"sort must be None, 'ascending' or 'descending', got {sort!r}"
        )
    replacements = {"data_root": data_folder} if data_folder else {}
    dataset = DynamicItemDataset.from_csv(csv_path, replacements=replacements)
    left_out = _report_duration_filter(dataset, csv_path, min_duration, max_duration)
    key_min = {"duration": min_duration} if min_duration is not None else {}
    key_max = {"duration": max_duration} if max_duration is not None else {}
    if key_min or key_max or sort:
        dataset = dataset.filtered_sorted(
            key_min_value=key_min,
            key_max_value=key_max,
            sort_key="duration" if sort else None,
            reverse=sort == "descending",
        )
    if len(dataset) == 0:
        raise UserValueError(
            f"no utterance of {csv_path} lasts between {min_duration} and "
            f"{max_duration} s"
        )
    dataset, bad = drop_unreadable(dataset, csv_path, unreadable)
    dataset.unreadable = bad
    dataset.left_out = {**left_out, "unreadable": len(bad)}
    return dataset


def _report_duration_filter(
    dataset, csv_path, min_duration, max_duration
) -> dict[str, int]:
    """Log how many utterances the duration limits leave out, and why."""
    if min_duration is None and max_duration is None:
        return {}
    durations = [float(row["duration"]) for row in dataset.data.values()]
    short = sum(d < min_duration for d in durations) if min_duration is not None else 0
    long = sum(d > max_duration for d in durations) if max_duration is not None else 0
    if short or long:
        logger.info(
            "%s: keeping %d of %d utterances; %d shorter than %s s and %d longer "
            "than %s s left out (min_duration / max_duration)",
            csv_path,
            len(durations) - short - long,
            len(durations),
            short,
            min_duration,
            long,
            max_duration,
        )
    return {"too_short": short, "too_long": long}


def add_token_pipeline(datasets: Sequence[DynamicItemDataset], tokenizer) -> None:
    """Add ``tokens`` (the ``wrd`` transcript encoded by ``tokenizer``) for CTC.

    Example
    -------
    >>> from speechbrain_wsm.data.tokenizers import CharTokenizer
    >>> ds = DynamicItemDataset({"u": {"wrd": "AB A"}})
    >>> add_token_pipeline([ds], CharTokenizer.from_texts(["AB"]))
    >>> ds.set_output_keys(["tokens"])
    >>> ds[0]["tokens"].tolist() == CharTokenizer.from_texts(["AB"]).encode("AB A")
    True
    """

    @takes("wrd")
    @provides("tokens")
    def text(wrd):
        return torch.LongTensor(tokenizer.encode(wrd))

    for dataset in datasets:
        dataset.add_dynamic_item(text)


def dynamic_batch_sampler(
    dataset: DynamicItemDataset,
    max_batch_length: float,
    num_buckets: int = 60,
    shuffle: bool = True,
    batch_ordering: str = "random",
    max_batch_ex: int | None = None,
    seed: int = 42,
) -> DynamicBatchSampler:
    """SpeechBrain's :class:`DynamicBatchSampler` by total duration (seconds).

    Batches hold utterances of similar length whose durations sum to at most
    ``max_batch_length`` seconds (one utterance per batch at least). With DDP,
    SpeechBrain splits these batches across processes.

    Arguments
    ---------
    dataset : DynamicItemDataset
        With a ``duration`` column.
    max_batch_length : float
        Seconds of audio per batch (per process).
    num_buckets : int
        Length buckets (fewer: more random batches; more: less padding);
        capped at the number of utterances.
    shuffle, batch_ordering, max_batch_ex, seed
        As :class:`DynamicBatchSampler`.

    Example
    -------
    >>> ds = DynamicItemDataset({f"u{i}": {"duration": 1.0 + i} for i in range(6)})
    >>> sampler = dynamic_batch_sampler(ds, max_batch_length=7.0, num_buckets=3)
    >>> batches = list(sampler)
    >>> all(sum(sampler.get_durations(b)) <= 7.0 for b in batches)
    True
    >>> sorted(i for b in batches for i in b)
    [0, 1, 2, 3, 4, 5]
    """
    if not max_batch_length > 0:  # 0 or NaN: SpeechBrain fails on NaN batch counts
        raise UserValueError(
            f"max_batch_length (the recipe's seconds_per_batch) must be positive, "
            f"got {max_batch_length}"
        )
    return DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_length,
        num_buckets=max(1, min(num_buckets, len(dataset))),
        length_func=lambda x: x["duration"],
        shuffle=shuffle,
        batch_ordering=batch_ordering,
        max_batch_ex=max_batch_ex,
        seed=seed,
    )


class PackedBatchSampler(Sampler):
    """Batches packed to ``max_batch_length`` seconds of padded audio, reshuffled per epoch.

    Utterances are sorted by duration (with a little noise, so that batches
    differ from epoch to epoch), cut greedily into batches whose longest
    utterance times their size stays within ``max_batch_length`` (the padded
    audio the model computes on), and the batches are shuffled. Unlike
    SpeechBrain's :class:`DynamicBatchSampler`, whose length buckets each end
    in a partly filled batch, every batch but the last is full: on one hour
    of audio in 60 buckets SpeechBrain's batches hold 58 % of the requested
    seconds on average, these about 95 %, so a step sees 1.6 times as much
    speech (the number of steps an epoch takes shrinks accordingly).

    The batches of an epoch depend on ``seed`` and the epoch number only
    (:meth:`set_epoch`, which ``Brain`` calls), so a resumed run sees the
    batches a straight run would, and every DDP process builds the same list.

    Arguments
    ---------
    dataset : DynamicItemDataset
        With a ``duration`` column (seconds).
    max_batch_length : float
        Seconds of padded audio per batch (longest utterance x count); an
        utterance longer than that forms a batch alone.
    jitter : float
        Relative noise on the durations when sorting (0: the same batches
        every epoch, in another order).
    shuffle : bool
        Shuffle the order of the batches (else shortest first).
    seed : int
        Seed of the noise and the order.

    Example
    -------
    >>> ds = DynamicItemDataset({f"u{i}": {"duration": 1.0 + i % 4} for i in range(12)})
    >>> sampler = PackedBatchSampler(ds, max_batch_length=8.0)
    >>> batches = list(sampler)
    >>> durations = [[1.0 + i % 4 for i in b] for b in batches]
    >>> all(max(d) * len(d) <= 8.0 for d in durations)
    True
    >>> sorted(i for b in batches for i in b) == list(range(12))
    True
    """

    def __init__(
        self,
        dataset: DynamicItemDataset,
        max_batch_length: float,
        jitter: float = 0.1,
        shuffle: bool = True,
        seed: int = 42,
    ):
        if not max_batch_length > 0:
            raise ValueError(
                "max_batch_length (the recipe's seconds_per_batch) must be "
                f"positive, got {max_batch_length}"
            )
        self.durations = np.array(
            [float(dataset.data[i]["duration"]) for i in dataset.data_ids]
        )
        self.max_batch_length = float(max_batch_length)
        self.jitter, self.shuffle, self.seed = float(jitter), shuffle, int(seed)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Build the batches of ``epoch`` (deterministic in seed and epoch)."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch])
        noise = 1.0 + self.jitter * rng.uniform(-1.0, 1.0, len(self.durations))
        order = np.argsort(self.durations * noise, kind="stable")
        batches, current, longest = [], [], 0.0
        for i in order.tolist():
            longest_with = max(longest, self.durations[i])
            if current and longest_with * (len(current) + 1) > self.max_batch_length:
                batches.append(current)
                current, longest_with = [], self.durations[i]
            current.append(i)
            longest = longest_with
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        self._batches = batches

    def __iter__(self):
        return iter([list(b) for b in self._batches])

    def __len__(self) -> int:
        return len(self._batches)


def span_mask(lengths: Sequence[int], mask_prob: float, mask_length: int) -> np.ndarray:
    """Masked spans for a batch: the same number of masked frames in every row.

    As wav2vec 2.0 (and SpeechBrain's ``compute_mask``): about
    ``mask_prob * shortest / mask_length`` (+ 1, + a random fraction) spans
    of ``mask_length`` frames start at distinct frames of each utterance,
    overlaps are topped up with single frames so that every row masks the same
    number of frames, and no frame past an utterance's length is masked. A
    short utterance draws fewer spans: at most ``shortest - mask_length``
    starts and ``shortest // mask_length`` spans' worth of frames, so any
    utterance longer than ``mask_length`` frames gets a mask (NumPy's global
    generator and Python's ``random`` draw it).

    Arguments
    ---------
    lengths : sequence of int
        Frames of each utterance.
    mask_prob : float
        Share of frames that start a span.
    mask_length : int
        Frames per span.

    Returns
    -------
    np.ndarray
        ``[batch, max(lengths)]`` bool, True = masked.

    Example
    -------
    >>> np.random.seed(0); random.seed(0)
    >>> m = span_mask([25, 60], 0.65, 10)  # 25 frames: 2 spans, not an error
    >>> m.sum(1).tolist(), bool(m[0, 25:].any())
    ([20, 20], False)
    """
    shortest = min(lengths)
    if shortest <= mask_length:
        raise ValueError(
            f"an utterance of {shortest} frames has no room for a masked span of "
            f"{mask_length} frames"
        )
    # the draws follow compute_mask's order, so that an utterance long enough
    # for the full count gets the very mask SpeechBrain would draw
    spans = int(mask_prob * shortest / mask_length + random.random() + 1)
    spans = max(1, min(spans, shortest - mask_length, shortest // mask_length))
    target = spans * mask_length
    drawn = []
    for n in lengths:
        starts = np.random.choice(n - mask_length, spans, replace=False)
        drawn.append(np.unique((starts[:, None] + np.arange(mask_length)).ravel()))
    mask = np.zeros((len(lengths), max(lengths)), dtype=bool)
    for row, (n, frames) in enumerate(zip(lengths, drawn, strict=True)):
        if len(frames) < target:  # overlapping spans: top up with free frames
            free = np.delete(np.arange(n), frames)
            extra = np.random.choice(free, target - len(frames), replace=False)
            mask[row, extra] = True
        mask[row, frames] = True
    return mask


class SpanMaskCollate:
    """Collate ``{"id", "sig"}`` items into ``(wavs, wav_lens, mask)`` for wav2vec 2.0.

    Pads the waveforms (relative lengths in ``wav_lens``) and draws the span
    mask over the model's frames (:func:`span_mask`, the scheme of
    SpeechBrain's ``compute_mask``): spans of ``mask_length`` frames starting
    at about ``mask_prob`` of the frames, the same number of masked frames in
    every utterance (set by the shortest), never on padding. A short
    utterance gets fewer spans rather than failing the batch; only one of at
    most ``mask_length`` frames, where no span fits, is an error. Drawing
    masks in the loader keeps them off the training step. Picklable, for
    data-loader workers.

    Arguments
    ---------
    frame_counter : callable
        Samples -> frames of the model's front end (its ``output_lengths``).
    mask_prob : float
        Share of frames that start a masked span.
    mask_length : int
        Span length (frames).

    Example
    -------
    >>> from speechbrain_wsm.nnet.frontend import FrameCounter
    >>> collate = SpanMaskCollate(FrameCounter([320], [320]), 0.65, 3)
    >>> items = [{"id": "a", "sig": torch.randn(16000)}, {"id": "b", "sig": torch.randn(9600)}]
    >>> wavs, wav_lens, mask = collate(items)
    >>> wavs.shape, wav_lens.tolist(), mask.shape
    (torch.Size([2, 16000]), [1.0, 0.6000000238418579], torch.Size([2, 50]))
    >>> bool(mask[1, 30:].any()), mask.sum(1)[0] == mask.sum(1)[1]
    (False, tensor(True))
    """

    def __init__(self, frame_counter: Callable, mask_prob: float, mask_length: int):
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        self.frame_counter = frame_counter
        self.mask_prob = mask_prob
        self.mask_length = int(mask_length)
        self._seeded_pid = None

    def __call__(self, items):
        sigs = [item["sig"] for item in items]
        frames = [int(self.frame_counter(torch.tensor(s.shape[-1]))) for s in sigs]
        if min(frames) <= self.mask_length:
            ids = [item["id"] for item in items]
            raise UserValueError(
                f"an utterance of batch {ids} has {min(frames)} frames, too short "
                f"for masked spans of {self.mask_length}: raise the minimum duration"
            )
        self._seed_worker()
        wavs, wav_lens = batch_pad_right(sigs)
        mask = span_mask(frames, self.mask_prob, self.mask_length)
        return wavs, wav_lens, torch.from_numpy(mask)

    def _seed_worker(self) -> None:
        """Seed NumPy (which ``compute_mask`` draws from) once per loader worker.

        PyTorch seeds ``torch`` and ``random`` in each worker but not NumPy:
        without this, every worker, in every epoch, would draw the same masks.
        """
        info = torch.utils.data.get_worker_info()
        if info is not None and self._seeded_pid != os.getpid():
            np.random.seed(info.seed % 2**32)
            self._seeded_pid = os.getpid()
