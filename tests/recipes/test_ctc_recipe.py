"""The from-scratch CTC recipe, run for real on CPU, shrunk by command-line overrides.

``recipes/LibriSpeech/ASR/CTC/train.py`` with each YAML on the committed
LibriVox sample (smoke), and the learning test: 16 fixed synthetic
utterances (``tests/samples/learning``) overfitted within a step budget,
scored by the same code that writes ``cer_<split>.txt``.
"""

import json
import re
from pathlib import Path

import pytest
import torch
from recipe_helpers import Killed, asr_options, kill_after_epoch, run_in_process

from speechbrain_wsm import evaluate
from speechbrain_wsm.scoring import read_error_rates

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "LibriSpeech" / "ASR" / "CTC"
LEARNING = ROOT / "tests" / "samples" / "learning" / "LibriSpeech"
VARIANTS = ("conformer_mhsa", "conformer_sm", "conformer_wsm", "branchformer_wsm")
TINY = {
    "d_model": 32,
    "num_layers": 2,
    "nhead": 2,
    "d_ffn": 64,
    "cnn_channels": "[8, 8]",
    "num_workers": 0,
    "device": "cpu",
}


def run(variant, data, output, split, **overrides):
    options = {**asr_options(data, output, split, "train_splits"), **TINY, **overrides}
    return run_in_process(RECIPE, variant, options)


def one_epoch(variant, data, output, **overrides):
    """One epoch of small batches on the committed ``test-clean`` sample."""
    options = {"number_of_epochs": 1, "seconds_per_batch": 20, **overrides}
    return run(variant, data, output, "test-clean", **options)


def rescored(out) -> dict:
    """``python -m speechbrain_wsm.evaluate`` on a run's own test manifest."""
    argv = [str(out), "--manifest", str(out / "test-clean.csv"), "--name", "again"]
    return evaluate.main(argv)["again"]


def test_variants_differ_only_in_marked_lines():
    def unmarked(name):
        lines = (RECIPE / "hparams" / f"{name}.yaml").read_text().splitlines()
        return [x for x in lines if not re.search(r"# (mixer|arch)\b", x)]

    assert len({tuple(unmarked(v)) for v in VARIANTS}) == 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_scores_and_reloads(variant, tmp_path, librispeech_samples):
    out = one_epoch(variant, librispeech_samples, tmp_path / variant)
    rates = read_error_rates(out)["test-clean"]
    assert set(rates) == {"CER", "WER"}
    table = (out / "results.md").read_text()
    assert "test-clean CER" in table and "test-clean WER" in table
    cost = json.loads((out / "train_cost.json").read_text())
    assert cost["steps"] >= 1 and cost["step_seconds"] > 0
    # python -m speechbrain_wsm.evaluate reproduces the recipe's own scores
    again = rescored(out)
    assert again["WER"] == pytest.approx(rates["WER"], abs=0.01)
    assert again["CER"] == pytest.approx(rates["CER"], abs=0.01)


def test_self_conditioned_intermediate_ctc_trains_and_reloads(
    tmp_path, librispeech_samples
):
    """``--inter_ctc_layers=[1] --self_condition=True``: trains on the mixed
    loss, and ``evaluate`` rebuilds the conditioned model and its scores."""
    out = one_epoch(
        "conformer_wsm",
        librispeech_samples,
        tmp_path / "run",
        inter_ctc_layers="[1]",
        self_condition=True,
    )
    rates = read_error_rates(out)["test-clean"]
    assert rescored(out)["CER"] == pytest.approx(rates["CER"], abs=0.01)
    ckpt = next((out / "save").glob("CKPT*/asr_model.ckpt"))
    assert "condition.weight" in torch.load(ckpt, map_location="cpu")


