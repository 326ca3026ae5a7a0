"""The one registry of token mixers: YAML name -> mixer class.

Adding a mixer is one module with the mixer interface
(``__init__(d_model, nhead, dropout, causal, **kwargs)`` and
``forward(x, src_key_padding_mask=None) -> y``) plus one line in ``MIXERS``.
"""

from __future__ import annotations

from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.nnet.attention import MHSA, RelPosMHSA, SDPAttention
from speechbrain_wsm.nnet.streaming import (
    ChunkedAttention,
    MaskedAttention,
    StreamingAttention,
    StreamingWSM,
)
from speechbrain_wsm.nnet.summary_mixing import SummaryMixing, WindowedSummaryMixing

__all__ = ["MIXERS", "build_mixer", "check_choice"]

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


def check_choice(value, choices, what: str) -> None:
    """Fail clearly when a YAML option is not one of its valid names.

    Arguments
    ---------
    value : object
        The option as given.
    choices : iterable of str
        Its valid names (a registry's keys, a tuple of names).
    what : str
        What the option is, for the message (``"mixer"``, ``"encoder arch"``).

    Raises
    ------
    ValueError
        Naming the option, the value and every valid name.

    Example
    -------
    >>> check_choice("gru", ("conformer", "transformer"), "encoder arch")
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: unknown encoder arch 'gru'; valid names: conformer, transformer
    """
    choices = list(choices)
    if value not in choices:
        raise UserValueError(
            f"unknown {what} {value!r}; valid names: {', '.join(choices)}"
        )


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
    speechbrain_wsm.errors.UserValueError: unknown mixer 'attention'; valid names: relpos_mhsa, mhsa, sdpa, sm, wsm, maa, sa, chunked, swsm
    """
    check_choice(name, MIXERS, "mixer")
    try:
        return MIXERS[name](
            d_model, nhead=nhead, dropout=dropout, causal=causal, **kwargs
        )
    except TypeError as e:
        raise TypeError(f"mixer {name!r}: {e}") from e
