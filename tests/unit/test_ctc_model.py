"""The from-scratch recogniser (FbankCTC): both subsampling front ends."""

import pytest
import torch

from speechbrain_wsm.models.ctc_asr import FbankCTC
from speechbrain_wsm.nnet.encoders import MixerEncoder

# 2-D: feature maps over time and mel bins; 1-D: the latent's width
FRONT_ENDS = {"2d": (4, 8), "1d": (32, 32)}


def model(frontend_conv):
    torch.manual_seed(0)
    enc = MixerEncoder(
        2, 32, nhead=2, d_ffn=64, mixer="wsm", mixer_kwargs={"window_size": 4}
    )
    channels = FRONT_ENDS[frontend_conv]
    return FbankCTC(
        enc, 30, 32, n_mels=20, cnn_channels=channels, frontend_conv=frontend_conv
    ).eval()


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


def _tone_fbank(hz: float, n_mels: int = 80) -> torch.Tensor:
    from speechbrain.lobes.features import Fbank

    t = torch.arange(16000) / 16000
    return Fbank(n_mels=n_mels)(torch.sin(2 * torch.pi * hz * t)[None])


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_a_formant_as_a_longer_or_shorter_vocal_tract_would(alpha):
    """A tone at 1000 Hz, warped by alpha, peaks in the band of a tone at alpha * 1000 Hz."""
    from speechbrain_wsm.nnet.frontend import MelWarp

    warp = MelWarp(80, low=alpha, high=alpha).train()
    warped = warp(_tone_fbank(1000.0)).mean(1).argmax(-1)
    target = _tone_fbank(1000.0 * alpha).mean(1).argmax(-1)
    unwarped = _tone_fbank(1000.0).mean(1).argmax(-1)
    assert warped.item() == target.item() != unwarped.item()


def test_vtlp_is_the_identity_at_factor_one_and_in_eval():
    from speechbrain_wsm.nnet.frontend import MelWarp

    feats = torch.randn(3, 40, 80)
    same = MelWarp(80, low=1.0, high=1.0).train()(feats)
    torch.testing.assert_close(same, feats, atol=1e-4, rtol=0)  # mel<->Hz rounding
    warp = MelWarp(80)
    assert not torch.allclose(warp.train()(feats), feats)
    assert torch.equal(warp.eval()(feats), feats)


def test_vtlp_warps_training_features_only():
    """A model with VTLP decodes as the same model without it."""
    plain = model("1d")
    torch.manual_seed(0)
    enc = MixerEncoder(
        2, 32, nhead=2, d_ffn=64, mixer="wsm", mixer_kwargs={"window_size": 4}
    )
    warped = FbankCTC(
        enc, 30, 32, n_mels=20, cnn_channels=(32, 32), frontend_conv="1d", vtlp=True
    )
    warped.load_state_dict(plain.state_dict())  # no weights or buffers of its own
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(warped.eval()(wav)[0], plain(wav)[0])
        warped.train()
        assert (
            warped.features(wav, torch.ones(1)).shape
            == plain.features(wav, torch.ones(1)).shape
        )


def _conditioned(**kwargs):
    torch.manual_seed(0)
    enc = MixerEncoder(
        3, 32, nhead=2, d_ffn=64, mixer="wsm", mixer_kwargs={"window_size": 4}
    )
    return FbankCTC(
        enc, 30, 32, n_mels=20, cnn_channels=(32, 32), frontend_conv="1d", **kwargs
    )


def test_intermediate_ctc_returns_the_named_layers_posteriors_in_training_only():
    m = _conditioned(inter_ctc_layers=[1, 2])
    wav, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    log_probs, out_lens, inter = m.train()(wav, lens)
    assert len(inter) == 2 and all(lp.shape == log_probs.shape for lp in inter)
    assert torch.allclose(inter[0].exp().sum(-1), torch.ones(()))
    with torch.no_grad():
        assert len(m.eval()(wav, lens)) == 2  # the evaluation contract


def test_self_conditioning_feeds_intermediate_posteriors_forward_at_inference():
    """Zeroed, the conditioning projection leaves the plain model; trained, it changes it."""
    plain, conditioned = (
        _conditioned(),
        _conditioned(inter_ctc_layers=[2], self_condition=True),
    )
    conditioned.load_state_dict(plain.state_dict(), strict=False)
    torch.nn.init.zeros_(conditioned.condition.weight)
    torch.nn.init.zeros_(conditioned.condition.bias)
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(conditioned.eval()(wav)[0], plain.eval()(wav)[0])
        torch.nn.init.normal_(conditioned.condition.weight)
        assert not torch.allclose(conditioned(wav)[0], plain(wav)[0])


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
        _conditioned(**kwargs)
