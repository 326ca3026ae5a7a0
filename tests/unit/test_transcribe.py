"""``python -m speechbrain_wsm.transcribe``: the transcript of a file is what
``recipe.evaluation.transcribe`` decodes for the same audio in a manifest (any rate), and
a missing file is reported while the others are still printed."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_evaluate import librivox, run  # noqa: F401 (the trained run fixture)

from speechbrain_wsm.data.audio import load_audio
from speechbrain_wsm.data.manifests import read_manifest
from speechbrain_wsm.data.tokenizers import load_tokenizer
from speechbrain_wsm.decoding import build_decoder
from speechbrain_wsm.recipe.checkpoints import recover_checkpoint
from speechbrain_wsm.recipe.evaluation import load_recipe, transcribe
from speechbrain_wsm.transcribe import Transcriber, main


@pytest.fixture(scope="module")
def files(librivox, tmp_path_factory):  # noqa: F811
    """The LibriVox flacs, one of them also as a 22.05 kHz stereo WAV."""
    manifest, _, _ = librivox
    flacs = [row["wav"] for row in read_manifest(manifest)]
    import torchaudio.functional as AF

    data, rate = sf.read(flacs[0], dtype="float32")
    wav22 = AF.resample(torch.from_numpy(data), rate, 22050).numpy()
    path = tmp_path_factory.mktemp("audio") / "stereo22k.wav"
    sf.write(str(path), np.stack([wav22, 0.5 * wav22], axis=1), 22050)
    return flacs + [str(path)]


def _evaluate_transcripts(run_folder: Path, paths, folder: Path) -> dict[str, str]:
    """What ``recipe.evaluation.transcribe`` decodes for ``paths`` put in a manifest."""
    manifest = folder / "mine.csv"
    lines = ["ID,duration,wav,wrd"]
    for i, path in enumerate(paths):
        seconds = len(load_audio(path)) / 16000
        lines.append(f"u{i},{seconds},{path},X")
    manifest.write_text("\n".join(lines) + "\n")
    hparams, run_folder = load_recipe(run_folder)
    recover_checkpoint(hparams["checkpointer"], "best", run_folder)
    decode = build_decoder(load_tokenizer(hparams["tokenizer_file"]))
    ids, _, hyps = transcribe(hparams["asr_model"], decode, str(manifest))
    return {paths[int(uid[1:])]: hyp for uid, hyp in zip(ids, hyps, strict=True)}


def test_transcripts_equal_what_evaluate_decodes(run, files, tmp_path):  # noqa: F811
    expected = _evaluate_transcripts(run, files, tmp_path)
    asr = Transcriber.from_run(run)
    assert asr.sample_rate == 16000
    got = asr.transcribe_files(files, batch_size=8)
    assert got == [expected[p] for p in files]
    assert any(text for text in got)  # the random model does spell something
    # one file alone, the 22.05 kHz stereo one included
    for path in (files[0], files[-1]):
        single = asr.transcribe_file(path)
        assert single == _evaluate_transcripts(run, [path], tmp_path)[path]


def test_command_line_reports_missing_files_and_goes_on(run, files, capsys):  # noqa: F811
    missing = str(Path(files[0]).parent / "no-such-file.flac")
    status = main([str(run), files[-1], missing, files[1], "--batch_size", "2"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert status == 1
    assert [line.split("\t")[0] for line in lines] == [files[-1], files[1]]
    asr = Transcriber.from_run(run)
    assert lines[0] == f"{files[-1]}\t{asr.transcribe_file(files[-1])}"
    assert "no-such-file.flac" in err and "1 of 3 file(s) failed" in err
    with pytest.raises(FileNotFoundError, match="no-such-file.flac"):
        asr.transcribe_file(missing)
    assert main([str(run), files[0], "--decoder=beam", "--beam_size", "3"]) == 0


def test_a_clip_the_model_cannot_take_fails_alone(tmp_path, capsys, monkeypatch):
    # issue 24 item 5: a clip too short for the model raised and lost the
    # other files of the command
    import speechbrain_wsm.transcribe as transcribe_module
    from speechbrain_wsm.data.tokenizers import CharTokenizer

    tok = CharTokenizer.from_texts(["A"])
    asr = Transcriber(_LocalModel(tok), build_decoder(tok))
    monkeypatch.setattr(
        transcribe_module.Transcriber, "from_run", classmethod(lambda *a, **k: asr)
    )
    paths = []
    for name, samples in (("a", 16000), ("click", 800), ("b", 24000)):
        paths.append(str(tmp_path / f"{name}.wav"))
        sf.write(paths[-1], 0.5 * np.ones(samples, dtype="float32"), 16000)
    status = main(["run", *paths, "--batch_size", "1"])
    out, err = capsys.readouterr()
    assert status == 1
    assert out.splitlines() == [f"{paths[0]}\tA", f"{paths[2]}\tA"]
    (line,) = [e for e in err.splitlines() if e.startswith("error: ")]
    assert line == (
        f"error: {paths[1]}: ValueError: 800 samples are too few for the front end"
    )
    assert "Traceback" not in err and "1 of 3 file(s) failed" in err


class _LocalModel(torch.nn.Module):
    """One frame per 320 samples, 'A' where the frame is loud, else blank;
    too few samples raise, as a front end does; remembers the longest input."""

    def __init__(self, tokenizer):
        super().__init__()
        self.unit = tokenizer.encode("A")[0]
        self.longest = 0

    def forward(self, wavs, wav_lens):
        if wavs.shape[1] < 1600:
            raise ValueError(f"{wavs.shape[1]} samples are too few for the front end")
        self.longest = max(self.longest, wavs.shape[1])
        frames = wavs[:, : wavs.shape[1] // 320 * 320].reshape(len(wavs), -1, 320)
        loud = frames.abs().mean(-1) > 0.05
        lp = torch.full((*loud.shape, self.unit + 1), -9.0)
        lp[..., 0] = torch.where(loud, -9.0, 0.0)
        lp[..., self.unit] = torch.where(loud, 0.0, -9.0)
        return lp, wav_lens


def test_long_files_are_decoded_in_overlapping_windows():
    from speechbrain_wsm.data.tokenizers import CharTokenizer

    tok = CharTokenizer.from_texts(["A"])
    model = _LocalModel(tok)
    torch.manual_seed(0)
    # 10 minutes: bursts of 0.1-1 s of sound between silences
    wav = torch.zeros(600 * 16000)
    start = 0
    while start < len(wav):
        burst = int(torch.randint(1600, 16000, ()))
        wav[start : start + burst] = 0.5
        start += burst + int(torch.randint(1600, 16000, ()))
    windowed = Transcriber(model, build_decoder(tok), window_seconds=30)
    assert windowed.transcribe_batch(wav[None])[0] == windowed.transcribe_long(wav)
    model.longest = 0
    text = windowed.transcribe_long(wav)
    assert model.longest == 30 * 16000  # never more than one window at once
    assert text.count("A") > 100
