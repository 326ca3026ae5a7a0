"""Relative lengths to absolute lengths and padding masks: the one conversion.

SpeechBrain batches carry *relative* lengths (``wav_lens`` in ``[0, 1]``, the
share of the padded time axis an utterance fills) to the edge of a model (the
module a Brain calls); inside, models pass *absolute* lengths and *boolean
padding masks* ``[batch, frame]`` with True = padding. Every model converts
here, so every part of a model agrees on which frames are valid.
:func:`standardize` is the one per-utterance standardisation over the valid
part (waveforms and features alike).
"""

from __future__ import annotations

import torch

__all__ = [
    "lengths_to_padding_mask",
    "relative_to_absolute",
    "relative_to_padding_mask",
    "standardize",
]


def relative_to_absolute(rel_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Absolute lengths ``round(rel_lens * max_len)``, clamped to ``[0, max_len]``.

    Arguments
    ---------
    rel_lens : torch.Tensor
        ``[batch]`` relative lengths in ``[0, 1]``.
    max_len : int
        Length of the padded axis.

    Returns
    -------
    torch.Tensor
        ``[batch]`` long tensor.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5, 0.26]), 10)
    tensor([10,  5,  3])
    """
    if rel_lens.dim() != 1:
        raise ValueError(
            f"relative lengths must be [batch], got shape {tuple(rel_lens.shape)}"
        )
    return torch.round(rel_lens.double() * max_len).long().clamp(0, max_len)


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Padding mask ``[batch, max_len]``, True where ``frame >= length``.

    Arguments
    ---------
    lengths : torch.Tensor
        ``[batch]`` absolute lengths.
    max_len : int
        Length of the padded axis.

    Returns
    -------
    torch.Tensor
        ``[batch, max_len]`` bool, True = padding.

    Example
    -------
    >>> lengths_to_padding_mask(torch.tensor([3, 1]), 4)
    tensor([[False, False, False,  True],
            [False,  True,  True,  True]])
    """
    frames = torch.arange(max_len, device=lengths.device)
    return frames.unsqueeze(0) >= lengths.to(frames.device).unsqueeze(1)


def relative_to_padding_mask(rel_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Padding mask (True = padding) from relative lengths.

    Example
    -------
    >>> relative_to_padding_mask(torch.tensor([1.0, 0.5]), 4)
    tensor([[False, False, False, False],
            [False, False,  True,  True]])
    """
    return lengths_to_padding_mask(relative_to_absolute(rel_lens, max_len), max_len)


def standardize(
    x: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """Zero mean, unit variance along axis 1 over each utterance's valid part.

    The statistics of utterance ``b`` come from ``x[b, :lengths[b]]`` only
    (per feature when ``x`` is 3-D), so padding never shifts them (whatever
    it holds, NaN included); padded positions come out as zeros. Computed in
    float32.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time]`` (waveforms) or ``[batch, time, feature]``.
    lengths : torch.Tensor, optional
        ``[batch]`` absolute lengths along ``time`` (None: no padding).
    eps : float
        Added to the variance (1e-5 for this project's front ends, 1e-7 as
        the Hugging Face feature extractors standardise waveforms).

    Returns
    -------
    torch.Tensor
        Float32, the shape of ``x``.

    Example
    -------
    >>> x = torch.tensor([[1.0, 3.0, 100.0], [2.0, 4.0, 6.0]])
    >>> standardize(x, torch.tensor([2, 3]), eps=0.0)
    tensor([[-1.0000,  1.0000,  0.0000],
            [-1.2247,  0.0000,  1.2247]])
    """
    if x.dim() not in (2, 3):
        raise ValueError(
            f"expected [batch, time] or [batch, time, feature], got {tuple(x.shape)}"
        )
    x = x.float()
    if lengths is None:
        pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
    else:
        pad = lengths_to_padding_mask(lengths, x.shape[1])
    if x.dim() == 3:
        pad = pad.unsqueeze(-1)
    # padding removed with masked_fill, never multiplied by zero: a NaN or an
    # infinity in the padding cannot reach the statistics or the output
    x = x.masked_fill(pad, 0.0)
    n = (~pad).sum(1, keepdim=True).clamp(min=1)
    mean = x.sum(1, keepdim=True) / n
    var = (x - mean).square().masked_fill(pad, 0.0).sum(1, keepdim=True) / n
    return ((x - mean) / torch.sqrt(var + eps)).masked_fill(pad, 0.0)
