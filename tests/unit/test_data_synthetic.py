"""The synthetic corpus builder on a few sentences."""

import csv
import importlib.util
import json
import os
import random
import shutil

import numpy as np
import pytest
import soundfile as sf

from speechbrain_wsm.data import _system
from speechbrain_wsm.data import synthetic as syn
from speechbrain_wsm.data._system import MissingPackageError
from speechbrain_wsm.data.librispeech import (
    prepare_librilight_limited,
    prepare_librispeech,
)
from speechbrain_wsm.data.synthetic import build as syn_build

MISSING = [p for p in syn.missing_packages(("flite", "espeak-ng"), text_file="x")]
needs_engines = pytest.mark.skipif(
    bool(MISSING), reason=f"Debian packages not installed: {', '.join(MISSING)}"
)
SPLITS = ["train-synth", "dev-synth", "test-synth"]
TINY = dict(
    hours=0.01,
    dev_minutes=0.15,
    test_minutes=0.15,
    fold_minutes=0.04,
    train_speakers=6,
    eval_speakers=3,
    progress=False,
)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = random.Random(0)
    nouns = "man city river king house field stone bread light water".split()
    verbs = "saw found built gave took left kept made".split()
    lines = []
    for _ in range(200):
        a, b = rng.sample(nouns, 2)
        lines.append(
            f"And the {a} {rng.choice(verbs)} the {b}, and it was {rng.randint(2, 9)} days."
        )
    path = tmp_path_factory.mktemp("text") / "lines.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory, text_file):
    if MISSING:
        pytest.skip(f"Debian packages not installed: {', '.join(MISSING)}")
    out = tmp_path_factory.mktemp("synth")
    summary = syn.build_synthetic_corpus(
        str(out), text_file=text_file, workers=1, seed=3, **TINY
    )
    return out, summary


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def manifests(out, save):
    paths = prepare_librispeech(
        str(out / "LibriSpeech"),
        str(save),
        tr_splits=["train-synth"],
        dev_splits=["dev-synth"],
        te_splits=["test-synth"],
        progress=False,
    )
    for split in SPLITS:
        assert json.loads((save / f"{split}.json").read_text())["skipped"] == {}
    return {split: rows(paths[split]) for split in SPLITS}


def test_catalogue_speakers_are_disjoint_and_stable():
    full = syn.speaker_catalogue()
    assert len({s.spk_id for s in full}) == len(full)
    by_split = {}
    for s in full:
        base = (s.engine, s.voice if s.engine != "espeak-ng" else s.variant)
        by_split.setdefault(s.split, set()).add(base)
    # dev and test voices are never heard in training
    assert not by_split["train"] & (by_split["dev"] | by_split["test"])
    # espeak-ng held-out variants differ between dev and test as well
    espeak = {sp: {b for b in v if b[0] == "espeak-ng"} for sp, v in by_split.items()}
    assert not espeak["dev"] & espeak["test"]
    # IDs do not depend on which engines are listed
    ids = {s.spk_id: s for s in full}
    for s in syn.speaker_catalogue(("espeak-ng",)):
        assert ids[s.spk_id] == s
    assert {s.engine for s in syn.speaker_catalogue(("flite",))} == {"flite"}
    # speakers added later are appended: the IDs of corpora built before stay
    assert (ids["1001"].voice, ids["1001"].pitch, ids["1001"].tract) == (
        "kal",
        95,
        0.94,
    )
    assert (ids["1032"].voice, ids["1032"].split) == ("awb", "test")
    # the four training flite voices get extra vocal-tract variants
    flite_train = [s for s in full if s.engine == "flite" and s.split == "train"]
    assert {s.tract for s in flite_train} >= {0.88, 1.12}


def test_text_sources(text_file, tmp_path):
    sentences = syn.read_text_file(text_file)
    assert len(sentences) == 200 and len({s.chapter for s in sentences}) == 4
    assert all(not any(c.isdigit() for c in s.words) for s in sentences)
    pools = syn.split_sentences(sentences, seed=0)
    chapters = {k: {s.chapter for s in v} for k, v in pools.items()}
    assert all(chapters.values())
    assert not chapters["train"] & (chapters["dev"] | chapters["test"])
    small = tmp_path / "small.txt"
    small.write_text("One two three four five six.\n" * 20)
    with pytest.raises(ValueError, match="too small"):
        syn.split_sentences(syn.read_text_file(str(small)), seed=0)


@pytest.mark.skipif(
    shutil.which("bible") is None, reason="Debian package bible-kjv not installed"
)
def test_bible_verses():
    verses = syn.read_bible_verses(passage="Genesis 1:1-2:25")
    assert {v.chapter for v in verses} == {1, 2}
    assert all(v.words == v.words.upper() and v.words for v in verses)
    assert any("LORD" in v.words for v in verses)
    assert not any("LORD" in v.text for v in verses)  # not spelled out by the voices


