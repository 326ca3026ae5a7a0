"""Pretraining at the batches people train with: fill, throughput, MFU, profile.

The ``--fill`` and ``--profile`` modes of :mod:`speechbrain_wsm.bench.pretrain`
(issue 22, items 3 and 4):

* **fill**: the memory a step needs is affine in the batch size, so it is
  measured at two small batches, and the largest batch of each length that
  fits ``--memory-gb`` (80 GB, the A100/H100 envelope, enforced on CUDA with
  ``torch.cuda.set_per_process_memory_fraction``) is estimated from the
  bytes per utterance and verified once (one step at that batch; 15 % less
  if it does not fit). At that batch: audio seconds per second and model
  FLOPs utilisation (MFU: FLOPs of one step counted with
  ``torch.utils.flop_counter`` against the dense bf16 matrix-product rate
  measured at the start of the run).
* **shared batch**: step time and peak memory of every mixer at one batch,
  the largest that all fit.
* **profile**: a ``torch.profiler`` table of one step's top costs, with the
  front end, context encoder, quantiser, loss, backward and optimizer
  labelled.

With ``--compile`` every mixer's encoder layers run through
``torch.compile(dynamic=True)`` (baselines included; ``MixerEncoder.compile_layers``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from speechbrain_wsm.bench.common import (
    autocast,
    lookup,
    measured_fields,
    peak_memory,
    profile_table,
    timings,
)
from speechbrain_wsm.recipe.optim import make_optimizer

#: the fill estimate aims below the limit by this share (allocator slack)
SAFETY = 0.92


def matmul_rate(device: str, dtype: torch.dtype) -> float:
    """Measured dense matrix-product rate (FLOP/s) of ``dtype`` on ``device``."""
    cuda = device.startswith("cuda")
    n, reps = (8192, 30) if cuda else (512, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if cuda:
        torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def step_flops(step_cls, size, mixer, window, seconds, dtype, device) -> float:
    """FLOPs of one training step (forward + backward) of ONE utterance, eager."""
    from torch.utils.flop_counter import FlopCounterMode

    from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Loss

    model, (wavs, lens, mask) = step_cls(size, mixer, window, seconds, 1, dtype).build(
        device
    )
    loss_fn = Wav2Vec2Loss(num_negatives=100)
    with FlopCounterMode(display=False) as counter:
        with autocast(device, dtype):
            loss = loss_fn(model(wavs, lens, mask))["loss"]
        loss.backward()
    return float(counter.get_total_flops())


def limit_memory(device: str, gb: float) -> float:
    """Cap this process's CUDA memory at ``gb``; the cap in bytes."""
    limit = gb * 1e9
    if device.startswith("cuda"):
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), index)
        limit = min(limit, total)
    return limit


