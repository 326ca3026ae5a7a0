"""A mixer in place of a Hugging Face encoder layer's attention module."""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_wsm.models.upstream.hf import hf_padding_mask

__all__ = ["MixerAttention", "WavLMRelativePositionBias"]


class WavLMRelativePositionBias(nn.Module):
    """WavLM's relative position bias, kept when layer 0's attention is replaced.

    WavLM computes its bucketed relative position bias in the first layer's
    attention and hands it up to every other layer. When that attention is
    replaced, this module (holding the original, frozen embedding) computes the
    same bias, with WavLM's own bucketing code, so the layers above still get
    it.

    Arguments
    ---------
    attention : torch.nn.Module
        The ``WavLMAttention`` being replaced (it must own ``rel_attn_embed``).
    """

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.rel_attn_embed = attention.rel_attn_embed
        self.num_buckets = attention.num_buckets
        self.max_distance = attention.max_distance
        self.num_heads = attention.num_heads
        self._source = type(attention)

    def _relative_positions_bucket(self, relative_positions):
        return self._source._relative_positions_bucket(self, relative_positions)

    def forward(self, batch_size: int, frames: int) -> torch.Tensor:
        """The ``[batch * heads, frame, frame]`` bias WavLM's first layer returns."""
        bias = self._source.compute_bias(self, frames, frames)
        return (
            bias.unsqueeze(0)
            .repeat(batch_size, 1, 1, 1)
            .view(batch_size * self.num_heads, frames, frames)
        )


class MixerAttention(nn.Module):
    """A mixer in place of a Hugging Face encoder layer's ``attention`` module.

    Called as the layer calls its attention (hidden states, ``attention_mask``
    in whatever form the model built, WavLM's ``position_bias``), it runs the
    mixer with a ``[batch, frame]`` padding mask and returns the tuple the
    layer unpacks: ``(output, None)``, or ``(output, None, position_bias)``
    for WavLM layers.

    Arguments
    ---------
    mixer : torch.nn.Module
        A mixer with ``forward(x, src_key_padding_mask)`` (see
        :mod:`speechbrain_wsm.nnet.registry`).
    returns_position_bias : bool
        Return WavLM's position bias as third element.
    relative_bias : WavLMRelativePositionBias, optional
        Computes the position bias when none is passed in (replaced WavLM
        layer 0).

    Example
    -------
    >>> from speechbrain_wsm.nnet.registry import build_mixer
    >>> att = MixerAttention(build_mixer("wsm", 16, window_size=4))
    >>> mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    >>> out, weights = att(torch.randn(2, 4, 16), attention_mask=mask)
    >>> out.shape, weights
    (torch.Size([2, 4, 16]), None)
    """

    def __init__(
        self,
        mixer: nn.Module,
        returns_position_bias: bool = False,
        relative_bias: WavLMRelativePositionBias | None = None,
    ):
        super().__init__()
        self.mixer = mixer
        self.returns_position_bias = returns_position_bias
        self.relative_bias = relative_bias

    def forward(
        self, hidden_states, attention_mask=None, position_bias=None, **kwargs
    ) -> tuple:
        """Mix ``hidden_states`` ``[batch, frame, feature]``; other kwargs are ignored."""
        pad = hf_padding_mask(attention_mask, hidden_states.shape[:2])
        out = self.mixer(hidden_states, src_key_padding_mask=pad)
        if not self.returns_position_bias:
            return out, None
        if position_bias is None and self.relative_bias is not None:
            position_bias = self.relative_bias(*hidden_states.shape[:2])
        return out, None, position_bias
