"""Finding the self-attention layers of an SSL model (the surgery's map)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.models.upstream.hf import HF_MODEL_TYPES, is_hf_ssl

__all__ = ["LayerStack", "find_layer_stack", "resolve_indices", "resolve_layers"]


@dataclass
class LayerStack:
    """The encoder layers of a model, as the surgery sees them.

    Attributes
    ----------
    name : str
        Qualified name of the ``ModuleList`` of layers inside the root module
        (``"encoder.layers"``, ``"wav2vec2.encoder.layers"``,
        ``"context.encoder.layers"`` ...).
    layers : torch.nn.ModuleList
        The layers, bottom first.
    attention_attr : str
        Attribute of a layer holding its self-attention: ``"attention"``
        (Hugging Face) or ``"mixer"`` (this project's encoders).
    d_model : int
        Feature size of every layer.
    kind : str
        ``"hf"`` or ``"mixer"``.
    front_end : str or None
        Qualified name of the convolutional front end (what "full" fine-tuning
        keeps frozen), when there is one.
    """

    name: str
    layers: nn.ModuleList
    attention_attr: str
    d_model: int
    kind: str
    front_end: str | None = None

    def attention_name(self, index: int) -> str:
        """Qualified name of layer ``index``'s self-attention module."""
        prefix = f"{self.name}." if self.name else ""
        return f"{prefix}{index}.{self.attention_attr}"


def _is_mixer_encoder(module: nn.Module) -> bool:
    layers = getattr(module, "layers", None)
    return (
        isinstance(layers, nn.ModuleList)
        and len(layers) > 0
        and all(hasattr(layer, "mixer") for layer in layers)
        and isinstance(getattr(module, "d_model", None), int)
    )


def find_layer_stack(model: nn.Module) -> LayerStack:
    """Locate the self-attention layers of ``model`` (or of the one SSL model inside it).

    Arguments
    ---------
    model : torch.nn.Module
        A Hugging Face wav2vec 2.0 / HuBERT / WavLM model (base or ``ForCTC``),
        this project's wav2vec 2.0 encoder, a ``MixerEncoder``, or a module
        holding exactly one of those.

    Returns
    -------
    LayerStack

    Raises
    ------
    ValueError
        When ``model`` holds none, or more than one, of those encoders.

    Example
    -------
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> stack = find_layer_stack(nn.ModuleDict({"enc": MixerEncoder(3, 16, 2, 32)}))
    >>> stack.name, len(stack.layers), stack.attention_attr, stack.d_model
    ('enc.layers', 3, 'mixer', 16)
    """
    found = []
    hf_inside = set()
    for name, module in model.named_modules():
        if any(h == "" or name.startswith(h + ".") for h in hf_inside):
            continue  # the base model inside a ForCTC wrapper already counted
        if is_hf_ssl(module):
            hf_inside.add(name)
            base = module.base_model
            base_name = next(n for n, m in module.named_modules() if m is base)
            prefix = ".".join(p for p in (name, base_name) if p)
            layers = base.encoder.layers
            found.append(
                LayerStack(
                    name=".".join(p for p in (prefix, "encoder.layers") if p),
                    layers=layers,
                    attention_attr="attention",
                    d_model=base.config.hidden_size,
                    kind="hf",
                    front_end=".".join(p for p in (prefix, "feature_extractor") if p),
                )
            )
        elif _is_mixer_encoder(module):
            front = None
            for fname, fmod in model.named_modules():
                if fname.split(".")[-1] == "latent_extractor" and fmod is not module:
                    front = fname
            found.append(
                LayerStack(
                    name=".".join(p for p in (name, "layers") if p),
                    layers=module.layers,
                    attention_attr="mixer",
                    d_model=module.d_model,
                    kind="mixer",
                    front_end=front,
                )
            )
    if not found:
        raise ValueError(
            f"{type(model).__name__} holds no supported encoder: expected a Hugging "
            f"Face model of type {', '.join(HF_MODEL_TYPES)} (or its ForCTC wrapper), or "
            "a MixerEncoder (this project's wav2vec 2.0 encoder)"
        )
    if len(found) > 1:
        names = ", ".join(s.name for s in found)
        raise ValueError(
            f"{type(model).__name__} holds {len(found)} encoders ({names}); pass "
            "the one to operate on"
        )
    return found[0]


def resolve_indices(
    indices: Iterable[int], count: int, what: str = "layer"
) -> list[int]:
    """Indices into ``count`` items as sorted, distinct non-negative ints.

    Negative indices count from the end (``-1`` is the last item). The one
    check of every index list that names parts of an encoder: layers
    (:func:`resolve_layers`) and hidden states (fusion taps).

    Arguments
    ---------
    indices : iterable of int
        The indices given.
    count : int
        How many items there are.
    what : str
        What an item is, for the error messages (``"layer"``,
        ``"hidden state"``).

    Returns
    -------
    list of int

    Raises
    ------
    ValueError
        On a non-int index, one out of range, no index at all, or one item
        named twice.

    Example
    -------
    >>> resolve_indices([-1, 4], 13, "hidden state")
    [4, 12]
    >>> resolve_indices([13], 13, "hidden state")
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: hidden state index 13 out of range: the encoder has 13 hidden states (-13 to 12)
    """
    indices = list(indices)
    out = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int):
            raise UserValueError(f"{what} indices must be ints, got {i!r}")
        if not -count <= i < count:
            raise UserValueError(
                f"{what} index {i} out of range: the encoder has {count} {what}s "
                f"({-count} to {count - 1})"
            )
        out.append(i % count)
    if not out:
        raise UserValueError(f"no {what} to operate on: pass at least one index")
    if len(set(out)) != len(out):
        raise UserValueError(f"{what} indices {indices} name a {what} twice")
    return sorted(out)


def resolve_layers(layers: int | Iterable[int], num_layers: int) -> list[int]:
    """Layer indices as sorted non-negative ints; negative ones count from the top.

    Arguments
    ---------
    layers : int or iterable of int
        Layer indices (``-1`` is the top layer).
    num_layers : int
        Number of layers of the encoder.

    Returns
    -------
    list of int

    Example
    -------
    >>> resolve_layers([-1, -2], 12)
    [10, 11]
    >>> resolve_layers([0, 12], 12)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: layer index 12 out of range: the encoder has 12 layers (-12 to 11)
    """
    if isinstance(layers, int):
        layers = [layers]
    return resolve_indices(layers, num_layers, "layer")
