"""The LASER recipe, run for real on tiny models and real speech.

``recipes/LibriSpeech/self-supervised-finetuning/LASER/train.py`` with each
YAML, shrunk by command-line overrides only, on the committed LibriVox sample
(``tests/samples/LibriSpeech/test-clean``) and tiny pretrained models saved to
local folders (Hugging Face HuBERT and WavLM, and this project's wav2vec 2.0
pretraining output; see ``tests/tiny_models.py``).
"""

import json
import re
from pathlib import Path

import pytest
import torch
from recipe_helpers import RECIPES, run_in_process

from speechbrain_wsm.models.laser import (
    LASERModel,
    ViewPerturbation,
    set_laser_trainable,
)
from speechbrain_wsm.models.upstream import load_upstream

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

RECIPE = RECIPES / "LibriSpeech" / "self-supervised-finetuning" / "LASER"


@pytest.fixture
def sources(tiny_ssl_sources, project_encoder):
    """The ``ssl_source`` of each YAML variant: ``laser_<variant>.yaml``."""
    hf = {v: tiny_ssl_sources[f"hf-{v}"] for v in ("hubert", "wavlm")}
    return {**hf, "project": Path(project_encoder)}


def run(variant, source, output, librispeech, **overrides):
    options = {
        "ssl_source": source,
        "data_folder": librispeech,
        "output_folder": output,
        "train_splits": "[test-clean]",
        "max_duration": 6.0,
        "optimizer_step_limit": 3,
        "grad_accumulation_factor": 2,
        "warmup_steps": 1,
        "lr": 0.001,
        "proj_dim": 8,
        "number_of_epochs": 10,
        "num_workers": 0,
        "device": "cpu",
        **overrides,
    }
    return run_in_process(RECIPE, f"laser_{variant}", options)


def test_yaml_variants_differ_only_in_model_lines():
    def normalised(name):
        text = (RECIPE / "hparams" / f"laser_{name}.yaml").read_text()
        return [
            line
            for line in text.splitlines()
            if "# model" not in line and "python train.py" not in line
        ]

    reference = normalised("hubert")
    for name in ("wavlm", "project"):
        assert normalised(name) == reference, name


def _changed(before, after):
    b, a = before.model.state_dict(), after.model.state_dict()
    assert b.keys() == a.keys()
    return {k for k in b if not torch.equal(b[k], a[k])}


@pytest.mark.parametrize(
    "variant,overrides,expected",
    [
        ("hubert", {}, (r"encoder\.layers\.[23]\.", r"encoder\.layer_norm\.")),
        (
            "wavlm",
            {"no_grad_frozen": True, "train_layer_norm": False},
            (r"encoder\.layers\.[23]\.",),
        ),
        (
            "project",
            {"top_layers": 1},
            (r"context\.encoder\.layers\.1\.", r"context\.encoder\.norm\."),
        ),
        (
            "project",
            {"score": True, "top_layers": 1, "train_layer_norm": False},
            (r"context\.encoder\.layers\.1\.",),
        ),
    ],
    ids=["hubert", "wavlm-no-grad", "project", "project-score"],
)
def test_recipe_trains_exactly_the_intended_parameters_and_exports(
    variant, overrides, expected, sources, librispeech_samples, tmp_path
):
    source = sources[variant]
    out = run(variant, source, tmp_path / "run", librispeech_samples, **overrides)
    log = (out / "train_log.txt").read_text()
    assert re.findall(r"steps: (\d+)", log)[-1] == "3"
    assert json.loads((out / "train_cost.json").read_text())["steps"] == 3
    # The exported folder is an ssl_source, and it runs.
    before = load_upstream(source, frozen=True)
    after = load_upstream(out / "model", frozen=True)
    states, frames = after(torch.randn(1, 16000), torch.tensor([16000]))
    assert len(states) == before.num_hidden_states
    assert frames.tolist() == before.output_lengths(torch.tensor([16000])).tolist()
    changed = _changed(before, after)
    intended = {
        k for k in before.model.state_dict() if any(re.match(e, k) for e in expected)
    }
    trainable = {k for k in intended if not k.endswith(("running_mean", "running_var"))}
    assert changed == trainable, (sorted(changed ^ trainable))[:10]
    names = (out / "trainable.txt").read_text().split()
    assert {n for n in names} == trainable


def test_resume_continues_from_the_checkpoint(sources, librispeech_samples, tmp_path):
    out = tmp_path / "run"
    run("project", sources["project"], out, librispeech_samples, optimizer_step_limit=2)
    run("project", sources["project"], out, librispeech_samples, optimizer_step_limit=4)
    steps = [
        int(s) for s in re.findall(r"steps: (\d+)", (out / "train_log.txt").read_text())
    ]
    # Two updates per epoch here (3 utterances, accumulation 2, the last batch
    # of an epoch steps): a restart would log 2, 2, 4.
    assert steps == [2, 4], steps


