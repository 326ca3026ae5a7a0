"""Streaming encoder benchmark: look-ahead, training cost against length, streaming speed.

For each variant of the streaming wav2vec 2.0 recipe (``maa``, ``sa``,
``llsa``: SA in the two-stream mode, ``wsm``: streaming WSM in the two-stream
mode; ``maa_sdpa``: MAA through one fused ``scaled_dot_product_attention``
call; ``chunked``: SpeechBrain's dynamic-chunk attention with chunks of
``--chunk-size`` frames and ``left_context`` frames of whole left chunks), as a :class:`~speechbrain_wsm.nnet.streaming_encoder.StreamingEncoder`
of ``--layers`` Conformer layers (default 12) with ``left_context`` /
``right_context`` frames per layer:

1. **look-ahead**, measured from the dependency structure
   (:func:`speechbrain_wsm.latency.lookahead_frames`), in frames and ms;
2. **training step** (forward + backward of the encoder on one utterance):
   best-of-rounds time and peak memory (:mod:`speechbrain_wsm.bench.common`)
   against utterance length (frames of ``--frame-ms``: 20 ms as the SSL
   recipes, 40 ms as the streaming CTC recipes);
3. **streaming real-time factor** of the whole recogniser on one torch thread
   (``--threads``):
   :class:`~speechbrain_wsm.models.streaming_ctc.StreamingFbankCTC` (streamable
   fbank front end, this encoder, a CTC head of ``--vocab`` units) fed
   ``--stream-seconds`` of audio in chunks of each ``--chunks`` size (in
   encoder frames) through its incremental ``stream()``; compute time divided
   by the audio duration (below 1: faster than real time), as wall-clock time
   and as the thread's CPU time (which a machine shared with other jobs
   inflates less). Beside it, the look-ahead in ms (encoder look-ahead plus
   the front end's window past its hop) and the latency from a sample's
   arrival to its characters' output: chunk + look-ahead + mean compute time
   of a chunk (wall), in ms. ``--compiled`` also streams through the opt-in
   compiled step (``stream(..., compiled=True)``, compiled during the
   warm-up): its RTF beside the eager one and its largest log-probability
   deviation from the eager stream; ``--int8`` likewise for the int8 linear
   layers.

Targets (ratios of this one run): SA's peak training memory at the longest
length at most 1/3 of MAA's; LLSA's look-ahead at most 1/10 of MAA's; for
``maa``, ``sa``, ``llsa`` and ``wsm``, streaming RTF (wall) at most 0.15 with
160 ms chunks (8 frames of 20 ms, 4 of 40 ms) and at most 0.5 with 1-frame
chunks, measured on a quiet machine. ``--frame-ms 40 --chunks 1 4 16
--left-context 32 --right-context 4`` measures the streaming CTC recipes'
recogniser (``conformer_streaming_{wsm,llsa}.yaml``).

Run: ``python -m speechbrain_wsm.bench.streaming`` (``--quick`` for a smoke
run). Writes ``streaming_<device>.csv`` and ``.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from speechbrain_wsm.bench.common import (
    add_options,
    autocast,
    bench_parser,
    measured_fields,
    peak_memory,
    plot_time_and_memory,
    preload,
    report,
    step_devices,
    timings,
)
from speechbrain_wsm.latency import lookahead_frames
from speechbrain_wsm.nnet.streaming_encoder import StreamingEncoder

FRAME_MS = (20, 40)  # encoder frame rates: the SSL recipes' and the CTC recipes'
PARTS = ("lookahead", "time", "memory", "stream")
#: variant -> (mixer, low_latency, mixer kwargs)
VARIANTS = {
    "maa": ("maa", False, {}),  # T x T scores and weights, as SpeechBrain's MHA
    "maa_sdpa": ("maa", False, {"fused": True}),  # the same band through SDPA
    "sa": ("sa", False, {}),
    "llsa": ("sa", True, {}),
    "wsm": ("swsm", True, {}),
    "chunked": ("chunked", False, {}),
}


def build(variant: str, cfg: dict) -> StreamingEncoder:
    """The encoder of ``variant`` with the sizes of ``cfg``."""
    mixer, low_latency, kwargs = VARIANTS[variant]
    chunked = mixer == "chunked"
    torch.manual_seed(0)
    return StreamingEncoder(
        cfg["layers"],
        cfg["d_model"],
        nhead=cfg["nhead"],
        d_ffn=cfg["d_ffn"],
        mixer=mixer,
        arch=cfg.get("arch", "conformer"),
        dropout=0.0,
        left_context=cfg["left_context"],
        right_context=0 if chunked else cfg["right_context"],
        low_latency=low_latency,
        # the recipes' two-stream Conformers only (other blocks refuse it)
        conv_lookahead=low_latency
        and cfg.get("arch", "conformer") == "conformer"
        and cfg.get("conv_lookahead", False),
        mixer_kwargs=kwargs,
        chunk_size=cfg.get("chunk_size", 8) if chunked else None,
    )


class EncoderStep:
    """Picklable maker: ``(device) -> step`` running forward + backward once."""

    def __init__(self, variant: str, seconds: float, cfg: dict, dtype=torch.float32):
        self.variant, self.seconds, self.cfg, self.dtype = variant, seconds, cfg, dtype

    def __call__(self, device: str):
        enc = build(self.variant, self.cfg).to(device).train()
        T = int(round(self.seconds * 1000 / self.cfg.get("frame_ms", 20)))
        x = torch.randn(1, T, self.cfg["d_model"], device=device, requires_grad=True)

        def step():
            with autocast(device, self.dtype):
                out, _ = enc(x)
            out.float().square().mean().backward()
            x.grad = None
            for p in enc.parameters():
                p.grad = None

        return step


def build_recogniser(variant: str, cfg: dict):
    """The streaming CTC recogniser (front end + encoder + head) of ``variant``."""
    from speechbrain_wsm.models.streaming_ctc import StreamingFbankCTC

    enc = build(variant, cfg)
    torch.manual_seed(0)
    return StreamingFbankCTC(
        enc,
        cfg.get("vocab", 32),
        channels=(cfg["d_model"], cfg["d_model"]),
        strides=(2, cfg.get("frame_ms", 20) // 20),
    ).eval()


def stream_rtf(
    variant: str,
    cfg: dict,
    chunk: int,
    seconds: float,
    int8: bool = False,
    threads: int = 1,
    compiled: bool = False,
) -> dict:
    """Stream ``seconds`` of audio through the recogniser in chunks of ``chunk``
    frames on ``threads`` torch threads: RTF (wall and CPU), look-ahead and
    latency (``int8``: the opt-in int8 linear layers of ``stream()``;
    ``compiled``: its opt-in compiled step, compiled during the warm-up).
    Also ``out``: the log-probabilities of the whole stream."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    opts = {"int8": int8, "compiled": compiled}
    try:
        model = build_recogniser(variant, cfg)
        hop = model.hop
        samples = chunk * hop
        wav = torch.randn(
            1, int(seconds * 16000), generator=torch.Generator().manual_seed(0)
        )
        with torch.inference_mode():
            state = None
            for i in range(0, min(16000, wav.shape[1]), samples):  # warm-up
                _, state = model.stream(wav[:, i : i + samples], state, **opts)
            t0, c0, state, calls, outs = (
                time.perf_counter(),
                time.thread_time(),
                None,
                0,
                [],
            )
            for i in range(0, wav.shape[1], samples):
                y, state = model.stream(wav[:, i : i + samples], state, **opts)
                outs.append(y)
                calls += 1
            outs.append(model.stream(None, state, final=True)[0])
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    finally:
        torch.set_num_threads(saved)
    chunk_ms = 1000.0 * samples / 16000
    compute_ms = 1000.0 * wall / max(calls, 1)
    return {
        "rtf": round(wall / seconds, 4),
        "rtf_cpu": round(cpu / seconds, 4),
        "chunk_ms": chunk_ms,
        "lookahead_ms": round(model.lookahead_ms, 1),
        "latency_ms": round(chunk_ms + model.lookahead_ms + compute_ms, 1),
        "out": torch.cat(outs, dim=1),
    }


