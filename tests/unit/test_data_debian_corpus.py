"""The real-speech corpus built from Debian packages (Asterisk prompts, LibriVox)."""

import csv
import gzip
import json
import os
import random

import numpy as np
import pytest
import soundfile as sf

from speechbrain_wsm.data import _system
from speechbrain_wsm.data import debian_corpus as dc
from speechbrain_wsm.data import synthetic as syn
from speechbrain_wsm.data._system import MissingPackageError
from speechbrain_wsm.data.debian_corpus import build as dc_build
from speechbrain_wsm.data.librispeech import prepare_librispeech

MISSING = dc.missing_packages()
needs_packages = pytest.mark.skipif(
    bool(MISSING), reason=f"Debian packages not installed: {', '.join(MISSING)}"
)
needs_pocketsphinx = pytest.mark.skipif(
    not os.path.isfile(os.path.join(dc.LIBRIVOX_DIR, "transcription")),
    reason="Debian package pocketsphinx-testdata not installed",
)

# A few prompts of every kind: kept, identical text, tones, silence, notes, acronyms.
SUBSET = [
    "hello-world",
    "invalid",
    "pbx-invalid",
    "auth-thankyou",
    "conf-full",
    "agent-pass",
    "agent-newlocation",
    "vm-next",
    "vm-delete",
    "digits/7",
    "digits/20",
    "letters/at",
    "beep",
    "silence/1",
    "spy-sip",
    "vm-intro",
]


def test_clean_prompt_rules():
    keep = {
        "Press 7 to delete this message.": "PRESS SEVEN TO DELETE THIS MESSAGE",
        "at [@]": "AT",
        "I'm sorry, that's not a valid extension.": "I'M SORRY THAT'S NOT A VALID EXTENSION",
        "press 3 to mute or umute all users": "PRESS THREE TO MUTE OR UNMUTE ALL USERS",
        "the Asterisk Open Source PBX.": "THE ASTERISK OPEN SOURCE P B X",
    }
    for text, words in keep.items():
        assert dc.clean_asterisk_prompt("x", text) == (words, "ok")
    drop = {
        "[sound of monkeys screaming]": "non_speech",
        "<beep ascending>": "non_speech",
        "When done press pound. (simple tone sound plays)": "annotated",
        "visit www.asterisk.org.": "web_address",
        "dial 1234 now": "ambiguous_number",
        "a 28.8 kilobit modem": "ambiguous_number",
        "H.323": "ambiguous_number",
        "3D audio": "ambiguous_number",
        "SIP": "ambiguous_acronym",
        "...": "empty",
    }
    for text, reason in drop.items():
        assert dc.clean_asterisk_prompt("x", text) == (None, reason)
    assert dc.clean_asterisk_prompt("silence/3", "three seconds")[1] == "non_speech"


def test_read_transcripts(tmp_path):
    text = "; Core sounds\n\nhello-world: Hello world.\ndigits/1: one\nodd line\n"
    plain = tmp_path / "t.txt"
    plain.write_text(text)
    packed = tmp_path / "t.txt.gz"
    with gzip.open(packed, "wt") as f:
        f.write(text)
    expected = {"hello-world": "Hello world.", "digits/1": "one"}
    assert dc.read_asterisk_transcripts(str(plain)) == expected
    assert dc.read_asterisk_transcripts(str(packed)) == expected


