"""The memory-lean training path of SM and WSM (issue 22, item 2).

The layers that ``build_mixer`` returns run training through
:class:`~speechbrain_wsm.nnet.lean_mixing.LeanMixing`, whose backward is
written by hand: it must give the plain autograd's outputs and gradients
(padding, causal, dropout, bf16 autocast) and keep no more bytes per frame
for backward than PyTorch's SDPA attention block with its projections.
"""

import pytest
import torch

from speechbrain_wsm.nnet.lean_mixing import LeanMixing
from speechbrain_wsm.nnet.registry import build_mixer
from speechbrain_wsm.nnet.summary_mixing import SummaryMixing, WindowedSummaryMixing

D = 16
CASES = [
    ("sm", {}),
    ("sm", {"mode": "fast"}),
    ("sm", {"causal": True}),
    ("sm", {"nhead": 1}),
    ("wsm", {}),
    ("wsm", {"window_size": 4}),
    ("wsm", {"window_size": 50}),
    ("wsm", {"causal": True}),
    ("wsm", {"causal": True, "mode": "fast"}),
    ("wsm", {"mode": "lite", "layernorm": False}),
    ("wsm", {"activation": "swish"}),
    ("wsm", {"activation": "relu", "local_proj_hid_dims": [8, 24]}),
]


def make(kind, lean=True, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    kw = {"nhead": 2, **kw}
    if kind == "sm":
        layer = SummaryMixing(D, lean=lean, **kw)
    else:
        layer = WindowedSummaryMixing(
            D, window_size=kw.pop("window_size", 5), lean=lean, **kw
        )
    return layer.to(dtype).train()


def pad_mask(lengths, T):
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]


def step(layer, x, mask, amp=False):
    """Output and gradients (input, parameters) of ``(y * g).sum()``."""
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = layer(x, src_key_padding_mask=mask)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y.float() * g).sum().backward()
    return [y.detach().float(), x.grad] + [p.grad for p in layer.parameters()]


def relative(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12)).item()


