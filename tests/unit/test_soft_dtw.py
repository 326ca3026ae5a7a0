"""Soft-DTW, its divergence and LASER's contrastive IDM regulariser."""

import math

import pytest
import torch

from speechbrain_wsm.nnet.soft_dtw import (
    contrastive_idm,
    soft_dtw,
    soft_dtw_divergence,
)


def naive_soft_dtw(x, y, gamma, band=None):
    """The recursion cell by cell in float64 (x [n, D], y [m, D])."""
    x, y = x.double(), y.double()
    n, m = len(x), len(y)
    R = [[math.inf] * (m + 1) for _ in range(n + 1)]
    R[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if band is not None and abs(i - j) > band:
                continue
            cost = float(((x[i - 1] - y[j - 1]) ** 2).sum())
            prev = [R[i - 1][j - 1], R[i - 1][j], R[i][j - 1]]
            if gamma == 0:
                soft = min(prev)
            else:
                lo = min(prev)
                soft = lo - gamma * math.log(
                    sum(math.exp(-(p - lo) / gamma) for p in prev if p < math.inf)
                )
            R[i][j] = cost + soft
    return R[n][m]


def _pairs(seed=0, B=3, T1=7, T2=9, D=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T1, D, generator=g, dtype=torch.float64)
    y = torch.randn(B, T2, D, generator=g, dtype=torch.float64)
    xl = torch.tensor([7, 4, 6])[:B]
    yl = torch.tensor([9, 8, 3])[:B]
    return x, y, xl, yl


@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_equals_naive_recursion_on_unequal_lengths(gamma):
    x, y, xl, yl = _pairs()
    got = soft_dtw(x, y, gamma, xl, yl)
    for b in range(3):
        want = naive_soft_dtw(x[b, : xl[b]], y[b, : yl[b]], gamma)
        assert got[b].item() == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_band_equals_naive_banded_recursion():
    x, y, xl, yl = _pairs(seed=1)
    xl, yl = torch.tensor([7, 5, 6]), torch.tensor([9, 7, 5])
    got = soft_dtw(x, y, 0.5, xl, yl, band=2)
    for b in range(3):
        want = naive_soft_dtw(x[b, : xl[b]], y[b, : yl[b]], 0.5, band=2)
        assert got[b].item() == pytest.approx(want, rel=1e-10)
    # A wider band than the sequences allows nothing to be cut: the plain value.
    assert torch.allclose(
        soft_dtw(x, y, 0.5, xl, yl, band=20), soft_dtw(x, y, 0.5, xl, yl)
    )


def test_gradcheck_custom_backward():
    x, y, xl, yl = _pairs(seed=2, T1=6, T2=8, D=3)
    x.requires_grad_(True)
    y.requires_grad_(True)
    xl, yl = torch.tensor([6, 3, 5]), torch.tensor([8, 7, 2])

    def f(a, b):
        return soft_dtw(a, b, 0.3, xl, yl)

    assert torch.autograd.gradcheck(f, (x, y), eps=1e-6, atol=1e-6)

    def banded(a, b):
        return soft_dtw_divergence(a[:2, :5], b[:2, :6], 0.3, band=2)

    assert torch.autograd.gradcheck(banded, (x, y), eps=1e-6, atol=1e-6)


def test_gradient_matches_autograd_through_the_naive_loop():
    """The E-matrix backward equals plain autograd through the recursion."""
    x, y, _, _ = _pairs(seed=3, B=1, T1=5, T2=6)
    xa, ya = x[0].clone().requires_grad_(True), y[0].clone().requires_grad_(True)
    cost = ((xa[:, None] - ya[None]) ** 2).sum(-1)
    R = {(0, 0): torch.zeros((), dtype=torch.float64)}
    inf = torch.tensor(math.inf, dtype=torch.float64)
    for i in range(1, 6):
        for j in range(1, 7):
            prev = torch.stack(
                [R.get(k, inf) for k in ((i - 1, j - 1), (i - 1, j), (i, j - 1))]
            )
            R[(i, j)] = cost[i - 1, j - 1] - 0.2 * torch.logsumexp(-prev / 0.2, 0)
    R[(5, 6)].backward()
    xb, yb = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    soft_dtw(xb, yb, 0.2).sum().backward()
    assert torch.allclose(xb.grad[0], xa.grad) and torch.allclose(yb.grad[0], ya.grad)


def test_padding_never_changes_a_pair_value_or_gradient():
    x, y, xl, yl = _pairs(seed=4)
    x.requires_grad_(True)
    batched = soft_dtw_divergence(x, y, 0.1, xl, yl)
    batched.sum().backward()
    for b in range(3):
        xs = x[b : b + 1, : xl[b]].detach().clone().requires_grad_(True)
        alone = soft_dtw_divergence(xs, y[b : b + 1, : yl[b]], 0.1)
        alone.backward()
        assert batched[b].item() == pytest.approx(alone.item(), rel=1e-10)
        assert torch.allclose(x.grad[b, : xl[b]], xs.grad[0])
        assert torch.all(x.grad[b, xl[b] :] == 0)
    # Garbage (even huge values) in the padding changes nothing.
    x2 = x.detach().clone()
    for b in range(3):
        x2[b, xl[b] :] = 1e6
    assert torch.allclose(soft_dtw_divergence(x2, y, 0.1, xl, yl), batched)


def test_divergence_is_zero_on_identical_and_symmetric_and_nonnegative():
    x, y, xl, yl = _pairs(seed=5)
    assert soft_dtw_divergence(x, x, 0.1, xl, xl).abs().max() < 1e-9
    # soft-DTW itself is not zero on (x, x): the reason for the divergence.
    assert soft_dtw(x, x, 1.0, xl, xl).abs().min() > 1e-3
    dxy = soft_dtw_divergence(x, y, 0.1, xl, yl)
    dyx = soft_dtw_divergence(y, x, 0.1, yl, xl)
    assert torch.allclose(dxy, dyx)
    assert (dxy > 0).all()


def test_small_gamma_approaches_hard_dtw():
    x, y, xl, yl = _pairs(seed=6)
    for b in range(3):
        hard = naive_soft_dtw(x[b, : xl[b]], y[b, : yl[b]], 0)
        gaps = [
            abs(soft_dtw(x[b : b + 1, : xl[b]], y[b : b + 1, : yl[b]], g).item() - hard)
            for g in (1.0, 0.1, 1e-3)
        ]
        assert gaps[0] > 1e-3 and gaps[0] >= gaps[1] >= gaps[2] - 1e-12
        assert gaps[2] < 1e-2


def test_float64_option_and_float32_agree():
    x, y, xl, yl = _pairs(seed=7)
    x32, y32 = x.float(), y.float()
    out = soft_dtw(x32, y32, 0.1, xl, yl, dtype=torch.float64)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), soft_dtw(x, y, 0.1, xl, yl), rtol=1e-5)
    assert torch.allclose(soft_dtw(x32, y32, 0.1, xl, yl), out, rtol=1e-4)


