"""``python -m speechbrain_wsm.transcribe``: the transcript of a file is what
``evaluate.transcribe`` decodes for the same audio in a manifest (any rate), and
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
from speechbrain_wsm.evaluate import (
    load_recipe,
    recover_checkpoint,
    transcribe,
)
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
    """What ``evaluate.transcribe`` decodes for ``paths`` put in a manifest."""
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