def lean_calls(monkeypatch):
    calls = []
    apply = LeanMixing.apply
    monkeypatch.setattr(LeanMixing, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


@pytest.mark.parametrize("kind,kw", CASES)
@pytest.mark.parametrize("padded", [False, True])
def test_lean_equals_plain_autograd(kind, kw, padded, monkeypatch):
    calls = lean_calls(monkeypatch)
    x = torch.randn(3, 13, D)
    mask = pad_mask([13, 9, 1], 13) if padded else None
    plain = step(make(kind, lean=False, **kw), x, mask)
    assert not calls
    lean = step(make(kind, **kw), x, mask)
    assert calls, "the lean path did not run"
    for a, b in zip(lean, plain, strict=True):
        assert relative(a, b) < 1e-5


@pytest.mark.parametrize(
    "kind,kw", [("sm", {}), ("wsm", {}), ("wsm", {"causal": True})]
)
def test_lean_under_bf16_autocast_is_close_to_plain(kind, kw):
    x = torch.randn(2, 40, D)
    mask = pad_mask([40, 23], 40)
    ref = step(make(kind, lean=False, **kw), x, mask)
    lean = step(make(kind, **kw), x, mask, amp=True)
    assert lean[0].dtype == torch.float32  # compared in float; the output was bf16
    for a, b in zip(lean, ref, strict=True):
        assert torch.isfinite(a).all()
        assert relative(a, b) < 3e-2


@pytest.mark.parametrize(
    "kind,kw",
    [("sm", {}), ("wsm", {}), ("wsm", {"causal": True}), ("sm", {"mode": "fast"})],
)
def test_lean_with_dropout_equals_plain_autograd(kind, kw):
    """Dropout draws the same masks in the same order, so from one seed both
    paths give the same outputs and gradients: backward reuses the kept masks."""
    x = torch.randn(2, 9, D)
    mask = pad_mask([9, 4], 9)
    plain = step(make(kind, lean=False, dropout=0.3, **kw), x, mask)
    lean = step(make(kind, dropout=0.3, **kw), x, mask)
    assert relative(plain[0], make(kind, dropout=0.0, **kw)(x)) > 1e-3  # it drops
    for a, b in zip(lean, plain, strict=True):
        assert relative(a, b) < 1e-5


def saved_bytes_per_frame(layer, frames, dtype):
    """Bytes kept for backward by one forward (parameters excluded), per frame.

    Counted with ``saved_tensors_hooks``: each distinct storage once, at its
    full size, as the allocator holds it.
    """
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(1, frames, layer_dim(layer), requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            layer(x)
    return sum(kept.values()) / frames


def layer_dim(layer):
    return getattr(layer, "d_model", None) or layer.out_proj.in_features


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sm_and_wsm_keep_no_more_than_the_sdpa_block(dtype):
    """d 768, 12 heads, 1500 frames (30 s): the issue's sizes."""
    d, heads, frames = 768, 12, 1500
    torch.manual_seed(0)
    sdpa = saved_bytes_per_frame(build_mixer("sdpa", d, nhead=heads), frames, dtype)
    for name, kw in (("sm", {}), ("wsm", {"window_size": 32})):
        for causal in (False, True):
            layer = build_mixer(name, d, nhead=heads, causal=causal, **kw).train()
            lean = saved_bytes_per_frame(layer, frames, dtype)
            assert lean <= sdpa, (name, causal, dtype, lean, sdpa)
            layer.lean = False
            plain = saved_bytes_per_frame(layer, frames, dtype)
            assert lean < 0.6 * plain, (name, causal, dtype, lean, plain)


@pytest.mark.parametrize("name, kw", [("sm", {}), ("wsm", {"window_size": 8})])
def test_compiled_layers_keep_what_the_eager_lean_layer_keeps(name, kw):
    """Through ``torch.compile``, AOTAutograd merges the backward's
    recomputations with the forward operations they repeat and keeps their
    results (fp32 window means, LayerNorm outputs, activations): the
    backend with that merge off keeps what the eager layer keeps."""
    from torch._dynamo.backends.debugging import aot_eager

    from speechbrain_wsm.nnet.lean_mixing import without_joint_cse

    torch._dynamo.reset()
    layer = build_mixer(name, 64, nhead=4, **kw).train()
    eager = saved_bytes_per_frame(layer, 50, torch.bfloat16)
    kept = {}
    for label, backend in (
        ("merged", aot_eager),
        ("lean", without_joint_cse(aot_eager)),
    ):
        torch._dynamo.reset()
        compiled = torch.compile(layer, backend=backend, fullgraph=True)
        kept[label] = saved_bytes_per_frame(compiled, 50, torch.bfloat16)
    assert kept["lean"] <= 1.05 * eager, (kept, eager)
    assert kept["merged"] > 1.5 * eager, (kept, eager)  # what the backend avoids


@pytest.mark.parametrize("name, kw", [("sm", {}), ("wsm", {"window_size": 32})])
def test_lean_training_step_peaks_no_higher_than_plain_autograd(name, kw):
    """Peak resident memory of one training step (d 128, 2 x 4000 frames,
    fp32): the lean backward recomputes, so it must free its temporaries as
    it goes (measured 1.08x for SM and 0.88x for WSM; 1.50x and 1.31x when
    every recomputed tensor lived to the end of the backward)."""
    from speechbrain_wsm.bench.common import peak_memory
    from speechbrain_wsm.bench.layers import LayerStep

    def peak(lean):
        kwargs = {**kw, "lean": lean}
        step = LayerStep(name, kwargs, 80, 2, 128, 4, torch.float32, False)
        return peak_memory(step, "cpu")["peak_bytes"]

    lean, plain = peak(True), peak(False)
    assert lean <= 1.15 * plain, (lean, plain)
