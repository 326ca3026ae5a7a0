"""Which parameters train: counting, freezing, the top-N MHSA baseline."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from speechbrain_wsm.models.surgery.layers import resolve_layers
from speechbrain_wsm.models.surgery.no_grad import skip_frozen_activations
from speechbrain_wsm.models.upstream.hf import sync_hf_front_end_flags
from speechbrain_wsm.nnet.layer_stack import find_layer_stack

__all__ = [
    "count_parameters",
    "set_trainable",
    "train_only_attention",
    "trainable_parameter_names",
]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters.

    Example
    -------
    >>> lin = nn.Linear(3, 2)
    >>> lin.bias.requires_grad_(False)
    Parameter containing:
    ...
    >>> count_parameters(lin), count_parameters(lin, trainable_only=False)
    (6, 8)
    """
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad or not trainable_only
    )


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad``."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def set_trainable(model: nn.Module, module_names: Iterable[str]) -> None:
    """Freeze every parameter of ``model`` except those under ``module_names``.

    Arguments
    ---------
    model : torch.nn.Module
        The root module.
    module_names : iterable of str
        Qualified names of submodules (as ``named_modules`` gives them) to keep
        trainable; ``""`` is the root.

    Example
    -------
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    >>> set_trainable(net, ["1"])
    >>> [n for n, p in net.named_parameters() if p.requires_grad]
    ['1.weight', '1.bias']
    """
    modules = dict(model.named_modules())
    names = list(module_names)
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"{type(model).__name__} has no submodule {missing}")
    model.requires_grad_(False)
    for name in names:
        modules[name].requires_grad_(True)
    sync_hf_front_end_flags(model)


def train_only_attention(
    model: nn.Module, layers: int | Iterable[int], keep_trainable: Iterable[str] = ()
) -> list[str]:
    """Freeze everything but the (original) self-attention of ``layers``.

    The "top-N MHSA" baseline of selective fine-tuning: the pretrained
    attention of the listed layers is fine-tuned, the rest of the model frozen.

    Arguments
    ---------
    model : torch.nn.Module
        As for :func:`find_layer_stack`.
    layers : int or iterable of int
        Layer indices; negative ones count from the top.
    keep_trainable : iterable of str
        More submodules to leave trainable (e.g. ``"lm_head"``).

    Returns
    -------
    list of str
        Qualified names of the attention modules left trainable.
    """
    stack = find_layer_stack(model)
    names = [stack.attention_name(i) for i in resolve_layers(layers, len(stack.layers))]
    set_trainable(model, names + list(keep_trainable))
    skip_frozen_activations(model)
    return names
