"""Optimisers as the recipes build them: Adam and AdamW on their fused kernel.

PyTorch's Adam and AdamW update parameters with a Python loop over tensors on
CPU and with ``foreach`` kernels on CUDA unless asked for ``fused=True``: one
kernel that reads each parameter, gradient and moment once. On this project's
models the loop is the larger cost (2-core Xeon, one thread, AdamW over the
155 M parameters of the BASE SM pretraining model: 551 ms a step in the loop,
594 ms ``foreach``, 176 ms fused; 26 % of an H200 BASE step's GPU time went to
the ``foreach`` update, ``docs/efficiency.md``).

:func:`make_optimizer` is the one place where a recipe's optimiser is built
(the Brains' ``opt_class`` and ``<group>_opt_class``, the demo's step timer
and the benchmarks): Adam and AdamW get ``fused=True`` where every parameter
is a floating-point tensor on the CPU or a CUDA device, unless the YAML
chose ``fused``, ``foreach`` or ``differentiable`` itself (``fused: False``
under the optimiser's ``!name:`` line turns it off). Every other optimiser
class is called as it is. Resuming keeps the kernel chosen here: a
checkpoint saved by an unfused run loads into a fused optimiser fused. The
fused update differs from the loop by float rounding only
(``tests/unit/test_optim.py``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable

import torch

from speechbrain_wsm.errors import ConfigError

__all__ = ["make_optimizer"]

_FUSABLE = (torch.optim.Adam, torch.optim.AdamW)


def _class_and_keywords(opt_class) -> tuple[object, dict]:
    # (a partial of a partial is flattened by functools itself)
    if isinstance(opt_class, functools.partial):
        return opt_class.func, opt_class.keywords
    return opt_class, {}


def _tensors(params: list) -> list[torch.Tensor]:
    out = []
    for p in params:
        group = p["params"] if isinstance(p, dict) else [p]
        out.extend(t[1] if isinstance(t, tuple) else t for t in group)
    return out


def _as_list(group):
    return [group] if isinstance(group, torch.Tensor) else list(group)


def _takes_fused(cls) -> bool:
    if not (isinstance(cls, type) and issubclass(cls, _FUSABLE)):
        return False
    return "fused" in inspect.signature(cls.__init__).parameters


def _keep_own_kernel(optimizer, state_dict):
    """Load-state pre-hook: the kernel choice of the optimiser as built wins
    over the saved one (PyTorch restores every group's saved ``fused`` and
    ``foreach``; an unfused checkpoint would silently run the slow loop, and
    under a gradient scaler crash, since the optimiser was built fused)."""
    own = [{k: g[k] for k in ("fused", "foreach")} for g in optimizer.param_groups]
    for group, choice in zip(state_dict["param_groups"], own, strict=False):
        group.update(choice)
    return state_dict


def make_optimizer(
    opt_class: Callable, params: Iterable, **kwargs
) -> torch.optim.Optimizer:
    """``opt_class(params, **kwargs)``, on the fused kernel for Adam and AdamW.

    ``opt_class``: an optimiser class or a ``functools.partial`` of one (what
    a YAML's ``!name:torch.optim.AdamW`` gives); ``params``: parameters,
    ``(name, parameter)`` pairs or parameter groups (dicts with
    ``"params"``). A checkpoint loaded into the optimiser keeps the kernel
    chosen here, whatever the run that saved it used.

    Example
    -------
    >>> import functools
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> make_optimizer(functools.partial(torch.optim.AdamW, lr=1e-3), [w]).defaults["fused"]
    True
    >>> make_optimizer(torch.optim.SGD, [w], lr=0.1).defaults["lr"]
    0.1
    """
    params = [
        {**p, "params": _as_list(p["params"])} if isinstance(p, dict) else p
        for p in params
    ]
    cls, keywords = _class_and_keywords(opt_class)
    chosen = {"fused", "foreach", "differentiable"} & (keywords.keys() | kwargs.keys())
    tensors = _tensors(params)
    if (
        _takes_fused(cls)
        and not chosen
        and tensors
        and all(
            t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors
        )
    ):
        kwargs["fused"] = True
    try:
        optimizer = opt_class(params, **kwargs)
    except (RuntimeError, ValueError) as e:
        if not any(key in str(e) for key in chosen):
            raise
        choice = ", ".join(
            f"{k}: {kwargs.get(k, keywords.get(k))}" for k in sorted(chosen)
        )
        name = getattr(cls, "__name__", str(cls))
        raise ConfigError(
            f"{name} with {choice}: {str(e).splitlines()[0]} (remove the key from "
            "the optimiser's YAML entry to let the recipe choose the kernel)"
        ) from e
    if isinstance(optimizer, _FUSABLE):
        optimizer.register_load_state_dict_pre_hook(_keep_own_kernel)
    return optimizer