def test_bad_arguments_raise_clear_errors():
    x, y, xl, yl = _pairs()
    with pytest.raises(ValueError, match="gamma"):
        soft_dtw(x, y, 0.0)
    with pytest.raises(ValueError, match="x_lengths"):
        soft_dtw(x, y, 0.1, x_lengths=torch.tensor([8, 1, 1]))
    with pytest.raises(ValueError, match="band"):
        soft_dtw(x, y, 0.1, xl, yl, band=1)
    with pytest.raises(ValueError, match="feature"):
        soft_dtw(x, y[..., :2], 0.1)


def test_idm_hand_computed_four_frames():
    # Frames on a line at 0, 1, 1, 3: distances |i - j| apart in value.
    z = torch.tensor([[[0.0], [1.0], [1.0], [3.0]]])
    margin, sigma = 1.5, 1
    # Pairs (ordered, both directions), gap = |i - j|, w = gap^2 + 1:
    # gap 1 (close, d / w): (0,1) d=1, (1,2) d=0, (2,3) d=2 -> (1 + 0 + 2) / 2 * 2 = 3
    # gap 2 (far, w * relu(1.5 - d), w=5): (0,2) d=1 -> 2.5, (1,3) d=2 -> 0; x2 = 5
    # gap 3 (far, w=10): (0,3) d=3 -> 0
    want = (3.0 + 5.0) / 16
    got = contrastive_idm(z, margin=margin, sigma=sigma)
    assert got.shape == (1,) and got.item() == pytest.approx(want)
    # sigma 0 (LASER): the gap-1 pairs are pushed too (w=2): (0,1) 0.5*2, (1,2) 1.5*2
    want0 = (2 * (2 * 0.5 + 2 * 1.5 + 0) + 5.0) / 16
    assert contrastive_idm(z, margin=margin, sigma=0).item() == pytest.approx(want0)


def test_idm_per_utterance_ignores_padding_and_has_finite_gradients():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 6, 3, generator=g, requires_grad=True)
    lengths = torch.tensor([6, 4])
    batched = contrastive_idm(z, 1.0, 0, lengths)
    alone = contrastive_idm(z[1:, :4], 1.0, 0)
    assert batched[1].item() == pytest.approx(alone.item())
    dup = torch.zeros(1, 3, 2, requires_grad=True)  # identical frames: d = 0
    (contrastive_idm(dup, 1.0, 0).sum() + batched.sum()).backward()
    assert torch.isfinite(dup.grad).all() and torch.isfinite(z.grad).all()
    assert torch.all(z.grad[1, 4:] == 0)


def test_benchmark_reference_agrees_and_quick_run_reports(tmp_path, capsys):
    from speechbrain_wsm.bench import softdtw

    x, y, _, _ = _pairs(seed=8, B=1, T1=5, T2=7)
    x.requires_grad_(True)
    cost = ((x[0, :, None] - y[0, None]) ** 2).sum(-1)
    value, grad = softdtw.per_cell_soft_dtw_grad(cost.tolist(), 0.1)
    assert value == pytest.approx(soft_dtw(x, y, 0.1).item(), rel=1e-10)
    (want,) = torch.autograd.grad(soft_dtw(x, y, 0.1).sum(), x)
    (got,) = torch.autograd.grad(cost, x, torch.tensor(grad, dtype=torch.float64))
    assert torch.allclose(got, want[0])
    value_np, grad_np = softdtw.per_cell_soft_dtw_grad_numpy(cost.detach().numpy(), 0.1)
    assert value_np == pytest.approx(value, rel=1e-10)
    assert torch.allclose(
        torch.from_numpy(grad_np), torch.tensor(grad, dtype=torch.float64)
    )
    assert softdtw.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "per-cell Python (NumPy arrays) / wavefront" in out and "extrapolated" in out
    assert (tmp_path / "softdtw_cpu.csv").exists()