def estimate_fill(step_cls, args, device, dtype, size, seconds, mixer, limit):
    """Peak bytes at two batches -> (fill batch, bytes per utterance, fixed bytes)."""
    b1, b2 = args.probe_batches
    peaks = []
    for b in (b1, b2):
        step = step_cls(size, mixer, args.window_size, seconds, b, dtype, args.compile)
        res = peak_memory(step, device, include_model=True)
        if "peak_bytes" not in res:
            return None, None, None
        peaks.append(res["peak_bytes"])
    per = max((peaks[1] - peaks[0]) / (b2 - b1), 1.0)
    fixed = peaks[0] - per * b1
    fill = int((limit * SAFETY - fixed) // per)
    return max(1, min(fill, args.max_batch)), per, fixed


def run_fill(step_cls, args, device, dtype, size) -> list[dict]:
    """Fill, shared-batch and MFU rows for every length (see the module doc)."""
    limit = limit_memory(device, args.memory_gb)
    rate = matmul_rate(device, dtype)
    print(f"  matrix-product rate: {rate / 1e12:.1f} TFLOP/s ({dtype})", flush=True)
    rows = []
    for seconds in args.lengths:
        fills, per_utt = {}, {}
        for m in args.mixers:
            fill, per, fixed = estimate_fill(
                step_cls, args, device, dtype, size, seconds, m, limit
            )
            fills[m], per_utt[m] = fill, per
            print(f"  {seconds:>5} s  {m:<11} fill estimate {fill} "
                  f"({(per or 0) / 2**20:.0f} MiB per utterance)", flush=True)  # fmt: skip
        known = [f for f in fills.values() if f]
        shared = max(1, int(min(known) * 0.9)) if known else 1
        makers = {
            m: step_cls(size, m, args.window_size, seconds, shared, dtype, args.compile)
            for m in args.mixers
        }
        times = timings(makers, device, rounds=args.rounds, budget_s=args.budget)
        for m, maker in makers.items():
            res = {**peak_memory(maker, device, include_model=True), **times[m]}
            row = _row(device, size, m, seconds, "shared", shared, args, res)
            rows.append(row)
            print(f"  {seconds:>5} s  {m:<11} shared batch {shared}: "
                  f"{row['time_ms']} ms, {row['peak_mib']} MiB", flush=True)  # fmt: skip
        flops1 = {
            m: step_flops(step_cls, size, m, args.window_size, seconds, dtype, device)
            for m in args.fill_mixers
        }
        for m in args.fill_mixers:
            rows.append(
                _fill_row(
                    step_cls,
                    args,
                    device,
                    dtype,
                    size,
                    seconds,
                    m,
                    fills.get(m),
                    per_utt.get(m),
                    flops1[m],
                    rate,
                )  # fmt: skip
            )
            r = rows[-1]
            print(f"  {seconds:>5} s  {m:<11} fill batch {r['batch']}: {r['time_ms']} "
                  f"ms, {r['peak_mib']} MiB, {r['audio_s_per_s']} audio-s/s, "
                  f"MFU {r['mfu']}", flush=True)  # fmt: skip
    return rows


def _row(device, size, mixer, seconds, phase, batch, args, res) -> dict:
    return {
        "device": device,
        "size": size,
        "mixer": mixer,
        "seconds": seconds,
        "phase": phase,
        "batch": batch,
        "compiled": bool(args.compile),
        **measured_fields(res),
    }


def _fill_row(
    step_cls, args, device, dtype, size, seconds, mixer, fill, per, flops1, rate
):
    """Verify the fill batch once (15 % less if it does not fit), then time it."""
    res = {"error": "no fill estimate"}
    for _ in range(2):
        if not fill:
            break
        step = step_cls(
            size, mixer, args.window_size, seconds, fill, dtype, args.compile
        )
        res = peak_memory(step, device, include_model=True)
        if "peak_bytes" in res:
            res.update(
                timings({mixer: step}, device, rounds=2, budget_s=args.budget)[mixer]
            )
            break
        fill = int(fill * 0.85)
    row = _row(device, size, mixer, seconds, "fill", fill, args, res)
    t = res.get("time_s")
    row["bytes_per_utterance"] = None if per is None else int(per)
    row["step_flop"] = int(flops1 * (fill or 0))
    row["audio_s_per_s"] = None if not t else round(fill * seconds / t, 1)
    row["mfu"] = None if not t else round(flops1 * fill / t / rate, 4)
    row["matmul_tflops"] = round(rate / 1e12, 1)
    return row


def fill_targets(rows) -> list[dict]:
    """Issue 22's item 4 targets that this benchmark measures, met or missed."""
    out = []

    def add(device, target, value, limit, at_least=False):
        ok = None if value is None else (value >= limit if at_least else value <= limit)
        out.append({"device": device, "target": target, "measured": value, "ok": ok})

    def ratio(key, num, den, **at):
        a, b = lookup(rows, key, mixer=num, **at), lookup(rows, key, mixer=den, **at)
        return None if not a or not b else a / b

    for device in sorted({r["device"] for r in rows}):
        for s in sorted({r["seconds"] for r in rows if r["device"] == device}):
            shared = dict(device=device, seconds=s, phase="shared")
            fill = dict(device=device, seconds=s, phase="fill")
            for m in ("sm", "wsm"):
                M = m.upper()
                for base, t_lim, m_lim in (
                    ("relpos_mhsa", 0.82, 0.77),
                    ("mhsa", 0.95 if s <= 16 else 0.85, 0.9),
                ):
                    if lookup(rows, "mixer", mixer=base, **shared) is None:
                        continue
                    add(device, f"{M} / {base} time at {s:g} s (shared batch) <= {t_lim}",
                        ratio("time_ms", m, base, **shared), t_lim)  # fmt: skip
                    add(device, f"{M} / {base} peak at {s:g} s (shared batch) <= {m_lim}",
                        ratio("peak_mib", m, base, **shared), m_lim)  # fmt: skip
                if lookup(rows, "mixer", mixer="mhsa", **fill) is not None:
                    add(device, f"{M} / mhsa audio-s/s at {s:g} s, each at its fill "
                        "batch >= 1.2", ratio("audio_s_per_s", m, "mhsa", **fill), 1.2,
                        True)  # fmt: skip
            mfu = lookup(rows, "mfu", mixer="sm", **fill)
            if lookup(rows, "mixer", mixer="sm", **fill) is not None:
                add(
                    device,
                    f"MFU of SM at its fill batch, {s:g} s >= 0.35",
                    mfu,
                    0.35,
                    True,
                )
    return out


def fill_markdown(rows, device) -> str:
    """Shared-batch and fill-batch tables of one device."""
    rows = [r for r in rows if r["device"] == device]
    lines = ["| mixer | length | shared batch: time / peak | fill batch | time / peak "
             "| audio-s/s | MFU |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if r["phase"] != "shared":
            continue
        f = next((x for x in rows if x["phase"] == "fill" and x["mixer"] == r["mixer"]
                  and x["seconds"] == r["seconds"]), None)  # fmt: skip

        def cell(x):
            if x is None or x.get("time_ms") is None:
                return (x or {}).get("error") or "-"
            return f"{x['time_ms']:.0f} ms / {x['peak_mib'] / 1024:.1f} GiB"

        fill = "-" if f is None else f"{f['batch']}"
        extra = "- | - | -" if f is None else (
            f"{cell(f)} | {f.get('audio_s_per_s')} | {f.get('mfu')}")  # fmt: skip
        lines.append(f"| {r['mixer']} | {r['seconds']:g} s | {cell(r)} (batch "
                     f"{r['batch']}) | {fill} | {extra} |")  # fmt: skip
    return "\n".join(lines)


def profile_step(step_cls, args, device, dtype, size, out_dir: Path) -> Path:
    """A profiler table of one step (mixer ``args.profile``), labelled by part."""
    from torch.profiler import record_function

    from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Loss

    seconds, batch = args.lengths[0], args.profile_batch
    maker = step_cls(size, args.profile, args.window_size, seconds, batch, dtype,
                     args.compile)  # fmt: skip
    model, (wavs, lens, mask) = maker.build(device)
    labels = {
        "front end (fbank + CNN)": model.encoder.latent_extractor,
        "context encoder": model.encoder.context,
        "quantiser": model.quantiser,
    }
    for name, module in labels.items():
        _label(module, name, record_function)
    loss_fn = Wav2Vec2Loss(num_negatives=100)
    opt = make_optimizer(
        torch.optim.AdamW, model.parameters(), lr=1e-4, weight_decay=0.05
    )

    def step():
        with autocast(device, dtype):
            out = model(wavs, lens, mask)
            with record_function("loss"):
                loss = loss_fn(out)["loss"]
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    head = (f"one {size} pretraining step, {args.profile}, {batch} x {seconds:g} s, "
            f"{dtype}, compiled={bool(args.compile)}")  # fmt: skip
    return profile_table(step, device, out_dir, args.profile, head,
                         args.profile_rows, cpu_sort="cpu_time_total")  # fmt: skip


def _label(module, name, record_function):
    """Wrap ``module``'s forward in a profiler label."""
    state = {}

    def pre(_m, _args):
        state["rf"] = record_function(name)
        state["rf"].__enter__()

    def post(_m, _args, _out):
        state.pop("rf").__exit__(None, None, None)

    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)
