"""MP3S dataset preparations on tiny fixtures in the distributed layouts:
manifests, splits and labels, bad input skipped/counted/reported, clear errors
for missing folders, idempotency, and the audio pipeline."""

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from speechbrain.dataio.dataset import DynamicItemDataset

from speechbrain_wsm.data.audio import add_audio_pipeline
from speechbrain_wsm.data.librispeech import (
    prepare_librilight_limited,
    prepare_librispeech,
)
from speechbrain_wsm.data.manifests import read_manifest
from speechbrain_wsm.data.mp3s import (
    normalize_words,
    prepare_buckeye,
    prepare_commonvoice,
    prepare_iemocap,
    prepare_slurp,
    prepare_voxceleb1,
)
from speechbrain_wsm.data.tokenizers import prepare_tokenizer

MP3S = Path(__file__).resolve().parents[1] / "samples" / "mp3s"
CV = "CommonVoice/cv-corpus-11.0-2022-09-21/cy"


@pytest.fixture
def tree(tmp_path):
    """A writable copy of one fixture tree."""

    def copy(name):
        dst = tmp_path / "data" / name
        shutil.copytree(MP3S / name, dst)
        return dst

    return copy


def _report(folder, name):
    lines = (Path(folder) / name).read_text().splitlines()
    return {line.split("\t")[0] for line in lines if not line.startswith("#")}


