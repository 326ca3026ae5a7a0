"""Soft-DTW benchmark: the batched wavefront against a per-cell Python recursion.

Forward + backward of soft-DTW for a batch of pairs (default: 8 pairs of
500 x 600 frames, 256-d, gamma 0.1, the sizes of LASER's utterances), with

* ``wavefront``: :func:`speechbrain_wsm.nnet.soft_dtw.soft_dtw`, the
  anti-diagonal torch wavefront with the E-matrix backward;
* ``per_cell``: the same recursion and E-matrix backward written cell by cell
  in Python floats held in lists (the fastest a per-cell Python loop gets);
* ``per_cell_numpy``: the same, on NumPy arrays indexed cell by cell (the
  usual form of CPU soft-DTW code when it runs without a JIT).

The cost matrix and its gradient through the features are computed by torch
in all three; the issue's 20x target is set against the per-cell recursion.

The per-cell reference is slow (seconds per pair), so by default it is timed on
``--ref-pairs`` pairs (1) of the full size and its time is extrapolated per
cell to the whole batch; the output says so. Writes ``softdtw_<device>.csv``
and ``.json`` into ``--out`` and prints the speed-up against the 20x target.

Run: ``python -m speechbrain_wsm.bench.softdtw`` (CPU, and CUDA when present;
``--device cpu`` or ``cuda`` for one; always fp32); ``--quick`` for a seconds-long smoke run.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from speechbrain_wsm.bench.common import (
    add_options,
    bench_parser,
    devices_from_arg,
    machine_description,
    measured_fields,
    preload,
    report,
    timings,
)
from speechbrain_wsm.nnet.soft_dtw import pairwise_sq_dist, soft_dtw

TARGET_SPEEDUP = 20.0


def per_cell_soft_dtw_grad(cost: list[list[float]], gamma: float):
    """Soft-DTW value and ``d value / d cost`` of one pair, cell by cell.

    The reference implementation: the forward recursion and the E-matrix
    backward as two Python double loops over floats.
    """
    n, m = len(cost), len(cost[0])
    inf = math.inf
    R = [[inf] * (m + 2) for _ in range(n + 2)]
    R[0][0] = 0.0
    for i in range(1, n + 1):
        Ri, Rp, ci = R[i], R[i - 1], cost[i - 1]
        for j in range(1, m + 1):
            a, b, c = Rp[j - 1], Rp[j], Ri[j - 1]
            lo = min(a, b, c)
            s = (
                math.exp((lo - a) / gamma)
                + math.exp((lo - b) / gamma)
                + math.exp((lo - c) / gamma)
            )
            Ri[j] = ci[j - 1] + lo - gamma * math.log(s)
    value = R[n][m]
    for i in range(n + 2):
        R[i][m + 1] = -inf
    R[n + 1] = [-inf] * (m + 2)
    R[n + 1][m + 1] = R[n][m]
    D = [[0.0] * (m + 2) for _ in range(n + 2)]
    for i in range(n):
        D[i + 1][1 : m + 1] = cost[i]
    E = [[0.0] * (m + 2) for _ in range(n + 2)]
    E[n + 1][m + 1] = 1.0
    for i in range(n, 0, -1):
        for j in range(m, 0, -1):
            r = R[i][j]
            a = math.exp((R[i + 1][j] - r - D[i + 1][j]) / gamma)
            b = math.exp((R[i][j + 1] - r - D[i][j + 1]) / gamma)
            c = math.exp((R[i + 1][j + 1] - r - D[i + 1][j + 1]) / gamma)
            E[i][j] = E[i + 1][j] * a + E[i][j + 1] * b + E[i + 1][j + 1] * c
    return value, [row[1 : m + 1] for row in E[1 : n + 1]]


def per_cell_soft_dtw_grad_numpy(cost: np.ndarray, gamma: float):
    """:func:`per_cell_soft_dtw_grad` on NumPy arrays indexed cell by cell.

    What a soft-DTW written as plain NumPy double loops (the form of the
    common CPU implementations, run without a JIT) costs.
    """
    n, m = cost.shape
    R = np.full((n + 2, m + 2), np.inf)
    R[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            r0 = -R[i - 1, j - 1] / gamma
            r1 = -R[i - 1, j] / gamma
            r2 = -R[i, j - 1] / gamma
            rmax = max(r0, r1, r2)
            rsum = np.exp(r0 - rmax) + np.exp(r1 - rmax) + np.exp(r2 - rmax)
            R[i, j] = cost[i - 1, j - 1] - gamma * (np.log(rsum) + rmax)
    value = R[n, m]
    R[:, m + 1] = -np.inf
    R[n + 1, :] = -np.inf
    R[n + 1, m + 1] = R[n, m]
    D = np.zeros((n + 2, m + 2))
    D[1 : n + 1, 1 : m + 1] = cost
    E = np.zeros((n + 2, m + 2))
    E[n + 1, m + 1] = 1.0
    for j in range(m, 0, -1):
        for i in range(n, 0, -1):
            a = np.exp((R[i + 1, j] - R[i, j] - D[i + 1, j]) / gamma)
            b = np.exp((R[i, j + 1] - R[i, j] - D[i, j + 1]) / gamma)
            c = np.exp((R[i + 1, j + 1] - R[i, j] - D[i + 1, j + 1]) / gamma)
            E[i, j] = E[i + 1, j] * a + E[i, j + 1] * b + E[i + 1, j + 1] * c
    return value, E[1 : n + 1, 1 : m + 1]


class Step:
    """Inputs of one size; calling it returns a forward + backward step."""

    def __init__(self, kind, pairs, t1, t2, dim, gamma):
        self.args = (kind, pairs, t1, t2, dim, gamma)

    def __call__(self, device: str):
        kind, pairs, t1, t2, dim, gamma = self.args
        g = torch.Generator().manual_seed(0)
        x = torch.randn(pairs, t1, dim, generator=g).to(device).requires_grad_(True)
        y = torch.randn(pairs, t2, dim, generator=g).to(device).requires_grad_(True)

        def wavefront():
            soft_dtw(x, y, gamma).sum().backward()
            x.grad = y.grad = None

        def per_cell():
            cost = pairwise_sq_dist(x, y)
            grads = [
                per_cell_soft_dtw_grad(c.tolist(), gamma)[1] for c in cost.detach()
            ]
            cost.backward(torch.tensor(grads, dtype=cost.dtype, device=device))
            x.grad = y.grad = None

        def per_cell_numpy():
            cost = pairwise_sq_dist(x, y)
            grads = np.stack(
                [
                    per_cell_soft_dtw_grad_numpy(c.double().numpy(), gamma)[1]
                    for c in cost.detach().cpu()
                ]
            )
            cost.backward(torch.from_numpy(grads).to(cost))
            x.grad = y.grad = None

        return {
            "wavefront": wavefront,
            "per_cell": per_cell,
            "per_cell_numpy": per_cell_numpy,
        }[kind]


def run(args) -> list[dict]:
    preload("speechbrain_wsm.bench.softdtw")
    rows = []
    cells = args.pairs * args.t1 * args.t2
    for device in devices_from_arg(args.device):
        print(f"# {device}: {machine_description(device)}", flush=True)
        makers = {
            "wavefront": Step(
                "wavefront", args.pairs, args.t1, args.t2, args.dim, args.gamma
            )
        }
        ref_pairs = min(args.ref_pairs, args.pairs)
        if device == "cpu":
            for kind in ("per_cell", "per_cell_numpy"):
                makers[kind] = Step(
                    kind, ref_pairs, args.t1, args.t2, args.dim, args.gamma
                )
        times = timings(makers, device, rounds=args.rounds, budget_s=args.budget)
        for label, res in times.items():
            row = {
                "device": device,
                "impl": label,
                "pairs_timed": args.pairs if label == "wavefront" else ref_pairs,
                "pairs": args.pairs,
                "t1": args.t1,
                "t2": args.t2,
                "dim": args.dim,
                **measured_fields(res),
            }
            row["extrapolated"] = row["pairs_timed"] != args.pairs
            if row["time_ms"] is not None:
                per_cell_ms = row["time_ms"] / (row["pairs_timed"] * args.t1 * args.t2)
                row["batch_time_ms"] = round(per_cell_ms * cells, 3)
            else:
                row["batch_time_ms"] = None
            rows.append(row)
            note = (
                f" (timed on {row['pairs_timed']} pair(s), extrapolated per cell)"
                if row["extrapolated"]
                else ""
            )
            print(
                f"  {label:<10} {row['batch_time_ms']} ms for {args.pairs} pairs{note}",
                flush=True,
            )
    return rows


def check_targets(rows) -> list[dict]:
    """Per-cell reference time / wavefront time on CPU, target >= 20x.

    Two per-cell references: Python floats in lists (``per_cell``, the
    fastest a per-cell Python loop gets) and NumPy arrays indexed cell by
    cell (``per_cell_numpy``, the usual form of such code). The target is
    checked against each; the README reports both.
    """
    cpu = {r["impl"]: r.get("batch_time_ms") for r in rows if r["device"] == "cpu"}
    fast = cpu.get("wavefront")
    out = []
    for ref, what in (
        ("per_cell", "per-cell Python (float lists)"),
        ("per_cell_numpy", "per-cell Python (NumPy arrays)"),
    ):
        if ref not in cpu:
            continue
        value = None if not cpu[ref] or not fast else cpu[ref] / fast
        out.append(
            {
                "device": "cpu",
                "target": f"{what} / wavefront time >= {TARGET_SPEEDUP:g}",
                "measured": value,
                "ok": None if value is None else value >= TARGET_SPEEDUP,
            }
        )
    return out


def markdown(rows, device) -> str:
    lines = [
        "| implementation | pairs timed | time, whole batch (ms) |",
        "|---|---|---|",
    ]
    for r in rows:
        if r["device"] != device:
            continue
        t = (
            "failed: " + r["error"]
            if r["batch_time_ms"] is None
            else r["batch_time_ms"]
        )
        extra = " (extrapolated per cell)" if r["extrapolated"] else ""
        lines.append(f"| {r['impl']} | {r['pairs_timed']}{extra} | {t} |")
    return "\n".join(lines)


def parse_args(argv=None):
    quick = dict(pairs=2, t1=30, t2=40, dim=16, rounds=2, budget=1.0)
    p = bench_parser(__doc__, rounds=3, budget=60.0, quick=quick)
    add_options(p, pairs=8, t1=500, t2=600, dim=256, gamma=0.1)
    p.add_argument(
        "--ref-pairs",
        type=int,
        default=1,
        help="pairs the per-cell references are timed on (then extrapolated)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = run(args)
    keys = "pairs t1 t2 dim gamma ref_pairs".split()
    meta = {k: getattr(args, k) for k in keys}
    return report(
        rows, check_targets(rows), args.out, "softdtw", markdown, meta, args.check
    )


if __name__ == "__main__":
    raise SystemExit(main())
