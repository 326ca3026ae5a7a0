"""The CTC recipe's test scoring with a word LM: ``extra_decoders: [lexicon]``
writes ``wer_<split>_lexicon.txt`` beside the greedy scores, and a missing LM
or lexicon stops the recipe before training."""

import importlib.util
from pathlib import Path

import pytest
from recipe_helpers import asr_options, run_in_process

from speechbrain_wsm.data.lm import KenLMNotFoundError, build_word_lm
from speechbrain_wsm.errors import ConfigError
from speechbrain_wsm.scoring import read_error_rates

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "LibriSpeech" / "ASR" / "CTC"
TINY = {
    "d_model": 32,
    "num_layers": 2,
    "nhead": 2,
    "d_ffn": 64,
    "cnn_channels": "[8, 8]",
}


def test_recipe_scores_with_the_lexicon_decoder(tmp_path, librispeech_samples):
    if importlib.util.find_spec("flashlight") is None:
        pytest.skip("flashlight-text not installed (pip install -e '.[lm]')")
    try:
        lm, lexicon = build_word_lm(
            ["HE WAS MADE OF STONE", "SHE SAID SO", "IT WAS A DAY"], tmp_path / "lm"
        )
    except KenLMNotFoundError as e:
        pytest.skip(str(e))
    options = {
        **asr_options(
            librispeech_samples, tmp_path / "out", "test-clean", "train_splits"
        ),
        **TINY,
        "number_of_epochs": 1,
        "seconds_per_batch": 20,
        "extra_decoders": "[lexicon]",
        "kenlm_model_path": lm,
        "lexicon": lexicon,
    }
    missing = {**options, "lexicon": str(tmp_path / "gone.txt")}
    with pytest.raises(ConfigError, match="gone.txt' not found"):
        run_in_process(RECIPE, "conformer_wsm", missing)
    assert not list((tmp_path / "out").glob("**/CKPT+*"))  # stopped before training
    out = run_in_process(RECIPE, "conformer_wsm", options)
    assert (out / "wer_test-clean_lexicon.txt").read_text().startswith("%WER")
    assert set(read_error_rates(out)["test-clean"]) == {"CER", "WER"}
    table = (out / "results.md").read_text()
    assert "(greedy)" in table and "(lexicon)" in table
