"""Frozen SSL encoders for probing: loading, freezing, padding, the feature cache,
the weighted layer sum and the probe wrapper."""

import json
from pathlib import Path

import pytest
import torch
from tiny_models import make_hf_encoder, make_project_encoder

from speechbrain_wsm.models.lengths import relative_to_absolute
from speechbrain_wsm.models.ssl import SSLProbe, load_ssl_encoder
from speechbrain_wsm.models.upstream import source_kind
from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder
from speechbrain_wsm.nnet.fusion import WeightedLayerSum


def _wavs(lengths=(16000, 9600), seed=0):
    g = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wavs[i, :n] = 0.1 * torch.randn(n, generator=g)
    return wavs, torch.tensor([n / max(lengths) for n in lengths])


# --------------------------------------------------------------------------- #
# Loading and dispatch
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
def test_hf_folder_gives_every_hidden_state_of_the_model(tmp_path, model_type):
    from transformers import AutoModel

    folder = make_hf_encoder(tmp_path, model_type, num_layers=3)
    encoder = load_ssl_encoder(folder, normalize_wav=False)
    wavs, lens = _wavs()
    states = encoder(wavs, lens)
    assert source_kind(folder) == "hf"
    assert encoder.num_hidden_states == len(states) == 4
    assert all(s.shape == (2, 49, encoder.hidden_size) for s in states)
    # the same as the model's own hidden states with the attention mask
    reference = AutoModel.from_pretrained(folder).eval()
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9600:] = 0
    with torch.no_grad():
        expected = reference(
            wavs, attention_mask=mask, output_hidden_states=True
        ).hidden_states
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(states, expected))


def test_project_folder_gives_the_pretrained_encoders_states(project_encoder):
    encoder = load_ssl_encoder(project_encoder)
    direct = load_pretrained_encoder(project_encoder)
    wavs, lens = _wavs()
    states = encoder(wavs, lens)
    with torch.no_grad():
        _, expected, _ = direct(wavs, relative_to_absolute(lens, wavs.shape[1]))
    assert source_kind(project_encoder) == "project"
    assert encoder.num_hidden_states == direct.num_layers + 1 == len(states)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(states, expected))


@pytest.mark.parametrize("kind", ["project", "hf"])
def test_padded_batch_matches_each_utterance_alone(kind, project_encoder, hf_encoder):
    encoder = load_ssl_encoder(project_encoder if kind == "project" else hf_encoder)
    wavs, lens = _wavs((16000, 9600))
    batch = encoder(wavs, lens)
    alone = encoder(wavs[1:, :9600], torch.ones(1))
    frames = alone[0].shape[1]
    for b, a in zip(batch, alone):
        assert torch.allclose(b[1:, :frames], a, atol=1e-4)


@pytest.mark.parametrize("kind", ["project", "hf"])
def test_encoder_is_frozen_and_stays_in_eval_mode(kind, project_encoder, hf_encoder):
    encoder = load_ssl_encoder(project_encoder if kind == "project" else hf_encoder)
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training
    assert not any(m.training for m in encoder.modules())
    wavs, lens = _wavs()
    wavs.requires_grad_(True)
    with torch.enable_grad():
        first = encoder(wavs, lens)
    second = encoder(wavs, lens)  # no dropout / layer drop: deterministic
    assert not any(s.requires_grad for s in first)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_hf_input_options_follow_the_model_and_its_preprocessor(tmp_path):
    import transformers

    config = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, feat_extract_norm="group",
    )  # fmt: skip
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path)
    backend = load_ssl_encoder(tmp_path).backend
    assert (backend.normalize_wav, backend.attention_mask) == (False, False)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": True, "return_attention_mask": True})
    )
    backend = load_ssl_encoder(tmp_path).backend
    assert (backend.normalize_wav, backend.attention_mask) == (True, True)
    assert (
        load_ssl_encoder(tmp_path, attention_mask=False).backend.attention_mask is False
    )


def test_bad_sources_are_clear_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_ssl_encoder(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="hyperparams.yaml.*config.json"):
        load_ssl_encoder(tmp_path / "empty")
    import transformers

    transformers.BertConfig(hidden_size=16, num_hidden_layers=1).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ValueError, match="bert"):
        load_ssl_encoder(tmp_path / "bert")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "hyperparams.yaml").write_text("wav2vec2: 1\n")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        load_ssl_encoder(tmp_path / "run")


# --------------------------------------------------------------------------- #
# Feature cache
# --------------------------------------------------------------------------- #


class _Counting:
    """Wraps a backend's forward to count the utterances it encodes."""

    def __init__(self, encoder):
        self.utterances = 0
        forward = encoder.backend.forward

        def counted(wavs, wav_lens):
            self.utterances += wavs.shape[0]
            return forward(wavs, wav_lens)

        encoder.backend.forward = counted


