"""The streaming wav2vec 2.0 YAMLs, run for real on the fixture corpus, shrunk by
flags; the latency tool measures the look-ahead of what they trained."""

import math

import pytest
from recipe_helpers import RECIPES, SAMPLES, run_python
from test_wav2vec2_recipe import (
    FLAGS,
    RECIPE,
    check_encoder_loads,
    checkpoints,
    epochs,
)

from speechbrain_wsm.nnet.streaming_frontend import StreamingFbankExtractor

VARIANTS = ("maa", "sa", "llsa", "wsm")
YAMLS = {v: RECIPE / "hparams" / f"wav2vec2_streaming_{v}.yaml" for v in VARIANTS}
# 2 layers, 1 frame ahead per layer: 2 frames for maa/sa, 1 for llsa/wsm
CONTEXT = ["--left_context=4", "--right_context=1"]
EXPECTED = {"maa": 2, "sa": 2, "llsa": 1, "wsm": 1}
pytestmark = pytest.mark.slow


def _run(module_or_script, argv, cwd=RECIPE):
    return run_python([*module_or_script, *argv], cwd)


def test_the_four_yaml_files_differ_only_in_mixer_lines():
    texts = {
        v: [line for line in p.read_text().splitlines() if "# mixer" not in line]
        for v, p in YAMLS.items()
    }
    assert texts["maa"] == texts["sa"] == texts["llsa"] == texts["wsm"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_streaming_recipe_trains_and_its_lookahead_is_measured(variant, tmp_path):
    out = tmp_path / variant
    flags = [f for f in FLAGS if not f.startswith("--seconds_per_batch")]
    argv = [str(YAMLS[variant]), *flags, "--seconds_per_batch=4", *CONTEXT]
    _run(["train.py"], [*argv, f"--output_folder={out}"])
    assert checkpoints(out)
    (first,) = epochs(out)
    assert first["steps"] > 0 and math.isfinite(first["train"])
    assert math.isfinite(first["valid"])
    check_encoder_loads(out)
    from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder

    encoder = load_pretrained_encoder(out)
    assert isinstance(encoder.latent_extractor, StreamingFbankExtractor)
    # measured on the trained folder, and on the YAML with the same overrides
    frames = EXPECTED[variant]
    line = f"look-ahead: {frames} frames ({frames * 20} ms)"
    assert line in _run(["-m", "speechbrain_wsm.latency"], [str(out)])
    if variant in ("maa", "wsm"):
        log = _run(
            ["-m", "speechbrain_wsm.latency"], [*argv, f"--output_folder={out}y"]
        )
        assert line in log


PROBE = RECIPES / "MP3S" / "LibriSpeech" / "LSTM"


def test_streaming_probe_yaml_differs_only_in_streaming_lines():
    def body(name):
        text = (PROBE / "hparams" / name).read_text()
        return text[text.index("seed: 1986") :].splitlines()

    offline, streaming = body("ssl.yaml"), body("ssl_streaming.yaml")
    assert len(offline) == len(streaming)
    changed = [s for o, s in zip(offline, streaming, strict=True) if o != s]
    assert len(changed) == 3 and all("# streaming" in line for line in changed)


def test_streaming_probe_trains_on_a_streaming_encoder(tmp_path):
    from tiny_models import make_project_encoder

    encoder = make_project_encoder(tmp_path / "w2v", mixer="streaming_llsa")
    out = tmp_path / "probe"
    _run(
        ["train.py"],
        [
            str(PROBE / "hparams" / "ssl_streaming.yaml"),
            f"--ssl_source={encoder}",
            f"--data_folder={SAMPLES / 'LibriSpeech'}",
            f"--output_folder={out}",
            "--train_splits=[test-clean]",
            "--dev_splits=[test-clean]",
            "--test_splits=[test-clean]",
            "--lstm_size=8",
            "--lstm_layers=1",
            "--dropout=0.0",
            "--number_of_epochs=1",
            "--batch_size=2",
            "--num_workers=0",
        ],
        cwd=PROBE,
    )
    assert (out / "wer_test-clean.txt").read_text().startswith("%WER ")
    resolved = (out / "hyperparams.yaml").read_text()
    assert "bidirectional: false" in resolved.lower()
