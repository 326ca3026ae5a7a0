"""Properties of the SummaryMixing and Windowed SummaryMixing layers."""

import pytest
import torch

from speechbrain_wsm.nnet.summary_mixing import (
    GroupedMLP,
    SummaryMixing,
    WindowedSummaryMixing,
)

D = 16


def make(kind, **kw):
    torch.manual_seed(0)
    layer = (
        SummaryMixing(D, nhead=2, **kw)
        if kind == "sm"
        else WindowedSummaryMixing(D, nhead=2, **{"window_size": 5, **kw})
    )
    return layer.eval()


def pad_mask(lengths, T):
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]


def reference(layer, x, lengths):
    """Frame-by-frame loops over the layer's own projections: the definition."""
    out = torch.zeros_like(x)
    for b, n in enumerate(lengths):
        xb = x[b, :n]
        if layer.shared_proj is not None:
            h = layer.shared_proj(xb)
            local, s = h[:, : layer.local_out], h[:, layer.local_out :]
        else:
            local = layer.local_proj(xb) if layer.local_proj is not None else None
            s = layer.summary_proj(xb)
        for t in range(n):
            parts = [] if local is None else [local[t]]
            if isinstance(layer, WindowedSummaryMixing):
                lo, hi = max(0, t - layer.left), min(n, t + layer.right + 1)
                parts.append(s[lo:hi].mean(0))
            parts.append(s[: t + 1].mean(0) if layer.causal else s.mean(0))
            parts = [norm(p) for norm, p in zip(layer.norms, parts, strict=True)]
            if layer.combiner is None:  # lite SM: the summary is the output
                out[b, t] = parts[0]
            else:
                out[b, t] = layer.combiner_activation(layer.combiner(torch.cat(parts)))
    return out


CASES = [
    ("sm", {}),
    ("sm", {"mode": "lite"}),
    ("sm", {"mode": "fast"}),
    ("sm", {"causal": True}),
    ("wsm", {}),
    ("wsm", {"window_size": 4}),  # even window: one more frame after than before
    ("wsm", {"window_size": 1}),
    ("wsm", {"window_size": 50}),  # wider than the utterance
    ("wsm", {"causal": True}),
    ("wsm", {"causal": True, "mode": "fast"}),
    ("wsm", {"mode": "lite", "layernorm": False}),
]


