"""The from-scratch recogniser (FbankCTC): both subsampling front ends."""

import pytest
import torch

from speechbrain_wsm.models.ctc_asr import FbankCTC
from speechbrain_wsm.nnet.encoders import MixerEncoder

# 2-D: feature maps over time and mel bins; 1-D: the latent's width
FRONT_ENDS = {"2d": (4, 8), "1d": (32, 32)}


def model(frontend_conv="1d", num_layers=2, **kwargs):
    torch.manual_seed(0)
    enc = MixerEncoder(
        num_layers, 32, nhead=2, d_ffn=64, mixer="wsm", mixer_kwargs={"window_size": 4}
    )
    channels = FRONT_ENDS[frontend_conv]
    return FbankCTC(
        enc, 30, 32, n_mels=20, cnn_channels=channels, frontend_conv=frontend_conv,
        **kwargs,
    ).eval()  # fmt: skip


@pytest.mark.parametrize("frontend_conv", FRONT_ENDS)
def test_both_front_ends_subsample_four_times_and_keep_relative_lengths(
    frontend_conv,
):
    with torch.no_grad():
        log_probs, lens = model(frontend_conv)(
            torch.randn(2, 16000), torch.tensor([1.0, 0.5])
        )
    assert log_probs.shape == (2, 26, 30) and lens.tolist() == [1.0, 0.5]


def test_the_1d_front_end_convolves_over_time_with_the_bins_as_channels():
    m = model("1d")
    convs = [c for c in m.subsampling.modules() if isinstance(c, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (20, 32, 2),
        (32, 32, 2),
    ]
    assert m.projection.in_features == 32


def test_an_unknown_front_end_is_refused():
    enc = MixerEncoder(1, 8, nhead=2, d_ffn=16, mixer="sm")
    with pytest.raises(ValueError, match="frontend_conv must be"):
        FbankCTC(enc, 30, 8, frontend_conv="3d")


def _bank():
    from speechbrain.lobes.features import Fbank

    return Fbank(n_mels=80)


def _tone_fbank(hz: float) -> torch.Tensor:
    t = torch.arange(16000) / 16000
    return _bank()(torch.sin(2 * torch.pi * hz * t)[None])


def _warp(low=0.9, high=1.1):
    from speechbrain_wsm.nnet.frontend import MelWarp

    bank = _bank().compute_fbanks
    return MelWarp(bank.f_central, bank.f_max, low, high)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_a_formant_as_a_longer_or_shorter_vocal_tract_would(alpha):
    """A tone at 1000 Hz, warped by alpha, peaks in the band of a tone at alpha * 1000 Hz."""
    warped = _warp(alpha, alpha).train()(_tone_fbank(1000.0)).mean(1).argmax(-1)
    target = _tone_fbank(1000.0 * alpha).mean(1).argmax(-1)
    unwarped = _tone_fbank(1000.0).mean(1).argmax(-1)
    assert warped.item() == target.item() != unwarped.item()


def test_vtlp_is_the_identity_at_factor_one_and_in_eval():
    feats = torch.randn(3, 40, 80)
    torch.testing.assert_close(_warp(1.0, 1.0).train()(feats), feats)
    warp = _warp()
    assert not torch.allclose(warp.train()(feats), feats)
    assert torch.equal(warp.eval()(feats), feats)


@pytest.mark.parametrize("low, high", [(0.7, 1.1), (1.1, 0.9)])
def test_vtlp_refuses_factors_its_warp_cannot_draw(low, high):
    from speechbrain_wsm.errors import UserValueError

    with pytest.raises(UserValueError, match="low <= high"):
        _warp(low, high)


def test_vtlp_warps_training_features_only():
    """A model with VTLP warps its training features and decodes as the same model without it."""
    plain, warped = model(), model(vtlp=True)
    assert warped.state_dict().keys() == plain.state_dict().keys()
    wav, lens = torch.randn(1, 8000), torch.ones(1)
    with torch.no_grad():
        torch.testing.assert_close(warped(wav)[0], plain(wav)[0])
        train_feats = warped.train().features(wav, lens)
        assert not torch.allclose(train_feats, plain.features(wav, lens))


def test_intermediate_ctc_returns_the_named_layers_posteriors_in_training_only():
    m = model(num_layers=3, inter_ctc_layers=[1, 2])
    wav, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    log_probs, out_lens, inter = m.train()(wav, lens)
    assert len(inter) == 2 and all(lp.shape == log_probs.shape for lp in inter)
    assert torch.allclose(inter[0].exp().sum(-1), torch.ones(()))
    with torch.no_grad():
        assert len(m.eval()(wav, lens)) == 2  # the evaluation contract


def test_self_conditioning_feeds_intermediate_posteriors_forward_at_inference():
    """Zeroed, the conditioning projection leaves the plain model; trained, it
    changes the model's output, and the ONNX graph follows it."""
    from speechbrain_wsm.export import OfflineGraph

    plain = model(num_layers=3)
    conditioned = model(num_layers=3, inter_ctc_layers=[2], self_condition=True)
    missing = conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing.missing_keys) == ["condition.bias", "condition.weight"]
    torch.nn.init.zeros_(conditioned.condition.weight)
    torch.nn.init.zeros_(conditioned.condition.bias)
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(conditioned(wav)[0], plain(wav)[0])
        torch.nn.init.normal_(conditioned.condition.weight)
        assert not torch.allclose(conditioned(wav)[0], plain(wav)[0])
        graph = OfflineGraph(conditioned)(wav)
        torch.testing.assert_close(graph, conditioned(wav)[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"inter_ctc_layers": [3]}, "from 1 to 2"),
        ({"inter_ctc_layers": [0]}, "from 1 to 2"),
        ({"self_condition": True}, "needs inter_ctc_layers"),
    ],
)
def test_intermediate_ctc_options_are_checked(kwargs, message):
    from speechbrain_wsm.errors import UserValueError

    with pytest.raises(UserValueError, match=message):
        model(num_layers=3, **kwargs)


def test_the_recipe_loss_mixes_the_intermediate_ctc_losses_by_their_weight():
    from types import SimpleNamespace

    import speechbrain as sb

    from speechbrain_wsm.errors import ConfigError
    from speechbrain_wsm.recipe.ctc import CTCBrain

    torch.manual_seed(0)
    final, inter = (torch.randn(2, 20, 30).log_softmax(-1) for _ in range(2))
    lens, tokens = torch.ones(2), torch.randint(1, 30, (2, 5))
    batch = SimpleNamespace(tokens=(tokens, torch.ones(2)))

    def ctc(lp):
        return sb.nnet.losses.ctc_loss(lp, tokens, lens, torch.ones(2), blank_index=0)

    def loss(weight):
        brain = SimpleNamespace(hparams=SimpleNamespace(inter_ctc_weight=weight))
        return CTCBrain.compute_objectives(
            brain, (final, lens, [inter]), batch, sb.Stage.TRAIN
        )

    torch.testing.assert_close(loss(0.25), 0.75 * ctc(final) + 0.25 * ctc(inter))
    assert not torch.allclose(ctc(final), ctc(inter))
    with pytest.raises(ConfigError, match="inter_ctc_weight"):
        loss(None)
