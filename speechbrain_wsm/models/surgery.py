"""SSL-model surgery: swap self-attention for SummaryMixing blocks, freeze the rest.

Selective fine-tuning (Menon et al., "Windowed SummaryMixing: an efficient
fine-tuning of self-supervised learning models for low-resource speech
recognition", ICASSP 2026) replaces the self-attention of the top layers of a
pretrained SSL model by new WSM (or SM) blocks and trains only those (plus the
task head). This module does the surgery on

* Hugging Face ``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel`` and their
  ``ForCTC`` wrappers (post-LayerNorm "base" and pre-LayerNorm "large"
  layers alike), or any module holding one;
* this project's wav2vec 2.0 encoder, and any module holding a
  :class:`~speechbrain_wsm.nnet.encoders.MixerEncoder` (layers with a
  ``mixer``).

What stays as it was: each layer keeps its own residual, LayerNorm and
feed-forward code; only the self-attention module is swapped. For Hugging
Face layers the new block sits inside :class:`MixerAttention`, which takes
exactly what the layer passes to its attention (the 4-D additive or boolean
attention mask, or the 2-D one; WavLM's ``position_bias``), turns the mask
into a ``[batch, frame]`` padding mask
(:func:`~speechbrain_wsm.models.upstream.hf.hf_padding_mask`, re-exported
here) and returns what the layer expects.
So the model's forward still takes its own ``attention_mask``, and every
layer below the first replaced one computes exactly what it computed before.

Memory: :func:`skip_frozen_activations` (installed by :func:`replace_attention`
and :func:`apply_finetuning_mode`) runs the part of the forward pass that
comes before the first module with a trainable parameter without autograd, so
the front end and the frozen lower layers store no activations and peak
training memory falls with the number of frozen layers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from speechbrain_wsm.models.upstream.hf import (
    HF_MODEL_TYPES,
    hf_padding_mask,
    is_hf_ssl,
    sync_hf_front_end_flags,
)
from speechbrain_wsm.nnet.registry import build_mixer

__all__ = [
    "FINETUNING_MODES",
    "LayerStack",
    "MixerAttention",
    "WavLMRelativePositionBias",
    "apply_finetuning_mode",
    "count_parameters",
    "find_layer_stack",
    "hf_padding_mask",
    "replace_attention",
    "resolve_layers",
    "set_trainable",
    "skip_frozen_activations",
    "surgery_record",
    "train_only_attention",
    "trainable_parameter_names",
]

#: Selective fine-tuning modes: what :func:`apply_finetuning_mode` trains.
FINETUNING_MODES = ("full", "mhsa_top", "sm", "wsm")

_RECORD_ATTR = "_wsm_surgery"
_HOOKS_ATTR = "_wsm_no_grad_prefix"


# -- finding the layers ---------------------------------------------------------
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
    ValueError: layer index 12 out of range for an encoder of 12 layers (-12 to 11)
    """
    if isinstance(layers, int):
        layers = [layers]
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"layer indices must be ints, got {i!r}")
        if not -num_layers <= i < num_layers:
            raise ValueError(
                f"layer index {i} out of range for an encoder of {num_layers} "
                f"layers ({-num_layers} to {num_layers - 1})"
            )
        out.append(i % num_layers)
    if not out:
        raise ValueError("no layer to operate on: pass at least one index")
    if len(set(out)) != len(out):
        raise ValueError(f"layer indices {list(layers)} name a layer twice")
    return sorted(out)