@pytest.mark.parametrize("kind,kw", CASES)
def test_matches_frame_by_frame_definition_with_padding(kind, kw):
    layer = make(kind, **kw)
    lengths = [13, 9, 1]
    x = torch.randn(3, 13, D)
    y = layer(x, src_key_padding_mask=pad_mask(lengths, 13))
    ref = reference(layer, x, lengths)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(y[b, :n], ref[b, :n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind,kw", CASES)
def test_padded_batch_equals_each_utterance_alone(kind, kw):
    layer = make(kind, **kw)
    lengths = [11, 4, 7]
    x = torch.randn(3, 11, D)
    # garbage, even non-finite, in the padding must not reach valid frames
    mask = pad_mask(lengths, 11)
    x = x.masked_fill(mask.unsqueeze(-1), float("nan"))
    x[1, 5] = float("inf")
    y = layer(x, src_key_padding_mask=mask)
    for b, n in enumerate(lengths):
        alone = layer(x[b : b + 1, :n])
        torch.testing.assert_close(y[b, :n], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["sm", "wsm"])
def test_all_padding_row_is_finite_and_harmless(kind):
    layer = make(kind)
    x = torch.randn(2, 6, D, requires_grad=True)
    mask = pad_mask([6, 0], 6)
    y = layer(x, src_key_padding_mask=mask)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(y[0], layer(x[:1])[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind,causal", [("sm", False), ("wsm", False), ("wsm", True)])
def test_low_precision_is_finite_and_accumulates_in_fp32(kind, dtype, causal):
    layer = make(kind, causal=causal)
    # 12k frames of large positive summaries: a sum kept in fp16 would overflow
    x = 4.0 + torch.randn(1, 12_000, D)
    mask = pad_mask([11_000], 12_000)
    ref = layer(x, src_key_padding_mask=mask)
    y = layer.to(dtype)(x.to(dtype), src_key_padding_mask=mask)
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    valid = ~mask[0]
    err = (y.float() - ref)[0, valid].abs().mean() / ref[0, valid].abs().mean()
    assert err < 0.05


@pytest.mark.parametrize("kind", ["sm", "wsm"])
def test_causal_output_never_depends_on_the_future(kind):
    layer = make(kind, causal=True)
    x = torch.randn(2, 20, D)
    y = layer(x)
    x2 = x.clone()
    x2[:, 12:] = torch.randn(2, 8, D) * 10
    torch.testing.assert_close(layer(x2)[:, :12], y[:, :12])
    assert not torch.allclose(layer(x2)[:, 12:], y[:, 12:])


@pytest.mark.parametrize("kind", ["sm", "wsm"])
@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_streaming_equals_full_causal_forward(kind, chunk):
    layer = (
        make(kind, causal=True, window_size=6)
        if kind == "wsm"
        else make(kind, causal=True)
    )
    lengths = [40, 26]
    x = torch.randn(2, 40, D)
    mask = pad_mask(lengths, 40)
    full = layer(x, src_key_padding_mask=mask)
    outs, state, sizes = [], None, set()
    for start in range(0, 40, chunk):
        sl = slice(start, start + chunk)
        y, state = layer.forward_streaming(
            x[:, sl], state, src_key_padding_mask=mask[:, sl]
        )
        outs.append(y)
        sizes.add(tuple((k, tuple(v.shape)) for k, v in sorted(state.items())))
    streamed = torch.cat(outs, dim=1)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(streamed[b, :n], full[b, :n], atol=1e-5, rtol=1e-4)
    assert len(sizes) == 1  # the state does not grow with the stream
    if kind == "wsm":
        assert state["tail_u"].shape == (2, 5, D)


def test_streaming_needs_a_causal_layer():
    with pytest.raises(ValueError, match="causal"):
        make("wsm").forward_streaming(torch.randn(1, 4, D))


@pytest.mark.parametrize("causal", [False, True])
def test_no_quadratic_or_window_sized_tensor(causal, largest_tensor):
    """Every intermediate of forward and backward stays O(T * D)."""
    d, T, w = 8, 3000, 64
    layer = WindowedSummaryMixing(d, nhead=2, window_size=w, causal=causal)
    x = torch.randn(1, T, d, requires_grad=True)
    with largest_tensor() as probe:
        layer(x, src_key_padding_mask=pad_mask([T - 5], T)).sum().backward()
    # the combiner input [1, T, 3d] is the widest legitimate tensor; T*w = 192k
    assert probe.largest <= 3 * (T + 1) * d
    assert probe.largest < T * w


def test_grouped_mlp_is_block_diagonal():
    mlp = GroupedMLP(8, [8, 6], groups=2)
    x = torch.randn(4, 8, requires_grad=True)
    mlp(x)[:, :3].sum().backward()  # first output group
    assert x.grad[:, :4].abs().sum() > 0
    assert torch.equal(x.grad[:, 4:], torch.zeros(4, 4))


def test_grouped_mlp_with_one_group_is_a_plain_mlp():
    mlp = GroupedMLP(6, [5, 4], groups=1, activation="relu")
    x = torch.randn(3, 6)
    h = torch.relu(x @ mlp.weights[0][0] + mlp.biases[0][0])
    ref = torch.relu(h @ mlp.weights[1][0] + mlp.biases[1][0])
    torch.testing.assert_close(mlp(x), ref)


def test_nhead_groups_the_local_and_summary_projections():
    layer = SummaryMixing(8, nhead=4)
    assert layer.local_proj.groups == 4 and layer.summary_proj.groups == 4
    assert layer.local_proj.weights[0].shape == (4, 2, 2)


def test_lite_mode_gives_every_valid_frame_the_summary():
    layer = make("sm", mode="lite")
    y = layer(torch.randn(1, 7, D))
    torch.testing.assert_close(y[0, 0].expand(7, D), y[0])


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: SummaryMixing(D, mode="turbo"), "mode"),
        (lambda: SummaryMixing(D, mode="lite", summary_out_dim=8), "summary_out_dim"),
        (lambda: SummaryMixing(10, nhead=4), "divisible"),
        (lambda: WindowedSummaryMixing(D, window_size=0), "window_size"),
        (lambda: SummaryMixing(D, activation="tanhh"), "activation"),
    ],
)
def test_bad_configuration_raises_clearly(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_raise_clearly():
    layer = make("wsm")
    with pytest.raises(ValueError, match=r"\[batch, frame, feature\]"):
        layer(torch.randn(4, D))
    with pytest.raises(ValueError, match="feature size"):
        layer(torch.randn(1, 4, D + 1))
    with pytest.raises(ValueError, match="True = padding"):
        layer(torch.randn(1, 4, D), src_key_padding_mask=torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\[batch, frame\]"):
        layer(
            torch.randn(1, 4, D),
            src_key_padding_mask=torch.zeros(1, 5, dtype=torch.bool),
        )


@pytest.mark.parametrize(
    "left,right", [(0, 0), (2, 1), (1, 3), (6, 0), (0, 9), (20, 20)]
)
def test_window_sum_gradient_is_the_mirrored_box_filter(left, right):
    from speechbrain_wsm.nnet.summary_mixing import _WindowSum

    u = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: _WindowSum.apply(v, left, right), (u,))
    ref = torch.stack(
        [u[:, max(0, t - left) : t + right + 1].sum(1) for t in range(7)], dim=1
    )
    torch.testing.assert_close(_WindowSum.apply(u, left, right), ref)


@pytest.mark.parametrize("T", [1, 31, 32, 33, 100, 257])
def test_blocked_frame_scan_equals_cumsum(T):
    from speechbrain_wsm.nnet.frame_sums import cumsum_frames

    u = torch.randn(3, T, 5)
    torch.testing.assert_close(cumsum_frames(u), u.cumsum(1), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kind, kw", [("sm", {}), ("sm", {"mode": "lite"}),
                                      ("wsm", {}), ("wsm", {"mode": "fast"})])  # fmt: skip
def test_recompute_gives_the_same_outputs_and_gradients(kind, kw):
    x = torch.randn(2, 12, D)
    pad = pad_mask([12, 7], 12)
    results = []
    for recompute in (False, True):
        layer = make(kind, recompute=recompute, **kw).train()
        xi = x.clone().requires_grad_(True)
        y = layer(xi, src_key_padding_mask=pad)
        y.square().sum().backward()
        grads = [p.grad for p in layer.parameters()]
        results.append((y.detach(), xi.grad, grads))
    (y0, gx0, gp0), (y1, gx1, gp1) = results
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(gx1, gx0)
    for a, b in zip(gp1, gp0, strict=True):
        torch.testing.assert_close(a, b)


def test_recompute_lowers_the_peak_memory_of_a_training_step():
    from speechbrain_wsm.bench.common import peak_memory
    from speechbrain_wsm.bench.layers import LayerStep

    def step(recompute):  # one WSM layer, d 128, 2 x 4000 frames, fp32
        kwargs = {"window_size": 32, "recompute": recompute}
        return LayerStep("wsm", kwargs, 80, 2, 128, 4, torch.float32, False)

    kept, recomputed = (peak_memory(step(r), "cpu") for r in (False, True))
    # recompute=True measured 0.85x of the lean default's peak: one layer's
    # peak is mostly its backward's temporaries, which the lean default frees
    # early; over a stack of layers the bytes kept per layer add up
    # (test_lean_mixing counts them)
    assert recomputed["peak_bytes"] < 0.92 * kept["peak_bytes"], (kept, recomputed)


def test_blocked_cumsum_operator_matches_cumsum_in_value_and_gradient():
    """The operator compiled CPU graphs call (one opaque kernel)."""
    from speechbrain_wsm.nnet.frame_sums import blocked_cumsum

    u = torch.randn(2, 37, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 37 + 2 + 5, 3, dtype=torch.float64)
    out = blocked_cumsum(u, 2, 5)
    ref = torch.nn.functional.pad(u, (0, 0, 2, 5)).cumsum(1)
    torch.testing.assert_close(out, ref)
    (grad,) = torch.autograd.grad(out, u, g)
    (expected,) = torch.autograd.grad(ref, u, g)
    torch.testing.assert_close(grad, expected)
    torch.library.opcheck(blocked_cumsum, (u.detach(), 2, 5))
