"""Relative lengths to absolute lengths and padding masks: the one conversion.

SpeechBrain batches carry *relative* lengths (``wav_lens`` in ``[0, 1]``, the
share of the padded time axis an utterance fills); the models of this package
take *boolean padding masks* ``[batch, frame]`` with True = padding. Every
model converts here, so every part of a model agrees on which frames are
valid.
"""

from __future__ import annotations

import torch

__all__ = [
    "lengths_to_padding_mask",
    "relative_to_absolute",
    "relative_to_padding_mask",
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
