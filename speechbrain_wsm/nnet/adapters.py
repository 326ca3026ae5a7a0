"""Residual bottleneck adapters in every layer of a frozen SSL encoder.

An adapter is ``y + W_up act(W_down LN(y))`` applied to the output ``y`` of
an encoder layer (Houlsby et al. 2019 put one after each sub-block; one per
layer, after the whole layer, is the placement used here). ``W_up`` starts at
zero, so an adapted model computes exactly what the pretrained one did until
training moves the adapters.

Why not ``speechbrain.nnet.adapters`` (SpeechBrain 1.1.2)? It was checked and
does not fit this use:

* ``HoulsbyAdapterLinear`` wraps one ``nn.Linear`` and computes
  ``lin(x) + up(act(down(lin(x))))``: no LayerNorm, and ``up`` is randomly
  initialised, so the adapted model no longer equals the pretrained one at
  the start; it also leaves its wrapped Linear trainable
  (``self.pretrained_linear.requires_grad = False`` sets a module attribute,
  not the parameters' flag);
* ``AdaptedModel`` wraps the whole model (it proxies attributes through
  ``__getattr__``), which hides the Hugging Face model from
  :class:`~speechbrain_wsm.models.upstream.SSLUpstream` (it unwraps
  ``base_model``) and its checkpoint saver stores only trainable tensors,
  whereas the project's checkpoints hold the whole model;
* both replace modules by wrapping them; Hugging Face ``transformers`` 5
  records ``hidden_states`` with hooks on the layer classes, so a wrapper
  *around* a layer would make the recorded hidden states the pre-adapter
  ones, and hierarchical feature fusion reads those.

So the adapter here is a child module of each layer (``layer.adapter``, in the
layer's state dict) applied by a forward hook registered *first*
(``prepend=True``): every later hook, Hugging Face's hidden-state recorder
included, and the next layer see the adapted output. This works the same for
Hugging Face wav2vec 2.0 / HuBERT / WavLM layers (whose output may be a tuple,
as WavLM's ``(hidden, position_bias)``) and this project's encoder layers.
"""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_wsm.nnet.layer_stack import find_layer_stack
from speechbrain_wsm.nnet.registry import check_choice

__all__ = ["BottleneckAdapter", "add_layer_adapters"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU}
_HOOK_ATTR = "_wsm_adapter_hook"


class BottleneckAdapter(nn.Module):
    """``x + W_up act(W_down LN(x))``, the identity at initialisation.

    Arguments
    ---------
    d_model : int
        Feature size of the input and output.
    bottleneck : int
        Width of the down projection.
    activation : str
        ``gelu``, ``relu`` or ``swish``.
    dropout : float
        Dropout on the adapter's branch.

    Example
    -------
    >>> adapter = BottleneckAdapter(16, 4)
    >>> x = torch.randn(2, 5, 16)
    >>> torch.equal(adapter(x), x)  # W_up starts at zero
    True
    >>> sum(p.numel() for p in adapter.parameters())  # LN 32, down 68, up 80
    180
    """

    def __init__(
        self,
        d_model: int,
        bottleneck: int = 64,
        activation: str = "gelu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if int(bottleneck) < 1:
            raise ValueError(f"adapter bottleneck must be >= 1, got {bottleneck}")
        check_choice(activation, _ACTIVATIONS, "adapter activation")
        self.norm = nn.LayerNorm(d_model)
        self.down = nn.Linear(d_model, int(bottleneck))
        self.act = _ACTIVATIONS[activation]()
        self.up = nn.Linear(int(bottleneck), d_model)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, frame, d_model]`` -> the same shape."""
        if x.shape[-1] != self.norm.normalized_shape[0]:
            raise ValueError(
                f"adapter of width {self.norm.normalized_shape[0]} got features of "
                f"shape {tuple(x.shape)}"
            )
        return x + self.drop(self.up(self.act(self.down(self.norm(x)))))


def _adapter_hook(layer, args, output):
    """Forward hook: pass a layer's output (or its first element) through ``layer.adapter``."""
    if isinstance(output, tuple):
        return (layer.adapter(output[0]), *output[1:])
    return layer.adapter(output)


def add_layer_adapters(
    model: nn.Module,
    bottleneck: int = 64,
    activation: str = "gelu",
    dropout: float = 0.0,
    freeze: bool = True,
) -> list[str]:
    """Put a :class:`BottleneckAdapter` after every encoder layer of ``model``.

    Arguments
    ---------
    model : torch.nn.Module
        A Hugging Face wav2vec 2.0 / HuBERT / WavLM model, this project's
        wav2vec 2.0 encoder, or a module holding one of them (see
        :func:`~speechbrain_wsm.nnet.layer_stack.find_layer_stack`).
    bottleneck, activation, dropout
        See :class:`BottleneckAdapter`.
    freeze : bool
        Freeze every parameter of ``model`` first, so that only the adapters
        train (the encoder's own weights get no gradient and no optimiser
        state).

    Returns
    -------
    list of str
        Qualified names (in ``model``) of the adapter modules, bottom first.

    Raises
    ------
    ValueError
        If the layers already have adapters.

    Example
    -------
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> enc = MixerEncoder(2, 16, nhead=2, d_ffn=32, mixer="wsm", arch="transformer")
    >>> add_layer_adapters(enc, bottleneck=4)
    ['layers.0.adapter', 'layers.1.adapter']
    >>> [n for n, p in enc.named_parameters() if p.requires_grad][:2]
    ['layers.0.adapter.norm.weight', 'layers.0.adapter.norm.bias']
    """
    stack = find_layer_stack(model)
    if any(hasattr(layer, "adapter") for layer in stack.layers):
        raise ValueError(f"the layers of {stack.name} already have adapters")
    if freeze:
        model.requires_grad_(False)
    ref = next(iter(stack.layers.parameters()), None)
    names = []
    for i, layer in enumerate(stack.layers):
        adapter = BottleneckAdapter(stack.d_model, bottleneck, activation, dropout)
        if ref is not None:
            adapter.to(device=ref.device, dtype=ref.dtype)
        layer.add_module("adapter", adapter)
        handle = layer.register_forward_hook(_adapter_hook, prepend=True)
        object.__setattr__(layer, _HOOK_ATTR, handle)
        names.append(f"{stack.name}.{i}.adapter" if stack.name else f"{i}.adapter")
    return names
