"""Mistakes a user makes end with one line naming the key and the fix
(issue 12, item 10)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_helpers import PRETRAINING, child_env, load_tiny_pretraining

from speechbrain_wsm.errors import ConfigError
from speechbrain_wsm.recipe import dynamic_batch_sampler


def _load(tmp_path, *flags):
    return load_tiny_pretraining(tmp_path, "sm", *flags)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (
            ["--number_of_epochs=1", "--number_of_epochs=2"],
            "--number_of_epochs is given more than once",
        ),
        (["--lr=abc"], "--lr='abc': lr must be a number"),
        (["--skip_prep=maybe"], "skip_prep must be true or false"),
        (
            ["--train_splits=dev-clean"],
            "train_splits must be a list, e.g. --train_splits=[dev-clean]",
        ),
        (["--seconds_per_batch=0"], "seconds_per_batch must be positive, got 0"),
        (["--number_of_epochs=-1"], "number_of_epochs must be positive"),
    ],
)
def test_command_line_mistakes_name_the_key(tmp_path, flags, expected):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, *flags)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_good_overrides_still_load(tmp_path):
    hp, *_ = _load(tmp_path, "--lr=0.001", "--number_of_epochs=2", "--skip_prep=True")
    assert hp["lr"] == 0.001 and hp["number_of_epochs"] == 2


def test_a_recipe_prints_one_line_not_a_traceback(tmp_path):
    code = (
        "import sys; from speechbrain_wsm.recipe import load_hparams; "
        "load_hparams(sys.argv[1:])"
    )
    argv = [str(PRETRAINING / "hparams" / "wav2vec2_sm.yaml"), "--data_folder=x"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv, "--lr=abc"],
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --lr='abc'")


def test_zero_seconds_per_batch_in_the_sampler():
    from speechbrain.dataio.dataset import DynamicItemDataset

    ds = DynamicItemDataset({"a": {"duration": 1.0}})
    with pytest.raises(ValueError, match="seconds_per_batch"):
        dynamic_batch_sampler(ds, max_batch_length=0)


def test_damaged_config_json_names_the_file(tmp_path):
    from tiny_models import save_tiny_hf

    from speechbrain_wsm.models.upstream import load_upstream

    folder = save_tiny_hf(tmp_path / "hf", kind="hubert")
    config = Path(folder) / "config.json"
    config.write_text(config.read_text()[:40])  # an interrupted copy
    with pytest.raises(ValueError, match="config.json is not valid JSON") as info:
        load_upstream(folder)
    assert str(config) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_evaluate_into_a_read_only_folder_fails_first(tmp_path):
    from speechbrain_wsm.evaluate import _check_writable

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="--output_folder"):
            _check_writable(folder)
    finally:
        folder.chmod(0o700)


def test_evaluate_checks_the_folder_before_loading(tmp_path, monkeypatch):
    # as root a read-only folder is writable: make the write fail instead
    import speechbrain_wsm.evaluate as evaluate

    calls = []
    monkeypatch.setattr(evaluate, "load_recipe", lambda run, o: ({}, tmp_path))
    monkeypatch.setattr(evaluate, "load_trained", lambda *a: calls.append(a))

    def no_space(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(ConfigError, match="cannot write the scores"):
        evaluate.main([str(tmp_path), "--manifest=x.csv"])
    assert calls == []  # no model was loaded, nothing decoded