def test_missing_engine_is_named(tmp_path, monkeypatch, text_file):
    monkeypatch.setattr(_system.shutil, "which", lambda name: None)
    with pytest.raises(MissingPackageError, match="'flite'"):
        syn.build_synthetic_corpus(
            str(tmp_path), engines=["flite"], text_file=text_file
        )
    with pytest.raises(ValueError, match="unknown engines"):
        syn.build_synthetic_corpus(str(tmp_path), engines=["festival"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingPackageError, match="pip install hibari-tts"):
        syn.build_synthetic_corpus(str(tmp_path), engines=["hibari"])


@needs_engines
def test_corpus_layout_and_splits(built, tmp_path):
    out, summary = built
    data = manifests(out, tmp_path / "save")
    catalogue = {s.spk_id: s for s in syn.speaker_catalogue()}
    speakers = {split: {r["spk_id"] for r in data[split]} for split in SPLITS}
    assert not speakers["train-synth"] & speakers["dev-synth"]
    assert not speakers["train-synth"] & speakers["test-synth"]
    assert not speakers["dev-synth"] & speakers["test-synth"]
    for split, short in zip(SPLITS, ["train", "dev", "test"], strict=True):
        assert {catalogue[s].split for s in speakers[split]} == {short}
    words = {split: {r["wrd"] for r in data[split]} for split in SPLITS}
    assert not words["train-synth"] & (words["dev-synth"] | words["test-synth"])
    # sizes: at least the target, at most one utterance more
    for split, target in (
        ("train-synth", 36.0),
        ("dev-synth", 9.0),
        ("test-synth", 9.0),
    ):
        durations = [float(r["duration"]) for r in data[split]]
        assert target <= sum(durations) < target + max(durations)
    for row in data["train-synth"] + data["dev-synth"]:
        info = sf.info(row["wav"])
        assert info.samplerate == 16000 and info.channels == 1
    audio, _ = sf.read(data["dev-synth"][0]["wav"])
    assert 0.05 < np.abs(audio).max() <= 1.0
    assert summary["splits"]["train-synth"]["utterances"] == len(data["train-synth"])
    assert "flite" in (out / "LibriSpeech" / "SPEAKERS.TXT").read_text()


@needs_engines
def test_finetuning_folds_follow_librilight(built, tmp_path):
    out, _ = built
    save = tmp_path / "save"
    paths = prepare_librilight_limited(
        str(out / "librispeech_finetuning"), str(save), progress=False
    )
    ids = {name: {r["ID"] for r in rows(p)} for name, p in paths.items()}
    train = {r["ID"] for r in manifests(out, save)["train-synth"]}
    assert ids["librilight-10min"] and ids["librilight-10min"] < ids["librilight-1h"]
    assert ids["librilight-1h"] < ids["librilight-10h"] <= train
    for fold in ("1h/0", "1h/5", "9h"):
        assert list((out / "librispeech_finetuning" / fold / "clean").rglob("*.flac"))


@needs_engines
def test_deterministic_across_workers_and_idempotent(
    built, tmp_path, text_file, monkeypatch
):
    out, summary = built
    other = tmp_path / "again"
    syn.build_synthetic_corpus(
        str(other), text_file=text_file, workers=2, seed=3, **TINY
    )
    a = manifests(out, tmp_path / "a")
    b = manifests(other, tmp_path / "b")
    for split in SPLITS:
        assert [(r["ID"], r["wrd"], r["duration"]) for r in a[split]] == [
            (r["ID"], r["wrd"], r["duration"]) for r in b[split]
        ]
    first = a["dev-synth"][0]
    assert np.array_equal(
        sf.read(first["wav"], dtype="int16")[0],
        sf.read(b["dev-synth"][0]["wav"], dtype="int16")[0],
    )
    # a finished corpus is kept
    monkeypatch.setattr(
        syn_build, "synthesize", lambda job: pytest.fail("synthesised again")
    )
    assert (
        syn.build_synthetic_corpus(
            str(other), text_file=text_file, workers=1, seed=3, **TINY
        )["splits"]
        == summary["splits"]
    )


@needs_engines
def test_interrupted_build_resumes(tmp_path, text_file):
    out = tmp_path / "c"
    summary = syn.build_synthetic_corpus(
        str(out), text_file=text_file, workers=1, seed=5, **TINY
    )
    flacs = sorted((out / "LibriSpeech" / "train-synth").rglob("*.flac"))
    kept = {p: os.path.getmtime(p) for p in flacs[1:]}
    # simulate a build killed before the end: no summary, one file missing, a stray one
    os.unlink(out / "synthetic_corpus.json")
    (out / ".synthetic_partial.json").write_text(json.dumps(summary["options"]))
    flacs[0].unlink()
    stray = flacs[1].parent / "9999-1-9999.flac"
    shutil.copy(flacs[1], stray)
    again = syn.build_synthetic_corpus(
        str(out), text_file=text_file, workers=1, seed=5, **TINY
    )
    assert again["splits"] == summary["splits"]
    assert flacs[0].exists() and not stray.exists()
    assert all(os.path.getmtime(p) == t for p, t in kept.items())
