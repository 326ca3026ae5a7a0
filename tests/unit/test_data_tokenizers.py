"""Character and sentencepiece units trained from a manifest, blank at 0."""

import os

import pytest

from speechbrain_wsm.data.manifests import write_manifest
from speechbrain_wsm.data.tokenizers import (
    BLANK,
    CharTokenizer,
    SentencePieceTokenizer,
    load_tokenizer,
    train_bpe_tokenizer,
    train_char_tokenizer,
)

TEXTS = [
    "AND GOD SAID LET THERE BE LIGHT AND THERE WAS LIGHT",
    "HE WAS NOT AN ILL DISPOSED YOUNG MAN",
    "PLEASE ENTER YOUR PASSWORD FOLLOWED BY THE POUND KEY",
    "I'M SORRY THAT'S NOT A VALID EXTENSION",
    "PRESS ONE TO MUTE OR UNMUTE YOURSELF",
] * 8


@pytest.fixture
def manifest(tmp_path):
    rows = [
        dict(ID=f"1-1-{i:04d}", duration=1.0, wav=f"/x/{i}.flac", spk_id="1", wrd=t)
        for i, t in enumerate(TEXTS)
    ]
    path = tmp_path / "data" / "train.csv"
    path.parent.mkdir()
    write_manifest(str(path), rows)
    return str(path)


def test_char_units(manifest):
    tok = train_char_tokenizer(manifest)
    saved = os.path.join(os.path.dirname(manifest), "train_char.txt")
    assert os.path.isfile(saved)
    assert tok.blank_index == 0 and tok.units[0] == BLANK
    assert set("".join(TEXTS)) - {" "} <= set(tok.units)
    for text in TEXTS[:5]:
        ids = tok.encode(text)
        assert 0 not in ids
        assert tok.decode(ids) == text
    assert load_tokenizer(saved).units == tok.units
    assert len(tok) == tok.vocab_size == len(tok.units)


def test_char_unknown_and_ctc(manifest):
    tok = train_char_tokenizer(manifest)
    assert "Q" not in tok.units and tok.encode("Q") == [tok.unk_index]
    ids = tok.encode("LOOK")
    # frame-level output: repeats merged, blanks dropped, blanks separate real doubles
    frames = [0, ids[0], ids[0], 0, ids[1], 0, ids[2], ids[3], ids[3], 0]
    assert tok.decode_ctc(frames) == "LOOK"


def test_bad_char_units():
    with pytest.raises(ValueError, match="<blank>"):
        CharTokenizer(["A", "B"])


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_units(manifest, model_type):
    tok = train_bpe_tokenizer(manifest, vocab_size=60, model_type=model_type)
    saved = os.path.join(os.path.dirname(manifest), f"train_{model_type}60.model")
    assert os.path.isfile(saved)
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.blank_index == 0 and tok.sp.id_to_piece(0) == BLANK
    assert 2 < tok.vocab_size <= 60
    for text in TEXTS[:5]:
        ids = tok.encode(text)
        assert ids and 0 not in ids
        assert tok.decode(ids) == text
        frames = [f for i in ids for f in (i, i, 0)]  # each unit held, then a blank
        assert tok.decode_ctc(frames) == text
    # BPE units are longer than characters on the training text
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0])
    assert isinstance(load_tokenizer(saved), SentencePieceTokenizer)
    assert not [
        n for n in os.listdir(os.path.dirname(manifest)) if n.startswith(".spm-")
    ]


def test_trained_once(manifest, tmp_path):
    tok = train_bpe_tokenizer(
        manifest, vocab_size=40, save_folder=str(tmp_path / "tok")
    )
    path = tok.model_path
    mtime = os.path.getmtime(path)
    again = train_bpe_tokenizer(
        manifest, vocab_size=40, save_folder=str(tmp_path / "tok")
    )
    assert again.model_path == path and os.path.getmtime(path) == mtime
    assert again.encode(TEXTS[1]) == tok.encode(TEXTS[1])


def test_missing_manifest_and_column(tmp_path, manifest):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        train_char_tokenizer(str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="transcript"):
        train_char_tokenizer(manifest, column="transcript")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(str(tmp_path / "missing.model"))