def int8_deviation(variant: str, cfg: dict, chunk: int, seconds: float) -> float:
    """Largest absolute difference between the CTC log-probabilities of the
    int8 ``stream()`` and of the float offline ``forward`` on the same audio."""
    model = build_recogniser(variant, cfg)
    wav = torch.randn(
        1, int(seconds * 16000), generator=torch.Generator().manual_seed(0)
    )
    samples = chunk * model.hop
    with torch.inference_mode():
        full, _ = model(wav)
        outs, state = [], None
        for i in range(0, wav.shape[1], samples):
            y, state = model.stream(wav[:, i : i + samples], state, int8=True)
            outs.append(y)
        outs.append(model.stream(None, state, final=True)[0])
    return (torch.cat(outs, 1) - full).abs().max().item()


def onnx_rtf(variant: str, cfg: dict, chunk: int, seconds: float, folder) -> float:
    """RTF (wall) of the same recogniser exported as a streaming ONNX chunk
    step (``python -m speechbrain_wsm.export --streaming``) in onnxruntime on
    one thread, fed chunk by chunk."""
    from speechbrain_wsm.export import OnnxStreamer, export_streaming

    model = build_recogniser(variant, cfg)
    path = Path(folder) / f"{variant}_c{chunk}.onnx"
    export_streaming(model, path, chunk_frames=chunk)
    runner = OnnxStreamer(path, threads=1)
    samples = chunk * model.hop
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(int(seconds * 16000), generator=gen).numpy()
    for i in range(0, min(16000, len(wav)), samples):  # warm-up
        runner.feed(wav[i : i + samples])
    runner.reset()
    t0 = time.perf_counter()
    for i in range(0, len(wav), samples):
        runner.feed(wav[i : i + samples])
    runner.finish()
    return (time.perf_counter() - t0) / seconds


