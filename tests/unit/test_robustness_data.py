"""Unreadable manifest rows are found before training, and evaluation scores
what it can read (issue 12, item 2)."""

import csv
import logging
import shutil
from pathlib import Path

import pytest
import torch

from speechbrain_wsm.data.librispeech import prepare_librispeech
from speechbrain_wsm.data.tokenizers import CharTokenizer
from speechbrain_wsm.evaluate import evaluate_manifest
from speechbrain_wsm.recipe.dataio import add_audio_pipeline, manifest_dataset

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
