"""Bad inputs given to the recipes end well (issue 24): a clear ``error:`` line,
a counted skip, or the right result. Real ``train.py`` runs on the fixture
corpus, shrunk by flags."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from recipe_helpers import PRETRAINING, SAMPLES, run_in_process

from speechbrain_wsm.data.librispeech import prepare_librispeech

pytestmark = pytest.mark.slow

TINY = {
    "d_model": 16,
    "num_layers": 1,
    "nhead": 2,
    "d_ffn": 32,
    "extractor_dim": 16,
    "final_dim": 8,
    "num_negatives": 4,
    "number_of_epochs": 1,
    "seconds_per_batch": 8,
    "num_workers": 0,
    "device": "cpu",
}


@pytest.fixture
def corpus(tmp_path):
    """The fixture LibriSpeech split, prepared: (manifest, data folder, IDs)."""
    data = tmp_path / "LibriSpeech"
    shutil.copytree(SAMPLES / "LibriSpeech", data)
    out = prepare_librispeech(
        data, tmp_path / "prep", te_splits=["test-clean"], progress=False
    )
    with open(out["test-clean"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return out["test-clean"], data, rows


def test_a_flac_cut_short_is_skipped_and_counted_not_fatal(corpus, tmp_path):
    # the header reads (so the check at start-up passes) but the body does
    # not: "flac decoder lost sync" when the loader decodes it, mid-epoch
    manifest, data, rows = corpus
    flac = Path(rows[0]["wav"].replace("$data_root", str(data)))
    body = flac.read_bytes()
    flac.write_bytes(body[: len(body) // 3])
    out = tmp_path / "run"
    run_in_process(
        PRETRAINING,
        "wav2vec2_sm",
        {
            **TINY,
            "data_folder": data,
            "output_folder": out,
            "skip_prep": True,
            "train_csv": manifest,
            "valid_csv": manifest,
            "test_splits": "[]",
        },
    )
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["epochs"] == 1 and summary["optimizer_steps"] > 0
    # once in training, once in validation
    assert summary["utterances_left_out"]["train"]["undecodable"] == 1
    assert summary["utterances_left_out"]["valid"]["undecodable"] == 1
    log = (out / "log.txt").read_text()
    assert rows[0]["ID"] in log
    # --number_of_epochs=1 alone: the schedule spans this run, not 300 000 steps
    steps = summary["optimizer_steps"]
    assert (
        f"schedule over the {steps} steps: warm-up {max(1, round(0.1 * steps))}," in log
    )
