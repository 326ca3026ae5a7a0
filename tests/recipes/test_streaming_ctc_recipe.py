"""The streaming CTC recipe (conformer_streaming_{wsm,llsa}.yaml), run for real on
CPU, shrunk by command-line overrides: smoke run, learning test, streaming
decoding of the trained model equal to its offline decoding."""

import json
import re
from pathlib import Path

import pytest
import torch
from recipe_helpers import asr_options, run_in_process

from speechbrain_wsm import evaluate
from speechbrain_wsm.scoring import read_error_rates

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "LibriSpeech" / "ASR" / "CTC"
LEARNING = ROOT / "tests" / "samples" / "learning" / "LibriSpeech"
VARIANTS = ("conformer_streaming_wsm", "conformer_streaming_llsa")
TINY = {
    "d_model": 32,
    "num_layers": 2,
    "nhead": 2,
    "d_ffn": 64,
    "kernel_size": 5,
    "left_context": 8,
    "right_context": 2,
    "frontend_channels": "[16, 16]",
    "num_workers": 0,
    "device": "cpu",
}


def run(variant, data, output, split, **overrides):
    options = {**asr_options(data, output, split, "train_splits"), **TINY, **overrides}
    return run_in_process(RECIPE, variant, options)


def test_variants_differ_only_in_marked_lines():
    def unmarked(name):
        lines = (RECIPE / "hparams" / f"{name}.yaml").read_text().splitlines()
        return [x for x in lines if not re.search(r"# mixer\b", x)]

    assert len({tuple(unmarked(v)) for v in VARIANTS}) == 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_scores_and_streams(variant, tmp_path, librispeech_samples):
    out = run(
        variant,
        librispeech_samples,
        tmp_path / variant,
        "test-clean",
        number_of_epochs=1,
        seconds_per_batch=20,
    )
    rates = read_error_rates(out)["test-clean"]
    assert set(rates) == {"CER", "WER"}
    assert "test-clean CER" in (out / "results.md").read_text()
    cost = json.loads((out / "train_cost.json").read_text())
    assert cost["steps"] >= 1
    scores = evaluate.main(
        [str(out), "--manifest", str(out / "test-clean.csv"), "--name", "again"]
    )
    assert scores["again"]["CER"] == pytest.approx(rates["CER"], abs=0.01)
    # the trained model streams: chunk by chunk equals its offline forward
    from speechbrain_wsm.transcribe import Transcriber

    asr = Transcriber.from_run(out)
    model = asr.asr_model
    wav = asr.load_audio(next(librispeech_samples.rglob("*.flac"))).unsqueeze(0)
    with torch.no_grad():
        full, _ = model(wav)
        outs, state = [], None
        for i in range(0, wav.shape[1], 2000):
            y, state = model.stream(wav[:, i : i + 2000], state)
            outs.append(y)
        outs.append(model.stream(None, state, final=True)[0])
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def trained_llsa(tmp_path_factory):
    from conftest import SAMPLES

    out = tmp_path_factory.mktemp("llsa")
    return run(
        "conformer_streaming_llsa",
        SAMPLES / "LibriSpeech",
        out,
        "test-clean",
        number_of_epochs=1,
        seconds_per_batch=20,
    )


