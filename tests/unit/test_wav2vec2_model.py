"""wav2vec 2.0 model pieces: front ends, padding, masking, loss, loading errors."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from speechbrain.dataio.dataio import read_audio
from speechbrain.lobes.models.wav2vec import W2VTargetQuantiser
from speechbrain.nnet.losses import ContrastiveLoss
from speechbrain.nnet.quantisers import GumbelVectorQuantizer

from speechbrain_wsm.models.lengths import (
    relative_to_absolute,
    relative_to_padding_mask,
)
from speechbrain_wsm.models.wav2vec2 import (
    ContextNetwork,
    FbankLatentExtractor,
    GumbelQuantiser,
    Wav2Vec2Encoder,
    Wav2Vec2Loss,
    Wav2Vec2Pretrainer,
    WaveformLatentExtractor,
    find_checkpoint,
    load_pretrained_encoder,
    sample_negative_indices,
)
from speechbrain_wsm.nnet.encoders import MixerEncoder
from speechbrain_wsm.recipe.dataio import SpanMaskCollate

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "LibriSpeech"
D = 16


def front_end(kind):
    if kind == "fbank":
        return FbankLatentExtractor(n_mels=20, channels=[D, D])
    return WaveformLatentExtractor(out_channels=[D] * 7)


def speech(n, seconds):
    """The first ``n`` fixture utterances, cut to ``seconds``."""
    files = sorted(SAMPLES.glob("test-clean/*/*/*.flac"))[:n]
    return [read_audio(str(f))[: int(16000 * s)] for f, s in zip(files, seconds)]


def pretrainer(mixer="wsm", kind="fbank", **kw):
    torch.manual_seed(0)
    enc = MixerEncoder(
        2,
        D,
        nhead=2,
        d_ffn=32,
        mixer=mixer,
        kernel_size=3,
        positional_encoding="sine",
        mixer_kwargs={"window_size": 4} if mixer == "wsm" else None,
    )
    quantiser = W2VTargetQuantiser(D, 8, quantiser=GumbelQuantiser, num_vars=16)
    return Wav2Vec2Pretrainer(front_end(kind), enc, quantiser, final_dim=8, **kw)


@pytest.mark.parametrize("kind", ["fbank", "waveform"])
def test_frame_counter_matches_the_front_end(kind):
    fe = front_end(kind).eval()
    for n in [1840, 1841, 2000, 16000, 16001, 33333]:
        with torch.no_grad():
            frames = fe(torch.randn(1, n)).shape[1]
        assert int(fe.output_lengths(n)) == frames, n
    with pytest.raises(ValueError, match="too few"):
        fe(torch.randn(1, 300))


@pytest.mark.parametrize("kind", ["fbank", "waveform"])
@pytest.mark.parametrize("mixer", ["mhsa", "sm", "wsm"])
def test_padded_batch_encodes_each_utterance_as_alone(kind, mixer):
    model = pretrainer(mixer, kind, pos_conv_kernel=4, pos_conv_groups=4).eval()
    encoder = model.encoder
    sigs = speech(3, [1.5, 0.9, 1.2])
    wav = torch.zeros(3, len(sigs[0]))
    for i, s in enumerate(sigs):
        wav[i, : len(s)] = s
    wav[1:, -100:] = 3.0  # non-zero padding must not matter either
    lens = torch.tensor([len(s) for s in sigs])
    with torch.no_grad():
        out, hidden, frames = encoder(wav, lens)
        assert len(hidden) == encoder.num_layers + 1
        for i, s in enumerate(sigs):
            alone, alone_hidden, no_lengths = encoder(s.unsqueeze(0))
            T = alone.shape[1]
            assert no_lengths is None and int(frames[i]) == T
            assert T == int(encoder.latent_extractor.output_lengths(len(s)))
            torch.testing.assert_close(out[i, :T], alone[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(
                hidden[1][i, :T], alone_hidden[1][0], atol=1e-4, rtol=1e-4
            )


def test_relative_lengths_recover_exact_sample_counts():
    n = torch.tensor([480000, 479999, 16000, 1])
    rel = (n.float() / 480000).float()  # as PaddedBatch stores them
    assert relative_to_absolute(rel, 480000).tolist() == n.tolist()
    mask = relative_to_padding_mask(torch.tensor([1.0, 0.5]), 4)
    assert mask.tolist() == [[False] * 4, [False, False, True, True]]


def test_masked_frames_get_the_mask_embedding_and_nothing_else_changes():
    torch.manual_seed(0)
    enc = MixerEncoder(1, D, nhead=2, d_ffn=32, mixer="sm", dropout=0.0)
    net = ContextNetwork(enc, in_dim=D, dropout_input=0.0).eval()
    latents = torch.randn(2, 12, D)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, 3:6] = True
    seen = {}
    net.encoder.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        net(latents, mask=mask)
    x = seen["x"]
    torch.testing.assert_close(x[mask], net.mask_emb.expand(6, D))
    torch.testing.assert_close(x[~mask], net.input_proj(latents)[~mask])


def test_pretrainer_outputs_and_input_checks():
    model = pretrainer()
    wav = torch.randn(2, 16000)
    lens = torch.tensor([1.0, 0.75])
    T = int(model.output_lengths(16000))
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[:, 2:12] = True
    out = model(wav, lens, mask)
    assert out["predictions"].shape == out["targets"].shape == (2, 10, 8)
    assert int(out["num_masked"]) == 20
    with pytest.raises(ValueError, match="front end made"):
        model(wav, lens, mask[:, :-1])
    uneven = mask.clone()
    uneven[0, 20] = True
    with pytest.raises(ValueError, match="same number"):
        model(wav, lens, uneven)
    on_padding = torch.zeros_like(mask)
    on_padding[:, T - 3 :] = True
    with pytest.raises(ValueError, match="padded frames"):
        model(wav, lens, on_padding)
    with pytest.raises(ValueError, match="quantiser reads"):
        Wav2Vec2Pretrainer(
            front_end("fbank"),
            MixerEncoder(1, D, nhead=2, d_ffn=32, mixer="sm"),
            W2VTargetQuantiser(in_dim=D + 1, out_dim=8, num_vars=4),
            final_dim=8,
        )


def test_contrastive_loss_equals_speechbrains_with_the_same_negatives():
    torch.manual_seed(0)
    B, T, C, N = 3, 12, 8, 7
    predictions = torch.randn(B, T, C, requires_grad=True)
    codes = torch.randn(5, C)  # few codes: many negatives equal their target
    targets = codes[torch.randint(0, 5, (B, T))]
    idx = sample_negative_indices(B, T, N)
    negs = targets[torch.arange(B)[:, None, None], idx].permute(2, 0, 1, 3)
    ref_sum, ref_acc = ContrastiveLoss(logit_temp=0.1)(predictions, targets, negs)
    (ref_grad,) = torch.autograd.grad(ref_sum / (B * T), predictions)
    loss, acc = Wav2Vec2Loss(N, logit_temp=0.1).contrastive(predictions, targets, idx)
    (grad,) = torch.autograd.grad(loss, predictions)
    torch.testing.assert_close(loss, ref_sum / (B * T))
    torch.testing.assert_close(acc, ref_acc.float())
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize("training", [True, False])
def test_gumbel_quantiser_equals_speechbrains(training):
    args = (12, 10, (2.0, 0.25, 0.999995), 2, 8)
    torch.manual_seed(0)
    ref = GumbelVectorQuantizer(*args).train(training)
    ours = GumbelQuantiser(*args).train(training)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 7, 12, requires_grad=True)
    torch.manual_seed(1)
    expected = ref(x)
    torch.manual_seed(1)  # the same Gumbel noise
    got = ours(x)
    for key in ("x", "code_perplexity", "prob_perplex"):
        torch.testing.assert_close(got[key], expected[key])
    assert (got["num_vars"], got["temp"]) == (expected["num_vars"], expected["temp"])
    if not training:  # hard codes: no gradient reaches x
        return
    (g_ref,) = torch.autograd.grad(expected["x"].square().sum(), x)
    (g_ours,) = torch.autograd.grad(got["x"].square().sum(), x)
    torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("mixer", ["mhsa", "sm", "wsm"])
def test_contrastive_loss_decreases_on_a_repeated_batch(mixer):
    model = pretrainer(mixer)
    np.random.seed(0)
    random.seed(0)
    sigs = speech(2, [2.0, 1.6])
    batch = SpanMaskCollate(model.output_lengths, 0.65, 10)(
        [{"id": str(i), "sig": s} for i, s in enumerate(sigs)]
    )
    loss_fn = Wav2Vec2Loss(num_negatives=20)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def contrastive_loss():  # same negatives each time, no dropout or Gumbel noise
        model.eval()
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)
            return float(loss_fn(model(*batch))["contrastive_loss"])

    before = contrastive_loss()
    model.train()
    for _ in range(12):
        loss = loss_fn(model(*batch))["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = contrastive_loss()
    assert after < 0.9 * before, (before, after)


def test_span_masks_are_equal_in_count_and_stay_off_padding():
    counter = FbankLatentExtractor(n_mels=20, channels=[D, D]).output_lengths
    collate = SpanMaskCollate(counter, 0.65, 10)
    items = [
        {"id": "a", "sig": torch.randn(48000)},
        {"id": "b", "sig": torch.randn(20000)},
        {"id": "c", "sig": torch.randn(33000)},
    ]
    np.random.seed(1)
    wavs, lens, mask = collate(items)
    frames = counter(torch.tensor([48000, 20000, 33000]))
    assert mask.shape == (3, int(frames.max()))
    assert (mask.sum(1) == mask.sum(1)[0]).all()
    for i, n in enumerate(frames.tolist()):
        assert not mask[i, n:].any()
    assert relative_to_absolute(lens, wavs.shape[1]).tolist() == [48000, 20000, 33000]
    with pytest.raises(ValueError, match="too short"):
        collate([{"id": "tiny", "sig": torch.randn(4000)}])


def test_loaders_explain_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="hyperparams.yaml"):
        load_pretrained_encoder(tmp_path)
    (tmp_path / "hyperparams.yaml").write_text("a: 1\n")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_pretrained_encoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        find_checkpoint(tmp_path, checkpoint=tmp_path / "CKPT+nothing")


def test_encoder_properties():
    model = pretrainer()
    assert isinstance(model.encoder, Wav2Vec2Encoder)
    assert model.encoder.d_model == D and model.encoder.num_layers == 2
