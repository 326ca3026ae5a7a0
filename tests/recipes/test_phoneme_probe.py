"""The phoneme-recognition variant of the MP3S LibriSpeech probe, run for real.

``recipes/MP3S/LibriSpeech/LSTM/train.py hparams/phoneme.yaml``, shrunk by
command-line overrides, on the committed LibriVox sample and a tiny project
encoder: CMU-dictionary phone targets, a phone tokenizer, PER files.
"""

import json
import re

import pytest
from recipe_helpers import RECIPES, SAMPLES, run_python

RECIPE = RECIPES / "MP3S" / "LibriSpeech" / "LSTM"

pytestmark = pytest.mark.slow


def test_phoneme_probe_trains_and_writes_per(project_encoder, tmp_path):
    out = tmp_path / "out"
    run_python(
        [
            "train.py", "hparams/phoneme.yaml",
            f"--ssl_source={project_encoder}",
            f"--data_folder={SAMPLES / 'LibriSpeech'}",
            f"--output_folder={out}",
            "--train_splits=[test-clean]", "--dev_splits=[test-clean]",
            "--test_splits=[test-clean]", "--number_of_epochs=1", "--batch_size=2",
            "--num_workers=0", "--lstm_size=8", "--lstm_layers=1", "--dropout=0.0",
        ],
        RECIPE,
    )  # fmt: skip
    counts = json.loads((out / "phonemes.json").read_text())["test-clean"]
    assert counts["kept"] >= 3 and counts["kept"] + counts["skipped"] == 5
    per = (out / "per_test-clean.txt").read_text()
    assert per == (out / "wer_test-clean.txt").read_text()
    # The reference of each scored utterance is its phone string.
    assert re.match(r"%WER \d+\.\d\d \[ \d+ / \d+,", per)
    units = (out / "tokenizer.phones").read_text().split()
    assert units[:2] == ["<blank>", "<unk>"] and "DH" in units and len(units) <= 41
    assert "PER (%)" in (out / "results.md").read_text()
