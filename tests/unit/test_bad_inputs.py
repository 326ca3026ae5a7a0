"""Bad inputs end well (issue 24): a clear ``error:`` line, a counted skip, or
the right result. Unit-level cases; the runs of ``train.py`` are in
``tests/recipes/test_bad_input_runs.py``."""

import logging
import os
import shutil

import pytest
import torch
from recipe_helpers import SAMPLES, load_tiny_pretraining


def _streaming_encoder(hp):
    return next(m for m in hp["wav2vec2"].modules() if hasattr(m, "layer_reach"))


def test_contexts_longer_than_max_duration_are_capped(tmp_path, caplog):
    # item 4: 10^5-10^6 frames of context asked for 160 GB
    with caplog.at_level(logging.INFO):
        hp, *_ = load_tiny_pretraining(
            tmp_path, "streaming_sa", "--left_context=1000000", "--right_context=100000"
        )
    encoder = _streaming_encoder(hp)
    frames = round(hp["max_duration"] / 0.02)
    assert (encoder.left_context, encoder.right_context) == (frames, frames)
    assert "left_context=1000000 frames is longer than max_duration" in caplog.text
    assert f"capped to {frames}" in caplog.text
    hp, *_ = load_tiny_pretraining(tmp_path, "streaming_sa", "--left_context=16")
    assert _streaming_encoder(hp).left_context == 16  # a usual value is kept


# -- item 7: evaluate options, manifests, non-UTF-8 names, duplicate IDs -------
def test_beam_size_zero_names_the_option():
    from speechbrain_wsm.errors import UserError
    from speechbrain_wsm.recipe.evaluation import decoding_options

    with pytest.raises(UserError, match=r"--beam_size=0: the beam must keep"):
        decoding_options({}, decoder="beam", beam_size=0)


def _write(path, text: bytes):
    path.write_bytes(text)
    return str(path)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"ID,duration,wav,wrd\n", r"has a header \(ID,duration,wav,wrd\) but no rows"),
        (b"ID,duration,wav,wrd\na,1.0,x.wav,A\nb,1.0,y\xff.wav,B\n", r"line 3: byte"),
        (
            b"ID,duration,wav,wrd\na,1.0,x.wav,A\na,2.0,y.wav,B\n",
            "'a' is on lines 2 and 3",
        ),
    ],
    ids=["header-only", "not-utf8", "duplicate-id"],
)
def test_bad_manifests_name_the_file_and_row(tmp_path, content, expected):
    from speechbrain_wsm.errors import UserError
    from speechbrain_wsm.recipe.dataio import manifest_dataset
    from speechbrain_wsm.recipe.evaluation import transcribe

    manifest = _write(tmp_path / "m.csv", content)
    with pytest.raises(UserError, match=expected) as info:
        manifest_dataset(manifest)
    assert manifest in str(info.value)
    with pytest.raises(UserError, match=expected):  # evaluate reads it alike
        transcribe(torch.nn.Identity(), None, manifest)


def test_an_id_in_two_merged_splits_is_kept_once(tmp_path, caplog):
    from speechbrain_wsm.data.manifests import (
        merge_manifests,
        read_manifest,
        write_manifest,
    )

    row = dict(ID="1-2-0003", duration=1.5, wav="/a.flac", spk_id="1", wrd="HI")
    a = str(tmp_path / "a.csv")
    b = str(tmp_path / "b.csv")
    write_manifest(a, [row])
    write_manifest(b, [row, dict(row, ID="1-2-0004")])
    with caplog.at_level(logging.WARNING):
        merged = merge_manifests([a, b], str(tmp_path / "ab.csv"))
    assert [r["ID"] for r in read_manifest(merged)] == ["1-2-0003", "1-2-0004"]
    assert "1 utterance ID(s) in more than one manifest kept once" in caplog.text


def test_non_utf8_names_are_skipped_or_refused(tmp_path):
    from speechbrain_wsm.data.librispeech import prepare_librispeech
    from speechbrain_wsm.errors import UserError

    data = tmp_path / "LibriSpeech"
    shutil.copytree(SAMPLES / "LibriSpeech", data)
    flac = sorted(data.glob("test-clean/*/*/*.flac"))[0]
    bad = os.fsdecode(os.fsencode(str(flac))[: -len(".flac")] + b"\xff.flac")
    os.rename(flac, bad)
    out = prepare_librispeech(data, tmp_path / "p", te_splits=["test-clean"])
    report = (tmp_path / "p" / "test-clean_skipped.txt").read_text()
    assert "# non_utf8_name: 1" in report and "\\xff" in report
    assert len(read_rows(out["test-clean"])) == 4
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/Libri\xff")
    shutil.copytree(SAMPLES / "LibriSpeech", odd)
    with pytest.raises(UserError, match=r"data_folder '.*Libri\\xff' holds a byte"):
        prepare_librispeech(odd, tmp_path / "q", te_splits=["test-clean"])