def measure_lookahead(variant: str, cfg: dict) -> int | None:
    enc = build(variant, cfg).eval()
    with torch.no_grad():
        return lookahead_frames(
            lambda x: enc(x)[0], cfg["d_model"], frames=64, probes=12
        )


def encoder_config(args) -> dict:
    """The encoder's sizes and context of the command line (as :func:`build` reads them)."""
    keys = "arch layers d_model nhead d_ffn left_context right_context chunk_size vocab"
    keys += " frame_ms conv_lookahead"
    keys = keys.split()
    return {k: getattr(args, k) for k in keys}


def run(args) -> list[dict]:
    preload("speechbrain_wsm.bench.streaming")
    cfg = encoder_config(args)
    rows = []
    for device, dtype in step_devices(args, cfg):
        for variant in args.variants if "lookahead" in args.parts else ():
            frames = measure_lookahead(variant, cfg)
            rows.append(
                {
                    "device": device,
                    "variant": variant,
                    "kind": "lookahead",
                    "frames": frames,
                    "ms": None if frames is None else frames * args.frame_ms,
                }
            )
            print(f"  {variant:<5} look-ahead {frames} frames", flush=True)
        for seconds in args.lengths if {"time", "memory"} & set(args.parts) else ():
            makers = {v: EncoderStep(v, seconds, cfg, dtype) for v in args.variants}
            times = {}
            if "time" in args.parts:
                times = timings(
                    makers, device, rounds=args.rounds, budget_s=args.budget
                )
            for variant, make in makers.items():
                res = peak_memory(make, device) if "memory" in args.parts else {}
                res = {**res, **times.get(variant, {})}
                row = {
                    "device": device,
                    "variant": variant,
                    "kind": "train_step",
                    "seconds": seconds,
                    **measured_fields(res),
                }
                rows.append(row)
                print(
                    f"  {variant:<5} {seconds:>5} s  {row['time_ms']} ms  "
                    f"{row['peak_mib']} MiB {row['error']}",
                    flush=True,
                )
        if device == "cpu" and "stream" in args.parts:
            for variant in args.variants:
                for chunk in args.chunks:
                    secs, th = args.stream_seconds, args.threads
                    res = stream_rtf(variant, cfg, chunk, secs, threads=th)
                    out = res.pop("out")
                    if args.compiled:
                        torch._dynamo.reset()  # one encoder's graphs at a time
                        c = stream_rtf(variant, cfg, chunk, secs, threads=th,
                                       compiled=True)  # fmt: skip
                        res["rtf_compiled"] = c["rtf"]
                        res["rtf_cpu_compiled"] = c["rtf_cpu"]
                        res["compiled_max_dev"] = (c["out"] - out).abs().max().item()
                    if args.int8:
                        q = stream_rtf(variant, cfg, chunk, secs, True, th)
                        res["rtf_int8"], res["rtf_cpu_int8"] = q["rtf"], q["rtf_cpu"]
                        if chunk == args.chunks[0]:
                            res["int8_max_dev"] = round(
                                int8_deviation(
                                    variant, cfg, chunk, args.stream_seconds
                                ),
                                5,
                            )
                    if args.onnx and chunk in args.onnx_chunks:
                        import tempfile

                        with tempfile.TemporaryDirectory() as tmp:
                            res["rtf_onnx"] = round(
                                onnx_rtf(variant, cfg, chunk, args.stream_seconds, tmp),
                                4,
                            )
                    rows.append(
                        {
                            "device": device,
                            "variant": variant,
                            "kind": "stream",
                            "chunk_frames": chunk,
                            **res,
                        }
                    )
                    print(
                        f"  {variant:<5} chunk {chunk:>3}  RTF {res['rtf']:.3f} "
                        f"(CPU {res['rtf_cpu']:.3f}, onnxruntime "
                        f"{res.get('rtf_onnx', '-')})  look-ahead "
                        f"{res['lookahead_ms']:g} ms  latency {res['latency_ms']:g} ms"
                        + (
                            f"  int8 RTF {res['rtf_int8']:.3f} (CPU "
                            f"{res['rtf_cpu_int8']:.3f})"
                            if "rtf_int8" in res
                            else ""
                        )
                        + (
                            f", int8 max |log-prob - offline| {res['int8_max_dev']:g}"
                            if "int8_max_dev" in res
                            else ""
                        )
                        + (
                            f"  compiled RTF {res['rtf_compiled']:.3f} (CPU "
                            f"{res['rtf_cpu_compiled']:.3f}, "
                            f"x{res['rtf_cpu_compiled'] / res['rtf_cpu']:.2f} of "
                            f"eager; max |log-prob - eager| "
                            f"{res['compiled_max_dev']:.1e})"
                            if "rtf_compiled" in res
                            else ""
                        ),
                        flush=True,
                    )
    return rows


