"""wav2vec 2.0 front ends: waveform or filterbank -> latent frames, and their frame counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from speechbrain.lobes.models.wav2vec import W2VLatentExtractor
from speechbrain.processing.features import spectral_magnitude

from speechbrain_wsm.models.lengths import (
    standardize,
)
from speechbrain_wsm.nnet.frontend import (
    FbankConvFrontEnd,
    FrameCounter,
    check_waveform,
)


class FbankLatentExtractor(FbankConvFrontEnd):
    """Log-mel filterbank + strided convolutions: the paper's 20 ms front end.

    80 mel bins from 25 ms windows every 10 ms (no centring, so a frame never
    reaches past the end of its utterance), standardised per utterance over its
    valid frames, then ``Conv1d -> LayerNorm -> GELU`` blocks (default two,
    kernel 3, strides 2 and 1: 20 ms frames) and a final LayerNorm.

    Arguments
    ---------
    n_mels : int
        Mel bins.
    channels : sequence of int
        Output channels of each convolution; the last is ``out_dim``.
    kernel_sizes, strides : sequence of int
        Kernel and stride of each convolution.
    sample_rate : int
        Audio sample rate (Hz).
    n_fft : int
        FFT size (samples).
    win_length, hop_length : float
        Analysis window and hop (ms).
    dropout : float
        Dropout after each convolution block.

    Example
    -------
    >>> fe = FbankLatentExtractor(n_mels=20, channels=[16, 16])
    >>> wav = torch.randn(2, 16000)
    >>> fe(wav, torch.tensor([16000, 8000])).shape
    torch.Size([2, 46, 16])
    >>> fe.output_lengths(torch.tensor([16000, 8000]))
    tensor([46, 21])
    """

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """``wav`` ``[batch, sample]``, ``lengths`` ``[batch]`` samples (None:
        no padding) -> latents ``[batch, frame, out_dim]``."""
        check_waveform(wav, self.output_lengths)
        with torch.autocast(device_type=wav.device.type, enabled=False):
            feats = self.fbank(spectral_magnitude(self.stft(wav.float())))
            feats = torch.log(feats.clamp(min=1e-10))
            frames = None if lengths is None else self._fbank_frames(lengths)
            feats = standardize(feats, frames)
        return self.convolve(feats)


class WaveformLatentExtractor(W2VLatentExtractor):
    """The wav2vec 2.0 waveform CNN (SpeechBrain's), on standardised audio.

    Each utterance is standardised over its valid samples (padding zeroed),
    then goes through SpeechBrain's :class:`W2VLatentExtractor`; the default
    strides (5, 2, 2, 2, 2, 2, 2) give 20 ms frames.

    Arguments
    ---------
    out_channels, kernel_sizes, strides : sequence of int
        One entry per convolution.
    dropout : float
        Dropout of the convolution blocks.

    Example
    -------
    >>> fe = WaveformLatentExtractor(out_channels=[8] * 7)
    >>> fe(torch.randn(2, 16000)).shape
    torch.Size([2, 49, 8])
    >>> fe.output_lengths(16000)
    tensor(49)
    """

    def __init__(
        self,
        out_channels: Sequence[int] = (512,) * 7,
        kernel_sizes: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        dropout: float = 0.0,
    ):
        super().__init__(
            out_channels=list(out_channels),
            kernel_sizes=list(kernel_sizes),
            strides=list(strides),
            dropout=dropout,
        )
        self.output_lengths = FrameCounter(kernel_sizes, strides)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """``wav`` ``[batch, sample]`` -> latents ``[batch, frame, out_dim]``."""
        check_waveform(wav, self.output_lengths)
        return super().forward(standardize(wav, lengths), normalize_signal=False)
