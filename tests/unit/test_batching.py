"""Packed batches of the CTC recipes: every utterance once, full batches, resumable order."""

import numpy as np
from speechbrain.dataio.dataset import DynamicItemDataset

from speechbrain_wsm.recipe.dataio import PackedBatchSampler, dynamic_batch_sampler


def dataset(n=400, seed=0):
    durations = np.random.default_rng(seed).gamma(4.0, 2.0, n).clip(0.5, 24.0)
    return DynamicItemDataset(
        {f"u{i}": {"duration": float(d)} for i, d in enumerate(durations)}
    ), durations


def test_every_utterance_once_and_padded_audio_within_the_limit():
    ds, dur = dataset()
    sampler = PackedBatchSampler(ds, max_batch_length=60.0, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(dur)))
        for b in batches:
            assert len(b) == 1 or dur[b].max() * len(b) <= 60.0


def test_an_utterance_longer_than_the_batch_forms_a_batch_alone():
    ds = DynamicItemDataset({"a": {"duration": 30.0}, "b": {"duration": 2.0}})
    batches = list(PackedBatchSampler(ds, max_batch_length=10.0))
    assert sorted(map(sorted, batches)) == [[0], [1]]


def test_batches_depend_on_seed_and_epoch_only():
    ds, _ = dataset()
    a, b = PackedBatchSampler(ds, 60.0, seed=1), PackedBatchSampler(ds, 60.0, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)  # a resumed run sees the batches of a straight run
    b.set_epoch(5)
    assert list(a) != list(b)  # and epochs differ


def test_batches_are_fuller_than_speechbrains_buckets_on_small_data():
    """One hour of audio, 120 s batches: the speech a step sees."""
    ds, dur = dataset(n=460)
    packed = list(PackedBatchSampler(ds, 120.0, seed=0))
    buckets = list(dynamic_batch_sampler(ds, 120.0, num_buckets=60, seed=0))
    mean = {
        name: float(np.mean([dur[b].sum() for b in batches]))
        for name, batches in (("packed", packed), ("buckets", buckets))
    }
    assert mean["packed"] >= 0.85 * 120.0, mean
    assert mean["packed"] > 1.3 * mean["buckets"], mean
