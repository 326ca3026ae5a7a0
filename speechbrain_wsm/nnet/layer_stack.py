"""The encoder layers of a model: the map the surgery and the adapters work on.

:func:`find_layer_stack` locates the self-attention (or mixer) layers of a
Hugging Face wav2vec 2.0 / HuBERT / WavLM model or of this project's
encoders. It lives in ``nnet/`` because ``nnet/adapters.py`` needs it and
``nnet`` imports nothing from ``models``; ``models.surgery`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from speechbrain_wsm.errors import UserValueError

__all__ = ["HF_MODEL_TYPES", "LayerStack", "find_layer_stack", "is_hf_ssl"]

#: ``config.model_type`` of the Hugging Face models the surgery operates on.
HF_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")


def is_hf_ssl(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face wav2vec 2.0 / HuBERT / WavLM model.

    Base models and their wrappers (``...ForCTC``) alike: anything with a
    ``config`` of one of :data:`HF_MODEL_TYPES` and a ``base_model`` that has
    an ``encoder``.

    Example
    -------
    >>> is_hf_ssl(nn.Linear(2, 2))
    False
    """
    config = getattr(module, "config", None)
    return (
        getattr(config, "model_type", None) in HF_MODEL_TYPES
        and hasattr(module, "base_model")
        and hasattr(module.base_model, "encoder")
    )


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
        raise UserValueError(
            f"{type(model).__name__} holds no supported encoder: expected a Hugging "
            f"Face model of type {', '.join(HF_MODEL_TYPES)} (or its ForCTC wrapper), or "
            "a MixerEncoder (this project's wav2vec 2.0 encoder)"
        )
    if len(found) > 1:
        names = ", ".join(s.name for s in found)
        raise UserValueError(
            f"{type(model).__name__} holds {len(found)} encoders ({names}); pass "
            "the one to operate on"
        )
    return found[0]
