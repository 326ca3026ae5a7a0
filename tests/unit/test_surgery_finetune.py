"""CTC fine-tuning models built on operated SSL encoders: training, saving, reloading.

Tiny Hugging Face models saved to a local folder and this project's tiny
pretrained wav2vec 2.0 encoder (see ``tests/tiny_models.py``).
"""

import shutil

import pytest
import torch
from tiny_models import save_tiny_hf, save_tiny_wav2vec2, waveforms

from speechbrain_wsm.models.finetuning import build_finetuner, load_finetuned
from speechbrain_wsm.models.ssl_ctc import TrainableSSLEncoder, save_finetuned
from speechbrain_wsm.models.surgery import count_parameters
from speechbrain_wsm.models.upstream import load_trainable_ssl, source_kind

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding")

SOURCES = ["hf-wav2vec2", "hf-wavlm-large", "project"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {
        "hf-wav2vec2": save_tiny_hf(root / "w2v", "wav2vec2"),
        "hf-wavlm-large": save_tiny_hf(root / "wavlm", "wavlm", large=True),
        "project": save_tiny_wav2vec2(root / "project"),
    }


def batch():
    wav, rel = waveforms([8000, 6400], seed=1)
    targets = torch.tensor([[3, 4, 5, 3, 6], [7, 3, 4, 0, 0]])
    target_lens = torch.tensor([5, 3])
    return wav, rel, targets, target_lens


def ctc_loss(model, wav, rel, targets, target_lens):
    log_probs, out_lens = model(wav, rel)
    frames = torch.round(out_lens * log_probs.shape[1]).long()
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, frames, target_lens, blank=0
    )


def train(model, steps=25, lr=3e-3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    data = batch()
    losses = []
    model.train()
    for _ in range(steps):
        loss = ctc_loss(model, *data)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("mode", ["wsm", "sm"])
def test_short_finetuning_lowers_the_ctc_loss(source, mode, sources):
    torch.manual_seed(0)
    model = build_finetuner(
        sources[source], 8, mode, 2, {"window_size": 4} if mode == "wsm" else {},
        head_dropout=0.0,
    )  # fmt: skip
    losses = train(model)
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("source", SOURCES)
def test_save_and_reload_give_the_same_outputs(source, sources, tmp_path):
    torch.manual_seed(0)
    model = build_finetuner(sources[source], 8, "wsm", 2, {"window_size": 4})
    train(model, steps=3)
    save_finetuned(model, tmp_path / "ft")
    moved = None
    if source.startswith("hf"):  # rebuilt from the saved config: source not needed
        moved = shutil.move(sources[source], tmp_path / "moved")
    try:
        again = load_finetuned(tmp_path / "ft")
    finally:
        if moved:
            shutil.move(moved, sources[source])
    model.eval()
    wav, rel, *_ = batch()
    with torch.no_grad():
        a, fa = model(wav, rel)
        b, fb = again(wav, rel)
    assert torch.equal(fa, fb)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert count_parameters(again) == count_parameters(model)
    assert again.build_args == model.build_args


def test_modes_train_the_head_and_what_they_say(sources):
    counts = {}
    for mode in ("full", "mhsa_top", "sm", "wsm"):
        model = build_finetuner(sources["hf-wav2vec2"], 8, mode, 2)
        assert model.head.weight.requires_grad
        counts[mode] = count_parameters(model)
        enc = model.encoder.model
        assert not any(p.requires_grad for p in enc.feature_extractor.parameters())
        frozen_bottom = enc.encoder.layers[0].parameters()
        assert any(p.requires_grad for p in frozen_bottom) == (mode == "full")
        if mode in ("sm", "wsm"):
            assert model.new_modules[-1] == "head" and len(model.new_modules) == 3
    # A WSM block (two 2-layer MLPs and a 3-input combiner) has more weights
    # than the attention it replaces; SM has one combiner input fewer.
    assert counts["full"] > counts["wsm"] > counts["sm"] > counts["mhsa_top"]


def test_loading_rejects_unknown_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a Hugging Face"):
        source_kind(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a save_finetuned folder"):
        load_finetuned(tmp_path)


def test_ssl_encoder_padding_mask_matches_the_lengths(sources):
    enc = TrainableSSLEncoder(
        load_trainable_ssl(sources["hf-wav2vec2"]), normalize_wav=True
    )
    enc.eval()
    wav, rel, *_ = batch()
    with torch.no_grad():
        feats, pad = enc(wav, rel)
        alone, pad1 = enc(wav[1:, :6400])
    valid = (~pad).sum(1).tolist()
    assert valid == enc.output_lengths(torch.tensor([8000, 6400])).tolist()
    assert not pad1.any()
    torch.testing.assert_close(feats[1, : valid[1]], alone[0], atol=2e-5, rtol=1e-4)
