"""LibriSpeech and Libri-light limited preparation on tiny trees in the real layouts."""

import csv
import hashlib
import json
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from speechbrain_wsm.data import _probe
from speechbrain_wsm.data import librispeech as ls
from speechbrain_wsm.data.librispeech import (
    LIBRILIGHT_FOLDS,
    prepare_librilight_limited,
    prepare_librispeech,
    probe_audio,
)

FIELDS = ["ID", "duration", "wav", "spk_id", "wrd"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:5] == FIELDS
        return list(reader)


def snapshot(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def utts(spk, chap, n, start=0):
    return [
        (f"{spk}-{chap}-{i:04d}", f"WORDS OF {spk} {i}")
        for i in range(start, start + n)
    ]


@pytest.fixture
def corpus(tmp_path, make_librispeech_split):
    root = tmp_path / "LibriSpeech"
    make_librispeech_split(root / "dev-clean", utts(11, 100, 3) + utts(12, 200, 2))
    make_librispeech_split(root / "test-clean", utts(21, 300, 4))
    return root


def test_real_sample_manifest(librispeech_samples, tmp_path):
    out = prepare_librispeech(
        str(librispeech_samples),
        str(tmp_path),
        te_splits=["test-clean"],
        progress=False,
    )
    rows = read_csv(out["test-clean"])
    assert len(rows) == 5
    for row in rows:
        assert os.path.isabs(row["wav"]) and os.path.isfile(row["wav"])
        assert float(row["duration"]) == pytest.approx(
            sf.info(row["wav"]).duration, abs=1e-3
        )
        assert row["spk_id"] == row["ID"].split("-")[0]
        assert row["wrd"] and row["wrd"] == row["wrd"].upper()
    assert [r["ID"] for r in rows] == sorted(r["ID"] for r in rows)


def test_manifest_matches_tree(corpus, tmp_path):
    save = tmp_path / "save"
    out = prepare_librispeech(
        str(corpus),
        str(save),
        dev_splits="dev-clean",
        te_splits=["test-clean"],
        progress=False,
    )
    assert set(out) == {"dev-clean", "test-clean"}
    dev = read_csv(out["dev-clean"])
    assert {r["ID"] for r in dev} == {u for u, _ in utts(11, 100, 3) + utts(12, 200, 2)}
    assert {r["spk_id"] for r in dev} == {"11", "12"}
    assert all(r["wrd"].startswith("WORDS OF") for r in dev)
    assert len({r["duration"] for r in dev}) == len(dev)
    report = (save / "dev-clean_skipped.txt").read_text()
    assert "# missing_audio: 0" in report
    meta = json.loads((save / "dev-clean.json").read_text())
    assert meta["utterances"] == 5 and meta["skipped"] == {}


def test_results_do_not_depend_on_workers(corpus, tmp_path, monkeypatch):
    a = prepare_librispeech(
        str(corpus), str(tmp_path / "a"), ["dev-clean"], num_workers=1, progress=False
    )
    monkeypatch.setattr(_probe, "_BATCH", 2)  # several batches of header reads
    b = prepare_librispeech(
        str(corpus), str(tmp_path / "b"), ["dev-clean"], num_workers=4, progress=False
    )
    assert read_csv(a["dev-clean"]) == read_csv(b["dev-clean"])


def test_bad_input_skipped_counted_reported(corpus, tmp_path, caplog):
    split = corpus / "dev-clean"
    chapter = split / "11" / "100"
    good = sorted(p.name for p in chapter.glob("*.flac"))
    # truncated FLAC: header intact, data cut
    data = (chapter / good[0]).read_bytes()
    (chapter / good[0]).write_bytes(data[: len(data) // 2])
    # unreadable: not audio at all, and an empty file
    (chapter / good[1]).write_bytes(b"this is not audio" * 20)
    trans = chapter / "11-100.trans.txt"
    with open(trans, "a") as f:
        f.write("11-100-0042 A LINE WITHOUT AUDIO\n")  # transcript without audio
        f.write("11-100-0043\n")  # empty transcript
        f.write("11-100-0002 DUPLICATE LINE\n")  # duplicate ID
    shutil.copy(chapter / good[2], chapter / "11-100-0077.flac")  # audio, no transcript
    (chapter / "11-100-0043.flac").write_bytes((chapter / good[2]).read_bytes())
    # a file at another sample rate
    sf.write(split / "12" / "200" / "12-200-0001.flac", np.zeros(4000, "float32"), 8000)

    save = tmp_path / "save"
    before = snapshot(corpus)
    with caplog.at_level(logging.INFO, logger="speechbrain_wsm.data.librispeech"):
        out = prepare_librispeech(str(corpus), str(save), ["dev-clean"], progress=False)
    assert snapshot(corpus) == before  # the data folder is only read
    rows = read_csv(out["dev-clean"])
    assert {r["ID"] for r in rows} == {"11-100-0002", "12-200-0000"}

    meta = json.loads((save / "dev-clean.json").read_text())
    assert meta["skipped"] == {
        "truncated_audio": 1,
        "unreadable_audio": 1,
        "missing_audio": 1,
        "empty_transcript": 1,
        "duplicate_id": 1,
        "missing_transcript": 1,
        "wrong_sample_rate": 1,
    }
    report = (save / "dev-clean_skipped.txt").read_text().splitlines()
    listed = {
        tuple(line.split("\t")[:2]) for line in report if not line.startswith("#")
    }
    assert listed == {
        ("truncated_audio", "11-100-0000"),
        ("unreadable_audio", "11-100-0001"),
        ("missing_audio", "11-100-0042"),
        ("empty_transcript", "11-100-0043"),
        ("duplicate_id", "11-100-0002"),
        ("missing_transcript", "11-100-0077"),
        ("wrong_sample_rate", "12-200-0001"),
    }
    summaries = [r for r in caplog.records if r.getMessage().startswith("dev-clean:")]
    assert len(summaries) == 1
    assert "skipped 7" in summaries[0].getMessage()
    assert "dev-clean_skipped.txt" in summaries[0].getMessage()


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_probe_detects_truncation(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    sf.write(
        path, np.random.default_rng(0).normal(0, 0.1, 32000).astype("float32"), 16000
    )
    assert probe_audio(str(path)) == (32000, 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ls.AudioError) as info:
        probe_audio(str(path))
    assert info.value.kind == "truncated_audio"
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(ls.AudioError) as info:
        probe_audio(str(empty), check="header")
    assert info.value.kind == "unreadable_audio"


def test_missing_folder_and_split_errors(corpus, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere") as info:
        prepare_librispeech(str(missing), str(tmp_path / "s"), ["dev-clean"])
    assert ".trans.txt" in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        prepare_librispeech(str(corpus), str(tmp_path / "s"), ["train-clean-100"])
    message = str(info.value)
    assert str(corpus / "train-clean-100") in message and "dev-clean" in message
    # pointing at the parent of LibriSpeech gives a hint
    with pytest.raises(FileNotFoundError, match="did you mean"):
        prepare_librispeech(str(corpus.parent), str(tmp_path / "s"), ["dev-clean"])
    # nothing was written for a failed call
    assert not (tmp_path / "s" / "dev-clean.csv").exists()


def test_empty_split_raises(tmp_path):
    (tmp_path / "LibriSpeech" / "dev-clean").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no .flac audio"):
        prepare_librispeech(
            str(tmp_path / "LibriSpeech"), str(tmp_path / "s"), ["dev-clean"]
        )


def test_idempotent_redo_and_skip_prep(corpus, tmp_path, monkeypatch):
    save = tmp_path / "save"
    assert (
        prepare_librispeech(str(corpus), str(save), ["dev-clean"], skip_prep=True) == {}
    )
    assert not save.exists()
    first = prepare_librispeech(str(corpus), str(save), ["dev-clean"], progress=False)
    content = open(first["dev-clean"]).read()

    def no_scan(*args, **kwargs):
        raise AssertionError("a finished manifest was prepared again")

    monkeypatch.setattr(ls, "scan_split", no_scan)
    again = prepare_librispeech(str(corpus), str(save), ["dev-clean"], progress=False)
    assert again == first and open(again["dev-clean"]).read() == content
    monkeypatch.undo()

    # redo, and changed options, prepare again
    calls = []
    real_scan = ls.scan_split
    monkeypatch.setattr(
        ls, "scan_split", lambda *a, **k: calls.append(a) or real_scan(*a, **k)
    )
    prepare_librispeech(
        str(corpus), str(save), ["dev-clean"], redo=True, progress=False
    )
    prepare_librispeech(
        str(corpus), str(save), ["dev-clean"], audio_check="full", progress=False
    )
    assert len(calls) == 2
    assert open(first["dev-clean"]).read() == content


def test_interrupted_prep_leaves_no_manifest(corpus, tmp_path, monkeypatch):
    save = tmp_path / "save"
    real_row = ls.Utterance.row
    written = []

    def row_then_crash(self):
        if written:
            raise KeyboardInterrupt  # killed while writing the manifest
        written.append(self.ID)
        return real_row(self)

    monkeypatch.setattr(ls.Utterance, "row", row_then_crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_librispeech(str(corpus), str(save), ["dev-clean"], progress=False)
    monkeypatch.undo()
    assert written and not (save / "dev-clean.csv").exists()
    assert not [p for p in os.listdir(save) if p.startswith(".tmp-")]
    out = prepare_librispeech(str(corpus), str(save), ["dev-clean"], progress=False)
    assert len(read_csv(out["dev-clean"])) == 5


def test_merge(corpus, tmp_path):
    out = prepare_librispeech(
        str(corpus),
        str(tmp_path),
        ["dev-clean", "test-clean"],
        merge_lst=["dev-clean", "test-clean"],
        merge_name="both",
        progress=False,
    )
    merged = read_csv(out["both"])
    assert len(merged) == len(read_csv(out["dev-clean"])) + len(
        read_csv(out["test-clean"])
    )


# --------------------------------------------------------------------------- #
# Libri-light limited
# --------------------------------------------------------------------------- #


@pytest.fixture
def finetuning(tmp_path, make_librispeech_split):
    root = tmp_path / "librispeech_finetuning"
    expected = {}
    for f, fold in enumerate(LIBRILIGHT_FOLDS):
        ids = []
        for part, spk in (("clean", 100 + f), ("other", 200 + f)):
            items = utts(spk, 7, 2)
            make_librispeech_split(root / fold / part, items)
            ids += [u for u, _ in items]
        expected[fold] = set(ids)
    return root, expected


def test_librilight_composition(finetuning, tmp_path):
    root, expected = finetuning
    out = prepare_librilight_limited(str(root), str(tmp_path / "save"), progress=False)
    ids = {name: {r["ID"] for r in read_csv(path)} for name, path in out.items()}
    one_hour = set().union(*(expected[f] for f in LIBRILIGHT_FOLDS[:6]))
    assert ids["librilight-10min"] == expected["1h/0"]
    assert ids["librilight-1h"] == one_hour
    assert ids["librilight-10h"] == one_hour | expected["9h"]
    assert ids["librilight-10min"] < ids["librilight-1h"] < ids["librilight-10h"]
    # clean and other parts both count
    assert {i.split("-")[0] for i in ids["librilight-10min"]} == {"100", "200"}
    assert (tmp_path / "save" / "librilight_skipped.txt").exists()


def test_librilight_clean_only_and_bad_input(finetuning, tmp_path):
    root, expected = finetuning
    for fold in LIBRILIGHT_FOLDS:
        shutil.rmtree(root / fold / "other")
    # an utterance in two folds is kept once; an empty transcript is skipped
    src = next((root / "1h/0/clean").rglob("*.flac"))
    dup = root / "9h" / "clean" / src.relative_to(root / "1h/0/clean")
    dup.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dup)
    spk, chap, _ = src.stem.split("-")
    with open(dup.parent / f"{spk}-{chap}.trans.txt", "a") as f:
        f.write(f"{src.stem} SAME UTTERANCE AGAIN\n")
    with open(root / "1h/3/clean/103/7/103-7.trans.txt", "a") as f:
        f.write("103-7-0009\n")
    out = prepare_librilight_limited(str(root), str(tmp_path / "save"), progress=False)
    ten_h = read_csv(out["librilight-10h"])
    assert len(ten_h) == len({r["ID"] for r in ten_h}) == 14
    report = (tmp_path / "save" / "librilight_skipped.txt").read_text()
    assert f"duplicate_id\t{src.stem}" in report
    assert "empty_transcript\t103-7-0009" in report


def test_librilight_missing_fold(finetuning, tmp_path):
    root, _ = finetuning
    shutil.rmtree(root / "1h" / "4")
    with pytest.raises(FileNotFoundError, match="1h/4") as info:
        prepare_librilight_limited(str(root), str(tmp_path / "save"))
    assert "9h" in str(info.value)
    with pytest.raises(FileNotFoundError, match="librispeech_finetuning"):
        prepare_librilight_limited(str(tmp_path / "nope"), str(tmp_path / "save"))


def test_librilight_idempotent(finetuning, tmp_path, monkeypatch):
    root, _ = finetuning
    save = str(tmp_path / "save")
    first = prepare_librilight_limited(str(root), save, progress=False)
    monkeypatch.setattr(ls, "scan_split", lambda *a, **k: pytest.fail("rescanned"))
    assert prepare_librilight_limited(str(root), save, progress=False) == first
    os.unlink(first["librilight-1h"])
    monkeypatch.undo()
    again = prepare_librilight_limited(str(root), save, progress=False)
    assert os.path.isfile(again["librilight-1h"])


def test_called_as_recipes_do(librispeech_samples, tmp_path):
    from speechbrain.utils.distributed import run_on_main

    kwargs = {
        "data_folder": str(librispeech_samples),
        "save_folder": str(tmp_path),
        "te_splits": ["test-clean"],
        "skip_prep": False,
        "progress": False,
    }
    run_on_main(prepare_librispeech, kwargs=kwargs)
    assert len(read_csv(tmp_path / "test-clean.csv")) == 5
    run_on_main(
        prepare_librispeech,
        kwargs={**kwargs, "save_folder": str(tmp_path / "x"), "skip_prep": True},
    )
    assert not (tmp_path / "x").exists()


def test_manifest_without_summary_is_prepared_again(corpus, tmp_path, monkeypatch):
    save = tmp_path / "save"
    first = prepare_librispeech(str(corpus), str(save), ["dev-clean"], progress=False)
    # a summary written by an earlier version: same options, kept
    meta = json.loads((save / "dev-clean.json").read_text())
    (save / "dev-clean.json").write_text(json.dumps({"options": meta["options"]}))
    monkeypatch.setattr(ls, "scan_split", lambda *a, **k: pytest.fail("scanned"))
    assert prepare_librispeech(str(corpus), str(save), ["dev-clean"]) == first
    monkeypatch.undo()
    # a manifest without its summary cannot be checked: it is prepared again
    (save / "dev-clean.json").unlink()
    (save / "dev-clean.csv").write_text("ID,duration,wav,spk_id,wrd\n")
    again = prepare_librispeech(str(corpus), str(save), ["dev-clean"], progress=False)
    assert len(read_csv(again["dev-clean"])) == 5
    assert (save / "dev-clean.json").exists()
