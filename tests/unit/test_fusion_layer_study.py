"""The layer study: one head per hidden state, scored, through the feature cache."""

import json

import pytest
import torch

from speechbrain_wsm.bench import layer_study
from speechbrain_wsm.models.ssl import load_ssl_encoder


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quick_study_scores_each_asked_layer_from_the_cache(tmp_path):
    out = tmp_path / "study"
    argv = ["--quick", "--layers", "0", "4", "--steps", "2", "--out", str(out)]
    assert layer_study.main(argv) == 0
    data = json.loads((out / "layer_study.json").read_text())
    assert [r["layer"] for r in data["rows"]] == [0, 4]
    assert all(r["cer"] >= 0 and r["wer"] >= 0 for r in data["rows"])
    for layer in (0, 4):
        assert (out / f"cer_layer{layer}.txt").read_text().startswith("%WER")
    assert "reconstruction" in data["meta"]["note"]
    # The states were computed once, into the feature cache, which a second
    # encoder of the same source reads back instead of running the model.
    cached = list((out / "feature_cache").rglob("*.pt")) or [
        p for p in (out / "feature_cache").rglob("*") if p.is_file()
    ]
    assert cached
    encoder = load_ssl_encoder(data["meta"]["ssl_source"], out / "feature_cache")
    utts = layer_study.read_split(layer_study.DEFAULT_DATA)[:2]
    encoder.backend.forward = None  # any encoder run would fail now
    feats = layer_study.encode_split(encoder, utts)
    assert set(feats) == {u.ID for u in utts}
    assert all(f.shape[0] == 5 and f.dtype == torch.float32 for f in feats.values())


def test_text_plot_scales_to_the_worst_layer():
    rows = [{"layer": 0, "cer": 80.0}, {"layer": 1, "cer": 20.0}]
    lines = layer_study.text_plot(rows, width=8).splitlines()
    assert lines[0].count("#") == 8 and lines[1].count("#") == 2
