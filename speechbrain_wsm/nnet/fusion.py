"""Fusion of an encoder's hidden states: the learned weighted layer sum of MP3S.

MP3S probes do not read the last layer of a frozen SSL encoder: they read a
convex combination of all its hidden states (the encoder input and every
layer's output), with one learned weight per state, softmax-normalised and
initialised to zero (so training starts from the plain average).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WeightedLayerSum"]


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum of ``num_layers`` hidden states.

    ``out = sum_l softmax(w)_l * h_l``, with ``w`` a learned vector initialised
    to zeros (every state weighs ``1 / num_layers`` at the start). With
    ``layer_norm=True`` each state is first normalised over its features
    (no learned scale or shift), so that states of very different magnitudes
    compete on their content, not their scale.

    Arguments
    ---------
    num_layers : int
        Number of hidden states to combine (13 for a 12-layer encoder: the
        encoder input and each layer's output).
    layer_norm : bool
        Normalise each state over its last axis before weighting.

    Example
    -------
    >>> fusion = WeightedLayerSum(3)
    >>> states = [torch.full((2, 5, 4), float(i)) for i in range(3)]
    >>> out = fusion(states)
    >>> out.shape, out.detach()[0, 0, 0].item()
    (torch.Size([2, 5, 4]), 1.0)
    >>> fusion.layer_weights()
    tensor([0.3333, 0.3333, 0.3333])
    """

    def __init__(self, num_layers: int, layer_norm: bool = False):
        super().__init__()
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.num_layers = int(num_layers)
        self.layer_norm = bool(layer_norm)
        self.weights = nn.Parameter(torch.zeros(self.num_layers))

    def layer_weights(self) -> torch.Tensor:
        """The current normalised weights ``[num_layers]`` (detached, on CPU)."""
        return torch.softmax(self.weights.detach().float(), dim=0).cpu()

    def forward(self, hidden_states: Sequence[torch.Tensor] | torch.Tensor):
        """Combine the states.

        Arguments
        ---------
        hidden_states : sequence of torch.Tensor or torch.Tensor
            ``num_layers`` tensors ``[batch, frame, feature]`` of one shape, or
            one tensor ``[num_layers, batch, frame, feature]``.

        Returns
        -------
        torch.Tensor
            ``[batch, frame, feature]``.
        """
        if isinstance(hidden_states, torch.Tensor):
            if hidden_states.dim() != 4:
                raise ValueError(
                    "expected [layer, batch, frame, feature] hidden states, got "
                    f"shape {tuple(hidden_states.shape)}"
                )
            hidden_states = hidden_states.unbind(0)
        if len(hidden_states) != self.num_layers:
            raise ValueError(
                f"WeightedLayerSum was built for {self.num_layers} hidden states, "
                f"got {len(hidden_states)}: set num_layers to the encoder's "
                "number of layers + 1"
            )
        shape = hidden_states[0].shape
        for i, h in enumerate(hidden_states):
            if h.shape != shape:
                raise ValueError(
                    f"hidden state {i} has shape {tuple(h.shape)}, state 0 has "
                    f"{tuple(shape)}"
                )
        weights = torch.softmax(self.weights, dim=0)
        out = None
        for w, h in zip(weights, hidden_states, strict=True):
            if self.layer_norm:
                h = F.layer_norm(h, h.shape[-1:])
            out = w.to(h.dtype) * h if out is None else out + w.to(h.dtype) * h
        return out