# -- the adapter for Hugging Face layers ------------------------------------------
class WavLMRelativePositionBias(nn.Module):
    """WavLM's relative position bias, kept when layer 0's attention is replaced.

    WavLM computes its bucketed relative position bias in the first layer's
    attention and hands it up to every other layer. When that attention is
    replaced, this module (holding the original, frozen embedding) computes the
    same bias, with WavLM's own bucketing code, so the layers above still get
    it.

    Arguments
    ---------
    attention : torch.nn.Module
        The ``WavLMAttention`` being replaced (it must own ``rel_attn_embed``).
    """

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.rel_attn_embed = attention.rel_attn_embed
        self.num_buckets = attention.num_buckets
        self.max_distance = attention.max_distance
        self.num_heads = attention.num_heads
        self._source = type(attention)

    def _relative_positions_bucket(self, relative_positions):
        return self._source._relative_positions_bucket(self, relative_positions)

    def forward(self, batch_size: int, frames: int) -> torch.Tensor:
        """The ``[batch * heads, frame, frame]`` bias WavLM's first layer returns."""
        bias = self._source.compute_bias(self, frames, frames)
        return (
            bias.unsqueeze(0)
            .repeat(batch_size, 1, 1, 1)
            .view(batch_size * self.num_heads, frames, frames)
        )


class MixerAttention(nn.Module):
    """A mixer in place of a Hugging Face encoder layer's ``attention`` module.

    Called as the layer calls its attention (hidden states, ``attention_mask``
    in whatever form the model built, WavLM's ``position_bias``), it runs the
    mixer with a ``[batch, frame]`` padding mask and returns the tuple the
    layer unpacks: ``(output, None)``, or ``(output, None, position_bias)``
    for WavLM layers.

    Arguments
    ---------
    mixer : torch.nn.Module
        A mixer with ``forward(x, src_key_padding_mask)`` (see
        :mod:`speechbrain_wsm.nnet.registry`).
    returns_position_bias : bool
        Return WavLM's position bias as third element.
    relative_bias : WavLMRelativePositionBias, optional
        Computes the position bias when none is passed in (replaced WavLM
        layer 0).

    Example
    -------
    >>> from speechbrain_wsm.nnet.registry import build_mixer
    >>> att = MixerAttention(build_mixer("wsm", 16, window_size=4))
    >>> mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    >>> out, weights = att(torch.randn(2, 4, 16), attention_mask=mask)
    >>> out.shape, weights
    (torch.Size([2, 4, 16]), None)
    """

    def __init__(
        self,
        mixer: nn.Module,
        returns_position_bias: bool = False,
        relative_bias: WavLMRelativePositionBias | None = None,
    ):
        super().__init__()
        self.mixer = mixer
        self.returns_position_bias = returns_position_bias
        self.relative_bias = relative_bias

    def forward(
        self, hidden_states, attention_mask=None, position_bias=None, **kwargs
    ) -> tuple:
        """Mix ``hidden_states`` ``[batch, frame, feature]``; other kwargs are ignored."""
        pad = hf_padding_mask(attention_mask, hidden_states.shape[:2])
        out = self.mixer(hidden_states, src_key_padding_mask=pad)
        if not self.returns_position_bias:
            return out, None
        if position_bias is None and self.relative_bias is not None:
            position_bias = self.relative_bias(*hidden_states.shape[:2])
        return out, None, position_bias


# -- trainable parameters -----------------------------------------------------------
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


