"""Shared machinery of the benchmarks: timing, peak memory, machine, outputs.

* Time: the configs being compared are timed in turn, round after round,
  after a warm-up, and each reports its best round (and the median): noise
  from the rest of the machine then shifts every config alike, which keeps
  the ratios of one run meaningful. ``torch.cuda.synchronize`` brackets each
  run on GPU. On CPU the timing child keeps freed blocks for reuse
  (:func:`~speechbrain_wsm.memory.keep_freed_memory`), as the recipes'
  training processes do.
* Peak memory on CUDA: ``torch.cuda.max_memory_allocated`` above what was
  allocated before the step (the allocator's own count).
* Peak memory on CPU: every measurement runs in a fresh child process (from
  a fork server that has done no tensor work). The child makes glibc return
  every large block to the system on free
  (:func:`~speechbrain_wsm.memory.release_freed_memory`), runs one warm-up step
  (one-time thread pools and workspaces), resets the kernel's peak-RSS mark
  (``/proc/self/clear_refs``), runs the step again and reports the peak
  resident set minus the resident set before it: what one step really
  touches, the quantity that decides whether a long utterance fits in RAM.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from speechbrain_wsm.memory import (
    keep_freed_memory,
    peak_rss_bytes,
    release_freed_memory,
    reset_peak_rss,
    rss_bytes,
)

#: A tiny Hugging Face wav2vec 2.0 / HuBERT / WavLM architecture: 4 layers of
#: width 32 and a 3-layer CNN with a 320x downsampling (20 ms frames at 16 kHz),
#: a few kilobytes of weights. The random encoder of ``--quick`` runs (and of
#: the tests).
TINY_HF_ARCH = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "conv_dim": (32, 32, 32),
    "conv_kernel": (10, 8, 8),
    "conv_stride": (5, 8, 8),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "feat_extract_norm": "layer",
}


def machine_description(device: str) -> str:
    """One line naming the hardware a result was measured on."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        return f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_interleaved(
    makers: dict, device: str, rounds: int = 5, budget_s: float = 10.0
) -> dict:
    """Best-of-``rounds`` seconds per step for several configs timed in turn.

    ``makers`` maps a label to ``make_step(device) -> step``. After one
    warm-up of each, every round times one step of every config, so a burst of
    load from elsewhere on the machine hits all configs alike and the ratios
    between them stay meaningful. At least two rounds always run; more until
    ``rounds`` or ``budget_s``. A config that fails reports ``{"error": ...}``.

    Returns ``{label: {"time_s": min, "time_median_s": median, "rounds": n}}``.
    """
    if not device.startswith("cuda"):
        keep_freed_memory()  # as the recipes train on CPU
    steps, out = {}, {}
    for label, make in makers.items():
        try:
            steps[label] = make(device)
            steps[label]()
        except (torch.OutOfMemoryError, RuntimeError) as e:
            out[label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
            steps.pop(label, None)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    times = {label: [] for label in steps}
    start = time.perf_counter()
    for r in range(rounds):
        for label, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[label].append(time.perf_counter() - t0)
        if r >= 1 and time.perf_counter() - start > budget_s:
            break
    for label, ts in times.items():
        out[label] = {
            "time_s": min(ts),
            "time_median_s": statistics.median(ts),
            "rounds": len(ts),
        }
    return out


def peak_memory(
    make_step: Callable[[str], Callable[[], None]], device: str, include_model=False
) -> dict:
    """Peak memory of one step: ``{"peak_bytes"}`` or ``{"error"}``.

    ``include_model=False``: what the step itself allocates (activations,
    gradients, workspaces) above what exists before it. ``include_model=True``:
    counted from before ``make_step`` builds anything, so weights and
    optimizer state are in (what training needs in all). On CPU it runs in a
    fresh child process (see the module docstring); on CUDA here.
    """
    if device.startswith("cuda"):
        return _peak_here(make_step, device, include_model)
    return in_child(_peak_here, make_step, device, include_model)


def timings(makers: dict, device: str, rounds: int = 5, budget_s: float = 10.0) -> dict:
    """:func:`time_interleaved`, in a forked child on CPU (fresh allocator state)."""
    if device.startswith("cuda"):
        return time_interleaved(makers, device, rounds, budget_s)
    res = in_child(time_interleaved, makers, device, rounds, budget_s)
    if "error" in res and not isinstance(res["error"], dict):
        return {label: {"error": res["error"]} for label in makers}
    return res


# Imported once by the fork server, so that children start with them loaded.
PRELOAD = [
    "torch",
    "speechbrain",
    "speechbrain_wsm.nnet",
    "speechbrain_wsm.bench.common",
]


def preload(*modules: str) -> None:
    """Have the benchmark children start with ``modules`` imported.

    Call before the first measurement (the fork server starts then).
    """
    PRELOAD.extend(m for m in modules if m not in PRELOAD)


def in_child(fn, *args):
    """``fn(*args)`` in a fresh process; its result, or ``{"error"}`` if it dies.

    Children come from a fork server that imported torch but never ran a
    parallel region: a plain fork of a process that has (a test session, a
    benchmark parent) can hang in GNU OpenMP. ``fn`` and its arguments are
    pickled, so they must be module-level functions and picklable objects.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, *args))
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = {
            "error": f"child process died (exit code {proc.exitcode}), likely out of memory"
        }
    proc.join()
    return result


def _child(conn, fn, *args):
    try:
        conn.send(fn(*args))
    except BaseException as e:  # report, never hang the parent
        conn.send(
            {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        )
    finally:
        conn.close()


def _peak_here(make_step, device, include_model=False):
    try:
        if device.startswith("cuda"):
            gc.collect()
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated(device)
            step = make_step(device)
            step()  # warm-up: optimizer state, workspaces
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            if not include_model:
                before = torch.cuda.memory_allocated(device)
            step()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
            del step
            gc.collect()
            torch.cuda.empty_cache()
            return {"peak_bytes": peak}
        release_freed_memory()
        before = rss_bytes()
        step = make_step(device)
        step()  # warm-up: one-time pools, workspaces, optimizer state
        reset_peak_rss()
        if not include_model:
            before = rss_bytes()
        step()
        return {"peak_bytes": max(peak_rss_bytes() - before, 0)}
    except torch.OutOfMemoryError as e:
        return {"error": f"out of memory: {str(e).splitlines()[0]}"}


def measured_fields(res: dict) -> dict:
    """A measurement (``time_s``, ``time_median_s``, ``rounds``, ``peak_bytes``,
    ``error``) as the columns every benchmark table has."""
    error = res.get("error", "")
    return {
        "time_ms": round(res["time_s"] * 1e3, 3) if "time_s" in res else None,
        "time_median_ms": round(res["time_median_s"] * 1e3, 3)
        if "time_s" in res
        else None,
        "rounds": res.get("rounds"),
        "peak_mib": round(res["peak_bytes"] / 2**20, 2)
        if "peak_bytes" in res
        else None,
        "error": error if isinstance(error, str) else str(error),
    }


def shown(row: dict) -> str:
    """``"12.3 ms, 45.6 MiB"``, or the row's error."""
    return row["error"] or f"{row['time_ms']} ms, {row['peak_mib']} MiB"


def write_table(
    rows: list[dict], out_dir: Path, stem: str, meta: dict
) -> tuple[Path, Path]:
    """Write ``rows`` as ``<stem>.csv`` and, with ``meta``, ``<stem>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return csv_path, json_path


def step_markdown(
    rows, device, key: str, names, params_key: str, params_header: str, params_fmt: str
) -> str:
    """Markdown of training-step rows: parameters, then ``time / peak`` per length.

    One line per ``names`` entry (rows matched on ``row[key]``); the parameter
    count comes from ``params_key`` and is shown in millions with
    ``params_fmt`` (e.g. ``"{:.2f} M"``).
    """
    rows = [r for r in rows if r["device"] == device]
    lengths = sorted({r["seconds"] for r in rows})
    cell = {(r[key], r["seconds"]): r for r in rows}
    lines = [
        f"| {key} | {params_header} | "
        + " | ".join(f"{s:g} s" for s in lengths)
        + " |",
        "|" + "---|" * (len(lengths) + 2),
    ]
    for name in names:
        first = cell.get((name, lengths[0])) if lengths else None
        if first is None or first.get(params_key) is None:
            continue
        params = params_fmt.format(first[params_key] / 1e6)
        cells = step_cells(cell, name, lengths)
        lines.append(f"| {name} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def step_cells(cell: dict, name: str, lengths) -> list[str]:
    """``"1.23 s / 456 MiB"`` (step time / peak memory) of ``cell[(name, s)]`` per
    length ``s``; ``"failed"`` where either is missing."""
    cells = []
    for s in lengths:
        r = cell.get((name, s), {})
        t, p = r.get("time_ms"), r.get("peak_mib")
        cells.append(
            "failed" if t is None or p is None else f"{t / 1e3:.2f} s / {p:.0f} MiB"
        )
    return cells


def report(
    rows,
    targets,
    out_dir: Path,
    stem: str,
    markdown,
    meta: dict,
    check=False,
    plot=None,
    title: str = "",
) -> int:
    """Write ``<stem>_<device>.csv/.json``, print the tables and the targets.

    ``markdown(rows, device)`` renders one device's table; ``meta`` (sizes,
    settings) goes into the JSON with the machine, the targets and the
    command. With ``plot``, :func:`plot_devices` draws ``<stem>_<device>.png``
    under ``title``. Returns the exit code: 1 if ``check`` and a target was
    missed.
    """
    machines = {d: machine_description(d) for d in sorted({r["device"] for r in rows})}
    meta = {
        "machines": machines,
        **meta,
        "targets": targets,
        "command": " ".join(sys.argv),
    }
    for device, machine in machines.items():
        device_rows = [r for r in rows if r["device"] == device]
        csv_path, _ = write_table(
            device_rows, out_dir, f"{stem}_{device}", {**meta, "machine": machine}
        )
        print(
            f"\n## {device}: {machine}\n\n{markdown(rows, device)}\n\nwritten: {csv_path}"
        )
    print("\n| device | target | measured | met |\n|---|---|---|---|")
    for t in targets:
        value = "n/a" if t["measured"] is None else f"{t['measured']:.2f}"
        met = {True: "yes", False: "NO", None: "n/a"}[t["ok"]]
        print(f"| {t['device']} | {t['target']} | {value} | {met} |")
    if plot is not None:
        plot_devices(rows, out_dir, stem, plot, title)
    return 1 if check and any(t["ok"] is False for t in targets) else 0


def devices_from_arg(arg: str) -> list[str]:
    """``cpu``, ``cuda`` or ``all`` (CPU, plus CUDA when present)."""
    if arg == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if arg == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    return [arg]


class BenchParser(argparse.ArgumentParser):
    """An argument parser whose ``--quick`` replaces parsed settings by ``quick``'s."""

    def __init__(self, *args, quick: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.quick = quick or {}

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        if parsed.quick:
            for name, value in self.quick.items():
                setattr(parsed, name, value)
        return parsed


def bench_parser(
    doc: str,
    rounds: int = 3,
    budget: float = 120.0,
    rounds_help: str = "timing rounds; best is kept",
    quick: dict | None = None,
) -> argparse.ArgumentParser:
    """The options every benchmark has: device, timing rounds, output, checks.

    ``--device all|cpu|cuda``, ``--rounds``, ``--budget`` (seconds of timing
    rounds per length), ``--fp32`` (no bf16 autocast on CUDA), ``--out``
    (folder of the CSV/JSON/markdown results), ``--check`` (exit 1 when a
    target is missed), ``--quick`` (tiny sizes: a smoke run in seconds; the
    settings ``quick`` then replace the parsed ones). The benchmark adds its
    own sizes; its module docstring's first paragraph is the description.

    Example
    -------
    >>> bench_parser("A benchmark.", quick={"rounds": 2}).parse_args(["--quick"]).rounds
    2
    >>> bench_parser("A benchmark.", quick={"rounds": 2}).parse_args([]).rounds
    3
    """
    p = BenchParser(description=doc.split("\n\n")[0], quick=quick)
    p.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    p.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    p.add_argument(
        "--budget",
        type=float,
        default=budget,
        help="at most this many seconds of timing rounds per length",
    )
    p.add_argument(
        "--fp32", action="store_true", help="fp32 on CUDA too (default bf16 autocast)"
    )
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    p.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed"
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke run in seconds"
    )
    return p