def test_a_non_utf8_option_value_is_refused(tmp_path):
    from speechbrain_wsm.errors import ConfigError

    odd = os.fsdecode(b"/data/Libri\xff")
    with pytest.raises(ConfigError, match=r"--data_folder=/data/Libri\\xff: the value"):
        load_tiny_pretraining(tmp_path, "sm", f"--data_folder={odd}")


def read_rows(path):
    from speechbrain_wsm.data.manifests import read_manifest

    return read_manifest(path)


# -- item 8: letters outside A-Z ----------------------------------------------------
def test_letters_outside_a_z_are_transliterated_and_the_rest_counted(
    make_librispeech_split, tmp_path, caplog
):
    from speechbrain_wsm.data.librispeech import prepare_librispeech

    make_librispeech_split(
        tmp_path / "LibriSpeech" / "dev-clean",
        [("1-2-0", "Ærøskøbing and Łódź"), ("1-2-1", "Tōkyō 東京 Straße")],
    )
    with caplog.at_level(logging.WARNING):
        out = prepare_librispeech(
            tmp_path / "LibriSpeech", tmp_path / "p", dev_splits=["dev-clean"]
        )
    words = {r["ID"]: r["wrd"] for r in read_rows(out["dev-clean"])}
    assert words == {"1-2-0": "AEROSKOBING AND LODZ", "1-2-1": "TOKYO STRASSE"}
    assert "1 transcript(s) hold letters with no A-Z form" in caplog.text
    assert "1-2-1 (東京)" in caplog.text


# -- item 9: --taps=[2,4], the README's list form ----------------------------------
def test_taps_take_the_list_form_of_the_readme(tiny_ssl_sources, tmp_path):
    from recipe_helpers import RECIPES

    from speechbrain_wsm.errors import ConfigError
    from speechbrain_wsm.recipe import load_hparams

    yaml = RECIPES / "LibriSpeech" / "ASR" / "feature-fusion" / "hparams" / "hff.yaml"
    argv = [
        str(yaml),
        f"--ssl_source={tiny_ssl_sources['hf']}",
        "--data_folder=unused",
        f"--output_folder={tmp_path}",
    ]
    hp, *_ = load_hparams([*argv, "--taps=[2,4]"])
    assert hp["taps"] == [2, 4]
    with pytest.raises(ConfigError, match=r"taps must be a number or a list"):
        load_hparams([*argv, "--taps=abc"])


# -- item 1: a file that fails to decode mid-epoch -----------------------------------
def test_undecodable_items_are_skipped_and_counted_across_workers(tmp_path):
    import numpy as np
    import soundfile as sf
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.dataio.dataset import DynamicItemDataset

    from speechbrain_wsm.data.audio import add_audio_pipeline, skip_undecodable

    rows = {}
    for name in "abcd":
        path = tmp_path / f"{name}.flac"
        sf.write(path, 0.1 * np.random.randn(8000).astype("float32"), 16000)
        rows[name] = {"wav": str(path)}
    body = (tmp_path / "b.flac").read_bytes()
    (tmp_path / "b.flac").write_bytes(body[: len(body) // 2])  # header reads
    dataset = DynamicItemDataset(rows)
    add_audio_pipeline([dataset])
    dataset = skip_undecodable(dataset)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, num_workers=2, collate_fn=PaddedBatch
    )
    ids = [uid for batch in loader for uid in batch.id]
    assert ids == ["a", "c", "d"]
    assert dataset.left_out == {"undecodable": 1}  # counted in the workers


def test_evaluate_lists_a_file_that_fails_to_decode(tmp_path):
    import numpy as np
    import soundfile as sf

    from speechbrain_wsm.data.tokenizers import CharTokenizer
    from speechbrain_wsm.recipe.evaluation import evaluate_manifest

    class Blank(torch.nn.Module):
        def forward(self, wavs, wav_lens):
            lp = torch.full((len(wavs), 4, 3), -9.0)
            lp[..., 0] = 0.0
            return lp, wav_lens

    lines = ["ID,duration,wav,wrd"]
    for name in "abc":
        path = tmp_path / f"{name}.flac"
        sf.write(path, 0.1 * np.random.randn(16000).astype("float32"), 16000)
        lines.append(f"{name},1.0,{path},A")
    body = (tmp_path / "b.flac").read_bytes()
    (tmp_path / "b.flac").write_bytes(body[: len(body) // 2])
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    summary = evaluate_manifest(
        Blank(),
        CharTokenizer.from_texts(["A"]),
        str(tmp_path / "m.csv"),
        str(tmp_path / "wer_m.txt"),
    )
    assert summary["num_scored_sents"] == 2
    assert [uid for uid, _ in summary["unreadable"]] == ["b"]
