"""The one audio pipeline: a 22.05 kHz stereo file is the same 16 kHz mono model
input in training (``speechbrain_wsm.data.audio.add_audio_pipeline``) and in scoring
(``speechbrain_wsm.evaluate``); missing files name their path; segments."""

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import speechbrain_wsm.data.mp3s as mp3s
import speechbrain_wsm.recipe as recipe
from speechbrain_wsm.data import audio
from speechbrain_wsm.data.audio import add_audio_pipeline
from speechbrain_wsm.recipe import evaluation, manifest_dataset

SECONDS = 1.5
TONE = 440.0


def _tone(rate: int, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return np.sin(2 * math.pi * TONE * t).astype("float32")


def _stereo_file(path: Path, rate: int = 22050) -> Path:
    """Left: a 440 Hz tone; right: the same at half amplitude (mean: 0.75 x)."""
    tone = _tone(rate)
    sf.write(str(path), np.stack([tone, 0.5 * tone], axis=1), rate)
    return path


def _manifest(path: Path, rows, columns=("ID", "duration", "wav", "wrd")) -> str:
    lines = [",".join(columns)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_one_implementation_one_import_path():
    assert audio.add_audio_pipeline and audio.load_audio
    for where in (recipe, recipe.dataio, mp3s):  # no second name for them
        assert not hasattr(where, "add_audio_pipeline")
        assert not hasattr(where, "load_audio")


def test_training_and_scoring_see_the_same_16k_mono_input(tmp_path):
    wav = _stereo_file(tmp_path / "stereo22k.wav")
    csv = _manifest(tmp_path / "m.csv", [("u1", SECONDS, wav, "A TONE")])

    train = manifest_dataset(csv)
    add_audio_pipeline([train], ["id", "sig", "wrd"])
    trained_on = train[0]["sig"]

    (batch,) = list(evaluation._loader(csv, None, 16000, batch_size=1)[0])
    wavs, wav_lens = batch.sig
    scored_on = wavs[0, : int(round(wav_lens[0].item() * wavs.shape[1]))]

    assert trained_on.dtype == torch.float32 and trained_on.dim() == 1
    assert torch.equal(trained_on, scored_on)
    assert len(trained_on) == int(SECONDS * 16000)
    # mono by channel mean, resampled: 0.75 x the tone sampled at 16 kHz
    # (edges left out, where the resampling filter sees the file's ends)
    middle = slice(400, -400)
    expected = 0.75 * torch.from_numpy(_tone(16000))
    assert torch.allclose(trained_on[middle], expected[middle], atol=1e-2)


def test_missing_and_empty_files_name_their_path(tmp_path):
    missing = tmp_path / "nowhere" / "gone.flac"
    csv = _manifest(tmp_path / "m.csv", [("u1", 1.0, missing, "X")])
    # found before training or scoring (a set with no readable row stops)
    with pytest.raises(ValueError, match="gone.flac"):
        manifest_dataset(csv)
    with pytest.raises(ValueError, match="gone.flac"):
        evaluation._loader(csv, None, 16000, batch_size=1)
    with pytest.raises(FileNotFoundError, match="gone.flac"):
        audio.load_audio(missing)

    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), dtype="float32"), 16000)
    with pytest.raises(ValueError, match="empty.wav"):
        audio.load_audio(empty)
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="garbage.flac"):
        audio.load_audio(garbage)


def test_start_stop_segments(tmp_path):
    rate = 16000
    path = tmp_path / "a.wav"
    sf.write(str(path), np.random.default_rng(0).standard_normal(2 * rate), rate)
    whole = audio.load_audio(path)
    part = audio.load_audio(path, start=0.5, stop=1.25)
    assert torch.equal(part, whole[8000:20000])
    # from a manifest with start/stop columns, at another rate
    stereo = _stereo_file(tmp_path / "s.wav")
    csv = _manifest(
        tmp_path / "seg.csv",
        [("u1", 0.75, path, 0.5, 1.25), ("u2", 1.0, stereo, 0.25, 1.25)],
        columns=("ID", "duration", "wav", "start", "stop"),
    )
    data = manifest_dataset(csv)
    add_audio_pipeline([data])
    assert torch.equal(data[0]["sig"], part)
    assert len(data[1]["sig"]) == 16000
    # a stop past the end stops at the end; impossible segments are errors
    assert len(audio.load_audio(path, start=1.5, stop=9.0)) == 8000
    with pytest.raises(ValueError, match="a.wav"):
        audio.load_audio(path, start=3.0, stop=4.0)
    with pytest.raises(ValueError, match="after start"):
        audio.load_audio(path, start=1.0, stop=0.5)
