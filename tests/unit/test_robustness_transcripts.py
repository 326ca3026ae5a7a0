"""Transcripts are normalised at preparation, and manifests and units follow the
content they were built from (issue 12, item 6)."""

import csv
import json
import os
import time

from speechbrain_wsm.data.librispeech import prepare_librispeech
from speechbrain_wsm.data.tokenizers import prepare_tokenizer


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return {r["ID"]: r["wrd"] for r in csv.DictReader(f)}


def _split(make, tmp_path):
    return make(
        tmp_path / "LibriSpeech" / "dev-clean",
        [
            ("1-2-0", "Hello, world!"),
            ("1-2-1", "he paid 42 dollars in café"),
            ("1-2-2", "日本"),  # nothing a LibriSpeech unit can spell
        ],
    )


def test_preparation_normalises_and_counts_what_it_cannot(
    make_librispeech_split, tmp_path
):
    _split(make_librispeech_split, tmp_path)
    out = prepare_librispeech(
        tmp_path / "LibriSpeech", tmp_path / "prep", dev_splits=["dev-clean"],
        progress=False,
    )  # fmt: skip
    rows = _rows(out["dev-clean"])
    assert rows == {
        "1-2-0": "HELLO WORLD",
        "1-2-1": "HE PAID FORTY TWO DOLLARS IN CAFE",
    }
    summary = json.loads((tmp_path / "prep" / "dev-clean.json").read_text())
    assert "unusable_transcript" in json.dumps(summary)
    assert "1-2-2" in (tmp_path / "prep" / "dev-clean_skipped.txt").read_text()


def test_fixed_transcripts_prepare_the_split_again(make_librispeech_split, tmp_path):
    folder = _split(make_librispeech_split, tmp_path)
    args = (tmp_path / "LibriSpeech", tmp_path / "prep")
    out = prepare_librispeech(*args, dev_splits=["dev-clean"], progress=False)
    trans = folder / "1" / "2" / "1-2.trans.txt"
    text = trans.read_text().replace("Hello, world!", "Goodbye world")
    time.sleep(0.01)
    trans.write_text(text)
    os.utime(trans)  # a new modification time, as any edit gives
    out = prepare_librispeech(*args, dev_splits=["dev-clean"], progress=False)
    assert _rows(out["dev-clean"])["1-2-0"] == "GOODBYE WORLD"


def test_units_are_built_again_from_fixed_transcripts(tmp_path):
    manifest = tmp_path / "train.csv"
    header = "ID,duration,wav,spk_id,wrd\n"
    manifest.write_text(header + "a,1.0,x.wav,1,Hello world\n")  # a stale manifest
    units = str(tmp_path / "units.txt")
    stale = prepare_tokenizer(str(manifest), units)
    assert "e" in stale.units
    manifest.write_text(header + "a,1.0,x.wav,1,HELLO WORLD\n")  # prepared again
    fixed = prepare_tokenizer(str(manifest), units)
    assert "e" not in fixed.units and "E" in fixed.units
    assert prepare_tokenizer(str(manifest), units).units == fixed.units  # kept now


def test_units_are_kept_when_loaded_without_the_build_options(tmp_path):
    # a recipe builds with its options, then loads with the defaults
    manifest = tmp_path / "train.csv"
    manifest.write_text("ID,duration,wav,spk_id,wrd\na,1.0,x.wav,1,AB BA\n")
    units = str(tmp_path / "units.txt")
    built = prepare_tokenizer(str(manifest), units, "char", 40, max_units=40)
    before = os.path.getmtime(units)
    assert prepare_tokenizer(str(manifest), units, "char").units == built.units
    assert os.path.getmtime(units) == before
