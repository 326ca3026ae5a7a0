"""Word n-gram LMs built with KenLM's lmplz, and lexicon-constrained decoding.

The LM builder leaves out every dev/test sentence; the lexicon decoder
(flashlight, through torchaudio's ``ctc_decoder``) turns CTC scores whose
greedy reading is a non-word into the lexicon word the LM prefers, and only
ever outputs lexicon words; ``evaluate`` and ``transcribe`` select it with
``--decoder lexicon --kenlm LM --lexicon FILE``; missing files are one-line
errors.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_evaluate import librivox, run  # noqa: F401 (the trained run fixture)

from speechbrain_wsm.data.lm import (
    KenLMNotFoundError,
    build_word_lm,
    find_kenlm_program,
    kjv_sentences,
    read_lexicon_words,
    remove_sentences,
)
from speechbrain_wsm.data.manifests import read_manifest, write_manifest
from speechbrain_wsm.data.tokenizers import CharTokenizer, train_bpe_tokenizer
from speechbrain_wsm.decoding import build_decoder
from speechbrain_wsm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _lmplz_or_skip():
    try:
        find_kenlm_program("lmplz")
    except KenLMNotFoundError as e:
        pytest.skip(f"KenLM lmplz not built (bash scripts/build_kenlm.sh): {e}")


def _flashlight_or_skip():
    if importlib.util.find_spec("flashlight") is None:
        pytest.skip("flashlight-text not installed (pip install -e '.[lm]')")


TEXT = [
    "The cat sat on the mat.",
    "The dog sat on the log!",
    "A cat and a dog sat.",
    "The cat saw the dog.",
    "On the mat sat the cat",
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    _lmplz_or_skip()
    return build_word_lm(TEXT, tmp_path_factory.mktemp("lm"), order=3)


def _manifest(path, sentences):
    rows = [
        dict(ID=f"u{i}", duration=1.0, wav="x.flac", spk_id="1", wrd=s)
        for i, s in enumerate(sentences)
    ]
    write_manifest(str(path), rows)
    return str(path)


def test_lm_and_lexicon_from_text(tiny_lm):
    arpa, lexicon = map(Path, tiny_lm)
    text = arpa.read_text()
    assert text.startswith("\\data\\") and "\\3-grams:" in text
    unigrams = text.split("\\1-grams:")[1].split("\\2-grams:")[0]
    words = {line.split("\t")[1] for line in unigrams.strip().splitlines()}
    expected = {w for s in TEXT for w in s.upper().strip(".!").split()}
    assert words == expected | {"<s>", "</s>", "<unk>"}  # normalised text
    entries = dict(line.split("\t") for line in lexicon.read_text().splitlines())
    assert set(entries) == expected and entries["CAT"] == "C A T"
    # the same text and options again: reused, not rebuilt
    stamp = arpa.stat().st_mtime_ns
    assert build_word_lm(TEXT, arpa.parent) == tuple(map(str, tiny_lm))
    assert arpa.stat().st_mtime_ns == stamp


def test_evaluation_sentences_are_left_out(tmp_path):
    _lmplz_or_skip()
    dev = _manifest(tmp_path / "dev.csv", ["THE ZEBRA RAN HOME"])
    test = _manifest(tmp_path / "test.csv", ["A DOG SAT"])
    lines = [*TEXT, "the zebra ran home", "Then the zebra ran home, slowly.", "ZEBRA"]
    lm, lexicon = build_word_lm(lines, tmp_path / "lm", exclude_manifests=[dev, test])
    kept = (tmp_path / "lm" / "lm_text.txt").read_text().splitlines()
    # the sentence itself, a longer line holding it, and "A CAT AND A DOG SAT."
    # which holds the test sentence, are gone; the lone word ZEBRA stays
    assert kept == [
        "THE CAT SAT ON THE MAT",
        "THE DOG SAT ON THE LOG",
        "THE CAT SAW THE DOG",
        "ON THE MAT SAT THE CAT",
        "ZEBRA",
    ]
    for sentence in ("THE ZEBRA RAN HOME", "A DOG SAT"):
        assert not any(f" {sentence} " in f" {line} " for line in kept)
    assert "RAN" not in read_lexicon_words(lexicon)
    assert "RAN" not in Path(lm).read_text().split()
    with pytest.raises(ValueError, match="no sentence"):
        build_word_lm(["a dog sat"], tmp_path / "none", exclude_manifests=[test])


def test_remove_sentences_is_word_bounded():
    kept, dropped = remove_sentences(
        ["CATS SAT ON IT", "THE CAT SAT ON IT", "CAT SAT"], ["CAT SAT ON"]
    )
    assert kept == ["CATS SAT ON IT", "CAT SAT"] and dropped == 1


@pytest.mark.skipif(shutil.which("bible") is None, reason="needs bible-kjv (Debian)")
def test_kjv_text_holds_no_dev_or_test_sentence(tmp_path):
    from speechbrain_wsm.data.synthetic.texts import read_bible_verses, split_sentences

    pools = split_sentences(read_bible_verses(), seed=0)
    held_out = [s.words for split in ("dev", "test") for s in pools[split]]
    train = pools["train"][0].words
    manifest = _manifest(tmp_path / "extra.csv", [train])
    text = kjv_sentences(exclude_manifests=[manifest], seed=0)
    assert len(text) > 20000
    _, dropped = remove_sentences(text, [*held_out, train])
    assert dropped == 0
    # without the seed, only the manifest's sentence goes
    everything = kjv_sentences()
    assert len(everything) > len(text) and held_out[0] in everything


def test_lm_builder_command_line_errors(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "speechbrain_wsm.data.lm", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    missing = cli(str(tmp_path / "lm"), str(tmp_path / "nothing.txt"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: text file '{tmp_path / 'nothing.txt'}' not found"
    ]
    (tmp_path / "t.txt").write_text("hello there\n")
    bad = cli(str(tmp_path / "lm"), str(tmp_path / "t.txt"), "--exclude", "no.csv")
    assert bad.stderr.strip().splitlines()[-1] == "error: manifest 'no.csv' not found"
    order = cli(str(tmp_path / "lm"), str(tmp_path / "t.txt"), "--order", "9")
    assert order.stderr.strip().splitlines()[-1].startswith("error: order must be")


def _spelled(tok, units, typo=None):
    """CTC log-probs spelling ``units`` (each unit then a blank frame); at
    ``typo = (position, unit)`` that unit outscores the right one."""
    frames = []
    for i, u in enumerate(units):
        p = torch.full((len(tok),), 0.01)
        p[u] = 1.0
        if typo and i == typo[0]:
            p[u], p[typo[1]] = 0.35, 0.6
        blank = torch.full((len(tok),), 0.01)
        blank[0] = 1.0
        frames += [p, blank]
    x = torch.stack(frames)[None]
    return (x / x.sum(-1, keepdim=True)).log()


def test_lm_decoders_recover_the_word_greedy_misspells(tiny_lm):
    _flashlight_or_skip()
    lm, lexicon = tiny_lm
    tok = CharTokenizer.from_texts(["THE CAT SAT ON MAT DOG LOG Z"])
    units = tok.encode("THE CAT SAT")
    log_probs = _spelled(tok, units, typo=(6, tok.encode("Z")[0]))
    assert build_decoder(tok)(log_probs) == ["THE CAZ SAT"]
    lexicon_decode = build_decoder(tok, "lexicon", 10, lm, lexicon=lexicon)
    assert lexicon_decode(log_probs) == ["THE CAT SAT"]
    # a batch with relative lengths: the second utterance stops after "THE CAT"
    batch = torch.cat([log_probs, log_probs])
    assert lexicon_decode(batch, torch.tensor([1.0, 14 / 22])) == [
        "THE CAT SAT",
        "THE CAT",
    ]
    # the prefix beam search with the same LM (kenlm's Python module)
    if importlib.util.find_spec("kenlm") is None:
        pytest.skip("kenlm Python module not installed (pip install -e '.[lm]')")
    assert build_decoder(tok, "beam", 10)(log_probs) == ["THE CAZ SAT"]
    assert build_decoder(tok, "beam", 10, lm)(log_probs) == ["THE CAT SAT"]


def test_lexicon_decoder_only_outputs_lexicon_words(tiny_lm):
    _flashlight_or_skip()
    lm, lexicon = tiny_lm
    words = set(read_lexicon_words(lexicon))
    tok = CharTokenizer.from_texts(["ABCDEFGHIJKLMNOPQRSTUVWXYZ'"])
    torch.manual_seed(0)
    log_probs = (3 * torch.randn(4, 60, len(tok))).log_softmax(-1)
    greedy = build_decoder(tok)(log_probs)
    hyps = build_decoder(tok, "lexicon", 8, lm, lexicon=lexicon)(log_probs)
    assert any(set(h.split()) - words for h in greedy)
    assert all(set(h.split()) <= words for h in hyps) and any(hyps)


def test_lexicon_decoding_with_sentencepiece_units(tiny_lm, tmp_path):
    _flashlight_or_skip()
    lm, lexicon = tiny_lm
    manifest = _manifest(tmp_path / "train.csv", [s.upper() for s in TEXT] * 8)
    tok = train_bpe_tokenizer(manifest, vocab_size=24)
    log_probs = _spelled(tok, tok.encode("THE DOG SAT ON THE LOG"))
    decode = build_decoder(tok, "lexicon", 10, lm, lexicon=lexicon)
    assert decode(log_probs) == ["THE DOG SAT ON THE LOG"]


def test_missing_lm_or_lexicon_is_a_config_error(tiny_lm, tmp_path):
    lm, lexicon = tiny_lm
    tok = CharTokenizer.from_texts(["AB"])
    with pytest.raises(ConfigError, match="needs --lexicon"):
        build_decoder(tok, "lexicon", kenlm_model_path=lm)
    with pytest.raises(ConfigError, match="needs --kenlm"):
        build_decoder(tok, "lexicon", lexicon=lexicon)
    with pytest.raises(ConfigError, match="not found"):
        build_decoder(tok, "beam", kenlm_model_path=str(tmp_path / "no.arpa"))


def test_evaluate_and_transcribe_decode_with_the_lexicon(
    run,  # noqa: F811
    librivox,  # noqa: F811
    tmp_path,
    capsys,
):
    """On a run folder (a random SSL probe): ``--decoder lexicon`` scores and
    transcribes with lexicon words only, where greedy spells non-words."""
    _lmplz_or_skip()
    _flashlight_or_skip()
    from speechbrain_wsm.evaluate import main as evaluate_main
    from speechbrain_wsm.transcribe import Transcriber
    from speechbrain_wsm.transcribe import main as transcribe_main

    manifest, _, _ = librivox
    refs = [row["wrd"] for row in read_manifest(manifest)]
    words = sorted({w for r in refs for w in r.split()})
    # an LM over the test words, none of the test sentences in it
    lm, lexicon = build_word_lm(
        [" ".join(words[i : i + 4]) for i in range(0, len(words), 2)],
        tmp_path / "lm",
        order=2,
        exclude_manifests=[manifest],
    )
    flags = ["--decoder", "lexicon", "--kenlm", lm, "--lexicon", lexicon]
    results = evaluate_main(
        [str(run), "--manifest", manifest, "--name", "lex", "--beam_size", "8",
         "--output_folder", str(tmp_path), *flags]
    )  # fmt: skip
    assert (tmp_path / "wer_lex.txt").read_text().startswith("%WER")
    assert results["lex"]["num_scored_tokens"] == sum(len(r.split()) for r in refs)
    wavs = [row["wav"] for row in read_manifest(manifest)]
    lexicon_words = set(read_lexicon_words(lexicon))
    greedy = Transcriber.from_run(run).transcribe_files(wavs)
    assert any(set(h.split()) - lexicon_words for h in greedy)
    capsys.readouterr()
    assert transcribe_main([str(run), *wavs, *flags, "--beam_size", "8"]) == 0
    printed = [line.split("\t", 1) for line in capsys.readouterr().out.splitlines()]
    assert [p for p, _ in printed] == wavs
    assert all(set(text.split()) <= lexicon_words for _, text in printed)
    # a missing lexicon is a one-line error before any model loads
    with pytest.raises(ConfigError, match="lexicon 'gone.txt' not found"):
        evaluate_main(
            [str(run), "--manifest", manifest, *flags[:4], "--lexicon", "gone.txt"]
        )


def test_ctc_recipe_yamls_have_the_lm_decoding_keys():
    keys = ("beam_size", "kenlm_model_path", "lexicon", "lm_weight", "word_bonus")
    yamls = [
        *ROOT.glob("recipes/LibriSpeech/ASR/*/hparams/*.yaml"),
        *ROOT.glob("recipes/MP3S/*/*/hparams/*.yaml"),
    ]
    ctc = [y for y in yamls if "\ndecoder: " in y.read_text()]
    assert len(ctc) >= 19
    for path in ctc:
        lines = path.read_text().splitlines()
        for key in keys:
            assert any(line.startswith(f"{key}: ") for line in lines), (path, key)


def test_missing_lexicon_is_one_error_line_on_the_command_line(
    run,  # noqa: F811
    librivox,  # noqa: F811
    tiny_lm,
):
    manifest, _, _ = librivox
    lm, _ = tiny_lm
    for tool, args in (
        ("evaluate", ["--manifest", manifest]),
        ("transcribe", ["a.wav"]),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", f"speechbrain_wsm.{tool}", str(run), *args,
             "--decoder", "lexicon", "--kenlm", lm, "--lexicon", "gone.txt"],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, tool
        assert proc.stderr.strip().splitlines()[-1] == (
            "error: lexicon 'gone.txt' not found (--lexicon); build one with "
            "python -m speechbrain_wsm.data.lm"
        ), tool
