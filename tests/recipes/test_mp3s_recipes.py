"""CPU smoke tests of every MP3S probe recipe: the real YAML, shrunk by
command-line overrides, on the tiny fixtures in each corpus's layout, with a
tiny encoder from this project's pretraining code or a tiny Hugging Face
model. Each run must train, keep a checkpoint and write its results."""

import re
from pathlib import Path

import pytest
from recipe_helpers import RECIPES, SAMPLES, run_python
from speechbrain.utils.metric_stats import ErrorRateStats

PROBES = RECIPES / "MP3S"
MP3S = SAMPLES / "mp3s"


pytestmark = pytest.mark.slow

TINY_LSTM = ["--lstm_size=8", "--lstm_layers=1", "--dropout=0.0"]
ONE_EPOCH = ["--number_of_epochs=1", "--batch_size=2", "--num_workers=0"]
#: The committed LibriSpeech sample, its one split for training, dev and test.
LIBRISPEECH = [
    f"--data_folder={SAMPLES / 'LibriSpeech'}",
    "--train_splits=[test-clean]",
    "--dev_splits=[test-clean]",
    "--test_splits=[test-clean]",
]


def run_probe(recipe: str, encoder, out: Path, *overrides: str) -> Path:
    """``train.py hparams/ssl.yaml`` of ``MP3S/<recipe>`` on ``encoder``,
    writing into ``out``; returns ``out``."""
    argv = [f"--ssl_source={encoder}", f"--output_folder={out}", *overrides]
    run_python(["train.py", "hparams/ssl.yaml", *argv], PROBES / recipe)
    return out


def _wer_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


def _assert_scored(out: Path, results_row: str) -> None:
    """``results.md`` holds ``results_row``; ``wer_test-clean.txt`` a %WER line."""
    assert results_row in (out / "results.md").read_text()
    assert _wer_line(out / "wer_test-clean.txt").startswith("%WER")


def _checkpoints(out: Path) -> list:
    return list((out / "save").glob("CKPT+*"))


# --------------------------------------------------------------------------- #
# CTC probes
# --------------------------------------------------------------------------- #


def test_librispeech_lstm_and_evaluate_cli(project_encoder, tmp_path):
    out = run_probe(
        "LibriSpeech/LSTM",
        project_encoder,
        tmp_path,
        *LIBRISPEECH,
        *ONE_EPOCH,
        *TINY_LSTM,
    )
    wer = out / "wer_test-clean.txt"
    text = wer.read_text()
    assert re.match(r"%WER \d+\.\d\d \[ \d+ / 71,", text)
    ids = [f"10002-1-{u}" for u in ("0870", "0880", "0890", "0920", "0930")]
    assert all(uid in text for uid in ids)
    results = (out / "results.md").read_text()
    assert "| lstm (greedy) |" in results and "test-clean" in results
    assert len(_checkpoints(out)) == 1 and (out / "tokenizer_char.txt").is_file()
    assert "layer_weights" in (out / "train_log.txt").read_text()

    # The command line rebuilds the run from its hyperparams.yaml and finds the
    # same checkpoint: the same hypotheses, the same file.
    manifest = str(out / "test-clean.csv")
    run_python(["-m", "speechbrain_wsm.evaluate", str(out), "--manifest", manifest,
                "--name", "again"])  # fmt: skip
    assert (out / "wer_again.txt").read_text() == text

    # The recipe's %WER is SpeechBrain's ErrorRateStats on the same hypotheses.
    from speechbrain_wsm.data.tokenizers import load_tokenizer
    from speechbrain_wsm.decoding import build_decoder
    from speechbrain_wsm.recipe.checkpoints import recover_checkpoint
    from speechbrain_wsm.recipe.evaluation import load_recipe, transcribe

    hparams, folder = load_recipe(out)
    recover_checkpoint(hparams["checkpointer"], "best", folder)
    decode = build_decoder(load_tokenizer(hparams["tokenizer_file"]))
    ids, refs, hyps = transcribe(hparams["asr_model"], decode, out / "test-clean.csv")
    stats = ErrorRateStats()
    stats.append(ids, [h.split() for h in hyps], [r.split() for r in refs])
    assert _wer_line(wer).startswith(f"%WER {stats.summarize('WER'):.2f} ")


def test_librispeech_lstm_hf_encoder_beam_and_feature_cache(hf_encoder, tmp_path):
    out = run_probe(
        "LibriSpeech/LSTM",
        hf_encoder,
        tmp_path,
        *LIBRISPEECH,
        f"--feature_cache_dir={tmp_path / 'features'}",
        "--decoder=beam",
        "--beam_size=3",
        "--number_of_epochs=2",
        "--batch_size=2",
        "--num_workers=0",
        *TINY_LSTM,
    )
    _assert_scored(out, "| lstm (beam) |")
    assert len(list((out / "features").rglob("*.pt"))) == 5  # one per utterance
    assert len((out / "train_log.txt").read_text().splitlines()) == 2


def test_librispeech_contextnet(project_encoder, tmp_path):
    out = run_probe(
        "LibriSpeech/ContextNet",
        project_encoder,
        tmp_path,
        *LIBRISPEECH,
        "--num_blocks=2",
        "--block_layers=1",
        "--contextnet_channels=8",
        "--contextnet_out=8",
        *ONE_EPOCH,
    )
    _assert_scored(out, "| contextnet (greedy) |")
    assert len(_checkpoints(out)) == 1


