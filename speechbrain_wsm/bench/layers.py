"""Layer benchmark: one mixer layer, forward + backward, against utterance length.

Compares self-attention through ``torch.nn.functional.scaled_dot_product_attention``
(``sdpa``), SpeechBrain's ``MultiheadAttention`` (``sb_mha``), SummaryMixing
(``sm``) and Windowed SummaryMixing at several window sizes (``wsm_w<k>``), at
20 ms frames (50 frames per second of speech). Writes ``layers_<device>.csv``,
``.json`` and ``.png`` (time and peak memory against length) into ``--out``,
prints a markdown table and checks the project's targets on the ratios of this
one run.

Run: ``python -m speechbrain_wsm.bench.layers`` (CPU, and CUDA when present);
``--quick`` for a seconds-long smoke run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechbrain_wsm.bench.common import (
    add_options,
    autocast,
    bench_parser,
    lookup,
    measure_rows,
    plot_time_and_memory,
    preload,
    profile_table,
    report,
    step_devices,
)
from speechbrain_wsm.nnet.encoders import MixerEncoder
from speechbrain_wsm.nnet.lean_mixing import compile_backend
from speechbrain_wsm.nnet.registry import build_mixer
from speechbrain_wsm.nnet.summary_mixing import SummaryMixing

FRAMES_PER_SECOND = 50  # 20 ms frames
BLOCK_DROPOUT = 0.1  # --block: the recipes' Conformer dropout


class ConcatCombinerSM(SummaryMixing):
    """SM as the SM paper writes it: the combiner reads ``[f(x_t); mean s]`` per frame.

    A benchmark reference only. The package's :class:`SummaryMixing` computes the
    same function but projects the utterance summary once per utterance
    instead of once per frame, which halves the combiner's per-frame work.
    """

    def _combine(self, local, summaries, dtype, T):
        parts = [local] + [s.to(dtype) for s in summaries]
        B = local.shape[0]
        parts = [
            norm(p).expand(B, T, -1) for norm, p in zip(self.norms, parts, strict=True)
        ]
        return self.combiner_activation(
            self.combiner(self.dropout(torch.cat(parts, -1)))
        )


def mixer_specs(
    windows, compiled=(), recompute=(), plain=()
) -> dict[str, tuple[str | type, dict, bool]]:
    """Benchmark label -> (registry name or class, mixer kwargs, compiled).

    Every label in ``compiled`` gets a ``<label>_compiled`` twin run through
    ``torch.compile``, every SM or WSM label in ``recompute`` a
    ``<label>_recompute`` twin that recomputes its projections in backward,
    and every one in ``plain`` a ``<label>_plain`` twin trained through
    autograd's own backward (``lean=False``) instead of the memory-lean
    default; twins are timed in the same interleaved rounds as the originals.
    """
    specs = {
        "sdpa": ("sdpa", {}, False),
        "sb_mha": ("mhsa", {}, False),
        "sm_concat": (ConcatCombinerSM, {}, False),
        "sm": ("sm", {}, False),
    }
    for w in windows:
        specs[f"wsm_w{w}"] = ("wsm", {"window_size": w}, False)
    summary_mixers = [label for label in specs if label.startswith(("sm", "wsm"))]
    for option, labels, valid in (
        ("--compile", compiled, list(specs)),
        ("--recompute", recompute, summary_mixers),
        ("--plain", plain, summary_mixers),
    ):
        unknown = sorted(set(labels) - set(valid))
        if unknown:
            raise SystemExit(
                f"{option}: unknown mixer labels {unknown}; valid: {valid}"
            )
    for label in compiled:
        name, kwargs, _ = specs[label]
        specs[f"{label}_compiled"] = (name, kwargs, True)
    for label in recompute:
        name, kwargs, _ = specs[label]
        specs[f"{label}_recompute"] = (name, {**kwargs, "recompute": True}, False)
    for label in plain:
        name, kwargs, _ = specs[label]
        specs[f"{label}_plain"] = (name, {**kwargs, "lean": False}, False)
    return specs


class LayerStep:
    """Build one mixer (``block``: one Conformer layer around it) and a batch;
    calling it runs forward + backward once."""

    def __init__(
        self, name, kwargs, seconds, batch, d_model, nhead, dtype, compiled, block=False
    ):
        self.args = (name, kwargs, seconds, batch, d_model, nhead, dtype, compiled)
        self.block = block

    def __call__(self, device: str):
        name, kwargs, seconds, batch, d_model, nhead, dtype, compiled = self.args
        torch.manual_seed(0)
        if self.block:  # as a recipe builds and compiles it
            layer = MixerEncoder(
                1, d_model, nhead=nhead, d_ffn=4 * d_model, mixer=name,
                mixer_kwargs=kwargs, dropout=BLOCK_DROPOUT, positional_encoding="sine",
            )  # fmt: skip
        elif isinstance(name, str):
            layer = build_mixer(name, d_model, nhead=nhead, **kwargs)
        else:
            layer = name(d_model, nhead=nhead, **kwargs)
        layer = layer.to(device).train()
        if compiled:  # compiled at the warm-up step, outside the timed rounds
            if self.block:
                layer.compile_layers()
            else:
                layer = torch.compile(layer, backend=compile_backend)
        T = int(seconds * FRAMES_PER_SECOND)
        x = torch.randn(batch, T, d_model, device=device, requires_grad=True)
        grad = torch.randn(batch, T, d_model, device=device)
        amp = autocast(device, dtype)

        def step():
            with amp:
                y = layer(x)
                y = y[0] if self.block else y  # the encoder's output, hidden states
            y.backward(grad.to(y.dtype))
            x.grad = None
            for p in layer.parameters():
                p.grad = None

        return step


def specs_for(args) -> dict:
    """:func:`mixer_specs` of the command line; ``--block`` leaves out the
    reference formulation (a class, not a mixer ``MixerEncoder`` can build)."""
    specs = mixer_specs(args.windows, args.compile, args.recompute, args.plain)
    if args.block:
        specs = {k: v for k, v in specs.items() if isinstance(v[0], str)}
    return specs


def _settings(args) -> str:
    return f"d_model {args.d_model}, {args.nhead} heads, batch {args.batch}"


def run(args) -> list[dict]:
    preload("speechbrain_wsm.bench.layers")
    rows = []
    specs = specs_for(args)
    for device, dtype in step_devices(args, _settings(args)):
        for seconds in args.lengths:
            makers = {
                label: LayerStep(
                    name,
                    kwargs,
                    seconds,
                    args.batch,
                    args.d_model,
                    args.nhead,
                    dtype,
                    c,
                    args.block,
                )
                for label, (name, kwargs, c) in specs.items()
            }
            frames = int(seconds * FRAMES_PER_SECOND)
            columns = {
                label: {
                    "device": device,
                    "mixer": label,
                    "seconds": seconds,
                    "frames": frames,
                }
                for label in specs
            }
            rows += measure_rows(makers, device, args, columns)
    return rows


def profile(args) -> None:
    """``--profile``: a profiler table of one step per label (first length)."""
    if not args.profile:
        return
    specs = specs_for(args)
    for device, dtype in step_devices(args, _settings(args)):
        seconds = args.lengths[0]
        for label in args.profile:
            name, kwargs, compiled = specs[label]
            step = LayerStep(name, kwargs, seconds, args.batch, args.d_model,
                             args.nhead, dtype, compiled, args.block)(device)  # fmt: skip
            head = (f"one step of {label}{' (Conformer layer)' if args.block else ''}, "
                    f"{_settings(args)}, {seconds:g} s, {dtype}")  # fmt: skip
            profile_table(step, device, args.out, label, head, rows=25)


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def check_targets(rows, windows, block=False) -> list[dict]:
    """The issue's targets, as ratios of this run's numbers (worst WSM window).

    CPU: WSM time <= 1.35x SM's at every length, against SM as the SM paper
    formulates it (``sm_concat``; the ratio to this package's faster ``sm`` is
    reported beside it); WSM >= 2.2x faster than SDPA at 20 s and >= 6x at
    80 s; WSM time from 20 s to 80 s grows <= 4.6x. CUDA: WSM >= 2x faster
    than SDPA (the flash kernel in bf16) at 60 s, and its peak memory no
    higher than SDPA's. Compiled SM / WSM time against their eager selves:
    the target of issue 22 item 5 (at most 1.0x) on the CPU, reported only
    on CUDA and with ``block`` (one Conformer layer per mixer, where it is
    the only row).
    """
    wsm = [f"wsm_w{w}" for w in windows]
    out = []

    def ratio(device, num, den, s_num, s_den=None, key="time_ms"):
        return _ratio(
            lookup(rows, key, device=device, mixer=num, seconds=s_num),
            lookup(rows, key, device=device, mixer=den, seconds=s_den or s_num),
        )

    def add(device, target, values, worst, limit=None, at_least=False):
        values = [v for v in values if v is not None]
        value = worst(values) if values else None
        ok = (
            None
            if value is None or limit is None
            else (value >= limit if at_least else value <= limit)
        )
        out.append({"device": device, "target": target, "measured": value, "ok": ok})

    for device in sorted({r["device"] for r in rows}):
        lengths = sorted({r["seconds"] for r in rows if r["device"] == device})
        mixers = {r["mixer"] for r in rows if r["device"] == device}
        target = device == "cpu" and not block  # item 5: the mixer layer alone
        for m in [m for m in ["sm", *wsm] if f"{m}_compiled" in mixers]:
            add(
                device,
                f"{m} compiled / eager time" + (" <= 1.0" if target else " (info)"),
                [ratio(device, f"{m}_compiled", m, s) for s in lengths],
                max,
                1.0 if target else None,
            )
        if block:
            continue
        if device == "cpu":
            for sm, what, limit in (
                ("sm_concat", "SM (paper formulation)", 1.35),
                ("sm", "SM (this package; info)", None),
            ):
                bound = f" <= {limit}" if limit else ""
                add(
                    device,
                    f"WSM / {what} time{bound}",
                    [ratio(device, m, sm, s) for m in wsm for s in lengths],
                    max,
                    limit,
                )
            for s, need in ((20, 2.2), (80, 6.0)):
                add(
                    device,
                    f"SDPA / WSM time at {s} s >= {need}",
                    [ratio(device, "sdpa", m, s) for m in wsm],
                    min,
                    need,
                    True,
                )
            add(
                device,
                "WSM time 80 s / 20 s <= 4.6",
                [ratio(device, m, m, 80, 20) for m in wsm],
                max,
                4.6,
            )
        else:
            for key, need, what in (
                ("time_ms", 2.0, "time"),
                ("peak_mib", 1.0, "peak memory"),
            ):
                add(
                    device,
                    f"SDPA / WSM {what} at 60 s >= {need}",
                    [ratio(device, "sdpa", m, 60, key=key) for m in wsm],
                    min,
                    need,
                    True,
                )
            # issue 22: compiled on both sides, at the run's batch
            for m in ["sm", *wsm]:
                for key, limit, what in (("time_ms", 0.5, "time"),
                                         ("peak_mib", 1.0, "peak memory")):  # fmt: skip
                    value = ratio(device, f"{m}_compiled", "sdpa_compiled", 60, key=key)
                    if value is not None:
                        add(device, f"{m} / sdpa {what} at 60 s, both compiled "
                            f"<= {limit}", [value], max, limit)  # fmt: skip
    return out


def markdown(rows, device) -> str:
    """Time (ms) and peak memory (MiB) per mixer and length, one table."""
    mixers = list(dict.fromkeys(r["mixer"] for r in rows if r["device"] == device))
    lengths = sorted({r["seconds"] for r in rows if r["device"] == device})
    head = "| mixer | " + " | ".join(f"{s:g} s" for s in lengths) + " |"
    lines = [head, "|" + "---|" * (len(lengths) + 1)]
    for m in mixers:
        cells = []
        for s in lengths:
            t, p = (
                lookup(rows, "time_ms", device=device, mixer=m, seconds=s),
                lookup(rows, "peak_mib", device=device, mixer=m, seconds=s),
            )
            memory = "?" if p is None else f"{p:.0f}"  # its own child can fail
            cells.append("failed" if t is None else f"{t:.0f} ms / {memory} MiB")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, device, path: Path, title: str) -> None:
    """Time and peak memory against length (log scales), one line per mixer."""
    curves = []
    for mixer in dict.fromkeys(r["mixer"] for r in rows if r["device"] == device):
        pts = [
            (r["seconds"], r["time_ms"], r["peak_mib"])
            for r in rows
            if r["device"] == device and r["mixer"] == mixer and not r["error"]
        ]
        if pts:
            curves.append((mixer, "--" if mixer in ("sdpa", "sb_mha") else "-", pts))
    ylabels = ("forward + backward time (ms)", "peak memory (MiB)")
    plot_time_and_memory(curves, path, title, ylabels, log=True)


def parse_args(argv=None):
    p = bench_parser(
        __doc__,
        rounds=7,
        budget=20.0,
        rounds_help="interleaved timing rounds per length; the best is kept",
        quick=dict(lengths=[1, 2], windows=[4], d_model=32, rounds=2, budget=0.2),
    )
    p.add_argument(
        "--lengths",
        type=float,
        nargs="+",
        default=[5, 10, 20, 40, 60, 80, 120],
        help="seconds",
    )
    p.add_argument(
        "--windows",
        type=int,
        nargs="+",
        default=[8, 32, 128],
        help="WSM window sizes (frames)",
    )
    add_options(p, batch=2, d_model=256, nhead=4)
    p.add_argument(
        "--compile",
        nargs="*",
        default=[],
        metavar="LABEL",
        help="mixers (e.g. sdpa sm wsm_w32) also run through torch.compile, "
        "as <label>_compiled; each length compiles anew",
    )
    p.add_argument(
        "--recompute",
        nargs="*",
        default=[],
        metavar="LABEL",
        help="SM / WSM mixers (e.g. sm wsm_w32) also run with recompute=True "
        "(projections recomputed in backward), as <label>_recompute",
    )
    p.add_argument(
        "--plain",
        nargs="*",
        default=[],
        metavar="LABEL",
        help="SM / WSM mixers (e.g. sm wsm_w32) also trained through autograd's "
        "own backward (lean=False), as <label>_plain: what the memory-lean "
        "default costs in time",
    )
    p.add_argument(
        "--block",
        action="store_true",
        help="time each mixer inside one Conformer layer (MixerEncoder: "
        "feed-forward modules, convolution module, dropout 0.1), compiled "
        "as the recipes compile it (compile_layers)",
    )
    p.add_argument(
        "--profile",
        nargs="*",
        default=[],
        metavar="LABEL",
        help="also write a profiler table (kernels by time) of one step of these "
        "mixers (e.g. sm_compiled wsm_w32_compiled) at the first length, as "
        "profile_<label>_<device>.txt",
    )
    p.add_argument("--no-plot", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    known = specs_for(args)
    unknown = sorted(set(args.profile) - set(known))
    if unknown:  # before the long run
        raise SystemExit(
            f"--profile: unknown mixer labels {unknown}; valid: {list(known)}"
        )
    rows = run(args)
    profile(args)
    targets = check_targets(rows, args.windows, args.block)
    meta = {"d_model": args.d_model, "nhead": args.nhead, "batch": args.batch,
            "block": args.block}  # fmt: skip
    what = "Conformer layer per mixer" if args.block else "mixer layer"
    title = (
        f"one {what}, d_model {args.d_model}, {args.nhead} heads, batch {args.batch}"
    )
    plots = None if args.no_plot else plot
    return report(
        rows, targets, args.out, "layers", markdown, meta, args.check, plots, title
    )


if __name__ == "__main__":
    raise SystemExit(main())