def add_options(p: argparse.ArgumentParser, **defaults) -> None:
    """Add ``--name`` options (underscores written as dashes) typed as their default.

    Example
    -------
    >>> p = argparse.ArgumentParser()
    >>> add_options(p, d_model=256, gamma=0.1)
    >>> p.parse_args(["--d-model", "32"])
    Namespace(d_model=32, gamma=0.1)
    """
    for name, default in defaults.items():
        p.add_argument(
            "--" + name.replace("_", "-"), type=type(default), default=default
        )


def step_devices(args, settings):
    """``(device, dtype)`` for each device of ``--device``, after a log line
    ``# <device>: <machine>; <settings>, <dtype>``.

    ``dtype``: :func:`step_dtype`. ``settings``: what runs (sizes, batch), or
    ``settings(device)`` where that depends on the device.
    """
    for device in devices_from_arg(args.device):
        dtype = step_dtype(device, args)
        text = settings(device) if callable(settings) else settings
        print(f"# {device}: {machine_description(device)}; {text}, {dtype}", flush=True)
        yield device, dtype


def step_dtype(device: str, args) -> torch.dtype:
    """bf16 autocast on CUDA unless ``--fp32``; float32 on CPU."""
    return torch.bfloat16 if device == "cuda" and not args.fp32 else torch.float32


