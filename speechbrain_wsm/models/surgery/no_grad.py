"""Running the frozen start of a forward pass without autograd."""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_wsm.models.upstream.hf import HF_LATE_PARAMETERS

__all__ = ["skip_frozen_activations"]

_HOOKS_ATTR = "_wsm_no_grad_prefix"


class _PrefixState:
    """Shared state of the hooks of :func:`skip_frozen_activations` (one forward)."""

    def __init__(self):
        self.active = False
        self.saved_mode = True
        self.resume = frozenset()
        self.cache_key = None


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
            # a parameter used only after one of the module's children ran
            if name in HF_LATE_PARAMETERS and HF_LATE_PARAMETERS[name] in children:
                late.append((p.requires_grad, children[HF_LATE_PARAMETERS[name]]))
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
