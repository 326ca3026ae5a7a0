"""The surgery: new mixer blocks in place of self-attention, and the fine-tuning modes."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from speechbrain_wsm.errors import UserValueError
from speechbrain_wsm.models.surgery.freezing import (
    set_trainable,
    train_only_attention,
)
from speechbrain_wsm.models.surgery.hf_adapter import (
    MixerAttention,
    WavLMRelativePositionBias,
)
from speechbrain_wsm.models.surgery.layers import resolve_layers
from speechbrain_wsm.models.surgery.no_grad import skip_frozen_activations
from speechbrain_wsm.models.upstream.hf import sync_hf_front_end_flags
from speechbrain_wsm.nnet.layer_stack import find_layer_stack
from speechbrain_wsm.nnet.registry import build_mixer

__all__ = [
    "FINETUNING_MODES",
    "apply_finetuning_mode",
    "replace_attention",
    "surgery_record",
]

#: Selective fine-tuning modes: what :func:`apply_finetuning_mode` trains.
FINETUNING_MODES = ("full", "mhsa_top", "sm", "wsm")

_RECORD_ATTR = "_wsm_surgery"


def _reference_param(module: nn.Module) -> torch.Tensor | None:
    return next(iter(module.parameters()), None)


def replace_attention(
    model: nn.Module,
    layers: int | Iterable[int],
    mixer: str = "wsm",
    freeze_others: bool = True,
    keep_trainable: Iterable[str] = (),
    **mixer_kwargs,
) -> list[str]:
    """Replace the self-attention of ``layers`` by new mixer blocks.

    Each listed layer's attention module is replaced by a freshly initialised
    mixer of the layer's width (``wsm`` by default; any name of the mixer
    registry works, so ``sm``, or randomly initialised ``mhsa`` as a control).
    The layer's residual connection, LayerNorms and feed-forward block are
    kept, so post-LN ("base") and pre-LN ("large", ``do_stable_layer_norm``)
    Hugging Face layers both work, and the model's forward still takes its own
    padding input (``attention_mask`` for Hugging Face models,
    ``wav_lens``/padding masks for this project's encoders), which the new
    blocks honour. WavLM's relative position bias passes through replaced
    layers (and is still computed when layer 0 is replaced).

    Arguments
    ---------
    model : torch.nn.Module
        A Hugging Face ``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel`` or
        ``...ForCTC``, this project's wav2vec 2.0 encoder, or a module holding
        one (see :func:`find_layer_stack`).
    layers : int or iterable of int
        Layer indices; negative ones count from the top (``[-2, -1]``: the top
        two).
    mixer : str
        Registered mixer name (``wsm``, ``sm``, ``mhsa`` ...).
    freeze_others : bool
        Freeze every other parameter of ``model``: only the new blocks (and
        ``keep_trainable``) stay trainable.
    keep_trainable : iterable of str
        With ``freeze_others``, submodules to leave trainable too (the
        ``lm_head`` of a ``ForCTC`` model, say).
    **mixer_kwargs
        Arguments of the mixer: ``window_size``, ``nhead`` (default 1),
        ``dropout``, ``mode``, ``activation`` ...

    Returns
    -------
    list of str
        Qualified names of the new blocks, bottom first
        (``"encoder.layers.10.attention"`` ...).

    Example
    -------
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> enc = MixerEncoder(4, 16, nhead=2, d_ffn=32, mixer="mhsa")
    >>> replace_attention(enc, [-2, -1], "wsm", window_size=4)
    ['layers.2.mixer', 'layers.3.mixer']
    >>> from speechbrain_wsm.models.surgery import trainable_parameter_names
    >>> sorted({n.split(".")[1] for n in trainable_parameter_names(enc)})
    ['2', '3']
    """
    stack = find_layer_stack(model)
    indices = resolve_layers(layers, len(stack.layers))
    keep_trainable = list(keep_trainable)
    replaced = []
    for i in indices:
        layer = stack.layers[i]
        old = getattr(layer, stack.attention_attr)
        block = build_mixer(mixer, stack.d_model, **mixer_kwargs)
        ref = _reference_param(old)
        ref = _reference_param(layer) if ref is None else ref
        if ref is not None:
            block = block.to(device=ref.device, dtype=ref.dtype)
        if stack.kind == "hf" and isinstance(old, MixerAttention):  # replaced before
            block = MixerAttention(block, old.returns_position_bias, old.relative_bias)
        elif stack.kind == "hf":
            is_wavlm = hasattr(old, "gru_rel_pos_linear")
            relative_bias = None
            if is_wavlm and getattr(old, "rel_attn_embed", None) is not None:
                relative_bias = WavLMRelativePositionBias(old)
                relative_bias.requires_grad_(False)
            block = MixerAttention(block, is_wavlm, relative_bias)
        block.train(old.training)
        setattr(layer, stack.attention_attr, block)
        replaced.append(stack.attention_name(i))
    if freeze_others:
        set_trainable(model, replaced + keep_trainable)
        modules = dict(model.named_modules())
        for name in replaced:  # a kept WavLM position bias stays frozen
            if getattr(modules[name], "relative_bias", None) is not None:
                modules[name].relative_bias.requires_grad_(False)
    record = getattr(model, _RECORD_ATTR, [])
    record.append(
        {
            "layers": indices,
            "mixer": mixer,
            "mixer_kwargs": dict(mixer_kwargs),
            "freeze_others": freeze_others,
            "keep_trainable": keep_trainable,
        }
    )
    object.__setattr__(model, _RECORD_ATTR, record)
    skip_frozen_activations(model)
    return replaced


def surgery_record(model: nn.Module) -> list[dict]:
    """The :func:`replace_attention` calls made on ``model``, in order.

    Each entry holds the resolved ``layers``, ``mixer``, ``mixer_kwargs``,
    ``freeze_others`` and ``keep_trainable``: replaying them on a freshly
    loaded model rebuilds the same architecture (see
    :func:`speechbrain_wsm.models.finetuning.load_finetuned`).
    """
    return [dict(r) for r in getattr(model, _RECORD_ATTR, [])]


def apply_finetuning_mode(
    model: nn.Module,
    mode: str,
    num_layers: int = 2,
    freeze_front_end: bool = True,
    keep_trainable: Iterable[str] = (),
    **mixer_kwargs,
) -> list[str]:
    """Set up ``model`` for one of the selective fine-tuning modes.

    ``full``: every parameter trains, except the convolutional front end when
    ``freeze_front_end`` (the usual wav2vec 2.0 fine-tuning practice);
    ``mhsa_top``: only the original self-attention of the top ``num_layers``
    layers trains; ``sm`` / ``wsm``: the top ``num_layers`` self-attention
    modules are replaced by new SM / WSM blocks, and only those train.

    Arguments
    ---------
    model : torch.nn.Module
        As for :func:`find_layer_stack`.
    mode : str
        One of :data:`FINETUNING_MODES`.
    num_layers : int
        N, the number of top layers trained or replaced.
    freeze_front_end : bool
        ``full`` mode: keep the front end frozen.
    keep_trainable : iterable of str
        Submodules of ``model`` that train in every mode (a head inside it).
    **mixer_kwargs
        Mixer arguments for ``sm`` / ``wsm`` (``window_size`` only for WSM).

    Returns
    -------
    list of str
        Names of the modules trained in place of the whole model (``full``:
        ``[""]``, the root), or the new blocks.

    Example
    -------
    >>> from speechbrain_wsm.nnet.encoders import MixerEncoder
    >>> enc = MixerEncoder(3, 16, nhead=2, d_ffn=32)
    >>> apply_finetuning_mode(enc, "mhsa_top", num_layers=1)
    ['layers.2.mixer']
    """
    if mode not in FINETUNING_MODES:
        raise UserValueError(
            f"unknown fine-tuning mode {mode!r}; valid modes: {', '.join(FINETUNING_MODES)}"
        )
    stack = find_layer_stack(model)
    if not 1 <= num_layers <= len(stack.layers) and mode != "full":
        raise UserValueError(
            f"num_layers must be between 1 and {len(stack.layers)}, got {num_layers}"
        )
    top = list(range(-num_layers, 0))
    keep_trainable = list(keep_trainable)
    if mode == "full":
        model.requires_grad_(True)
        if freeze_front_end and stack.front_end:
            dict(model.named_modules())[stack.front_end].requires_grad_(False)
        sync_hf_front_end_flags(model)
        skip_frozen_activations(model)
        return [""]
    if mode == "mhsa_top":
        return train_only_attention(model, top, keep_trainable)
    if mode == "sm":
        mixer_kwargs.pop("window_size", None)
    return replace_attention(
        model,
        top,
        mode,
        freeze_others=True,
        keep_trainable=keep_trainable,
        **mixer_kwargs,
    )
