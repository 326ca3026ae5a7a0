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