def test_commonvoice_lstm_bpe(project_encoder, tmp_path):
    welsh = MP3S / "CommonVoice" / "cv-corpus-11.0-2022-09-21" / "cy"
    out = run_probe(
        "CommonVoice/LSTM",
        project_encoder,
        tmp_path,
        f"--data_folder={welsh}",
        "--output_neurons=40",
        *ONE_EPOCH,
        *TINY_LSTM,
    )
    assert re.match(r"%WER \d+\.\d\d \[ \d+ / 7,", _wer_line(out / "wer_test.txt"))
    assert (out / "tokenizer_bpe.model").is_file()
    assert "| lstm_cy (greedy) |" in (out / "results.md").read_text()


def test_buckeye_lstm(project_encoder, tmp_path):
    buckeye = f"--data_folder={MP3S / 'Buckeye'}"
    out = run_probe(
        "Buckeye/LSTM", project_encoder, tmp_path, buckeye, *ONE_EPOCH, *TINY_LSTM
    )
    assert "s3601a_0000" in (out / "wer_dev.txt").read_text()
    assert "s3801a_0000" in (out / "wer_test.txt").read_text()
    assert (
        "| dev CER | dev WER | test CER | test WER |"
        in (out / "results.md").read_text()
    )
    assert (out / "cer_test.txt").is_file()


# --------------------------------------------------------------------------- #
# Classification and verification probes
# --------------------------------------------------------------------------- #


def _predictions(path: Path) -> list[list[str]]:
    return [x.split() for x in path.read_text().splitlines() if not x.startswith("#")]


def test_iemocap_linear(project_encoder, tmp_path):
    iemocap = MP3S / "IEMOCAP" / "IEMOCAP_full_release"
    out = run_probe(
        "IEMOCAP/linear",
        project_encoder,
        tmp_path,
        f"--data_folder={iemocap}",
        "--test_session=3",
        "--valid_ratio=0.3",
        *ONE_EPOCH,
    )
    rows = _predictions(out / "predictions_test.txt")
    assert sorted(r[0] for r in rows) == ["Ses03F_impro03_F000", "Ses03F_impro03_M001"]
    assert all(
        r[1] in {"neu", "hap", "sad", "ang"} and r[2] in {"neu", "hap", "sad", "ang"}
        for r in rows
    )
    assert re.search(
        r"\| linear_fold3 \| \d+\.\d\d \|", (out / "results.md").read_text()
    )


def test_slurp_lstm_linear(hf_encoder, tmp_path):
    slurp = f"--data_folder={MP3S / 'SLURP'}"
    out = run_probe(
        "SLURP/LSTM_linear", hf_encoder, tmp_path, slurp, *ONE_EPOCH, *TINY_LSTM
    )
    rows = _predictions(out / "predictions_test.txt")
    assert len(rows) == 2 and all(r[1] == "iot" for r in rows)
    assert "| lstm_linear |" in (out / "results.md").read_text()


def test_voxceleb1_ecapa(project_encoder, tmp_path):
    out = run_probe(
        "VoxCeleb1/ECAPA",
        project_encoder,
        tmp_path,
        f"--data_folder={MP3S / 'VoxCeleb1'}",
        "--dev_ratio=0.5",
        "--channels=[8,8,8,8,16]",
        "--attention_channels=4",
        "--emb_dim=8",
        "--out_n_neurons=2",
        "--sentence_len=0.5",
        *ONE_EPOCH,
    )
    scores = (out / "scores.txt").read_text().splitlines()
    assert len(scores) == 4 and all(-1.0 <= float(s.split()[3]) <= 1.0 for s in scores)
    results = (out / "results.md").read_text()
    eer = float(re.search(r"\| ecapa \| (\d+\.\d\d) \|", results).group(1))
    assert 0.0 <= eer <= 100.0


def test_librispeech_probe_learns_sixteen_utterances(
    learning_encoder, learning_samples, tmp_path
):
    """The learning test: the probe overfits 16 fixed utterances within a step budget.

    Catches a probe that cannot learn (blank collapse, wrong lengths, a frozen
    head, a decoding bug); the training-set CER is read from the
    ``cer_<split>.txt`` the recipe writes. The frozen encoder has random
    weights but is 64 wide: a 16-wide random encoder keeps too little of the
    signal for any probe to learn from it in a minute.
    """
    from speechbrain_wsm.scoring import read_error_rates

    out = run_probe(
        "LibriSpeech/LSTM",
        learning_encoder,
        tmp_path / "learn",
        f"--data_folder={learning_samples}",
        "--train_splits=[train-learn]",
        "--dev_splits=[train-learn]",
        "--test_splits=[train-learn]",
        "--number_of_epochs=60",  # 480 steps of 2 utterances
        "--batch_size=2",
        "--num_workers=0",
        "--lstm_size=128",
        "--lstm_layers=1",
        "--dropout=0.0",
        "--layer_norm=True",
        "--lr=0.005",
        "--warmup=0.05",
        "--hold=0.7",
        "--sorting=random",
    )
    assert read_error_rates(out)["train-learn"]["CER"] < 15.0
