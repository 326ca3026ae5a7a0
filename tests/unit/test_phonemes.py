"""Phoneme targets from the CMU dictionary, and the phone tokenizer."""

import json

from speechbrain_wsm.data.manifests import read_manifest, write_manifest
from speechbrain_wsm.data.phonemes import (
    load_lexicon,
    phonemize_manifest,
    prepare_librispeech_phonemes,
    words_to_phones,
)
from speechbrain_wsm.data.tokenizers import PhoneTokenizer, load_tokenizer


def test_lexicon_has_39_stressless_phones_and_apostrophes():
    lexicon = load_lexicon()
    phones = {p for pron in lexicon.values() for p in pron.split()}
    assert len(phones) == 39 and not any(c.isdigit() for p in phones for c in p)
    assert words_to_phones("DON'T GO") == "D OW N T G OW"
    assert words_to_phones("hello  world") == "HH AH L OW W ER L D"
    assert words_to_phones("") == ""


def test_phonemize_manifest_skips_and_counts_oov(tmp_path):
    rows = [
        dict(ID="a", duration=1, wav="a.flac", spk_id="1", wrd="THE CAT"),
        dict(ID="b", duration=1, wav="b.flac", spk_id="1", wrd="THE ZQXW CAT ZQXW"),
        dict(ID="c", duration=1, wav="c.flac", spk_id="1", wrd="A DOG"),
    ]
    write_manifest(tmp_path / "w.csv", rows)
    report = phonemize_manifest(str(tmp_path / "w.csv"), str(tmp_path / "p.csv"))
    assert report == {"kept": 2, "skipped": 1, "oov_words": {"ZQXW": 2}}
    out = read_manifest(str(tmp_path / "p.csv"))
    assert [r["ID"] for r in out] == ["a", "c"]
    assert out[0]["wrd"] == "DH AH K AE T" and out[0]["words"] == "THE CAT"
    assert (tmp_path / "p_oov.txt").read_text() == "b ZQXW ZQXW\n"


def test_prepare_librispeech_phonemes_on_the_sample(librispeech_samples, tmp_path):
    report = prepare_librispeech_phonemes(
        str(librispeech_samples), str(tmp_path), te_splits=["test-clean"]
    )
    counts = report["test-clean"]
    assert counts["kept"] + counts["skipped"] == 5
    assert json.loads((tmp_path / "phonemes.json").read_text()) == report
    words = read_manifest(str(tmp_path / "words" / "test-clean.csv"))
    phones = read_manifest(str(tmp_path / "test-clean.csv"))
    assert len(words) == 5 and len(phones) == counts["kept"]
    assert all(p["wrd"] == words_to_phones(p["words"]) for p in phones)


def test_phone_tokenizer_round_trip(tmp_path):
    tok = PhoneTokenizer.from_texts(["DH AH K AE T", "D AO G"])
    assert tok.decode(tok.encode("K AE T")) == "K AE T"
    assert tok.encode("ZZ")[0] == tok.unk_index
    path = str(tmp_path / "units.phones")
    tok.save(path)
    again = load_tokenizer(path)
    assert isinstance(again, PhoneTokenizer) and again.units == tok.units
