"""The wav2vec 2.0 recipe's YAML files, experiment setup, manifests and loader."""

import csv
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder
from speechbrain_wsm.nnet.summary_mixing import SummaryMixing, WindowedSummaryMixing
from speechbrain_wsm.recipe import load_hparams, prepare_librispeech_manifests

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "LibriSpeech" / "self-supervised-learning" / "wav2vec2"
YAMLS = {m: RECIPE / "hparams" / f"wav2vec2_{m}.yaml" for m in ("mhsa", "sm", "wsm")}
SAMPLES = ROOT / "tests" / "samples" / "LibriSpeech"
TINY = {
    "data_folder": str(SAMPLES),
    "d_model": 32,
    "num_layers": 2,
    "nhead": 2,
    "d_ffn": 64,
    "extractor_dim": 32,
    "final_dim": 16,
}


def load(mixer, tmp_path, **overrides):
    with open(YAMLS[mixer]) as f:
        return load_hyperpyyaml(
            f, {**TINY, "output_folder": str(tmp_path), **overrides}
        )


def test_the_three_yaml_files_differ_only_in_mixer_lines():
    texts = {
        m: [line for line in p.read_text().splitlines() if "# mixer" not in line]
        for m, p in YAMLS.items()
    }
    assert texts["mhsa"] == texts["sm"] == texts["wsm"]


@pytest.mark.parametrize("mixer", ["mhsa", "sm", "wsm"])
def test_each_yaml_builds_one_model_with_its_mixer(mixer, tmp_path):
    hp = load(mixer, tmp_path)
    model = hp["wav2vec2"]
    encoder = model.encoder.context.encoder
    assert encoder is hp["w2v"]["enc"]["encoder"]  # built once, shared
    assert hp["modules"]["wav2vec2"] is model
    assert hp["checkpointer"].recoverables["wav2vec2"] is model
    assert encoder.mixer_name == {"mhsa": "relpos_mhsa"}.get(mixer, mixer)
    assert encoder.d_model == 32
    assert len(encoder.layers) == 2 and encoder.positional_encoding == "sine"
    assert model.encoder.latent_extractor.out_dim == 32
    if mixer != "mhsa":
        assert isinstance(encoder.layers[0].mixer, SummaryMixing)


def test_window_size_reaches_the_wsm_layers(tmp_path):
    hp = load("wsm", tmp_path, window_size=5)
    mixer = hp["wav2vec2"].encoder.context.encoder.layers[0].mixer
    assert isinstance(mixer, WindowedSummaryMixing) and mixer.window_size == 5
    assert hp["output_folder"] == str(tmp_path)
    assert load("wsm", tmp_path / "x", window_size=8)["experiment"] == "wav2vec2_wsm_w8"


def args(mixer, tmp_path):
    tiny = [f"--{k}={v}" for k, v in TINY.items()]
    return [str(YAMLS[mixer]), f"--output_folder={tmp_path}", *tiny]


def test_a_misspelt_override_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="d_modle"):
        load_hparams([*args("sm", tmp_path), "--d_modle=32"])


def test_gpu_precision_falls_back_to_fp32_on_cpu_unless_asked(tmp_path):
    hp, run_opts, _, _ = load_hparams([*args("sm", tmp_path), "--device=cpu"])
    assert hp["precision"] == "fp32"
    hp, run_opts, _, _ = load_hparams(
        [*args("sm", tmp_path), "--device=cpu", "--precision=bf16"]
    )
    assert run_opts["precision"] == "bf16" and "precision" in run_opts.overridden_args


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_manifests_are_prepared_and_merged(tmp_path):
    hp = {
        "data_folder": str(SAMPLES),
        "output_folder": str(tmp_path),
        "train_splits": ["test-clean"],
        "dev_splits": ["test-clean"],
        "test_splits": ["test-clean"],
        "skip_prep": False,
        "train_csv": str(tmp_path / "train.csv"),
        "valid_csv": str(tmp_path / "dev.csv"),
    }
    out = prepare_librispeech_manifests(hp)
    assert out["test-clean"] == str(tmp_path / "test-clean.csv")
    for key in ("train_csv", "valid_csv", "test-clean"):
        assert len(rows(out[key])) == 5
    skipped = prepare_librispeech_manifests(
        {**hp, "skip_prep": True, "output_folder": str(tmp_path / "none")}
    )
    assert not (tmp_path / "none").exists() and "test-clean" not in skipped


def test_load_pretrained_encoder_rebuilds_the_saved_model(tmp_path):
    overrides = {**TINY, "output_folder": str(tmp_path), "window_size": 4}
    with open(YAMLS["wsm"]) as f:  # what create_experiment_directory writes
        resolved = resolve_references(f, overrides).getvalue()
    (tmp_path / "hyperparams.yaml").write_text(resolved)
    model = load_hyperpyyaml(resolved)["wav2vec2"]
    torch.nn.init.normal_(model.encoder.context.mask_emb)  # differs from any init
    Checkpointer(tmp_path / "save", {"wav2vec2": model}).save_checkpoint()

    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)
    encoder = load_pretrained_encoder(tmp_path, freeze=True)
    assert torch.equal(torch.rand(3), expected_draw)  # caller's RNG untouched
    assert not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert encoder.num_layers == 2 and encoder.d_model == 32
    torch.testing.assert_close(encoder.context.mask_emb, model.encoder.context.mask_emb)
    wav, samples = torch.randn(2, 16000), torch.tensor([16000, 11200])
    with torch.no_grad():
        out, hidden, frames = encoder(wav, samples)
        ref, _, ref_frames = model.encoder.eval()(wav, samples)
    assert len(hidden) == 3 and out.shape == (2, 46, 32)
    assert frames.tolist() == ref_frames.tolist() and frames[0] == 46
    # the valid frames of each utterance (what padded frames hold is not part
    # of the contract)
    for b, valid in enumerate(frames.tolist()):
        torch.testing.assert_close(out[b, :valid], ref[b, :valid])


def test_run_options_on_the_command_line_reach_the_yaml_too(tmp_path):
    hp, run_opts, _, overrides = load_hparams(
        [*args("sm", tmp_path), "--optimizer_step_limit=1000", "--max_grad_norm=3"]
    )
    assert run_opts["optimizer_step_limit"] == 1000  # an int, not "1000"
    assert hp["optimizer_step_limit"] == 1000 and hp["max_grad_norm"] == 3.0
    assert hp["lr_scheduler"].total_steps == 1000  # the schedule follows
    assert "optimizer_step_limit: 1000" in overrides  # and hyperparams.yaml will


@pytest.mark.parametrize("fragment", ["fbank.yaml", "waveform_cnn.yaml"])
def test_front_end_fragments_make_20ms_frames(fragment):
    with open(ROOT / "hparams" / "frontend" / fragment) as f:
        hp = load_hyperpyyaml(f, {"out_dim": 8})
    extractor = hp["extractor"]
    assert extractor.out_dim == 8
    with torch.no_grad():
        latents = extractor(torch.randn(1, 32000))
    assert latents.shape[-1] == 8 and 95 <= latents.shape[1] <= 100  # 2 s
    assert int(extractor.output_lengths(32000)) == latents.shape[1]
