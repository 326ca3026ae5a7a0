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

:func:`add_audio_pipeline` and :func:`load_audio` are the project's one audio
pipeline (:mod:`speechbrain_wsm.data.audio`, re-exported here): training,
validation, ``python -m speechbrain_wsm.evaluate`` and
``python -m speechbrain_wsm.transcribe`` read and resample audio alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.lobes.models.wav2vec import w2v_mask_collate_fn
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_wsm.data.audio import (
    add_audio_pipeline,
    drop_unreadable,
    load_audio,
)

__all__ = [
    "SpanMaskCollate",
    "add_audio_pipeline",
    "add_token_pipeline",
    "dynamic_batch_sampler",
    "load_audio",
    "manifest_dataset",
]


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
    (``[(ID, reason)]``).

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
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(
            f"manifest {csv_path} not found (run the data preparation, or pass "
            "the path of an existing manifest)"
        )
    if sort not in (None, "ascending", "descending"):
        raise ValueError(
            f"sort must be None, 'ascending' or 'descending', got {sort!r}"
        )
    replacements = {"data_root": data_folder} if data_folder else {}
    dataset = DynamicItemDataset.from_csv(csv_path, replacements=replacements)
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
        raise ValueError(
            f"no utterance of {csv_path} lasts between {min_duration} and "
            f"{max_duration} s"
        )
    dataset, bad = drop_unreadable(dataset, csv_path, unreadable)
    dataset.unreadable = bad
    return dataset


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


class SpanMaskCollate:
    """Collate ``{"id", "sig"}`` items into ``(wavs, wav_lens, mask)`` for wav2vec 2.0.

    Pads the waveforms (relative lengths in ``wav_lens``) and draws the span
    mask over the model's frames with SpeechBrain's ``compute_mask``: spans of
    ``mask_length`` frames starting at about ``mask_prob`` of the frames, the
    same number of masked frames in every utterance (set by the shortest),
    never on padding. Drawing masks in the loader keeps them off the training
    step. Picklable, for data-loader workers.

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
    >>> from speechbrain_wsm.models.wav2vec2 import FrameCounter
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
        shortest = min(len(item["sig"]) for item in items)
        frames = int(self.frame_counter(torch.tensor(shortest)))
        # compute_mask draws up to int(p * frames / L + 2) distinct span starts
        # among frames - L and masks that many spans' worth of frames.
        spans = int(self.mask_prob * frames / self.mask_length + 2)
        if frames - self.mask_length < spans or frames < spans * self.mask_length:
            ids = [item["id"] for item in items]
            raise ValueError(
                f"an utterance of batch {ids} has {frames} frames, too short for "
                f"masked spans of {self.mask_length}: raise the minimum duration"
            )
        self._seed_worker()
        return w2v_mask_collate_fn(
            items, self.frame_counter, self.mask_prob, self.mask_length
        )

    def _seed_worker(self) -> None:
        """Seed NumPy (which ``compute_mask`` draws from) once per loader worker.

        PyTorch seeds ``torch`` and ``random`` in each worker but not NumPy:
        without this, every worker, in every epoch, would draw the same masks.
        """
        info = torch.utils.data.get_worker_info()
        if info is not None and self._seeded_pid != os.getpid():
            np.random.seed(info.seed % 2**32)
            self._seeded_pid = os.getpid()