def test_reverberation_augmentation_trains_on_simulated_rooms(
    tmp_path, librispeech_samples
):
    """``--add_reverb`` with the impulse responses ``data.rirs`` simulates."""
    pytest.importorskip("pyroomacoustics")
    import torch
    from hyperpyyaml import load_hyperpyyaml

    from speechbrain_wsm.data.rirs import build_rirs

    rirs = build_rirs(tmp_path / "rirs", count=2)
    # the recipe's augmenter, reverberation alone: a click comes out as a room
    with open(RECIPE / "hparams" / "conformer_wsm.yaml") as f:
        hparams = load_hyperpyyaml(
            f,
            {"data_folder": "x", "add_reverb": True, "rir_csv": str(rirs)},
        )
    augment = hparams["wav_augment"]
    assert len(augment.augmentations) == 1
    click = torch.zeros(1, 16000)
    click[0, 100] = 1.0
    wet, _ = augment(click, torch.ones(1))
    tail = wet[0, 200:].abs() > 1e-4 * wet.abs().max()
    assert tail.sum() > 1600  # the room rings for more than 100 ms
    out = one_epoch(
        "conformer_wsm",
        librispeech_samples,
        tmp_path / "run",
        add_reverb=True,
        rir_csv=rirs,
    )
    assert read_error_rates(out)["test-clean"]


def test_mhsa_variant_is_relative_positional_attention(tmp_path):
    from speechbrain_wsm.recipe import load_hparams

    hp, *_ = load_hparams(
        [
            str(RECIPE / "hparams" / "conformer_mhsa.yaml"),
            f"--output_folder={tmp_path}",
            "--data_folder=x",
            *(f"--{k}={v}" for k, v in TINY.items() if k != "device"),
        ]
    )
    encoder = hp["asr_model"].encoder
    assert encoder.mixer_name == "relpos_mhsa"
    assert encoder.positional_encoding == "none"


@pytest.mark.parametrize("frontend_conv", ["2d", "1d"])
@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_dropout_reaches_the_subsampling_convolutions(tmp_path, dropout, frontend_conv):
    """``--dropout`` sets every dropout of the front end too: SpeechBrain's
    ConvolutionFrontEnd has its own (0.1), which an override of the encoder's
    dropout alone left on."""
    from speechbrain_wsm.recipe import load_hparams

    hp, *_ = load_hparams(
        [
            str(RECIPE / "hparams" / "conformer_wsm.yaml"),
            f"--output_folder={tmp_path}",
            "--data_folder=x",
            *(f"--{k}={v}" for k, v in TINY.items() if k != "device"),
            f"--dropout={dropout}",
            f"--frontend_conv={frontend_conv}",
        ]
    )
    drops = [
        m.p
        for m in hp["asr_model"].subsampling.modules()
        if isinstance(m, torch.nn.Dropout)
    ]
    assert drops and all(p == dropout for p in drops)


def test_learning_overfits_sixteen_utterances(tmp_path):
    """Catches a pipeline that cannot learn: blank collapse, wrong lengths, decoding."""
    out = run(
        "conformer_wsm",
        LEARNING,
        tmp_path / "learn",
        "train-learn",
        d_model=64,
        d_ffn=128,
        cnn_channels="[16, 16]",
        window_size=8,
        number_of_epochs=40,
        seconds_per_batch=7,
        spec_augment=False,
        dropout=0.0,
        head_dropout=0.0,
        lr=0.003,
    )
    cost = json.loads((out / "train_cost.json").read_text())
    assert cost["steps"] <= 260  # the step budget
    assert read_error_rates(out)["train-learn"]["CER"] < 15.0


def test_rerun_resumes_and_continues_the_schedule(
    tmp_path, librispeech_samples, monkeypatch
):
    kwargs = {"seconds_per_batch": 20, "number_of_epochs": 2}
    # killed after epoch 1's checkpoint, then run again with the same command
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        run("conformer_sm", librispeech_samples, tmp_path / "r", "test-clean", **kwargs)
    out = tmp_path / "r"
    first = json.loads((out / "train_cost.json").read_text())["steps"]
    assert first >= 1
    run("conformer_sm", librispeech_samples, out, "test-clean", **kwargs)
    cost = json.loads((out / "train_cost.json").read_text())
    assert cost["steps"] == 2 * first  # epoch 1 was not trained again
    log = (out / "train_log.txt").read_text().splitlines()
    assert [line.split(",")[0] for line in log] == ["epoch: 1", "epoch: 2"]