def _one_summary(caplog, text):
    lines = [r for r in caplog.records if text in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    return lines[0]


# --------------------------------------------------------------------------- #
# Every preparation: the common options (data._prep.PrepOptions)
# --------------------------------------------------------------------------- #

PREPARATIONS = [
    prepare_buckeye,
    prepare_commonvoice,
    prepare_iemocap,
    prepare_librilight_limited,
    prepare_librispeech,
    prepare_slurp,
    prepare_voxceleb1,
]


@pytest.mark.parametrize("prepare", PREPARATIONS, ids=lambda f: f.__name__)
def test_common_options(prepare, tmp_path):
    """skip_prep does nothing; a misspelt option fails naming it, even then."""
    assert prepare(str(tmp_path / "none"), str(tmp_path / "out"), skip_prep=True) == {}
    assert not (tmp_path / "out").exists()
    with pytest.raises(TypeError, match=rf"{prepare.__name__}\(\).*'skip_perp'"):
        prepare(str(tmp_path / "none"), str(tmp_path / "out"), skip_perp=True)


def test_commonvoice_takes_no_sample_rate(tmp_path):
    with pytest.raises(TypeError, match="'sample_rate'"):
        prepare_commonvoice(MP3S / CV, tmp_path, sample_rate=16000)


# --------------------------------------------------------------------------- #
# Common Voice
# --------------------------------------------------------------------------- #


def test_commonvoice_fixture(tmp_path):
    out = prepare_commonvoice(MP3S / CV, tmp_path, progress=False)
    rows = {s: read_manifest(p) for s, p in out.items()}
    assert {s: len(r) for s, r in rows.items()} == {"train": 4, "dev": 2, "test": 2}
    row = rows["train"][2]  # the sentence with quotes survives tab-only parsing
    assert row["wrd"] == "HELO MEDDAI HI"
    assert row["wav"].endswith(".mp3") and os.path.isfile(row["wav"])
    assert row["ID"] == Path(row["wav"]).stem and len(row["spk_id"]) == 128
    assert all(1.1 < float(r["duration"]) < 1.3 for r in rows["test"])


def test_commonvoice_bad_input_is_skipped_and_reported(tree, tmp_path, caplog):
    lang = tree(CV)
    clips = sorted((lang / "clips").iterdir())
    clips[0].unlink()  # missing clip
    clips[1].write_bytes(b"not an mp3 at all" * 10)  # unreadable
    with open(lang / "train.tsv", "a", encoding="utf-8") as f:
        f.write("x\tcommon_voice_cy_1.mp3\n")  # too few fields for the header?
        f.write(f"x\t{clips[2].name}\t...!\t1\t0\t\t\t\tcy\t\n")  # empty words
    dev = (lang / "dev.tsv").read_text().splitlines()
    (lang / "dev.tsv").write_text("\n".join(dev + [dev[1]]) + "\n")  # duplicate
    (lang / "test.tsv").write_text("client_id\tpath\tsentence\nx\n")  # malformed
    with caplog.at_level(logging.INFO):
        out = prepare_commonvoice(lang, tmp_path / "out", progress=False)
    assert len(read_manifest(out["train"])) == 2
    assert len(read_manifest(out["dev"])) == 2
    assert read_manifest(out["test"]) == []
    kinds = _report(tmp_path / "out", "commonvoice_skipped.txt")
    assert {
        "missing_audio",
        "unreadable_audio",
        "empty_transcript",
        "duplicate_id",
        "malformed_row",
    } <= kinds
    record = _one_summary(caplog, "Common Voice from")
    assert (
        record.levelno == logging.WARNING
        and "commonvoice_skipped.txt" in record.getMessage()
    )


def test_commonvoice_missing_folders_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_commonvoice(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"language folders found: \['cy'\]"):
        prepare_commonvoice(MP3S / CV / "..", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="validated.tsv"):
        prepare_commonvoice(MP3S / CV, tmp_path / "out", splits=["validated"])


def test_preparation_is_kept_unless_options_change(tmp_path):
    out = prepare_commonvoice(MP3S / CV, tmp_path, splits=["dev"], progress=False)
    stamp = os.stat(out["dev"]).st_mtime_ns
    prepare_commonvoice(MP3S / CV, tmp_path, splits=["dev"], progress=False)
    assert os.stat(out["dev"]).st_mtime_ns == stamp
    prepare_commonvoice(MP3S / CV, tmp_path, splits=["dev"], progress=False, redo=True)
    assert os.stat(out["dev"]).st_mtime_ns != stamp
    stamp = os.stat(out["dev"]).st_mtime_ns
    prepare_commonvoice(
        MP3S / CV, tmp_path, splits=["dev"], progress=False, audio_check="full"
    )
    assert os.stat(out["dev"]).st_mtime_ns != stamp


# --------------------------------------------------------------------------- #
# VoxCeleb1
# --------------------------------------------------------------------------- #


def test_voxceleb_fixture(tmp_path):
    out = prepare_voxceleb1(MP3S / "VoxCeleb1", tmp_path, dev_ratio=0.5, progress=False)
    train, dev, test = (read_manifest(out[k]) for k in ("train", "dev", "test"))
    trials = Path(out["trials"]).read_text().splitlines()
    assert len(trials) == 4 and {t.split()[0] for t in trials} == {"0", "1"}
    test_ids = {r["ID"] for r in test}
    assert all(set(t.split()[1:]) <= test_ids for t in trials)
    assert {r["spk_id"] for r in test} == {"id10270", "id10271"}
    assert {r["spk_id"] for r in train + dev} == {"id10001", "id10002"}
    assert len(train) + len(dev) == 4 and not {r["ID"] for r in train} & {
        r["ID"] for r in dev
    }
    assert test[0]["ID"].count("--") == 2


def test_voxceleb_bad_input(tree, tmp_path, caplog):
    root = tree("VoxCeleb1")
    (root / "wav" / "id10271" / "37nktPRUJ58" / "00004.wav").unlink()
    (root / "wav" / "id10001" / "1zcIwhmdeo4" / "00001.wav").write_bytes(b"RIFF")
    with open(root / "veri_test2.txt", "a") as f:
        f.write("maybe id10270/a.wav\n")
    with caplog.at_level(logging.INFO):
        out = prepare_voxceleb1(root, tmp_path / "out", progress=False)
    trials = Path(out["trials"]).read_text().splitlines()
    assert len(trials) == 2  # the two trials naming the missing file are out
    kinds = _report(tmp_path / "out", "voxceleb1_skipped.txt")
    assert {"missing_audio", "unreadable_audio", "malformed_trial"} <= kinds
    assert len(read_manifest(out["train"])) + len(read_manifest(out["dev"])) == 3
    _one_summary(caplog, "VoxCeleb1 from")
    os.unlink(root / "veri_test2.txt")
    with pytest.raises(FileNotFoundError, match="veri_test2.txt"):
        prepare_voxceleb1(root, tmp_path / "out2")
    with pytest.raises(FileNotFoundError, match="wav"):
        prepare_voxceleb1(tmp_path, tmp_path / "out2")


# --------------------------------------------------------------------------- #
# IEMOCAP
# --------------------------------------------------------------------------- #


IEMOCAP = "IEMOCAP/IEMOCAP_full_release"


def test_iemocap_fold_and_classes(tmp_path):
    out = prepare_iemocap(MP3S / IEMOCAP, tmp_path, test_session=2, progress=False)
    rows = {k: read_manifest(p) for k, p in out.items()}
    test_speakers = {r["spk_id"] for r in rows["test"]}
    assert test_speakers == {"Ses02F", "Ses02M"}
    others = {r["spk_id"] for r in rows["train"] + rows["valid"]}
    assert not test_speakers & others and len(others) == 8
    emotions = {r["emo"] for k in rows for r in rows[k]}
    assert emotions <= {"neu", "hap", "sad", "ang"} and "hap" in emotions
    # exc is merged into hap; fru is left out by design, not as bad input
    labels = {r["ID"]: r["emo"] for k in rows for r in rows[k]}
    assert labels["Ses01F_impro01_M001"] == "hap"  # labelled exc
    assert sum(len(r) for r in rows.values()) == 10
    meta = (tmp_path / "test.json").read_text()
    assert '"fru": 5' in meta
    assert _report(tmp_path, "iemocap_skipped.txt") == set()


def test_iemocap_bad_input(tree, tmp_path, caplog):
    root = tree(IEMOCAP)
    wav = root / "Session3/sentences/wav/Ses03F_impro03/Ses03F_impro03_F000.wav"
    wav.unlink()
    evaluation = root / "Session4/dialog/EmoEvaluation/Ses04F_impro04.txt"
    evaluation.write_text(evaluation.read_text() + "[1.0 - oops]\tbroken\n")
    with caplog.at_level(logging.INFO):
        out = prepare_iemocap(root, tmp_path / "out", progress=False)
    assert sum(len(read_manifest(p)) for p in out.values()) == 9
    assert {"missing_audio", "malformed_line"} <= _report(
        tmp_path / "out", "iemocap_skipped.txt"
    )
    _one_summary(caplog, "IEMOCAP fold")
    shutil.rmtree(root / "Session5")
    with pytest.raises(FileNotFoundError, match="Session5"):
        prepare_iemocap(root, tmp_path / "out", redo=True)
    with pytest.raises(FileNotFoundError, match="did you mean"):
        prepare_iemocap(root.parent, tmp_path / "out")


# --------------------------------------------------------------------------- #
# SLURP
# --------------------------------------------------------------------------- #


def test_slurp_fixture(tmp_path):
    out = prepare_slurp(MP3S / "SLURP", tmp_path, progress=False)
    rows = {k: read_manifest(p) for k, p in out.items()}
    assert {k: len(r) for k, r in rows.items()} == {"train": 4, "devel": 2, "test": 2}
    row = rows["train"][0]
    assert (row["scenario"], row["intent"], row["action"]) == (
        "alarm",
        "alarm_set",
        "set",
    )
    assert row["wrd"] == "WAKE ME UP AT EIGHT AM" and "slurp_real" in row["wav"]


def test_slurp_bad_input(tree, tmp_path, caplog):
    root = tree("SLURP")
    next((root / "slurp_real").glob("*headset.flac")).unlink()
    with open(root / "dataset/slurp/train.jsonl", "a") as f:
        f.write('{"slurp_id": 9, "sentence": "x"}\n{not json\n')
    with caplog.at_level(logging.INFO):
        out = prepare_slurp(root, tmp_path / "out", progress=False)
    assert len(read_manifest(out["train"])) == 3
    kinds = _report(tmp_path / "out", "slurp_skipped.txt")
    assert {"missing_audio", "malformed_line"} <= kinds
    _one_summary(caplog, "SLURP from")
    shutil.rmtree(root / "slurp_real")
    with pytest.raises(FileNotFoundError, match="slurp_real"):
        prepare_slurp(root, tmp_path / "out")


# --------------------------------------------------------------------------- #
# Buckeye
# --------------------------------------------------------------------------- #


def test_buckeye_segments_and_speaker_splits(tmp_path):
    out = prepare_buckeye(MP3S / "Buckeye", tmp_path, progress=False)
    rows = {k: read_manifest(p) for k, p in out.items()}
    assert [r["spk_id"] for r in rows["dev"]] == ["s36"]
    assert [r["spk_id"] for r in rows["test"]] == ["s38"]
    row = rows["train"][0]
    assert row["wrd"] == "HAD HE MARRIED A MORE A AMIABLE WOMAN"
    assert float(row["start"]) == pytest.approx(0.1)
    assert float(row["duration"]) == pytest.approx(
        float(row["stop"]) - float(row["start"]), abs=1e-3
    )
    # a shorter max_duration splits runs of words at word boundaries
    out = prepare_buckeye(MP3S / "Buckeye", tmp_path / "short", max_duration=1.5,
                          min_duration=0.5, min_words=1, progress=False)  # fmt: skip
    pieces = read_manifest(out["train"])
    assert len(pieces) > 1 and all(float(r["duration"]) <= 1.5 for r in pieces)
    assert " ".join(r["wrd"] for r in pieces) == row["wrd"]


def test_buckeye_bad_input(tree, tmp_path, caplog):
    root = tree("Buckeye")
    (root / "s36" / "s3601a.wav").unlink()
    words = root / "s38" / "s3801a.words"
    words.write_text(words.read_text().replace("#\n", ""))
    (root / "s01" / "s0102a.wav").write_bytes(
        (root / "s01" / "s0101a.wav").read_bytes()
    )
    (root / "s01" / "s0101b.wav").write_bytes(b"RIFF....WAVE")
    shutil.copy(root / "s01" / "s0101a.words", root / "s01" / "s0101b.words")
    with caplog.at_level(logging.INFO):
        out = prepare_buckeye(root, tmp_path / "out", progress=False)
    assert len(read_manifest(out["train"])) == 1
    kinds = _report(tmp_path / "out", "buckeye_skipped.txt")
    assert {
        "missing_audio",
        "malformed_words",
        "missing_transcript",
        "unreadable_audio",
    } <= kinds
    _one_summary(caplog, "Buckeye from")
    zips = tmp_path / "zips"
    zips.mkdir()
    (zips / "s01.zip").write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match="extract"):
        prepare_buckeye(zips, tmp_path / "out2")


