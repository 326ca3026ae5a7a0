"""The one registry of token mixers: YAML name -> mixer class.

Adding a mixer is one module with the mixer interface
(``__init__(d_model, nhead, dropout, causal, **kwargs)`` and
``forward(x, src_key_padding_mask=None) -> y``) plus one line in ``MIXERS``.
"""

from __future__ import annotations

from torch import nn

from speechbrain_wsm.nnet.attention import MHSA, RelPosMHSA, SDPAttention
from speechbrain_wsm.nnet.streaming import (
    ChunkedAttention,
    MaskedAttention,
    StreamingAttention,
    StreamingWSM,
)
from speechbrain_wsm.nnet.summary_mixing import SummaryMixing, WindowedSummaryMixing

MIXERS: dict[str, type[nn.Module]] = {
    "relpos_mhsa": RelPosMHSA,  # SpeechBrain's RelPosMHAXL (its Conformer recipes)
    "mhsa": MHSA,  # SpeechBrain's multi-head self-attention (absolute positions)
    "sdpa": SDPAttention,  # torch scaled_dot_product_attention (flash on GPU)
    "sm": SummaryMixing,
    "wsm": WindowedSummaryMixing,
    "maa": MaskedAttention,  # band-masked attention, left/right_context (streaming)
    "sa": StreamingAttention,  # the same band without the T x T matrix (streaming)
    "chunked": ChunkedAttention,  # SpeechBrain's dynamic-chunk mask (streaming)
    "swsm": StreamingWSM,  # WSM with a look-ahead window (streaming)
}


def build_mixer(
    name: str,
    d_model: int,
    nhead: int = 1,
    dropout: float = 0.0,
    causal: bool = False,
    **kwargs,
) -> nn.Module:
    """Build the mixer registered as ``name``.

    Arguments
    ---------
    name : str
        A key of :data:`MIXERS`.
    d_model, nhead, dropout, causal
        Arguments every mixer takes.
    **kwargs
        Mixer-specific arguments (``window_size`` for ``wsm``, ``mode`` for
        ``sm``/``wsm`` ...).

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> build_mixer("wsm", 16, nhead=2, window_size=8).window_size
    8
    >>> build_mixer("attention", 16)
    Traceback (most recent call last):
    ...
    ValueError: unknown mixer 'attention'; valid names: relpos_mhsa, mhsa, sdpa, sm, wsm, maa, sa, chunked, swsm
    """
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; valid names: {', '.join(MIXERS)}")
    try:
        return MIXERS[name](
            d_model, nhead=nhead, dropout=dropout, causal=causal, **kwargs
        )
    except TypeError as e:
        raise TypeError(f"mixer {name!r}: {e}") from e
