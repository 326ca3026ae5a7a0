"""What the layers of :mod:`speechbrain_wsm.nnet` share, whatever their mixer.

* :func:`valid_frames`: the check of a mixer's input (``x`` ``[batch, frame,
  feature]``, ``src_key_padding_mask`` ``[batch, frame]`` bool, True =
  padding) and the validity mask the mixer computes with;
* :func:`activation_class` and :func:`make_activation`: activations by YAML
  name (``gelu``, ``swish``/``silu``, ``relu``, ``identity``) or class.

The attention mixers, the encoders and SummaryMixing import these from here,
so none of them depends on another mixer's module.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["activation_class", "make_activation", "valid_frames"]

_ACTIVATIONS = {
    "gelu": nn.GELU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "identity": nn.Identity,
}


def activation_class(activation) -> type:
    """The activation module class for a name or a class (SpeechBrain blocks want one).

    Example
    -------
    >>> activation_class("gelu")
    <class 'torch.nn.modules.activation.GELU'>
    """
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation.lower()]
        except KeyError:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}"
            ) from None
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    raise ValueError(f"cannot build an activation from {activation!r}")


def make_activation(activation) -> nn.Module:
    """Build an activation module from a name, a module class or an instance.

    Arguments
    ---------
    activation : str, type or torch.nn.Module
        One of ``gelu``, ``swish``/``silu``, ``relu``, ``identity``; or a module
        class such as ``torch.nn.GELU`` (what ``!name:torch.nn.GELU`` gives in
        YAML); or a module instance.

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> make_activation("swish")
    SiLU()
    """
    if isinstance(activation, nn.Module):
        return activation
    return activation_class(activation)()


def valid_frames(x: torch.Tensor, src_key_padding_mask) -> torch.Tensor | None:
    """Check a mixer's input shapes; turn a padding mask (True = pad) into a
    validity mask ``[batch, frame]`` (True = real frame), or None without one."""
    if x.dim() != 3:
        raise ValueError(
            f"expected x of shape [batch, frame, feature], got {tuple(x.shape)}"
        )
    if src_key_padding_mask is None:
        return None
    if src_key_padding_mask.shape != x.shape[:2]:
        raise ValueError(
            f"src_key_padding_mask must be [batch, frame] = {tuple(x.shape[:2])}, "
            f"got {tuple(src_key_padding_mask.shape)}"
        )
    if src_key_padding_mask.dtype != torch.bool:
        raise ValueError(
            "src_key_padding_mask must be a bool tensor with True = padding, "
            f"got dtype {src_key_padding_mask.dtype}"
        )
    return ~src_key_padding_mask