def test_buckeye_labels_past_the_audio_are_reported(tree, tmp_path):
    root = tree("Buckeye")
    words = root / "s01" / "s0101a.words"
    words.write_text(words.read_text().replace("2.850000", "9.850000"))
    prepare_buckeye(root, tmp_path / "out", progress=False)
    assert "past_end_of_audio" in _report(tmp_path / "out", "buckeye_skipped.txt")


# --------------------------------------------------------------------------- #
# Shared pieces
# --------------------------------------------------------------------------- #


def test_audio_pipeline_resamples_and_cuts_segments(tmp_path):
    cv = prepare_commonvoice(MP3S / CV, tmp_path / "cv", splits=["dev"], progress=False)
    bk = prepare_buckeye(MP3S / "Buckeye", tmp_path / "bk", progress=False)
    for csv in (cv["dev"], bk["train"]):
        data = DynamicItemDataset.from_csv(csv)
        add_audio_pipeline([data], ["id", "sig", "duration"])
        item = data[0]
        assert item["sig"].dim() == 1 and item["sig"].dtype == torch.float32
        assert abs(len(item["sig"]) - 16000 * float(item["duration"])) < 400


def test_normalize_words_keeps_letters_of_any_script():
    assert normalize_words("Zer   moduz?  Ondo-ondo!") == "ZER MODUZ ONDO ONDO"
    assert normalize_words("Dw i'n 'hoffi' ŵy") == "DW I'N HOFFI ŴY"
    assert normalize_words("... !!") == ""


def test_prepare_tokenizer_saves_units_at_the_fixed_path(tmp_path):
    out = prepare_commonvoice(MP3S / CV, tmp_path, progress=False)
    char = prepare_tokenizer(out["train"], str(tmp_path / "u" / "char.txt"))
    assert (tmp_path / "u" / "char.txt").is_file() and char.units[0] == "<blank>"
    bpe = prepare_tokenizer(out["train"], str(tmp_path / "u" / "bpe.model"), "bpe", 40)
    assert bpe.blank_index == 0 and (tmp_path / "u" / "bpe.model").is_file()
    text = read_manifest(out["train"])[0]["wrd"]
    assert bpe.decode(bpe.encode(text)) == text
    with pytest.raises(ValueError, match="output_neurons"):
        prepare_tokenizer(out["train"], str(tmp_path / "u" / "char.txt"), max_units=5)