def test_transcribe_stream_prints_partials_and_the_offline_text(
    trained_llsa, librispeech_samples, capsys, monkeypatch
):
    import io
    import types

    import numpy as np

    from speechbrain_wsm import transcribe
    from speechbrain_wsm.data.audio import load_audio

    wav = str(next(librispeech_samples.rglob("*.flac")))
    assert transcribe.main([str(trained_llsa), wav]) == 0
    offline = capsys.readouterr().out.strip().split("\t", 1)[1]
    assert transcribe.main(["--stream", str(trained_llsa), wav, "--no-realtime"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) > 3 and all(line.startswith(wav) for line in lines)
    assert "[0.16 s]" in lines[0]  # 160 ms chunks
    assert lines[-1] == f"{wav}\t{offline}"  # final = offline decoding
    # raw s16le PCM on stdin at 8 kHz, resampled to the model's 16 kHz
    audio = load_audio(wav, sample_rate=8000).numpy()
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(buffer=io.BytesIO(pcm)))
    assert transcribe.main(["--stream", str(trained_llsa), "-", "--rate=8000"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("-\t") and len(lines) > 3
    # bad input: an odd number of bytes is not 16-bit PCM; one error line
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(buffer=io.BytesIO(b"abc")))
    assert transcribe.main(["--stream", str(trained_llsa), "-"]) == 1
    assert "error: -: stdin ended in the middle" in capsys.readouterr().err


def test_transcribe_stream_compiled_gives_the_offline_text(
    trained_llsa, librispeech_samples, capsys
):
    """``--compiled``: the chunk step is compiled before the first source (not
    while audio waits), then every full chunk runs through it; the final text
    is still the offline decoding."""
    from speechbrain_wsm import transcribe
    from speechbrain_wsm.streaming_asr import StreamingTranscriber

    wav = str(next(librispeech_samples.rglob("*.flac")))
    assert transcribe.main([str(trained_llsa), wav]) == 0
    offline = capsys.readouterr().out.strip().split("\t", 1)[1]
    argv = ["--stream", str(trained_llsa), wav, "--no-realtime", "--compiled"]
    assert transcribe.main(argv) == 0
    captured = capsys.readouterr()
    assert "compiling the chunk step" in captured.err
    assert "compiled: streaming now" in captured.err
    assert captured.out.strip().splitlines()[-1] == f"{wav}\t{offline}"
    # chunks that are not whole encoder frames never have one frame count
    argv = [*argv, "--chunk_ms=60"]
    assert transcribe.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --compiled streams whole encoder frames")
    # warm_up runs the compiled step of its chunk size; the stream then uses it
    asr = StreamingTranscriber.from_run(trained_llsa, compiled=True)
    encoder = asr.model.encoder
    assert getattr(encoder, "_compiled_step", None) is None
    asr.warm_up(2560)
    assert encoder._compiled_step[2] is not None  # set by its first run
    calls = []
    compiled = encoder._compiled_step[1]
    encoder._compiled_step[1] = lambda *a: calls.append(1) or compiled(*a)
    from speechbrain_wsm.data.audio import load_audio

    audio = load_audio(wav, sample_rate=16000)
    for i in range(0, audio.shape[0], 2560):
        asr.feed(audio[i : i + 2560])
    assert len(calls) >= audio.shape[0] // 2560 - 3  # all but the first chunks
    assert asr.finish() == offline


def test_transcribe_stream_compiled_fails_in_one_line(
    trained_llsa, capsys, monkeypatch
):
    """Where ``torch.compile`` cannot build the step (no C++ compiler, ...),
    ``--compiled`` ends in one ``error:`` line naming the way out."""
    from speechbrain_wsm import transcribe

    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("C++ compile error\ng++: not found")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    wav = "unused.wav"
    assert transcribe.main(["--stream", str(trained_llsa), wav, "--compiled"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --compiled: torch.compile could not build")
    assert "RuntimeError: C++ compile error" in err[-1]
    assert err[-1].endswith("run without --compiled")


def test_export_cli_streams_in_onnxruntime(trained_llsa, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from speechbrain_wsm import export

    step = tmp_path / "step.onnx"
    argv = [str(trained_llsa), "--onnx", str(step), "--streaming", "--chunk_frames=4"]
    assert export.main(argv) == 0
    out = capsys.readouterr().out
    assert "onnxruntime vs PyTorch" in out and step.is_file()
    diff = float(out.rsplit("max |diff| ", 1)[1].split()[0])
    assert diff < 1e-4
    # the offline export of an LLSA model is refused in one line
    assert export.main([str(trained_llsa), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert capsys.readouterr().err.startswith("error: the offline ONNX export")


def test_streaming_transcriber_refuses_bad_chunks(trained_llsa):
    from speechbrain_wsm.streaming_asr import StreamingTranscriber

    asr = StreamingTranscriber.from_run(trained_llsa)
    with pytest.raises(ValueError, match="mono"):
        asr.feed(torch.zeros(2, 1600))
    with pytest.raises(ValueError, match="float samples"):
        asr.feed(torch.zeros(1600, dtype=torch.int16))
    asr.feed(torch.zeros(8000))
    asr.finish()
    with pytest.raises(ValueError, match="finished"):
        asr.feed(torch.zeros(1600))


def test_latency_tool_measures_the_recipe(capsys, tmp_path):
    from speechbrain_wsm import latency

    yaml = str(RECIPE / "hparams" / "conformer_streaming_llsa.yaml")
    overrides = [f"--{k}={v}" for k, v in TINY.items() if k not in ("device",)]
    assert latency.main([yaml, f"--output_folder={tmp_path}", *overrides]) == 0
    out = capsys.readouterr().out
    assert "look-ahead: 2 frames (80 ms)" in out  # R = 2 frames of 40 ms
    assert "front end: each encoder frame reads 85 ms" in out


def test_latency_tool_reads_a_trained_run(capsys, trained_llsa):
    """A run folder gives the look-ahead of the architecture it trained."""
    from speechbrain_wsm import latency

    assert latency.main([str(trained_llsa)]) == 0
    assert "look-ahead: 2 frames (80 ms)" in capsys.readouterr().out


def test_learning_overfits_sixteen_utterances(tmp_path):
    """The streaming recogniser learns (random left contexts included)."""
    out = run(
        "conformer_streaming_llsa",
        LEARNING,
        tmp_path / "learn",
        "train-learn",
        d_model=64,
        d_ffn=128,
        frontend_channels="[64, 64]",
        number_of_epochs=40,
        seconds_per_batch=7,
        spec_augment=False,
        dropout=0.0,
        head_dropout=0.0,
        lr=0.003,
    )
    cost = json.loads((out / "train_cost.json").read_text())
    assert cost["steps"] <= 260
    assert read_error_rates(out)["train-learn"]["CER"] < 25.0
