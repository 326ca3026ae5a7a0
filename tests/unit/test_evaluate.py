"""``python -m speechbrain_wsm.evaluate``: decoders, scoring on the real LibriVox
fixture (cross-checked with SpeechBrain's ErrorRateStats), checkpoint choice,
and the command line on a recipe folder."""

import shutil
from pathlib import Path

import pytest
import torch
from speechbrain.utils.metric_stats import ErrorRateStats
from tiny_models import make_project_encoder

from speechbrain_wsm.data.librispeech import prepare_librispeech
from speechbrain_wsm.data.tokenizers import CharTokenizer
from speechbrain_wsm.decoding import build_decoder
from speechbrain_wsm.evaluate import main
from speechbrain_wsm.recipe.checkpoints import recover_checkpoint
from speechbrain_wsm.recipe.evaluation import evaluate_manifest, load_recipe, transcribe

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def librivox(tmp_path_factory):
    """The five LibriVox utterances as a manifest, and their character units."""
    out = prepare_librispeech(
        SAMPLES / "LibriSpeech",
        tmp_path_factory.mktemp("ls"),
        te_splits=["test-clean"],
        progress=False,
    )
    manifest = out["test-clean"]
    tok = CharTokenizer.from_texts(["ABCDEFGHIJKLMNOPQRSTUVWXYZ'"])
    path = Path(manifest).parent / "units.txt"
    tok.save(str(path))
    return manifest, tok, path