def test_a_few_steps_lower_the_loss_and_idm_keeps_frames_apart():
    """30 updates on one repeated (clean, perturbed) pair: the loss falls."""
    from tiny_models import tiny_hf_model

    from speechbrain_wsm.models.upstream import SSLUpstream

    torch.manual_seed(0)
    wav = 0.1 * torch.randn(16000)
    perturbed = ViewPerturbation(16000, [1.1], [2], 1.0, 1.0, seed=0)(wav)
    losses = {}
    for alpha in (0.4, 0.0):
        up = SSLUpstream(tiny_hf_model("hubert"))
        up.train()
        set_laser_trainable(up, top_layers=2)
        torch.manual_seed(1)
        model = LASERModel(up, proj_dim=8, alpha=alpha)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
        history = []
        for _ in range(30):
            out = model(
                wav[None],
                torch.tensor([16000]),
                perturbed[None],
                torch.tensor([len(perturbed)]),
            )
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            history.append(float(out["loss"]))
        z, _ = model.embed(wav[None], torch.tensor([16000]))
        sim = z[0] @ z[0].T
        off = sim[~torch.eye(len(sim), dtype=torch.bool)].mean()
        losses[alpha] = (history, float(off))
    history, off_idm = losses[0.4]
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5
    # Without the regulariser the frames drift together (collapse) faster.
    assert losses[0.0][1] > off_idm


def test_perturbation_changes_length_and_pitch_and_rejects_bad_options():
    wav = torch.sin(torch.arange(16000) * 2 * torch.pi * 200 / 16000)
    slow = ViewPerturbation(16000, [0.9], [2], speed_prob=1.0, pitch_prob=0.0, seed=0)
    assert abs(len(slow(wav)) - 16000 / 0.9) < 50
    pitched = ViewPerturbation(
        16000, [1.0], [2], speed_prob=0.0, pitch_prob=1.0, seed=0
    )(wav)
    spec = torch.fft.rfft(pitched).abs()
    assert len(pitched) == 16000
    assert abs(float(spec.argmax()) - 200 * 2 ** (2 / 12)) < 5  # +2 semitones: 224.5 Hz
    with pytest.raises(ValueError, match="speed_factors"):
        ViewPerturbation(16000, [0.0])
    with pytest.raises(ValueError, match="pitch_prob"):
        ViewPerturbation(16000, pitch_prob=2.0)


def test_published_perturbation_never_returns_the_clean_view(monkeypatch):
    # issue 24 item 11: every utterance is sped up or slowed down by a uniform
    # choice among the factors (1.0 included), then ALWAYS pitch-shifted by
    # +2 or -2 semitones, as LASER_finetuning/dataset.py does
    import speechbrain_wsm.models.laser as laser

    for variant in ("hubert", "wavlm", "project"):
        text = (RECIPE / "hparams" / f"laser_{variant}.yaml").read_text()
        assert "pitch_steps: [-2, 2]" in text
        assert "speed_prob: 1.0" in text and "pitch_prob: 1.0" in text
    steps = []
    shift = laser.pitch_shift
    monkeypatch.setattr(
        laser, "pitch_shift", lambda w, sr, n: steps.append(n) or shift(w, sr, n)
    )
    perturb = ViewPerturbation(16000, seed=0)  # the defaults are the published
    torch.manual_seed(0)
    wav = 0.1 * torch.randn(4000)
    for _ in range(40):
        view = perturb(wav)
        assert view.shape != wav.shape or not torch.allclose(view, wav, atol=1e-3)
    assert len(steps) == 40 and set(steps) == {-2, 2}


def test_a_clip_too_short_for_the_model_is_left_out_and_counted(
    sources, librispeech_samples, tmp_path
):
    # issue 24 item 3: a 0.05 s clip stopped the run mid-epoch ("Kernel size
    # can't be greater than input size"); it is now left out at load, counted
    import csv

    import numpy as np
    import soundfile as sf

    from speechbrain_wsm.data.librispeech import prepare_librispeech

    prep = prepare_librispeech(
        librispeech_samples, tmp_path / "prep", te_splits=["test-clean"], progress=False
    )["test-clean"]
    with open(prep, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    clip = tmp_path / "click.wav"
    sf.write(clip, 0.1 * np.random.randn(800).astype("float32"), 16000)
    rows.append({**rows[0], "ID": "click", "duration": "0.05", "wav": str(clip)})
    manifest = tmp_path / "train.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = run(
        "hubert",
        sources["hubert"],
        tmp_path / "run",
        librispeech_samples,
        skip_prep=True,
        train_csv=manifest,
        min_duration=0.0,
        optimizer_step_limit=1,
        grad_accumulation_factor=1,
    )
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["optimizer_steps"] == 1
    assert summary["utterances_left_out"]["train"]["too_short"] == 1


def test_the_run_folder_is_an_ssl_source_and_the_export_is_complete(
    sources, librispeech_samples, tmp_path
):
    # issue 24 item 12: the run folder stands for its exported <run>/model,
    # and Hugging Face loads the export with no missing or unexpected key
    from transformers import AutoModel

    from speechbrain_wsm.errors import UserError

    out = run(
        "hubert",
        sources["hubert"],
        tmp_path / "run",
        librispeech_samples,
        optimizer_step_limit=1,
        grad_accumulation_factor=1,
    )
    _, info = AutoModel.from_pretrained(str(out / "model"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    by_run = load_upstream(out, frozen=True)
    by_export = load_upstream(out / "model", frozen=True)
    for key, value in by_export.model.state_dict().items():
        assert torch.equal(by_run.model.state_dict()[key], value), key
    # a run folder that exported nothing (yet) names the folder to use
    (out / "model").rename(out / "elsewhere")
    with pytest.raises(UserError, match=r"LASER writes .*run/model"):
        load_upstream(out)