def test_split_shares_no_sentence():
    rng = random.Random(0)
    phrases = [f"PHRASE {w}" for w in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    prompts = []
    for i in range(120):
        parts = rng.sample(phrases, rng.randint(1, 2))
        raw = ". ".join(p.lower() for p in parts) + "."
        prompts.append(
            dc.Prompt(f"1-1-{i:04d}", " ".join(parts), "", rng.uniform(0.5, 5), raw)
        )
    for seed in range(3):
        ft, te = dc.split_prompts(prompts, 60.0, seed)
        assert sorted(p.uid for p in ft + te) == sorted(p.uid for p in prompts)
        assert not set().union(*map(dc.prompt_sentences, ft)) & set().union(
            *map(dc.prompt_sentences, te)
        )
        assert dc.split_prompts(prompts, 60.0, seed) == (ft, te)
        if te:  # filled up to the target unless everything is linked together
            assert sum(p.duration for p in ft) >= 60.0 or not ft


def test_missing_packages_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(_system.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(
        MissingPackageError, match="asterisk-core-sounds-en-g722"
    ) as info:
        dc.build_debian_corpus(
            str(tmp_path / "out"),
            asterisk_sounds=str(tmp_path / "none"),
            progress=False,
        )
    assert "apt-get install" in str(info.value)
    with pytest.raises(MissingPackageError, match="'asterisk-core-sounds-en'"):
        dc.read_asterisk_transcripts(str(tmp_path / "none.txt.gz"))
    with pytest.raises(MissingPackageError, match="pocketsphinx-testdata"):
        dc.read_librivox_transcripts(str(tmp_path))
    monkeypatch.setattr(_system.shutil, "which", lambda name: None)
    with pytest.raises(MissingPackageError, match="'ffmpeg'"):
        dc.build_debian_corpus(str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("build", [dc.build_debian_corpus, syn.build_synthetic_corpus])
def test_builders_name_a_misspelt_option(build, tmp_path):
    with pytest.raises(TypeError, match=rf"{build.__name__}\(\).*'sed'"):
        build(str(tmp_path / "out"), sed=1)
    assert not (tmp_path / "out").exists()


def test_cli_reports_missing_package(tmp_path, capsys):
    code = dc.main(["--out", str(tmp_path), "--asterisk_sounds", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert "asterisk-core-sounds-en-g722" in err or "'ffmpeg'" in err


@needs_pocketsphinx
def test_sample_fixture_is_the_builders_librivox_output(tmp_path, librispeech_samples):
    written = dc.build_librivox_split(str(tmp_path))
    fixture = librispeech_samples / "test-clean"
    assert {p.uid for p in written} == {f.stem for f in fixture.rglob("*.flac")}
    for prompt in written:
        spk, chap, _ = prompt.uid.split("-")
        ours, rate = sf.read(
            tmp_path / spk / chap / f"{prompt.uid}.flac", dtype="int16"
        )
        theirs, rate2 = sf.read(
            fixture / spk / chap / f"{prompt.uid}.flac", dtype="int16"
        )
        assert rate == rate2 == 16000 and np.array_equal(ours, theirs)
    trans = "10002/1/10002-1.trans.txt"
    assert (tmp_path / trans).read_text() == (fixture / trans).read_text()


@pytest.fixture
def small_sources(tmp_path):
    """A subset of the installed Asterisk prompts, to build quickly."""
    sounds = tmp_path / "sounds"
    lines = ["; subset"]
    full = dc.read_asterisk_transcripts()
    for name in SUBSET:
        src = os.path.join(dc.ASTERISK_SOUNDS, name + ".g722")
        dst = sounds / (name + ".g722")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, dst)
        lines.append(f"{name}: {full[name]}")
    lines.append("not-recorded: A prompt without audio.")
    transcripts = tmp_path / "core-sounds-en.txt"
    transcripts.write_text("\n".join(lines) + "\n")
    return str(sounds), str(transcripts)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_packages
def test_build_small_corpus(tmp_path, small_sources, monkeypatch):
    sounds, transcripts = small_sources
    out = tmp_path / "real"

    def build():
        return dc.build_debian_corpus(
            str(out),
            finetune_minutes=0.05,
            asterisk_sounds=sounds,
            asterisk_transcripts=transcripts,
            progress=False,
        )

    summary = build()
    assert summary["left_out"] == {
        "non_speech": 2,
        "annotated": 1,
        "ambiguous_acronym": 1,
        "no_audio": 1,
    }
    manifests = prepare_librispeech(
        str(out / "LibriSpeech"),
        str(tmp_path / "save"),
        tr_splits=[dc.FINETUNE_SPLIT],
        te_splits=[dc.TEST_SPLIT],
        progress=False,
    )
    train = read_rows(manifests[dc.FINETUNE_SPLIT])
    test = read_rows(manifests[dc.TEST_SPLIT])
    for name in manifests:
        meta = json.loads((tmp_path / "save" / f"{name}.json").read_text())
        assert meta["skipped"] == {}
    assert len(train) + len(test) == len(SUBSET) - 4 + 5
    assert {r["spk_id"] for r in train} == {dc.ASTERISK_SPEAKER}
    assert {r["spk_id"] for r in test} == {dc.ASTERISK_SPEAKER, dc.LIBRIVOX_SPEAKER}
    assert sum(float(r["duration"]) for r in train) >= 3.0
    # no prompt text on both sides; identical prompts stay together
    assert not {r["wrd"] for r in train} & {r["wrd"] for r in test}
    for row in train + test:
        info = sf.info(row["wav"])
        assert info.samplerate == 16000 and info.channels == 1 and info.frames > 0
        assert row["wrd"] == row["wrd"].upper() and not any(
            c.isdigit() for c in row["wrd"]
        )
    words = {r["wrd"] for r in train + test}
    assert "SEVEN" in words and "TWENTY" in words and "AT" in words
    report = (out / "debian_corpus_report.txt").read_text()
    assert "spy-sip\tambiguous_acronym" in report and "not-recorded\tno_audio" in report
    assert "CC-BY-SA-3.0" in (out / "LibriSpeech" / "ATTRIBUTION.txt").read_text()

    # a second call keeps the finished corpus
    monkeypatch.setattr(
        dc_build, "decode_g722", lambda *a: pytest.fail("decoded again")
    )
    assert build() == summary