def autocast(device: str, dtype: torch.dtype):
    """Autocast to ``dtype`` on ``device``'s type; a no-op context for float32."""
    return torch.autocast(
        device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32
    )


def profile_table(
    step: Callable[[], None],
    device: str,
    out_dir: Path,
    name: str,
    head: str,
    rows: int = 30,
    cpu_sort="self_cpu_time_total",
) -> Path:
    """A profiler table of one call of ``step`` (after two warm-up calls, which
    compile), sorted by device time on CUDA and by ``cpu_sort`` otherwise
    (``cpu_time_total`` keeps labelled ranges on top); on the CPU, compiled
    kernels are listed one by one. Printed after the line ``head`` and
    written to ``out_dir / profile_<name>_<device type>.txt``."""
    from torch._inductor import config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    with inductor_config.patch({"cpp.enable_kernel_profile": not cuda}):
        for _ in range(2):
            step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(device)
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    sort = "device_time_total" if cuda else cpu_sort
    text = f"{head}\n" + prof.key_averages().table(sort_by=sort, row_limit=rows)
    path = Path(out_dir) / f"profile_{name}_{device.split(':')[0]}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    return path


def lookup(rows: list[dict], key: str, **match):
    """``key`` of the first row whose fields equal ``match``; None if no row does."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r.get(key)
    return None


def measure_steps(makers: dict, device: str, args, include_model: bool = False) -> dict:
    """Interleaved best times (``args.rounds``, ``args.budget``) and the peak memory
    of every step maker, by name: ``{name: {time and memory fields}}``."""
    times = timings(makers, device, rounds=args.rounds, budget_s=args.budget)
    return {
        name: {**peak_memory(make, device, include_model=include_model), **times[name]}
        for name, make in makers.items()
    }


def measure_rows(
    makers: dict,
    device: str,
    args,
    columns: dict,
    after: dict | None = None,
    include_model: bool = False,
    width: int = 9,
) -> list[dict]:
    """:func:`measure_steps`, then one table row per step maker, printed as it comes.

    A maker's row: its ``columns[name]`` (which hold ``seconds``), the
    columns of :func:`measured_fields`, then ``after[name]`` if given.
    ``width``: the printed name's column width.
    """
    rows = []
    for name, res in measure_steps(makers, device, args, include_model).items():
        row = {**columns[name], **measured_fields(res), **(after or {}).get(name, {})}
        rows.append(row)
        print(f"  {row['seconds']:>5} s  {name:<{width}} {shown(row)}", flush=True)
    return rows


def plot_time_and_memory(
    curves, path: Path, title: str, ylabels: tuple[str, str], log: bool = False
) -> None:
    """Two panels against utterance length: step time and peak memory.

    ``curves``: ``(label, line style, [(seconds, time, memory), ...])``, one
    line in each panel; ``ylabels``: the two panels' axis labels; ``log``: log
    scale on both. Saved as ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, style, pts in curves:
        s, t, m = zip(*pts, strict=True)
        axes[0].plot(s, t, style, marker="o", label=label)
        axes[1].plot(s, m, style, marker="o", label=label)
    for ax, ylabel in zip(axes, ylabels, strict=True):
        ax.set_xlabel("utterance length (s, 20 ms frames)")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(True, which="both" if log else "major", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_devices(rows: list[dict], out: Path, name: str, plot, title: str) -> None:
    """``plot(rows, device, <out>/<name>_<device>.png, title + machine)`` per device."""
    for device in sorted({r["device"] for r in rows}):
        png = out / f"{name}_{device}.png"
        plot(rows, device, png, f"{title}; {machine_description(device)}")
        print(f"plot: {png}")