# -- the surgery ------------------------------------------------------------------------
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
        raise ValueError(
            f"unknown fine-tuning mode {mode!r}; valid modes: {', '.join(FINETUNING_MODES)}"
        )
    stack = find_layer_stack(model)
    if not 1 <= num_layers <= len(stack.layers) and mode != "full":
        raise ValueError(
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


# -- no activations for the frozen lower part ----------------------------------------
class _PrefixState:
    """Shared state of the hooks of :func:`skip_frozen_activations` (one forward)."""

    def __init__(self):
        self.active = False
        self.saved_mode = True
        self.resume = frozenset()
        self.cache_key = None


# A parameter a module owns but uses only after one of its children ran:
# (parameter name, that child). Hugging Face SSL models apply their
# ``masked_spec_embed`` to the output of ``feature_projection``.
_LATE_PARAMS = {"masked_spec_embed": "feature_projection"}


def _resume_modules(root: nn.Module) -> frozenset:
    """ids of the modules whose call turns autograd back on.

    A module that owns a trainable parameter itself, or whose parameters are
    all trainable (the outermost such module: it may use a child's weight
    directly, as SummaryMixing's combiner does).
    """
    resume = set()

    def visit(module: nn.Module) -> tuple[bool, bool, bool]:
        """(any trainable, all trainable, has parameters) of the subtree."""
        children = dict(module.named_children())
        own, late = [], []
        for name, p in module.named_parameters(recurse=False):
            if name in _LATE_PARAMS and _LATE_PARAMS[name] in children:
                late.append((p.requires_grad, children[_LATE_PARAMS[name]]))
            else:
                own.append(p.requires_grad)
        flags = own + [t for t, _ in late]
        any_t, all_t, has = any(flags), all(flags), bool(flags)
        for child in children.values():
            c_any, c_all, c_has = visit(child)
            any_t |= c_any
            if c_has:
                all_t, has = all_t and c_all, True
        if any(own) or (has and all_t):
            resume.add(id(module))
        resume.update(id(child) for trainable, child in late if trainable)
        return any_t, all_t, has

    visit(root)
    return frozenset(resume)


class _RootPreHook:
    def __init__(self, state: _PrefixState):
        self.state = state

    def __call__(self, module, args):
        state = self.state
        key = (id(module), tuple(p.requires_grad for p in module.parameters()))
        if key != state.cache_key:
            state.resume, state.cache_key = _resume_modules(module), key
        state.saved_mode = torch.is_grad_enabled()
        if state.saved_mode and id(module) not in state.resume and state.resume:
            state.active = True
            torch.set_grad_enabled(False)


class _ModulePreHook:
    def __init__(self, state: _PrefixState):
        self.state = state

    def __call__(self, module, args):
        state = self.state
        if state.active and id(module) in state.resume:
            state.active = False
            torch.set_grad_enabled(state.saved_mode)


class _RootPostHook:
    def __init__(self, state: _PrefixState):
        self.state = state

    def __call__(self, module, args, output):
        if self.state.active:
            self.state.active = False
        torch.set_grad_enabled(self.state.saved_mode)


class _HookHandles:
    """Removes the hooks of :func:`skip_frozen_activations`."""

    def __init__(self, handles):
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def skip_frozen_activations(model: nn.Module) -> _HookHandles:
    """Run the frozen start of ``model``'s forward pass without autograd.

    Installs forward hooks: when ``model`` is called with autograd on,
    autograd is switched off until the first module with a trainable
    parameter is called, then switched back on for the rest of the pass (and
    restored when the call ends, even on an exception). Everything computed
    before (front end, frozen lower layers, the lower part of a partly frozen
    layer) stores no activations for backward, so memory falls with the number
    of frozen layers, and gradients are unchanged: nothing trainable runs in
    that part. Which modules are trainable is read at every call, so freezing
    or unfreezing later is honoured; calling this again replaces the previous
    hooks (do so after adding modules).

    Arguments
    ---------
    model : torch.nn.Module
        The module whose forward is called (a wrapper holding the SSL model is
        fine).

    Returns
    -------
    object
        A handle whose ``remove()`` uninstalls the hooks.

    Example
    -------
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    >>> net[0].requires_grad_(False)
    Linear(in_features=4, out_features=4, bias=True)
    >>> seen = []
    >>> _ = net[1].register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    >>> handle = skip_frozen_activations(net)
    >>> net(torch.randn(2, 4, requires_grad=True)).requires_grad, seen
    (True, [False])
    """
    old = getattr(model, _HOOKS_ATTR, None)
    if old is not None:
        old.remove()
    state = _PrefixState()
    handles = [model.register_forward_pre_hook(_RootPreHook(state))]
    module_hook = _ModulePreHook(state)
    for module in model.modules():
        if module is not model:
            handles.append(module.register_forward_pre_hook(module_hook))
    handles.append(model.register_forward_hook(_RootPostHook(state), always_call=True))
    handle = _HookHandles(handles)
    object.__setattr__(model, _HOOKS_ATTR, handle)
    return handle
