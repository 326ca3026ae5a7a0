"""Bad inputs given to the recipes end well (issue 24): a clear ``error:`` line,
a counted skip, or the right result. Real ``train.py`` runs on the fixture
corpus, shrunk by flags."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_helpers import PRETRAINING, RECIPES, SAMPLES, child_env, run_in_process

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


# -- item 10: a mistake in what the user gave is one error: line --------------------
LASER = RECIPES / "LibriSpeech" / "self-supervised-finetuning" / "LASER"
CTC = RECIPES / "LibriSpeech" / "ASR" / "CTC"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            [PRETRAINING / "train.py", PRETRAINING / "hparams" / "wav2vec2_sm.yaml",
             "--data_folder=/no/such/LibriSpeech"],
            "error: LibriSpeech data_folder '/no/such/LibriSpeech' not found",
        ),
        (
            [LASER / "train.py", LASER / "hparams" / "laser_hubert.yaml",
             "--ssl_source=/no/such/model", "--data_folder=/x"],
            "error: ssl_source '/no/such/model' is not a folder",
        ),
        (
            [CTC / "train.py", CTC / "hparams" / "conformer_wsm.yaml",
             "--data_folder=/x", "--add_reverb=True"],
            "error: add_reverb needs rir_csv",
        ),
        (
            ["-m", "speechbrain_wsm.evaluate", "/no/such/run", "--manifest", "x.csv"],
            "error: /no/such/run not found: pass a recipe output folder",
        ),
        (
            ["-m", "speechbrain_wsm.transcribe", "/no/such/run", "a.wav"],
            "error: /no/such/run not found: pass a recipe output folder",
        ),
    ],
    ids=["pretraining-data-folder", "laser-ssl-source", "ctc-reverb-without-rirs",
         "evaluate-run", "transcribe-run"],
)  # fmt: skip
def test_user_mistakes_end_in_one_error_line(argv, expected, tmp_path):
    argv = [str(a) for a in argv]
    if argv[0].endswith("train.py"):
        argv.append(f"--output_folder={tmp_path / 'out'}")
    proc = subprocess.run(
        [sys.executable, *argv], env=child_env(), capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(expected), proc.stderr
    # --debug shows the traceback of the same mistake
    if "-m" in argv:
        proc = subprocess.run(
            [sys.executable, *argv, "--debug"],
            env=child_env(),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1 and "Traceback" in proc.stderr
