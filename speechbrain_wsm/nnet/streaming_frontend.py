"""A front end that never reads the future beyond its own analysis windows.

:class:`~speechbrain_wsm.models.wav2vec2.FbankLatentExtractor` standardises
each utterance's filterbank with statistics of the *whole* utterance, so the
first frame depends on the last: it cannot stream. This subclass normalises
each 10 ms frame on its own (zero mean, unit variance over its mel bins, no
learned scale): a frame depends on its 25 ms window only. The strided valid
convolutions after it read a bounded number of frames ahead (two for the
default kernels), which is part of the front end's frame latency, not a
growing look-ahead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.processing.features import spectral_magnitude

from speechbrain_wsm.models.wav2vec2 import FbankLatentExtractor

__all__ = ["StreamingFbankExtractor"]


class StreamingFbankExtractor(FbankLatentExtractor):
    """Log-mel filterbank, per-frame normalisation, strided convolutions.

    Same arguments and outputs as
    :class:`~speechbrain_wsm.models.wav2vec2.FbankLatentExtractor`; only the
    normalisation differs (per frame over mel bins instead of per utterance
    over frames), so a frame's latent never depends on audio after its
    receptive field.

    Example
    -------
    >>> fe = StreamingFbankExtractor(n_mels=20, channels=[16, 16])
    >>> wav = torch.randn(1, 16000)
    >>> y = fe(wav)
    >>> torch.allclose(fe(wav[:, :8000]), y[:, : fe.output_lengths(8000)], atol=1e-5)
    True
    """

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """``wav`` ``[batch, sample]`` -> latents ``[batch, frame, out_dim]``;
        ``lengths`` (samples) only zero the padded frames."""
        if wav.dim() != 2:
            raise ValueError(f"expected wav [batch, sample], got {tuple(wav.shape)}")
        if int(self.output_lengths(wav.shape[1])) < 1:
            raise ValueError(f"{wav.shape[1]} samples make no frame")
        with torch.autocast(device_type=wav.device.type, enabled=False):
            feats = self.fbank(spectral_magnitude(self.stft(wav.float())))
            feats = torch.log(feats.clamp(min=1e-10))
            feats = F.layer_norm(feats, feats.shape[-1:])
            if lengths is not None:
                frames = self._fbank_frames(lengths).to(feats.device)
                pad = (
                    torch.arange(feats.shape[1], device=feats.device) >= frames[:, None]
                )
                feats = feats.masked_fill(pad.unsqueeze(-1), 0.0)
        x = feats
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
