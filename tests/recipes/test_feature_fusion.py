"""The feature-fusion recipe (HFF with adapters; a reconstruction), run for real.

``recipes/LibriSpeech/ASR/feature-fusion/train.py`` with each YAML, shrunk by
command-line overrides only, on the committed LibriVox sample
(``tests/samples/LibriSpeech/test-clean``) and tiny pretrained models saved to
local folders (a Hugging Face wav2vec 2.0 and this project's wav2vec 2.0
pretraining output; see ``tests/tiny_models.py``).
"""

import json
import re
import shutil

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

from speechbrain_wsm import evaluate
from speechbrain_wsm.scoring import read_error_rates

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

RECIPE = RECIPES / "LibriSpeech" / "ASR" / "feature-fusion"
VARIANTS = ("hff", "hff_adapters", "adapters", "weighted_sum", "last_layer")


def run(variant, source, output, librispeech, **overrides):
    """Run the recipe in this process with small-scale overrides."""
    options = {
        "number_of_epochs": 1,
        "taps": 2,
        "num_blocks": 1,
        "adapter_dim": 4,
        "d_fusion": 16,
        "d_ffn_fusion": 32,
        "seconds_per_batch": 14,
        "test_batch_size": 3,
        "extra_decoders": "[]",
        **overrides,
    }
    return run_finetuning(RECIPE, variant, source, output, librispeech, **options)


def test_yaml_variants_differ_only_in_method_lines():
    reference = variant_lines(RECIPE, "hff", "# method")
    for name in VARIANTS[1:]:
        assert variant_lines(RECIPE, name, "# method") == reference, name


@pytest.mark.parametrize(
    "variant,source",
    [("hff", "hf"), ("hff_adapters", "project"), ("adapters", "hf"),
     ("weighted_sum", "project"), ("last_layer", "hf")],
)  # fmt: skip
def test_recipe_trains_decodes_and_scores(
    variant, source, tiny_ssl_sources, librispeech_samples, tmp_path
):
    out = run(variant, tiny_ssl_sources[source], tmp_path / "run", librispeech_samples)
    assert re.search(r"epoch: 1\b", (out / "train_log.txt").read_text())
    rates = read_error_rates(out)["test-clean"]
    assert 0.0 <= rates["CER"] <= 1000.0 and 0.0 <= rates["WER"] <= 1000.0
    assert "10002-1-0880" in (out / "cer_test-clean.txt").read_text()
    results = (out / "results.md").read_text()
    assert "reconstruction, not from the paper" in results
    cost = json.loads((out / "train_cost.json").read_text())
    assert 0 < cost["trainable_parameters"] < cost["parameters"]
    adapters = "adapters" in variant
    assert ("0.000 M adapter parameters" not in results) == adapters
    if variant == "hff":  # the evaluation command scores the run as the recipe did
        again = evaluate.main(
            [str(out), "--manifest", str(out / "test-clean.csv"), "--name", "again"]
        )
        assert again["again"]["CER"] == pytest.approx(rates["CER"], abs=0.01)


def test_resume_after_a_stop_equals_a_straight_run(
    tiny_ssl_sources, librispeech_samples, tmp_path, monkeypatch
):
    """Two epochs in one go, or one epoch then a restart: the same model."""
    opts = {"number_of_epochs": 2, "head_dropout": 0.0, "fusion_dropout": 0.0}
    src = tiny_ssl_sources["project"]
    straight = run("hff_adapters", src, tmp_path / "a", librispeech_samples, **opts)
    resumed = tmp_path / "b"
    kill_after_epoch(monkeypatch, 1)  # a kill after epoch 1's checkpoint
    with pytest.raises(Killed):
        run("hff_adapters", src, resumed, librispeech_samples, **opts)
    run("hff_adapters", src, resumed, librispeech_samples, **opts)
    log = (resumed / "train_log.txt").read_text()
    assert len(re.findall(r"epoch: 2\b", log)) == 1, log

    def final(folder):
        ckpt = sorted((folder / "save").glob("CKPT+*"))[-1]
        return torch.load(ckpt / "asr_model.ckpt", weights_only=True)

    a, b = final(straight), final(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_learning_overfits_sixteen_utterances(
    learning_encoder, learning_samples, tmp_path
):
    """HFF (WSM fusion blocks) over a frozen 64-wide random encoder overfits 16
    fixed utterances within a step budget; the CER is the recipe's ``cer_`` file."""
    out = run(
        "hff",
        learning_encoder,
        tmp_path / "learn",
        learning_samples,
        **LEARNING_OPTIONS,
        number_of_epochs=40,  # about 330 steps of 4 s batches
        taps=1,
        d_fusion=64,
        d_ffn_fusion=128,
        fusion_block="wsm",
        fusion_mixer_kwargs="{window_size: 8}",
        fusion_dropout=0.0,
    )
    shutil.rmtree(out / "save", ignore_errors=True)
    assert read_error_rates(out)["train-learn"]["CER"] < 15.0