def test_cache_skips_the_encoder_and_repeats_the_first_epoch(project_encoder, tmp_path):
    encoder = load_ssl_encoder(project_encoder, feature_cache_dir=tmp_path / "c")
    counter = _Counting(encoder)
    wavs, lens = _wavs((16000, 9600, 12000))
    first = encoder(wavs, lens, ids=["a", "b", "c"])
    assert counter.utterances == 3
    again = encoder(wavs, lens, ids=["a", "b", "c"])
    assert counter.utterances == 3  # all from disk
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    uncached = encoder(wavs, lens)  # no IDs: the encoder runs
    frames = encoder.output_lengths(torch.tensor([16000, 9600, 12000]))
    for x, y in zip(first, uncached):
        for i, n in enumerate(frames.tolist()):  # valid frames: fp16 rounding only
            assert torch.allclose(x[i, :n], y[i, :n], atol=1e-2, rtol=1e-2)
            assert not x[i, n:].any()  # cached padding is zero
    # another batch mixing cached and new utterances: only the new one runs
    mixed = encoder(wavs[[2, 0]], torch.tensor([0.75, 1.0]), ids=["c", "new"])
    assert counter.utterances == 3 + 3 + 1
    frames = int(encoder.output_lengths(12000))
    assert all(torch.equal(m[0, :frames], f[2, :frames]) for m, f in zip(mixed, first))


def test_cache_notices_other_audio_under_the_same_id(project_encoder, tmp_path):
    encoder = load_ssl_encoder(project_encoder, feature_cache_dir=tmp_path / "c")
    counter = _Counting(encoder)
    wavs, _ = _wavs((16000,))
    encoder(wavs, torch.ones(1), ids=["a"])
    encoder(wavs[:, :8000], torch.ones(1), ids=["a"])
    assert counter.utterances == 2


def test_cache_is_emptied_when_the_source_changes(tmp_path):
    import time

    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_wsm.models.wav2vec2 import load_pretrained_model

    source = Path(make_project_encoder(tmp_path / "run"))
    cache = tmp_path / "cache"
    wavs, lens = _wavs()
    load_ssl_encoder(source, feature_cache_dir=cache)(wavs, lens, ids=["a", "b"])
    assert len(list(cache.rglob("*.pt"))) == 2
    load_ssl_encoder(source, feature_cache_dir=cache)  # same weights: kept
    assert len(list(cache.rglob("*.pt"))) == 2
    # training went on: a newer checkpoint in the same folder
    model = load_pretrained_model(source)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    time.sleep(0.01)
    Checkpointer(source / "save", {"wav2vec2": model}).save_checkpoint()
    encoder = load_ssl_encoder(source, feature_cache_dir=cache)
    assert len(list(cache.rglob("*.pt"))) == 0
    encoder(wavs, lens, ids=["a", "b"])
    # another source altogether
    load_ssl_encoder(make_project_encoder(tmp_path / "b"), feature_cache_dir=cache)
    assert len(list(cache.rglob("*.pt"))) == 0


# --------------------------------------------------------------------------- #
# Weighted layer sum and probe
# --------------------------------------------------------------------------- #


def test_weighted_sum_starts_as_the_mean_and_stays_convex():
    torch.manual_seed(0)
    fusion = WeightedLayerSum(4)
    states = [torch.randn(2, 5, 3) for _ in range(4)]
    assert torch.allclose(fusion(states), torch.stack(states).mean(0), atol=1e-6)
    with torch.no_grad():
        fusion.weights.copy_(torch.tensor([5.0, -2.0, 0.0, 1.0]))
    w = fusion.layer_weights()
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and (w > 0).all()
    assert torch.allclose(fusion(states), fusion(torch.stack(states)))
    expected = sum(wi * s for wi, s in zip(w, states))
    assert torch.allclose(fusion(states), expected, atol=1e-6)


def test_weighted_sum_layer_norm_ignores_the_scale_of_each_state():
    torch.manual_seed(0)
    fusion = WeightedLayerSum(3, layer_norm=True)
    states = [torch.randn(2, 5, 8) for _ in range(3)]
    scaled = [s * k for s, k in zip(states, (1.0, 10.0, 0.5))]
    assert torch.allclose(fusion(states), fusion(scaled), atol=1e-4)


def test_weighted_sum_checks_its_input():
    fusion = WeightedLayerSum(3)
    with pytest.raises(ValueError, match="3 hidden states"):
        fusion([torch.zeros(1, 2, 4)] * 2)
    with pytest.raises(ValueError, match="shape"):
        fusion([torch.zeros(1, 2, 4), torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)])
    with pytest.raises(ValueError):
        WeightedLayerSum(0)


def test_probe_trains_head_and_weights_only(project_encoder):
    torch.manual_seed(0)
    encoder = load_ssl_encoder(project_encoder)
    probe = SSLProbe(encoder, torch.nn.Linear(encoder.hidden_size, 3))
    wavs, lens = _wavs()
    target = torch.randn(2, 46, 3)
    optimizer = torch.optim.Adam(
        [p for p in probe.parameters() if p.requires_grad], lr=0.05
    )
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    losses = []
    for _ in range(15):
        out, out_lens = probe(wavs, lens)
        loss = (out - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # lengths over the frames, from the encoder's own frame counts
    frames = encoder.output_lengths(torch.round(lens * wavs.shape[1]).long())
    assert torch.equal(torch.round(out_lens * out.shape[1]).long(), frames)
    assert losses[-1] < losses[0]
    assert probe.weighted_sum.weights.grad is not None
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    with pytest.raises(ValueError, match="combines 5 states"):
        SSLProbe(encoder, torch.nn.Identity(), WeightedLayerSum(5))
