"""The selective fine-tuning recipe, run for real on tiny models and real speech.

``recipes/LibriSpeech/ASR/selective-finetuning/train.py`` with each YAML, shrunk
by command-line overrides only, on the committed LibriVox sample
(``tests/samples/LibriSpeech/test-clean``, five utterances) and tiny
pretrained models saved to local folders (a Hugging Face wav2vec 2.0 and this
project's wav2vec 2.0 pretraining output; see ``tests/tiny_models.py``).
"""

import re
import shutil
from pathlib import Path

import pytest
import torch
from recipe_helpers import (
    LEARNING_OPTIONS,
    RECIPES,
    Killed,
    kill_after_epoch,
    run_finetuning,
    variant_lines,
)
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_wsm import evaluate
from speechbrain_wsm.models.finetuning import load_finetuned

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

RECIPE = RECIPES / "LibriSpeech" / "ASR" / "selective-finetuning"
VARIANTS = ("wsm", "sm", "mhsa_top", "full")


def run(variant, source, output, librispeech, **overrides):
    """Run the recipe in this process with small-scale overrides."""
    options = {
        "number_of_epochs": 2,
        "num_replaced_layers": 1,
        "window_size": 4,
        "seconds_per_batch": 14,
        "test_batch_size": 3,
        "beam_size": 4,
        "lr": 0.002,
        **overrides,
    }
    return run_finetuning(RECIPE, variant, source, output, librispeech, **options)


def summary_wer(path: Path) -> float:
    line = path.read_text().splitlines()[0]
    assert line.startswith("%WER"), line
    return float(line.split()[1])


def test_yaml_variants_differ_only_in_mode_lines():
    reference = variant_lines(RECIPE, "wsm", "# mode")
    for name in VARIANTS[1:]:
        assert variant_lines(RECIPE, name, "# mode") == reference, name


@pytest.mark.parametrize(
    "variant,source", [("wsm", "hf"), ("sm", "project"), ("mhsa_top", "hf"), ("full", "project")]
)  # fmt: skip
def test_recipe_trains_decodes_and_exports(
    variant, source, tiny_ssl_sources, librispeech_samples, tmp_path
):
    out = run(variant, tiny_ssl_sources[source], tmp_path / "run", librispeech_samples)
    log = (out / "train_log.txt").read_text()
    assert re.search(r"epoch: 2\b", log) and re.search(r"epoch: 1\b", log)
    for name in ("wer_test-clean.txt", "wer_test-clean_beam.txt"):
        assert 0.0 <= summary_wer(out / name) <= 1000.0
        assert "10002-1-0880" in (out / name).read_text()
    results = (out / "results.md").read_text()
    assert "(greedy)" in results and "(beam)" in results and "test-clean" in results
    # The exported model is the best checkpoint's, and loads back.
    ckpt = Checkpointer(out / "save").find_checkpoint(min_key="WER")
    best = torch.load(ckpt.paramfiles["asr_model"], weights_only=True)
    model = load_finetuned(out / "finetuned")
    assert model.build_args["mode"] == variant
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key]), key
    # The evaluation command scores the saved run as the recipe did.
    again = evaluate.main(
        [str(out), "--manifest", str(out / "test-clean.csv"), "--name", "again"]
    )
    assert (out / "wer_again.txt").read_text().splitlines()[0] == (
        (out / "wer_test-clean.txt").read_text().splitlines()[0]
    )
    assert again["again"]["WER"] == pytest.approx(
        summary_wer(out / "wer_test-clean.txt"), abs=0.01
    )


def test_resume_after_a_stop_equals_a_straight_run(
    tiny_ssl_sources, librispeech_samples, tmp_path, monkeypatch
):
    """Two epochs in one go, or one epoch then a restart: the same model.

    Deterministic settings: no dropout (the tiny pretrained encoder has none),
    so the only state is what the checkpoints carry.
    """
    no_dropout = {"head_dropout": 0.0, "mixer_kwargs": "{window_size: 4, dropout: 0.0}"}
    straight = run(
        "wsm",
        tiny_ssl_sources["project"],
        tmp_path / "a",
        librispeech_samples,
        **no_dropout,
    )
    resumed = tmp_path / "b"
    # killed after the first epoch's checkpoint, with the run's own plan: the
    # step schedule spans the run (a --optimizer_step_limit would shorten it)
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        run("wsm", tiny_ssl_sources["project"], resumed, librispeech_samples,
            **no_dropout)  # fmt: skip
    run("wsm", tiny_ssl_sources["project"], resumed, librispeech_samples, **no_dropout)
    log = (resumed / "train_log.txt").read_text()
    assert len(re.findall(r"epoch: 1\b", log)) == 1, log
    assert len(re.findall(r"epoch: 2\b", log)) == 1, log
    a = torch.load(straight / "finetuned" / "model.ckpt", weights_only=True)
    b = torch.load(resumed / "finetuned" / "model.ckpt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def make_librilight(root: Path, librispeech: Path) -> Path:
    """A librispeech_finetuning tree: the sample's utterances in every fold."""
    chapter = librispeech / "test-clean" / "10002" / "1"
    for fold in ("1h/0", "1h/1", "1h/2", "1h/3", "1h/4", "1h/5", "9h"):
        shutil.copytree(chapter, root / fold / "clean" / "10002" / "1")
    return root


def test_librilight_training_sets(tiny_ssl_sources, librispeech_samples, tmp_path):
    librilight = make_librilight(
        tmp_path / "librispeech_finetuning", librispeech_samples
    )
    out = run(
        "wsm",
        tiny_ssl_sources["hf"],
        tmp_path / "run",
        librispeech_samples,
        train_set="10min",
        librilight_folder=librilight,
        number_of_epochs=1,
        extra_decoders="[]",
    )
    assert (out / "librilight-10min.csv").is_file()
    assert summary_wer(out / "wer_test-clean.txt") >= 0.0
    assert "10min" in (out / "results.md").read_text()


def test_learning_overfits_sixteen_utterances(
    learning_encoder, learning_samples, tmp_path
):
    """The learning test: a WSM block and the head, over a frozen 64-wide encoder
    (random weights), overfit 16 fixed utterances within a step budget; the CER
    is what the recipe writes in ``cer_<split>.txt``."""
    from speechbrain_wsm.scoring import read_error_rates

    out = run(
        "wsm",
        learning_encoder,
        tmp_path / "learn",
        learning_samples,
        **LEARNING_OPTIONS,
        number_of_epochs=60,  # about 500 steps of 4 s batches
        mixer_kwargs="{window_size: 8, dropout: 0.0}",
        extra_decoders="[]",
    )
    assert read_error_rates(out)["train-learn"]["CER"] < 15.0


def test_the_run_folder_is_an_ssl_source(
    tiny_ssl_sources, librispeech_samples, tmp_path
):
    # issue 24 item 12: a selective fine-tuning run folder stands for its
    # exported <run>/finetuned; its fine-tuned encoder is the upstream
    from speechbrain_wsm.models.upstream import load_upstream

    out = run(
        "wsm",
        tiny_ssl_sources["project"],
        tmp_path / "run",
        librispeech_samples,
        number_of_epochs=1,
    )
    upstream = load_upstream(out, frozen=True)
    encoder = load_finetuned(out / "finetuned").encoder
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(upstream.model.state_dict()[key], value), key
    wav = torch.randn(1, 16000)
    with torch.no_grad():
        states, frames = upstream(wav, torch.tensor([16000]))
    assert len(states) == upstream.num_hidden_states and int(frames[0]) > 0
