"""Unreadable manifest rows are found before training, and evaluation scores
what it can read (issue 12, item 2)."""

import csv
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechbrain_wsm.data.audio import add_audio_pipeline
from speechbrain_wsm.data.librispeech import prepare_librispeech
from speechbrain_wsm.data.tokenizers import CharTokenizer
from speechbrain_wsm.nnet.frontend import FrameCounter
from speechbrain_wsm.recipe.dataio import (
    SpanMaskCollate,
    manifest_dataset,
    span_mask,
)
from speechbrain_wsm.recipe.evaluation import evaluate_manifest

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture
def broken_manifest(tmp_path):
    """The five LibriVox utterances, of which three became unreadable after
    preparation: one deleted, one emptied, one replaced by a text file."""
    data = tmp_path / "LibriSpeech"
    shutil.copytree(SAMPLES / "LibriSpeech", data)
    out = prepare_librispeech(
        data, tmp_path / "prep", te_splits=["test-clean"], progress=False
    )
    manifest = out["test-clean"]
    with open(manifest, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    wavs = {r["ID"]: Path(r["wav"].replace("$data_root", str(data))) for r in rows}
    ids = sorted(wavs)
    wavs[ids[0]].unlink()
    wavs[ids[1]].write_bytes(b"")
    wavs[ids[2]].write_text("not audio at all\n")
    return manifest, str(data), set(ids[:3]), set(ids[3:])


def test_training_set_skips_and_lists_unreadable_rows(broken_manifest, caplog):
    manifest, data, bad, good = broken_manifest
    with caplog.at_level(logging.WARNING):
        ds = manifest_dataset(manifest, data)
    assert set(ds.data_ids) == good
    assert {uid for uid, _ in ds.unreadable} == bad
    assert "3 of 5 rows" in caplog.text and all(uid in caplog.text for uid in bad)
    # the remaining rows load: a full pass over the set no longer dies
    add_audio_pipeline([ds])
    assert all(ds[i]["sig"].numel() > 0 for i in range(len(ds)))


def test_training_can_stop_before_it_starts(broken_manifest):
    manifest, data, bad, _ = broken_manifest
    with pytest.raises(ValueError, match="3 of 5 rows") as info:
        manifest_dataset(manifest, data, unreadable="stop")
    assert all(uid in str(info.value) for uid in bad)
    assert "not found" in str(info.value) and "not readable as audio" in str(info.value)


def test_zero_duration_rows_are_left_out(tmp_path):
    wav = SAMPLES / "LibriSpeech"
    path = next(wav.rglob("*.flac"))
    (tmp_path / "m.csv").write_text(f"ID,duration,wav\na,0.0,{path}\nb,3.0,{path}\n")
    ds = manifest_dataset(str(tmp_path / "m.csv"))
    assert ds.data_ids == ["b"] and ds.unreadable[0][0] == "a"


class _Blank(torch.nn.Module):
    """Outputs blanks only (an empty hypothesis for every utterance)."""

    def forward(self, wavs, wav_lens):
        scores = torch.full((wavs.shape[0], wavs.shape[1] // 320 + 1, 5), -9.0)
        scores[..., 0] = 0.0
        return scores.log_softmax(-1), wav_lens


def test_evaluate_scores_what_can_be_read(broken_manifest, tmp_path):
    manifest, data, bad, good = broken_manifest
    tok = CharTokenizer.from_texts(["ABCD"])
    summary = evaluate_manifest(
        _Blank(), tok, manifest, str(tmp_path / "wer_test.txt"), data_folder=data
    )
    assert summary["num_scored_sents"] == len(good)
    assert {uid for uid, _ in summary["unreadable"]} == bad
    listing = (tmp_path / "unreadable_test.txt").read_text()
    assert all(uid in listing for uid in bad)
    text = (tmp_path / "wer_test.txt").read_text()
    assert all(uid in text for uid in good) and not any(uid in text for uid in bad)


# -- durations and span masks ------------------------------------------------------
def test_short_utterances_get_fewer_spans_not_an_error():
    # 0.5-0.86 s and 1.01-1.06 s utterances (21-39 and 47-49 frames) used to
    # be refused by the span-count check although min_duration is 1.0 s
    for frames in [11, 21, 30, 39, 47, 49]:
        for seed in range(5):
            np.random.seed(seed)
            random.seed(seed)
            mask = span_mask([frames, 200], 0.65, 10)
            assert mask.any(1).all()
            assert mask.sum(1)[0] == mask.sum(1)[1]  # same count in every row
            assert not mask[0, frames:].any()  # never on padding


def test_long_utterances_get_speechbrains_mask():
    from speechbrain.lobes.models.wav2vec import compute_mask

    for seed in range(3):
        np.random.seed(seed)
        random.seed(seed)
        ours = span_mask([120, 200, 90], 0.65, 10)
        np.random.seed(seed)
        random.seed(seed)
        theirs = compute_mask((3, 200), [120, 200, 90], 0.65, 10)
        assert np.array_equal(ours, theirs)


def test_collate_masks_a_short_batch():
    counter = FrameCounter([320], [320])
    items = [
        {"id": "a", "sig": torch.randn(8000)},
        {"id": "b", "sig": torch.randn(16000)},
    ]
    wavs, lens, mask = SpanMaskCollate(counter, 0.65, 10)(items)  # 25 frames
    assert mask.shape == (2, 50) and mask[0].any() and not mask[0, 25:].any()


def test_duration_filter_is_counted_in_the_log(tmp_path, caplog):
    rows = "".join(f"u{i},{d},x.wav\n" for i, d in enumerate([0.05, 2.0, 3.0, 2400.0]))
    (tmp_path / "dev.csv").write_text("ID,duration,spk_id\n" + rows)
    with caplog.at_level(logging.INFO):
        ds = manifest_dataset(str(tmp_path / "dev.csv"), None, 1.0, 30.0)
    assert ds.data_ids == ["u1", "u2"]
    assert "keeping 2 of 4" in caplog.text and "1 shorter than 1.0 s" in caplog.text
    assert "1 longer than 30.0 s" in caplog.text


def test_every_pretraining_split_is_filtered_by_duration():
    train_py = (
        Path(__file__).resolve().parents[2]
        / "recipes/LibriSpeech/self-supervised-learning/wav2vec2/train.py"
    ).read_text()
    calls = [line for line in train_py.splitlines() if "manifest_dataset(" in line]
    assert len(calls) == 3 and all("*limits" in line for line in calls)


class _NeedsFrames(_Blank):
    """Refuses inputs shorter than 0.1 s, as a front end without frames does."""

    def forward(self, wavs, wav_lens):
        if (wav_lens * wavs.shape[1]).min() < 1600:
            raise RuntimeError("input too short for the front end")
        return super().forward(wavs, wav_lens)


def test_evaluate_lists_a_clip_the_model_cannot_take(tmp_path):
    import soundfile as sf

    clip = tmp_path / "clip.wav"
    sf.write(str(clip), np.zeros(800, dtype="float32"), 16000)  # 0.05 s
    path = next((SAMPLES / "LibriSpeech").rglob("*.flac"))
    (tmp_path / "m.csv").write_text(
        f"ID,duration,wav,wrd\nlong,3.0,{path},A B\nshort,0.05,{clip},A\n"
    )
    summary = evaluate_manifest(
        _NeedsFrames(),
        CharTokenizer.from_texts(["AB"]),
        str(tmp_path / "m.csv"),
        str(tmp_path / "wer_m.txt"),
    )
    assert summary["num_scored_sents"] == 1
    assert [uid for uid, _ in summary["unreadable"]] == ["short"]
    assert "too short" in (tmp_path / "unreadable_m.txt").read_text()