class FixedText(torch.nn.Module):
    """Spells the same text for every utterance (frames every 20 ms), with
    ``extra`` output units beyond the tokenizer that score highest of all."""

    def __init__(self, tok, text="HE WAS MADE", extra=3):
        super().__init__()
        units = []
        for u in tok.encode(text):
            units += [u, 0]
        self.register_buffer("units", torch.tensor(units))
        self.vocab = len(tok) + extra

    def forward(self, wavs, wav_lens):
        frames = max(len(self.units), wavs.shape[1] // 320)
        scores = torch.full((wavs.shape[0], frames, self.vocab), -20.0)
        scores[:, :, 0] = -1.0  # blank, except where the text is spelt
        scores[:, torch.arange(len(self.units)), self.units] = 0.0
        scores[:, :, -1] = 5.0  # an output unit no tokenizer unit maps to
        return scores.log_softmax(-1), wav_lens


def test_greedy_and_beam_agree_and_ignore_extra_outputs(librivox):
    _, tok, _ = librivox
    model = FixedText(tok)
    log_probs, lens = model(torch.zeros(2, 16000), torch.tensor([1.0, 0.5]))
    greedy = build_decoder(tok, "greedy")(log_probs, lens)
    beam = build_decoder(tok, "beam", beam_size=5)(log_probs, lens)
    assert greedy == beam == ["HE WAS MADE"] * 2
    with pytest.raises(ValueError, match="decoder"):
        build_decoder(tok, "viterbi")


def test_wer_on_librivox_agrees_with_speechbrain(librivox, tmp_path):
    manifest, tok, _ = librivox
    model = FixedText(tok)
    ids, refs, hyps = transcribe(model, build_decoder(tok), manifest)
    assert len(ids) == 5 and set(hyps) == {"HE WAS MADE"}
    summary = evaluate_manifest(model, tok, manifest, str(tmp_path / "wer_x.txt"))
    stats = ErrorRateStats()
    stats.append(ids, [h.split() for h in hyps], [r.split() for r in refs])
    expected = stats.summarize()
    assert summary["num_edits"] == expected["num_edits"]
    assert summary["WER"] == pytest.approx(expected["WER"])
    text = (tmp_path / "wer_x.txt").read_text()
    assert text.startswith(f"%WER {expected['WER']:.2f} [ {expected['num_edits']} /")
    assert all(uid in text for uid in ids)


def _run_folder(root: Path, encoder: str, units: Path) -> Path:
    """A recipe output folder following the evaluation contract."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hyperparams.yaml").write_text(
        f"""\
ssl_source: {encoder}
output_folder: {root}
tokenizer_file: {units}
decoder: greedy
head_size: 31
ssl_encoder: !apply:speechbrain_wsm.models.ssl.load_ssl_encoder
    ssl_source: !ref <ssl_source>
probe: !new:torch.nn.Sequential
    - !new:torch.nn.Linear [16, !ref <head_size>]
    - !new:torch.nn.LogSoftmax {{dim: -1}}
asr_model: !new:speechbrain_wsm.models.ssl.SSLProbe
    ssl_encoder: !ref <ssl_encoder>
    head: !ref <probe>
checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer
    checkpoints_dir: !ref <output_folder>/save
    recoverables:
        probe: !ref <probe>
"""
    )
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory, librivox):
    """A run folder with three checkpoints: WER 30 (oldest), 10, 20 (latest)."""
    _, _, units = librivox
    tmp = tmp_path_factory.mktemp("run")
    encoder = make_project_encoder(tmp / "w2v2")
    folder = _run_folder(tmp / "run", encoder, units)
    hparams, _ = load_recipe(folder)
    linear = hparams["probe"][0]
    for i, wer in enumerate((30.0, 10.0, 20.0)):
        with torch.no_grad():
            linear.bias.fill_(float(i))
        hparams["checkpointer"].save_checkpoint(meta={"WER": wer})
    return folder


def _bias(hparams):
    return hparams["probe"][0].bias[0].item()


def test_recover_picks_best_latest_or_named(run):
    hparams, folder = load_recipe(run)
    recover_checkpoint(hparams["checkpointer"], "best")
    assert _bias(hparams) == 1.0
    recover_checkpoint(hparams["checkpointer"], "latest")
    assert _bias(hparams) == 2.0
    oldest = sorted((run / "save").glob("CKPT+*"))[0]
    recover_checkpoint(hparams["checkpointer"], str(oldest))
    assert _bias(hparams) == 0.0
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        recover_checkpoint(hparams["checkpointer"], str(run))


def test_command_line_scores_a_run_folder(run, librivox, tmp_path, capsys):
    manifest, _, _ = librivox
    results = main(
        [str(run), "--manifest", manifest, "--name", "clean", "--decoder", "beam",
         "--beam_size", "3", "--output_folder", str(tmp_path)]
    )  # fmt: skip
    text = (tmp_path / "wer_clean.txt").read_text().splitlines()
    assert text[0].startswith("%WER") and results["clean"]["num_scored_tokens"] == 71
    out = capsys.readouterr().out
    assert "clean: %CER" in out and "%WER" in out
    # the CER file scores characters (spaces as "_") of the same hypotheses
    cer = (tmp_path / "cer_clean.txt").read_text().splitlines()
    assert (
        cer[0].startswith("%WER")
        and results["clean"]["cer_summary"]["num_scored_tokens"] > 71 * 3
    )
    # the same with the run moved elsewhere, and an override of a YAML key
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    hparams = (moved / "hyperparams.yaml").read_text()
    (moved / "hyperparams.yaml").write_text(
        hparams.replace(f"output_folder: {run}", f"output_folder: {tmp_path / 'gone'}")
    )
    shutil.rmtree(moved / "save")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main([str(moved), "--manifest", manifest])
    shutil.copytree(run / "save", moved / "save", dirs_exist_ok=True)
    again = main(
        [str(moved), "--manifest", manifest, "--decoder", "beam", "--beam_size", "3",
         "--head_size=31"]
    )  # fmt: skip
    assert (moved / "wer_test-clean.txt").is_file()
    assert again["test-clean"]["WER"] == results["clean"]["WER"]
    with pytest.raises(ValueError, match="unknown override"):
        main([str(moved), "--manifest", manifest, "--no_such_key=3"])


def test_contract_keys_are_checked(tmp_path):
    (tmp_path / "hyperparams.yaml").write_text("a: 1\n")
    with pytest.raises(KeyError, match="asr_model"):
        load_recipe(tmp_path)
    with pytest.raises(FileNotFoundError, match="hyperparams.yaml"):
        load_recipe(tmp_path / "nothing")


def test_a_copied_run_folder_loads_its_own_checkpoints(run, tmp_path):
    # issue 24 item 6: hyperparams.yaml records the run's absolute
    # output_folder, and a copy loaded the original run's checkpoints
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    newest = sorted((copy / "save").glob("CKPT+*"))[-1]
    shutil.rmtree(newest)  # the copy differs: its latest is the second
    hparams, folder = load_recipe(copy)
    assert folder == copy and hparams["output_folder"] == str(copy.resolve())
    assert Path(hparams["checkpointer"].checkpoints_dir).parent == copy.resolve()
    recover_checkpoint(hparams["checkpointer"], "latest")
    assert _bias(hparams) == 1.0  # the original's latest has bias 2.0


def test_beam_size_zero_is_a_user_error_naming_the_option(run, librivox):
    # issue 24 item 7: ZeroDivisionError deep in the beam search before
    from speechbrain_wsm.errors import UserError

    manifest, _, _ = librivox
    with pytest.raises(UserError, match=r"^--beam_size=0: the beam must keep"):
        main(
            [str(run), "--manifest", manifest, "--decoder", "beam", "--beam_size", "0"]
        )