def _get(rows, device, variant, kind, **match):
    for r in rows:
        if (
            r["device"] == device
            and r["variant"] == variant
            and r["kind"] == kind
            and all(r.get(k) == v for k, v in match.items())
        ):
            return r
    return {}


def check_targets(rows, args) -> list[dict]:
    """SA / MAA peak memory at the longest length <= 1/3; LLSA / MAA look-ahead
    <= 1/10; streaming RTF <= 0.15 at 160 ms chunks and <= 0.5 at one frame,
    for the eager step and (``--compiled``) the compiled one."""
    out = []
    for device in sorted({r["device"] for r in rows}):
        longest = max(args.lengths)

        def ratio(a, b):
            return None if a is None or not b else a / b

        mem = ratio(
            _get(rows, device, "sa", "train_step", seconds=longest).get("peak_mib"),
            _get(rows, device, "maa", "train_step", seconds=longest).get("peak_mib"),
        )
        lat = ratio(
            _get(rows, device, "llsa", "lookahead").get("frames"),
            _get(rows, device, "maa", "lookahead").get("frames"),
        )
        checks = [
            (f"SA / MAA peak training memory at {longest:g} s <= 1/3", mem, 1 / 3),
            (f"LLSA / MAA look-ahead at depth {args.layers} <= 1/10", lat, 0.1),
        ]
        ms = args.frame_ms
        for variant in ("maa", "sa", "llsa", "wsm"):
            for chunk, limit in ((160 // ms, 0.15), (1, 0.5)):
                r = _get(rows, device, variant, "stream", chunk_frames=chunk)
                for key, step in (("rtf", ""), ("rtf_compiled", " (compiled step)")):
                    if r.get(key) is not None:
                        name = f"{variant} streaming RTF{step}, {chunk * ms} ms chunks"
                        checks.append((f"{name} <= {limit}", r[key], limit))
        for target, value, limit in checks:
            ok = None if value is None else value <= limit
            out.append(
                {"device": device, "target": target, "measured": value, "ok": ok}
            )
    return out


def markdown(rows, device) -> str:
    """One table: look-ahead, then step time / peak memory per length, then RTF."""
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["device"] == device))
    lengths = sorted(
        {r["seconds"] for r in rows if r["device"] == device and "seconds" in r}
    )
    chunk_ms = {
        r["chunk_frames"]: r["chunk_ms"]
        for r in rows
        if r["device"] == device and "chunk_frames" in r
    }
    chunks = sorted(chunk_ms)
    head = (
        ["variant", "look-ahead"]
        + [f"train {s:g} s (time / peak)" for s in lengths]
        + [
            f"stream, chunk {c} ({chunk_ms[c]:g} ms): RTF (CPU) / latency"
            for c in chunks
        ]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        la = _get(rows, device, v, "lookahead")
        if not la:
            shown_la = "-"  # not measured in this run
        elif la["frames"] is None:
            shown_la = "unbounded"
        else:
            shown_la = f"{la['frames']} frames ({la['ms']:g} ms)"
        st = [r for r in rows if r["device"] == device and r["variant"] == v]
        st = [r for r in st if r["kind"] == "stream"]
        if st:
            shown_la += f"; {st[0]['lookahead_ms']:g} ms with the front end"
        cells = [v, shown_la]
        for s in lengths:
            r = _get(rows, device, v, "train_step", seconds=s)
            t, m = r.get("time_ms"), r.get("peak_mib")
            cells.append(
                r.get("error")
                or ("-" if t is None else f"{t / 1e3:.2f} s")
                + " / "
                + ("-" if m is None else f"{m:.0f} MiB")
            )
        for c in chunks:
            r = _get(rows, device, v, "stream", chunk_frames=c)
            cells.append(
                f"{r['rtf']:.3f} ({r['rtf_cpu']:.3f}"
                + (f"; {r['rtf_onnx']:.3f}" if "rtf_onnx" in r else "")
                + f") / {r['latency_ms']:g} ms"
                + (f"; int8 CPU {r['rtf_cpu_int8']:.3f}" if "rtf_cpu_int8" in r else "")
                + (
                    f"; compiled {r['rtf_compiled']:.3f} ({r['rtf_cpu_compiled']:.3f})"
                    if "rtf_compiled" in r
                    else ""
                )
                if r
                else ""
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, device, path: Path, title: str) -> None:
    """Training step time and peak memory against length, one line per variant."""
    curves = []
    steps = [r for r in rows if r["device"] == device and r["kind"] == "train_step"]
    for variant in dict.fromkeys(r["variant"] for r in steps):
        pts = [
            (r["seconds"], r["time_ms"] / 1e3, r["peak_mib"])
            for r in steps
            if r["variant"] == variant
            and not r["error"]
            and None not in (r["time_ms"], r["peak_mib"])
        ]
        if not pts:
            continue
        la = _get(rows, device, variant, "lookahead").get("ms")
        label = f"{variant} (look-ahead {la:g} ms)" if la is not None else variant
        curves.append((label, "--" if variant.startswith("maa") else "-", pts))
    ylabels = ("training step time (s)", "peak memory of the step (MiB)")
    plot_time_and_memory(curves, path, title, ylabels)


def parse_args(argv=None):
    sizes = dict(
        layers=4, d_model=32, d_ffn=64, nhead=2, left_context=8, right_context=2
    )
    short = dict(lengths=[2, 4], chunks=[4], stream_seconds=1.0, rounds=2, budget=0.5)
    short["chunk_size"] = 4  # the chunked variant's, a divisor of left_context
    p = bench_parser(__doc__, rounds=3, budget=30.0, quick={**sizes, **short})
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    add_options(p, layers=12)
    p.add_argument(
        "--arch",
        default="conformer",
        choices=["conformer", "transformer", "branchformer"],
        help="conformer: the recipe's; transformer: wav2vec 2.0 BASE's (the paper's)",
    )
    add_options(p, d_model=256, nhead=4, d_ffn=1024, left_context=64, right_context=8)
    p.add_argument(
        "--lengths", type=float, nargs="+", default=[10, 30, 60], help="seconds"
    )
    p.add_argument(
        "--chunks",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        help="encoder frames per chunk (of --frame-ms each; at 40 ms, 1 4 16 "
        "are 40, 160 and 640 ms)",
    )
    p.add_argument(
        "--frame-ms",
        type=int,
        default=20,
        choices=FRAME_MS,
        help="encoder frame duration: 20 (front-end strides 2, 1: the SSL "
        "recipes') or 40 (strides 2, 2: the streaming CTC recipes')",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=8,
        help="frames per chunk of the chunked variant (left_context must be a "
        "multiple of it)",
    )
    p.add_argument("--vocab", type=int, default=32, help="CTC units of the head")
    p.add_argument(
        "--conv-lookahead",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="llsa and wsm Conformers: the look-ahead stream's convolutions "
        "read right_context frames ahead, as the streaming CTC YAMLs' "
        "conv_lookahead (default; other --arch have no such convolution); "
        "--no-conv-lookahead: causal ones",
    )
    p.add_argument(
        "--onnx",
        action="store_true",
        help="also time the streaming ONNX export in onnxruntime (one thread)",
    )
    p.add_argument(
        "--onnx-chunks",
        type=int,
        nargs="+",
        default=[1, 8],
        help="chunk sizes timed in onnxruntime (each is one export)",
    )
    p.add_argument("--stream-seconds", type=float, default=10.0)
    p.add_argument(
        "--int8",
        action="store_true",
        help="also stream with the opt-in int8 linear layers (RTF, and the "
        "largest log-probability deviation from the float offline forward)",
    )
    p.add_argument(
        "--compiled",
        action="store_true",
        help="also stream with the opt-in compiled step (torch.compile, one "
        "graph per variant and chunk size, compiled in the warm-up): its RTF "
        "beside the eager one, and its largest log-probability deviation "
        "from the eager stream",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the streaming part (default 1: one core)",
    )
    p.add_argument(
        "--parts",
        nargs="+",
        default=list(PARTS),
        choices=PARTS,
        help="what to measure (default all)",
    )
    p.add_argument("--no-plot", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = run(args)
    targets = check_targets(rows, args)
    title = (
        f"{args.layers}-layer {args.arch}, d_model {args.d_model}, "
        f"L {args.left_context}, R {args.right_context}"
    )
    meta, plots = encoder_config(args), None if args.no_plot else plot
    return report(
        rows, targets, args.out, "streaming", markdown, meta, args.check, plots, title
    )


if __name__ == "__main__":
    raise SystemExit(main())
